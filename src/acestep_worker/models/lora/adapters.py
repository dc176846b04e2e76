"""LoRA adapters on the DiT: read and checked before the job takes the engine's lock, loaded through
diffusers' PEFT integration into an LRU inside it, applied per job.

    adapters = engine.models.adapters.prepare(request.loras, deadline=..., should_stop=...)   # no lock
    with engine.models.lock:                              # the accelerator's lock: GPU work only
        with engine.models.adapters.session(adapters) as lora:
            used = lora.apply(dit)    # check shapes, inject (or reuse), activate with scales
            ...sample...              # on exit, whatever happened, no adapter stays active

`prepare` does everything that reads or waits: it locates each adapter (a download, bounded by the
job's deadline and cancel), reads its files (confined to the adapter folder or the download cache),
validates them into `spec.AdapterSpec` and normalises them on the CPU (`formats`); what it returns,
`Prepared`, holds the tensors, so nothing is read under the lock. Read adapters are kept by content
key (weights and config) for the `ACESTEP_LORA_SLOTS` most recently used, so a repeated adapter is
not read twice. Inside the lock only the DiT is touched: shapes checked against it, DoRA resolved
against its weights, tensors moved to its device and injected.

Every kind (LoRA, DoRA, LoKr, LoHa) arrives here as exact LoRA pairs (`formats`, `lycoris`), so
one job may mix them; a LoKr module whose Kronecker form is cheaper than its pair arrives as two
factors instead, kept with the adapter and hooked onto its layer for the job only (`kron`), and a
DoRA module's dense update is added into the weights for the job only (`merged`).
Adapters are injected unfused (`set_adapters` with per-adapter weights), so switching between jobs
is a weight change, not a re-merge of the DiT. The `ACESTEP_LORA_SLOTS` most recently used stay
injected; older ones are deleted from the model. A job's `loras` list wins over the pod's global
state (`/v1/lora/*`, read and checked by `add_global` before it takes the lock); a job without one
uses the global adapters when they are switched on.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ...errors import GenerationCancelled, InputError
from ...schema.lora_refs import LoraRef
from ...settings import Settings
from . import kron, merged
from .formats import LYCORIS_WEIGHTS, AdapterWeights, check_fits, read_adapter
from .layers import base_linear
from .lycoris import dora_delta
from .sources import locate

log = logging.getLogger(__name__)

# What each DiT holds, least recently used first: transformer -> Prepared.key -> adapter. Kept
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


@dataclass(frozen=True)
class Prepared:
    """One adapter located, read and checked, ready for the DiT: no file is read after this."""

    field: str  # what errors name: loras[i], or adapter 'name' for the pod's global adapters
    ref: LoraRef  # where it came from, and its scale
    sha256: str  # of its weights file: what results echo
    key: str  # its weights and config: what the LRUs know it by
    weights: AdapterWeights  # on the CPU, float32

    def with_scale(self, scale: float) -> "Prepared":
        return dataclasses.replace(self, ref=LoraRef(self.ref.kind, self.ref.value, scale))


@dataclass
class GlobalState:
    """What upstream's `/v1/lora/*` routes set: named adapters (read when loaded), their scales, and an on/off switch."""

    adapters: dict[str, Prepared] = field(default_factory=dict)  # adapter_name -> the adapter, with its scale
    use_lora: bool = True

    @property
    def refs(self) -> dict[str, LoraRef]:
        return {name: adapter.ref for name, adapter in self.adapters.items()}


