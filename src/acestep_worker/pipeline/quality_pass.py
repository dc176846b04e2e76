"""Upstream's PMI quality score per song (`quality_score`, with `quality_scores` per condition), read by the
planner LM from the song's 5 Hz audio codes (models/planner/quality.py has the measure).

Asked for by auto_score (or by best-of-N ranking on it). As upstream, only songs led by audio codes are
scored: the request's audio_code_string, else the planner's codes of the song's take (thinking); a job
without codes, or a worker without a planner, gets no score and a sentence in params saying why.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..errors import InputError
from ..models.planner.quality import quality_scores
from ..schema.request import GenerationRequest

if TYPE_CHECKING:  # plan.py checks ranking by the score at submission, so it imports this module
    from .plan import JobPlan, PlannerWork
    from .planner_pass import Resolved

NO_PLANNER = "no planner LM is loaded: the PMI quality score is read by it (ACESTEP_LM)"
NO_CODES = ("the songs were not led by audio codes (thinking off and no audio_code_string): the PMI quality "
            "score reads them")


def check_quality_ranking(request: GenerationRequest, planner: PlannerWork, codes: tuple[int, ...] | None,
                          planner_loaded: bool) -> None:
    """Best-of-N by the PMI quality score needs the planner LM to read it and audio codes for it to read."""
    if request.keep_best is None or request.rank_by != "quality_score":
        return
    if not planner_loaded:
        raise InputError("rank_by", "rank_by quality_score is read by the planner LM, and this worker has none "
                         "loaded: rank by dit_score or lm_score")
    if not codes and not planner.writes_codes:
        raise InputError("rank_by", "rank_by quality_score reads the songs' audio codes: set thinking (the planner "
                         "writes them) or send audio_code_string, or rank by dit_score or lm_score")


def quality_wanted(plan: JobPlan) -> bool:
    request = plan.request
    return request.auto_score or (request.keep_best is not None and request.rank_by == "quality_score")


def score_metadata(resolved: Resolved) -> dict:
    """The conditions scored, as upstream gathers them: the planner's metadata first, then the song's own
    caption, bpm, duration, key, language and time signature where the planner wrote none."""
    metadata = dict(resolved.lm_metadata)
    own = {"caption": resolved.caption, "bpm": resolved.bpm, "duration": int(resolved.duration_s) or None,
           "keyscale": resolved.key_scale, "language": resolved.language, "timesignature": resolved.time_signature}
    for name, value in own.items():
        if name not in metadata and value not in (None, ""):
            metadata[name] = value
    metadata.setdefault("caption", resolved.caption)
    return metadata


def score_songs(plan: JobPlan, resolved: Resolved, planner, songs) -> tuple[dict, dict]:
    """Adds quality_score / quality_scores to each song's extras; returns (params, timings) to report."""
    if not quality_wanted(plan):
        return {}, {}
    if planner is None:
        return {"quality_score_unavailable": NO_PLANNER}, {}
    if not plan.codes and not resolved.codes:
        return {"quality_score_unavailable": NO_CODES}, {}
    start = time.perf_counter()
    metadata, by_take = score_metadata(resolved), {}
    for song in songs:
        if song.take not in by_take:  # every stem of a take shares its codes
            codes = plan.codes or resolved.codes[song.take]
            by_take[song.take] = quality_scores(planner.lm, codes, resolved.lyrics, metadata,
                                                plan.request.score_scale)
        per_condition, overall = by_take[song.take]
        song.extras.update(quality_score=overall, quality_scores=dict(per_condition))
    return {}, {"quality_score": time.perf_counter() - start}
