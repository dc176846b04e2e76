"""Deadlines against real peers: a bucket that never answers cannot hold a job, and the pod's /cancel_task
removes queued tasks and stops running ones."""

import json
import socket
import threading
import time

import httpx
import pytest

from acestep_worker.doors.pod.api import ApiSettings, create_app
from acestep_worker.doors.pod.queue import TaskManager, TaskState
from acestep_worker.doors.serverless import run_job
from acestep_worker.net.bucket import DeliveryError
from acestep_worker.runner.deadline import JobTimedOut

from ..support.live_server import LiveServer


@pytest.fixture
def silent_bucket():
    """A server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_a_bucket_that_never_answers_cannot_hold_the_job_past_its_deadline(s3_engine, silent_bucket):
    engine = s3_engine  # the silent bucket is on loopback
    s3 = {"endpointUrl": silent_bucket, "accessId": "AK", "accessSecret": "very-secret", "bucketName": "songs"}
    started = time.monotonic()
    with pytest.raises((DeliveryError, JobTimedOut)) as err:
        run_job(engine, "silent", {"duration": 10, "timeout_seconds": 4}, s3_config=s3, env={})
    assert time.monotonic() - started < 30  # was 246 s: boto3's default timeouts and retries
    assert "very-secret" not in str(err.value)
    if isinstance(err.value, DeliveryError):
        assert "songs" in str(err.value)


def test_pod_cancel_removes_queued_and_stops_running_tasks(engine, tmp_path):
    manager = TaskManager(engine, tmp_path)
    with LiveServer(create_app(engine, manager, ApiSettings())) as server:
        running = httpx.post(f"{server.url}/release_task", json={"duration": 600}).json()["data"]["task_id"]
        queued = httpx.post(f"{server.url}/release_task", json={"duration": 10}).json()["data"]["task_id"]
        manager.start()
        while manager.get(running).state is TaskState.QUEUED:
            time.sleep(0.05)
        first = httpx.post(f"{server.url}/cancel_task", json={"task_id": queued}).json()["data"]
        second = httpx.post(f"{server.url}/cancel_task", json={"task_id": running}).json()["data"]
        assert first["status"] == 2 and "cancelled" in first["error"]
        assert second["stage"] == "cancelling" or second["status"] == 2
        assert manager.get(running).done.wait(60)
        entries = httpx.post(f"{server.url}/query_result", json={"task_id_list": [running, queued]}).json()["data"]
        assert [e["status"] for e in entries] == [2, 2] and all("cancelled" in e["error"] for e in entries)
        assert httpx.post(f"{server.url}/cancel_task", json={"task_id": "nope"}).status_code == 404
        assert httpx.post(f"{server.url}/cancel_task", json={}).status_code == 400
        bad = httpx.post(f"{server.url}/release_task", json={"duration": 10, "timeout_seconds": 0})
        assert bad.status_code == 400 and "timeout_seconds" in bad.json()["detail"]
    manager.stop()
    assert list(tmp_path.iterdir()) == []
    assert json.loads(entries[0]["result"])[0]["status"] == 2
