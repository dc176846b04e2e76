"""Shared by the LoRA tests: a short job on the tiny DiT, and adapters merged by hand to compare with."""

from safetensors.torch import load_file

from acestep_worker.schema.request import parse

BASE = {"duration": 10, "seed": 11, "inference_steps": 2, "caption": "lora test"}
RENAMES = {"q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "o_proj": "to_out.0"}


def lora_audio(engine, **fields):
    return engine.generate(parse({**BASE, **fields}))


def hand_merged(engine, parts):
    """Add each adapter's low-rank product to the DiT's weights by hand; returns an undo function."""
    transformer = engine.models.dit().transformer
    saved = {}
    for deltas, scale in parts:
        for module, delta in deltas.items():
            linear = transformer.get_submodule(module)
            linear = getattr(linear, "base_layer", linear)
            saved.setdefault(module, linear.weight.detach().clone())
            linear.weight.data += scale * delta
    return lambda: [getattr(transformer.get_submodule(m), "base_layer", transformer.get_submodule(m)).weight.data
                    .copy_(w) for m, w in saved.items()]


def peft_deltas(lora_dir):
    """upstream trainer layout: B @ A * (lora_alpha / r), read straight from the files."""
    tensors = load_file(str(lora_dir / "peft-style" / "adapter_model.safetensors"))
    deltas = {}
    for key, down in tensors.items():
        if ".lora_A." in key:
            _, layer, block, proj = key.removeprefix("base_model.model.").split(".lora_A.")[0].split(".")
            up = tensors[key.replace("lora_A", "lora_B")]
            deltas[f"layers.{layer}.{block}.{RENAMES[proj]}"] = up @ down * (8 / 4)
    return deltas
