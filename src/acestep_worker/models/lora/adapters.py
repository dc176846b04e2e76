"""LoRA adapters on the DiT: loaded through diffusers' PEFT integration, kept in an LRU, applied per job.

    with engine.models.adapters.session() as lora:     # inside the engine's generation lock
        used = lora.apply(dit, request.loras)   # resolve, read, check shapes, activate with scales
        ...sample...                            # on exit, whatever happened, no adapter stays active

Every kind (LoRA, DoRA, LoKr, LoHa) arrives here as exact LoRA pairs (`formats`, `lycoris`), so
one job may mix them; a LoKr module whose Kronecker form is cheaper than its pair arrives as two
factors instead, kept with the adapter and hooked onto its layer for the job only (`kron`), and a
DoRA module's dense update is added into the weights for the job only (`merged`).
Adapters are injected unfused (`set_adapters` with per-adapter weights), so switching between jobs
is a weight change, not a re-merge of the DiT. The `ACESTEP_LORA_SLOTS` most recently used stay
injected; older ones are deleted from the model. A job's `loras` list wins over the pod's global
state (`/v1/lora/*`); a job without one uses the global adapters when they are switched on.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from ...errors import InputError
from ...schema.lora_refs import LoraRef
from ...settings import Settings
from . import kron, merged
from .formats import LYCORIS_WEIGHTS, check_fits, read_adapter
from .layers import base_linear
from .lycoris import dora_delta
from .sources import locate

log = logging.getLogger(__name__)

# What each DiT holds, least recently used first: transformer -> LocalAdapter.key -> adapter. Kept
# with the model rather than with one Adapters object, because the adapters live inside the model.
_LOADED: "weakref.WeakKeyDictionary[torch.nn.Module, OrderedDict[str, _Loaded]]" = weakref.WeakKeyDictionary()


@dataclass
class _Loaded:
    peft_name: str | None  # None when every module is a Kronecker update: nothing injected into peft
    label: str
    sha256: str
    format: str
    rank: int
    modules: int
    load_seconds: float
    krons: dict = field(default_factory=dict)  # <module> -> (w1, w2) on the DiT's device and dtype
    merges: dict = field(default_factory=dict)  # DoRA: <module> -> ΔW [out, in] on the DiT's device and dtype

    def echo(self) -> dict:
        return {"sha256": self.sha256, "format": self.format, "rank": self.rank, "kron_layers": len(self.krons),
                "merged_layers": len(self.merges)}


@dataclass
class GlobalState:
    """What upstream's `/v1/lora/*` routes set: named adapters, their scales, and an on/off switch."""

    refs: dict[str, LoraRef] = field(default_factory=dict)  # adapter_name -> where it came from
    use_lora: bool = True


