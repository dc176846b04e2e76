"""Sliding-window layers without the dense mask: equal to the dense path to float32 rounding."""

import torch
import torch.nn.functional as F
from diffusers.models.transformers import ace_step_transformer as ace

from acestep_worker.dit import windowed_attention
from acestep_worker.dit.loading import load_dit
from acestep_worker.dit.windowed_attention import BandMask, banded_attention, windowed_sliding_attention


def test_banded_attention_equals_dense_masked_sdpa_at_real_head_sizes():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 700, 16, 128, generator=g)  # [B, L, H, D]: the real DiT's 16 query heads
    k, v = torch.randn(1, 700, 8, 128, generator=g), torch.randn(1, 700, 8, 128, generator=g)  # 8 KV heads
    dense_mask = ace._create_4d_mask(700, torch.float32, "cpu", sliding_window=128, is_sliding_window=True,
                                     is_causal=False)
    dense = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=dense_mask, enable_gqa=True).transpose(1, 2)
    banded = banded_attention(q, k, v, BandMask(128, 700), None, True)
    torch.testing.assert_close(banded, dense, rtol=1e-5, atol=1e-5)


def test_transformer_forward_is_unchanged_and_no_dense_mask_is_built(tiny_root, monkeypatch):
    dit = load_dit(tiny_root / "acestep-v15-turbo")
    monkeypatch.setattr(windowed_attention, "QUERY_BLOCK", 8)  # many blocks on a short input
    g = torch.Generator().manual_seed(1)
    frames = 180  # 90 tokens after patching, window 16: the band is a small part of the square
    x, ctx = torch.randn(2, frames, 64, generator=g), torch.randn(2, frames, 128, generator=g)
    enc = torch.randn(2, 9, dit.transformer.config.hidden_size, generator=g)
    t = torch.tensor([0.6, 0.6])
    with torch.no_grad():
        dense = dit.transformer(x, t, t, enc, ctx, return_dict=False)[0]
        built = []
        original = windowed_attention._ORIGINAL_MASK
        monkeypatch.setattr(windowed_attention, "_ORIGINAL_MASK", lambda *a, **k: built.append(a) or original(*a, **k))
        with windowed_sliding_attention():
            banded = dit.transformer(x, t, t, enc, ctx, return_dict=False)[0]
        monkeypatch.undo()
    assert built == []
    torch.testing.assert_close(banded, dense, rtol=1e-5, atol=1e-5)
    assert (ace._create_4d_mask, ace.dispatch_attention_fn) == (windowed_attention._ORIGINAL_MASK,
                                                                  windowed_attention._ORIGINAL_DISPATCH)


def test_engine_uses_banded_attention_on_cpus_by_default_and_the_setting_switches_it(engine, monkeypatch):
    import dataclasses
    from contextlib import contextmanager

    from acestep_worker import engine as engine_module
    from acestep_worker.request import parse
    from acestep_worker.settings import Settings

    entered = []

    @contextmanager
    def counting():
        entered.append(1)
        with windowed_sliding_attention():
            yield

    monkeypatch.setattr(engine_module, "windowed_sliding_attention", counting)
    request = parse({"caption": "x", "duration": 10, "seed": 4})
    banded = engine.generate(request).songs[0].audio
    assert entered == [1]
    monkeypatch.setattr(engine, "settings", dataclasses.replace(engine.settings, windowed_attention=False))
    dense = engine.generate(request).songs[0].audio
    assert entered == [1]
    assert abs(banded - dense).max() < 1e-4
    assert Settings.from_env({"ACESTEP_WINDOWED_ATTENTION": "0"}).windowed_attention is False
