"""The models one process holds, loaded once: every installed DiT by name (loaded on first use), the
text encoder and VAE they share, the planner LM, and the LoRA adapters attached to the DiTs.

It finds the DiTs (the configured one, the extra ones, and DiT folders beside it), reads each one's
variant from its config without loading weights, and switches the DiT held in memory and the
planner LM (`/v1/init`). One lock covers the accelerator: generation, switches, the planner's
services and the pod's global adapter changes take it in turn.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError, InputError, echo
from ..schema.task_types import supported_task_types
from ..settings import Settings
from .checkpoint_check import RANDOM_WEIGHTS_MARKER, require_model_folders
from .compile_policy import apply_compile_policy
from .dit.attention import AttentionChoice, resolve_attention
from .dit.loading import is_diffusers_layout, load_dit, read_config
from .dit.model import DiTModel, compile_blocks
from .lora.adapters import Adapters
from .planner.lm import PlannerLM
from .planner.planner import Planner
from .text_encoder import TextEncoder
from .vae import load_vae
from .variants import Variant, detect_variant

log = logging.getLogger(__name__)

LM_FOLDER_PREFIX = "acestep-5Hz-lm-"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    family: str
    is_default: bool
    loaded: bool


class ModelRegistry:
    def __init__(self, settings: Settings):
        self.settings = settings
        apply_compile_policy(dit=settings.compile_dit, planner=settings.compile_planner != "off")
        self.device = settings.torch_device()
        self.dtype = settings.torch_dtype()
        self.lock = threading.Lock()
        self.attention_choice()  # an attention setting this device cannot run fails the start, not a job
        self.adapters = Adapters(settings, self.lock)
        start = time.perf_counter()
        primary = settings.dit_path
        vae_path, text_path, tokenizer_path = self._component_paths(primary)
        require_model_folders({"dit": primary, "vae": vae_path, "text_encoder": text_path, "lm": settings.lm_path})
        self.text_encoder = TextEncoder.load(text_path, self.device, self.dtype, tokenizer_path)
        self.vae = load_vae(vae_path, self.device, self.dtype, settings.vae_tile_frames)
        self._dit_paths = self._discover_dits(primary)
        self._dits: dict[str, DiTModel] = {}
        self._variants: dict[str, Variant] = {}  # read from each config once, not per request
        self.default_model = primary.name
        self._load_dit(self.default_model)
        self.planner = self._load_planner(settings.lm_path) if settings.lm_path else None
        self.random_weights = any((p / RANDOM_WEIGHTS_MARKER).is_file()
                                  for p in (primary, vae_path, text_path, *([settings.lm_path] if settings.lm_path else [])))
        self.load_seconds = time.perf_counter() - start
        if self.random_weights:
            log.warning("loaded RANDOM-WEIGHT tiny checkpoints from %s: outputs are noise, not music", primary)
        log.info("models ready in %.1f s on %s (%s); DiTs: %s", self.load_seconds, self.device,
                 str(self.dtype).removeprefix("torch."), ", ".join(self._dit_paths))

    # -- finding and reading ----------------------------------------------------------------------

    def _component_paths(self, dit_path: Path) -> tuple[Path, Path, Path | None]:
        """VAE, text encoder and tokenizer folders: inside a diffusers pipeline, else from settings."""
        if is_diffusers_layout(dit_path):
            return dit_path / "vae", dit_path / "text_encoder", dit_path / "tokenizer"
        return self.settings.vae_path, self.settings.text_encoder_path, None

    def _discover_dits(self, primary: Path) -> dict[str, Path]:
        """The primary DiT, the extra configured ones, and DiT folders next to the primary."""
        found = {primary.name: primary}
        for path in self.settings.extra_dit_paths:
            found.setdefault(path.name, path)
        if primary.parent.is_dir():
            for sibling in sorted(primary.parent.iterdir()):
                if sibling.name not in found and _looks_like_dit(sibling):
                    found[sibling.name] = sibling
        return found

    def attention_choice(self) -> AttentionChoice:
        """The DiT's sliding-window path and SDPA backend, from the settings and this device."""
        return resolve_attention(self.settings.sliding_attention, self.settings.sdpa_backend, self.device,
                                 self.dtype)

    def installed(self) -> list[ModelInfo]:
        infos = []
        for name, path in self._dit_paths.items():
            loaded = self._dits.get(name)
            family = loaded.variant.family if loaded else self._family(name)
            infos.append(ModelInfo(name, path, family, name == self.default_model, loaded is not None))
        return infos

    def families(self) -> dict[str, str]:
        """Installed DiT name -> family, read from configs (no weights loaded)."""
        return {info.name: info.family for info in self.installed()}

    def variant(self, name: str | None = None) -> Variant:
        """The variant of an installed DiT, read from its config without loading its weights."""
        name = self._installed_name(name)
        if name in self._dits:
            return self._dits[name].variant
        if name not in self._variants:
            path = self._dit_paths[name]
            self._variants[name] = detect_variant(name, {} if is_diffusers_layout(path) else read_config(path))
        return self._variants[name]

    def _installed_name(self, name: str | None) -> str:
        name = name or self.default_model
        if name not in self._dit_paths:
            raise InputError("model", f"model {echo(name)} is not installed; available: {', '.join(self._dit_paths)}")
        return name

    def _family(self, name: str) -> str:
        """A model's family for listings: a folder whose config cannot be read is named by its folder."""
        try:
            return self.variant(name).family
        except CheckpointError:
            return detect_variant(name, {}).family

    def supported_task_types(self, name: str | None = None) -> list[str]:
        """Task types the named DiT runs here (the task table's rule for its family)."""
        return supported_task_types(self.variant(name).family)

    def lm_models(self) -> list[str]:
        """Planner LM folders installed beside the DiTs (upstream's `acestep-5Hz-lm-*`), plus the loaded one."""
        names = set()
        root = self.settings.dit_path.parent
        if root.is_dir():
            names.update(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith(LM_FOLDER_PREFIX))
        if self.settings.lm_path is not None:
            names.add(self.settings.lm_path.name)
        if self.planner is not None:
            names.add(self.planner.name)
        return sorted(names)

    # -- loading and switching --------------------------------------------------------------------

    def dit(self, name: str | None = None) -> DiTModel:
        """An installed DiT, loaded on first use."""
        return self._load_dit(self._installed_name(name))

    def _load_dit(self, name: str) -> DiTModel:
        if name not in self._dits:
            start = time.perf_counter()
            self._dits[name] = load_dit(self._dit_paths[name], self.device, self.dtype)
            if self.settings.compile_dit:
                compile_blocks(self._dits[name].transformer)
            log.info("loaded DiT %s in %.1f s", name, time.perf_counter() - start)
        return self._dits[name]

    def _load_planner(self, path: Path) -> Planner:
        return Planner(PlannerLM.load(path, self.device, self.dtype, self.settings.compile_planner))

    def init_models(self, model: str | None = None, *, init_llm: bool = False, lm_model: str | None = None) -> dict:
        """Make `model` the DiT held in memory (and the default), optionally (re)loading the planner LM.

        Other DiTs are released first, so switching never needs two models' memory. Waits for a
        running generation to finish (the caller refuses the switch while tasks are queued).
        """
        name = self._installed_name(model)
        self.variant(name)  # a folder whose config cannot be read fails here, before anything is released
        lm_path = self._lm_path(lm_model) if init_llm else None
        with self.lock:
            for other in [n for n in self._dits if n != name]:
                del self._dits[other]
            self._free_cache()
            self._load_dit(name)
            self.default_model = name
            if lm_path is not None and (self.planner is None or self.planner.name != lm_path.name):
                self.planner = None
                # A compiled decode step holds its planner through a reference cycle (planner ->
                # compiled step -> bound method -> planner): collect it now, so the old model's memory
                # is free before the new one loads, not whenever the collector next runs.
                gc.collect()
                self._free_cache()
                self.planner = self._load_planner(lm_path)
        return {"loaded_model": self.default_model, "loaded_lm_model": self.planner.name if self.planner else None}

    def _free_cache(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _lm_path(self, lm_model: str | None) -> Path:
        if not lm_model:
            if self.settings.lm_path is None:
                raise InputError("lm_model_path", "no planner LM is configured; name one in lm_model_path "
                                 f"(installed: {', '.join(self.lm_models()) or 'none'})")
            return self.settings.lm_path
        path = self.settings.dit_path.parent / lm_model
        if "/" in lm_model or "\\" in lm_model or not path.is_dir():
            raise InputError("lm_model_path", f"lm_model_path must name an installed planner LM folder "
                             f"({', '.join(self.lm_models()) or 'none installed'}); got {lm_model!r}")
        return path


def _looks_like_dit(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    if is_diffusers_layout(folder):
        return True
    try:
        return read_config(folder).get("model_type") == "acestep"
    except CheckpointError:
        return False
