"""The deadline and the cancel flag cover the whole job: every planner mode, decoding, encoding,
writing and delivery, in serverless jobs and pod tasks alike; a stopped job leaves no file."""

import json
import socket
import threading
import time

import httpx
import pytest
import torch

from acestep_worker.doors.pod.api import ApiSettings, create_app
from acestep_worker.doors.pod.queue import TaskManager, TaskState
from acestep_worker.doors.serverless import run_job
from acestep_worker.errors import GenerationCancelled
from acestep_worker.models.planner import planner as planner_module
from acestep_worker.net.bucket import DeliveryError
from acestep_worker.runner.deadline import Deadline, JobTimedOut
from acestep_worker.schema.request import TimedRequest, parse

from .live_server import LiveServer


class StopAfter:
    """A should_stop that turns true after `calls` looks, counting what ran after that."""

    def __init__(self, calls: int):
        self.calls, self.seen = calls, 0

    def __call__(self) -> bool:
        self.seen += 1
        return self.seen > self.calls


class Wrapped:
    """The real engine with something done after it generates (a late cancel, a slow stage)."""

    def __init__(self, engine, after=None, settings=None):
        self.engine, self.after, self.generated = engine, after, 0
        self.settings = settings or engine.settings

    def plan(self, request, seeds=None):
        return self.engine.plan(request, seeds)

    def generate(self, request, **kwargs):
        result = self.engine.generate(request, **kwargs)
        self.generated += 1
        if self.after is not None:
            self.after()
        return result


def _outputs(folder, stem):
    return sorted(p.name for p in folder.glob(f"{stem}*"))


@pytest.mark.parametrize("fields", [{"sample_query": "a calm piano piece"}, {"use_format": True, "caption": "rock"},
                                    {"caption": "rock", "use_cot_metas": True}])
def test_every_planner_mode_stops_within_a_token(planner_engine, monkeypatch, fields):
    steps = []
    real_step = planner_module.PairedDecoder.step
    monkeypatch.setattr(planner_module.PairedDecoder, "step", lambda self, t: (steps.append(1), real_step(self, t)))
    stop = StopAfter(3)
    with pytest.raises(GenerationCancelled):
        planner_engine.generate(parse({"duration": 10, **fields}), should_stop=stop)
    assert len(steps) <= 3, f"{len(steps)} planner tokens were decoded after the stop"


def test_vae_decode_stops_between_songs(engine, monkeypatch):
    decoded = []
    stop = {"now": False}

    def on_progress(progress):
        if progress.stage == "vae_decode":
            stop["now"] = True

    vae = engine.synthesizer.vae
    real_decode = vae.decode
    monkeypatch.setattr(vae, "decode", lambda z: (decoded.append(1), real_decode(z))[1])
    with pytest.raises(GenerationCancelled):
        engine.generate(parse({"duration": 10, "batch_size": 2}), on_progress=on_progress,
                        should_stop=lambda: stop["now"])
    assert decoded == []


def test_a_cancel_after_diffusion_writes_and_uploads_nothing(engine):
    cancelled = threading.Event()
    late = Wrapped(engine, after=cancelled.set)
    s3 = {"endpointUrl": "http://127.0.0.1:9", "accessId": "a", "accessSecret": "b", "bucketName": "songs"}
    with pytest.raises(GenerationCancelled, match="cancelled"):
        run_job(late, "late-cancel", {"duration": 10, "batch_size": 2}, s3_config=s3, cancelled=cancelled, env={})
    assert late.generated == 1 and _outputs(engine.settings.output_dir, "late-cancel") == []


def test_the_deadline_covers_encoding_and_writing(engine):
    slow = Wrapped(engine, after=lambda: time.sleep(1.2))
    with pytest.raises(JobTimedOut, match="timed out after 1 s"):
        run_job(slow, "slow-encode", {"duration": 10, "timeout_seconds": 1}, env={})
    assert _outputs(engine.settings.output_dir, "slow-encode") == []
    assert run_job(engine, "after-timeout", {"duration": 10}, env={})["status"] == "completed"


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


def test_a_bucket_that_never_answers_cannot_hold_the_job_past_its_deadline(engine, silent_bucket):
    s3 = {"endpointUrl": silent_bucket, "accessId": "AK", "accessSecret": "very-secret", "bucketName": "songs"}
    started = time.monotonic()
    with pytest.raises((DeliveryError, JobTimedOut)) as err:
        run_job(engine, "silent", {"duration": 10, "timeout_seconds": 4}, s3_config=s3, env={})
    assert time.monotonic() - started < 30  # was 246 s: boto3's default timeouts and retries
    assert "very-secret" not in str(err.value)
    if isinstance(err.value, DeliveryError):
        assert "songs" in str(err.value)


