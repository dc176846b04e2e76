"""The thin pieces stay thin: importing the schema, the client or the page's input table in a fresh
interpreter loads no model or audio library, so `python -m acestep_worker client` starts
without torch, and a client of the page builds its arguments without Gradio."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "soundfile", "numpy", "soxr", "av", "diffusers", "transformers", "gradio", "fastapi")


@pytest.mark.parametrize("module", ["acestep_worker.schema.request", "acestep_worker.schema.formats",
                                    "acestep_worker.schema.task_types", "acestep_worker.doors.client",
                                    "acestep_worker.doors.cli", "acestep_worker.doors.pod.page.inputs",
                                    "acestep_worker.delivery.inline"])
def test_light_modules_import_no_heavy_library(module):
    probe = f"import sys, {module}; print(','.join(n for n in {HEAVY!r} if n in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"{module} loads {loaded}"
