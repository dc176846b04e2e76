"""Sliding-window self-attention without a dense T x T mask.

diffusers' ACE-Step transformer builds one additive mask [1, 1, T, T] for its sliding-window
layers (|i - j| <= window) and hands it to SDPA, so half the layers pay full attention and memory
for a 128-token window: at 600 s that is 7,500 x 7,500 scores per head and layer. Inside
`windowed_sliding_attention(transformer)` the mask is never built: the sliding layers receive a
small `BandMask` marker instead, and their attention runs block by block, each block of queries
against only the keys within the window (an exact reformulation: same scores, same softmax over
the same keys, equal to the dense path to float32 rounding).

The hook is at the two module-level functions the transformer calls (`_create_4d_mask` and
`dispatch_attention_fn`), swapped only for the duration of the context; the flash-attention
backends already take the window natively and are left alone.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from diffusers.models.transformers import ace_step_transformer as ace

_LOCK = threading.RLock()
QUERY_BLOCK = 256  # queries per block: big enough for efficient matmuls, small enough to stay banded


@dataclass(frozen=True)
class BandMask:
    """Stands in for the dense mask: keep key j for query i iff |i - j| <= window."""

    window: int
    length: int


def _band_mask(seq_len, dtype, device, attention_mask=None, sliding_window=None, is_sliding_window=False,
               is_causal=True):
    if is_sliding_window and sliding_window is not None and not is_causal and attention_mask is None:
        return BandMask(int(sliding_window), int(seq_len))
    return _ORIGINAL_MASK(seq_len, dtype, device, attention_mask, sliding_window, is_sliding_window, is_causal)


def banded_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, band: BandMask,
                     scale: float | None, enable_gqa: bool) -> torch.Tensor:
    """Attention over a band, [B, L, H, D] in and out (diffusers' layout), one query block at a time."""
    q, k, v = (x.transpose(1, 2) for x in (query, key, value))  # [B, H, L, D]
    length, window = q.shape[2], band.window
    out = torch.empty_like(q)
    for start in range(0, length, QUERY_BLOCK):
        stop = min(start + QUERY_BLOCK, length)
        k_start, k_stop = max(0, start - window), min(length, stop + window)
        rows = torch.arange(start, stop, device=q.device)[:, None]
        cols = torch.arange(k_start, k_stop, device=q.device)[None, :]
        keep = (rows - cols).abs() <= window  # [block, keys]
        out[:, :, start:stop] = F.scaled_dot_product_attention(
            q[:, :, start:stop], k[:, :, k_start:k_stop], v[:, :, k_start:k_stop], attn_mask=keep,
            scale=scale, enable_gqa=enable_gqa)
    return out.transpose(1, 2)


def _dispatch(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False,
              attention_kwargs=None, **kwargs):
    if isinstance(attn_mask, BandMask):
        return banded_attention(query, key, value, attn_mask, scale, enable_gqa)
    return _ORIGINAL_DISPATCH(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                              scale=scale, enable_gqa=enable_gqa, attention_kwargs=attention_kwargs, **kwargs)


_ORIGINAL_MASK = ace._create_4d_mask
_ORIGINAL_DISPATCH = ace.dispatch_attention_fn


@contextmanager
def windowed_sliding_attention(transformer=None) -> Iterator[None]:
    """Within the block, ACE-Step sliding-window layers attend band by band (no T x T mask).

    Process-wide while active (the functions are module globals); the lock keeps two contexts
    from interleaving their swaps. `transformer` is accepted for symmetry with the other hooks.
    """
    with _LOCK:
        saved = ace._create_4d_mask, ace.dispatch_attention_fn
        ace._create_4d_mask, ace.dispatch_attention_fn = _band_mask, _dispatch
        try:
            yield
        finally:
            ace._create_4d_mask, ace.dispatch_attention_fn = saved
