#!/usr/bin/env python3
"""/health latency on the pod's API while page users load the Gradio page (issue 10 item 21).

    python bench/page_load.py --users 60 --seconds 20

Three processes, so neither the users nor the prober share the server's interpreter (and its GIL):

* the pod, served as `serve` serves it (`build` + `run_servers`: the API and the page on two threads
  with two event loops, one engine, one queue) on the tiny random-weight tree;
* this process, which polls the API's `/health` one request at a time for `--seconds`, twice: with
  the page idle, then under load;
* `--users` Gradio clients (gradio_client, over real HTTP and the page's queue stream) in one process,
  each submitting a song, waiting for it through its progress updates, and submitting the next.

Prints p50/p95/max of /health per phase, the load average at each phase's end, and what the users
got done, as JSON. A measurement, not a test: its figures depend on the machine and its neighbours
(tests/e2e/test_bench_smoke.py runs it at its smallest size, 2 users, and checks only that it works).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))


# -- the pod process ----------------------------------------------------------------------------------

def serve_pod(workdir: Path, queue_maxsize: int) -> None:
    """Build the tiny tree in `workdir` and serve it; print 'READY <api url> <page url>' once both ports
    answer. (Built here, not in the prober, which then never imports torch.)"""
    from acestep_worker.dev import tiny
    from acestep_worker.doors.pod.launch import PodSettings, build, run_servers
    from acestep_worker.pipeline.engine import Engine
    from acestep_worker.settings import Settings
    from tests.support.live_server import free_port

    root = tiny.build(workdir / "checkpoints")
    env = {"ACESTEP_CONFIG_PATH": str(root / "acestep-v15-turbo"), "ACESTEP_DEVICE": "cpu",
           "ACESTEP_LM_MODEL_PATH": "", "ACESTEP_OUTPUT_DIR": str(root.parent / "outputs"),
           "ACESTEP_INPUT_DIR": str(root.parent / "inputs")}
    engine = Engine(Settings.from_env(env))
    api_port, page_port = free_port(), free_port()
    api, page, _ = build(engine, PodSettings(host="127.0.0.1", port=api_port, gradio_port=page_port,
                                             queue_maxsize=queue_maxsize))

    def started(servers: list) -> None:
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # a line per poll would drown the figures

        def announce() -> None:
            while not all(s.started for s in servers):
                time.sleep(0.05)
            print(f"READY http://127.0.0.1:{api_port} http://127.0.0.1:{page_port}", flush=True)
        threading.Thread(target=announce, daemon=True).start()

    run_servers([(api, "127.0.0.1", api_port), (page, "127.0.0.1", page_port)], on_start=started)


# -- the page users' process --------------------------------------------------------------------------

def page_inputs(seed: int, duration_s: int, audio_format: str) -> list:
    """/generate's positional arguments for one song; every other control at the page's default."""
    from acestep_worker.doors.pod.page.inputs import client_args

    return client_args(caption=f"load test {seed}", duration=duration_s, seed=str(seed), audio_format=audio_format)


def run_users(url: str, users: int, duration_s: int, audio_format: str, ramp_s: float, run_s: float) -> None:
    """Connect `users` clients (print 'CONNECTED n'), keep them generating for `run_s`, print the counts."""
    from gradio_client import Client

    page_inputs(0, duration_s, audio_format)  # imports the package (and torch, through it) before the clock runs
    lock, stop = threading.Lock(), threading.Event()
    counts = {"connected": 0, "connect_errors": 0, "songs": 0, "errors": 0, "first_error": None}

    def note_error(key: str) -> None:
        with lock:
            counts[key] += 1
            counts["first_error"] = counts["first_error"] or traceback.format_exc()[-1200:]

    def user(index: int) -> None:
        try:
            client = Client(url, verbose=False, max_workers=2, httpx_kwargs={"timeout": 120})
        except Exception:  # noqa: BLE001 - a user that cannot connect is counted, not fatal
            note_error("connect_errors")
            return
        with lock:
            counts["connected"] += 1
        n = 0
        while not stop.is_set():
            n += 1
            try:
                client.predict(*page_inputs(index * 1000 + n, duration_s, audio_format), api_name="/generate")
            except Exception:  # noqa: BLE001
                note_error("errors")
                continue
            with lock:
                counts["songs"] += 1

    for index in range(users):
        threading.Thread(target=user, args=(index,), daemon=True).start()
    deadline = time.monotonic() + ramp_s
    while counts["connected"] + counts["connect_errors"] < users and time.monotonic() < deadline:
        time.sleep(0.1)
    print(f"CONNECTED {counts['connected']}", flush=True)
    songs_at_start = counts["songs"]
    time.sleep(run_s)
    with lock:
        result = {**counts, "songs_during_run": counts["songs"] - songs_at_start}
    print("COUNTS " + json.dumps(result), flush=True)
    os._exit(0)  # the clients' threads still wait on queued songs


# -- the prober (this process) ------------------------------------------------------------------------

def poll_health(api: str, seconds: float, interval_s: float) -> list[float]:
    """Milliseconds per GET /health, one request at a time on one keep-alive connection."""
    import httpx

    latencies = []
    with httpx.Client(timeout=60) as client:
        client.get(api + "/health")  # opens the connection; not measured
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            response = client.get(api + "/health")
            latencies.append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"/health answered {response.status_code}")
            time.sleep(interval_s)
    return latencies


def summary(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    return {"requests": len(ordered), "p50_ms": round(statistics.median(ordered), 2),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
            "max_ms": round(ordered[-1], 2), "load_average": [round(x, 2) for x in os.getloadavg()]}


class Child:
    """This script in another role; its stdout is read on a thread (so it never blocks on a full pipe)
    into a queue that `wait_for` reads."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.process = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True,
                                        stderr=subprocess.DEVNULL, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.process.stdout], daemon=True).start()

    def wait_for(self, prefix: str, timeout_s: float) -> str:
        """The rest of the next line that starts with `prefix`."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        raise SystemExit(f"no {prefix.strip()} line in {timeout_s:g} s (exit status {self.process.poll()})")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()  # gone before its folder is deleted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=20.0, help="each phase's /health polling time")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between /health requests")
    parser.add_argument("--duration", type=int, default=10, help="each page user's song length (s)")
    parser.add_argument("--format", default="mp3")
    parser.add_argument("--ramp", type=float, default=60.0, help="max seconds for the users to connect")
    parser.add_argument("--role", choices=["main", "pod", "users"], default="main", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role == "pod":
        return serve_pod(Path(args.target), queue_maxsize=max(200, 2 * args.users))
    if args.role == "users":
        return run_users(args.target, args.users, args.duration, args.format, args.ramp, args.seconds + 5)

    # The tree, the pod's songs, and Gradio's copies of them on both sides: all deleted at the end.
    with tempfile.TemporaryDirectory(prefix="page-load-") as workdir:
        measure(args, Path(workdir), {**os.environ, "GRADIO_TEMP_DIR": str(Path(workdir) / "gradio")})


def measure(args: argparse.Namespace, workdir: Path, env: dict[str, str]) -> None:
    """Serve the tiny tree in a pod, poll /health idle and under the page users, print the figures."""
    common = ["--users", str(args.users), "--seconds", str(args.seconds), "--duration", str(args.duration),
              "--format", args.format, "--ramp", str(args.ramp)]
    pod = Child("--role", "pod", "--target", str(workdir), *common, env=env)
    users = None
    try:
        api, page = pod.wait_for("READY ", 300).split()
        idle = summary(poll_health(api, args.seconds, args.interval))
        users = Child("--role", "users", "--target", page, *common, env=env)
        connected = int(users.wait_for("CONNECTED ", args.ramp + 60))
        loaded = summary(poll_health(api, args.seconds, args.interval))
        counts = json.loads(users.wait_for("COUNTS ", 60))
        loaded.update(users_connected=connected, songs_finished=counts["songs_during_run"],
                      page_errors=counts["errors"] + counts["connect_errors"])
        print(json.dumps({"idle": idle, "page_load": loaded, "users": args.users, "song_s": args.duration,
                          "format": args.format, "cpus": os.cpu_count()}, indent=2))
        if counts["first_error"]:
            print("first page error:\n" + counts["first_error"], file=sys.stderr)
    finally:
        for process in (users, pod):
            if process is not None:
                process.kill()


if __name__ == "__main__":
    main()
