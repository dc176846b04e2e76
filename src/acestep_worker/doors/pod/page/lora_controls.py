"""The Gradio page's LoRA controls: an adapter picker (the files and PEFT folders in ACESTEP_LORA_DIR)
and a scale slider, turned into the request's `loras` field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr

from ....schema.lora_refs import MAX_SCALE
from .inputs import NO_ADAPTER
from .inputs import STARTING_VALUES as START

if TYPE_CHECKING:
    from ....pipeline.engine import Engine


@dataclass
class LoraControls:
    components: dict  # by their names in inputs.GENERATE_INPUTS

    @staticmethod
    def fields(values: dict) -> dict:
        """The request's `loras`, from the /generate values by name."""
        name, scale = values["lora_name"], values["lora_scale"]
        if not name or name == NO_ADAPTER:
            return {}
        return {"loras": [{"name": name, "scale": float(scale)}]}


def lora_controls(engine: Engine) -> LoraControls:
    available = engine.models.adapters.available()
    with gr.Accordion("LoRA adapter", open=False, visible=bool(available), elem_id="lora"):
        with gr.Row():
            picker = gr.Dropdown([NO_ADAPTER, *available], value=START["lora_name"],
                                 label="Adapter (from ACESTEP_LORA_DIR)", elem_id="lora-name")
            scale = gr.Slider(0.0, MAX_SCALE, value=START["lora_scale"], step=0.05, label="Scale",
                              elem_id="lora-scale")
    return LoraControls({"lora_name": picker, "lora_scale": scale})