class Adapters:
    def __init__(self, settings: Settings, model_lock: threading.Lock | None = None):
        self.settings = settings
        # The engine's generation lock: the pod's global changes wait for a running job to finish.
        self.model_lock = model_lock or threading.Lock()
        self.state = GlobalState()
        self._lock = threading.RLock()

    # -- per job ----------------------------------------------------------------------------------

    @contextmanager
    def session(self):
        applied: list = []

        class Session:
            def apply(inner, dit, refs: tuple[LoraRef, ...] | None) -> list[dict]:
                chosen = refs if refs else self.global_refs()
                if not chosen:
                    return []
                applied.append(dit)
                return self.activate(dit, chosen, field="loras" if refs else "adapter")

        try:
            yield Session()
        finally:
            for dit in applied:
                self.deactivate(dit)

    def global_refs(self) -> tuple[LoraRef, ...]:
        return tuple(self.state.refs.values()) if self.state.use_lora else ()

    def activate(self, dit, refs, field: str = "loras") -> list[dict]:
        """Load (or reuse) every adapter, check it fits, then switch exactly these on with their scales."""
        with self._lock:
            self._switch_off(dit.transformer)  # a DoRA must resolve against the base weights, not merged ones
            if len(refs) > self.settings.loaded_loras:
                raise InputError(field, f"{len(refs)} adapters at once exceed the {self.settings.loaded_loras} this "
                                        "server keeps loaded (ACESTEP_LORA_SLOTS)")
            entries = []
            for index, ref in enumerate(refs):
                name = f"{field}[{index}]" if field == "loras" else f"adapter {list(self.state.refs)[index]!r}"
                entries.append((ref, self.load(name, ref, dit)))
            active = [(entry.peft_name, ref.scale) for ref, entry in entries if ref.scale != 0 and entry.peft_name]
            transformer = dit.transformer
            if active:
                transformer.enable_lora()
                transformer.set_adapters([n for n, _ in active], [s for _, s in active])
            elif getattr(transformer, "peft_config", None):
                transformer.disable_lora()
            kron.attach(transformer, [(entry.krons, ref.scale) for ref, entry in entries if entry.krons])
            merged.merge(transformer, [(entry.merges, ref.scale) for ref, entry in entries if entry.merges])
            return [{"source": ref.label, "scale": ref.scale, **entry.echo()} for ref, entry in entries]

    def deactivate(self, dit) -> None:
        with self._lock:
            self._switch_off(dit.transformer)
            if getattr(dit.transformer, "peft_config", None):
                dit.transformer.disable_lora()

    @staticmethod
    def _switch_off(transformer) -> None:
        """Take out the job's Kronecker hooks and merged DoRA updates (the exact weights come back)."""
        kron.detach(transformer)
        merged.restore(transformer)

    # -- loading ----------------------------------------------------------------------------------

    def load(self, field: str, ref: LoraRef, dit) -> _Loaded:
        """The adapter behind `ref`, injected into `dit` (from the LRU when already there)."""
        local = locate(field, ref, self.settings)
        key = local.key
        cache = _LOADED.setdefault(dit.transformer, OrderedDict())
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        start = time.perf_counter()
        weights = read_adapter(field, local.path)
        check_fits(field, ref.label, weights, dit.transformer, dit.variant.name)
        pairs, deltas = _without_dora(field, ref, weights, dit)
        state = {k: v.to(device=dit.device, dtype=dit.dtype) for k, v in pairs.items()}
        merges = {module: delta.to(device=dit.device, dtype=dit.dtype) for module, delta in deltas.items()}
        krons = {module: tuple(f.to(device=dit.device, dtype=dit.dtype) for f in factors)
                 for module, factors in weights.krons.items()}
        while len(cache) >= self.settings.loaded_loras:
            _, old = cache.popitem(last=False)
            if old.peft_name:
                dit.transformer.delete_adapters([old.peft_name])
        peft_name = f"lora_{key[:16]}" if state else None
        try:
            if peft_name:
                dit.transformer.load_lora_adapter(state, prefix="transformer", adapter_name=peft_name)
        except (ValueError, RuntimeError, KeyError) as exc:
            if peft_name in (getattr(dit.transformer, "peft_config", None) or {}):
                dit.transformer.delete_adapters([peft_name])
            raise InputError(field, f"{field} ({ref.label}) could not be loaded into the DiT: "
                                    f"{str(exc).splitlines()[0][:160]}") from None
        # the widest pair, 0 when every module is a Kronecker or merged DoRA update
        rank = max((t.shape[0] for k, t in state.items() if k.endswith(".lora_A.weight")), default=0)
        entry = _Loaded(peft_name, ref.label, local.sha256, weights.format, rank, weights.modules,
                        time.perf_counter() - start, krons, merges)
        cache[key] = entry
        log.info("loaded LoRA %s (%s, rank %d, %d Kronecker and %d DoRA of %d modules) in %.2f s", ref.label,
                 weights.format, rank, len(krons), len(merges), weights.modules, entry.load_seconds)
        return entry

    # -- the pod's global state (upstream's /v1/lora/* routes) --------------------------------------

    def available(self) -> list[str]:
        """Adapter files and PEFT folders in ACESTEP_LORA_DIR, for pickers."""
        root = self.settings.lora_dir
        if root is None or not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if p.suffix == ".safetensors"
                      or (p / "adapter_config.json").is_file() or (p / LYCORIS_WEIGHTS).is_file())

    def add_global(self, dit, name: str, ref: LoraRef, replace: bool = False) -> dict:
        with self.model_lock, self._lock:
            if replace:
                self.state.refs.clear()
            entry = self.load(f"adapter {name!r}", ref, dit)
            self.state.refs[name] = ref
            return {"adapter_name": name, **entry.echo()}

    def clear_global(self) -> None:
        with self._lock:
            self.state.refs.clear()

    def set_scale(self, name: str | None, scale: float) -> list[str]:
        with self._lock:
            names = [name] if name else list(self.state.refs)
            for each in names:
                if each not in self.state.refs:
                    raise InputError("adapter_name", f"no adapter named {each!r} is loaded (loaded: "
                                                     f"{', '.join(self.state.refs) or 'none'})")
                old = self.state.refs[each]
                self.state.refs[each] = LoraRef(old.kind, old.value, scale)
            return names

    def status(self) -> dict:
        refs = self.state.refs
        scales = {name: ref.scale for name, ref in refs.items()}
        first = next(iter(scales.values()), 1.0)
        return {"loaded": bool(refs), "active": bool(refs) and self.state.use_lora, "scale": first,
                "adapters": list(refs), "scales": scales}


def _without_dora(field: str, ref: LoraRef, weights, dit) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The adapter's LoRA pairs without its DoRA modules, and each DoRA module's ΔW resolved against
    this DiT's base weights (merged into them per job: `merged`)."""
    state, deltas = dict(weights.state_dict), {}
    for module_name, magnitude in weights.magnitudes.items():
        base = base_linear(dit.transformer, module_name)
        down = state.pop(f"transformer.{module_name}.lora_A.weight")
        up = state.pop(f"transformer.{module_name}.lora_B.weight")
        deltas[module_name] = dora_delta(field, ref.label, module_name, down, up, magnitude, base.weight)
    return state, deltas
