"""Which attention kernels the DiT runs: the sliding-window path and the SDPA backend.

Two settings, each checked against the device at start and applied per generation:

* ACESTEP_WINDOWED_ATTENTION = auto | dense | banded | flex (1/on mean banded, 0/off dense, as
  before): how the sliding-window layers attend. dense is diffusers' own T x T mask through SDPA;
  banded and flex are exact reformulations without it (`windowed_attention.py`). auto: banded on
  CPUs (measured), dense on GPUs until bench/gpu.py has measured all three there.
* ACESTEP_SDPA_BACKEND = auto | flash | efficient | cudnn | math: the SDPA kernel of the layers
  that attend without a mask (full-attention self-attention and cross-attention). Masked calls
  (sliding layers, the condition encoder's padded sequences) keep PyTorch's choice, since flash
  and cuDNN take no arbitrary mask. Only auto and math exist on a CPU; flash and cuDNN need half
  precision.

The hook is at the two module-level functions diffusers' ACE-Step attention calls
(`_create_4d_mask` and `dispatch_attention_fn`), swapped only inside `dit_attention(...)`.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterator

import torch
from diffusers.models.transformers import ace_step_transformer as ace
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import BlockMask

from ...settings import SDPA_BACKEND_NAMES, SLIDING_ATTENTION_PATHS, SettingsError
from .windowed_attention import BandMask, band_block_mask, banded_attention, flex_band_attention

SDPA_BACKENDS: dict[str, SDPBackend | None] = {
    "auto": None, "flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH,
}
assert tuple(SDPA_BACKENDS) == SDPA_BACKEND_NAMES
CPU_SDPA_BACKENDS = ("auto", "math")
HALF_ONLY_SDPA_BACKENDS = ("flash", "cudnn")
# PyTorch's SDPA takes grouped K/V heads (enable_gqa) only in its flash and math kernels; for the
# others the DiT's 8 K/V heads are repeated to its 16 query heads first (the same attention).
GQA_SDPA_BACKENDS = ("auto", "flash", "math")

_LOCK = threading.RLock()
_ORIGINAL_MASK = ace._create_4d_mask
_ORIGINAL_DISPATCH = ace.dispatch_attention_fn


@dataclass(frozen=True)
class AttentionChoice:
    """The resolved choice: `sliding` is dense, banded or flex; `sdpa` a key of SDPA_BACKENDS."""

    sliding: str = "dense"
    sdpa: str = "auto"


_active = AttentionChoice()  # what the hooks do while installed; read inside compiled blocks too


def resolve_attention(sliding: str, sdpa: str, device: torch.device, dtype: torch.dtype) -> AttentionChoice:
    """The choice for this device, or a SettingsError naming the variable when it cannot run here."""
    if sliding not in SLIDING_ATTENTION_PATHS:
        raise SettingsError(f"ACESTEP_WINDOWED_ATTENTION must be one of {', '.join(SLIDING_ATTENTION_PATHS)}; "
                            f"got {sliding!r}")
    if sdpa not in SDPA_BACKENDS:
        raise SettingsError(f"ACESTEP_SDPA_BACKEND must be one of {', '.join(SDPA_BACKENDS)}; got {sdpa!r}")
    if device.type != "cuda" and sdpa not in CPU_SDPA_BACKENDS:
        raise SettingsError(f"ACESTEP_SDPA_BACKEND={sdpa} needs a CUDA device; on {device.type} use "
                            f"{' or '.join(CPU_SDPA_BACKENDS)}")
    if sdpa in HALF_ONLY_SDPA_BACKENDS and dtype not in (torch.bfloat16, torch.float16):
        raise SettingsError(f"ACESTEP_SDPA_BACKEND={sdpa} runs only in bfloat16 or float16, not "
                            f"{str(dtype).removeprefix('torch.')} (ACESTEP_DTYPE); use efficient or math")
    if sliding == "auto":
        sliding = "banded" if device.type == "cpu" else "dense"
    return AttentionChoice(sliding, sdpa)


# Stands in for diffusers' `_create_4d_mask`, which it calls by these keyword names: the signature is theirs.
def _sliding_mask(seq_len, dtype, device, attention_mask=None, sliding_window=None, is_sliding_window=False,
                  is_causal=True):
    if is_sliding_window and sliding_window is not None and not is_causal and attention_mask is None:
        if _active.sliding == "banded":
            return BandMask(int(sliding_window), int(seq_len))
        if _active.sliding == "flex":
            return band_block_mask(int(seq_len), int(sliding_window), str(torch.device(device)))
    return _ORIGINAL_MASK(seq_len, dtype, device, attention_mask, sliding_window, is_sliding_window, is_causal)


# Stands in for diffusers' `dispatch_attention_fn`, called by these keyword names: the signature is theirs.
def _dispatch(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False,
              attention_kwargs=None, **kwargs):
    if isinstance(attn_mask, BandMask):
        return banded_attention(query, key, value, attn_mask, scale, enable_gqa)
    if isinstance(attn_mask, BlockMask):
        return flex_band_attention(query, key, value, attn_mask, scale, enable_gqa)
    backend = SDPA_BACKENDS[_active.sdpa]
    chosen = nullcontext()
    if backend is not None and attn_mask is None:
        chosen = sdpa_kernel([backend])
        if enable_gqa and _active.sdpa not in GQA_SDPA_BACKENDS:
            key, value = (x.repeat_interleave(query.shape[2] // x.shape[2], dim=2) for x in (key, value))
            enable_gqa = False
    with chosen:
        return _ORIGINAL_DISPATCH(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                                  scale=scale, enable_gqa=enable_gqa, attention_kwargs=attention_kwargs, **kwargs)


@contextmanager
def dit_attention(choice: AttentionChoice) -> Iterator[None]:
    """Within the block, ACE-Step attention runs as `choice` says (the plain path for the defaults).

    Process-wide while active (the functions are module globals); the lock keeps two contexts
    from interleaving their swaps.
    """
    global _active
    if choice == AttentionChoice():
        yield
        return
    with _LOCK:
        saved = ace._create_4d_mask, ace.dispatch_attention_fn, _active
        ace._create_4d_mask, ace.dispatch_attention_fn, _active = _sliding_mask, _dispatch, choice
        try:
            yield
        finally:
            ace._create_4d_mask, ace.dispatch_attention_fn, _active = saved
