"""DiT variants and their sampling rules, read from each checkpoint's own config.

Upstream's most common "it only makes noise" report was a base model run with turbo settings (or
the reverse), because defaults were global constants. Here the defaults and the valid ranges belong
to the variant, and the variant is read from the checkpoint's `config.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class SamplingRules:
    """Defaults and allowed ranges for one kind of DiT.

    `uses_cfg` is False for turbo checkpoints: guidance is distilled into their weights, so a
    guidance scale, CFG interval or ADG request has no effect on them.
    """

    kind: str  # "turbo" or "base" (sft samples exactly as base does)
    default_steps: int
    max_steps: int
    default_shift: float
    default_guidance: float
    uses_cfg: bool
    min_shift: float = 1.0
    max_shift: float = 5.0
    max_guidance: float = 15.0


TURBO = SamplingRules(kind="turbo", default_steps=8, max_steps=8, default_shift=3.0,
                      default_guidance=1.0, uses_cfg=False, max_shift=3.0)
BASE = SamplingRules(kind="base", default_steps=32, max_steps=200, default_shift=3.0,
                     default_guidance=7.0, uses_cfg=True)


@dataclass(frozen=True)
class Variant:
    """What a DiT checkpoint is: its name (the folder name), its family and its sampling rules."""

    name: str
    family: str  # "turbo", "base", "sft" (with an "xl-" prefix for the XL models)
    rules: SamplingRules

    @property
    def is_turbo(self) -> bool:
        return self.rules.kind == "turbo"


def detect_variant(name: str, config: Mapping) -> Variant:
    """Classify a DiT checkpoint from its config, falling back to the folder name.

    `is_turbo` is authoritative when present (official configs carry it). `model_version` comes
    next; upstream's config class defaults it to "turbo", so a folder name that says base/sft wins
    over a bare default.
    """
    version = str(config.get("model_version") or "").lower()
    lowered = name.lower()
    if "is_turbo" in config:
        turbo = bool(config["is_turbo"])
    elif "base" in lowered or "sft" in lowered:
        turbo = False
    else:
        turbo = "turbo" in version or "turbo" in lowered
    family = "turbo" if turbo else ("sft" if "sft" in (version + lowered) else "base")
    if int(config.get("hidden_size", 0)) > int(config.get("encoder_hidden_size") or config.get("hidden_size", 0)):
        family = "xl-" + family
    return Variant(name=name, family=family, rules=TURBO if turbo else BASE)
