"""The DiT half of a checkpoint as diffusers modules, built from an official ACE-Step config.

An official `config.json` describes one `AceStepConditionGenerationModel`; diffusers splits it into
four modules. `module_configs` maps the fields, `DiTModel` holds the loaded modules plus the facts
the sampler needs (variant, silence latent, pool window).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from diffusers import AceStepTransformer1DModel
from diffusers.pipelines.ace_step.modeling_ace_step import (
    AceStepAudioTokenDetokenizer,
    AceStepAudioTokenizer,
    AceStepConditionEncoder,
)

from ...errors import CheckpointError
from ..variants import Variant

SLIDING, FULL = "sliding_attention", "full_attention"

REQUIRED_FIELDS = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "in_channels", "audio_acoustic_hidden_dim", "patch_size",
    "text_hidden_dim", "timbre_hidden_dim", "num_lyric_encoder_hidden_layers",
    "num_timbre_encoder_hidden_layers", "num_attention_pooler_hidden_layers", "pool_window_size",
    "fsq_dim", "fsq_input_levels", "fsq_input_num_quantizers",
)


@dataclass
class DiTModel:
    """A loaded DiT checkpoint: the four diffusers modules and what sampling needs to know."""

    variant: Variant
    transformer: AceStepTransformer1DModel
    condition_encoder: AceStepConditionEncoder
    audio_tokenizer: AceStepAudioTokenizer
    audio_detokenizer: AceStepAudioTokenDetokenizer
    timbre_frames: int = 750  # frames of silence fed to the timbre encoder when no reference is given
    # layer -> cross-attention heads read for lyric alignment (config.json's
    # `lyric_alignment_layers_config`); None: upstream's 2B default (attention_capture.py)
    alignment_heads: dict[int, tuple[int, ...]] | None = None

    @property
    def silence_latent(self) -> torch.Tensor:
        """VAE latent of silence, [1, frames, channels]: the default source and timbre input."""
        return self.condition_encoder.silence_latent

    @property
    def null_condition_emb(self) -> torch.Tensor:
        """The learned "no condition" token, [1, 1, encoder_hidden], the unconditional CFG branch."""
        return self.condition_encoder.null_condition_emb

    @property
    def pool_window_size(self) -> int:
        return self.audio_tokenizer.pool_window_size

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"transformer": self.transformer, "condition_encoder": self.condition_encoder,
                "audio_tokenizer": self.audio_tokenizer, "audio_detokenizer": self.audio_detokenizer}


def layer_types_of(config: Mapping) -> list[str]:
    """Upstream's rule: the list in the config, else layer i is sliding iff i is even."""
    types = config.get("layer_types")
    if types is None:
        types = [SLIDING if i % 2 == 0 else FULL for i in range(int(config["num_hidden_layers"]))]
    if config.get("use_sliding_window") is False:
        types = [FULL] * len(types)
    unknown = sorted(set(types) - {SLIDING, FULL})
    if unknown:
        raise CheckpointError("config.json", f"layer_types holds unknown entries {unknown}; "
                              f"allowed: {SLIDING!r}, {FULL!r}")
    return list(types)


def _padded(types: list[str], count: int) -> list[str]:
    # Layers past the end of layer_types are never run (see truncate_encoders); any value works.
    return (types + [FULL] * count)[:count]


