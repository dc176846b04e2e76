"""Sliding-window layers without the dense mask (banded, flex): equal to the dense path to float32 rounding."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.transformers import ace_step_transformer as ace

from acestep_worker.models.dit import attention, windowed_attention
from acestep_worker.models.dit.attention import AttentionChoice, dit_attention
from acestep_worker.models.dit.loading import load_dit
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


def _tiny_forward(dit, frames=180, seed=1):
    g = torch.Generator().manual_seed(seed)
    x, ctx = torch.randn(2, frames, 64, generator=g), torch.randn(2, frames, 128, generator=g)
    enc = torch.randn(2, 9, dit.transformer.config.hidden_size, generator=g)
    t = torch.tensor([0.6, 0.6])
    with torch.no_grad():
        return dit.transformer(x, t, t, enc, ctx, return_dict=False)[0]


@pytest.mark.parametrize("path", ["banded", "flex"])
def test_transformer_forward_is_unchanged_and_no_dense_mask_is_built(tiny_root, monkeypatch, path):
    dit = load_dit(tiny_root / "acestep-v15-turbo")
    monkeypatch.setattr(windowed_attention, "QUERY_BLOCK", 8)  # many blocks on a short input
    dense = _tiny_forward(dit)  # 180 frames: 90 tokens after patching, window 16
    built = []
    original = attention._ORIGINAL_MASK
    monkeypatch.setattr(attention, "_ORIGINAL_MASK", lambda *a, **k: built.append(a) or original(*a, **k))
    with dit_attention(AttentionChoice(path)):
        windowed = _tiny_forward(dit)
    monkeypatch.undo()
    assert built == []
    torch.testing.assert_close(windowed, dense, rtol=1e-5, atol=1e-5)
    assert (ace._create_4d_mask, ace.dispatch_attention_fn) == (attention._ORIGINAL_MASK, attention._ORIGINAL_DISPATCH)


def test_flex_block_mask_is_built_once_per_length_for_every_layer_and_step(tiny_root, monkeypatch):
    dit = load_dit(tiny_root / "acestep-v15-turbo")
    built = []
    original = windowed_attention.create_block_mask
    monkeypatch.setattr(windowed_attention, "create_block_mask", lambda *a, **k: built.append(a[3]) or original(*a, **k))
    band_block_mask.cache_clear()
    with dit_attention(AttentionChoice("flex")):
        for _ in range(3):  # three steps of a song, several sliding layers each
            _tiny_forward(dit, frames=180)
        _tiny_forward(dit, frames=100)  # another length: one more mask
        _tiny_forward(dit, frames=180)  # the first length again: still cached
    assert built == [90, 50]


def test_engine_uses_banded_attention_on_cpus_by_default_and_the_setting_switches_it(engine, monkeypatch):
    from acestep_worker.pipeline import engine as engine_module
    from acestep_worker.schema.request import parse

    entered = []

    def recording(choice):
        entered.append(choice.sliding)
        return dit_attention(choice)

    monkeypatch.setattr(engine_module, "dit_attention", recording)
    request = parse({"caption": "x", "duration": 10, "seed": 4})
    banded = engine.generate(request).songs[0].audio
    songs = {}
    for path in ("dense", "flex"):
        monkeypatch.setattr(engine, "settings", dataclasses.replace(engine.settings, sliding_attention=path))
        songs[path] = engine.generate(request).songs[0].audio
    assert entered == ["banded", "dense", "flex"]
    assert abs(banded - songs["dense"]).max() < 1e-4 and abs(songs["flex"] - songs["dense"]).max() < 1e-4


def test_sliding_attention_setting_takes_paths_and_the_old_on_off_values():
    env = {"ACESTEP_CONFIG_PATH": "x"}
    read = lambda value: Settings.from_env({**env, "ACESTEP_WINDOWED_ATTENTION": value}).sliding_attention  # noqa: E731
    assert Settings.from_env(env).sliding_attention == "auto"
    assert [read(v) for v in ("0", "off", "1", "on", "Dense", "banded", "flex", "auto")] == [
        "dense", "dense", "banded", "banded", "dense", "banded", "flex", "auto"]
    with pytest.raises(SettingsError, match=r"^ACESTEP_WINDOWED_ATTENTION must be auto, dense, banded, flex"):
        read("sparse")
