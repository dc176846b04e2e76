"""Malformed and hostile LoRA adapters (issue #18), written next to the tiny tree's good ones: each case is
an entry of a job's `loras` list and a fragment of the one sentence that must refuse it.

`build(folder, outside)` writes the files under `folder` (an ACESTEP_LORA_DIR) and the targets of the
escaping links under `outside`; `CASES` lists (id, entry, fragment); `ACCEPTED` the odd-but-valid ones.
Values that never touch a file (a 400-digit scale, a 300-character name) are cases too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

HIDDEN = 64  # the tiny DiT's q_proj is 64 -> 64
PEFT_KEY = "base_model.model.layers.0.self_attn.q_proj"
KOHYA_KEY = "diffusion_model.decoder.layers.0.self_attn.q_proj"


def _pair(rank: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(rank)
    return {f"{PEFT_KEY}.lora_A.weight": torch.randn(rank, HIDDEN, generator=generator) * 0.1,
            f"{PEFT_KEY}.lora_B.weight": torch.randn(HIDDEN, rank, generator=generator) * 0.1}


def _kohya(rank: int = 2, alpha: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(rank + 1)
    tensors = {f"{KOHYA_KEY}.lora_down.weight": torch.randn(rank, HIDDEN, generator=generator) * 0.1,
               f"{KOHYA_KEY}.lora_up.weight": torch.randn(HIDDEN, rank, generator=generator) * 0.1}
    if alpha is not None:
        tensors[f"{KOHYA_KEY}.alpha"] = alpha
    return tensors


def _lokr() -> dict[str, torch.Tensor]:
    return {f"{PEFT_KEY}.lokr_w1": torch.ones(8, 8) * 0.01, f"{PEFT_KEY}.lokr_w2_a": torch.ones(8, 2) * 0.1,
            f"{PEFT_KEY}.lokr_w2_b": torch.ones(2, 8) * 0.1}


def _folder(root: Path, name: str, tensors: dict | None, config: object | bytes | None) -> None:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    if tensors is not None:
        save_file(tensors, str(folder / "adapter_model.safetensors"))
    if config is not None:
        data = config if isinstance(config, bytes) else json.dumps(config).encode()
        (folder / "adapter_config.json").write_bytes(data)


def _file(root: Path, name: str, tensors: dict) -> None:
    save_file(tensors, str(root / f"{name}.safetensors"))


LORA = {"peft_type": "LORA", "r": 2, "lora_alpha": 4}
LOKR = {"peft_type": "LOKR", "r": 2, "alpha": 4}

# (id, the `loras` entry, a fragment of the refusal); the entry is always loras[0] unless the id says so
CASES: list[tuple[str, dict, str]] = [
    # the 14 of issue #18
    ("alpha-3-values", {"name": "h-alpha3"}, "holds 3 values; an alpha is one number"),
    ("lora-alpha-text", {"name": "h-alpha-text"}, "lora_alpha must be a finite number; got 'abc'"),
    ("rank-0", {"name": "h-rank0"}, "a rank-0 adapter changes nothing"),
    ("rank-0-alpha", {"name": "h-rank0-alpha"}, "a rank-0 adapter changes nothing"),
    ("rslora-rank-0", {"name": "h-rslora-rank0"}, "a rank-0 adapter changes nothing"),
    ("lokr-r-0", {"name": "h-lokr-r0"}, "r must be a whole number from 1 to 65536; got 0"),
    ("lokr-r-text", {"name": "h-lokr-rx"}, "r must be a whole number from 1 to 65536; got 'x'"),
    ("alpha-pattern-bad-regex", {"name": "h-pattern-regex"}, "is not a valid regular expression"),
    ("alpha-pattern-list", {"name": "h-pattern-list"}, "alpha_pattern must be an object of module patterns"),
    ("config-a-list", {"name": "h-config-list"}, "adapter_config.json must be a JSON object"),
    ("config-deep", {"name": "h-config-deep"}, "nested more than 16 levels deep"),
    ("name-300", {"name": "n" * 300}, "longer than any file name"),
    ("scale-400-digits", {"name": "h-good", "scale": 10 ** 400}, "scale must be a number from 0 to 2"),
    # NaN and Inf weights
    ("nan-weights", {"name": "h-nan"}, "holds NaN or infinite values"),
    ("inf-weights", {"name": "h-inf"}, "holds NaN or infinite values"),
    ("nan-alpha", {"name": "h-nan-alpha"}, "holds NaN or infinite values"),
    ("overflowing-alpha", {"name": "h-huge-alpha"}, "overflows"),
    # confinement: links inside a sub-folder
    ("weights-link-out", {"name": "h-link-weights"}, "links outside the adapter folder"),
    ("config-link-out", {"name": "h-link-config"}, "links outside the adapter folder"),
    ("nested-link-out", {"path": "h-nest/inner"}, "outside the adapter folder"),
    # more of the same kind
    ("rank-pattern-zero", {"name": "h-rank-pattern"}, "rank_pattern['q_proj'] must be a whole number"),
    ("rank-pattern-text", {"name": "h-rank-pattern-text"}, "rank_pattern must be an object"),
    ("target-modules-number", {"name": "h-target"}, "target_modules must be a module name or a list"),
    ("peft-type-number", {"name": "h-peft-type"}, "peft_type must be a PEFT type"),
    ("rslora-text", {"name": "h-rslora-text"}, "use_rslora must be true or false"),
    ("lora-alpha-bool", {"name": "h-alpha-bool"}, "lora_alpha must be a finite number; got True"),
    ("lora-alpha-huge-int", {"name": "h-alpha-bigint"}, "lora_alpha must be a finite number"),
    ("config-not-utf8", {"name": "h-config-bytes"}, "adapter_config.json is not valid JSON"),
    ("config-huge", {"name": "h-config-huge"}, "adapter_config.json is larger than 1 MB"),
    ("slow-pattern", {"name": "h-pattern-slow"}, "takes too long to match"),
    ("int-weights", {"name": "h-int"}, "has dtype int64; adapter weights are floating point"),
    ("bool-weights", {"name": "h-bool"}, "has dtype bool"),
    ("mismatched-pair", {"name": "h-mismatch"}, "which do not form a low-rank pair"),
    ("three-d-pair", {"name": "h-3d"}, "which do not form a low-rank pair"),
    ("empty-file", {"name": "h-empty"}, "is not a readable safetensors file"),
    ("not-safetensors", {"name": "h-garbage"}, "is not a readable safetensors file"),
    ("header-too-large", {"name": "h-header"}, "is not a readable safetensors file"),
    ("no-tensors", {"name": "h-no-tensors"}, "holds no LoRA weights"),
    ("loha-bomb", {"name": "h-loha-bomb"}, "larger than any layer of the DiT"),
    ("lokr-bomb", {"name": "h-lokr-bomb"}, "larger than any layer of the DiT"),
    ("half-pair", {"name": "h-half"}, "has only half of its LoRA pair"),
    ("weights-a-folder", {"name": "h-weights-dir"}, "is not a readable safetensors file"),
]

# odd but valid: these load and the job runs
ACCEPTED: list[tuple[str, dict]] = [
    ("lora-alpha-null", {"name": "h-alpha-null"}),
    ("patterns-null", {"name": "h-patterns-null"}),
]


def build(root: Path, outside: Path) -> None:
    """Write every case's files under `root` (the adapter folder) and the link targets under `outside`."""
    outside.mkdir(parents=True, exist_ok=True)
    _file(root, "h-good", _pair())
    _file(root, "h-alpha3", _kohya(alpha=torch.tensor([1.0, 2.0, 3.0])))
    _folder(root, "h-alpha-text", _pair(), {**LORA, "lora_alpha": "abc"})
    _folder(root, "h-alpha-null", _pair(), {**LORA, "lora_alpha": None})
    _folder(root, "h-patterns-null", _pair(), {**LORA, "alpha_pattern": None, "rank_pattern": None})
    _file(root, "h-rank0", _pair(0))
    _file(root, "h-rank0-alpha", _kohya(0, alpha=torch.tensor(1.0)))
    _folder(root, "h-rslora-rank0", _pair(0), {**LORA, "use_rslora": True})
    _folder(root, "h-lokr-r0", _lokr(), {**LOKR, "r": 0})
    _folder(root, "h-lokr-rx", _lokr(), {**LOKR, "r": "x"})
    _folder(root, "h-pattern-regex", _pair(), {**LORA, "alpha_pattern": {"(": 2}})
    _folder(root, "h-pattern-list", _pair(), {**LORA, "alpha_pattern": ["q_proj", 2]})
    _folder(root, "h-config-list", _pair(), [LORA])
    _folder(root, "h-config-deep", _pair(), b"[" * 100_000 + b"]" * 100_000)
    _file(root, "h-nan", {**_pair(), f"{PEFT_KEY}.lora_B.weight": torch.full((HIDDEN, 2), float("nan"))})
    _file(root, "h-inf", {**_pair(), f"{PEFT_KEY}.lora_A.weight": torch.full((2, HIDDEN), float("inf"))})
    _file(root, "h-nan-alpha", _kohya(alpha=torch.tensor(float("nan"))))
    _file(root, "h-huge-alpha", {**_kohya(alpha=torch.tensor(3e38)), f"{KOHYA_KEY}.lora_up.weight": torch.full((HIDDEN, 2), 100.0)})
    # a sub-folder whose weights (or config) link to files outside the adapter folder
    save_file(_pair(), str(outside / "adapter_model.safetensors"))  # a good adapter: only where it lies is wrong
    (outside / "adapter_config.json").write_text(json.dumps(LORA))
    _folder(root, "h-link-weights", None, LORA)
    os.symlink(outside / "adapter_model.safetensors", root / "h-link-weights" / "adapter_model.safetensors")
    _folder(root, "h-link-config", _pair(), None)
    os.symlink(outside / "adapter_config.json", root / "h-link-config" / "adapter_config.json")
    (root / "h-nest").mkdir()
    os.symlink(outside, root / "h-nest" / "inner")
    _folder(root, "h-rank-pattern", _pair(), {**LORA, "rank_pattern": {"q_proj": 0}})
    _folder(root, "h-rank-pattern-text", _pair(), {**LORA, "rank_pattern": "q_proj=2"})
    _folder(root, "h-target", _pair(), {**LORA, "target_modules": 5})
    _folder(root, "h-peft-type", _pair(), {**LORA, "peft_type": 5})
    _folder(root, "h-rslora-text", _pair(), {**LORA, "use_rslora": "yes"})
    _folder(root, "h-alpha-bool", _pair(), {**LORA, "lora_alpha": True})
    _folder(root, "h-alpha-bigint", _pair(), b'{"peft_type": "LORA", "r": 2, "lora_alpha": 1' + b"0" * 400 + b"}")
    _folder(root, "h-config-bytes", _pair(), b"\xff\xfe{}")
    _folder(root, "h-config-huge", _pair(), json.dumps({**LORA, "pad": "x" * (1 << 20)}).encode())
    slow = f"base_model.model.layers.0.self_attn.{'x' * 3000}"
    _folder(root, "h-pattern-slow", {f"{slow}.lora_A.weight": torch.ones(2, HIDDEN), f"{slow}.lora_B.weight":
                                     torch.ones(HIDDEN, 2)}, {**LORA, "alpha_pattern": {".*(x+x+)+y": 2}})
    _file(root, "h-int", {**_pair(), f"{PEFT_KEY}.lora_A.weight": torch.ones(2, HIDDEN, dtype=torch.int64)})
    _file(root, "h-bool", {**_pair(), f"{PEFT_KEY}.lora_A.weight": torch.ones(2, HIDDEN, dtype=torch.bool)})
    _file(root, "h-mismatch", {**_pair(), f"{PEFT_KEY}.lora_B.weight": torch.ones(HIDDEN, 3)})
    _file(root, "h-3d", {**_pair(), f"{PEFT_KEY}.lora_A.weight": torch.ones(2, HIDDEN, 1)})
    (root / "h-empty.safetensors").write_bytes(b"")
    (root / "h-garbage.safetensors").write_bytes(b"GIF89a" + bytes(range(256)) * 4)
    (root / "h-header.safetensors").write_bytes((1 << 40).to_bytes(8, "little") + b"{}")
    (root / "h-no-tensors.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")
    loha = "lora_unet_layers_0_self_attn_q_proj"
    _file(root, "h-loha-bomb", {f"{loha}.hada_w1_a": torch.ones(16384, 1), f"{loha}.hada_w1_b": torch.ones(1, 16384),
                                f"{loha}.hada_w2_a": torch.ones(16384, 1), f"{loha}.hada_w2_b": torch.ones(1, 16384)})
    lokr = "lycoris_layers_0_self_attn_q_proj"
    _file(root, "h-lokr-bomb", {f"{lokr}.lokr_w1_a": torch.ones(128, 1), f"{lokr}.lokr_w1_b": torch.ones(1, 128),
                                f"{lokr}.lokr_w2_a": torch.ones(128, 1), f"{lokr}.lokr_w2_b": torch.ones(1, 128)})
    _file(root, "h-half", {f"{PEFT_KEY}.lora_A.weight": torch.ones(2, HIDDEN)})
    (root / "h-weights-dir" / "adapter_model.safetensors").mkdir(parents=True)


@pytest.fixture(scope="module")
def hostile_lora_dir(tmp_path_factory) -> Path:
    """The corpus built in a folder of its own, with its links' targets outside it."""
    root = tmp_path_factory.mktemp("loras")
    build(root, tmp_path_factory.mktemp("outside"))
    return root
