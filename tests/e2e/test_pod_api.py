"""The pod's HTTP API over real HTTP on loopback, with the tiny model: the upstream client flow,
body formats, auth, the bounded queue, unknown ids, failures, path traversal, expiry, schemathesis."""

import base64
import json
import os
import time
from dataclasses import replace
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from acestep_worker.audio.encode import decode
from acestep_worker.doors.pod.api import ApiSettings, create_app
from acestep_worker.doors.pod.queue import TaskManager

from ..support.live_server import LiveServer, free_port

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def locked_api(engine, manager):
    with LiveServer(create_app(engine, manager, ApiSettings(api_key=KEY))) as server:
        yield server.url


def _wait(api, task_id, headers=None, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        entry = httpx.post(f"{api}/query_result", json={"task_id_list": [task_id]}, headers=headers).json()["data"][0]
        if entry["status"] != 0:
            return entry
        time.sleep(0.2)
    raise AssertionError("task did not finish")


def test_the_original_clients_flow(api):
    """What generate_music.py of the original image does, step by step."""
    health = httpx.get(f"{api}/health", timeout=60).json()
    assert health["data"]["status"] == "ok"
    body = httpx.post(f"{api}/release_task", json={"caption": "indie pop", "lyrics": "", "duration": 10,
                                                  "batch_size": 2}).json()
    assert body["code"] == 200 and body["data"]["status"] == "queued"
    entry = _wait(api, body["data"]["task_id"])
    assert entry["status"] == 1
    items = json.loads(entry["result"])
    assert len(items) == 2 and all(item["file"].startswith("/v1/audio?") for item in items)
    info = items[0]["generation_info"]
    assert "BPM:" in info and "Key Scale:" in info and "Total Time:" in info
    assert items[0]["metas"]["prompt"] == "indie pop" and items[0]["dit_model"] == "acestep-v15-turbo"
    assert len(items[0]["seed_value"].split(",")) == 2
    for item in items:
        response = httpx.get(api + item["file"])
        assert response.status_code == 200 and response.headers["content-type"] == "audio/mpeg"
        audio, rate = decode(response.content)
        assert rate == 48000 and audio.shape == (480000, 2)


@pytest.mark.parametrize("send", [
    lambda api, f: httpx.post(f"{api}/release_task", data=f),
    lambda api, f: httpx.post(f"{api}/release_task", data=f, files={"unused": ("a.txt", b"x")}),
    lambda api, f: httpx.post(f"{api}/release_task", content=json.dumps(f)),  # no content type at all
])
def test_form_multipart_and_untyped_bodies(api, send):
    fields = {"prompt": "form post", "audio_duration": "10", "seed": "5", "bpm": "", "thinking": "false"}
    body = send(api, fields).json()
    entry = _wait(api, body["data"]["task_id"])
    item = json.loads(entry["result"])[0]
    assert entry["status"] == 1 and item["seed"] == 5 and item["prompt"] == "form post"


def test_nested_param_obj_and_task_id_list_as_string(api):
    body = httpx.post(f"{api}/release_task", json={"caption": "x", "param_obj": json.dumps({"duration": 10,
                                                                                            "seed": 8})}).json()
    task_id = body["data"]["task_id"]
    _wait(api, task_id)
    entry = httpx.post(f"{api}/query_result", data={"task_id_list": json.dumps([task_id])}).json()["data"][0]
    assert json.loads(entry["result"])[0]["seed"] == 8


def test_unknown_ids_are_failed_not_pending(api):
    entry = httpx.post(f"{api}/query_result", json={"task_id_list": ["no-such-task"]}).json()["data"][0]
    assert entry["status"] == 2 and "not found" in entry["error"]
    assert httpx.post(f"{api}/query_result", json={"task_ids": ["x"]}).json()["data"] == []


def test_failed_tasks_carry_their_error(api, manager, monkeypatch):
    # A loopback URL passes submission here (private URLs allowed) and fails when the task fetches it.
    monkeypatch.setattr(manager, "audio_policy", replace(manager.audio_policy, allow_private=True))
    nowhere = f"http://127.0.0.1:{free_port()}/take.wav"
    body = httpx.post(f"{api}/release_task", json={"duration": 10, "src_audio": nowhere}).json()
    entry = _wait(api, body["data"]["task_id"])
    assert entry["status"] == 2 and entry["error"].startswith("src_audio ")
    assert "Traceback" not in entry["result"] and json.loads(entry["result"])[0]["error"] == entry["error"]


def test_inline_audio_is_refused_at_submission_like_an_upload(api, manager):
    """A data URI or plain base64 in JSON is checked when it arrives, as the same bytes uploaded are:
    a 400 naming the field, not a task accepted and failed in the queue."""
    not_audio = b"not audio at all" * 400  # plain base64 of it is longer than any pod path
    uploaded = httpx.post(f"{api}/release_task", data={"duration": "10"}, files={"src_audio": ("a.wav", not_audio)})
    total = manager.stats()["jobs"]["total"]
    for value in ("data:audio/wav;base64," + base64.b64encode(not_audio).decode(),
                  base64.b64encode(not_audio).decode()):
        response = httpx.post(f"{api}/release_task", json={"duration": 10, "src_audio": value})
        assert response.status_code == 400 and response.json()["field"] == "src_audio"
        assert response.json()["detail"] == uploaded.json()["detail"]
    assert uploaded.status_code == 400 and manager.stats()["jobs"]["total"] == total  # no task was made


def test_what_needs_the_planner_is_refused_at_submission_without_one(api):
    response = httpx.post(f"{api}/release_task", json={"duration": 10, "thinking": True})
    assert response.status_code == 400 and "thinking needs the 5 Hz planner" in response.json()["detail"]


@pytest.mark.parametrize("request_kwargs,status,fragment", [
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "Invalid JSON"),
    ({"json": [1, 2]}, 400, "must be an object"),
    ({"content": b"just text", "headers": {"content-type": "text/plain"}}, 415, "Unsupported Content-Type"),
    ({"json": {"duration": 3}}, 400, "duration must be seconds between 10 and 600"),
    ({"json": {"colour": "red"}}, 400, "unknown field 'colour'"),
    ({"data": {"duration": "10"}, "files": {"src_audio": ("a.wav", b"RIFF")}}, 400, "src_audio is not audio"),
])
def test_malformed_bodies_are_4xx_with_a_reason(api, request_kwargs, status, fragment):
    response = httpx.post(f"{api}/release_task", **request_kwargs)
    assert response.status_code == status and fragment in response.json()["detail"]


