"""Corrupt checkpoints are refused at load time with a message naming the file and what is wrong,
never a library's raw error and never a model that loads with random weights in places."""

import os
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from acestep_worker.dev import tiny
from acestep_worker.errors import CheckpointError
from acestep_worker.models.planner.lm import PlannerLM
from acestep_worker.models.text_encoder import TextEncoder

COMPONENTS = {"text encoder": ("Qwen3-Embedding-0.6B", TextEncoder.load),
              "planner LM": (tiny.LM_FOLDER, PlannerLM.load)}


def _copy(source: Path, target: Path) -> Path:
    """The folder as symlinks, so a test can replace one file without copying the others."""
    target.mkdir()
    for item in source.iterdir():
        os.symlink(item, target / item.name)
    return target


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[: len(data) // 2])


def _garble(path: Path) -> None:
    path.unlink()
    path.write_bytes(b"\x00" * 64)


def _drop_a_key(path: Path) -> None:
    tensors = load_file(str(path))
    tensors.pop(sorted(k for k in tensors if "layers.0." in k)[0])
    path.unlink()
    save_file(tensors, str(path), metadata={"format": "pt"})


def _reshape_a_key(path: Path) -> None:
    tensors = load_file(str(path))
    key = sorted(k for k in tensors if k.endswith("norm.weight"))[0]
    tensors[key] = tensors[key][:-1].clone()
    path.unlink()
    save_file(tensors, str(path), metadata={"format": "pt"})


@pytest.mark.parametrize("component", list(COMPONENTS))
@pytest.mark.parametrize("damage,fragment", [(_truncate, "corrupt or unreadable safetensors file"),
                                             (_garble, "corrupt or unreadable safetensors file"),
                                             (_drop_a_key, "missing keys"), (_reshape_a_key, "")])
def test_damaged_weights_name_the_file(tiny_root, tmp_path, component, damage, fragment):
    folder_name, load = COMPONENTS[component]
    folder = _copy(tiny_root / folder_name, tmp_path / folder_name)
    damage(folder / "model.safetensors")
    with pytest.raises(CheckpointError) as err:
        load(folder)
    message = str(err.value)
    assert fragment in message and str(folder) in message, message
    assert "model.safetensors" in message or "weights do not match" in message or component in message


def test_a_missing_weight_file_is_named(tiny_root, tmp_path):
    folder = _copy(tiny_root / "Qwen3-Embedding-0.6B", tmp_path / "te")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        TextEncoder.load(folder)


def test_the_worker_remembers_a_load_failure_instead_of_retrying_per_job(tiny_env, monkeypatch):
    import sys

    from .conftest import REPO

    monkeypatch.setattr(os, "environ", {**os.environ, **tiny_env})
    sys.path.insert(0, str(REPO))
    import handler

    calls = []

    def exploding(settings):
        calls.append(settings)
        raise KeyError("an error no loader foresaw")

    monkeypatch.setattr(handler, "Engine", exploding)
    monkeypatch.setattr(handler, "_engine", None)
    monkeypatch.setattr(handler, "_load_error", None)
    with pytest.raises(RuntimeError, match="failed to load"):
        handler.models_loaded()
    assert "KeyError" in handler.handle({"id": "j", "input": {}})["error"]
    assert "KeyError" in handler.handle({"id": "k", "input": {}})["error"]
    assert len(calls) == 1
