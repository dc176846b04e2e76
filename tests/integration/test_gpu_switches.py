"""The GPU path's switches, each checked on the CPU against the plain path it replaces, on the tiny models."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from acestep_worker.dev import tiny
from acestep_worker.models.dit.attention import AttentionChoice, dit_attention, resolve_attention
from acestep_worker.models.dit.loading import load_dit
from acestep_worker.models.dit.model import compile_blocks
from acestep_worker.models.dit.sampler import SamplingPlan, sample
from acestep_worker.models.dit.schedules import turbo_timesteps
from acestep_worker.models.vae import DECODE_CHUNK_FRAMES, decode, decode_plan, load_vae
from acestep_worker.settings import Settings, SettingsError

from ..support.dit import dit_inputs


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


# One tile, and three tiles (72-frame cores with 64 frames of context) whose seams the batch shares.
@pytest.mark.parametrize("batch, frames, tile_frames", [(3, 200, None), (2, 210, 200)])
def test_decoding_a_batch_together_equals_one_item_at_a_time(vae, batch, frames, tile_frames):
    latents = _latents(batch, frames, seed=1)
    together = decode(vae, latents, tile_frames=tile_frames, together=batch)
    alone = decode(vae, latents, tile_frames=tile_frames, together=1)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)


def test_larger_tiles_change_only_the_seams_within_codec_noise(vae):
    latents = _latents(1, 700, seed=2)
    small, large = decode(vae, latents, tile_frames=256), decode(vae, latents, tile_frames=1024)
    assert small.shape == large.shape
    assert (small - large).abs().max() < 0.05 * large.abs().max()


def test_regionally_compiled_blocks_sample_the_same_latents(tiny_root):
    plain_dit, compiled_dit = (load_dit(tiny_root / "acestep-v15-turbo") for _ in range(2))
    compile_blocks(compiled_dit.transformer)
    plan = SamplingPlan(turbo_timesteps(3.0))
    for frames in (40, 56):  # a second length must not need a new graph per duration to be right
        conditions, noise = dit_inputs(plain_dit, batch=2, frames=frames)
        expected = sample(plain_dit, conditions, noise, plan)
        torch.testing.assert_close(sample(compiled_dit, conditions, noise, plan), expected, rtol=1e-4, atol=1e-5)


def test_regionally_compiled_blocks_compose_with_flex_attention_and_the_sdpa_switch(tiny_root):
    # Inductor's CPU FlexAttention template does not build with dynamic shapes (torch 2.13: C++
    # compile error), so the blocks are traced by dynamo and run eagerly. What must hold on a GPU
    # too is checked: the block mask as a graph input, flex and sdpa_kernel traced inside the block,
    # one graph for both lengths, equal latents. The CUDA kernels are bench/gpu.py's to measure.
    plain_dit, compiled_dit = (load_dit(tiny_root / "acestep-v15-turbo") for _ in range(2))
    compile_blocks(compiled_dit.transformer, backend="eager")
    plan = SamplingPlan(turbo_timesteps(3.0))
    for frames in (300, 360):  # 150 and 180 tokens: two 128-token blocks of the flex mask each
        conditions, noise = dit_inputs(plain_dit, batch=2, frames=frames)
        expected = sample(plain_dit, conditions, noise, plan)
        with dit_attention(AttentionChoice("flex", "math")):
            switched = sample(compiled_dit, conditions, noise, plan)
        torch.testing.assert_close(switched, expected, rtol=1e-4, atol=1e-5)


class _CountOps(TorchDispatchMode):
    def __init__(self, name: str):
        super().__init__()
        self.name, self.count = name, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += self.name in str(func)
        return func(*args, **(kwargs or {}))


def test_math_sdpa_backend_equals_auto_on_the_cpu_and_runs_every_unmasked_layer(tiny_root):
    dit = load_dit(tiny_root / "acestep-v15-turbo")
    transformer = dit.transformer
    g = torch.Generator().manual_seed(1)
    x, context = torch.randn(2, 180, 64, generator=g), torch.randn(2, 180, 128, generator=g)
    conditions, t = torch.randn(2, 9, transformer.config.hidden_size, generator=g), torch.tensor([0.6, 0.6])
    outputs, fused = {}, {}
    for backend in ("auto", "math"):
        # PyTorch's own CPU choice is its fused flash kernel; the math backend is plain matmuls.
        with torch.no_grad(), dit_attention(AttentionChoice("dense", backend)), \
                _CountOps("_scaled_dot_product_flash_attention_for_cpu") as ops:
            outputs[backend] = transformer(x, t, t, conditions, context, return_dict=False)[0]
        fused[backend] = ops.count
    unmasked = transformer.layer_types.count("full_attention") + sum(
        bool(getattr(layer, "use_cross_attention", False)) for layer in transformer.layers)
    assert unmasked > 0 and fused["auto"] - fused["math"] == unmasked  # sliding (masked) layers keep theirs
    torch.testing.assert_close(outputs["math"], outputs["auto"], rtol=1e-5, atol=1e-5)


def test_backends_without_grouped_heads_get_the_kv_heads_repeated_and_the_same_attention(tiny_root, monkeypatch):
    # The efficient and cuDNN kernels exist only on CUDA; here "efficient" is pointed at the math
    # kernel, which runs either way, so what is checked is the head expansion in front of it.
    from acestep_worker.models.dit import attention

    transformer = load_dit(tiny_root / "acestep-v15-turbo").transformer
    assert transformer.config.num_attention_heads > transformer.config.num_key_value_heads  # GQA, as the real DiT
    g = torch.Generator().manual_seed(2)
    x, context = torch.randn(1, 120, 64, generator=g), torch.randn(1, 120, 128, generator=g)
    conditions, t = torch.randn(1, 7, transformer.config.hidden_size, generator=g), torch.tensor([0.3])
    with torch.no_grad():
        plain = transformer(x, t, t, conditions, context, return_dict=False)[0]
    monkeypatch.setitem(attention.SDPA_BACKENDS, "efficient", attention.SDPBackend.MATH)
    grouped = []
    original = attention._ORIGINAL_DISPATCH
    monkeypatch.setattr(attention, "_ORIGINAL_DISPATCH", lambda q, k, v, **kw: grouped.append(
        (kw["enable_gqa"], k.shape[2] == q.shape[2])) or original(q, k, v, **kw))
    with torch.no_grad(), dit_attention(AttentionChoice("dense", "efficient")):
        expanded = transformer(x, t, t, conditions, context, return_dict=False)[0]
    assert (False, True) in grouped and (True, False) in grouped  # unmasked calls expanded, masked ones not
    torch.testing.assert_close(expanded, plain, rtol=1e-5, atol=1e-5)


def test_sdpa_backend_setting_is_read_and_checked_against_the_device(tiny_env):
    from acestep_worker.pipeline.engine import Engine

    env = {"ACESTEP_CONFIG_PATH": "x"}
    assert Settings.from_env(env).sdpa_backend == "auto"
    assert Settings.from_env({**env, "ACESTEP_SDPA_BACKEND": "Flash"}).sdpa_backend == "flash"
    with pytest.raises(SettingsError, match=r"^ACESTEP_SDPA_BACKEND must be auto, flash, efficient, cudnn, math; "
                                            r"got 'fast'$"):
        Settings.from_env({**env, "ACESTEP_SDPA_BACKEND": "fast"})
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_attention("auto", "math", cpu, torch.float32) == AttentionChoice("banded", "math")
    assert resolve_attention("auto", "flash", cuda, torch.bfloat16) == AttentionChoice("dense", "flash")
    for backend in ("flash", "efficient", "cudnn"):
        with pytest.raises(SettingsError, match=rf"^ACESTEP_SDPA_BACKEND={backend} needs a CUDA device; "
                                                r"on cpu use auto or math$"):
            resolve_attention("auto", backend, cpu, torch.float32)
    with pytest.raises(SettingsError, match=r"^ACESTEP_SDPA_BACKEND=cudnn runs only in bfloat16 or float16"):
        resolve_attention("flex", "cudnn", cuda, torch.float32)
    with pytest.raises(SettingsError, match="ACESTEP_SDPA_BACKEND=flash needs a CUDA device"):
        Engine(Settings.from_env({**tiny_env, "ACESTEP_SDPA_BACKEND": "flash"}))  # at start, before any job
