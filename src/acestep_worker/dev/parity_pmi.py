"""The PMI quality-score golden (`manifest_pmi.json`): upstream's calculate_pmi_score_per_condition on the
tiny tree's planner LM for fixed codes, texts and metadata, checked against models/planner/quality.py.

Each case's per-condition scores (in the manifest's `score_keys` order) and its overall score. The
tiny LM's random weights rank no true token in their top 10, so its recalls are 0 on both sides; the
caption and lyrics PMI (teacher-forced log-likelihoods with and without the codes) and the weighting
carry the check. The planner is the one parity_understanding rebuilds (and checks the checksums of).
"""

from __future__ import annotations

import torch

from ..models.planner.quality import quality_scores
from .parity_understanding import SINGLE_FORWARD, _planner


def run(tensors: dict, entry: dict) -> tuple[dict, dict]:
    lm, out = _planner(), {}
    codes = tensors["in.codes"].tolist()
    for name, case in entry["cases"].items():
        metadata = {"caption": case["caption"], **case["metadata"]}
        scores, overall = quality_scores(lm, codes, case["lyrics"], metadata, case["score_scale"])
        if sorted(scores) != case["score_keys"]:  # a condition scored or left out that upstream did not
            out[f"out.{name}.scores"] = torch.full((len(case["score_keys"]) + 1,), float("nan"), dtype=torch.float64)
            continue
        out[f"out.{name}.scores"] = torch.tensor([scores[k] for k in case["score_keys"]], dtype=torch.float64)
        out[f"out.{name}.overall"] = torch.tensor(overall, dtype=torch.float64)
    return out, SINGLE_FORWARD
