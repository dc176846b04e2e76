"""The engine: models loaded once, one `generate` call per request.

    engine = Engine(Settings.from_env())
    result = engine.generate(parse({"caption": "...", "duration": 30}), on_progress=print)

`generate` turns a validated request into resolved songs (seeds, metadata, latent length) and a
sampling plan that respects the chosen DiT's own rules, runs the synthesizer, and returns float32
stereo audio with what was used and how long each stage took. Calls are serialised: one engine
drives one accelerator.
"""

from __future__ import annotations

import gc
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import CheckpointError, InputError, PlannerUnavailableError, echo
from ..models.checkpoint_check import RANDOM_WEIGHTS_MARKER, require_model_folders
from ..models.dit.attention import AttentionChoice, dit_attention, resolve_attention
from ..models.dit.conditioning import SAMPLE_RATE, batch_frames, frames_for_duration
from ..models.dit.loading import is_diffusers_layout, load_dit, read_config
from ..models.dit.model import DiTModel, compile_blocks
from ..models.dit.sampler import SamplingPlan
from ..models.lora.adapters import Adapters
from ..models.planner.decoding import SamplingParams
from ..models.planner.lm import PlannerLM
from ..models.planner.metadata import Metadata
from ..models.planner.planner import Planner
from ..models.text_encoder import TextEncoder
from ..models.vae import load_vae
from ..models.variants import Variant, detect_variant
from ..schema.request import MAX_SEED, GenerationRequest
from ..schema.task_types import (
    FRAMES_PER_SECOND,
    TASKS,
    check_supported,
    given_codes,
    replaced_fields,
    supported_task_types,
)
from ..settings import Settings
from . import edit_conditions as edit_inputs
from . import planner_pass as planning
from .memory_budget import check_fits
from .progress import Progress, ProgressTracker
from .sampling_plan import check_sampling, resolve_seeds, sampling_plan
from .song_specs import song_params, song_specs
from .synthesizer import Synthesizer

log = logging.getLogger(__name__)

LM_FOLDER_PREFIX = "acestep-5Hz-lm-"

__all__ = ["Engine", "GenerationResult", "ModelInfo", "Progress", "Song", "check_sampling", "resolve_seeds",
           "sampling_plan"]


@dataclass
class Song:
    audio: np.ndarray  # [samples, 2] float32 in [-1, 1]
    sample_rate: int
    seed: int
    duration_s: float


@dataclass
class GenerationResult:
    songs: list[Song]
    model: str
    random_weights: bool  # made by the tiny random-weight checkpoints: noise, not music
    params: dict  # the values actually used (after defaults and the model's rules)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, plus "total"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    family: str
    is_default: bool
    loaded: bool


