"""Where an adapter's update lands: the DiT's Linear layer behind a module name."""

from __future__ import annotations

import torch


def base_linear(transformer: torch.nn.Module, module_name: str) -> torch.nn.Module:
    """The layer `module_name` names, under peft's LoRA wrapper when one has been injected there
    (Kronecker hooks and DoRA merges act on the base weights, beside any LoRA pair).
    AttributeError when the model has no such module."""
    layer = transformer.get_submodule(module_name)
    return layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer
