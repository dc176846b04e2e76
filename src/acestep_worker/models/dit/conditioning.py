"""Conditioning tensors for the DiT: the packed condition sequence and the context latents.

Shapes: latents [batch, frames, channels] at 25 frames per second; hidden states
[batch, tokens, hidden]. Every rule here follows upstream's `prepare_condition`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .model import DiTModel


def at_batch_length(latents: torch.Tensor, silence: torch.Tensor, frames: int) -> torch.Tensor:
    """An item's latents [n, C] at the batch length [frames, C]: cropped, or padded with silence
    frames restarting at silence frame 0 (never zeros). Upstream pads a source's latents and an
    item's code hints alike this way, so both line up with every other item's."""
    latents = latents.to(device=silence.device, dtype=silence.dtype)[:frames]
    if latents.shape[0] < frames:
        return torch.cat([latents, silence[: frames - latents.shape[0]]])
    return latents


@dataclass
class Conditions:
    encoder_hidden_states: torch.Tensor  # [B, L, encoder_hidden]; padding included, the DiT attends to it
    encoder_attention_mask: torch.Tensor  # [B, L] bool; informational, the DiT ignores it
    context_latents: torch.Tensor  # [B, T, 2 * channels] = [source or code hints | chunk mask]


def silence_frames(dit: DiTModel, frames: int) -> torch.Tensor:
    """The first `frames` frames of the silence latent, [frames, channels]."""
    silence = dit.silence_latent[0]
    if frames > silence.shape[0]:
        raise ValueError(f"{frames} frames exceed the {silence.shape[0]}-frame silence latent")
    return silence[:frames]


def tokenize(dit: DiTModel, latents: torch.Tensor, silence_latent: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """25 Hz latents [B, T, C] -> (quantized [B, ceil(T/pool), hidden], FSQ indices [B, ceil(T/pool), Q]).

    A length that is not a multiple of the pool window is padded with silence frames first.
    """
    silence = dit.silence_latent if silence_latent is None else silence_latent
    return dit.audio_tokenizer.tokenize(latents, silence)


def pooled_mask(attention_mask: torch.Tensor, pool: int) -> torch.Tensor:
    """[B, T] frame mask -> [B, ceil(T/pool)]: a 5 Hz token is valid if any of its frames is."""
    pad = (-attention_mask.shape[1]) % pool
    padded = F.pad(attention_mask.float(), (0, pad))
    return padded.reshape(padded.shape[0], -1, pool).amax(-1).to(attention_mask.dtype)


def codes_to_quantized(dit: DiTModel, indices: torch.Tensor) -> torch.Tensor:
    """FSQ indices [B, N] or [B, N, Q] -> quantized 5 Hz features [B, N, hidden]."""
    return dit.audio_tokenizer.quantizer.get_output_from_indices(indices.long())


def detokenize(dit: DiTModel, quantized: torch.Tensor) -> torch.Tensor:
    """Quantized 5 Hz features [B, N, hidden] -> 25 Hz latent hints [B, N * pool, C]."""
    return dit.audio_detokenizer(quantized)


@dataclass(frozen=True)
class EncoderInputs:
    """What the condition encoder reads: caption and lyrics as text-encoder states with their
    padding masks, and the timbre references packed across the batch."""

    text_hidden: torch.Tensor  # [B, Lt, text_hidden] the caption prompt
    text_mask: torch.Tensor  # [B, Lt]
    lyric_hidden: torch.Tensor  # [B, Ll, text_hidden]
    lyric_mask: torch.Tensor  # [B, Ll]
    refs_packed: torch.Tensor  # [N, timbre frames, channels] every item's references in one batch
    refs_order: torch.Tensor  # [N] the batch item each reference belongs to


@dataclass(frozen=True)
class ContextInputs:
    """What the context latents are built from: each item's source (or its cover hints) and the
    chunk mask saying which frames to generate."""

    src_latents: torch.Tensor  # [B, T, C]
    chunk_masks: torch.Tensor  # [B, T, C]
    is_covers: torch.Tensor  # [B] bool: the item follows 25 Hz hints instead of its source
    code_hints: torch.Tensor | None = None  # [B, >= T, C] from the planner's codes; None: from the source


def encode_conditions(dit: DiTModel, inputs: EncoderInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """The condition encoder: [lyrics | timbre | caption], valid tokens first (stable pack)."""
    return dit.condition_encoder(inputs.text_hidden, inputs.text_mask, inputs.lyric_hidden, inputs.lyric_mask,
                                 inputs.refs_packed, inputs.refs_order)


def prepare_condition(dit: DiTModel, encoder: EncoderInputs, context: ContextInputs,
                      silence_latent: torch.Tensor | None = None) -> Conditions:
    """Everything the sampler conditions on.

    Cover items use 25 Hz hints instead of their source latents: `code_hints` when the planner
    produced codes, else the FSQ round trip (tokenize then detokenize) of the source itself.
    """
    hidden, mask = encode_conditions(dit, encoder)
    src_latents = context.src_latents
    source = src_latents
    covers = context.is_covers.to(torch.bool)
    if bool(covers.any()):
        frames = src_latents.shape[1]
        hints = context.code_hints
        if hints is None:
            quantized, _ = tokenize(dit, src_latents[covers], silence_latent)
            hints = torch.zeros_like(src_latents)
            hints[covers] = detokenize(dit, quantized)[:, :frames]
        source = torch.where(covers[:, None, None], hints[:, :frames].to(src_latents.dtype), src_latents)
    context_latents = torch.cat([source, context.chunk_masks.to(source.dtype)], dim=-1)
    return Conditions(hidden, mask, context_latents)
