"""LRC timestamps and lyric-alignment scores of finished songs, from the DiT's cross-attention.

Upstream (acestep/core/generation/handler/lyric_timestamp.py and lyric_score.py) re-noises each
song's final latent to t = 1 / inference_steps with fresh noise of seed 42,
x_t = t * noise + (1 - t) * latent, runs the DiT once on it with the song's own condition, and reads
the cross-attention of its alignment heads over the lyric tokens: that one reading gives the LRC
(`auto_lrc`) and the `dit_score`. Its `lm_score` reads the attention at t = 1 on the noise alone, so
it measures how the condition itself (lyrics, and the planner's codes where they lead the song)
lays the lyrics out before any audio exists. Both scores are upstream's alignment score in [0, 1].

One batched DiT call serves every song and both readings, and stops after the deepest alignment
layer (`attention_capture`); no diffusion step is repeated. Noise is drawn on the CPU in float32, as
the sampler's own, so a job gives the same result on every device (upstream draws it on the GPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from tokenizers import Tokenizer

from ..models.dit.attention_capture import cross_attention, dit_alignment_heads
from ..models.dit.model import DiTModel
from ..models.dit.text_prompts import LYRIC_MAX_TOKENS, lyric_prompt
from ..models.text_encoder import TextEncoder
from ..schema.values import is_instrumental
from .alignment_math import alignment_score, dtw, energy_matrix, lyric_token_mask, timestamp_matrix
from .lrc import Decode, format_lrc, timed_lines, timed_tokens, token_texts

ALIGNMENT_SEED = 42  # upstream passes seed=42 for both the LRC and the scores
LRC_SOURCE = "dit_cross_attention"  # `lrc_source`: where the timings came from
END_OF_TEXT = "<|endoftext|>"


@dataclass(frozen=True)
class AlignmentRequest:
    """What a job asks of the alignment: the LRC, the two scores, and upstream's step count."""

    lrc: bool = False
    scores: bool = False
    steps: int = 8

    @property
    def wanted(self) -> bool:
        return self.lrc or self.scores


@dataclass(frozen=True)
class LyricPrompt:
    lyrics: str
    language: str


@dataclass(frozen=True)
class LyricTokens:
    ids: list[int]  # the pure lyric tokens (between the prompt's header and its end token)
    start: int  # their position in the lyric prompt, which the condition sequence starts with
    end: int


def lyric_tokens(encoder: TextEncoder, prompt: LyricPrompt) -> LyricTokens:
    """The song's lyric tokens as upstream slices them from its lyric prompt."""
    ids, _ = encoder.tokenize([lyric_prompt(prompt.lyrics, prompt.language)], LYRIC_MAX_TOKENS)
    ids = ids[0].tolist()
    header = f"# Languages\n{prompt.language}\n\n# Lyric\n"
    start = len(encoder.tokenizer.encode(header, add_special_tokens=False).ids)
    end_id = encoder.tokenizer.token_to_id(END_OF_TEXT)
    end = ids.index(end_id) if end_id in ids else len(ids)
    return LyricTokens(ids[start:end], start, end)


def decoder(tokenizer: Tokenizer) -> Decode:
    return lambda ids: tokenizer.decode(list(ids), skip_special_tokens=False)


def song_lrc(weights: torch.Tensor, ids: Sequence[int], decode: Decode, duration_s: float) -> str:
    """LRC text from [heads, lyric tokens, frames] attention at t = 1 / steps."""
    calc = timestamp_matrix(weights)
    rows, cols = dtw(-calc.astype(np.float64))
    timed = timed_tokens(ids, token_texts(ids, decode), rows, cols, calc.shape[-1], duration_s)
    return format_lrc(timed_lines(timed, decode))


def sung_tokens(ids: Sequence[int], decode: Decode) -> np.ndarray:
    """Which lyric tokens are sung (not section tags or line breaks): what the scores weigh."""
    return lyric_token_mask([decode([token]) for token in ids])


def song_score(weights: torch.Tensor, sung: np.ndarray) -> float:
    """Upstream's alignment score of [heads, lyric tokens, frames] attention, over `sung` tokens."""
    energy = energy_matrix(weights)
    rows, cols = dtw(-(energy ** 2).astype(np.float32))
    return alignment_score(energy, rows, cols, sung)


