"""bench/gpu.py runs end to end (tiny sizes, CPU), so it is known to work the day a GPU is lent."""

import json
import os
import subprocess
import sys

from .conftest import REPO


def test_gpu_benchmark_smoke_run_measures_every_figure(tmp_path):
    out = tmp_path / "smoke.json"
    run = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--smoke", "--out", str(out)],
                         capture_output=True, text=True, timeout=1200,
                         env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["smoke"] is True and result["errors"] == {}
    figures = result["figures"]
    assert figures["cold_start_s"] > 0
    assert {"text_encoding_s", "dit_step_s", "turbo_loop_s", "vae_decode_s"} <= set(figures["turbo_10s"])
    assert figures["base_2steps_cfg_10s"]["loop_s"] > 0
    assert figures["mp3_encode_10s_s"] > 0 and figures["mp3_encode_4x10s_thread_pool_s"] > 0
    assert figures["planner_cfg_codes_per_s"] > 0 and figures["planner_no_cfg_codes_per_s"] > 0
    assert figures["turbo_loop_10s_banded_attention_s"] > 0 and figures["turbo_loop_10s_dense_attention_s"] > 0
    assert figures["peak_memory_10s_x2_gib"] > 0 and figures["largest_fit"]["batch"] >= 1


def test_readme_table_has_one_row_per_result():
    sys.path.insert(0, str(REPO / "bench"))
    import gpu

    result = {"device": "NVIDIA H100", "date": "2026-01-01", "figures": {
        "cold_start_s": 9.1, "turbo_30s": {"dit_step_s": 0.01}, "turbo_240s": {"turbo_loop_s": 0.2, "total_s": 0.5},
        "planner_cfg_codes_per_s": 610.0, "planner_cfg_compiled_codes_per_s": 700.0, "largest_fit": {"duration_s": 600, "batch": 16}}}
    table = gpu.readme_table([result]).splitlines()
    assert len(table) == 3 and "NVIDIA H100" in table[2] and "700.0 / -" in table[2] and "600 s x 16" in table[2]
