"""An adapter's files and values, checked before anything uses them: `AdapterSpec`, one typed description.

    spec = read_spec(field, path, root)        # confined files, a typed config, checked tensors
    weights = formats.normalise(field, spec)   # LoRA pairs and Kronecker factors (formats.py)

Everything a caller could put in an adapter is checked here or refused as an InputError naming
`field` (`loras[i]`) in one bounded sentence, never as an uncaught exception:

* **Files** (`confined`): each file read (`adapter_model.safetensors`, `adapter_config.json`, a
  LyCORIS or `lokr_weights.safetensors` file) must resolve, symlinks followed, inside `root`
  (ACESTEP_LORA_DIR, or the download cache for urls and hub repos).
* **adapter_config.json** (`AdapterConfig`): at most 1 MB of JSON, an object nested at most 16
  deep; each value this server reads has its type and range (`r` a positive integer, alphas finite
  numbers, `alpha_pattern`/`rank_pattern` objects of regular expressions, matched with a time limit
  so a pathological pattern cannot hang the worker). `null` means the value's default.
* **Tensors** (`check_tensors`, from `formats.normalise`): floating point (an `alpha` may be an
  integer), finite (no NaN or Inf: a diffusion with them would only fail at its end), none empty
  (a rank-0 pair), every `alpha` a single number.
Shapes that do not form a pair, an update larger than any layer, and mismatches with the DiT are
refused by `formats` and `lycoris`, still naming `field`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regex
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ...errors import InputError, echo

PEFT_CONFIG, PEFT_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
LYCORIS_WEIGHTS = "lokr_weights.safetensors"  # upstream's LoKr trainer: a folder holding this one file
PEFT_TYPES = ("LORA", "LOKR", "LOHA")
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_DEPTH = 16
MAX_PATTERNS = 1_000  # entries of alpha_pattern / rank_pattern
MAX_PATTERN_CHARS = 500
PATTERN_TIMEOUT_S = 0.05  # per match: real patterns take microseconds
MAX_RANK = 1 << 16
MAX_ALPHA = 1e12  # |alpha| and |lora_alpha|: far past any trainer's, short of overflowing a float32 scaling
_FILE_NAME_BYTES = 255  # a path component longer than this names no file on any common file system


@dataclass(frozen=True)
class Pattern:
    """One alpha_pattern / rank_pattern entry: PEFT's rule, a key matches a module whose name ends
    with it (after a dot) or that the key matches as a whole regular expression."""

    key: str
    suffix: regex.Pattern
    whole: regex.Pattern
    value: float

    def matches(self, field: str, what: str, module: str) -> bool:
        try:
            return bool(self.suffix.search(module, timeout=PATTERN_TIMEOUT_S)
                        or self.whole.fullmatch(module, timeout=PATTERN_TIMEOUT_S))
        except TimeoutError:
            raise InputError(field, f"{field}: {what} key {echo(self.key)} takes too long to match a module name; "
                                    "use a plain module name or a simple regular expression") from None


@dataclass(frozen=True)
class AdapterConfig:
    """The values of adapter_config.json this server acts on, checked and typed (PEFT's defaults when absent)."""

    present: bool = False  # a config file came with the weights (a PEFT folder)
    peft_type: str = "LORA"
    r: int | None = None  # LoKr/LoHa: the configured rank (alpha / r); LoRA pairs use their own width
    lora_alpha: float | None = None  # LoRA: None = the pair's rank (scaling 1)
    alpha: float | None = None  # LoKr/LoHa: None = r
    use_rslora: bool = False
    use_dora: bool = False
    alpha_pattern: tuple[Pattern, ...] = ()
    rank_pattern: tuple[Pattern, ...] = ()

    def alpha_for(self, field: str, module: str, default: float | None) -> float | None:
        return _first(field, "alpha_pattern", self.alpha_pattern, module, default)

    def rank_for(self, field: str, module: str, default: float) -> float:
        return _first(field, "rank_pattern", self.rank_pattern, module, default)

    @classmethod
    def parse(cls, field: str, data: bytes) -> "AdapterConfig":
        """adapter_config.json's bytes -> the typed config; InputError naming `field` for anything else."""
        if len(data) > MAX_CONFIG_BYTES:
            raise InputError(field, f"{field}: {PEFT_CONFIG} is larger than {MAX_CONFIG_BYTES >> 20} MB")
        try:
            raw = json.loads(data.decode("utf-8"))
        except RecursionError:
            raise InputError(field, f"{field}: {PEFT_CONFIG} is nested more than {MAX_CONFIG_DEPTH} levels deep") from None
        except (ValueError, UnicodeDecodeError):
            raise InputError(field, f"{field}: {PEFT_CONFIG} is not valid JSON") from None
        return cls.from_dict(field, raw)

    @classmethod
    def from_dict(cls, field: str, raw: Any) -> "AdapterConfig":
        if not isinstance(raw, dict):
            raise InputError(field, f"{field}: {PEFT_CONFIG} must be a JSON object; got {echo(raw)}")
        if _depth(raw) > MAX_CONFIG_DEPTH:
            raise InputError(field, f"{field}: {PEFT_CONFIG} is nested more than {MAX_CONFIG_DEPTH} levels deep")

        def value(key: str, check, what: str, default=None):
            got = raw.get(key)
            if got is None:
                return default
            checked = check(got)
            if checked is None:
                raise InputError(field, f"{field}: {PEFT_CONFIG} {key} must be {what}; got {echo(got)}")
            return checked

        peft_type = value("peft_type", lambda v: v.upper() if isinstance(v, str) and len(v) <= 40 else None,
                          "a PEFT type such as \"LORA\"", "LORA")
        target = raw.get("target_modules")
        if target is not None and not isinstance(target, str) and not (
                isinstance(target, list) and all(isinstance(t, str) for t in target)):
            raise InputError(field, f"{field}: {PEFT_CONFIG} target_modules must be a module name or a list of them; "
                                    f"got {echo(target)}")
        return cls(
            present=True, peft_type=peft_type,
            r=value("r", _rank, f"a whole number from 1 to {MAX_RANK}"),
            lora_alpha=value("lora_alpha", _alpha, "a finite number"),
            alpha=value("alpha", _alpha, "a finite number"),
            use_rslora=value("use_rslora", _flag, "true or false", False),
            use_dora=value("use_dora", _flag, "true or false", False),
            alpha_pattern=_patterns(field, "alpha_pattern", raw.get("alpha_pattern"), _alpha, "a finite number"),
            rank_pattern=_patterns(field, "rank_pattern", raw.get("rank_pattern"), _rank,
                                   f"a whole number from 1 to {MAX_RANK}"))


@dataclass(frozen=True)
class AdapterSpec:
    """One adapter as read, every part checked: what `formats.normalise` turns into LoRA pairs."""

    source: str  # the weights file's name, for messages
    config: AdapterConfig
    tensors: dict[str, torch.Tensor]  # as read: `formats.normalise` checks them (check_tensors) and their shapes


def read_spec(field: str, path: Path, root: Path | None = None) -> AdapterSpec:
    """Read a PEFT folder (or a folder of one .safetensors file) or a single .safetensors file whose
    files all resolve inside `root` (default: the folder itself, or the file's folder)."""
    root = (root or (path if path.is_dir() else path.parent)).resolve()
    config = AdapterConfig()
    if path.is_dir():
        folder = confined(field, path, root)
        weights = folder / PEFT_WEIGHTS
        if not weights.is_file():
            found = sorted(p.name for p in folder.glob("*.safetensors"))
            if len(found) != 1:
                raise InputError(field, f"{field}: the folder {echo(path.name)} holds no {PEFT_WEIGHTS} (a PEFT "
                                        "adapter folder as upstream's trainer writes it) nor exactly one .safetensors file")
            weights = folder / found[0]
        if (folder / PEFT_CONFIG).is_file():
            config = AdapterConfig.parse(field, confined(field, folder / PEFT_CONFIG, root).read_bytes())
        path = weights
    if path.suffix.lower() in (".pt", ".pth", ".bin", ".ckpt"):
        raise InputError(field, f"{field}: {echo(path.name)} is a pickle-based file, which this server never loads; "
                                "convert it to .safetensors")
    real = confined(field, path, root)
    try:
        tensors = load_file(str(real), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError, MemoryError) as exc:
        raise InputError(field, f"{field}: {echo(path.name)} is not a readable safetensors file "
                                f"({echo(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 120)})") from None
    return AdapterSpec(path.name, config, tensors)


def confined(field: str, path: Path, root: Path) -> Path:
    """`path` with every symlink resolved, when that lies inside `root` (resolved); else InputError."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # a loop of links, a name too long to look up
        raise InputError(field, f"{field}: {echo(path.name)} cannot be resolved to a file") from None
    if real != root and root not in real.parents:
        raise InputError(field, f"{field}: {echo(path.name)} links outside the adapter folder; every file of an "
                                "adapter must lie inside ACESTEP_LORA_DIR (or the download cache)")
    return real


def check_name(field: str, value: str) -> None:
    """Refuse a name no file system can hold before it is looked up (a 300-character name is an
    OSError on lookup, not a missing file)."""
    parts = value.replace("\\", "/").split("/")
    if any(len(part.encode("utf-8", "surrogatepass")) > _FILE_NAME_BYTES for part in parts):
        raise InputError(field, f"{field}: {echo(value)} has a part longer than {_FILE_NAME_BYTES} bytes, longer "
                                "than any file name")


def check_tensors(field: str, tensors: dict[str, torch.Tensor]) -> None:
    """Every tensor floating point (an alpha: any real number), finite and not empty; each alpha one number.
    (Shapes are checked where each kind's parts are put together: `formats`, `lycoris`.)"""
    for key, tensor in tensors.items():
        shown = echo(key, 80)
        is_alpha = key == "alpha" or key.endswith(".alpha")
        if tensor.is_complex() or tensor.dtype == torch.bool or not (tensor.is_floating_point() or is_alpha):
            raise InputError(field, f"{field}: tensor {shown} has dtype {str(tensor.dtype).removeprefix('torch.')}; "
                                    "adapter weights are floating point")
        if is_alpha and tensor.numel() != 1:
            raise InputError(field, f"{field}: {shown} holds {tensor.numel()} values; an alpha is one number")
        if tensor.numel() == 0:
            raise InputError(field, f"{field}: tensor {shown} is empty (shape {tuple(tensor.shape)}): a rank-0 "
                                    "adapter changes nothing")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InputError(field, f"{field}: tensor {shown} holds NaN or infinite values; the adapter is broken "
                                    "(a diverged training run?)")


def check_finite(field: str, what: str, tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` when finite; an update that overflowed (huge alphas times large factors) is refused."""
    if not bool(torch.isfinite(tensor).all()):
        raise InputError(field, f"{field}: the update of {echo(what, 80)} overflows (infinite or NaN once scaled); "
                                "the adapter's alpha or weights are out of range")
    return tensor


def _first(field: str, what: str, patterns: tuple[Pattern, ...], module: str, default):
    for pattern in patterns:
        if pattern.matches(field, what, module):
            return pattern.value
    return default


def _patterns(field: str, key: str, raw: Any, check, what: str) -> tuple[Pattern, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise InputError(field, f"{field}: {PEFT_CONFIG} {key} must be an object of module patterns and values; "
                                f"got {echo(raw)}")
    if len(raw) > MAX_PATTERNS:
        raise InputError(field, f"{field}: {PEFT_CONFIG} {key} has {len(raw)} entries; at most {MAX_PATTERNS}")
    patterns = []
    for pattern, got in raw.items():
        value = check(got)
        if value is None:
            raise InputError(field, f"{field}: {PEFT_CONFIG} {key}[{echo(pattern)}] must be {what}; got {echo(got)}")
        if not pattern or len(pattern) > MAX_PATTERN_CHARS:
            raise InputError(field, f"{field}: {PEFT_CONFIG} {key} has a key of {len(pattern)} characters; keys "
                                    f"are module names or patterns of 1 to {MAX_PATTERN_CHARS}")
        try:
            patterns.append(Pattern(pattern, regex.compile(rf"(^|\.){regex.escape(pattern)}$"),
                                    regex.compile(pattern), value))
        except (regex.error, ValueError, OverflowError, RecursionError) as exc:
            raise InputError(field, f"{field}: {PEFT_CONFIG} {key} key {echo(pattern)} is not a valid regular "
                                    f"expression ({echo(str(exc), 80)})") from None
    return tuple(patterns)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _alpha(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and abs(number) <= MAX_ALPHA else None


def _rank(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number == int(number) and 1 <= number <= MAX_RANK else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _depth(value: Any) -> int:
    """How deep `value` nests (iteratively: a hostile config may be deeper than the interpreter's stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_CONFIG_DEPTH:
            return depth
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest
