"""Upstream's editing tasks through `Engine.generate` on the tiny checkpoints, with synthetic audio.

The adapters decode audio; here the engine gets float32 [samples, 2] arrays at 48 kHz directly.
Sources are kept short: the tiny VAE encoder is slow on a CPU.
"""

import numpy as np
import pytest
import torch

from acestep_worker.errors import InputError
from acestep_worker.models.dit.conditioning import silence_frames
from acestep_worker.models.dit.text_prompts import Metas
from acestep_worker.pipeline import edit_conditions as edit_inputs
from acestep_worker.pipeline.synthesizer import SongSpec
from acestep_worker.schema import task_types as tasks
from acestep_worker.schema.request import parse

BASE = "acestep-v15-base"
SR = 48_000


def _audio(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)[:, None] + 0.05 * rng.standard_normal((t.size, 2))
    return tone.astype(np.float32)


SOURCE = _audio(1.0)


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
    steered = _edit(engine, {"reference_audio": _audio(0.5, seed=1)}, duration=10)
    assert steered.params["reference_audio"] is True and steered.params["task_type"] == "text2music"
    assert steered.songs[0].audio.shape == plain.shape and not np.allclose(steered.songs[0].audio, plain)


def test_repaint_keeps_the_source_outside_the_range_and_changes_it_inside(engine):
    result = _edit(engine, {"src_audio": SOURCE}, task_type="repaint", repainting_start=0.4, repainting_end=0.8)
    out = result.songs[0].audio
    assert result.params["repaint_frames"] == [10, 20]
    np.testing.assert_array_equal(out[: int(0.4 * SR)], SOURCE[: int(0.4 * SR)])  # hard-cut splice
    np.testing.assert_array_equal(out[int(0.8 * SR):], SOURCE[int(0.8 * SR):])
    assert not np.allclose(out[int(0.4 * SR):int(0.8 * SR)], SOURCE[int(0.4 * SR):int(0.8 * SR)])


def test_a_range_past_the_end_extends_the_song(engine):
    result = _edit(engine, {"src_audio": SOURCE}, task_type="repaint", repainting_start=0.5, repainting_end=2.0)
    assert result.songs[0].audio.shape == (2 * SR, 2)
    assert result.params["repaint_frames"] == [12, 50]


def test_a_negative_start_pads_the_source_on_the_left():
    region = tasks.region_for(-0.5, 0.5, SR)
    assert region.pad_left_samples == SR // 2 and region.pad_right_samples == 0
    assert (region.start_frame, region.end_frame) == (0, 25)


def test_the_condition_and_the_repaint_injection_pad_and_crop_the_source_alike():
    silence = torch.arange(8.0)[:, None].repeat(1, 4)  # frame i of silence holds i
    latents = torch.full((3, 4), -1.0)
    source = edit_inputs.Source(torch.zeros(2, 3 * 1920), latents, 3 * 1920 / SR, "", tasks.Region(0, 0, 1, 2))
    padded = edit_inputs.source_at_length(source, silence, 8)
    assert padded[:3].eq(-1).all() and padded[3:, 0].tolist() == [0, 1, 2, 3, 4]  # silence restarts at frame 0
    assert edit_inputs.source_at_length(source, silence, 2).shape == (2, 4)  # a longer source is cropped
    edit = edit_inputs.EditInputs(tasks.TASKS["repaint"], source=source)
    for frames in (8, 2):
        clean = edit_inputs.source_at_length(source, silence, frames)  # what repaint injects
        src, _, repaint = edit_inputs.source_rows(edit, silence, frames)  # what the model conditions on
        assert torch.equal(src[~repaint], clean[~repaint]) and src[1].eq(1).all()  # the range: silence's frame
    assert latents.eq(-1).all()  # silencing the range leaves the source itself alone


@pytest.mark.parametrize("start, end, expected", [(0.0, None, (0, 25)), (0.0, -1, (0, 25)), (0.33, 0.61, (8, 15)),
                                                  (0.99, 1.0, (24, 25))])