def test_queue_full_is_429_with_retry_after_and_no_ghost_job(engine, tmp_path):
    stalled = TaskManager(engine, tmp_path, maxsize=1)  # never started: nothing drains the queue
    with LiveServer(create_app(engine, stalled, ApiSettings())) as server:
        first = httpx.post(f"{server.url}/release_task", json={"duration": 10})
        second = httpx.post(f"{server.url}/release_task", json={"duration": 10})
        stats = httpx.get(f"{server.url}/v1/stats").json()["data"]
    assert first.status_code == 200 and second.status_code == 429
    assert int(second.headers["Retry-After"]) >= 1
    assert stats["jobs"]["total"] == 1 and stats["queue_size"] == 1 and stats["queue_maxsize"] == 1


def test_health_and_query_stay_responsive_while_generating(api):
    """Generation runs off the event loop: polls are answered while the song is being made.

    Counted, not timed: were the engine on the loop, no poll could be answered between the task's
    first stage and its end, however fast or loaded the machine.
    """
    body = httpx.post(f"{api}/release_task", json={"duration": 200, "use_cot_caption": False}).json()
    task_id = body["data"]["task_id"]
    answered_mid_generation = []
    while True:
        entry = httpx.post(f"{api}/query_result", json={"task_id_list": [task_id]}).json()["data"][0]
        assert httpx.get(f"{api}/health").status_code == 200
        if entry["status"] != 0:
            break
        if entry["stage"] != "queued":
            answered_mid_generation.append((entry["stage"], entry["progress"]))
        time.sleep(0.05)
    assert entry["status"] == 1
    assert len(answered_mid_generation) >= 3, answered_mid_generation


def test_auth_bearer_ai_token_and_constant_time_refusals(locked_api):
    assert httpx.get(f"{locked_api}/health").status_code == 200  # health stays open
    assert httpx.post(f"{locked_api}/release_task", json={"duration": 10}).status_code == 401
    assert httpx.post(f"{locked_api}/release_task", json={"duration": 10},
                      headers={"Authorization": "Bearer nope"}).json()["detail"] == "Invalid API key"
    assert httpx.post(f"{locked_api}/release_task", json={"duration": 10, "ai_token": "nope"}).status_code == 401
    ok = httpx.post(f"{locked_api}/release_task", json={"duration": 10, "ai_token": KEY})
    assert ok.status_code == 200
    entry = _wait(locked_api, ok.json()["data"]["task_id"], headers={"Authorization": f"Bearer {KEY}"})
    file_url = json.loads(entry["result"])[0]["file"]
    assert httpx.get(locked_api + file_url).status_code == 401
    assert httpx.get(locked_api + file_url, headers={"Authorization": KEY}).status_code == 200
    assert httpx.get(f"{locked_api}/v1/stats").status_code == 401


