"""torch.compile's process-wide settings that our compiled pieces rely on, set once at start-up.

dynamo keeps its configuration per process, so two modules that each changed it when they first
compiled (the planner's decode step, the DiT's blocks) changed it for everything else too, and at a
moment no one could see. Both settings are made here, once, before any model is loaded.
"""

from __future__ import annotations

import torch

# The planner's compiled decode step is one graph per (rows, capacity) shape by design (dynamic=False;
# capacities step by 256 tokens, rows are the batch, doubled with guidance): past dynamo's default
# recompile limit of 8, new shapes would silently run eager.
RECOMPILE_LIMIT = 64


def apply_compile_policy() -> None:
    """Raise dynamo's recompile limit to RECOMPILE_LIMIT, and guard compiled modules on their hooks.

    Dynamo skips guards on module hooks by default, so a hook added after compiling would be silently
    ignored; LoKr adapters in Kronecker form are per-job forward hooks on compiled DiT blocks
    (lora/kron.py), so the guards are on: a new set of hooks recompiles once, later jobs reuse that
    graph. Idempotent."""
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    config.skip_nnmodule_hook_guards = False
