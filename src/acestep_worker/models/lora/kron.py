"""LoKr updates applied in their Kronecker form: a forward hook per adapted Linear, attached per job.

A LoKr update ΔW = kron(w1, w2), w1 [o1, i1], w2 [o2, i2], on a Linear of out = o1·o2 outputs
and in = i1·i2 inputs, never needs ΔW. With torch.kron's convention kron(A, B)[i·o2 + k, j·i2 + l]
= A[i, j]·B[k, l], a row-major reshape of each input row x into X [i1, i2] gives

    ΔW @ x = vec(w1 @ X @ w2ᵀ)        (vec row-major: [o1, o2] -> o1·o2)

which costs, per token, min(o1·i1·i2 + o1·o2·i2, i1·i2·o2 + o1·i1·o2) multiply-adds (the two
orders of the product), against rank·(in + out) for a LoRA pair `up @ down`. A LoKr whose pair
would reach the layer's side is a dense pair (rank = min(out, in)): on a square 2048-wide layer
that is 2 · 2048² per token, twice the layer itself, where the Kronecker form with LyCORIS'
default factors (w1 [32, 32], w2 [64, 64]) is 32·32·64 + 32·64·64 = 3·2¹⁶, under 5 % of the
layer. `prefers_kron` picks whichever of the two costs less, per module, when the file is read.

Per job, `attach` adds one hook per (adapter, layer) with that adapter's scale: the hook sits on
the base `nn.Linear` (under peft's wrapper when a LoRA pair adapts the same layer), so its update
adds to the base output and to any LoRA pair's, as merged weights would. A scale of 0 attaches
nothing, so the forward is untouched. `detach` removes every hook; the session calls it however
the job ends. The factors stay in the adapters' LRU on the DiT's device and dtype, and the hook
computes in the layer's dtype.

torch.compile (ACESTEP_DIT_COMPILE, each block compiled on its own): dynamo skips guards on module
hooks by default and would silently ignore a hook added after compiling, so the process's compile
policy (models/compile_policy.py) switches those guards on. Then a block whose hooks differ from every graph compiled so far (the
first job with a Kronecker adapter, a second adapter on the same layer) compiles one more graph;
blocks with the same kind of hooks share it, and a new scale or another adapter's factors of the
same shapes recompile nothing (checked in tests/unit/test_lycoris_adapters.py). Past dynamo's recompile
limit a block runs eagerly: slower, never wrong.
"""

from __future__ import annotations

import weakref

import torch

from .layers import base_linear

# transformer -> the hook handles attached for the running job
_ATTACHED: "weakref.WeakKeyDictionary[torch.nn.Module, list]" = weakref.WeakKeyDictionary()
Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]  # <module> -> (w1, w2), one adapter's Kronecker layers


def kron_cost(w1_shape: tuple[int, int], w2_shape: tuple[int, int]) -> int:
    """Multiply-adds per token of ΔW @ x in the Kronecker form, taking the cheaper order."""
    (o1, i1), (o2, i2) = w1_shape, w2_shape
    return min(o1 * i1 * i2 + o1 * o2 * i2, i1 * i2 * o2 + o1 * i1 * o2)


def pair_cost(rank: int, out_features: int, in_features: int) -> int:
    """Multiply-adds per token of up @ (down @ x) for a pair of width `rank`."""
    return rank * (in_features + out_features)


def prefers_kron(w1_shape: tuple[int, int], w2_shape: tuple[int, int], pair_rank: int) -> bool:
    out_features, in_features = w1_shape[0] * w2_shape[0], w1_shape[1] * w2_shape[1]
    return kron_cost(w1_shape, w2_shape) < pair_cost(pair_rank, out_features, in_features)


def kron_apply(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """kron(w1, w2) @ x over the last axis of x [..., i1·i2] -> [..., o1·o2]."""
    (o1, i1), (o2, i2) = w1.shape, w2.shape
    lead = x.shape[:-1]
    rows = x.reshape(-1, i1, i2)
    if o1 * i1 * i2 + o1 * o2 * i2 <= i1 * i2 * o2 + o1 * i1 * o2:
        y = torch.matmul(w1, rows).reshape(-1, i2) @ w2.t()  # [n·o1, o2]
    else:
        y = torch.matmul(w1, (rows.reshape(-1, i2) @ w2.t()).reshape(-1, i1, o2))  # [n, o1, o2]
    return y.reshape(*lead, o1 * o2)


class _KronHook:
    """output += scale · kron(w1, w2) @ input, for one adapter on one Linear."""

    def __init__(self, w1: torch.Tensor, w2: torch.Tensor, scale: float):
        self.w1, self.w2, self.scale = w1, w2, float(scale)

    def __call__(self, module, args, output):
        x = args[0]
        w1, w2 = self.w1.to(dtype=output.dtype), self.w2.to(dtype=output.dtype)
        return output + kron_apply(x.to(output.dtype), w1, w2) * self.scale


def attach(transformer: torch.nn.Module, updates: list[tuple[Factors, float]]) -> int:
    """Replace whatever is attached with one hook per (module -> (w1, w2)) of each update at its scale.

    Returns the number of hooks attached; updates with scale 0 attach none."""
    detach(transformer)
    handles = _ATTACHED.setdefault(transformer, [])
    for factors, scale in updates:
        if scale == 0:
            continue
        for module_name, (w1, w2) in factors.items():
            handles.append(base_linear(transformer, module_name).register_forward_hook(_KronHook(w1, w2, scale)))
    return len(handles)


def detach(transformer: torch.nn.Module) -> None:
    for handle in _ATTACHED.pop(transformer, []):
        handle.remove()


def attached(transformer: torch.nn.Module) -> int:
    """How many Kronecker hooks are on `transformer` now."""
    return len(_ATTACHED.get(transformer, []))
