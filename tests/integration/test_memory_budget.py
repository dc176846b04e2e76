"""The memory check: duration x batch (x2 with CFG) against what the device has, refused with the
largest batch that fits, tested on the CPU with small budgets."""


import pytest
import torch

from acestep_worker.errors import InputError
from acestep_worker.models import vae
from acestep_worker.pipeline.memory_budget import MemoryBudget, check_fits, generation_need
from acestep_worker.schema.request import parse
from acestep_worker.schema.units import frames_for_duration


def test_the_need_grows_with_batch_duration_and_cfg(engine):
    config = engine.models.dit().transformer.config
    small = generation_need(config, frames_for_duration(30), 1, False, 4)
    assert generation_need(config, frames_for_duration(600), 1, False, 4).device_bytes > small.device_bytes
    assert generation_need(config, frames_for_duration(30), 8, False, 4).host_bytes == 8 * small.host_bytes
    assert generation_need(config, frames_for_duration(30), 1, True, 4).device_bytes > small.device_bytes


@pytest.mark.parametrize("seconds", [10, 600])
def test_the_decode_share_is_at_most_one_tile_at_the_vaes_bytes_per_frame(engine, monkeypatch, seconds):
    config, frames = engine.models.dit().transformer.config, frames_for_duration(seconds)
    before = generation_need(config, frames, 1, False, 2).device_bytes
    monkeypatch.setattr(vae, "_DECODE_BYTES_PER_FRAME_PER_DTYPE_BYTE", vae._DECODE_BYTES_PER_FRAME_PER_DTYPE_BYTE + 1)
    after = generation_need(config, frames, 1, False, 2).device_bytes
    assert after - before == 2 * min(frames, vae.DECODE_CHUNK_FRAMES)  # one byte more per frame, in bf16


def test_an_operators_larger_vae_tile_is_counted(engine):
    """ACESTEP_VAE_TILE_FRAMES fixes the tile vae.decode_plan takes: the check counts that tile."""
    config, frames = engine.models.dit().transformer.config, frames_for_duration(600)
    default = generation_need(config, frames, 1, False, 2).device_bytes
    larger = generation_need(config, frames, 1, False, 2, tile_frames=2048).device_bytes
    assert larger - default == (2048 - vae.DECODE_CHUNK_FRAMES) * vae.decode_bytes_per_frame(2)
    budget_mb = (default + generation_need(config, frames, 1, False, 2).host_bytes) / 1e6 + 1
    check_fits(config, frames, 1, False, 2, MemoryBudget(torch.device("cpu"), budget_mb))  # fits with the default tile
    with pytest.raises(InputError, match="even alone"):
        check_fits(config, frames, 1, False, 2, MemoryBudget(torch.device("cpu"), budget_mb, tile_frames=2048))


def test_a_request_that_does_not_fit_names_the_largest_batch_that_does(engine):
    config, frames = engine.models.dit().transformer.config, frames_for_duration(600)
    need = [generation_need(config, frames, size, False, 4) for size in (1, 2, 3, 4)]
    budget_mb = (need[2].device_bytes + need[2].host_bytes + 1) / 1_000_000  # room for exactly 3
    with pytest.raises(InputError, match="the largest batch that fits is 3") as err:
        check_fits(config, frames, 8, False, 4, MemoryBudget(torch.device("cpu"), budget_mb))
    assert err.value.field == "batch_size"
    check_fits(config, frames, 3, False, 4, MemoryBudget(torch.device("cpu"), budget_mb))
    with pytest.raises(InputError, match="even alone") as err:
        check_fits(config, frames, 1, False, 4, MemoryBudget(torch.device("cpu"), 1))
    assert err.value.field == "duration"


def test_the_engine_refuses_before_any_work(engine, monkeypatch):
    two = generation_need(engine.models.dit().transformer.config, frames_for_duration(600), 2, False, 4)
    budget_mb = (two.device_bytes + two.host_bytes + 1) / 1_000_000
    monkeypatch.setattr(engine.pipeline, "memory", MemoryBudget(engine.models.device, budget_mb))
    stages = []
    with pytest.raises(InputError, match="largest batch that fits is 2"):
        engine.generate(parse({"duration": 600, "batch_size": 8}), on_progress=lambda p: stages.append(p.stage))
    assert stages == []  # nothing ran
    monkeypatch.undo()
    assert len(engine.generate(parse({"duration": 10, "batch_size": 2})).songs) == 2


def test_given_codes_not_the_duration_set_the_length_that_is_checked(engine, monkeypatch):
    one = generation_need(engine.models.dit().transformer.config, frames_for_duration(600), 1, False, 4)
    budget_mb = (one.device_bytes + one.host_bytes + 1) / 1_000_000  # one 600 s song
    monkeypatch.setattr(engine.pipeline, "memory", MemoryBudget(engine.models.device, budget_mb))
    codes = "<|audio_code_7|>" * 30  # 6 s: the duration only goes into the prompt
    result = engine.generate(parse({"duration": 600, "batch_size": 2, "audio_code_string": codes}))
    assert [song.audio.shape[0] for song in result.songs] == [150 * 1920] * 2


def test_the_engine_checks_with_its_configured_vae_tile(tiny_env, engine):
    from acestep_worker.pipeline.engine import Engine
    from acestep_worker.settings import Settings

    config, frames = engine.models.dit().transformer.config, frames_for_duration(600)
    need = generation_need(config, frames, 1, False, 4)
    budget_mb = str((need.device_bytes + need.host_bytes) / 1e6 + 1)  # fits the default tile, not 8192 frames
    tiled = Engine(Settings.from_env({**tiny_env, "ACESTEP_VAE_TILE_FRAMES": "8192", "ACESTEP_MEMORY_BUDGET_MB": budget_mb}))
    with pytest.raises(InputError, match="even alone"):
        tiled.generate(parse({"caption": "x", "duration": 600}))
