"""Upstream's finishing (audio/finishing.py) as functions, its fields in the schema, the CLI flags and
the page's controls. Bitwise parity with upstream's own code is checked by the `post_*` goldens
(tests/golden/turbo_a/manifest_post.json, dev/parity.py)."""

import argparse

import pytest
import torch

from acestep_worker.audio.finishing import (
    Finishing,
    adjust_latents,
    fade,
    fade_samples,
    finish,
    normalize,
)
from acestep_worker.errors import InputError
from acestep_worker.schema.request import parse

SR = 48_000
MINUS_ONE_DB = 10 ** (-1 / 20)


def _songs(*scales, samples=4_800, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randn(2, samples, generator=g) * s for s in scales])


def test_normalize_puts_each_peak_at_the_target_with_one_gain():
    song = _songs(0.05)[0]
    out, gain = normalize(song)
    assert out.abs().max().item() == pytest.approx(MINUS_ONE_DB, rel=1e-6)
    assert gain == pytest.approx(MINUS_ONE_DB / song.abs().max().item(), rel=1e-6)
    assert torch.allclose(out, song * gain, rtol=1e-6, atol=0)
    louder, _ = normalize(song, -6.0)
    assert louder.abs().max().item() == pytest.approx(10 ** (-6 / 20), rel=1e-6)


@pytest.mark.parametrize("scale", [0.0, 1e-7])
def test_silent_and_near_silent_songs_are_left_alone(scale):
    song = _songs(scale)[0]
    out, gain = normalize(song)
    assert out is song and gain is None


def test_fades_ramp_from_and_to_zero_and_leave_the_middle_and_the_input():
    song = torch.ones(2, SR)
    out = fade(song, 1_000, 2_000)
    assert out[0, 0] == 0 and out[0, -1] == 0 and out[0, 999] == 1 and out[0, SR - 2_000] == 1
    assert torch.equal(out[:, 1_000:SR - 2_000], song[:, 1_000:SR - 2_000])
    assert torch.equal(song, torch.ones(2, SR))  # a copy: the input is untouched
    assert fade(song, 0, 0) is song


def test_fades_longer_than_the_song_clamp_and_both_apply():
    song = torch.ones(2, 100)
    out = fade(song, 1_000, 1_000)
    ramp_in, ramp_out = torch.linspace(0, 1, 100), torch.linspace(1, 0, 100)
    assert torch.equal(out, song * ramp_in * ramp_out)


def test_fade_lengths_are_rounded_seconds_times_the_rate():
    assert fade_samples(0.5, SR) == 24_000 and fade_samples(0.00001, SR) == 0 and fade_samples(1e-4, SR) == 5


def test_latents_are_rescaled_then_shifted_and_neutral_values_touch_nothing():
    z = torch.randn(1, 5, 3)
    assert adjust_latents(z) is z
    assert torch.equal(adjust_latents(z, 0.1, 1.25), z * 1.25 + 0.1)


def test_neutral_finishing_returns_the_decoded_songs_themselves():
    audio = _songs(0.3, 0.01)
    out, report = finish(audio, Finishing(normalize=False), SR)
    assert out is audio and report["normalization_gain_db"] == [None, None]


def test_finish_normalises_each_song_then_fades_and_reports_the_gains():
    audio = _songs(0.3, 0.001, 0.0)
    out, report = finish(audio, Finishing(fade_in_s=0.01, fade_out_s=0.02), SR)
    for i in range(2):  # normalised first (the whole song's peak), then faded
        normalized, gain = normalize(audio[i])
        assert torch.equal(out[i], fade(normalized, 480, 960)) and normalized.abs().max() == pytest.approx(MINUS_ONE_DB)
        assert report["normalization_gain_db"][i] == pytest.approx(20 * torch.log10(torch.tensor(gain)).item(), abs=1e-4)
    assert torch.equal(out[2], audio[2])  # silent: neither gain nor anything to fade
    gains = report["normalization_gain_db"]
    assert gains[0] < 0 < gains[1] and gains[2] is None  # the loud one down, the quiet one up
    assert (report["fade_in_samples"], report["fade_out_samples"]) == (480, 960)
    assert (out[:, :, 0] == 0).all() and (out[:, :, -1] == 0).all()