@pytest.mark.parametrize("s3,fragment", [
    ({"endpointUrl": "127.0.0.1:9000"}, "s3Config.endpointUrl must be an http(s) URL"),
    ({"endpointUrl": "ftp://x"}, "s3Config.endpointUrl"),
    ({"endpointUrl": "http://h:notaport"}, "s3Config.endpointUrl"),
    ({"bucketName": "a/b"}, "s3Config.bucketName"),
    ({"accessId": ["x"]}, "s3Config must be an object"),
    ({"accessSecret": "[" * 10_000}, "s3Config must be an object"),
])
def test_bucket_settings_are_checked_before_generating(engine, s3, fragment):
    config = {"endpointUrl": "http://127.0.0.1:9000", "accessId": "a", "accessSecret": "b", "bucketName": "songs", **s3}
    counting = Wrapped(engine)
    with pytest.raises(DeliveryError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        run_job(counting, "bad-s3", {"duration": 10}, s3_config=config, env={})
    assert counting.generated == 0


def test_bucket_environment_is_checked_before_generating(engine):
    env = {"BUCKET_ENDPOINT_URL": "localhost:9000", "BUCKET_ACCESS_KEY_ID": "a", "BUCKET_SECRET_ACCESS_KEY": "b",
           "BUCKET_NAME": "songs"}
    counting = Wrapped(engine)
    with pytest.raises(DeliveryError, match="BUCKET_ENDPOINT_URL must be an http"):
        run_job(counting, "bad-env", {"duration": 10}, env=env)
    assert counting.generated == 0


def test_deadline_reasons():
    clock = {"t": 0.0}
    deadline = Deadline(5, clock=lambda: clock["t"])
    assert not deadline() and deadline.remaining() == 5
    clock["t"] = 6
    assert deadline() and deadline.remaining() == 0
    with pytest.raises(JobTimedOut, match="timed out after 5 s"):
        deadline.check()
    deadline.cancel()
    with pytest.raises(GenerationCancelled, match="cancelled"):
        deadline.check()


# -- pod tasks ------------------------------------------------------------------------------------

def _wait(manager, task, timeout=120):
    assert task.done.wait(timeout)
    return task


def test_pod_tasks_honour_timeout_seconds(engine, tmp_path):
    manager = TaskManager(engine, tmp_path).start()
    try:
        task = _wait(manager, manager.submit(parse({"duration": 600, "timeout_seconds": 1}, TimedRequest)))
        assert task.state is TaskState.FAILED and "timed out after 1 s" in task.error
        assert list(tmp_path.iterdir()) == []
        after = _wait(manager, manager.submit(parse({"duration": 10}, TimedRequest)))
        assert after.state is TaskState.SUCCEEDED
    finally:
        manager.stop()


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


def test_retention_forgets_the_oldest_tasks_and_their_files(engine, tmp_path):
    manager = TaskManager(engine, tmp_path, max_tasks=2).start()
    try:
        tasks = [_wait(manager, manager.submit(parse({"duration": 10}))) for _ in range(3)]
    finally:
        manager.stop()
    assert manager.get(tasks[0].id) is None and not tasks[0].songs[0].path.exists()
    assert all(manager.get(t.id) is not None and t.songs[0].path.exists() for t in tasks[1:])
    assert not hasattr(tasks[1].songs[0], "data")  # finished audio lives on disk only


def test_retention_caps_the_bytes_kept(engine, tmp_path):
    manager = TaskManager(engine, tmp_path, max_bytes=1).start()  # room for no finished task at all
    try:
        task = _wait(manager, manager.submit(parse({"duration": 10})))
    finally:
        manager.stop()
    assert manager.get(task.id) is None and list(tmp_path.iterdir()) == []


def test_vae_decode_stops_between_tiles(engine):
    from acestep_worker.models.vae import decode

    vae = engine.synthesizer.vae
    calls = []
    hook = vae.decoder.register_forward_pre_hook(lambda *_: calls.append(1))
    latents = torch.randn(1, 3000, 64)  # 120 s: several 512-frame tiles

    def stop_after_two():
        if len(calls) >= 2:
            raise GenerationCancelled("stopped")

    try:
        with pytest.raises(GenerationCancelled):
            decode(vae, latents, check=stop_after_two)
    finally:
        hook.remove()
    assert len(calls) == 2, f"{len(calls)} tiles were decoded"
