"""From a plan and what the planner resolved to the songs to make: one `SongSpec` per seed (text,
metadata, instruction, code hints), and what a result reports of them.

Codes, the request's own `audio_code_string` or the planner's, lead the DiT as a cover does: the
detokenizer turns each code into five 25 Hz latent hints. How long the songs are is the plan's.
"""

from __future__ import annotations

import torch

from ..models.dit.conditioning import codes_to_quantized, detokenize
from ..models.dit.model import DiTModel
from ..models.dit.text_prompts import Metas
from ..schema.values import is_instrumental
from .edit_conditions import EditInputs
from .plan import JobPlan, SongRow
from .planner_pass import Resolved
from .synthesizer import SongSpec


def codes_to_hints(dit: DiTModel, codes: list[int] | tuple[int, ...]) -> torch.Tensor:
    """Audio codes (5 Hz) -> 25 Hz latent hints [5 * len(codes), channels] through the detokenizer."""
    with torch.no_grad():
        indices = torch.tensor(codes, dtype=torch.long, device=dit.device).clamp(0, 63_999).view(1, -1, 1)
        return detokenize(dit, codes_to_quantized(dit, indices))[0]


def song_specs(dit: DiTModel, plan: JobPlan, resolved: Resolved, edit: EditInputs,
               rows: tuple[SongRow, ...] | None = None) -> list[SongSpec]:
    """One spec per row (default: the plan's, one per (stem, take)); the request's codes are one set of hints
    for every song, the planner's one per take."""
    metas = Metas(bpm=resolved.bpm, time_signature=resolved.time_signature, key_scale=resolved.key_scale,
                  duration_s=edit.source.duration_s if edit.source else resolved.duration_s)
    given = codes_to_hints(dit, plan.codes) if plan.codes else None
    specs = []
    for row in plan.rows if rows is None else rows:
        hints = given
        # The planner's codes: one set per take, every stem follows it (none where it wrote none, unconstrained).
        if hints is None and resolved.codes and resolved.codes[row.take]:
            hints = codes_to_hints(dit, resolved.codes[row.take])
        specs.append(SongSpec(caption=resolved.caption, lyrics=resolved.lyrics, language=resolved.language, metas=metas,
                              seed=row.seed, instruction=row.instruction, code_hints=hints))
    return specs


def song_params(plan: JobPlan, resolved: Resolved, planner) -> dict:
    """What a result reports of the songs it made: the resolved text and metadata, seeds, what set their
    length, and the planner's part."""
    params = {"caption": resolved.caption, "lyrics": resolved.lyrics, "instrumental": is_instrumental(resolved.lyrics),
              "vocal_language": resolved.language, "bpm": resolved.bpm, "key_scale": resolved.key_scale,
              "time_signature": resolved.time_signature, "requested_duration": resolved.duration_s,
              "duration_from": plan.length.source, "seeds": list(plan.seeds)}
    if plan.retake_seeds:  # upstream reports them beside the seeds (retake_seed_value), so a retake reproduces
        params.update(retake_variance=plan.request.retake_variance, retake_seeds=list(plan.retake_seeds))
    if plan.splits_stems:
        params["stems"] = list(plan.stems)
        params["stem_batches"] = [len(batch) for batch in plan.batches]
    if planner is not None:
        params["planner"] = {"model": planner.name, "thinking": plan.request.thinking,
                             "audio_codes": len(resolved.codes[0]) if resolved.codes else 0}
        params["lm_metadata"] = resolved.lm_metadata
    return params
