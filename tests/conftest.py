"""The test tree: unit/ (no model, no process, no server), integration/ (the tiny random-weight models
in-process), e2e/ (child processes, HTTP servers, a browser). Each test is marked with its folder's name,
so `pytest -m "not e2e"` runs the first two. The shared fixtures live in tests/support/."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.support.models", "tests.support.pod", "tests.support.handler", "tests.support.web",
                  "tests.support.s3", "tests.support.slow", "tests.support.hostile_loras"]

HERE = Path(__file__).parent
LEVELS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config, items):
    for item in items:
        level = item.path.relative_to(HERE).parts[0]
        if level not in LEVELS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/unit, tests/integration or tests/e2e")
        item.add_marker(getattr(pytest.mark, level))
