"""How the values users send become the values a request holds, before and inside the schema.

`check_shape` guards the raw body (depth, size, valid Unicode) without recursion; the normalisers
turn each spelling users send into one canonical value (keys such as "Am", "C#m", "Bbm" or
"F# Major"; "6/8"; a comma list of seeds; upstream's timestep lists with their final 0) and raise
`ValueError` for the schema to turn into a sentence naming the field (`request._describe`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import InputError, echo

MAX_SEED = 2**32 - 1
MAX_TIMESTEPS = 20  # custom turbo steps; the same number as models.dit.schedules.MAX_CUSTOM_TIMESTEPS
MAX_NESTING = 16  # no field nests deeper than a list in an object; anything past this is hostile
MAX_VALUES = 10_000  # every field's values together; a seed list holds 8

LANGUAGES = ("ar", "az", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fr", "he", "hi",
             "hr", "ht", "hu", "id", "is", "it", "ja", "ko", "la", "lt", "ms", "ne", "nl", "no", "pa", "pl",
             "pt", "ro", "ru", "sa", "sk", "sr", "sv", "sw", "ta", "te", "th", "tl", "tr", "uk", "ur", "vi",
             "yue", "zh", "unknown")
UNKNOWN_LANGUAGE = "unknown"
TIME_SIGNATURES = ("2", "3", "4", "6")
# A key as users write it: "C major", "Am", "C#m", "Bbm", "Ebmaj", "F# Major", "A minor", "G".
_KEY = re.compile(r"^\s*([A-Ga-g])\s*(#|♯|b|♭|-?sharp|-?flat)?\s*(major|minor|maj|min|m|M)?\s*$")
_ACCIDENTALS = {"": "", "#": "#", "♯": "#", "sharp": "#", "b": "b", "♭": "b", "flat": "b"}
_TIME_SIGNATURE = re.compile(r"^\s*(\d+)\s*(?:/\s*(\d+))?\s*$")


_INSTRUMENTAL_MARKERS = {"", "[inst]", "[instrumental]"}


def is_instrumental(lyrics: str | None) -> bool:
    """Empty lyrics, `[inst]` and `[instrumental]` (any case) mean no vocals."""
    return (lyrics or "").strip().lower() in _INSTRUMENTAL_MARKERS


def check_shape(data: Any) -> None:
    """Refuse requests nested past MAX_NESTING, holding more than MAX_VALUES values or text that is
    not valid Unicode, walking them without recursion (a body nested 100,000 deep must be a
    sentence, not a RecursionError)."""
    if not isinstance(data, dict):
        return
    stack = [(value, 1, key) for key, value in data.items()]
    seen = len(stack)
    while stack:
        value, depth, field = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # JSON's "\ud800" escapes: no file name, tag or tokenizer takes them
                raise InputError(str(field), f"{echo(field)} holds text that is not valid Unicode (a lone "
                                 "surrogate code point)") from None
            continue
        if isinstance(value, dict):
            children = list(value.values())
        elif isinstance(value, (list, tuple)):
            children = list(value)
        else:
            continue
        if depth >= MAX_NESTING:
            raise InputError(str(field), f"{echo(field)} is nested more than {MAX_NESTING} levels deep")
        seen += len(children)
        if seen > MAX_VALUES:
            raise InputError(str(field), f"the request holds more than {MAX_VALUES} values ({echo(field)} "
                             "among them); no field takes that many")
        stack.extend((child, depth + 1, field) for child in children)


def seeds(value: Any) -> tuple[int, ...] | None:
    """An integer, -1 (random) or a list / comma string of them; None when every seed is random."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("not a seed")
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    items = value if isinstance(value, (list, tuple)) else [value]
    found = []
    for item in items:
        if isinstance(item, bool) or (isinstance(item, float) and not item.is_integer()):
            raise ValueError("not an integer")
        try:
            seed = int(item)
        except (TypeError, ValueError, OverflowError):
            raise ValueError("not an integer") from None
        if not (seed == -1 or 0 <= seed <= MAX_SEED):
            raise ValueError("out of range")
        found.append(seed)
    return tuple(found) if any(s != -1 for s in found) else None


