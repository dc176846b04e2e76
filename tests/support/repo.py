"""Paths into the repository the tests read: the checkout itself, the golden data, the benchmarks."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
# Upstream tensors ship with the repository (data, not code); ACESTEP_GOLDEN_DIR points at another set.
GOLDEN = Path(os.environ.get("ACESTEP_GOLDEN_DIR") or REPO / "tests" / "golden")


def load_bench(name: str) -> ModuleType:
    """bench/<name>.py as a module, so tests and the benchmark's figures use the same code and signals."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
