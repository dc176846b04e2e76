"""The synthesizer: caption and lyrics in, 48 kHz stereo songs out, for one batch.

`Synthesizer.__call__` reads as the algorithm: encode the prompts, build the conditions, draw the
noise, sample, decode. Every item of a batch has its own prompt, seed and (optional) code hints;
items share one latent length, the longest, as upstream batches them.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from .dit.conditioning import Conditions, prepare_condition, silence_frames
from .dit.model import DiTModel
from .dit.sampler import SamplerHooks, SamplingPlan, sample
from .prompts import (CAPTION_MAX_TOKENS, LYRIC_MAX_TOKENS, TEXT2MUSIC_INSTRUCTION, Metas, caption_prompt,
                      lyric_prompt)
from .text_encoder import EncodedText, TextEncoder
from .vae import decode

StageCallback = Callable[[str], None]
StepCallback = Callable[[int, int], None]


@dataclass
class SongSpec:
    """One item of a batch, fully resolved."""

    caption: str
    lyrics: str
    language: str
    metas: Metas
    seed: int
    frames: int  # latent frames at 25 Hz
    instruction: str = TEXT2MUSIC_INSTRUCTION
    code_hints: torch.Tensor | None = None  # [frames, channels] 25 Hz hints from planner codes (cover)


@dataclass
class SynthesisOutput:
    audio: torch.Tensor  # [B, 2, frames * 1920] float32 on the CPU
    frames: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


class Synthesizer:
    """Text encoder + VAE, shared by every DiT the engine has loaded."""

    def __init__(self, text_encoder: TextEncoder, vae: torch.nn.Module):
        self.text_encoder = text_encoder
        self.vae = vae

    def __call__(self, dit: DiTModel, songs: list[SongSpec], plan: SamplingPlan,
                 on_stage: StageCallback | None = None, on_step: StepCallback | None = None,
                 check: Callable[[], object] | None = None) -> SynthesisOutput:
        """`check` runs between decoded songs and may raise to stop; `on_step` may raise between steps."""
        timings: dict[str, float] = {}
        frames = max(song.frames for song in songs)

        with _stage("text_encoding", timings, on_stage):
            captions, lyrics = self.encode_prompts(songs)
        with _stage("conditioning", timings, on_stage):
            conditions = self.prepare_conditions(dit, songs, captions, lyrics, frames)
            noise = initial_noise(songs, frames, dit.silence_latent.shape[-1])
        with _stage("diffusion", timings, on_stage):
            latents = sample(dit, conditions, noise, plan, SamplerHooks(on_step=on_step))
        with _stage("vae_decode", timings, on_stage):
            audio = decode(self.vae, latents, check)
        return SynthesisOutput(audio, frames, timings)

    def encode_prompts(self, songs: list[SongSpec]) -> tuple[EncodedText, EncodedText]:
        """Caption prompts through the text encoder, lyric prompts through its embedding table.

        A batch usually repeats one prompt; each distinct prompt is encoded once.
        """
        caption_texts = [caption_prompt(s.caption, s.metas, s.instruction) for s in songs]
        lyric_texts = [lyric_prompt(s.lyrics, s.language) for s in songs]
        captions = _encode_distinct(caption_texts, lambda texts: self.text_encoder.encode_captions(
            texts, CAPTION_MAX_TOKENS))
        lyrics = _encode_distinct(lyric_texts, lambda texts: self.text_encoder.embed_lyrics(
            texts, LYRIC_MAX_TOKENS))
        return captions, lyrics

    @torch.no_grad()
    def prepare_conditions(self, dit: DiTModel, songs: list[SongSpec], captions: EncodedText,
                           lyrics: EncodedText, frames: int) -> Conditions:
        """Condition sequence and context latents for `frames`-long items.

        Without a reference audio the timbre input is the first `timbre_frames` of silence, one per
        item; the source is silence, and items with planner codes use their hints (cover).
        """
        batch, device, dtype = len(songs), dit.device, dit.dtype
        silence = silence_frames(dit, frames)
        src = silence.unsqueeze(0).expand(batch, -1, -1).clone()
        refs = silence_frames(dit, dit.timbre_frames).unsqueeze(0).expand(batch, -1, -1)
        refs_order = torch.arange(batch, device=device)
        chunk_masks = torch.ones_like(src)
        is_covers = torch.tensor([s.code_hints is not None for s in songs], device=device)
        hints = None
        if bool(is_covers.any()):
            hints = torch.stack([_fit(s.code_hints, silence) if s.code_hints is not None else silence
                                 for s in songs])
        return prepare_condition(
            dit, captions.hidden_states.to(dtype), captions.attention_mask, lyrics.hidden_states.to(dtype),
            lyrics.attention_mask, refs, refs_order, src, chunk_masks, is_covers, code_hints=hints)


def initial_noise(songs: list[SongSpec], frames: int, channels: int) -> torch.Tensor:
    """Standard normal noise [B, frames, channels], one CPU generator per item.

    Drawn on the CPU in float32 so that a seed gives the same starting point on every device.
    """
    return torch.cat([torch.randn((1, frames, channels), generator=torch.Generator("cpu").manual_seed(s.seed))
                      for s in songs])


def _fit(hints: torch.Tensor, silence: torch.Tensor) -> torch.Tensor:
    """Crop code hints to the batch length, or pad them with silence frames (never with zeros)."""
    hints = hints.to(device=silence.device, dtype=silence.dtype)
    if hints.shape[0] >= silence.shape[0]:
        return hints[: silence.shape[0]]
    return torch.cat([hints, silence[hints.shape[0]:]])


def _encode_distinct(texts: list[str], encode: Callable[[list[str]], EncodedText]) -> EncodedText:
    distinct = list(dict.fromkeys(texts))
    encoded = encode(distinct)
    index = torch.tensor([distinct.index(t) for t in texts], device=encoded.hidden_states.device)
    return EncodedText(encoded.hidden_states[index], encoded.attention_mask[index])


@contextmanager
def _stage(name: str, timings: dict[str, float], on_stage: StageCallback | None) -> Iterator[None]:
    if on_stage is not None:
        on_stage(name)
    start = time.perf_counter()
    yield
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    timings[name] = time.perf_counter() - start