def test_normalization_db_above_zero_skips_normalisation_as_upstream():
    """Upstream normalises only when normalization_db <= 0 (the schema refuses more; the function keeps
    upstream's rule)."""
    audio = _songs(0.3)
    out, report = finish(audio, Finishing(normalization_db=1.0), SR)
    assert out is audio and report["normalization_gain_db"] == [None]


# -- the schema ---------------------------------------------------------------------------------

def test_the_fields_default_to_upstreams_values():
    r = parse({})
    assert (r.enable_normalization, r.normalization_db, r.fade_in_duration, r.fade_out_duration,
            r.latent_shift, r.latent_rescale) == (True, -1.0, 0.0, 0.0, 0.0, 1.0)


def test_camel_case_aliases_and_form_strings_are_read():
    r = parse({"enableNormalization": "false", "normalizationDb": "-3", "fadeInDuration": "1.5",
               "fadeOutDuration": 2, "latentShift": "0.1", "latentRescale": "1.2"})
    assert (r.enable_normalization, r.normalization_db, r.fade_in_duration, r.fade_out_duration,
            r.latent_shift, r.latent_rescale) == (False, -3.0, 1.5, 2.0, 0.1, 1.2)
    assert parse({"normalization_db": None}).normalization_db == -1.0  # null: the default


@pytest.mark.parametrize("fields, name, fragment", [
    ({"normalization_db": 3}, "normalization_db", "dBFS from -60 to 0"),
    ({"normalization_db": "loud"}, "normalization_db", "dBFS from -60 to 0"),
    ({"enable_normalization": "maybe"}, "enable_normalization", "true"),
    ({"fade_in_duration": -1}, "fade_in_duration", "seconds from 0"),
    ({"fadeOutDuration": 601}, "fadeOutDuration", "seconds from 0"),  # named as sent
    ({"latent_shift": 3}, "latent_shift", "from -2 to 2"),
    ({"latent_rescale": 0}, "latent_rescale", "above 0"),
    ({"fade_in_duration": float("nan")}, "fade_in_duration", "seconds"),
])
def test_bad_values_are_refused_naming_the_field(fields, name, fragment):
    with pytest.raises(InputError) as err:
        parse(fields)
    assert err.value.field == name and fragment in str(err.value)


# -- the CLI and the page -----------------------------------------------------------------------

def _cli_request(*flags):
    from acestep_worker.doors import cli

    parser = argparse.ArgumentParser()
    cli._generate_parser(parser.add_subparsers())
    return cli._request(parser.parse_args(["generate", *flags]))


def test_cli_flags_become_the_fields():
    assert {"enable_normalization", "normalization_db", "fade_in_duration"}.isdisjoint(_cli_request())
    data = _cli_request("--no-normalize", "--normalization-db", "-3", "--fade-in", "2", "--fade-out", "4.5",
                        "--latent-shift", "0.1", "--latent-rescale", "1.1")
    request = parse(data)
    assert (request.enable_normalization, request.normalization_db, request.fade_in_duration,
            request.fade_out_duration, request.latent_shift, request.latent_rescale) == (False, -3, 2, 4.5, 0.1, 1.1)
    with pytest.raises(InputError, match="normalization_db must be"):
        parse(_cli_request("--normalization-db", "2"))


def test_client_flags_become_the_fields():
    from acestep_worker.doors import client

    args = client.build_parser().parse_args(["--no-normalize", "--fade-in", "1", "--fade-out", "2",
                                             "--normalization-db", "-2"])
    fields = client.request_fields(args)
    assert (fields["enable_normalization"], fields["normalization_db"], fields["fade_in_duration"],
            fields["fade_out_duration"]) == (False, -2, 1, 2)
    assert "enable_normalization" not in client.request_fields(client.build_parser().parse_args([]))


def test_the_page_sends_its_finishing_controls():
    from acestep_worker.doors.pod.page.form import _fields
    from acestep_worker.doors.pod.page.inputs import STARTING_VALUES

    values = {**STARTING_VALUES, "caption": "x"}
    sent = parse(_fields(values))
    assert (sent.enable_normalization, sent.normalization_db, sent.fade_in_duration) == (True, -1.0, 0.0)
    changed = parse(_fields({**values, "enable_normalization": False, "fade_out_duration": 3}))
    assert changed.enable_normalization is False and changed.fade_out_duration == 3
    assert parse(_fields({**values, "normalization_db": None})).normalization_db == -1.0  # a cleared box
