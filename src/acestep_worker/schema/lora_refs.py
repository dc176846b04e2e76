"""A request's `loras` list: `[{"name" | "path" | "url" | "repo": ..., "scale": 0-2}, ...]`.

Parsed here, without touching any file, so a malformed entry is refused before the job is queued,
with one sentence naming `loras[i]`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import InputError, echo

SOURCE_KEYS = ("name", "path", "url", "repo")
MAX_LORAS = 8
MAX_SCALE = 2.0
MAX_VALUE_CHARS = 2_000


@dataclass(frozen=True)
class LoraRef:
    kind: str  # name | path | url | repo
    value: str
    scale: float = 1.0

    @property
    def label(self) -> str:
        shown = self.value if len(self.value) <= 80 else self.value[:77] + "..."
        return f"{self.kind} {shown!r}"


def parse_loras(value: Any) -> tuple[LoraRef, ...] | None:
    if value is None or value == [] or value == "":
        return None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise InputError("loras", "loras must be a list of objects such as {\"name\": \"my-style\", \"scale\": 0.8}")
    if len(value) > MAX_LORAS:
        raise InputError("loras", f"loras lists {len(value)} adapters; at most {MAX_LORAS} are allowed")
    refs = []
    for index, item in enumerate(value):
        field = f"loras[{index}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            raise InputError(field, f"{field} must be an object with one of {', '.join(SOURCE_KEYS)} and a scale")
        unknown = sorted(set(item) - {*SOURCE_KEYS, "scale", "weight", "adapter_name"})
        if unknown:
            raise InputError(field, f"{field} has unknown key {unknown[0]!r}; accepted: "
                                    f"{', '.join(SOURCE_KEYS)}, scale")
        sources = [key for key in SOURCE_KEYS if item.get(key) not in (None, "")]
        if len(sources) != 1:
            raise InputError(field, f"{field} must give exactly one of {', '.join(SOURCE_KEYS)}"
                                    + (f" (got {' and '.join(sources)})" if sources else ""))
        source = item[sources[0]]
        if not isinstance(source, str) or len(source) > MAX_VALUE_CHARS:
            raise InputError(field, f"{field}.{sources[0]} must be text of at most {MAX_VALUE_CHARS} characters")
        raw_scale = item.get("scale", item.get("weight", 1.0))
        try:
            scale = float(1.0 if raw_scale is None else raw_scale)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of 400 digits
            scale = math.nan
        if isinstance(raw_scale, bool) or not 0.0 <= scale <= MAX_SCALE:
            raise InputError(field, f"{field}.scale must be a number from 0 to {MAX_SCALE:g}; got {echo(raw_scale)}")
        refs.append(LoraRef(sources[0], source.strip(), scale))
    return tuple(refs)
