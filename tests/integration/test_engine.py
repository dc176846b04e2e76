"""The engine end to end on the tiny checkpoints: shapes, rules per variant, seeds, progress, stop."""

import numpy as np
import pytest

from acestep_worker.errors import GenerationCancelled, InputError
from acestep_worker.schema.request import parse


def _generate(engine, **fields):
    return engine.generate(parse({"caption": "tiny test", "duration": 10, **fields}))


def test_text2music_returns_stereo_48k_of_the_requested_length(engine):
    result = _generate(engine, seed=3)
    song, = result.songs
    assert song.sample_rate == 48000 and song.audio.shape == (480000, 2)
    assert song.audio.dtype == np.float32 and np.isfinite(song.audio).all()
    assert 0 < np.abs(song.audio).max() <= 1.0
    assert song.duration_s == 10.0 and song.seed == 3
    assert result.random_weights is True and result.model == "acestep-v15-turbo"
    assert set(result.timings) >= {"text_encoding", "conditioning", "diffusion", "vae_decode", "total"}


def test_same_seed_same_samples_other_seed_other_samples(engine):
    a = _generate(engine, seed=11).songs[0].audio
    b = _generate(engine, seed=11).songs[0].audio
    c = _generate(engine, seed=12).songs[0].audio
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_batch_seeds_count_up_from_one_seed_and_each_item_reproduces_alone(engine):
    batch = _generate(engine, seed=20, batch_size=2)
    assert [s.seed for s in batch.songs] == [20, 21]
    alone = _generate(engine, seed=21).songs[0].audio
    np.testing.assert_allclose(batch.songs[1].audio, alone, atol=1e-4)


def test_random_seeds_are_reported(engine):
    result = _generate(engine, batch_size=2)
    assert len({s.seed for s in result.songs}) == 2
    assert result.params["seeds"] == [s.seed for s in result.songs]


def test_turbo_defaults_and_rules(engine):
    result = _generate(engine, guidance_scale=7.0, shift=2.6)
    assert result.params["inference_steps"] == 8
    assert result.params["shift"] == 3.0  # snapped to the distilled shifts
    assert result.params["guidance_scale"] is None  # guidance does not apply to turbo


def test_turbo_rejects_more_than_eight_steps(engine):
    with pytest.raises(InputError, match="between 1 and 8 for turbo") as err:
        _generate(engine, inference_steps=20)
    assert err.value.field == "inference_steps"


def test_base_model_uses_cfg_and_its_own_defaults(engine):
    result = _generate(engine, model="acestep-v15-base", inference_steps=4, seed=1)
    assert result.model == "acestep-v15-base"
    assert result.params["guidance_scale"] == 7.0 and result.params["guidance"] == "apg"
    adg = _generate(engine, model="acestep-v15-base", inference_steps=4, seed=1, use_adg=True)
    assert adg.params["guidance"] == "adg"
    assert not np.allclose(result.songs[0].audio, adg.songs[0].audio)


def test_custom_timesteps_only_for_turbo(engine):
    ok = _generate(engine, timesteps="1,0.8,0.5,0.26,0")
    assert ok.params["inference_steps"] == 4
    with pytest.raises(InputError, match="turbo models only"):
        _generate(engine, model="acestep-v15-base", timesteps="1,0.5")


def test_unknown_model_lists_installed_ones(engine):
    with pytest.raises(InputError, match="available: acestep-v15-turbo, acestep-v15-base"):
        _generate(engine, model="acestep-v15-nope")


def test_models_are_discovered_next_to_the_primary(engine):
    names = {m.name: m for m in engine.models.installed()}
    assert names["acestep-v15-turbo"].is_default and names["acestep-v15-base"].family == "base"


def test_metadata_and_lyrics_reach_the_text_encoder(engine):
    plain = _generate(engine, seed=5).songs[0].audio
    with_meta = _generate(engine, seed=5, bpm=90, key_scale="D minor", time_signature="3").songs[0].audio
    with_lyrics = _generate(engine, seed=5, lyrics="[Verse]\nhello hello").songs[0].audio
    assert not np.allclose(plain, with_meta) and not np.allclose(plain, with_lyrics)


def test_progress_is_monotonic_and_ends_at_one(engine):
    seen = []
    engine.generate(parse({"duration": 10}), on_progress=seen.append)
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    steps = [p.step for p in seen if p.stage == "diffusion"]
    assert steps[-1] == 8 and [p.stage for p in seen][0] == "text_encoding"


def test_diffusion_progress_counts_the_schedules_steps(engine):
    """Custom timesteps set how many steps run; the stage's first report says so too."""
    seen = []
    engine.generate(parse({"duration": 10, "inference_steps": 2, "timesteps": [1.0, 0.5, 0.25]}),
                    on_progress=seen.append)
    assert {p.total_steps for p in seen if p.stage == "diffusion"} == {3}


def test_a_job_planned_for_the_default_model_runs_on_the_default_held_when_it_runs(tiny_env):
    """A pod task queued with no `model` while /v1/init switches the DiT runs on the new default
    (checked against its rules), not on the one it was submitted under."""
    from acestep_worker.pipeline.engine import Engine
    from acestep_worker.settings import Settings

    own = Engine(Settings.from_env(tiny_env))
    plan = own.plan(parse({"duration": 10, "seed": 3}))
    assert plan.variant.name == "acestep-v15-turbo"
    own.models.init_models("acestep-v15-base")
    result = own.run(plan)
    assert result.model == "acestep-v15-base" and result.params["seeds"] == [3]
    assert [info.name for info in own.models.installed() if info.loaded] == ["acestep-v15-base"]  # one DiT held


def test_should_stop_cancels_between_steps_and_engine_keeps_working(engine):
    calls = []

    def stop_after_three():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(GenerationCancelled):
        engine.generate(parse({"duration": 10}), should_stop=stop_after_three)
    assert len(calls) == 4  # checked at each boundary, stopped at the first "yes"
    assert _generate(engine, seed=1).songs[0].audio.shape == (480000, 2)


def test_durations_use_upstream_frame_rounding(engine):
    result = _generate(engine, duration=12.34)
    # round(12.34, 1) = 12.3 s -> int(12.3 * 48000) // 1920 = 307 frames
    assert result.songs[0].audio.shape[0] == 307 * 1920