def stacked_heads(maps: dict[int, torch.Tensor], row: int, tokens: LyricTokens) -> torch.Tensor:
    """Item `row`'s chosen heads in upstream's order (layers as configured, then heads), over the lyric
    tokens: [heads, tokens, frames] float32, on the device that captured them."""
    heads = [maps[layer][row, :, :, tokens.start:tokens.end].transpose(-1, -2) for layer in maps]
    return torch.cat(heads).float()


def decoder_inputs(latents: torch.Tensor, steps: int, scores: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The alignment pass's DiT input and timesteps: every song's latent [B, T, C] re-noised to
    t = 1 / steps, then (for the scores) the noise itself at t = 1. Every song gets the same noise, as
    upstream calls its aligner once per song with a fresh generator of seed 42."""
    generator = torch.Generator("cpu").manual_seed(ALIGNMENT_SEED)
    noise = torch.randn((1, *latents.shape[1:]), generator=generator).to(device=latents.device, dtype=latents.dtype)
    noise = noise.expand_as(latents)
    batch, t_last = latents.shape[0], 1.0 / steps
    rows = [t_last * noise + (1.0 - t_last) * latents]
    times = [torch.full((batch,), t_last)]
    if scores:
        rows.append(noise)
        times.append(torch.ones(batch))
    return torch.cat(rows), torch.cat(times).to(latents.device)


@torch.no_grad()
def align_songs(dit: DiTModel, encoder: TextEncoder, latents: torch.Tensor, encoder_states: torch.Tensor,
                context: torch.Tensor, prompts: Sequence[LyricPrompt], durations_s: Sequence[float],
                ask: AlignmentRequest) -> list[dict]:
    """Per song: `lrc` / `lrc_source` and `lm_score` / `dit_score`, as asked. `latents` [B, T, C]: the
    finished latents; `encoder_states` [B, L, hidden] and `context` [B, T, 2C]: the songs' condition
    (the conditional branch only). A song without lyrics, or a model without alignment heads, gets
    None values and the reason under `alignment_error`."""
    heads = dit_alignment_heads(dit)
    batch = latents.shape[0]
    results = [_unavailable(ask, "this model has no cross-attention heads chosen for lyric alignment")
               if not heads else {} for _ in range(batch)]
    if not heads:
        return results
    rows, times = decoder_inputs(latents.to(dit.dtype), ask.steps, ask.scores)
    copies = rows.shape[0] // batch
    tokens = [None if is_instrumental(p.lyrics) else lyric_tokens(encoder, p) for p in prompts]
    keep = max((t.end for t in tokens if t is not None), default=1)  # lyrics lead the condition sequence
    maps = cross_attention(dit, rows, times, encoder_states.repeat(copies, 1, 1), context.repeat(copies, 1, 1),
                           heads, keep)
    for index, song_tokens in enumerate(tokens):
        results[index] = _one_song(maps, index, batch, encoder, song_tokens, durations_s[index], ask)
    return results


def _one_song(maps: dict[int, torch.Tensor], index: int, batch: int, encoder: TextEncoder,
              tokens: LyricTokens | None, duration_s: float, ask: AlignmentRequest) -> dict:
    if tokens is None:
        return _unavailable(ask, "the song is instrumental: it has no lyrics to align")
    if not tokens.ids:
        return _unavailable(ask, "the song has no lyrics to align")
    at_last_step = stacked_heads(maps, index, tokens)
    decode = decoder(encoder.tokenizer)
    out: dict = {}
    if ask.lrc:
        out.update(lrc=song_lrc(at_last_step, tokens.ids, decode, duration_s), lrc_source=LRC_SOURCE)
    if ask.scores:
        sung = sung_tokens(tokens.ids, decode)  # once for both scores
        out.update(lm_score=song_score(stacked_heads(maps, batch + index, tokens), sung),
                   dit_score=song_score(at_last_step, sung))
    return out


def _unavailable(ask: AlignmentRequest, reason: str) -> dict:
    out: dict = {"alignment_error": reason}
    if ask.lrc:
        out.update(lrc=None, lrc_source=None)
    if ask.scores:
        out.update(lm_score=None, dit_score=None)
    return out
