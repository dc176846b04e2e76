"""The tiny random-weight checkpoint tree, built once per session by the product's own builder in the
official layout, and engines loaded from it through the ordinary settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from acestep_worker.dev import tiny


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return tiny.build(tmp_path_factory.mktemp("ckpt") / "checkpoints")


@pytest.fixture(scope="session")
def tiny_env(tiny_root) -> dict[str, str]:
    """Environment that points every entry point at the tiny tree, as a deployment would."""
    return {"ACESTEP_CONFIG_PATH": str(tiny_root / "acestep-v15-turbo"), "ACESTEP_DEVICE": "cpu",
            "ACESTEP_LM_MODEL_PATH": "", "ACESTEP_OUTPUT_DIR": str(tiny_root.parent / "outputs"),
            "ACESTEP_INPUT_DIR": str(tiny_root.parent / "inputs")}


@pytest.fixture(scope="session")
def engine(tiny_env):
    from acestep_worker.pipeline.engine import Engine
    from acestep_worker.settings import Settings

    return Engine(Settings.from_env(tiny_env))


@pytest.fixture(scope="module")
def lora_dir(tiny_root):
    return tiny_root / tiny.LORA_FOLDER


@pytest.fixture(scope="module")
def lora_engine(tiny_env, lora_dir, tmp_path_factory):
    """An engine with the tiny tree's adapters as its ACESTEP_LORA_DIR (one per test module: adapters stay
    loaded in its DiT)."""
    from acestep_worker.pipeline.engine import Engine
    from acestep_worker.settings import Settings

    return Engine(Settings.from_env({**tiny_env, "ACESTEP_LORA_DIR": str(lora_dir), "ACESTEP_ALLOW_PRIVATE_URLS": "1",
                                     "ACESTEP_LORA_CACHE_DIR": str(tmp_path_factory.mktemp("lora-cache"))}))


@pytest.fixture(scope="session")
def planner_env(tiny_env, tiny_root) -> dict[str, str]:
    return {**tiny_env, "ACESTEP_LM_MODEL_PATH": str(tiny_root / tiny.LM_FOLDER)}


@pytest.fixture(scope="session")
def planner_engine(planner_env):
    from acestep_worker.pipeline.engine import Engine
    from acestep_worker.settings import Settings

    return Engine(Settings.from_env(planner_env))


@pytest.fixture(scope="session")
def planner(planner_engine):
    return planner_engine.models.planner
