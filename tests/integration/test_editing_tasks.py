"""Upstream's editing tasks through `Engine.generate` and serverless jobs on the tiny checkpoints, with
synthetic audio. Sources are kept short: the tiny VAE encoder is slow on a CPU."""

import numpy as np
import pytest
import torch

from acestep_worker.doors.serverless import run_job
from acestep_worker.errors import InputError
from acestep_worker.models.dit.conditioning import silence_frames
from acestep_worker.models.dit.text_prompts import Metas
from acestep_worker.pipeline import edit_conditions
from acestep_worker.pipeline.synthesizer import SongSpec
from acestep_worker.schema import task_types
from acestep_worker.schema.request import parse

from ..support.audio import B64, decoded_song


def _job(engine, job_id, s3_config=None, **fields):
    return run_job(engine, job_id, {"caption": "tiny edit", "seed": 3, **fields}, s3_config=s3_config, env={})


def test_serverless_repaint_from_base64_keeps_the_sources_length(engine):
    out = _job(engine, "edit-repaint", src_audio=B64, task_type="repaint", repainting_start=0.2,
               repainting_end=0.6)
    assert out["task_type"] == "repaint" and out["source"]["duration_s"] == 1.0
    assert out["results"][0]["duration"] == 1.0


BASE = "acestep-v15-base"
SR = 48_000


SOURCE = decoded_song(1.0)


def _edit(engine, audio=None, **fields):
    return engine.generate(parse({"caption": "tiny edit", "seed": 5, **fields}), audio=audio)


TASK_CASES = [
    ("cover", {}, {}),
    ("cover-nofsq", {}, {}),
    ("repaint", {"repainting_start": 0.2, "repainting_end": 0.6}, {}),
    ("extract", {"track_name": "drums"}, {"model": BASE, "inference_steps": 3}),
    ("lego", {"track_name": "Guitar", "repainting_start": 0.2}, {"model": BASE, "inference_steps": 3}),
    ("complete", {"track_classes": ["bass", "drums"]}, {"model": BASE, "inference_steps": 3}),
]


@pytest.mark.parametrize("task, fields, model", TASK_CASES, ids=[c[0] for c in TASK_CASES])
def test_each_source_task_runs_end_to_end_and_keeps_the_source_length(engine, task, fields, model):
    result = _edit(engine, {"src_audio": SOURCE}, task_type=task, **fields, **model)
    song, = result.songs
    assert song.audio.shape == SOURCE.shape and np.isfinite(song.audio).all()
    assert result.params["task_type"] == task and result.params["source_duration_s"] == 1.0
    assert "vae_encode" in result.timings


def test_text2music_with_a_reference_audio_steers_timbre(engine):
    """The tiny checkpoints' timbre clip is 3 s (their timbre_fix_frame), the real ones' 30 s."""
    plain = _edit(engine, duration=10).songs[0].audio
    steered = _edit(engine, {"reference_audio": decoded_song(0.5, seed=1)}, duration=10)
    assert steered.params["reference_audio"] is True and steered.params["task_type"] == "text2music"
    assert steered.songs[0].audio.shape == plain.shape and not np.allclose(steered.songs[0].audio, plain)


def test_repaint_keeps_the_source_outside_the_range_and_changes_it_inside(engine):
    fields = {"task_type": "repaint", "repainting_start": 0.4, "repainting_end": 0.8}
    result = _edit(engine, {"src_audio": SOURCE}, enable_normalization=False, **fields)
    out = result.songs[0].audio
    assert result.params["repaint_frames"] == [10, 20]
    np.testing.assert_array_equal(out[: int(0.4 * SR)], SOURCE[: int(0.4 * SR)])  # hard-cut splice
    np.testing.assert_array_equal(out[int(0.8 * SR):], SOURCE[int(0.8 * SR):])
    assert not np.allclose(out[int(0.4 * SR):int(0.8 * SR)], SOURCE[int(0.4 * SR):int(0.8 * SR)])
    # Upstream normalises after the splice: by default the whole song, kept source included, has one gain.
    normalized = _edit(engine, {"src_audio": SOURCE}, **fields)
    gain = 10 ** (normalized.params["normalization_gain_db"][0] / 20)
    assert np.abs(normalized.songs[0].audio).max() == pytest.approx(10 ** (-1 / 20), rel=1e-6)
    np.testing.assert_allclose(normalized.songs[0].audio, out * gain, rtol=1e-5, atol=1e-7)


def test_a_range_past_the_end_extends_the_song(engine):
    result = _edit(engine, {"src_audio": SOURCE}, task_type="repaint", repainting_start=0.5, repainting_end=2.0)
    assert result.songs[0].audio.shape == (2 * SR, 2)
    assert result.params["repaint_frames"] == [12, 50]


def test_turbo_refuses_base_only_tasks_before_generating_naming_the_models_that_can(engine):
    with pytest.raises(InputError) as err:
        engine.plan(parse({"task_type": "extract", "track_name": "vocals"}))
    assert err.value.field == "task_type" and BASE in str(err.value) and "acestep-v15-turbo" in str(err.value)


def test_a_source_task_without_src_audio_is_refused(engine):
    with pytest.raises(InputError) as err:
        engine.generate(parse({"task_type": "cover"}))
    assert err.value.field == "src_audio"


