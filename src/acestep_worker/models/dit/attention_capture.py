"""The DiT's cross-attention over the condition tokens, read from chosen (layer, head) pairs.

Upstream's lyric timestamps and alignment scores read the attention probabilities of a few heads of
the DiT's cross-attention (the 2B models: layers 2 to 6; `lyric_alignment_layers_config` in a
checkpoint's config.json overrides them, as XL checkpoints do). Upstream reruns the whole decoder
with eager attention to return every layer's weights; only the chosen layers matter, and a layer's
attention depends on the layers before it alone, so here the forward stops inside the deepest chosen
layer, right after its cross-attention probabilities are taken: the same numbers for about
(deepest layer + 1) / layers of one forward (7/24 on the 2B models), and only the chosen heads'
probabilities are kept.

Asked for attention weights, upstream computes every cross-attention of that pass eagerly (its
`output_attentions` path: softmax(q k^T * scale) in float32, rounded to the model's dtype, times the
values), not with the SDPA kernel of its sampler, and the layers after the first see that output. So
here too, for that one pass, the cross-attention of every layer up to the deepest chosen one runs the
same eager arithmetic from the module's own projections and norms (adapters included); grouped K/V
heads serve query head h from K/V head h // (heads / kv_heads), as upstream's `repeat_kv`. With SDPA
instead, the maps of the second layer on differ from upstream's in the last bits (about 1e-7 in float32
on the CPU): tests/golden/turbo_a/align_attention.safetensors.
"""

from __future__ import annotations

from typing import Mapping

import torch

from .model import DiTModel

# Upstream's default for the 2B DiTs (acestep/core/generation/handler/lyric_alignment_common.py).
DEFAULT_ALIGNMENT_HEADS: dict[int, tuple[int, ...]] = {2: (6,), 3: (10, 11), 4: (3,), 5: (8, 9), 6: (8,)}


class _Done(Exception):
    """Raised inside the deepest chosen layer: nothing after it is needed."""


def alignment_heads(config: Mapping) -> dict[int, tuple[int, ...]]:
    """The (layer -> heads) map of a checkpoint's config.json, else upstream's 2B default.

    JSON keys are strings; a malformed entry falls back to the default, as upstream does.
    """
    raw = config.get("lyric_alignment_layers_config")
    if not raw or not isinstance(raw, dict):
        return dict(DEFAULT_ALIGNMENT_HEADS)
    try:
        return {int(layer): tuple(int(h) for h in heads) for layer, heads in raw.items()}
    except (TypeError, ValueError):
        return dict(DEFAULT_ALIGNMENT_HEADS)


def usable_heads(heads: Mapping[int, tuple[int, ...]], layers: int, n_heads: int) -> dict[int, tuple[int, ...]]:
    """The pairs a model of `layers` x `n_heads` has: upstream skips a layer or head index past them."""
    kept = {layer: tuple(h for h in hs if h < n_heads) for layer, hs in heads.items() if layer < layers}
    return {layer: hs for layer, hs in kept.items() if hs}


def dit_alignment_heads(dit: DiTModel) -> dict[int, tuple[int, ...]]:
    """The DiT's alignment heads (its config's, else upstream's default) that it has."""
    layers = dit.transformer.layers
    return usable_heads(dit.alignment_heads or DEFAULT_ALIGNMENT_HEADS, len(layers), layers[0].cross_attn.heads)


class _EagerCrossAttention:
    """A cross-attention processor for the alignment pass: attention as upstream's eager path computes it
    (probabilities rounded to the model's dtype, then times the values), so the layers after it see the
    same hidden states as upstream's; it keeps the chosen heads' probabilities and stops the forward in
    the deepest chosen layer."""

    def __init__(self, layer: int, heads: tuple[int, ...], keep: int | None, deepest: int,
                 captured: dict[int, torch.Tensor]):
        self.layer, self.heads, self.keep, self.deepest, self.captured = layer, heads, keep, deepest, captured

    def __call__(self, attn: torch.nn.Module, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 **_) -> torch.Tensor:
        query = attn.norm_q(attn.to_q(hidden_states).unflatten(-1, (attn.heads, attn.head_dim))).transpose(1, 2)
        key = attn.norm_k(attn.to_k(encoder_hidden_states).unflatten(-1, (attn.kv_heads, attn.head_dim)))
        value = attn.to_v(encoder_hidden_states).unflatten(-1, (attn.kv_heads, attn.head_dim))
        key, value = (_repeat_kv(x.transpose(1, 2), attn.heads // attn.kv_heads) for x in (key, value))
        # One row at a time: every head's [frames, tokens] probabilities of the whole batch at once would
        # cost heads / chosen heads times the memory of the maps kept (upstream aligns one song per call).
        outputs, kept = [], []
        for row in range(query.shape[0]):
            scores = torch.matmul(query[row:row + 1], key[row:row + 1].transpose(2, 3)) * attn.scaling
            if attention_mask is not None:
                mask = attention_mask[row:row + 1]
                scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
            probabilities = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
            if self.heads:
                kept.append(probabilities[:, list(self.heads), :, :self.keep])
            if self.layer != self.deepest:
                outputs.append(torch.matmul(probabilities, value[row:row + 1]))
        if self.heads:
            self.captured[self.layer] = torch.cat(kept)
        if self.layer == self.deepest:
            raise _Done
        out = torch.cat(outputs).transpose(1, 2).flatten(2, 3).to(query.dtype)
        return attn.to_out[1](attn.to_out[0](out))


def _repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[B, kv_heads, S, D] -> [B, kv_heads * groups, S, D]: query head h reads K/V head h // groups."""
    batch, kv_heads, length, dim = x.shape
    return x[:, :, None].expand(batch, kv_heads, groups, length, dim).reshape(batch, kv_heads * groups, length, dim)


@torch.no_grad()
def cross_attention(dit: DiTModel, hidden_states: torch.Tensor, timestep: torch.Tensor,
                    encoder_hidden_states: torch.Tensor, context_latents: torch.Tensor,
                    heads: Mapping[int, tuple[int, ...]], keep: int | None = None) -> dict[int, torch.Tensor]:
    """Run the DiT on one input up to the deepest layer of `heads` (usable ones, see usable_heads) and
    return, per layer, the chosen heads' cross-attention probabilities [B, heads, frames, tokens]
    (frames: the patched sequence, `patch_size` latent frames each; tokens: the first `keep` condition
    tokens, all by default). Inputs as the sampler's: latents [B, T, C], timestep [B] (r = t),
    condition [B, L, hidden], context [B, T, 2C]."""
    if not heads:
        return {}
    captured: dict[int, torch.Tensor] = {}
    deepest = max(heads)
    swapped = []
    for layer in range(deepest + 1):
        attn = dit.transformer.layers[layer].cross_attn
        swapped.append((attn, attn.processor))
        attn.processor = _EagerCrossAttention(layer, tuple(heads.get(layer, ())), keep, deepest, captured)
    dtype = dit.dtype
    try:
        # One partial call with processors that raise: compiled blocks (ACESTEP_DIT_COMPILE) run it eagerly
        # rather than recompile for them.
        with torch.compiler.set_stance("force_eager"):
            dit.transformer(hidden_states.to(dtype), timestep.to(dtype), timestep.to(dtype),
                            encoder_hidden_states.to(dtype), context_latents.to(dtype), return_dict=False)
    except _Done:
        pass
    finally:
        for attn, processor in swapped:
            attn.processor = processor
    return {layer: captured[layer] for layer in heads}
