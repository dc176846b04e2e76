"""Sentences more than one layer says, written once."""

from __future__ import annotations

PLANNER_SETTING = "ACESTEP_LM_MODEL_PATH"


def needs_planner(what: str) -> str:
    """`what` (a field, an endpoint or a control) cannot work without the planner LM."""
    return f"{what} needs the 5 Hz planner LM, which this server does not load (set {PLANNER_SETTING})"
