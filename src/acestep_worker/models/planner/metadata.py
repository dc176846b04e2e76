"""The planner's chain-of-thought block: the fields, their allowed values, serialising and parsing.

Inside `<think>` the LM writes one `key: value` line per field in this order: bpm, caption, duration,
keyscale, language, timesignature (a long caption continues on lines indented by two spaces). The
phase-2 prompt re-serialises the values with YAML (sorted keys, 80-column folding), as upstream does.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import yaml

from ...errors import AceStepError
from ...schema.units import MAX_DURATION_S, MIN_DURATION_S
from ...schema.values import LANGUAGES, TIME_SIGNATURES

FIELD_ORDER = ("bpm", "caption", "duration", "keyscale", "language", "timesignature")
# Audio understanding also writes genres (upstream's optional field, between duration and keyscale).
UNDERSTAND_FIELDS = ("bpm", "caption", "duration", "genres", "keyscale", "language", "timesignature")
MAX_GENRES_TOKENS = 64
BPM_RANGE = (30, 300)
DURATION_RANGE = (int(MIN_DURATION_S), int(MAX_DURATION_S))
KEY_NOTES = "ABCDEFG"
KEY_ACCIDENTALS = ("", "#", "b", "♯", "♭")
KEY_MODES = ("major", "minor")
KEYSCALES = tuple(f"{n}{a} {m}" for n in KEY_NOTES for a in KEY_ACCIDENTALS for m in KEY_MODES)
MAX_CAPTION_TOKENS = 512


class PlannerOutputError(AceStepError):
    """The LM's text does not parse into valid metadata (constrained decoding should prevent it)."""


@dataclass(frozen=True)
class Metadata:
    """What the planner decided (or the user gave): None means "not set"."""

    bpm: int | None = None
    caption: str | None = None
    duration: int | None = None
    keyscale: str | None = None
    language: str | None = None
    timesignature: str | None = None
    genres: str | None = None  # audio understanding only (last: the others are also given by position)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def merged_over(self, base: "Metadata") -> "Metadata":
        """Fields of `self` where set, else those of `base`."""
        return Metadata(**{**base.as_dict(), **self.as_dict()})


def cot_text(meta: Metadata) -> str:
    """`<think>\\n{yaml}\\n</think>` for the codes prompt; `<think>\\n\\n</think>` when empty."""
    items = {}
    for key, value in meta.as_dict().items():
        if key == "timesignature" and isinstance(value, str) and value.endswith("/4"):
            value = value.split("/")[0]
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        items[key] = value
    body = yaml.dump(items, allow_unicode=True, sort_keys=True).strip() if items else ""
    return f"<think>\n{body}\n</think>"


def _collapse(text: str) -> str:
    return " ".join(line.strip() for line in text.split("\n") if line.strip())


def parse_cot(text: str, strict: bool = True) -> Metadata:
    """Parse `key: value` lines (continuations indented) and validate every value.

    Raises PlannerOutputError naming the field when a value is outside its allowed set, rather
    than guessing what the model meant. Not `strict` (text written without constraints): such a value
    is left unset instead, as upstream's parser skips what it cannot read.
    """
    match = re.search(r"<think>(.*?)(?:</think>|$)", text, re.DOTALL)
    body = match.group(1) if match else text
    fields: dict[str, list[str]] = {}
    current = None
    for line in body.split("\n"):
        if line.strip().startswith("<"):
            continue
        if line and not line[0].isspace() and ":" in line:
            key, _, rest = line.partition(":")
            current = key.strip().lower()
            fields[current] = [rest] if rest.strip() else []
        elif line[:1] in (" ", "\t") and current is not None:
            fields[current].append(line)
    values = {key: _collapse("\n".join(lines)) for key, lines in fields.items() if lines}
    if strict:
        return Metadata(**{key: _validated(key, values[key]) for key in UNDERSTAND_FIELDS if key in values})
    kept = {}
    for key in UNDERSTAND_FIELDS:
        try:
            if key in values:
                kept[key] = _validated(key, values[key])
        except PlannerOutputError:
            pass
    return Metadata(**kept)


def _validated(field: str, value: str):
    def fail(allowed: str) -> PlannerOutputError:
        return PlannerOutputError(f"the planner wrote {field} {value!r}, which is not {allowed}")

    if field in ("bpm", "duration"):
        low, high = BPM_RANGE if field == "bpm" else DURATION_RANGE
        if not value.isdigit() or not low <= int(value) <= high:
            raise fail(f"an integer from {low} to {high}")
        return int(value)
    if field == "keyscale" and value not in KEYSCALES:
        raise fail("a key such as 'C major'")
    if field == "language" and value not in LANGUAGES:
        raise fail("a supported language code")
    if field == "timesignature" and value not in TIME_SIGNATURES:
        raise fail("2, 3, 4 or 6")
    if field in ("caption", "genres") and not value:
        raise fail(f"a non-empty {field}")
    return value

