"""The planner's services beside generation: rewrite a caption and lyrics (upstream's `/format_input`,
the page's "Format" button) and invent a song from a description (`/create_random_sample`).

Each takes the accelerator's lock, as a generation does, and answers in the field names of the
door that asked (the pod API's).
"""

from __future__ import annotations

import random

from ..errors import PlannerUnavailableError
from ..models.planner.decoding import SamplingParams
from ..models.planner.planner import SongText
from ..models.registry import ModelRegistry
from ..schema.messages import needs_planner
from ..schema.request import GenerationRequest
from ..schema.values import MAX_SEED, UNKNOWN_LANGUAGE
from .planner_pass import PlannerInputs


def _planner(models: ModelRegistry, what: str):
    """The planner held now; call it under the lock, which /v1/init takes to swap it."""
    if models.planner is None:
        raise PlannerUnavailableError(needs_planner(what), what)
    return models.planner


def format_input(models: ModelRegistry, request: GenerationRequest, seed: int | None = None) -> dict:
    """The planner rewrites the request's caption and lyrics, keeping the metadata it gives (bpm,
    duration, key, time signature, language) and filling the rest; sampled at `lm_temperature`."""
    user = PlannerInputs.from_request(request).user
    seed = seed if seed is not None else random.randint(0, MAX_SEED)
    with models.lock:
        planner = _planner(models, "format_input")
        result = planner.format_input(SongText(request.caption, request.lyrics), user,
                                      SamplingParams(temperature=request.lm_temperature), seed)
    final = user.merged_over(result.metadata)
    return {"caption": result.metadata.caption or request.caption, "lyrics": result.lyrics or request.lyrics,
            "bpm": final.bpm, "duration": float(final.duration) if final.duration else None,
            "key_scale": final.keyscale, "time_signature": final.timesignature,
            "vocal_language": final.language or UNKNOWN_LANGUAGE}


def create_sample(models: ModelRegistry, query: str, *, language: str | None = None, instrumental: bool = False,
                  temperature: float = 0.85, seed: int | None = None) -> dict:
    """The planner's sample mode: caption, lyrics and metadata invented from a description."""
    seed = seed if seed is not None else random.randint(0, MAX_SEED)
    with models.lock:
        planner = _planner(models, "sample mode")
        result = planner.create_sample(query, instrumental, language, SamplingParams(temperature=temperature), seed)
    meta = result.metadata
    return {"caption": meta.caption or query, "lyrics": result.lyrics or "", "bpm": meta.bpm,
            "duration": meta.duration, "keyscale": meta.keyscale, "language": meta.language or language,
            "timesignature": meta.timesignature}
