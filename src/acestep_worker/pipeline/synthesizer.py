"""The synthesizer: caption and lyrics in, 48 kHz stereo songs out, for one batch.

`Synthesizer.__call__` reads as the algorithm: encode the prompts, build the conditions, draw the
noise, sample, decode. Every item of a batch has its own prompt, seed and (optional) code hints;
items share one latent length, the plan's (the longest item's, as upstream batches them; codes and
sources shorter than it are padded with the silence latent). Editing tasks add a source
song and/or a timbre reference (`edit_conditions.EditInputs`), already encoded by the VAE.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, NamedTuple

import torch

from ..audio.finishing import Finishing, adjust_latents
from ..models.dit.conditioning import (
    Conditions,
    ContextInputs,
    EncoderInputs,
    at_batch_length,
    prepare_condition,
    silence_frames,
)
from ..models.dit.flow_edit import FlowEdit
from ..models.dit.model import DiTModel
from ..models.dit.sampler import SamplerHooks, SamplingPlan, sample
from ..models.dit.sampler_edits import CoverSwitch, Edit, Repaint, nearest_start, renoise
from ..models.dit.text_prompts import (
    CAPTION_MAX_TOKENS,
    LYRIC_MAX_TOKENS,
    TEXT2MUSIC_INSTRUCTION,
    Metas,
    caption_prompt,
    lyric_prompt,
)
from ..models.text_encoder import EncodedText, TextEncoder
from ..models.vae import check_latents, decode
from ..schema.task_types import TASKS
from ..schema.units import SAMPLE_RATE
from .edit_conditions import EditInputs, source_at_length, source_rows, splice
from .initial_noise import Retake, draw_noise, initial_noise
from .lyric_alignment import AlignmentRequest, LyricPrompt, align_songs
from .progress import ProgressTracker


@dataclass
class SongSpec:
    """One item of a batch, fully resolved."""

    caption: str
    lyrics: str
    language: str
    metas: Metas
    seed: int
    instruction: str = TEXT2MUSIC_INSTRUCTION
    code_hints: torch.Tensor | None = None  # [frames, channels] 25 Hz hints from planner codes (cover)


@dataclass
class SynthesisOutput:
    audio: torch.Tensor  # [B, 2, frames * 1920] float32 on the CPU
    frames: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    alignment: list[dict] | None = None  # per song: LRC and/or alignment scores (lyric_alignment.py)


class EncodedPrompts(NamedTuple):
    captions: EncodedText  # the caption prompts, through the text encoder
    lyrics: EncodedText  # the lyric prompts, through its embedding table
    text2music: EncodedText | None  # a partial cover's second condition: the captions as text2music


class Synthesizer:
    """Text encoder + VAE, shared by every DiT the engine has loaded."""

    def __init__(self, text_encoder: TextEncoder, vae: torch.nn.Module):
        self.text_encoder = text_encoder
        self.vae = vae

    def __call__(self, dit: DiTModel, songs: list[SongSpec], frames: int, plan: SamplingPlan,
                 progress: ProgressTracker, edit: EditInputs | None = None,
                 finishing: Finishing | None = None, retake: Retake | None = None,
                 alignment: AlignmentRequest | None = None) -> SynthesisOutput:
        """`frames`: the batch's latent length (the plan's). `progress` reports each stage and step and
        stops the work between steps and between decoded songs. `edit` carries an editing task's
        source and reference (text2music without it). `finishing`: its latent shift/rescale, applied
        before the VAE (the pipeline normalises and fades the finished songs). `retake` blends
        a second noise into the songs' starting noise (initial_noise.py). `alignment`: the LRC and
        scores to read from the DiT once the songs are made (none by default)."""
        timings: dict[str, float] = {}
        edit = edit or EditInputs(TASKS["text2music"])
        finishing = finishing or Finishing()

        with _stage("text_encoding", timings, progress):
            prompts = self.encode_prompts(songs, with_text2music=edit.cover_strength < 1)
        with _stage("conditioning", timings, progress):
            conditions = self.prepare_conditions(dit, songs, prompts.captions, prompts.lyrics, frames, edit)
            noise, generators = initial_noise([song.seed for song in songs], frames, dit.silence_latent.shape[-1],
                                              retake)
            plan, sampler_edit = self.editing_plan(dit, plan, conditions, noise, prompts, edit)
            if edit.flow_edit is not None:
                sampler_edit.flow_edit = self.flow_edit(dit, songs, frames, conditions, edit, retake)
        with _stage("diffusion", timings, progress):
            # SDE draws fresh noise each step from the same per-song generators: a seed fixes the song.
            step_noise = (lambda: draw_noise(generators, frames, noise.shape[-1])) if plan.infer_method == "sde" else None
            latents = sample(dit, conditions, noise, plan, SamplerHooks(on_step=progress.step, step_noise=step_noise),
                             sampler_edit)
        with _stage("vae_decode", timings, progress):
            check_latents(latents)  # upstream checks the sampler's latents before shifting them
            audio = decode(self.vae, adjust_latents(latents, finishing.latent_shift, finishing.latent_rescale),
                           progress.check)
        if edit.source is not None:
            audio = audio[..., : edit.source.samples]  # a source task keeps the source's length
            if edit.splice and edit.source.region is not None:
                audio = splice(audio, edit.source, edit.wav_crossfade_s)
        aligned = self.align(dit, songs, latents, conditions, audio.shape[-1] / SAMPLE_RATE, alignment, timings,
                             progress)
        return SynthesisOutput(audio, frames, timings, aligned)

    def align(self, dit: DiTModel, songs: list[SongSpec], latents: torch.Tensor, conditions: "BatchConditions",
              duration_s: float, alignment: AlignmentRequest | None, timings: dict[str, float],
              progress: ProgressTracker) -> list[dict] | None:
        """Each song's LRC and scores from the sampler's latents (before any latent shift) and its own
        condition, when the job asks for them."""
        if alignment is None or not alignment.wanted:
            return None
        with _stage("alignment", timings, progress):
            return align_songs(dit, self.text_encoder, latents, conditions.encoder_hidden_states,
                               conditions.context_latents, [LyricPrompt(s.lyrics, s.language) for s in songs],
                               [duration_s] * len(songs), alignment)

    def editing_plan(self, dit: DiTModel, plan: SamplingPlan, conditions: "BatchConditions", noise: torch.Tensor,
                     prompts: EncodedPrompts, edit: EditInputs) -> tuple[SamplingPlan, Edit]:
        """The sampler's editing extras: cover noise start, the cover switch, repaint injection."""
        sampler_edit = Edit()
        src = conditions.source_latents
        if edit.cover_noise_strength > 0:
            first = nearest_start(plan.timesteps, edit.cover_noise_strength)
            plan = replace(plan, timesteps=plan.timesteps[first:])
            sampler_edit.start = renoise(src.float().to(noise.device), noise, float(plan.timesteps[0]))
        if prompts.text2music is not None:
            silence = silence_frames(dit, src.shape[1]).unsqueeze(0).expand_as(src)
            not_covers = torch.zeros(src.shape[0], dtype=torch.bool, device=dit.device)
            switch = self._conditions(dit, prompts.text2music, prompts.lyrics, conditions.refs, conditions.refs_order,
                                      ContextInputs(silence, conditions.chunk_masks, not_covers))
            sampler_edit.cover_switch = CoverSwitch(switch, int(plan.steps * edit.cover_strength))
        if conditions.repaint_mask is not None:
            sampler_edit.repaint = Repaint(conditions.repaint_mask, conditions.clean_latents,
                                           round(edit.injection_ratio * plan.steps), edit.crossfade_frames)
        return plan, sampler_edit

    def flow_edit(self, dit: DiTModel, songs: list[SongSpec], frames: int, conditions: BatchConditions,
                  edit: EditInputs, retake: Retake | None = None) -> FlowEdit:
        """A flow-edit's source side, as upstream builds it: the source caption and lyrics in each song's
        prompt (its instruction, metadata and language), encoded as their own batch, over the target's
        audio context (silence for text2music, the source for a cover); the clean source latents; and
        forward noise from generators seeded afresh with the retake seeds when a retake is asked, else the
        songs' seeds (upstream's order of preference; without a retake the first forward noise is the
        noise a plain run of the seed starts from)."""
        settings = edit.flow_edit
        sources = [replace(song, caption=settings.source_caption, lyrics=settings.source_lyrics) for song in songs]
        prompts = self.encode_prompts(sources)
        source_conditions = self._conditions(dit, prompts.captions, prompts.lyrics, conditions.refs,
                                             conditions.refs_order, conditions.context)
        clean = source_at_length(edit.source, silence_frames(dit, frames), frames)
        clean = clean.unsqueeze(0).expand(len(songs), -1, -1)
        seeds = retake.seeds if retake is not None and retake.variance > 0 else [song.seed for song in songs]
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        return FlowEdit(source_conditions, clean, lambda: draw_noise(generators, frames, clean.shape[-1]),
                        settings.n_min, settings.n_max, settings.n_avg)

    def encode_prompts(self, songs: list[SongSpec], with_text2music: bool = False) -> EncodedPrompts:
        """Caption prompts through the text encoder, lyric prompts through its embedding table.

        A batch usually repeats one prompt; each distinct prompt is encoded once. `with_text2music`
        also encodes every caption with the text2music instruction (a cover's second condition), in
        the same batch so that it has the cover prompt's padded length, as upstream pads it.
        """
        caption_texts = [caption_prompt(s.caption, s.metas, s.instruction) for s in songs]
        if with_text2music:
            caption_texts += [caption_prompt(s.caption, s.metas, TEXT2MUSIC_INSTRUCTION) for s in songs]
        lyric_texts = [lyric_prompt(s.lyrics, s.language) for s in songs]
        captions = _encode_distinct(caption_texts, lambda texts: self.text_encoder.encode_captions(
            texts, CAPTION_MAX_TOKENS))
        lyrics = _encode_distinct(lyric_texts, lambda texts: self.text_encoder.embed_lyrics(
            texts, LYRIC_MAX_TOKENS))
        if not with_text2music:
            return EncodedPrompts(captions, lyrics, None)
        n = len(songs)
        return EncodedPrompts(EncodedText(captions.hidden_states[:n], captions.attention_mask[:n]), lyrics,
                              EncodedText(captions.hidden_states[n:], captions.attention_mask[n:]))

    @torch.no_grad()
    def prepare_conditions(self, dit: DiTModel, songs: list[SongSpec], captions: EncodedText,
                           lyrics: EncodedText, frames: int, edit: EditInputs) -> "BatchConditions":
        """Condition sequence and context latents for `frames`-long items.

        Without a reference audio the timbre input is the first `timbre_frames` of silence, one per
        item; without a source the source is silence. Cover items (the task's rule, or planner
        codes) follow hints of their source: the codes' hints, else the source's FSQ round trip.
        """
        batch, device = len(songs), dit.device
        silence = silence_frames(dit, frames)
        src_row, chunk_row, repaint_row = source_rows(edit, silence, frames)
        src = src_row.unsqueeze(0).expand(batch, -1, -1).clone()
        chunk_masks = chunk_row[:, None].expand(-1, src.shape[-1]).unsqueeze(0).expand(batch, -1, -1).clone()
        reference = silence_frames(dit, dit.timbre_frames) if edit.reference is None else edit.reference.to(silence)
        refs = reference.unsqueeze(0).expand(batch, -1, -1)
        refs_order = torch.arange(batch, device=device)
        is_covers = torch.tensor([s.code_hints is not None or edit.rule.follows_source_hints for s in songs],
                                 device=device)
        hints = None
        if any(s.code_hints is not None for s in songs):
            # Upstream's batch preparation (`_prepare_batch`) crops each item's decoded codes to the
            # batch length or pads them with the silence latent from its frame 0, as it pads sources;
            # an item without codes follows the silence latent itself.
            hints = torch.stack([at_batch_length(s.code_hints, silence, frames) if s.code_hints is not None
                                 else silence for s in songs])
            # Codes stand in for a source song upstream: they are also the item's source latents,
            # which cover noise starts from (the condition follows the hints either way).
            with_codes = torch.tensor([s.code_hints is not None for s in songs], device=device)
            src = torch.where(with_codes[:, None, None], hints, src)
        conditions = self._conditions(dit, captions, lyrics, refs, refs_order, ContextInputs(src, chunk_masks, is_covers,
                                                                                              hints))
        if repaint_row is not None:
            clean = source_at_length(edit.source, silence, frames)
            conditions.repaint_mask = repaint_row.unsqueeze(0).expand(batch, -1)
            conditions.clean_latents = clean.unsqueeze(0).expand(batch, -1, -1)
        return conditions

    @staticmethod
    def _conditions(dit: DiTModel, captions: EncodedText, lyrics: EncodedText, refs: torch.Tensor,
                    refs_order: torch.Tensor, context: ContextInputs) -> "BatchConditions":
        """The DiT's conditions in its dtype, kept with the inputs they were built from (a second
        condition, a partial cover's, reuses them)."""
        dtype = dit.dtype
        base = prepare_condition(dit, EncoderInputs(captions.hidden_states.to(dtype), captions.attention_mask,
                                                    lyrics.hidden_states.to(dtype), lyrics.attention_mask,
                                                    refs.to(dtype), refs_order),
                                 replace(context, src_latents=context.src_latents.to(dtype),
                                         chunk_masks=context.chunk_masks.to(dtype)))
        return BatchConditions(base.encoder_hidden_states, base.encoder_attention_mask, base.context_latents,
                               source_latents=context.src_latents, chunk_masks=context.chunk_masks, refs=refs,
                               refs_order=refs_order, context=context)


@dataclass
class BatchConditions(Conditions):
    """The conditions plus the inputs they were built from (a second condition reuses them)."""

    source_latents: torch.Tensor | None = None  # [B, T, C] raw src (not the cover hints)
    chunk_masks: torch.Tensor | None = None
    refs: torch.Tensor | None = None
    refs_order: torch.Tensor | None = None
    repaint_mask: torch.Tensor | None = None  # [B, T] bool, True = generate
    clean_latents: torch.Tensor | None = None  # [B, T, C] the unmodified source
    context: ContextInputs | None = None  # what the context latents were built from (a flow-edit's source reuses it)


def _encode_distinct(texts: list[str], encode: Callable[[list[str]], EncodedText]) -> EncodedText:
    distinct = list(dict.fromkeys(texts))
    encoded = encode(distinct)
    index = torch.tensor([distinct.index(t) for t in texts], device=encoded.hidden_states.device)
    return EncodedText(encoded.hidden_states[index], encoded.attention_mask[index])


@contextmanager
def _stage(name: str, timings: dict[str, float], progress: ProgressTracker) -> Iterator[None]:
    progress.stage(name)
    start = time.perf_counter()
    yield
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    timings[name] = time.perf_counter() - start
