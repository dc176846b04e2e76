"""Decoded audio in, what the DiT conditions on out: source latents, masks and timbre references.

The adapters decode `src_audio` and `reference_audio` to float32 [samples, 2] at 48 kHz; this
module pads and encodes them with the VAE and builds, by the rules of the task table
(`task_types.TaskRule` flags, never task names), the per-batch tensors the synthesizer needs.
Shapes: latents [frames, channels] at 25 Hz; waveforms [2, samples] at 48 kHz.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..models.dit.conditioning import at_batch_length
from ..models.vae import encode
from ..schema.request import GenerationRequest
from ..schema.task_types import (
    Region,
    TaskRule,
    flow_edits,
    reference_offsets,
    repaint_schedule,
)
from ..schema.units import SAMPLE_RATE
from .plan import JobPlan
from .progress import ProgressTracker

REFERENCE_SECONDS = 30  # three 10 s pieces; a checkpoint's `timbre_fix_frame` (750 frames) says so
WAV_CROSSFADE_DEFAULT_S = 0.0  # upstream's default splice is a hard cut


@dataclass
class Source:
    """The source song of an editing task, padded for its range and encoded."""

    audio: torch.Tensor  # [2, samples] float32 on the CPU, after padding for the range
    latents: torch.Tensor  # [frames, channels] float32, the clean source
    duration_s: float  # of the audio as given (before padding)
    sha256: str  # of the given float32 PCM
    region: Region | None = None  # repaint/lego range, in frames of the padded source

    @property
    def samples(self) -> int:
        return self.audio.shape[1]


@dataclass(frozen=True)
class FlowEditSettings:
    """A flow-edit's text for the source song and its window (fractions of the schedule)."""

    source_caption: str
    source_lyrics: str
    n_min: float
    n_max: float
    n_avg: int


@dataclass
class EditInputs:
    """Everything a batch needs beyond text2music, resolved from the request and the audio."""

    rule: TaskRule
    source: Source | None = None
    reference: torch.Tensor | None = None  # [frames, channels] timbre reference latents
    explicit_chunk_mask: bool = False
    injection_ratio: float = 0.0
    crossfade_frames: int = 0
    splice: bool = False  # put the original waveform back outside the range after decoding
    wav_crossfade_s: float = WAV_CROSSFADE_DEFAULT_S
    cover_strength: float = 1.0
    cover_noise_strength: float = 0.0
    flow_edit: FlowEditSettings | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def report(self) -> dict:
        """What the result says about the task that ran."""
        out: dict = {"task_type": self.rule.name, "reference_audio": self.reference is not None}
        if self.source is not None:
            out["source_duration_s"] = round(self.source.duration_s, 3)
            out["source_pcm_sha256"] = self.source.sha256
            region = self.source.region
            if region is not None:
                out["repaint_frames"] = [region.start_frame, region.end_frame]
        return out