def test_seconds_become_frames_by_flooring(start, end, expected):
    region = tasks.region_for(start, end, SR)
    assert (region.start_frame, region.end_frame) == expected


def test_turbo_refuses_base_only_tasks_before_generating_naming_the_models_that_can(engine):
    with pytest.raises(InputError) as err:
        engine.plan(parse({"task_type": "extract", "track_name": "vocals"}))
    assert err.value.field == "task_type" and BASE in str(err.value) and "acestep-v15-turbo" in str(err.value)


def test_a_source_task_without_src_audio_is_refused(engine):
    with pytest.raises(InputError) as err:
        engine.generate(parse({"task_type": "cover"}))
    assert err.value.field == "src_audio"


@pytest.mark.parametrize("fields, field", [
    ({"repainting_start": 5, "repainting_end": 2}, "repainting_end"),
    ({"track_name": "kazoo"}, "track_name"),
    ({"track_classes": ["drums", "theremin"]}, "track_classes"),
    ({"repaint_mode": "wild"}, "repaint_mode"),
    ({"audio_cover_strength": 1.5}, "audio_cover_strength"),
    ({"dcw_wavelet": "db4"}, "dcw_wavelet"),
])
def test_bad_editing_fields_name_the_field(fields, field):
    with pytest.raises(InputError) as err:
        parse({"task_type": "repaint", **fields})
    assert err.value.field == field


def test_instructions_follow_upstream_wording():
    assert tasks.instruction_for("extract", "backing_vocals") == "Extract the BACKING_VOCALS track from the audio:"
    assert tasks.instruction_for("lego") == "Generate the track based on the audio context:"
    assert tasks.instruction_for("complete", track_classes=("bass", "drums")) == \
        "Complete the input track with BASS | DRUMS:"
    assert tasks.instruction_for("cover-nofsq") == tasks.instruction_for("cover")
    assert tasks.instruction_for("repaint", override="Make it brighter") == "Make it brighter:"


def test_model_families_support_upstream_task_lists():
    four = ["text2music", "cover", "cover-nofsq", "repaint"]
    assert tasks.supported_task_types("turbo") == four and tasks.supported_task_types("xl-sft") == four
    assert tasks.supported_task_types("xl-base") == list(tasks.TASK_TYPES)


def test_reference_slicing_is_reproducible_for_a_seed():
    audio = _audio(40.0)
    a, b = edit_inputs.reference_clip(audio, seed=7), edit_inputs.reference_clip(audio, seed=7)
    c = edit_inputs.reference_clip(audio, seed=8)
    assert a.shape == (2, 30 * SR) and torch.equal(a, b) and not torch.equal(a, c)


def test_a_short_reference_is_tiled_to_thirty_seconds():
    assert edit_inputs.reference_clip(_audio(4.0), seed=1).shape == (2, 30 * SR)


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
                                                       edit_inputs.EditInputs(tasks.TASKS["text2music"]))
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
    """Windows with enough context give the same latents as one pass (fp32 tolerance)."""
    from acestep_worker.models.vae import encode

    vae = engine.synthesizer.vae
    audio = torch.from_numpy(_audio(1.6).T.copy()).unsqueeze(0)
    saved = vae.use_tiling, vae.tile_sample_min_length, vae.tile_sample_overlap
    try:
        vae.use_tiling = False
        whole = encode(vae, audio)
        vae.use_tiling, vae.tile_sample_min_length, vae.tile_sample_overlap = True, int(1.2 * SR), int(0.4 * SR)
        tiled = encode(vae, audio)
    finally:
        vae.use_tiling, vae.tile_sample_min_length, vae.tile_sample_overlap = saved
    assert whole.shape == tiled.shape == (1, 40, 64)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-4)


def test_a_range_that_would_outgrow_the_longest_song_is_refused(engine):
    with pytest.raises(InputError) as err:
        _edit(engine, {"src_audio": SOURCE}, task_type="repaint", repainting_start=0.5, repainting_end=700)
    assert err.value.field == "repainting_end" and "600" in str(err.value)
