"""DoRA updates added into the DiT's weights for one job, and the exact weights put back after it.

DoRA's update ΔW = W' - W is dense (it renormalises every row or column of W), so as a LoRA pair it
would cost rank·(in + out) = twice a square layer's multiply-adds at every step. Added into the
weight instead, it costs nothing per step: `merge` keeps a copy of each weight it touches and adds
s · ΔW in place (the updates of several adapters add, as they would unfused); `restore` copies the
saved weights back, bit for bit, and the session calls it however the job ends. A scale of 0
touches nothing. The copies are transient (one per merged layer during the job); ΔW itself stays
in the adapters' LRU on the DiT's device and dtype, so switching costs one add and one copy per
layer. Under torch.compile the weights are graph inputs: changing them in place recompiles nothing
(checked in tests/unit/test_lycoris_adapters.py). A merge happens in the weights' dtype, as `fuse_lora`'s.
"""

from __future__ import annotations

import weakref

import torch

from .layers import base_linear

# transformer -> [(weight parameter, its value before the job)]
_SAVED: "weakref.WeakKeyDictionary[torch.nn.Module, list]" = weakref.WeakKeyDictionary()
Deltas = dict[str, torch.Tensor]  # <module> -> ΔW [out, in], one adapter's merged layers


def merge(transformer: torch.nn.Module, updates: list[tuple[Deltas, float]]) -> int:
    """Put back whatever a previous merge changed, then add scale · ΔW of each update; the number of layers changed."""
    restore(transformer)
    saved = _SAVED.setdefault(transformer, [])
    with torch.no_grad():
        for deltas, scale in updates:
            if scale == 0:
                continue
            for module_name, delta in deltas.items():
                weight = base_linear(transformer, module_name).weight
                if not any(kept is weight for kept, _ in saved):
                    saved.append((weight, weight.detach().clone()))
                weight.add_(delta.to(weight.dtype), alpha=scale)
    return len(saved)


def restore(transformer: torch.nn.Module) -> None:
    with torch.no_grad():
        for weight, before in _SAVED.pop(transformer, []):
            weight.copy_(before)


def merged(transformer: torch.nn.Module) -> int:
    """How many layers of `transformer` hold a merged update now."""
    return len(_SAVED.get(transformer, []))
