"""Jobs that read instead of write: a source song's audio codes, the planner's reading of them, or the
planner's metadata pass over a caption and lyrics. No audio is generated or written.

    extract_codes_only   source -> VAE encode -> audio tokenizer (FSQ) -> 5 Hz codes
    full_analysis_only   ... -> codes -> the planner's understanding prompt -> metadata, caption, lyrics
    analysis_only        caption and lyrics -> the planner's metadata chain of thought

Each returns its result in upstream's shape and key names (`acestep/api/job_analysis_runtime.py`):
`Analysis.payload` is what upstream's job returns, which the doors pass on as they are.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import InputError, PlannerUnavailableError
from ..models.dit.conditioning import tokenize
from ..models.dit.model import DiTModel
from ..models.planner.decoding import SamplingParams
from ..models.planner.metadata import FIELD_ORDER, Metadata
from ..models.planner.planner import Planner, SongText
from ..models.vae import encode
from ..schema.job_modes import MODE_NEEDS_PLANNER
from ..schema.messages import needs_planner
from ..schema.values import format_audio_codes
from .edit_conditions import pcm_tensor
from .plan import JobPlan
from .progress import ProgressTracker

CODES_DONE = "Audio Codes Extraction Success"
FULL_ANALYSIS_DONE = "Full Hardware Analysis Success"
ANALYSIS_DONE = "Success"
ANALYSIS_DIT_MODEL = "None (Analysis Only)"  # upstream's dit_model for analysis_only
SILENCE_PEAK = 1e-6  # upstream refuses a source whose every sample is below this


@dataclass
class Analysis:
    mode: str
    payload: dict  # upstream's job result for the mode, key for key
    timings: dict[str, float] = field(default_factory=dict)


def source_codes(vae, dit: DiTModel, audio: np.ndarray, generator: torch.Generator) -> list[int]:
    """Decoded source [samples, 2] at 48 kHz -> its 5 Hz FSQ indices, as upstream's
    `convert_src_audio_to_codes`: the unpadded audio through the VAE (a last partial frame dropped),
    the posterior sampled, cast to the DiT's dtype, and tokenized with a frame count that is not a
    multiple of 5 padded from the silence latent."""
    if not np.any(np.abs(audio) >= SILENCE_PEAK):
        raise InputError("src_audio", "the source audio is silent; there is nothing to read codes from")
    latents = encode(vae, pcm_tensor(audio).unsqueeze(0), generator, pad_to_frames=False)
    _, indices = tokenize(dit, latents.to(device=dit.device, dtype=dit.dtype))
    return indices.flatten().tolist()


def extract_codes(codes: str) -> dict:
    return {"status_message": CODES_DONE, "audio_codes": codes, "audio_paths": [], "raw_audio_paths": [],
            "first_audio_path": None, "metas": {}}


def full_analysis(planner: Planner, codes: str, seed: int, progress: ProgressTracker) -> dict:
    """The planner reads the codes (upstream: `understand_audio_from_codes`, temperature 0.3)."""
    result = planner.understand(codes, seed, progress=progress)
    metas = result.metadata.as_dict()
    if result.lyrics:
        metas["lyrics"] = result.lyrics
    return {"status_message": FULL_ANALYSIS_DONE, "bpm": metas.get("bpm"), "keyscale": metas.get("keyscale"),
            "timesignature": metas.get("timesignature"), "duration": metas.get("duration"),
            "genre": metas.get("genres"), "prompt": metas.get("caption", ""), "lyrics": metas.get("lyrics", ""),
            "language": metas.get("language", "unknown"), "metas": metas, "audio_codes": codes, "audio_paths": []}


def metadata_analysis(planner: Planner, plan: JobPlan, lm_model: str, progress: ProgressTracker) -> dict:
    """The metadata chain of thought over the request's caption and lyrics (upstream: phase 1 only, the
    request's temperature and top-p, no guidance, nothing injected)."""
    request = plan.request
    fields = [name for name in FIELD_ORDER if not (name == "caption" and not request.use_cot_caption)
              and not (name == "language" and not request.use_cot_language)]
    params = SamplingParams(request.lm_temperature, 0, request.lm_top_p, cfg_scale=1.0)
    result = planner.write_metadata(SongText(request.caption, request.lyrics), Metadata(), params, plan.seeds[0],
                                    fields, progress)
    metas = result.metadata.as_dict()
    return {"first_audio_path": None, "audio_paths": [], "raw_audio_paths": [],
            "generation_info": "Analysis Only Mode Complete", "status_message": ANALYSIS_DONE, "metas": metas,
            "bpm": metas.get("bpm"), "keyscale": metas.get("keyscale"), "duration": metas.get("duration"),
            "prompt": metas.get("caption", request.caption), "lyrics": request.lyrics, "lm_model": lm_model,
            "dit_model": ANALYSIS_DIT_MODEL}


def analyze(plan: JobPlan, audio: dict[str, np.ndarray], dit: DiTModel, vae, planner: Planner | None,
            progress: ProgressTracker) -> Analysis:
    """Run the plan's analysis mode; the plan has already checked its source and planner."""
    timings: dict[str, float] = {}
    if plan.mode in MODE_NEEDS_PLANNER and planner is None:  # /v1/init unloaded it since submission
        raise PlannerUnavailableError(needs_planner(plan.mode), plan.mode)
    if plan.mode == "analysis_only":
        progress.stage("planning")
        start = time.perf_counter()
        payload = metadata_analysis(planner, plan, planner.name, progress)
        timings["planning"] = time.perf_counter() - start
        return Analysis(plan.mode, payload, timings)
    progress.stage("vae_encode")
    start = time.perf_counter()
    generator = torch.Generator("cpu").manual_seed(plan.seeds[0])
    codes = format_audio_codes(source_codes(vae, dit, audio["src_audio"], generator))
    timings["audio_codes"] = time.perf_counter() - start
    if plan.mode == "extract_codes_only":
        return Analysis(plan.mode, extract_codes(codes), timings)
    progress.stage("planning")
    start = time.perf_counter()
    payload = full_analysis(planner, codes, plan.seeds[0], progress)
    timings["planning"] = time.perf_counter() - start
    return Analysis(plan.mode, payload, timings)
