"""A half-written file does not outlive the process writing it (#18 item 7): a real writer killed with
SIGKILL mid-write leaves a `.part` that the next start-up sweep (another process) removes at once,
whatever its age, while a live writer's part is kept; the pod sweeps again while it runs."""

import signal
import subprocess
import sys
import time
from pathlib import Path

# Writes 4 MB through the real function, which is held just before the rename, until killed.
WRITER = """
import os, sys, time
from pathlib import Path
from acestep_worker.delivery import files

def hold(src, dst):
    print("written", flush=True)
    time.sleep(600)

os.replace = hold
target, data = Path(sys.argv[1]) / "song-1.mp3", b"x" * (4 << 20)
files.write_all([(target, data)])
"""
# What the serverless worker and the pod run at start, in a process of its own.
START_UP = """
import sys
from pathlib import Path
from types import SimpleNamespace
from acestep_worker.delivery.files import tidy_output_dir
tidy_output_dir(SimpleNamespace(output_dir=Path(sys.argv[1]), output_max_files=None, output_max_bytes=None))
"""


def start_writer(folder: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    line = proc.stdout.readline()
    assert line == b"written\n", proc.stderr.read().decode()[-2000:]
    [part] = folder.glob(".*.part")
    assert part.stat().st_size == 4 << 20
    return proc, part


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def start_up(folder: Path) -> None:
    subprocess.run([sys.executable, "-c", START_UP, str(folder)], check=True, timeout=60)


def test_a_write_killed_midway_is_removed_at_the_next_start(tmp_path):
    proc, part = start_writer(tmp_path)
    try:
        start_up(tmp_path)
        assert part.exists(), "a live writer's partial file was removed"
    finally:
        kill(proc)
    start_up(tmp_path)  # seconds old, not minutes: its writer is gone, that is enough
    assert list(tmp_path.iterdir()) == []


def test_the_pod_removes_a_killed_writers_part_at_start_and_while_it_runs(engine, tmp_path):
    from acestep_worker.doors.pod.queue import TaskManager

    proc, before = start_writer(tmp_path)
    kill(proc)
    manager = TaskManager(engine, tmp_path)
    manager.sweep_period_s = 0.2
    manager.start()
    try:
        assert not before.exists(), "the pod's start left a killed writer's part"
        proc, during = start_writer(tmp_path)
        try:
            time.sleep(0.6)
            assert during.exists(), "the periodic sweep removed a live writer's part"
        finally:
            kill(proc)
        deadline = time.monotonic() + 5
        while during.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not during.exists(), "the pod's periodic sweep left a killed writer's part"
    finally:
        manager.stop(10)
