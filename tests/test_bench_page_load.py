"""bench/page_load.py runs end to end at its smallest size (2 page users, 2 s per phase, the tiny
tree): the pod serves, the users' songs finish without a page error, and every figure is printed."""

import json
import os
import signal
import subprocess
import sys

from .conftest import REPO

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