class Adapters:
    def __init__(self, settings: Settings, model_lock: threading.Lock | None = None):
        self.settings = settings
        # The engine's generation lock: the pod's global changes wait for a running job to finish.
        self.model_lock = model_lock or threading.Lock()
        self.state = GlobalState()
        self._lock = threading.RLock()
        # key -> read adapter, most recent last; its own lock, so a job reading never waits for one activating
        self._read: OrderedDict[str, AdapterWeights] = OrderedDict()
        self._read_lock = threading.Lock()

    # -- before the lock: locate, read, check -------------------------------------------------------

    def prepare(self, refs: Sequence[LoraRef] | None, field: str = "loras", *, deadline: float | None = None,
                should_stop: Callable[[], bool] | None = None) -> tuple[Prepared, ...]:
        """Locate, read and check every adapter of a job (call it before taking the engine's lock);
        InputError naming `loras[i]`, GenerationCancelled when `should_stop` says so. `deadline` (a
        `time.monotonic()` reading) and `should_stop` bound the downloads."""
        refs = tuple(refs or ())
        self._check_slots(field, len(refs))
        prepared = []
        for index, ref in enumerate(refs):
            prepared.append(self.prepare_one(f"{field}[{index}]", ref, deadline=deadline, should_stop=should_stop))
        return tuple(prepared)

    def check(self, refs: Sequence[LoraRef] | None, field: str = "loras") -> None:
        """At submission: refuse now what can be known without a download (too many adapters, and every
        adapter in the adapter folder, read and checked; kept read for the job). urls and hub repos are
        fetched when the job runs, inside its deadline."""
        refs = tuple(refs or ())
        self._check_slots(field, len(refs))
        for index, ref in enumerate(refs):
            if ref.kind in ("name", "path"):
                self.prepare_one(f"{field}[{index}]", ref)

    def prepare_one(self, field: str, ref: LoraRef, *, deadline: float | None = None,
                    should_stop: Callable[[], bool] | None = None) -> Prepared:
        local = locate(field, ref, self.settings, deadline=deadline, should_stop=should_stop)
        key = local.key_for(field)
        with self._read_lock:
            weights = self._read.get(key)
            if weights is not None:
                self._read.move_to_end(key)
        if weights is None:
            try:
                weights = read_adapter(field, local.path, root=local.root)
            except (InputError, GenerationCancelled):
                raise
            except Exception as exc:  # a file that breaks a check we lack: refused, and logged to be fixed
                log.exception("%s: reading %s failed", field, ref.label)
                raise InputError(field, f"{field}: {ref.label} is not an adapter this server can read "
                                        f"({type(exc).__name__})") from None
            with self._read_lock:
                self._read[key] = weights
                while len(self._read) > self.settings.loaded_loras:
                    self._read.popitem(last=False)
        if should_stop is not None and should_stop():
            raise GenerationCancelled(f"{field}: stopped while the adapter was read")
        return Prepared(field, ref, local.sha256, key, weights)

    def _check_slots(self, field: str, count: int) -> None:
        if count > self.settings.loaded_loras:
            raise InputError(field, f"{count} adapters at once exceed the {self.settings.loaded_loras} this "
                                    "server keeps loaded (ACESTEP_LORA_SLOTS)")

    # -- per job, under the lock ---------------------------------------------------------------------

    @contextmanager
    def session(self, prepared: Sequence[Prepared] = ()):
        """The job's adapters (from `prepare`) or, when it has none, the global ones: `apply` puts them
        on a DiT; on exit, however the job ends, none stays active."""
        applied: list = []

        class Session:
            def apply(inner, dit) -> list[dict]:
                chosen = tuple(prepared) or self.global_adapters()
                if not chosen:
                    return []
                applied.append(dit)
                return self.activate(dit, chosen)

        try:
            yield Session()
        finally:
            for dit in applied:
                self.deactivate(dit)

    def global_adapters(self) -> tuple[Prepared, ...]:
        return tuple(self.state.adapters.values()) if self.state.use_lora else ()

    def global_refs(self) -> tuple[LoraRef, ...]:
        return tuple(adapter.ref for adapter in self.global_adapters())

    def activate(self, dit, adapters: Sequence[Prepared | LoraRef], field: str = "loras") -> list[dict]:
        """Load (or reuse) every adapter, check it fits, then switch exactly these on with their scales.
        `adapters` come from `prepare`; LoraRefs are prepared here first (tests and benchmarks: that reads
        files, so not under the engine's lock)."""
        if any(isinstance(each, LoraRef) for each in adapters):
            adapters = self.prepare(adapters, field)
        with self._lock:
            self._switch_off(dit.transformer)  # a DoRA must resolve against the base weights, not merged ones
            self._check_slots(field, len(adapters))
            entries = [(each.ref, self._install(each, dit)) for each in adapters]
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
        """The adapter behind `ref`, read and injected into `dit` (from the LRU when already there)."""
        return self._install(self.prepare_one(field, ref), dit)

    def _install(self, adapter: Prepared, dit) -> _Loaded:
        """A prepared adapter in `dit` (from the LRU when already there): the GPU side of loading."""
        field, ref, key, weights = adapter.field, adapter.ref, adapter.key, adapter.weights
        cache = _LOADED.setdefault(dit.transformer, OrderedDict())
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        start = time.perf_counter()
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
        entry = _Loaded(peft_name, ref.label, adapter.sha256, weights.format, rank, weights.modules,
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
        """Read and check the adapter (before the lock), then load it into `dit` under the lock."""
        adapter = self.prepare_one(f"adapter {name!r}", ref)
        with self.model_lock, self._lock:
            entry = self._install(adapter, dit)
            if replace:
                self.state.adapters.clear()
            self.state.adapters[name] = adapter
            return {"adapter_name": name, **entry.echo()}

    def clear_global(self) -> None:
        with self._lock:
            self.state.adapters.clear()

    def set_scale(self, name: str | None, scale: float) -> list[str]:
        with self._lock:
            names = [name] if name else list(self.state.adapters)
            for each in names:
                if each not in self.state.adapters:
                    raise InputError("adapter_name", f"no adapter named {each!r} is loaded (loaded: "
                                                     f"{', '.join(self.state.adapters) or 'none'})")
                self.state.adapters[each] = self.state.adapters[each].with_scale(scale)
            return names

    def status(self) -> dict:
        scales = {name: adapter.ref.scale for name, adapter in self.state.adapters.items()}
        first = next(iter(scales.values()), 1.0)
        return {"loaded": bool(scales), "active": bool(scales) and self.state.use_lora, "scale": first,
                "adapters": list(scales), "scales": scales}


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
