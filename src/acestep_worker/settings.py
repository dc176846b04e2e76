"""Process configuration, read from the environment once, at start.

The variable names and meanings of the original image are kept: `ACESTEP_CONFIG_PATH` is the DiT
folder, `ACESTEP_LM_MODEL_PATH` the 5 Hz LM folder, `ACESTEP_API_PORT` the API port. The VAE and the
text encoder sit beside the DiT folder unless their own variables say otherwise.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, TypeVar

import torch

from .errors import AceStepError
from .schema.units import MAX_DURATION_S

DEFAULT_DIT_PATH = "checkpoints/acestep-v15-turbo"
VAE_FOLDER = "vae"
TEXT_ENCODER_FOLDER = "Qwen3-Embedding-0.6B"
_OFF = {"", "none", "no", "off", "false", "0"}
_ON = {"1", "true", "yes", "on"}
# ACESTEP_WINDOWED_ATTENTION and ACESTEP_SDPA_BACKEND (see models/dit/attention.py for what each does)
SLIDING_ATTENTION_PATHS = ("auto", "dense", "banded", "flex")
PLANNER_COMPILE_MODES = ("off", "on", "graphs")  # ACESTEP_LM_COMPILE; models/planner/lm.py's DECODE_COMPILE_MODES
SDPA_BACKEND_NAMES = ("auto", "flash", "efficient", "cudnn", "math")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")
T = TypeVar("T")


class SettingsError(AceStepError):
    """An environment variable holds a value the worker cannot use; the message names it."""


def env_value(env: Mapping[str, str], name: str, default: T, convert: Callable[[str], T], accepted: str) -> T:
    """`env[name]` converted, or `default` when unset or blank; a bad value is one sentence naming the
    variable and what it accepts (never a traceback at start)."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return convert(raw.strip())
    except (ValueError, TypeError, OverflowError):
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        raise SettingsError(f"{name} must be {accepted}; got {shown!r}") from None


def in_range(kind: Callable[[str], T], low: float, high: float) -> Callable[[str], T]:
    """A converter that also refuses values outside [low, high] (and NaN)."""
    def convert(text: str) -> T:
        value = kind(text)
        if not low <= value <= high:  # NaN fails both comparisons
            raise ValueError(text)
        return value
    return convert


def one_of(choices: object) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(text)
        return text.lower()
    return convert


def flag(text: str) -> bool:
    if text.lower() in _ON:
        return True
    if text.lower() in _OFF:
        return False
    raise ValueError(text)


def flag_or(on: str, off: str, choices: object) -> Callable[[str], str]:
    """A setting with named values whose on/off spellings (1, yes, 0, no, ...) still mean `on`/`off`."""
    named = one_of(choices)

    def convert(text: str) -> str:
        if text.lower() in _ON | _OFF:
            return on if flag(text) else off
        return named(text)
    return convert


def _device(text: str) -> str:
    if not _DEVICE.match(text.lower()):
        raise ValueError(text)
    return text.lower()


