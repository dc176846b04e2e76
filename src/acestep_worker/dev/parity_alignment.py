"""Parity runners for the lyric-alignment goldens (`align_*` files, `manifest_alignment.json`).

Upstream's `MusicStampsAligner` and `MusicLyricScorer` take every layer's attention over the pure
lyric tokens, [layers, heads, tokens, frames], and a layer -> heads map; they skip indices past the
stack. Here the same stack is turned into what `attention_capture` returns (per chosen layer,
[batch, heads, frames, tokens]) and run through the product's own functions. Token texts decode
with the tokenizer file the manifest names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from ..models.dit.attention_capture import usable_heads
from ..pipeline.alignment_math import dtw, energy_matrix, lyric_token_mask, timestamp_matrix
from ..pipeline.lrc import timed_lines, timed_tokens, token_texts
from ..pipeline.lyric_alignment import LyricTokens, decoder, song_lrc, song_score, stacked_heads


def _captured(stack: torch.Tensor, config: dict) -> dict[int, torch.Tensor]:
    """[layers, heads, tokens, frames] -> {layer: [1, chosen heads, frames, tokens]} for the usable pairs."""
    heads = usable_heads({int(k): tuple(v) for k, v in config.items()}, stack.shape[0], stack.shape[1])
    return {layer: stack[layer, list(hs)].transpose(-1, -2)[None] for layer, hs in heads.items()}


def _weights(stack: torch.Tensor, config: dict) -> torch.Tensor:
    tokens = stack.shape[2]
    return stacked_heads(_captured(stack, config), 0, LyricTokens([], 0, tokens))


def run_align_lrc(t: dict, args: dict, tokenizer: Tokenizer) -> dict:
    ids = t["in.lyric_token_ids"].tolist()
    weights = _weights(t["in.attention"], args["custom_config"])
    decode = decoder(tokenizer)
    calc = timestamp_matrix(weights, args["violence_level"], args["medfilt_width"])
    rows, cols = dtw(-calc.astype(np.float64))
    duration = args["total_duration_seconds"]
    tokens = timed_tokens(ids, token_texts(ids, decode), rows, cols, calc.shape[-1], duration)
    lines = timed_lines(tokens, decode)
    lrc = song_lrc(weights, ids, decode, duration)
    return {"out.calc_matrix": torch.from_numpy(calc), "out.path_rows": torch.from_numpy(rows),
            "out.path_cols": torch.from_numpy(cols),
            "out.token_start": torch.tensor([x.start for x in tokens], dtype=torch.float64),
            "out.token_end": torch.tensor([x.end for x in tokens], dtype=torch.float64),
            "out.line_start": torch.tensor([x.start for x in lines], dtype=torch.float64),
            "out.line_end": torch.tensor([x.end for x in lines], dtype=torch.float64),
            "out.lrc_utf8": torch.tensor(list(lrc.encode("utf-8")), dtype=torch.uint8)}


def run_align_score(t: dict, args: dict, tokenizer: Tokenizer) -> dict:
    ids = t["in.lyric_token_ids"].tolist()
    decode = decoder(tokenizer)
    out = {"out.type_mask": torch.from_numpy(lyric_token_mask([decode([i]) for i in ids]))}
    for name in ("lm", "dit"):
        weights = _weights(t[f"in.attention_{name}"], args["custom_config"])
        energy = energy_matrix(weights, args["medfilt_width"])
        rows, cols = dtw(-(energy ** 2).astype(np.float32))
        out.update({f"out.energy_{name}": torch.from_numpy(energy), f"out.path_{name}_rows": torch.from_numpy(rows),
                    f"out.path_{name}_cols": torch.from_numpy(cols),
                    f"out.{name}_score": torch.tensor(song_score(weights, ids, decode), dtype=torch.float64)})
    return out


ALIGNMENT_RUNNERS = {"align_lrc": run_align_lrc, "align_score": run_align_score}


def alignment_tokenizer(golden: Path, manifest: dict) -> Tokenizer:
    return Tokenizer.from_file(str(golden / manifest["tokenizer"]))
