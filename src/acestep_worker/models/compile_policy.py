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


def apply_compile_policy(dit: bool = True, planner: bool = True) -> None:
    """What compiling the DiT's blocks (`dit`) and the planner's decode step (`planner`) needs.

    The planner: dynamo's recompile limit raised to RECOMPILE_LIMIT. The DiT: guards on module hooks.
    Dynamo skips them by default, so a hook added after compiling would be silently ignored; LoKr
    adapters in Kronecker form are per-job forward hooks on compiled DiT blocks (lora/kron.py), so the
    guards are on: a new set of hooks recompiles once, later jobs reuse that graph. They are on for
    the whole process, so a planner compiled beside such a DiT guards on hooks too (a few microseconds
    a token). Idempotent."""
    config = torch._dynamo.config
    if planner:
        config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    if dit:
        config.skip_nnmodule_hook_guards = False
