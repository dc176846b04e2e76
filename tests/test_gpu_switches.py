"""The GPU path's switches, each checked on the CPU against the plain path it replaces."""

import pytest
import torch

from acestep_worker import tiny
from acestep_worker.dit.loading import load_dit
from acestep_worker.dit.model import compile_blocks
from acestep_worker.dit.sampler import SamplingPlan, sample
from acestep_worker.dit.schedules import turbo_timesteps
from acestep_worker.settings import Settings, SettingsError
from acestep_worker.vae import DECODE_CHUNK_FRAMES, decode, decode_plan, load_vae

from .test_condition_cache import _inputs


@pytest.fixture(scope="module")
def vae(tiny_root):
    return load_vae(tiny_root / tiny.VAE_FOLDER, "cpu", torch.float32)


def _latents(batch, frames, seed=0):
    return torch.randn(batch, frames, 64, generator=torch.Generator().manual_seed(seed))


def test_cpu_decode_keeps_upstreams_tiles_one_item_at_a_time(vae):
    assert decode_plan(vae, batch=4, frames=3000) == (DECODE_CHUNK_FRAMES, 1)
    assert decode_plan(vae, batch=4, frames=3000, tile_frames=1024) == (1024, 1)


def test_one_tile_covering_the_song_equals_the_untiled_decode(vae):
    latents = _latents(1, 300)
    one_tile = decode(vae, latents, tile_frames=512)
    vae.use_tiling = False
    try:
        untiled = decode(vae, latents)
    finally:
        vae.use_tiling = True
    assert torch.equal(one_tile, untiled)


def test_decoding_a_batch_together_equals_one_item_at_a_time(vae):
    latents = _latents(3, 200, seed=1)
    together = decode(vae, latents, together=3)
    alone = decode(vae, latents, together=1)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)


def test_larger_tiles_change_only_the_seams_within_codec_noise(vae):
    latents = _latents(1, 700, seed=2)
    small, large = decode(vae, latents, tile_frames=256), decode(vae, latents, tile_frames=1024)
    assert small.shape == large.shape
    assert (small - large).abs().max() < 0.05 * large.abs().max()


def test_vae_tile_setting_is_read_and_checked():
    env = {"ACESTEP_CONFIG_PATH": "x"}
    assert Settings.from_env(env).vae_tile_frames is None
    assert Settings.from_env({**env, "ACESTEP_VAE_TILE_FRAMES": "2048"}).vae_tile_frames == 2048
    with pytest.raises(SettingsError, match="ACESTEP_VAE_TILE_FRAMES"):
        Settings.from_env({**env, "ACESTEP_VAE_TILE_FRAMES": "64"})
    assert Settings.from_env({**env, "ACESTEP_DIT_COMPILE": "1"}).compile_dit is True


def test_regionally_compiled_blocks_sample_the_same_latents(tiny_root):
    plain_dit, compiled_dit = (load_dit(tiny_root / "acestep-v15-turbo") for _ in range(2))
    compile_blocks(compiled_dit.transformer)
    plan = SamplingPlan(turbo_timesteps(3.0))
    for frames in (40, 56):  # a second length must not need a new graph per duration to be right
        conditions, noise = _inputs(plain_dit, batch=2, frames=frames)
        expected = sample(plain_dit, conditions, noise, plan)
        torch.testing.assert_close(sample(compiled_dit, conditions, noise, plan), expected, rtol=1e-4, atol=1e-5)
