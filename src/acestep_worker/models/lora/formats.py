"""Adapter files as people ship them, read into one form: diffusers module names, LoRA pairs, scaling folded in.

Accepted (safetensors only; nothing is unpickled):

| layout                     | keys (per adapted Linear)                                    | scaling             |
|----------------------------|--------------------------------------------------------------|---------------------|
| PEFT folder, LoRA          | `base_model.model.layers.N.self_attn.q_proj.lora_A.weight`   | adapter_config.json:|
|  (upstream's trainer)      |  `.lora_B.weight` + `adapter_config.json`                    |  lora_alpha / r     |
| PEFT folder, DoRA          |  the same + `.lora_magnitude_vector` (`use_dora: true`)      |  lora_alpha / r     |
| PEFT folder, LoKr          |  `.lokr_w1` or `.lokr_w1_a`/`_b`, `.lokr_w2` or `_w2_a`/`_b` |  alpha / r          |
| PEFT folder, LoHa          |  `.hada_w1_a`, `.hada_w1_b`, `.hada_w2_a`, `.hada_w2_b`      |  alpha / r          |
| file, PEFT names           | `[diffusion_model.|transformer.|decoder.]<module>.lora_A…`   | 1 (alpha = rank)    |
| file, kohya / ComfyUI      | `<module>.lora_down.weight`, `.lora_up.weight`, `.alpha`;    | alpha / rank        |
|                            |  or flat `lora_unet_layers_N_self_attn_q_proj.lora_down…`    |                     |
| file, LyCORIS (ComfyUI,    | flat `lora_unet_…` or `lycoris_…` + `.lokr_w1[_a/_b]`,       | alpha / rank, by    |
|  kohya-LyCORIS; upstream's |  `.lokr_w2[_a/_b]` or `.hada_w1_a`…; `.alpha`; DoRA:         |  LyCORIS' rules     |
|  LoKr trainer: a folder    |  `.dora_scale` (also on `lora_down`/`lora_up` pairs)         |  (see `lycoris`)    |
|  with `lokr_weights…`)     |                                                              |                     |

`<module>` may use upstream's names (`q_proj`, `o_proj`) or diffusers' (`to_q`, `to_out.0`); both
become diffusers' names on `AceStepTransformer1DModel`. Every kind becomes an exact LoRA pair
(`lycoris` says how for LoKr, LoHa and DoRA), except a LoKr module whose Kronecker form costs fewer
multiply-adds than its pair would (`kron`): it keeps its two factors (`krons`). The scaling
(alpha / rank, alpha / sqrt(rank) for rsLoRA) is folded into `lora_B` (a Kronecker's w1), so
every adapter loads with scale 1 and a request's `scale` is the only multiplier left. DoRA's
magnitude is kept aside (`magnitudes`): it needs the DiT's weights and is resolved at load. OFT/BOFT and adapters for modules outside the DiT decoder are
refused with a sentence that says so.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

import torch

from ...errors import InputError, echo
from ..dit.loading import official_to_diffusers_key
from . import lycoris
from .layers import base_linear
from .spec import (
    LYCORIS_WEIGHTS,
    PEFT_CONFIG,
    PEFT_TYPES,
    PEFT_WEIGHTS,
    AdapterConfig,
    check_finite,
    check_tensors,
    read_spec,
)

__all__ = ["LYCORIS_WEIGHTS", "PEFT_CONFIG", "PEFT_WEIGHTS", "AdapterWeights", "check_fits", "normalise", "read_adapter"]
_PREFIXES = ("base_model.model.", "diffusion_model.", "model.", "transformer.", "decoder.")
_PARTS = (("lora_A.default.weight", "A"), ("lora_B.default.weight", "B"), ("lora_A.weight", "A"),
          ("lora_B.weight", "B"), ("lora_down.weight", "A"), ("lora_up.weight", "B"), ("alpha", "alpha"),
          ("lora_magnitude_vector.default.weight", "lora_magnitude_vector"),
          ("lora_magnitude_vector.weight", "lora_magnitude_vector"),
          *((part, part) for part in (*lycoris.LOKR_PARTS, *lycoris.LOHA_PARTS, *lycoris.TUCKER_PARTS,
                                      *lycoris.MAGNITUDE_PARTS)))
_REFUSED = (".oft_", ".boft_")
_FLAT_PREFIXES = ("lora_unet_", "lycoris_")
_FLAT_MODULE = re.compile(r"^(?:decoder_)?layers_(\d+)_(self_attn|cross_attn|mlp)_(\w+)$")


@dataclass(frozen=True)
class AdapterWeights:
    """One adapter, ready for `load_lora_adapter(prefix="transformer")`."""

    state_dict: dict[str, torch.Tensor]  # transformer.<module>.lora_A/B.weight, scaling folded into B
    format: str  # "peft" | "peft-file" | "kohya" | "lycoris", then "-lokr"/"-loha" and "-dora" when so
    rank: int  # of the widest LoRA pair it became (0: none, every module is a Kronecker update)
    modules: int
    magnitudes: dict[str, torch.Tensor] = dataclass_field(default_factory=dict)  # DoRA: <module> -> [out, 1] or [1, in]
    # LoKr modules applied in Kronecker form (`kron`): <module> -> (w1 [o1, i1] with scaling folded in, w2 [o2, i2])
    krons: dict[str, tuple[torch.Tensor, torch.Tensor]] = dataclass_field(default_factory=dict)


def read_adapter(field: str, path: Path, kron_forward: bool = True, root: Path | None = None) -> AdapterWeights:
    """Read a PEFT folder or a single .safetensors file whose files lie inside `root` (spec.read_spec);
    InputError naming `field` when it is not an adapter this server loads.

    `kron_forward` False makes every LoKr module a LoRA pair (bench/lora.py's comparison)."""
    spec = read_spec(field, path, root)
    return normalise(field, spec.tensors, spec.config, kron_forward)


def normalise(field: str, tensors: dict[str, torch.Tensor], config: AdapterConfig | dict | None = None,
              kron_forward: bool = True) -> AdapterWeights:
    """An adapter's tensors (and its config: typed, or a dict to check) as LoRA pairs and Kronecker factors."""
    if not isinstance(config, AdapterConfig):
        config = AdapterConfig.from_dict(field, config) if config else AdapterConfig()
    kind = config.peft_type
    refused = next((key for key in tensors if any(marker in key for marker in _REFUSED)), None)
    if kind not in PEFT_TYPES or refused:
        what = f"peft_type {echo(kind)}" if kind not in PEFT_TYPES else f"key {echo(refused)} (OFT/BOFT)"
        raise InputError(field, f"{field} is an adapter type this server does not load ({what}); supported: LoRA, "
                                "DoRA, LoKr and LoHa, as PEFT folders or safetensors files")
    check_tensors(field, tensors)
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        module, part = _split(key)
        if module is None:
            raise InputError(field, f"{field} is not a LoRA adapter this server understands: key {echo(key, 80)} is "
                                    "not lora_A/lora_B, lora_down/lora_up, alpha, or a LoKr/LoHa/DoRA part")
        modules.setdefault(module, {})[part] = tensor
    if not modules:
        raise InputError(field, f"{field} holds no LoRA weights")
    state, magnitudes, krons, families = {}, {}, {}, set()
    for module, parts in modules.items():
        target = _diffusers_module(field, module)
        family = lycoris.family(field, module, parts)
        families.add(family)
        scaling = _lycoris_config_scaling(field, config, module) if config.present and family != "lora" else None
        magnitude = lycoris.magnitude_of(field, module, parts)
        if family == "lokr":  # a DoRA-decomposed LoKr needs its pair: DoRA resolves it against the weights
            how, (down, up) = lycoris.lokr_update(field, module, parts, scaling, kron_forward and magnitude is None)
            if how == "kron":
                krons[target] = (down, up)  # (w1, w2)
                continue
        elif family == "loha":
            down, up = lycoris.compact(*lycoris.loha_pair(field, module, parts, scaling))
        else:
            down, up = _lora_pair(field, module, parts, config)
        if magnitude is not None:
            magnitudes[target] = magnitude
        state[f"transformer.{target}.lora_A.weight"] = check_finite(field, module, down.contiguous())
        state[f"transformer.{target}.lora_B.weight"] = check_finite(field, module, up.contiguous())
    for target, factors in krons.items():
        for factor in factors:
            check_finite(field, target, factor)
    return AdapterWeights(state, _format_name(tensors, config, families, bool(magnitudes)),
                          max((t.shape[0] for k, t in state.items() if k.endswith("lora_A.weight")), default=0),
                          len(modules), magnitudes, krons)


def _lora_pair(field: str, module: str, parts: dict[str, torch.Tensor],
               config: AdapterConfig) -> tuple[torch.Tensor, torch.Tensor]:
    if "A" not in parts or "B" not in parts:
        raise InputError(field, f"{field}: module {echo(module, 80)} has only half of its LoRA pair")
    down, up = parts["A"].float(), parts["B"].float()
    if down.dim() != 2 or up.dim() != 2 or up.shape[1] != down.shape[0]:
        raise InputError(field, f"{field}: module {echo(module, 80)} has LoRA weights of shapes {tuple(down.shape)} "
                                f"and {tuple(up.shape)}, which do not form a low-rank pair of a Linear layer")
    lycoris.check_layer(field, module, up.shape[0], down.shape[1])
    rank = down.shape[0]  # at least 1: spec.check_tensors refuses empty tensors
    if "alpha" in parts:
        alpha = float(parts["alpha"])
    else:
        alpha = config.alpha_for(field, module, config.lora_alpha)
        alpha = float(rank) if alpha is None else alpha
    return down, up * (alpha / math.sqrt(rank) if config.use_rslora else alpha / rank)


def _format_name(tensors: dict, config: AdapterConfig, families: set[str], dora: bool) -> str:
    if config.present:
        base = "peft"
    elif families - {"lora"} or any(key.startswith("lycoris_") for key in tensors):
        base = "lycoris"
    else:
        base = "kohya" if any(key.endswith("lora_down.weight") for key in tensors) else "peft-file"
    return "-".join([base, *sorted(families - {"lora"}), *(["dora"] if dora else [])])


def _split(key: str) -> tuple[str | None, str]:
    for suffix, part in _PARTS:
        if key.endswith("." + suffix):
            module = key[: -len(suffix) - 1]
            for prefix in _PREFIXES:
                module = module.removeprefix(prefix)
            flat_prefix = next((p for p in _FLAT_PREFIXES if module.startswith(p)), None)
            if flat_prefix:
                flat = _FLAT_MODULE.match(module.removeprefix(flat_prefix))
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


def _lycoris_config_scaling(field: str, config: AdapterConfig, module: str) -> float:
    """A PEFT LoKr/LoHa folder's alpha / r for `module`: peft scales by the configured r even where it
    stored a factor full (PEFT's defaults: r 8, alpha = r)."""
    rank = float(config.rank_for(field, module, config.r or 8))
    alpha = config.alpha_for(field, module, config.alpha)
    return (rank if alpha is None else alpha) / rank


def check_fits(field: str, label: str, weights: AdapterWeights, transformer: torch.nn.Module, model: str) -> None:
    """Refuse an adapter whose modules or shapes do not match this DiT, naming the first mismatch."""
    for module_name, is_down, have in _sides(weights):
        try:
            base = base_linear(transformer, module_name)
        except AttributeError:
            raise InputError(field, f"{field} ({label}) does not fit model {model!r}: it adapts {module_name}, which "
                                    "this model does not have (an adapter for another model?)") from None
        if not isinstance(base, torch.nn.Linear):
            raise InputError(field, f"{field} ({label}) adapts {module_name}, which is not a Linear layer")
        want = base.in_features if is_down else base.out_features
        if have != want:
            side = "inputs" if is_down else "outputs"
            raise InputError(field, f"{field} ({label}) does not fit model {model!r}: {module_name} has {want} "
                                    f"{side}, the adapter expects {have} (an adapter for another model size, such "
                                    "as XL on the 2B DiT?)")


def _sides(weights: AdapterWeights):
    """(module, is the input side, width) per side of each update: a pair's down/up, a Kronecker's i1·i2/o1·o2."""
    for key, tensor in weights.state_dict.items():
        is_down = ".lora_A." in key
        yield key.removeprefix("transformer.").rsplit(".lora_", 1)[0], is_down, tensor.shape[1 if is_down else 0]
    for module_name, (w1, w2) in weights.krons.items():
        yield module_name, True, w1.shape[1] * w2.shape[1]
        yield module_name, False, w1.shape[0] * w2.shape[0]