class Engine:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings.from_env()
        self.device = self.settings.torch_device()
        self.dtype = self.settings.torch_dtype()
        self._lock = threading.Lock()
        self.attention_choice()  # an attention setting this device cannot run fails the start, not a job
        self.adapters = Adapters(self.settings, self._lock)
        start = time.perf_counter()
        primary = self.settings.dit_path
        vae_path, text_path, tokenizer_path = self._component_paths(primary)
        require_model_folders({"dit": primary, "vae": vae_path, "text_encoder": text_path,
                               "lm": self.settings.lm_path})
        self.synthesizer = Synthesizer(TextEncoder.load(text_path, self.device, self.dtype, tokenizer_path),
                                       load_vae(vae_path, self.device, self.dtype, self.settings.vae_tile_frames))
        self._dit_paths = self._discover_dits(primary)
        self._dits: dict[str, DiTModel] = {}
        self._variants: dict[str, Variant] = {}  # read from each config once, not per request
        self.default_model = primary.name
        self._load_dit(self.default_model)
        lm_path = self.settings.lm_path
        self.planner = (Planner(PlannerLM.load(lm_path, self.device, self.dtype, self.settings.compile_planner))
                        if lm_path else None)
        self.random_weights = any((p / RANDOM_WEIGHTS_MARKER).is_file()
                                  for p in (primary, vae_path, text_path, *([lm_path] if lm_path else [])))
        self.load_seconds = time.perf_counter() - start
        if self.random_weights:
            log.warning("loaded RANDOM-WEIGHT tiny checkpoints from %s: outputs are noise, not music", primary)
        log.info("engine ready in %.1f s on %s (%s); models: %s", self.load_seconds, self.device,
                 str(self.dtype).removeprefix("torch."), ", ".join(self._dit_paths))

    # -- models -----------------------------------------------------------------------------------

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

    def _load_dit(self, name: str) -> DiTModel:
        if name not in self._dits:
            start = time.perf_counter()
            self._dits[name] = load_dit(self._dit_paths[name], self.device, self.dtype)
            if self.settings.compile_dit:
                compile_blocks(self._dits[name].transformer)
            log.info("loaded DiT %s in %.1f s", name, time.perf_counter() - start)
        return self._dits[name]

    def models(self) -> list[ModelInfo]:
        infos = []
        for name, path in self._dit_paths.items():
            loaded = self._dits.get(name)
            family = loaded.variant.family if loaded else self._family(name)
            infos.append(ModelInfo(name, path, family, name == self.default_model, loaded is not None))
        return infos

    def variant(self, name: str | None = None) -> Variant:
        """The variant of an installed DiT, read from its config without loading its weights."""
        name = name or self.default_model
        if name not in self._dit_paths:
            raise InputError("model", f"model {echo(name)} is not installed; available: {', '.join(self._dit_paths)}")
        if name in self._dits:
            return self._dits[name].variant
        if name not in self._variants:
            path = self._dit_paths[name]
            self._variants[name] = detect_variant(name, {} if is_diffusers_layout(path) else read_config(path))
        return self._variants[name]

    def _family(self, name: str) -> str:
        """A model's family for listings: a folder whose config cannot be read is named by its folder."""
        try:
            return self.variant(name).family
        except CheckpointError:
            return detect_variant(name, {}).family

    def check(self, request: GenerationRequest, audio: dict | None = None) -> None:
        """Refuse, before any queueing, what the chosen model cannot do (InputError naming the field):
        a step count or timesteps outside its rules, a task its family does not run, or a task's
        missing source (given codes stand in for it, except where a range is repainted). Reads
        configs only; no model is loaded for it."""
        variant = self.variant(request.model)
        check_sampling(request, variant)
        installed = {info.name: info.family for info in self.models()}
        check_supported(request.task_type, variant.name, variant.family, installed)
        rule = TASKS[request.task_type]
        if rule.needs_source and given_codes(request) is not None:  # upstream: codes replace the source
            if rule.uses_range:  # a range repainted over the codes' own render would keep nothing of yours
                raise InputError("audio_code_string", f"task_type {request.task_type!r} repaints a range of "
                                 "the source song in src_audio; audio codes cannot stand in for it")
        elif rule.needs_source:
            given = getattr(request, "src_audio", None) if audio is None else audio.get("src_audio")
            if given is None or (audio is not None and len(given) == 0):
                raise InputError("src_audio", f"task_type {request.task_type!r} needs a source song in src_audio")

    def dit(self, name: str | None = None) -> DiTModel:
        name = name or self.default_model
        if name not in self._dit_paths:
            raise InputError("model", f"model {echo(name)} is not installed; available: {', '.join(self._dit_paths)}")
        return self._load_dit(name)

    # -- generation -------------------------------------------------------------------------------

    def generate(self, request: GenerationRequest, on_progress: Callable[[Progress], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 audio: dict[str, np.ndarray] | None = None) -> GenerationResult:
        """Generate `request.batch_size` songs. Raises InputError, PlannerUnavailableError,
        GenerationCancelled, GenerationFailed.

        `audio` holds the decoded editing inputs by field name ("src_audio", "reference_audio"),
        each float32 [samples, 2] at 48 kHz (see audio_sources.load_audio)."""
        # No adapter outlives the job; the attention hooks are the job's too.
        with self._lock, self.adapters.session() as lora, dit_attention(self.attention_choice()):
            start = time.perf_counter()
            audio = audio or {}
            self.check(request, audio)
            replaced = replaced_fields(request)  # upstream: given codes replace the source song
            audio = {name: pcm for name, pcm in audio.items() if name not in replaced}
            dit = self.dit(request.model)
            loras = lora.apply(dit, request.loras)  # before sampling: a misfit adapter fails the job here
            plan, sampling = sampling_plan(request, dit)
            seeds = resolve_seeds(request)
            if request.duration and not TASKS[request.task_type].needs_source and given_codes(request) is None:
                # the length is known before the planner runs (codes set their own)
                self._check_memory(dit, frames_for_duration(request.duration), len(seeds), plan)
            rule = TASKS[request.task_type]
            planned = _planner_view(request, rule)
            tracker = ProgressTracker(on_progress, should_stop, plan.steps, uses_planner=self.planner is not None
                                      and (planned.needs_planner or planned.use_cot_metas),
                                      writes_codes=planned.thinking, encodes_audio=bool(audio))
            resolved = planning.resolve(planned, self.planner if rule.runs_planner else None, seeds,
                                        on_stage=tracker.stage, on_code_step=tracker.code_step,
                                        should_stop=tracker.check)
            edit = edit_inputs.resolve_edit(self.synthesizer.vae, rule, request, audio, seeds[0], tracker.stage,
                                        reference_seconds=dit.timbre_frames / FRAMES_PER_SECOND)
            songs = song_specs(dit, request, resolved, seeds, edit)
            self._check_memory(dit, batch_frames([song.frames for song in songs]), len(songs), plan)
            output = self.synthesizer(dit, songs, plan, on_stage=tracker.stage, on_step=tracker.step,
                                      check=tracker.check, edit=edit)
            audio_out = output.audio.numpy()
            duration = audio_out.shape[-1] / SAMPLE_RATE
            result = GenerationResult(
                songs=[Song(np.ascontiguousarray(a.T), SAMPLE_RATE, s.seed, duration) for a, s in zip(audio_out, songs)],
                model=dit.variant.name, random_weights=self.random_weights,
                params=dict(sampling, **song_params(request, resolved, songs, self.planner), **edit.report()),
                timings={**resolved.timings, **edit.timings, **output.timings})
            if loras:
                result.params["loras"] = loras
            result.timings["total"] = time.perf_counter() - start
            tracker.finish()
            return result

    def _check_memory(self, dit: DiTModel, frames: int, batch: int, plan: SamplingPlan) -> None:
        check_fits(dit.transformer.config, frames, batch, plan.uses_cfg, torch.finfo(dit.dtype).bits // 8,
                   dit.device, self.settings.memory_budget_mb, self.settings.vae_tile_frames)

    def format_input(self, caption: str, lyrics: str, *, bpm: int | None = None, duration: float | None = None,
                     key_scale: str | None = None, time_signature: str | None = None,
                     language: str | None = None, temperature: float = 0.85, seed: int | None = None) -> dict:
        """The planner rewrites a caption and lyrics, keeping the metadata the caller gives."""
        if self.planner is None:
            raise PlannerUnavailableError("format_input needs the 5 Hz planner LM, which this server does not "
                                          "have (set ACESTEP_LM_MODEL_PATH)")
        user = Metadata(bpm=bpm, duration=int(duration) if duration else None, keyscale=key_scale,
                        timesignature=time_signature, language=language if language != "unknown" else None)
        with self._lock:
            result = self.planner.format_input(caption, lyrics, user, SamplingParams(temperature=temperature),
                                               seed if seed is not None else random.randint(0, MAX_SEED))
        final = user.merged_over(result.metadata)
        return {"caption": result.metadata.caption or caption, "lyrics": result.lyrics or lyrics,
                "bpm": final.bpm, "duration": float(final.duration) if final.duration else None,
                "key_scale": final.keyscale, "time_signature": final.timesignature,
                "vocal_language": final.language or "unknown"}


    def create_sample(self, query: str, *, language: str | None = None, instrumental: bool = False,
                      temperature: float = 0.85, seed: int | None = None) -> dict:
        """The planner's sample mode: caption, lyrics and metadata invented from a description."""
        if self.planner is None:
            raise PlannerUnavailableError("sample mode needs the 5 Hz planner LM, which this server does not have "
                                          "(set ACESTEP_LM_MODEL_PATH)")
        with self._lock:
            result = self.planner.create_sample(query, instrumental, language, SamplingParams(temperature=temperature),
                                                seed if seed is not None else random.randint(0, MAX_SEED))
        meta = result.metadata
        return {"caption": meta.caption or query, "lyrics": result.lyrics or "", "bpm": meta.bpm,
                "duration": meta.duration, "keyscale": meta.keyscale, "language": meta.language or language,
                "timesignature": meta.timesignature}

    # -- switching models -------------------------------------------------------------------------

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

    def supported_task_types(self, name: str | None = None) -> list[str]:
        """Task types the named DiT runs here (the task table's rule for its family)."""
        return supported_task_types(self.variant(name).family)

    def init_models(self, model: str | None = None, *, init_llm: bool = False,
                    lm_model: str | None = None) -> dict:
        """Make `model` the DiT held in memory (and the default), optionally (re)loading the planner LM.

        Other DiTs are released first, so switching never needs two models' memory. Waits for a
        running generation to finish (the caller refuses the switch while tasks are queued).
        """
        name = model or self.default_model
        self.variant(name)  # InputError naming `model` when it is not installed
        lm_path = self._lm_path(lm_model) if init_llm else None
        with self._lock:
            for other in [n for n in self._dits if n != name]:
                del self._dits[other]
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self._load_dit(name)
            self.default_model = name
            if lm_path is not None and (self.planner is None or self.planner.name != lm_path.name):
                self.planner = None
                # A compiled decode step holds its planner through a reference cycle (planner ->
                # compiled step -> bound method -> planner): collect it now, so the old model's memory
                # is free before the new one loads, not whenever the collector next runs.
                gc.collect()
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.planner = Planner(PlannerLM.load(lm_path, self.device, self.dtype, self.settings.compile_planner))
        return {"loaded_model": self.default_model, "loaded_lm_model": self.planner.name if self.planner else None}

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


def _planner_view(request: GenerationRequest, rule) -> GenerationRequest:
    """The request as the planner sees it: codes are not written when the DiT already has a source
    or codes were given (upstream skips the LM's codes there)."""
    if request.thinking and (rule.needs_source or given_codes(request) is not None):
        return request.model_copy(update={"thinking": False})
    return request


def _looks_like_dit(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    if is_diffusers_layout(folder):
        return True
    try:
        return read_config(folder).get("model_type") == "acestep"
    except CheckpointError:
        return False

