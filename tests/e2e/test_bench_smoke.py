"""The benchmarks run end to end at their smallest sizes (tiny tree, CPU), so they are known to work the day a
GPU is lent: bench/gpu.py's figures and deadline, and bench/page_load.py's page users."""

import json
import os
import signal
import subprocess
import sys

from ..support.repo import REPO


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
    assert figures["mp3_encode_10s_segmented_s"] > 0 and figures["encode_cores"] >= 1
    assert figures["planner_cfg_codes_per_s"] > 0 and figures["planner_no_cfg_codes_per_s"] > 0
    assert figures["job_10s_caption_to_mp3_s"] >= figures["job_10s_stages_s"]["encode"] > 0
    assert all(figures[f"turbo_loop_10s_{switch}_s"] > 0 for switch in (
        "dense_attention", "banded_attention", "flex_attention", "sdpa_auto", "sdpa_math"))
    assert "switch_errors" not in figures and "switches_skipped" not in figures and result["skipped"] == []
    chosen = result["recommended_defaults"]
    assert set(chosen["ACESTEP_WINDOWED_ATTENTION"]["summed_loop_s"]) == {"dense", "banded", "flex"}
    assert set(chosen["ACESTEP_SDPA_BACKEND"]["summed_loop_s"]) == {"auto", "math"}
    assert figures["peak_memory_10s_x2_gib"] > 0 and figures["largest_fit"]["batch"] >= 1
    stems = figures["stems_4_of_2s_base_2steps"]
    assert stems["one job, 4 stems"]["wall_s"] > 0 and stems["4 jobs, 1 stem each"]["cpu_s"] > 0
    assert figures["alignment_lrc_10s"]["alignment_s"] > 0
    assert figures["alignment_lrc_scores_10s"]["share_of_loop"] > 0


def test_a_run_past_its_deadline_starts_no_phase_and_still_writes_its_file(tmp_path):
    out = tmp_path / "late.json"
    run = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--smoke", "--out", str(out),
                          "--deadline-s", "0", "--phases", "generation,planner"],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["skipped"] == ["generation", "planner"] and result["figures"] == {}
    bad = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--smoke", "--phases", "warp"],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert bad.returncode != 0 and "--phases: unknown ['warp']" in bad.stderr


SECONDS = 2  # per phase; the users keep generating for SECONDS + 5 after they connect


def test_page_load_smoke_run_reports_every_figure_and_no_page_error():
    command = [sys.executable, str(REPO / "bench" / "page_load.py"), "--users", "2", "--seconds", str(SECONDS),
               "--interval", "0.1", "--ramp", "30"]
    # Its own session, so a timeout ends the pod and the users too (the script kills them only when it
    # reaches its own cleanup).
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    try:
        out, err = run.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        raise
    assert run.returncode == 0, err[-2000:]
    result = json.loads(out)
    assert (result["users"], result["song_s"], result["format"]) == (2, 10, "mp3") and result["cpus"] >= 1
    idle, loaded = result["idle"], result["page_load"]
    for phase in (idle, loaded):
        assert phase["requests"] >= 1 and 0 < phase["p50_ms"] <= phase["p95_ms"] <= phase["max_ms"]
        assert len(phase["load_average"]) == 3
    assert loaded["users_connected"] == 2 and loaded["page_errors"] == 0, err[-2000:]
    assert loaded["songs_finished"] >= 1  # the users' load was real: songs went through the page's queue
