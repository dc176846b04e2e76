"""Sliding-window attention without the dense mask (banded, flex): equal to the dense path to float32
rounding, and its setting."""

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.transformers import ace_step_transformer as ace

from acestep_worker.models.dit.windowed_attention import (
    BandMask,
    band_block_mask,
    banded_attention,
    flex_band_attention,
)
from acestep_worker.settings import Settings, SettingsError


def _real_heads(length=700, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1, length, 16, 128, generator=g)  # [B, L, H, D]: the real DiT's 16 query heads
    k, v = torch.randn(1, length, 8, 128, generator=g), torch.randn(1, length, 8, 128, generator=g)  # 8 KV heads
    return q, k, v


def _dense(q, k, v, window):
    mask = ace._create_4d_mask(q.shape[1], torch.float32, "cpu", sliding_window=window, is_sliding_window=True,
                               is_causal=False)
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          attn_mask=mask, enable_gqa=True).transpose(1, 2)


def test_banded_attention_equals_dense_masked_sdpa_at_real_head_sizes():
    q, k, v = _real_heads()
    banded = banded_attention(q, k, v, BandMask(128, 700), None, True)
    torch.testing.assert_close(banded, _dense(q, k, v, 128), rtol=1e-5, atol=1e-5)


def test_flex_attention_equals_dense_masked_sdpa_at_real_head_sizes():
    q, k, v = _real_heads(seed=3)
    flex = flex_band_attention(q, k, v, band_block_mask(700, 128, "cpu"), None, True)
    torch.testing.assert_close(flex, _dense(q, k, v, 128), rtol=1e-5, atol=1e-5)


def test_flex_block_mask_skips_the_blocks_outside_the_window():
    mask = band_block_mask(700, 128, "cpu")  # 128-token blocks: 6 x 6, a block row reaches 1-2 neighbours
    blocks = mask.to_dense()[0, 0].bool()
    starts = torch.arange(blocks.shape[0]) * 128
    nearest = (starts[:, None] - starts[None, :]).abs() - 127  # closest pair of two blocks
    assert torch.equal(blocks, nearest.clamp_min(0) <= 128)
    assert not blocks.all()


def test_sliding_attention_setting_takes_paths_and_the_old_on_off_values():
    env = {"ACESTEP_CONFIG_PATH": "x"}
    read = lambda value: Settings.from_env({**env, "ACESTEP_WINDOWED_ATTENTION": value}).sliding_attention  # noqa: E731
    assert Settings.from_env(env).sliding_attention == "auto"
    assert [read(v) for v in ("0", "off", "1", "on", "Dense", "banded", "flex", "auto")] == [
        "dense", "dense", "banded", "banded", "dense", "banded", "flex", "auto"]
    with pytest.raises(SettingsError, match=r"^ACESTEP_WINDOWED_ATTENTION must be auto, dense, banded, flex"):
        read("sparse")
