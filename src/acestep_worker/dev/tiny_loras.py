"""Tiny random LoRA, LoKr, LoHa and DoRA adapters for the tiny DiT, in every layout the engine loads
(and two it must refuse): what `tiny.build` writes under DIR/loras for the adapter tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

LORA_FOLDER = "loras"
_LORA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")


def _lora_pair(generator: torch.Generator, rank: int, fan_in: int, fan_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    down = torch.randn(rank, fan_in, generator=generator) / fan_in**0.5
    return down, torch.randn(fan_out, rank, generator=generator) * 0.5


def build_loras(folder: Path, config: dict, seed: int = 7) -> None:
    """Tiny random adapters for the DiT of `config`, one per supported layout, plus two it must refuse:

    `peft-style/` (upstream trainer: PEFT folder, self-attention, r 4, alpha 8), `comfy-style.safetensors`
    (kohya names with `.alpha` under `diffusion_model.decoder.`, cross-attention, r 2), `xl-style.safetensors`
    (PEFT names for a wider model), and the LyCORIS family and DoRA (`_build_lycoris_family`), whose
    `lokr-xl.safetensors` is a LoKr for a wider model.
    """
    generator = torch.Generator().manual_seed(seed)
    hidden, heads, kv, head_dim = (config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"],
                                   config["head_dim"])
    shapes = {"q_proj": (hidden, heads * head_dim), "k_proj": (hidden, kv * head_dim),
              "v_proj": (hidden, kv * head_dim), "o_proj": (heads * head_dim, hidden)}
    layers = range(config["num_hidden_layers"])
    peft, comfy, wide = {}, {}, {}
    for layer in layers:
        for proj in _LORA_PROJECTIONS:
            fan_in, fan_out = shapes[proj]
            down, up = _lora_pair(generator, 4, fan_in, fan_out)
            peft[f"base_model.model.layers.{layer}.self_attn.{proj}.lora_A.weight"] = down
            peft[f"base_model.model.layers.{layer}.self_attn.{proj}.lora_B.weight"] = up
            down, up = _lora_pair(generator, 2, fan_in, fan_out)
            key = f"diffusion_model.decoder.layers.{layer}.cross_attn.{proj}"  # k/v: under the condition cache
            comfy[f"{key}.lora_down.weight"], comfy[f"{key}.lora_up.weight"] = down, up
            comfy[f"{key}.alpha"] = torch.tensor(1.0)
            down, up = _lora_pair(generator, 2, fan_in + 32, fan_out + 32)
            wide[f"layers.{layer}.self_attn.{proj}.lora_A.weight"] = down
            wide[f"layers.{layer}.self_attn.{proj}.lora_B.weight"] = up
    (folder / "peft-style").mkdir(parents=True)
    save_file(peft, str(folder / "peft-style" / "adapter_model.safetensors"))
    (folder / "peft-style" / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": list(_LORA_PROJECTIONS),
        "lora_dropout": 0.0, "bias": "none", "use_rslora": False, "use_dora": False}, indent=2) + "\n")
    save_file(comfy, str(folder / "comfy-style.safetensors"))
    save_file(wide, str(folder / "xl-style.safetensors"))
    _build_lycoris_family(folder, generator, shapes, layers, hidden, config["intermediate_size"])


def _build_lycoris_family(folder: Path, generator: torch.Generator, shapes: dict, layers: range, hidden: int,
                          intermediate: int) -> None:
    """`lokr-peft/` (peft LOKR folder: full w1, w2 = w2_a @ w2_b, r 2, alpha 4, self-attention),
    `lokr-lycoris.safetensors` (LyCORIS `lycoris_` names as upstream's LoKr trainer writes them, on the MLP:
    both factors factorised with r 2 and alpha 1 on gate/up, both full on down, whose alpha LyCORIS ignores),
    `loha-lycoris.safetensors` (kohya `lora_unet_` names, self-attention q/o, r 2, alpha 1), `dora-peft/`
    (peft LORA folder with use_dora: r 4, alpha 8, magnitudes, cross-attention q/o) and `lokr-xl.safetensors`.
    """
    def rand(*shape: int, std: float = 0.3) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * std

    mlp = {"gate_proj": (hidden, intermediate), "up_proj": (hidden, intermediate), "down_proj": (intermediate, hidden)}
    lokr_peft, lokr_lycoris, loha, dora = {}, {}, {}, {}
    for layer in layers:
        for proj in _LORA_PROJECTIONS:
            fan_in, fan_out = shapes[proj]
            key = f"base_model.model.layers.{layer}.self_attn.{proj}"
            lokr_peft[f"{key}.lokr_w1"] = rand(fan_out // 8, fan_in // 8)
            lokr_peft[f"{key}.lokr_w2_a"], lokr_peft[f"{key}.lokr_w2_b"] = rand(8, 2), rand(2, 8)
            if proj in ("q_proj", "o_proj"):
                flat = f"lora_unet_layers_{layer}_self_attn_{proj}"
                for half in ("w1", "w2"):
                    loha[f"{flat}.hada_{half}_a"], loha[f"{flat}.hada_{half}_b"] = rand(fan_out, 2), rand(2, fan_in)
                loha[f"{flat}.alpha"] = torch.tensor(1.0)
                down, up = _lora_pair(generator, 4, fan_in, fan_out)
                key = f"base_model.model.layers.{layer}.cross_attn.{proj}"
                dora[f"{key}.lora_A.weight"], dora[f"{key}.lora_B.weight"] = down, up * 0.2
                dora[f"{key}.lora_magnitude_vector"] = 0.5 + torch.rand(fan_out, generator=generator)
        for proj, (fan_in, fan_out) in mlp.items():
            flat = f"lycoris_layers_{layer}_mlp_{proj}"
            if proj == "down_proj":
                lokr_lycoris[f"{flat}.lokr_w1"] = rand(fan_out // 16, fan_in // 16)
                lokr_lycoris[f"{flat}.lokr_w2"] = rand(16, 16, std=0.05)
                lokr_lycoris[f"{flat}.alpha"] = torch.tensor(4.0)
            else:
                lokr_lycoris[f"{flat}.lokr_w1_a"] = rand(fan_out // 16, 2)
                lokr_lycoris[f"{flat}.lokr_w1_b"] = rand(2, fan_in // 16)
                lokr_lycoris[f"{flat}.lokr_w2_a"], lokr_lycoris[f"{flat}.lokr_w2_b"] = rand(16, 2), rand(2, 16)
                lokr_lycoris[f"{flat}.alpha"] = torch.tensor(1.0)
    for name, tensors, config in (
            ("lokr-peft", lokr_peft, {"peft_type": "LOKR", "r": 2, "alpha": 4, "decompose_both": False,
                                      "target_modules": list(_LORA_PROJECTIONS), "rank_dropout": 0.0}),
            ("dora-peft", dora, {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_dora": True,
                                 "target_modules": ["q_proj", "o_proj"], "lora_dropout": 0.0, "bias": "none"})):
        (folder / name).mkdir(parents=True)
        save_file(tensors, str(folder / name / "adapter_model.safetensors"))
        (folder / name / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(lokr_lycoris, str(folder / "lokr-lycoris.safetensors"))
    save_file(loha, str(folder / "loha-lycoris.safetensors"))
    save_file({"lycoris_layers_0_self_attn_q_proj.lokr_w1": rand(8, 12), "lycoris_layers_0_self_attn_q_proj.lokr_w2":
               rand(8, 8)}, str(folder / "lokr-xl.safetensors"))