@pytest.fixture(scope="module")
def served_file(api):
    body = httpx.post(f"{api}/release_task", json={"duration": 10}).json()
    entry = _wait(api, body["data"]["task_id"])
    return json.loads(entry["result"])[0]["file"].split("filename=")[1]


@pytest.mark.parametrize("query", [
    "filename=../../../../etc/passwd", "filename=%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "filename=%252e%252e%252fetc%252fpasswd", "filename=/etc/passwd", "path=/etc/passwd",
    "filename=..", "filename=./../x", "filename=a/../../x", "filename=..%2F..%2Fetc%2Fhostname",
    "path=%2Fetc%2Fpasswd", "filename=....//....//etc/passwd", "filename=%00", "filename=",
])
def test_audio_serves_nothing_outside_the_output_folder(api, query):
    response = httpx.get(f"{api}/v1/audio?{query}")
    assert response.status_code in (400, 403, 404), (query, response.status_code)
    assert b"root:" not in response.content


def test_symlinks_out_of_the_folder_are_refused(api, engine):
    link = engine.settings.output_dir / "escape.mp3"
    link.unlink(missing_ok=True)
    os.symlink("/etc/passwd", link)
    try:
        assert httpx.get(f"{api}/v1/audio?filename=escape.mp3").status_code == 403
    finally:
        link.unlink()


def test_audio_by_filename_and_by_upstream_absolute_path(api, engine, served_file):
    assert httpx.get(f"{api}/v1/audio?filename={served_file}").status_code == 200
    absolute = quote(str((engine.settings.output_dir / served_file).resolve()), safe="")
    assert httpx.get(f"{api}/v1/audio?path={absolute}").status_code == 200
    assert httpx.get(f"{api}/v1/audio?filename=missing.mp3").status_code == 404


def test_finished_tasks_and_files_expire(api, manager, engine):
    body = httpx.post(f"{api}/release_task", json={"duration": 10}).json()
    task_id = body["data"]["task_id"]
    entry = _wait(api, task_id)
    file_url = json.loads(entry["result"])[0]["file"]
    assert manager.expire(now=time.time() + 7200) >= 1
    assert httpx.post(f"{api}/query_result", json={"task_id_list": [task_id]}).json()["data"][0]["status"] == 2
    assert httpx.get(api + file_url).status_code == 404


def test_models_and_stats(api):
    models = httpx.get(f"{api}/v1/models").json()
    assert models["object"] == "list"
    assert {m["id"] for m in models["data"]} == {"acestep/acestep-v15-turbo", "acestep/acestep-v15-base"}
    _wait(api, httpx.post(f"{api}/release_task", json={"duration": 10}).json()["data"]["task_id"])
    stats = httpx.get(f"{api}/v1/stats").json()["data"]
    assert stats["jobs"]["succeeded"] >= 1 and stats["avg_job_seconds"] > 0


def test_format_input_with_and_without_a_planner(api, planner_engine, tmp_path):
    assert httpx.post(f"{api}/format_input", json={"prompt": "x"}).status_code == 503
    manager = TaskManager(planner_engine, tmp_path)
    with LiveServer(create_app(planner_engine, manager, ApiSettings())) as server:
        body = httpx.post(f"{server.url}/format_input", timeout=120, json={
            "prompt": "lofi piano", "lyrics": "[Verse]\nrain", "param_obj": {"bpm": 90, "duration": 40}}).json()
        bad = httpx.post(f"{server.url}/format_input", json={"prompt": "x", "param_obj": {"bpm": 5000}})
    assert body["code"] == 200 and body["data"]["bpm"] == 90 and body["data"]["duration"] == 40.0
    assert set(body["data"]) == {"caption", "lyrics", "bpm", "key_scale", "time_signature", "duration",
                                 "vocal_language"}
    assert bad.status_code == 400 and "bpm" in bad.json()["detail"]


@pytest.fixture(scope="module")
def planner_api(planner_engine, tmp_path_factory):
    manager = TaskManager(planner_engine, planner_engine.settings.output_dir, maxsize=5).start()
    with LiveServer(create_app(planner_engine, manager, ApiSettings())) as server:
        yield server.url
    manager.stop()


def test_no_request_makes_a_server_error(planner_api):
    """schemathesis generates requests from the app's own OpenAPI schema: none may be answered 5xx
    (against a server with the planner, so /format_input really runs)."""
    from hypothesis import given
    from hypothesis import strategies as st

    api = planner_api
    schema = schemathesis.openapi.from_url(f"{api}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/release_task", "/query_result", "/format_input", "/v1/audio"}
    for operation in operations:
        strategy = operation.as_strategy()

        @hypothesis_settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(data=st.data())
        def check(data):
            case = data.draw(strategy)
            response = case.call(base_url=api, timeout=60)
            assert response.status_code < 500, (operation.path, case.body, response.status_code, response.text[:300])

        check()
