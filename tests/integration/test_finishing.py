"""Upstream's finishing through the engine and the serverless door on the tiny checkpoints: peak
normalisation on by default, fades, the latent shift/rescale, and what each leaves of today's songs.

"Today's" songs are the pipeline's with the finishing step bypassed (`generation.finish` replaced
by the identity), which is what this server made before it normalised."""

import numpy as np
import pytest
import torch

from acestep_worker.doors.serverless import run_job
from acestep_worker.errors import InputError
from acestep_worker.pipeline import generation, synthesizer
from acestep_worker.schema.request import parse

SR = 48_000
MINUS_ONE_DB = 10 ** (-1 / 20)


def _generate(engine, **fields):
    return engine.generate(parse({"caption": "tiny finish", "duration": 10, "seed": 3, **fields}))


@pytest.fixture
def bypass_finishing(monkeypatch):
    """Switch the finishing step off for the rest of the test: today's pipeline."""
    def off():
        monkeypatch.setattr(generation, "finish", lambda audio, finishing, rate: (audio, {}))
    return off


def test_normalization_off_with_the_other_fields_at_their_defaults_is_todays_songs(engine, bypass_finishing):
    off = _generate(engine, batch_size=2, enable_normalization=False)
    assert off.params["enable_normalization"] is False and off.params["normalization_gain_db"] == [None, None]
    bypass_finishing()
    today = _generate(engine, batch_size=2)
    for ours, theirs in zip(off.songs, today.songs):
        assert np.array_equal(ours.audio, theirs.audio)


def test_by_default_each_song_is_todays_times_one_gain_to_a_minus_one_dbfs_peak(engine, bypass_finishing):
    default = _generate(engine, batch_size=2)
    bypass_finishing()
    today = _generate(engine, batch_size=2)
    for song, before, gain_db in zip(default.songs, today.songs, default.params["normalization_gain_db"]):
        assert np.abs(song.audio).max() == pytest.approx(MINUS_ONE_DB, rel=1e-6)
        peak = torch.max(torch.abs(torch.from_numpy(before.audio)))
        gain = MINUS_ONE_DB / peak  # upstream's arithmetic: one float32 gain for the whole song
        assert np.array_equal(song.audio, (torch.from_numpy(before.audio) * gain).numpy())
        assert gain_db == pytest.approx(20 * np.log10(float(gain)), abs=1e-4)
    assert default.params["enable_normalization"] is True and default.params["normalization_db"] == -1.0


def test_fades_and_a_lower_peak_are_applied_and_reported(engine):
    result = _generate(engine, normalization_db=-6, fade_in_duration=1.0, fade_out_duration=2.5)
    audio = result.songs[0].audio
    assert (audio[0] == 0).all() and (audio[-1] == 0).all()
    assert np.abs(audio[: SR // 100]).max() < np.abs(audio[SR:2 * SR]).max()  # the first 10 ms are nearly silent
    assert np.abs(audio).max() <= 10 ** (-6 / 20) + 1e-7
    p = result.params
    assert (p["fade_in_duration"], p["fade_out_duration"], p["fade_in_samples"], p["fade_out_samples"]) == \
        (1.0, 2.5, SR, 120_000)


def test_a_fade_longer_than_the_song_covers_it_whole(engine):
    result = _generate(engine, fade_in_duration=600, enable_normalization=False)
    audio = result.songs[0].audio
    assert result.params["fade_in_samples"] == audio.shape[0] and audio[0].tolist() == [0.0, 0.0]


def test_latent_shift_and_rescale_change_the_decoded_song(engine):
    plain = _generate(engine, enable_normalization=False).songs[0].audio
    neutral = _generate(engine, enable_normalization=False, latent_shift=0, latent_rescale=1).songs[0].audio
    shifted = _generate(engine, enable_normalization=False, latent_shift=0.5).songs[0].audio
    rescaled = _generate(engine, enable_normalization=False, latent_rescale=0.5)
    assert np.array_equal(plain, neutral)
    assert not np.allclose(plain, shifted) and not np.allclose(plain, rescaled.songs[0].audio)
    assert (rescaled.params["latent_shift"], rescaled.params["latent_rescale"]) == (0.0, 0.5)


def test_the_latents_are_shifted_after_the_sampler_and_before_the_vae(engine, monkeypatch):
    seen = {}
    real_decode = synthesizer.decode

    def spy(vae, latents, check=None):
        seen["latents"] = latents.clone()
        return real_decode(vae, latents, check)

    monkeypatch.setattr(synthesizer, "decode", spy)
    _generate(engine, enable_normalization=False)
    plain = seen["latents"]
    _generate(engine, enable_normalization=False, latent_shift=0.25, latent_rescale=1.5)
    assert torch.equal(seen["latents"], plain * 1.5 + 0.25)


def test_serverless_job_reports_the_finishing_and_default_bytes_differ_from_todays(engine, bypass_finishing):
    fields = {"caption": "tiny finish", "duration": 10, "seed": 3}
    default = run_job(engine, "finish-default", fields, env={})
    off = run_job(engine, "finish-off", {**fields, "enableNormalization": False}, env={})
    faded = run_job(engine, "finish-fade", {**fields, "fade_out_duration": 1, "normalization_db": -3}, env={})
    bypass_finishing()
    today = run_job(engine, "finish-today", fields, env={})
    assert off["results"][0]["sha256"] == today["results"][0]["sha256"]  # same bytes as before the feature
    assert default["results"][0]["sha256"] != today["results"][0]["sha256"]  # normalising is a change
    assert default["params"]["normalization_gain_db"][0] is not None
    assert off["params"]["normalization_gain_db"] == [None]
    assert faded["params"]["fade_out_samples"] == SR and faded["params"]["normalization_db"] == -3


def test_serverless_job_refuses_a_bad_value_naming_the_field(engine):
    with pytest.raises(InputError) as err:
        run_job(engine, "finish-bad", {"duration": 10, "normalization_db": 2}, env={})
    assert err.value.field == "normalization_db" and "dBFS from -60 to 0" in str(err.value)
