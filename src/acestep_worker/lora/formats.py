"""LoRA files as people ship them, read into one form: diffusers module names, scaling folded in.

Accepted (safetensors only; nothing is unpickled):

| layout                   | keys (per adapted Linear)                                  | scaling            |
|--------------------------|------------------------------------------------------------|--------------------|
| PEFT folder (upstream's  | `base_model.model.layers.N.self_attn.q_proj.lora_A.weight` | adapter_config.json|
|  trainer)                |  + `adapter_config.json`                                   | lora_alpha / r     |
| single file, PEFT names  | `[diffusion_model.|transformer.|decoder.]<module>.lora_A…` | 1 (alpha = rank)   |
| single file, kohya /     | `<module>.lora_down.weight`, `.lora_up.weight`, `.alpha`;  | alpha / rank       |
|  ComfyUI                 |  or flat `lora_unet_layers_N_self_attn_q_proj.lora_down…`  |                    |

`<module>` may use upstream's names (`q_proj`, `o_proj`) or diffusers' (`to_q`, `to_out.0`); both
become diffusers' names on `AceStepTransformer1DModel`. The adapter's scaling (alpha / rank, or
alpha / sqrt(rank) for rsLoRA) is folded into `lora_B`, so every adapter loads with scale 1 and
a request's `scale` is the only multiplier left. LoKr/LoHa (LyCORIS), DoRA and adapters for
modules outside the DiT decoder are refused with a sentence that says so.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..dit.loading import official_to_diffusers_key
from ..errors import InputError

PEFT_CONFIG, PEFT_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
_PREFIXES = ("base_model.model.", "diffusion_model.", "model.", "transformer.", "decoder.")
_PARTS = (("lora_A.default.weight", "A"), ("lora_B.default.weight", "B"), ("lora_A.weight", "A"),
          ("lora_B.weight", "B"), ("lora_down.weight", "A"), ("lora_up.weight", "B"), ("alpha", "alpha"))
_LYCORIS = ("lokr_", "hada_", "oft_", "boft_")
_FLAT_MODULE = re.compile(r"^(?:decoder_)?layers_(\d+)_(self_attn|cross_attn|mlp)_(\w+)$")


@dataclass(frozen=True)
class AdapterWeights:
    """One adapter, ready for `load_lora_adapter(prefix="transformer")`."""

    state_dict: dict[str, torch.Tensor]  # transformer.<module>.lora_A/B.weight, scaling folded into B
    format: str  # "peft" | "peft-file" | "kohya"
    rank: int
    modules: int


def read_adapter(field: str, path: Path) -> AdapterWeights:
    """Read a PEFT folder or a single .safetensors file; InputError naming `field` when it is not one."""
    config: dict = {}
    if path.is_dir():
        weights = path / PEFT_WEIGHTS
        if not weights.is_file():
            found = sorted(p.name for p in path.glob("*.safetensors"))
            if len(found) != 1:
                raise InputError(field, f"{field}: the folder {path.name!r} holds no {PEFT_WEIGHTS} (a PEFT adapter "
                                        "folder as upstream's trainer writes it) nor exactly one .safetensors file")
            weights = path / found[0]
        if (path / PEFT_CONFIG).is_file():
            try:
                config = json.loads((path / PEFT_CONFIG).read_text())
            except (ValueError, UnicodeDecodeError):
                raise InputError(field, f"{field}: {PEFT_CONFIG} is not valid JSON") from None
        path = weights
    if path.suffix.lower() in (".pt", ".pth", ".bin", ".ckpt"):
        raise InputError(field, f"{field}: {path.name} is a pickle-based file, which this server never loads; "
                                "convert it to .safetensors")
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(field, f"{field}: {path.name} is not a readable safetensors file "
                                f"({str(exc).splitlines()[0][:120]})") from None
    return normalise(field, tensors, config)


def normalise(field: str, tensors: dict[str, torch.Tensor], config: dict | None = None) -> AdapterWeights:
    config = config or {}
    kind = str(config.get("peft_type", "LORA")).upper()
    if kind in ("LOKR", "LOHA", "OFT", "BOFT") or any(marker in key for key in tensors for marker in _LYCORIS):
        raise InputError(field, f"{field} is a LyCORIS adapter (LoKr/LoHa/OFT); only LoRA adapters are supported "
                                "here (diffusers' loader for this model takes LoRA only)")
    if config.get("use_dora") or any("dora_scale" in k or "lora_magnitude_vector" in k for k in tensors):
        raise InputError(field, f"{field} is a DoRA adapter, which is not supported; use a plain LoRA")
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        module, part = _split(key)
        if module is None:
            raise InputError(field, f"{field} is not a LoRA adapter this server understands: key {key[:80]!r} is "
                                    "not lora_A/lora_B, lora_down/lora_up or alpha")
        modules.setdefault(module, {})[part] = tensor
    if not modules:
        raise InputError(field, f"{field} holds no LoRA weights")
    state, ranks = {}, set()
    fmt = "peft" if config else ("kohya" if any(k.endswith("lora_down.weight") for k in tensors) else "peft-file")
    for module, parts in modules.items():
        if "A" not in parts or "B" not in parts:
            raise InputError(field, f"{field}: module {module} has only half of its LoRA pair")
        down, up = parts["A"].float(), parts["B"].float()
        if down.dim() != 2 or up.dim() != 2 or up.shape[1] != down.shape[0]:
            raise InputError(field, f"{field}: module {module} has LoRA weights of shapes {tuple(down.shape)} and "
                                    f"{tuple(up.shape)}, which do not form a low-rank pair of a Linear layer")
        target = _diffusers_module(field, module)
        rank = down.shape[0]
        alpha = float(parts["alpha"]) if "alpha" in parts else _config_alpha(config, module, rank)
        scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        state[f"transformer.{target}.lora_A.weight"] = down.contiguous()
        state[f"transformer.{target}.lora_B.weight"] = (up * scaling).contiguous()
        ranks.add(rank)
    return AdapterWeights(state, fmt, max(ranks), len(modules))


def _split(key: str) -> tuple[str | None, str]:
    for suffix, part in _PARTS:
        if key.endswith("." + suffix):
            module = key[: -len(suffix) - 1]
            for prefix in _PREFIXES:
                module = module.removeprefix(prefix)
            if module.startswith("lora_unet_"):
                flat = _FLAT_MODULE.match(module.removeprefix("lora_unet_"))
                if flat is None:
                    return None, part
                layer, block, proj = flat.groups()
                module = f"layers.{layer}.{block}.{'to_out.0' if proj == 'to_out_0' else proj}"
            return module, part
    return None, ""


def _diffusers_module(field: str, module: str) -> str:
    if not module.startswith("layers."):
        raise InputError(field, f"{field} adapts {module!r}, outside the DiT decoder's layers; only decoder "
                                "adapters (as upstream's trainer writes them) are supported")
    return official_to_diffusers_key(f"decoder.{module}.weight").removeprefix("transformer.").removesuffix(".weight")


def _config_alpha(config: dict, module: str, rank: int) -> float:
    for pattern, alpha in (config.get("alpha_pattern") or {}).items():
        if re.search(rf"(^|\.){re.escape(pattern)}$", module) or re.fullmatch(pattern, module):
            return float(alpha)
    return float(config.get("lora_alpha", rank))


def check_fits(field: str, label: str, weights: AdapterWeights, transformer: torch.nn.Module, model: str) -> None:
    """Refuse an adapter whose modules or shapes do not match this DiT, naming the first mismatch."""
    for key, tensor in weights.state_dict.items():
        module_name = key.removeprefix("transformer.").rsplit(".lora_", 1)[0]
        try:
            module = transformer.get_submodule(module_name)
        except AttributeError:
            raise InputError(field, f"{field} ({label}) does not fit model {model!r}: it adapts {module_name}, which "
                                    "this model does not have (an adapter for another model?)") from None
        base = getattr(module, "base_layer", module)
        if not isinstance(base, torch.nn.Linear):
            raise InputError(field, f"{field} ({label}) adapts {module_name}, which is not a Linear layer")
        is_down = ".lora_A." in key
        have = tensor.shape[1] if is_down else tensor.shape[0]
        want = base.in_features if is_down else base.out_features
        if have != want:
            side = "inputs" if is_down else "outputs"
            raise InputError(field, f"{field} ({label}) does not fit model {model!r}: {module_name} has {want} "
                                    f"{side}, the adapter expects {have} (an adapter for another model size, such "
                                    "as XL on the 2B DiT?)")
