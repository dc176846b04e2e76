"""Projections of the condition sequence, computed once per generation instead of once per step.

Every DiT step projects the same condition sequence (caption, lyrics, timbre: ~400 tokens) through
`condition_embedder` and then through each layer's cross-attention `to_k` / `to_v`: 2 x layers
linear layers whose input never changes while sampling (17% of a real-size step at 10 s). Inside
`reuse_condition_projections(transformer)` those modules remember their last two inputs and outputs
(a flow-edit alternates two conditions) and return the remembered output when they are called again
with the very same tensor, unmodified.

Keying on tensor identity (plus its in-place version counter) rather than on "this generation"
keeps the cache correct when a sampler switches conditions mid-loop (cover strength, repaint):
a new condition tensor is simply a miss. The arithmetic is the module's own, so outputs are
bitwise identical to recomputing. Outside the context the modules are untouched.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Iterator

import torch
from diffusers import AceStepTransformer1DModel

REMEMBERED = 2  # distinct condition tensors remembered per module


class _RememberLastCall:
    """Stands in for one module's `forward`: recompute only for an input tensor it does not remember."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self.instance_forward = module.__dict__.get("forward")  # another wrapper, if one is installed
        self.forward = module.forward
        # (input, output, versions) of the last calls, newest last: two, so that a flow-edit's source and
        # target conditions, used alternately, are each projected once.
        self.entries: list[tuple[torch.Tensor, torch.Tensor, tuple[int, int]]] = []
        self.computed = 0  # real evaluations, for tests and benchmarks

    def install(self) -> None:
        self.module.forward = self

    def remove(self) -> None:
        if self.instance_forward is None:
            del self.module.forward
        else:
            self.module.forward = self.instance_forward
        self.entries = []  # do not keep a generation's tensors alive

    @torch.compiler.disable  # a Python identity check: keep it out of compiled regions
    def __call__(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if args or kwargs or not isinstance(x, torch.Tensor):
            return self.forward(x, *args, **kwargs)
        for remembered, output, versions in self.entries:
            if x is remembered and (x._version, output._version) == versions:
                return output
        output = self.forward(x)
        # Holding `x` keeps its identity unique for as long as it is compared against.
        self.entries = [*self.entries[-(REMEMBERED - 1):], (x, output, (x._version, output._version))]
        self.computed += 1
        return output


def condition_modules(transformer: AceStepTransformer1DModel) -> list[torch.nn.Module]:
    """The modules whose input is only the condition sequence: the embedder and every cross K/V."""
    modules = [transformer.condition_embedder]
    for layer in transformer.layers:
        if getattr(layer, "use_cross_attention", False):
            modules += [layer.cross_attn.to_k, layer.cross_attn.to_v]
    return modules


@contextmanager
def reuse_condition_projections(transformer: AceStepTransformer1DModel) -> Iterator[list[_RememberLastCall]]:
    """Within the block, condition projections are computed once per distinct condition tensor.

    Yields the per-module records (their `computed` counts say how often each really ran).
    """
    memos = [_RememberLastCall(module) for module in condition_modules(transformer)]
    for memo in memos:
        memo.install()
    try:
        yield memos
    finally:
        for memo in memos:
            memo.remove()


def reusing_condition_projections(sample_fn):
    """Decorate a sampler `fn(dit, ...)`: its whole loop runs inside `reuse_condition_projections`."""

    @functools.wraps(sample_fn)
    def wrapper(dit, *args, **kwargs):
        with reuse_condition_projections(dit.transformer):
            return sample_fn(dit, *args, **kwargs)

    return wrapper
