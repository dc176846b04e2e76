"""Load a DiT checkpoint into diffusers modules, from the official layout or the diffusers layout.

Official layout: `config.json`, `model.safetensors` (or shards plus an index) and
`silence_latent.pt` in one folder, one state dict for the whole `AceStepConditionGenerationModel`.
The state dict is split by prefix and renamed onto diffusers' module names in memory.

diffusers layout: `model_index.json` plus one folder per component, read with `from_pretrained`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AceStepTransformer1DModel
from diffusers.pipelines.ace_step.modeling_ace_step import (
    AceStepAudioTokenDetokenizer,
    AceStepAudioTokenizer,
    AceStepConditionEncoder,
)

from ...errors import CheckpointError
from ..variants import detect_variant
from ..weights import empty_modules, iter_tensors, load_into, safetensors_files
from .attention_capture import alignment_heads
from .model import DiTModel, apply_upstream_encoder_rules, build_modules, layer_types_of

# Official prefix -> diffusers module (longest prefixes first so "detokenizer." is not "tokenizer.").
_PREFIXES = (("detokenizer.", "audio_detokenizer"), ("tokenizer.", "audio_tokenizer"),
             ("decoder.", "transformer"), ("encoder.", "condition_encoder"))
_ATTENTION_RENAMES = ((".q_proj.", ".to_q."), (".k_proj.", ".to_k."), (".v_proj.", ".to_v."),
                      (".o_proj.", ".to_out.0."), (".q_norm.", ".norm_q."), (".k_norm.", ".norm_k."))
_TRANSFORMER_RENAMES = (("proj_in.1.", "proj_in_conv."), ("proj_out.1.", "proj_out_conv."))
_UNMAPPED = "<unmapped>."


def official_to_diffusers_key(key: str) -> str:
    """`decoder.layers.0.self_attn.q_proj.weight` -> `transformer.layers.0.self_attn.to_q.weight`."""
    if key == "null_condition_emb":
        return "condition_encoder.null_condition_emb"
    for prefix, module in _PREFIXES:
        if key.startswith(prefix):
            rest = key[len(prefix):]
            if module == "transformer":
                for old, new in _TRANSFORMER_RENAMES:
                    if rest.startswith(old):
                        rest = new + rest[len(old):]
            for old, new in _ATTENTION_RENAMES:
                rest = rest.replace(old, new)
            return f"{module}.{rest}"
    return _UNMAPPED + key


def diffusers_to_official_key(key: str) -> str:
    """The inverse of `official_to_diffusers_key` (used to write official-layout checkpoints)."""
    if key == "condition_encoder.null_condition_emb":
        return "null_condition_emb"
    module, rest = key.split(".", 1)
    prefix = {m: p for p, m in _PREFIXES}[module]
    for old, new in _ATTENTION_RENAMES:
        rest = rest.replace(new, old)
    if module == "transformer":
        for old, new in _TRANSFORMER_RENAMES:
            if rest.startswith(new):
                rest = old + rest[len(new):]
    return prefix + rest


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(folder, "not a DiT checkpoint folder: config.json is missing")
    try:
        config = json.loads(path.read_text())
    except ValueError as exc:
        raise CheckpointError(path, f"config.json is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise CheckpointError(path, "config.json must hold a JSON object")
    return config


def load_silence_latent(folder: Path) -> torch.Tensor:
    """`silence_latent.pt` is a plain tensor [1, channels, frames]; return it as [1, frames, channels]."""
    path = folder / "silence_latent.pt"
    if not path.is_file():
        raise CheckpointError(folder, "silence_latent.pt is missing")
    try:
        latent = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or non-tensor files
        raise CheckpointError(path, f"silence_latent.pt is not a loadable tensor: {exc}") from exc
    if not isinstance(latent, torch.Tensor) or latent.ndim != 3 or latent.shape[0] != 1:
        raise CheckpointError(path, "silence_latent.pt must hold one tensor of shape [1, channels, frames]")
    return latent.transpose(1, 2).contiguous().float()


def load_official_dit(folder: Path, device: torch.device, dtype: torch.dtype) -> DiTModel:
    config = read_config(folder)
    silence = load_silence_latent(folder)
    if silence.shape[-1] != config.get("audio_acoustic_hidden_dim", silence.shape[-1]):
        raise CheckpointError(folder / "silence_latent.pt",
                              f"silence latent has {silence.shape[-1]} channels, config says "
                              f"{config['audio_acoustic_hidden_dim']}")
    files = safetensors_files(folder)
    with empty_modules(device, dtype):
        modules = build_modules(config)
    targets = {f"{name}.{key}": tensor for name, module in modules.items()
               for key, tensor in module.state_dict().items()}
    load_into(targets, iter_tensors(files), official_to_diffusers_key, folder,
              optional=frozenset({"condition_encoder.silence_latent"}))
    encoder = modules["condition_encoder"]
    encoder.silence_latent = silence.to(device=device, dtype=dtype)
    apply_upstream_encoder_rules(encoder, layer_types_of(config), int(config["num_hidden_layers"]))
    return _assemble(folder.name, config, modules)


def load_diffusers_dit(folder: Path, device: torch.device, dtype: torch.dtype) -> DiTModel:
    classes = {"transformer": AceStepTransformer1DModel, "condition_encoder": AceStepConditionEncoder,
               "audio_tokenizer": AceStepAudioTokenizer, "audio_detokenizer": AceStepAudioTokenDetokenizer}
    subfolders = {"audio_detokenizer": "audio_token_detokenizer"}
    modules = {}
    for name, cls in classes.items():
        sub = folder / subfolders.get(name, name)
        if not (sub / "config.json").is_file():
            raise CheckpointError(sub, f"diffusers layout lacks the {sub.name} component")
        try:
            modules[name] = cls.from_pretrained(sub, use_safetensors=True, torch_dtype=dtype).to(device)
        except (OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(sub, f"cannot load {sub.name}: {exc}") from exc
    config = dict(modules["transformer"].config)
    apply_upstream_encoder_rules(modules["condition_encoder"], layer_types_of(config),
                                 int(config["num_hidden_layers"]))
    return _assemble(folder.name, config, modules)


def _assemble(name: str, config: dict, modules: dict[str, torch.nn.Module]) -> DiTModel:
    for module in modules.values():
        module.eval().requires_grad_(False)
    return DiTModel(variant=detect_variant(name, config), timbre_frames=int(config.get("timbre_fix_frame", 750)),
                    alignment_heads=alignment_heads(config), **modules)


def is_diffusers_layout(folder: Path) -> bool:
    return (folder / "model_index.json").is_file()


def load_dit(folder: str | Path, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32) -> DiTModel:
    """Load the DiT checkpoint at `folder` (either layout) onto `device` in `dtype`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(folder, "DiT checkpoint folder does not exist")
    device = torch.device(device)
    if is_diffusers_layout(folder):
        return load_diffusers_dit(folder, device, dtype)
    return load_official_dit(folder, device, dtype)

