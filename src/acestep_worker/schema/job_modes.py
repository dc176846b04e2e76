"""What a job does: make songs, or (upstream's analysis flags, the first that is set) return the source's
audio codes, the planner's reading of them, or the planner's metadata pass over caption and lyrics.

Per mode, as tables: what it needs (a source, a planner) and which fields it still reads; every other
field such a job sends is reported unused.
"""

from __future__ import annotations

from typing import Literal

from .request import GenerationRequest

JobMode = Literal["generate", "extract_codes_only", "full_analysis_only", "analysis_only"]
ANALYSIS_MODES: tuple[JobMode, ...] = ("extract_codes_only", "full_analysis_only", "analysis_only")
MODE_NEEDS_SOURCE = ("extract_codes_only", "full_analysis_only")
MODE_NEEDS_PLANNER = ("full_analysis_only", "analysis_only")

# Fields an analysis job still reads; every other field it sends is reported unused.
ANALYSIS_READS = {
    "extract_codes_only": {"src_audio", "model", "seed", "use_random_seed"},
    "full_analysis_only": {"src_audio", "model", "seed", "use_random_seed"},
    "analysis_only": {"caption", "lyrics", "lm_temperature", "lm_top_p", "use_cot_caption", "use_cot_language",
                      "seed", "use_random_seed"},
}
ALWAYS_ACCEPTED = {"extract_codes_only", "full_analysis_only", "analysis_only", "timeout_seconds", "poll_interval",
                   "return_audio_base64", "max_base64_bytes"}


def analysis_unused(request: GenerationRequest, mode: JobMode) -> dict[str, str]:
    """The fields `request` sends that an analysis of `mode` does not read, each with the reason."""
    reads = ANALYSIS_READS[mode] | ALWAYS_ACCEPTED
    return {name: f"{mode} makes no audio and does not read it" for name in request.model_fields_set
            if name not in reads}


def job_mode(request: GenerationRequest) -> JobMode:
    """Upstream's order: codes extraction, then the audio analysis, then the metadata analysis."""
    return next((mode for mode in ANALYSIS_MODES if getattr(request, mode, False)), "generate")