def timesteps(value: Any) -> tuple[float, ...] | None:
    """A list (or comma string) of strictly descending times in (0, 1], upstream's final 0 dropped."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) for v in value):
        raise ValueError("not a list of times")
    try:
        values = [float(v) for v in value if not (isinstance(v, str) and not v.strip())]
    except (TypeError, ValueError, OverflowError):
        raise ValueError("not a list of times") from None
    while values and values[-1] == 0:  # upstream's lists end with the implicit final 0; it is no step
        values.pop()
    if not 1 <= len(values) <= MAX_TIMESTEPS or any(not (0.0 < v <= 1.0) for v in values):  # NaN fails too
        raise ValueError("out of range")
    if any(b >= a for a, b in zip(values, values[1:])):
        raise ValueError("not descending")
    return tuple(values)


def track_list(value: Any) -> Any:
    """Track names as a list or comma string, lower-cased; anything else is left to the schema."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        value = [v.strip().lower() if isinstance(v, str) else v for v in value]
        return tuple(value) or None
    return value


_STEM_SEPARATORS = re.compile(r"[,+\s]+")  # "vocals,drums", "vocals+instrumental" ("+" is a space in a form)


def stem_list(value: Any, names: tuple[str, ...], presets: dict[str, tuple[str, ...]]) -> tuple[str, ...] | None:
    """track_name: one name, a list, or a comma (or "+") string of `names`, or a preset; lower-cased,
    each once, in the order given. ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, str) and value.lstrip().startswith("["):  # a form field holding a JSON list
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("not a JSON list of track names") from None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        raise ValueError("not a track name or a list of them")
    found: list[str] = []
    for item in items:
        key = item.strip().lower()
        found += presets.get(key) or [part for part in _STEM_SEPARATORS.split(key) if part]
    if any(name not in names for name in found):
        raise ValueError("unknown track name")
    return tuple(dict.fromkeys(found)) or None


def key_scale(value: str | None) -> str | None:
    """"Am", "C#m", "Bbm", "F# Major", "a minor" ... as "<note><accidental> major|minor"."""
    if value is None or not value.strip():
        return None
    match = _KEY.match(value) or _KEY.match(value.strip().lower())
    if not match:
        raise ValueError("not a key")
    note, accidental, mode = match.groups()
    accidental = _ACCIDENTALS[(accidental or "").lower().lstrip("-")]
    # A bare "m" is minor and a bare "M" major (chord-symbol convention); no mode means major.
    minor = mode is not None and (mode == "m" or mode.lower() in ("min", "minor"))
    return f"{note.upper()}{accidental} {'minor' if minor else 'major'}"


def time_signature(value: str | None) -> str | None:
    """Beats per bar: "4", "4/4" and "6/8" give "4" and "6"."""
    if value is None or not value.strip():
        return None
    match = _TIME_SIGNATURE.match(value)
    if not match or match.group(1) not in TIME_SIGNATURES:
        raise ValueError("not a time signature")
    return match.group(1)


def language(value: str | None) -> str | None:
    """An ISO 639 code; upstream's "unknown" means none given, as does an empty value."""
    if value is None or not value.strip():
        return None
    code = value.strip().lower()
    if code not in LANGUAGES:
        raise ValueError("unknown language")
    return None if code == UNKNOWN_LANGUAGE else code


def parse_audio_codes(text: str) -> list[int]:
    """'<|audio_code_12|><|audio_code_7|>...' (or bare integers) -> [12, 7, ...]."""
    if "<|audio_code_" in text:
        return [int(n) for n in re.findall(r"<\|audio_code_(\d+)\|>", text)]
    return [int(n) for n in re.findall(r"\d+", text)]


def format_audio_codes(codes) -> str:
    """[12, 7, ...] -> '<|audio_code_12|><|audio_code_7|>...': upstream's code string, no separators."""
    return "".join(f"<|audio_code_{int(code)}|>" for code in codes)


def audio_codes(text: str) -> str:
    """Text that holds no audio code is refused: taken as no codes, it would silently make a
    different song (text2music at the duration) from the one the caller described."""
    if text.strip() and not parse_audio_codes(text):
        raise ValueError("no audio codes in it")
    return text