@dataclass(frozen=True)
class Settings:
    dit_path: Path
    vae_path: Path
    text_encoder_path: Path
    lm_path: Path | None = None
    extra_dit_paths: tuple[Path, ...] = ()
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16
    output_dir: Path = field(default_factory=lambda: Path("outputs"))
    # ACESTEP_LM_COMPILE: the planner's decode step eager (off), torch.compiled (on), or compiled with
    # CUDA-graph capture (graphs); models/planner/lm.py's DECODE_COMPILE_MODES.
    compile_planner: str = "off"
    compile_dit: bool = False  # ACESTEP_DIT_COMPILE=1: torch.compile each DiT block (regional compile)
    vae_tile_frames: int | None = None  # ACESTEP_VAE_TILE_FRAMES; None: 512 on CPUs, largest fitting on GPUs
    # ACESTEP_WINDOWED_ATTENTION: how the sliding-window layers attend: dense (diffusers' T x T mask),
    # banded (block by block) or flex (FlexAttention block mask), all equal to float32 rounding. auto:
    # banded on CPUs, where it was measured (600 s: 1.6x faster, 1/16 of the memory); GPUs keep the
    # dense SDPA path until bench/gpu.py has measured the three there.
    sliding_attention: str = "auto"
    # ACESTEP_SDPA_BACKEND: SDPA kernel of the unmasked (full and cross) attention layers.
    sdpa_backend: str = "auto"
    # Audio sent in for editing tasks (src_audio, reference_audio): caps, where pod files may be read
    # from, and whether URLs may point at this machine's own networks.
    max_audio_bytes: int = 128 * 1024 * 1024  # ACESTEP_MAX_AUDIO_MB
    max_audio_seconds: float = MAX_DURATION_S  # ACESTEP_MAX_AUDIO_SECONDS
    audio_fetch_timeout_s: float = 120.0  # ACESTEP_AUDIO_FETCH_TIMEOUT: one download, at most
    allow_private_urls: bool = False  # ACESTEP_ALLOW_PRIVATE_URLS=1: loopback/private hosts and http://
    input_dir: Path = field(default_factory=lambda: Path("inputs"))  # ACESTEP_INPUT_DIR
    # The serverless output folder's budget (oldest files go first); None: unbounded, for volumes.
    output_max_files: int | None = 200  # ACESTEP_OUTPUT_MAX_FILES (0: no limit)
    memory_budget_mb: float | None = None  # ACESTEP_MEMORY_BUDGET_MB: instead of asking the device
    output_max_bytes: int | None = 2_000_000_000  # ACESTEP_OUTPUT_MAX_MB (0: no limit)
    # LoRA adapters: the folder names and paths resolve in, where downloads are kept (by content
    # hash), the download cap, and how many adapters stay loaded in the DiT (least recently used go).
    lora_dir: Path | None = None  # ACESTEP_LORA_DIR (on Runpod e.g. /runpod-volume/loras)
    lora_cache_dir: Path = field(default_factory=lambda: Path(".cache/acestep/loras"))  # ACESTEP_LORA_CACHE_DIR
    max_lora_bytes: int = 2 * 1024**3  # ACESTEP_MAX_LORA_MB
    lora_fetch_timeout_s: float = 600.0  # ACESTEP_LORA_FETCH_TIMEOUT: one adapter download, at most
    loaded_loras: int = 4  # ACESTEP_LORA_SLOTS
    hub_endpoint: str | None = None  # HF_ENDPOINT: where hub repo ids resolve (the hub, a mirror, a stand-in)

    def __post_init__(self) -> None:
        # The working folders are fixed at start: a relative one (the image leaves ACESTEP_INPUT_DIR at
        # its default, `inputs`) means that folder of the start-up directory, and every name stored in
        # it is absolute, so no later lookup can join the relative part twice (inputs/inputs/...).
        for name in ("input_dir", "output_dir", "lora_cache_dir"):
            object.__setattr__(self, name, Path(getattr(self, name)).absolute())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        dit = Path(env.get("ACESTEP_CONFIG_PATH") or DEFAULT_DIT_PATH)
        root = dit.parent
        lm = env.get("ACESTEP_LM_MODEL_PATH")
        extras = tuple(Path(env[k]) for k in ("ACESTEP_CONFIG_PATH2", "ACESTEP_CONFIG_PATH3") if env.get(k))
        return cls(
            dit_path=dit,
            vae_path=Path(env.get("ACESTEP_VAE_PATH") or root / VAE_FOLDER),
            text_encoder_path=Path(env.get("ACESTEP_TEXT_ENCODER_PATH") or root / TEXT_ENCODER_FOLDER),
            lm_path=None if lm is None or lm.strip().lower() in _OFF else Path(lm),
            extra_dit_paths=extras,
            device=env_value(env, "ACESTEP_DEVICE", "auto", _device, "auto, cpu, cuda, cuda:N or mps"),
            dtype=env_value(env, "ACESTEP_DTYPE", "auto", one_of({"auto", *DTYPES}),
                            "auto, " + ", ".join(DTYPES)),
            output_dir=Path(env.get("ACESTEP_OUTPUT_DIR") or "outputs"),
            compile_planner=env_value(env, "ACESTEP_LM_COMPILE", "off", flag_or("on", "off", PLANNER_COMPILE_MODES),
                                      "0/off, 1/on, or graphs (compiled with CUDA-graph capture)"),
            compile_dit=env_value(env, "ACESTEP_DIT_COMPILE", False, flag, "1/true/yes/on or 0/false/no/off"),
            sliding_attention=env_value(env, "ACESTEP_WINDOWED_ATTENTION", "auto",
                                        flag_or("banded", "dense", SLIDING_ATTENTION_PATHS),
                                        ", ".join(SLIDING_ATTENTION_PATHS) + " (or 1/on for banded, 0/off for dense)"),
            sdpa_backend=env_value(env, "ACESTEP_SDPA_BACKEND", "auto", one_of(SDPA_BACKEND_NAMES),
                                   ", ".join(SDPA_BACKEND_NAMES)),
            vae_tile_frames=env_value(env, "ACESTEP_VAE_TILE_FRAMES", 0, in_range(int, 129, 10**7),
                                      "latent frames per VAE decode tile, above 128") or None,
            max_audio_bytes=int(env_value(env, "ACESTEP_MAX_AUDIO_MB", 128.0, in_range(float, 0.001, 1e6),
                                          "a size in MB above 0") * 1024 * 1024),
            max_audio_seconds=env_value(env, "ACESTEP_MAX_AUDIO_SECONDS", MAX_DURATION_S, in_range(float, 0.1, 86_400),
                                        "seconds from 0.1 to 86400"),
            audio_fetch_timeout_s=env_value(env, "ACESTEP_AUDIO_FETCH_TIMEOUT", 120.0, in_range(float, 0.1, 86_400),
                                            "seconds from 0.1 to 86400"),
            allow_private_urls=env_value(env, "ACESTEP_ALLOW_PRIVATE_URLS", False, flag,
                                         "1/true/yes/on or 0/false/no/off"),
            input_dir=Path(env.get("ACESTEP_INPUT_DIR") or "inputs"),
            memory_budget_mb=env_value(env, "ACESTEP_MEMORY_BUDGET_MB", None, in_range(float, 1, 1e9),
                                       "megabytes from 1"),
            output_max_files=env_value(env, "ACESTEP_OUTPUT_MAX_FILES", 200, in_range(int, 0, 10**9),
                                       "a whole number of files, or 0 for no limit") or None,
            output_max_bytes=int(1_000_000 * env_value(env, "ACESTEP_OUTPUT_MAX_MB", 2000.0, in_range(float, 0, 1e9),
                                                        "megabytes, or 0 for no limit")) or None,
            lora_dir=Path(env["ACESTEP_LORA_DIR"]) if env.get("ACESTEP_LORA_DIR") else None,
            lora_cache_dir=Path(env.get("ACESTEP_LORA_CACHE_DIR") or ".cache/acestep/loras"),
            max_lora_bytes=int(env_value(env, "ACESTEP_MAX_LORA_MB", 2048.0, in_range(float, 0.001, 1e6),
                                         "a size in MB above 0") * 1024 * 1024),
            lora_fetch_timeout_s=env_value(env, "ACESTEP_LORA_FETCH_TIMEOUT", 600.0, in_range(float, 0.1, 86_400),
                                           "seconds from 0.1 to 86400"),
            loaded_loras=env_value(env, "ACESTEP_LORA_SLOTS", 4, in_range(int, 1, 64), "an integer from 1 to 64"),
            hub_endpoint=env.get("HF_ENDPOINT") or None,
        )

    def audio_limits(self):
        from .audio.decode import AudioLimits

        return AudioLimits(self.max_audio_bytes, self.max_audio_seconds)

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def torch_dtype(self) -> torch.dtype:
        if self.dtype == "auto":
            # bf16 is what the models run in upstream on GPUs; half precision on a CPU is slow.
            return torch.bfloat16 if self.torch_device().type == "cuda" else torch.float32
        return DTYPES[self.dtype]
