"""Sliding-window layers in the tiny DiT and the engine: no dense mask is built, and the result is unchanged."""

import dataclasses

import pytest
import torch
from diffusers.models.transformers import ace_step_transformer as ace

from acestep_worker.models.dit import attention, windowed_attention
from acestep_worker.models.dit.attention import AttentionChoice, dit_attention
from acestep_worker.models.dit.loading import load_dit
from acestep_worker.models.dit.windowed_attention import (
    band_block_mask,
)


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
        monkeypatch.setattr(engine.models, "settings", dataclasses.replace(engine.models.settings, sliding_attention=path))
        songs[path] = engine.generate(request).songs[0].audio
    assert entered == ["banded", "dense", "flex"]
    assert abs(banded - songs["dense"]).max() < 1e-4 and abs(songs["flex"] - songs["dense"]).max() < 1e-4