def test_audio_code_string_skips_the_planner_and_sets_the_length(engine):
    codes = "".join(f"<|audio_code_{n}|>" for n in range(0, 60_000, 1_000))  # 60 codes = 12 s
    result = _edit(engine, audio_code_string=codes, thinking=True)  # no planner: thinking is not needed
    assert result.songs[0].audio.shape == (60 * 5 * 1920, 2)


def test_given_codes_replace_the_source_song_of_a_cover(engine):
    """Upstream ignores src_audio when codes are given, and a cover needs no source then: the codes'
    length wins over the source's and the duration's."""
    codes = "".join(f"<|audio_code_{n}|>" for n in range(0, 60_000, 1_000))  # 60 codes = 300 frames
    alone = _edit(engine, task_type="cover", audio_code_string=codes, duration=20)
    with_source = _edit(engine, {"src_audio": SOURCE}, task_type="cover", audio_code_string=codes, duration=20)
    assert alone.songs[0].audio.shape == (300 * 1920, 2) and alone.params["task_type"] == "cover"
    assert "source_duration_s" not in with_source.params and "vae_encode" not in with_source.timings
    np.testing.assert_array_equal(with_source.songs[0].audio, alone.songs[0].audio)


@pytest.mark.parametrize("task", ["repaint", "lego"])
def test_codes_cannot_stand_in_for_a_source_with_a_range(engine, task):
    codes = "<|audio_code_1|>" * 30
    with pytest.raises(InputError) as err:
        engine.plan(parse({"caption": "x", "task_type": task, "audio_code_string": codes, "model": BASE}))
    assert err.value.field == "audio_code_string"


def test_codes_shorter_than_the_minimum_length_give_a_128_frame_song(engine):
    """Upstream never generates fewer than 128 frames (5.12 s), codes or not, and does not trim back."""
    codes = "".join(f"<|audio_code_{n}|>" for n in range(10))  # 10 codes = 50 frames = 2 s
    result = _edit(engine, audio_code_string=codes)
    assert result.songs[0].audio.shape == (128 * 1920, 2)


@pytest.mark.parametrize("hint_frames", [50, 200], ids=["short", "long"])
def test_code_hints_are_cropped_or_padded_with_silence_from_its_first_frame(engine, hint_frames):
    """As upstream pads both sources and code hints to the batch length (never zeros, never
    silence continuing at the hints' own length)."""
    dit = engine.models.dit()
    hints = torch.full((hint_frames, dit.silence_latent.shape[-1]), 3.0)
    song = SongSpec(caption="x", lyrics="", language="en", metas=Metas(), seed=1, code_hints=hints)
    captions, lyrics, _ = engine.synthesizer.encode_prompts([song])
    conditions = engine.synthesizer.prepare_conditions(dit, [song], captions, lyrics, 128,
                                                       edit_conditions.EditInputs(task_types.TASKS["text2music"]))
    followed = conditions.context_latents[0, :, :hints.shape[1]]  # [128, C]: what the DiT follows
    kept = min(hint_frames, 128)
    assert followed.shape[0] == 128 and followed[:kept].eq(3).all()
    assert torch.equal(followed[kept:], silence_frames(dit, 128 - kept).to(followed.dtype))
    # The codes are the item's source too (cover noise starts from them), as upstream's src_latents.
    assert torch.equal(conditions.source_latents[0], followed.to(conditions.source_latents.dtype))


def test_cover_strength_and_cover_noise_change_the_song(engine):
    full = _edit(engine, {"src_audio": SOURCE}, task_type="cover").songs[0].audio
    half = _edit(engine, {"src_audio": SOURCE}, task_type="cover", audio_cover_strength=0.5,
                 cover_noise_strength=0.3).songs[0].audio
    assert full.shape == half.shape and not np.allclose(full, half)


def test_dcw_is_on_for_turbo_by_default_and_can_be_switched_off(engine):
    on = _edit(engine, duration=10)
    off = _edit(engine, duration=10, dcw_enabled=False)
    assert on.params["dcw"]["mode"] == "double" and off.params["dcw"] is None
    assert not np.allclose(on.songs[0].audio, off.songs[0].audio)


def test_dcw_is_off_for_base_by_default(engine):
    assert _edit(engine, duration=10, model=BASE, inference_steps=2).params["dcw"] is None


def test_sde_is_deterministic_for_a_seed_and_differs_from_ode(engine):
    a = _edit(engine, duration=10, infer_method="sde").songs[0].audio
    b = _edit(engine, duration=10, infer_method="sde").songs[0].audio
    ode = _edit(engine, duration=10).songs[0].audio
    assert np.array_equal(a, b) and not np.allclose(a, ode)


def test_tiled_vae_encode_matches_untiled(engine):
    """Windows with enough context give the same latents (the posterior mean) as one pass (fp32 tolerance)."""
    from acestep_worker.models.vae import encode

    vae = engine.synthesizer.vae
    audio = torch.from_numpy(decoded_song(1.6).T.copy()).unsqueeze(0)
    whole = encode(vae, audio)
    tiled = encode(vae, audio, chunk=int(1.2 * SR), overlap=int(0.4 * SR))
    assert whole.shape == tiled.shape == (1, 40, 64)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-4)


def test_a_range_that_would_outgrow_the_longest_song_is_refused(engine):
    with pytest.raises(InputError) as err:
        _edit(engine, {"src_audio": SOURCE}, task_type="repaint", repainting_start=0.5, repainting_end=700)
    assert err.value.field == "repainting_end" and "600" in str(err.value)
