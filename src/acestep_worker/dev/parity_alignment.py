"""Parity runners for the lyric-alignment goldens (`align_*` files, `manifest_alignment.json`).

Upstream's `MusicStampsAligner` and `MusicLyricScorer` take every layer's attention over the pure
lyric tokens, [layers, heads, tokens, frames], and a layer -> heads map; they skip indices past the
stack. Here the same stack is turned into what `attention_capture` returns (per chosen layer,
[batch, heads, frames, tokens]) and run through the product's own functions. Token texts decode
with the tokenizer file the manifest names.

`align_attention` (`manifest_alignment_attention.json`) checks the maps themselves: upstream's
get_lyric_timestamp / get_lyric_score re-noise a finished latent with seed 42 and run the decoder
with attention output; here `attention_capture.cross_attention` runs on the same inputs, bit for bit
in upstream's call shapes, and the product's single batched call within BATCHED.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from ..models.dit.attention_capture import cross_attention, usable_heads
from ..models.dit.model import DiTModel
from ..pipeline.alignment_math import dtw, energy_matrix, timestamp_matrix
from ..pipeline.lrc import timed_lines, timed_tokens, token_texts
from ..pipeline.lyric_alignment import (LyricTokens, decoder, decoder_inputs, song_lrc, song_score, stacked_heads,
                                       sung_tokens)

BATCHED = {"atol": 1e-6, "rtol": 1e-5}  # the product's one batched call against upstream's per-song calls


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
    sung = sung_tokens(ids, decode)
    out = {"out.type_mask": torch.from_numpy(sung)}
    for name in ("lm", "dit"):
        weights = _weights(t[f"in.attention_{name}"], args["custom_config"])
        energy = energy_matrix(weights, args["medfilt_width"])
        rows, cols = dtw(-(energy ** 2).astype(np.float32))
        out.update({f"out.energy_{name}": torch.from_numpy(energy), f"out.path_{name}_rows": torch.from_numpy(rows),
                    f"out.path_{name}_cols": torch.from_numpy(cols),
                    f"out.{name}_score": torch.tensor(song_score(weights, sung), dtype=torch.float64)})
    return out


ALIGNMENT_RUNNERS = {"align_lrc": run_align_lrc, "align_score": run_align_score}


def alignment_tokenizer(golden: Path, manifest: dict) -> Tokenizer:
    return Tokenizer.from_file(str(golden / manifest["tokenizer"]))


def _upstream_calls(dit: DiTModel, t: dict, heads: dict, steps: int) -> dict:
    """Our capture in upstream's call shapes: per song, the timestamp pass alone (batch 1) and the score
    pass [noise at t = 1, re-noised at t = 1 / steps] (batch 2). Each map: [songs, heads, tokens, frames]."""
    rows, times = decoder_inputs(t["in.pred_latent"], steps, scores=True)
    songs = t["in.pred_latent"].shape[0]
    enc, ctx = t["in.encoder_hidden_states"], t["in.context_latents"]
    whole = LyricTokens([], 0, enc.shape[1])
    timestamp, lm, dit_rows = [], [], []
    for i in range(songs):
        alone = cross_attention(dit, rows[i:i + 1], times[i:i + 1], enc[i:i + 1], ctx[i:i + 1], heads)
        timestamp.append(stacked_heads(alone, 0, whole))
        pair = [songs + i, i]
        scored = cross_attention(dit, rows[pair], times[pair], enc[[i, i]], ctx[[i, i]], heads)
        lm.append(stacked_heads(scored, 0, whole))
        dit_rows.append(stacked_heads(scored, 1, whole))
    return {"mid.xt_timestamp": rows[:songs], "mid.noise": rows[songs:songs + 1],
            "out.attention_timestamp": torch.stack(timestamp), "out.attention_score_lm": torch.stack(lm),
            "out.attention_score_dit": torch.stack(dit_rows)}


def run_align_attention(dit: DiTModel, t: dict, args: dict, tokenizer: Tokenizer) -> dict:
    """The DiT's alignment pass on a finished latent, as `lyric_alignment.align_songs` runs it, against
    upstream's get_lyric_timestamp / get_lyric_score decoder calls; then song 0's LRC and scores."""
    config = {int(k): tuple(v) for k, v in args["custom_layers_config"].items()}
    layers = dit.transformer.layers
    heads = usable_heads(config, len(layers), layers[0].cross_attn.heads)
    steps = args["inference_steps"]
    out = _upstream_calls(dit, t, heads, steps)
    # The product's own batching (every song and both readings in one call) rounds differently on the CPU
    # than upstream's per-song calls, as upstream's own two calls do with each other.
    rows, times = decoder_inputs(t["in.pred_latent"], steps, scores=True)
    songs = rows.shape[0] // 2
    enc, ctx = t["in.encoder_hidden_states"].repeat(2, 1, 1), t["in.context_latents"].repeat(2, 1, 1)
    batched = cross_attention(dit, rows, times, enc, ctx, heads)
    whole = LyricTokens([], 0, enc.shape[1])
    for key, start in (("out.attention_timestamp", 0), ("out.attention_score_lm", songs)):
        ours = torch.stack([stacked_heads(batched, start + i, whole) for i in range(songs)])
        out[f"{key} (one batched call)"] = (ours, out[key], BATCHED)
    ids = t["in.lyric_token_ids"].tolist()
    lyric = slice(args["lyric_start"], args["lyric_start"] + len(ids))  # song 0's lyric tokens in its condition
    decode = decoder(tokenizer)
    lrc = song_lrc(out["out.attention_timestamp"][0, :, lyric], ids, decode, args["total_duration_seconds"])
    out["out.lrc_utf8"] = torch.tensor(list(lrc.encode("utf-8")), dtype=torch.uint8)
    for name in ("lm", "dit"):
        weights = out[f"out.attention_score_{name}"][0, :, lyric]
        out[f"out.{name}_score"] = torch.tensor(song_score(weights, sung_tokens(ids, decode)), dtype=torch.float64)
    return out


ALIGNMENT_DIT_RUNNERS = {"align_attention": run_align_attention}  # these run the DiT
