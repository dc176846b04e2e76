"""The DiT's cross-attention over the condition tokens, read from chosen (layer, head) pairs.

Upstream's lyric timestamps and alignment scores read the attention probabilities of a few heads of
the DiT's cross-attention (the 2B models: layers 2 to 6; `lyric_alignment_layers_config` in a
checkpoint's config.json overrides them, as XL checkpoints do). Upstream reruns the whole decoder
with eager attention to return every layer's weights; only the chosen layers matter, and a layer's
attention depends on the layers before it alone, so here the forward stops inside the deepest chosen
layer, right after its cross-attention probabilities are taken: the same numbers for about
(deepest layer + 1) / layers of one forward (7/24 on the 2B models), and only the chosen heads'
probabilities are formed.

The probabilities are recomputed from the cross-attention module's own projections and norms
(adapters included), as softmax(q k^T * scale) in float32, then rounded to the model's dtype as
upstream's eager attention returns them. Grouped K/V heads serve query head h from K/V head
h // (heads / kv_heads), as upstream's `repeat_kv`.
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


def _probabilities(attn: torch.nn.Module, hidden: torch.Tensor, encoder: torch.Tensor,
                   heads: tuple[int, ...], keep: int | None) -> torch.Tensor:
    """[B, len(heads), frames, tokens] attention probabilities of `heads` for this call (the first `keep`
    tokens of them: the softmax is over all of them)."""
    query = attn.norm_q(attn.to_q(hidden).unflatten(-1, (attn.heads, attn.head_dim)))
    key = attn.norm_k(attn.to_k(encoder).unflatten(-1, (attn.kv_heads, attn.head_dim)))
    group = attn.heads // attn.kv_heads
    index = torch.tensor(heads, device=query.device)
    q = query.index_select(2, index).transpose(1, 2)  # [B, h, frames, d]
    k = key.index_select(2, index // group).transpose(1, 2)  # [B, h, tokens, d]
    scores = torch.matmul(q, k.transpose(-1, -2)) * attn.scaling
    return torch.softmax(scores, dim=-1, dtype=torch.float32)[..., :keep].to(q.dtype)


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
    handles = []

    def hook_for(layer: int):
        def hook(module, args, kwargs):
            hidden = kwargs.get("hidden_states", args[0] if args else None)
            captured[layer] = _probabilities(module, hidden, kwargs["encoder_hidden_states"], heads[layer], keep)
            if layer == deepest:
                raise _Done
        return hook

    for layer in heads:
        attn = dit.transformer.layers[layer].cross_attn
        handles.append(attn.register_forward_pre_hook(hook_for(layer), with_kwargs=True))
    dtype = dit.dtype
    try:
        # One partial call with hooks that raise: compiled blocks (ACESTEP_DIT_COMPILE) run it eagerly
        # rather than recompile for the hooks.
        with torch.compiler.set_stance("force_eager"):
            dit.transformer(hidden_states.to(dtype), timestep.to(dtype), timestep.to(dtype),
                            encoder_hidden_states.to(dtype), context_latents.to(dtype), return_dict=False)
    except _Done:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return {layer: captured[layer] for layer in heads}