def module_configs(config: Mapping) -> dict[str, dict]:
    """Constructor arguments of the four diffusers modules for one official config.

    XL checkpoints have a wider decoder than their encoders: the `encoder_*` fields size the
    condition encoder, tokenizer and detokenizer, and `condition_embedder` maps between the two.
    """
    missing = [f for f in REQUIRED_FIELDS if f not in config]
    if missing:
        raise CheckpointError("config.json", f"DiT config lacks required fields {missing}")
    types = layer_types_of(config)
    enc_hidden = int(config.get("encoder_hidden_size") or config["hidden_size"])
    shared = dict(
        num_attention_heads=config["num_attention_heads"], num_key_value_heads=config["num_key_value_heads"],
        head_dim=config["head_dim"], rope_theta=float(config.get("rope_theta", 1_000_000)),
        attention_bias=bool(config.get("attention_bias", False)),
        attention_dropout=float(config.get("attention_dropout", 0.0)),
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)), sliding_window=config.get("sliding_window", 128),
    )
    encoder_shared = dict(
        shared, hidden_size=enc_hidden,
        intermediate_size=int(config.get("encoder_intermediate_size") or config["intermediate_size"]),
        num_attention_heads=config.get("encoder_num_attention_heads") or config["num_attention_heads"],
        num_key_value_heads=config.get("encoder_num_key_value_heads") or config["num_key_value_heads"],
    )
    n_pool = int(config["num_attention_pooler_hidden_layers"])
    if n_pool > len(types):
        raise CheckpointError("config.json", f"num_attention_pooler_hidden_layers={n_pool} exceeds "
                              f"the {len(types)} entries of layer_types")
    n_lyric = int(config["num_lyric_encoder_hidden_layers"])
    return {
        "transformer": dict(
            shared, hidden_size=config["hidden_size"], intermediate_size=config["intermediate_size"],
            num_hidden_layers=config["num_hidden_layers"], in_channels=config["in_channels"],
            audio_acoustic_hidden_dim=config["audio_acoustic_hidden_dim"], patch_size=config["patch_size"],
            layer_types=types, encoder_hidden_size=enc_hidden, is_turbo=bool(config.get("is_turbo", False)),
            model_version=config.get("model_version"),
        ),
        "condition_encoder": dict(
            encoder_shared, text_hidden_dim=config["text_hidden_dim"],
            timbre_hidden_dim=config["timbre_hidden_dim"], num_lyric_encoder_hidden_layers=n_lyric,
            num_timbre_encoder_hidden_layers=config["num_timbre_encoder_hidden_layers"],
            layer_types=_padded(types, n_lyric),
        ),
        "audio_tokenizer": dict(
            encoder_shared, audio_acoustic_hidden_dim=config["audio_acoustic_hidden_dim"],
            pool_window_size=config["pool_window_size"], fsq_dim=config["fsq_dim"],
            fsq_input_levels=list(config["fsq_input_levels"]),
            fsq_input_num_quantizers=config["fsq_input_num_quantizers"],
            num_attention_pooler_hidden_layers=n_pool, layer_types=types[:n_pool],
        ),
        "audio_detokenizer": dict(
            encoder_shared, audio_acoustic_hidden_dim=config["audio_acoustic_hidden_dim"],
            pool_window_size=config["pool_window_size"], num_attention_pooler_hidden_layers=n_pool,
            layer_types=types[:n_pool],
        ),
    }


def build_modules(config: Mapping) -> dict[str, torch.nn.Module]:
    """Construct the four modules (in the current default device and dtype) for `config`."""
    kwargs = module_configs(config)
    return {
        "transformer": AceStepTransformer1DModel(**kwargs["transformer"]),
        "condition_encoder": AceStepConditionEncoder(**kwargs["condition_encoder"]),
        "audio_tokenizer": AceStepAudioTokenizer(**kwargs["audio_tokenizer"]),
        "audio_detokenizer": AceStepAudioTokenDetokenizer(**kwargs["audio_detokenizer"]),
    }


def apply_upstream_encoder_rules(encoder: AceStepConditionEncoder, layer_types: list[str],
                                 num_hidden_layers: int) -> None:
    """Make the lyric and timbre encoders run layers as upstream does.

    Upstream runs only `layers[:num_hidden_layers]` of each, and layer i follows `layer_types[i]`.
    diffusers' timbre encoder ignores `layer_types` (it always alternates), so set it here; the
    attention module's own window matters for the flash-attention backends.
    """
    for sub in (encoder.lyric_encoder, encoder.timbre_encoder):
        keep = min(len(sub.layers), num_hidden_layers)
        del sub.layers[keep:]
        sub._layer_types = list(layer_types[:keep])
        for layer, kind in zip(sub.layers, sub._layer_types):
            layer.self_attn.sliding_window = sub.sliding_window if kind == SLIDING else None


def compile_blocks(transformer: AceStepTransformer1DModel, backend: str = "inductor") -> None:
    """torch.compile each transformer block on its own (regional compilation, ACESTEP_DIT_COMPILE).

    All 24 blocks share one code object, so one compiled graph serves every block and compile time
    stays that of a single block; `dynamic=True` keeps one graph for every song length instead of
    recompiling per duration. The condition-projection cache stays outside the graphs. The
    attention switches (dit/attention.py) are traced in: the flex path's block mask enters each
    block as an input, so FlexAttention is fused into the block's graph.

    Hooks added after compiling (LoKr adapters, `lora.kron`) are honoured because the process's
    compile policy guards on them (models/compile_policy.py, applied when the models load).
    """
    for layer in transformer.layers:
        layer.compile(dynamic=True, backend=backend)