def pcm_tensor(audio: np.ndarray) -> torch.Tensor:
    """[samples, 2] float32 (as the adapters hand it over) -> [2, samples]."""
    array = np.asarray(audio, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"expected decoded audio of shape [samples, 2], got {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array.T))


def prepare_source(vae, audio: np.ndarray, region: Region | None, generator: torch.Generator) -> Source:
    """Pad the source for a repaint/lego `region` (negative start, extension) and encode it."""
    pcm = pcm_tensor(audio)
    digest = hashlib.sha256(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).hexdigest()
    if region is not None:
        pcm = torch.nn.functional.pad(pcm, (region.pad_left_samples, region.pad_right_samples))
    latents = encode(vae, pcm.unsqueeze(0), generator)[0]
    return Source(pcm, latents, audio.shape[0] / SAMPLE_RATE, digest, region)


def reference_clip(audio: np.ndarray, seed: int, seconds: float = REFERENCE_SECONDS) -> torch.Tensor:
    """Upstream's 30 s timbre clip: the audio tiled to at least 30 s, then three 10 s pieces from
    its front, middle and back thirds, at offsets derived from `seed`. Returns [2, seconds * 48000]."""
    pcm = pcm_tensor(audio)
    target = int(seconds * SAMPLE_RATE)
    if pcm.shape[1] < target:
        pcm = pcm.repeat(1, -(-target // pcm.shape[1]))
    piece = target // 3
    return torch.cat([pcm[:, start:start + piece] for start in reference_offsets(pcm.shape[1], piece, seed)],
                     dim=1)


def prepare_reference(vae, audio: np.ndarray, seed: int, generator: torch.Generator,
                      seconds: float = REFERENCE_SECONDS) -> torch.Tensor:
    return encode(vae, reference_clip(audio, seed, seconds).unsqueeze(0), generator)[0]


def edit_settings(rule: TaskRule, request: GenerationRequest, source: Source | None,
                  reference: torch.Tensor | None) -> EditInputs:
    """The request's editing options (repaint mode and strength, crossfades, cover strengths) under the
    task's rule, around the encoded source and reference."""
    ratio, crossfade = repaint_schedule(request.repaint_mode, request.repaint_strength)
    if request.repaint_latent_crossfade_frames is not None and request.repaint_mode != "aggressive":
        crossfade = request.repaint_latent_crossfade_frames
    if flow_edits(request):  # upstream's flow-edit neither switches the cover condition nor starts from noise
        flow = FlowEditSettings(request.flow_edit_source_caption, request.flow_edit_source_lyrics,
                                request.flow_edit_n_min, request.flow_edit_n_max, request.flow_edit_n_avg)
        return EditInputs(rule=rule, source=source, reference=reference, flow_edit=flow)
    return EditInputs(
        rule=rule, source=source, reference=reference,
        explicit_chunk_mask=request.chunk_mask_mode == "explicit",
        injection_ratio=ratio, crossfade_frames=crossfade,
        splice=rule.uses_range and request.repaint_mode != "aggressive",
        wav_crossfade_s=request.repaint_wav_crossfade_sec,
        cover_strength=request.audio_cover_strength, cover_noise_strength=request.cover_noise_strength)


def source_at_length(source: Source, silence: torch.Tensor, frames: int) -> torch.Tensor:
    """The clean source latents [frames, C] at the batch length: cropped, or padded with silence
    frames restarting at silence frame 0. What the model conditions on and what repaint injects
    back outside the range are both this, so they line up frame for frame."""
    return at_batch_length(source.latents, silence, frames)


def source_rows(edit: EditInputs, silence: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                            torch.Tensor | None]:
    """(src latents [frames, C], chunk mask [frames] float, repaint mask [frames] bool or None).

    The source is padded to the batch length with silence (restarting at silence frame 0); a task
    that silences its range takes those frames from the silence latent. The model sees the 0/1
    region only with an explicit chunk mask: upstream's "auto" mode ends up all ones. A task that does
    not take a source (a text2music flow-edit's) conditions on silence, as upstream's flow-edit does.
    """
    source, rule = edit.source, edit.rule
    chunk = torch.ones(frames, device=silence.device)
    repaint = None
    if source is None or not rule.needs_source:
        return silence[:frames].clone(), chunk, repaint
    src = source_at_length(source, silence, frames).clone()  # the range is silenced in place below
    region = source.region
    if region is not None:
        repaint = torch.zeros(frames, dtype=torch.bool, device=silence.device)
        repaint[region.start_frame:region.end_frame] = True
        if rule.silences_range:
            src[repaint] = silence[:frames][repaint]
        if edit.explicit_chunk_mask:
            chunk = repaint.float()
    return src, chunk, repaint


def splice(generated: torch.Tensor, source: Source, crossfade_s: float) -> torch.Tensor:
    """Keep the original waveform outside the range, the generated one inside, with a linear
    crossfade of `crossfade_s` just inside each boundary. [B, 2, samples] in and out."""
    region = source.region
    original = source.audio.to(generated)
    out = original.unsqueeze(0).expand_as(generated).clone()
    start, end = region.start_sample, min(region.end_sample, generated.shape[-1])
    out[..., start:end] = generated[..., start:end]
    fade = min(int(crossfade_s * SAMPLE_RATE), (end - start) // 2)
    if fade > 0:
        ramp = torch.linspace(0.0, 1.0, fade + 2, device=generated.device)[1:-1]
        out[..., start:start + fade] = (ramp * generated[..., start:start + fade]
                                        + (1 - ramp) * original[:, start:start + fade])
        out[..., end - fade:end] = (ramp.flip(0) * generated[..., end - fade:end]
                                    + (1 - ramp.flip(0)) * original[:, end - fade:end])
    return out


def encode_edit_audio(vae, plan: JobPlan, audio: dict, reference_seconds: float,
                      progress: ProgressTracker) -> EditInputs:
    """Encode the job's source and reference audio (stage "vae_encode") into EditInputs.

    The VAE posterior is sampled, as upstream does, but from a generator seeded with the job's
    first seed so that the same request gives the same song.
    """
    source = reference = None
    timings = {}
    if audio.get("src_audio") is not None or audio.get("reference_audio") is not None:
        progress.stage("vae_encode")
        start = time.perf_counter()
        generator = torch.Generator("cpu").manual_seed(plan.seeds[0])
        if audio.get("src_audio") is not None and plan.uses_source:
            source = prepare_source(vae, audio["src_audio"], plan.region, generator)
        if audio.get("reference_audio") is not None:
            reference = prepare_reference(vae, audio["reference_audio"], plan.seeds[0], generator, reference_seconds)
        timings["vae_encode"] = time.perf_counter() - start
    edit = edit_settings(plan.task, plan.request, source, reference)
    edit.timings = timings
    return edit
