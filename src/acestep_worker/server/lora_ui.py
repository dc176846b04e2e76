"""The Gradio page's LoRA controls: an adapter picker (the files and PEFT folders in ACESTEP_LORA_DIR)
and a scale slider, turned into the request's `loras` field."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ..engine import Engine
from ..lora.ref import MAX_SCALE

NONE = "(none)"


@dataclass
class LoraControls:
    components: list  # [picker, scale], in the order their values arrive

    @staticmethod
    def fields(values: tuple) -> dict:
        name, scale = values
        if not name or name == NONE:
            return {}
        return {"loras": [{"name": name, "scale": float(scale)}]}


def lora_controls(engine: Engine) -> LoraControls:
    available = engine.adapters.available()
    with gr.Accordion("LoRA adapter", open=False, visible=bool(available), elem_id="lora"):
        with gr.Row():
            picker = gr.Dropdown([NONE, *available], value=NONE, label="Adapter (from ACESTEP_LORA_DIR)",
                                 elem_id="lora-name")
            scale = gr.Slider(0.0, MAX_SCALE, value=1.0, step=0.05, label="Scale", elem_id="lora-scale")
    return LoraControls([picker, scale])
