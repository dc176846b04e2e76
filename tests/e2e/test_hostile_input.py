"""Hostile input over the pod's HTTP API is a 4xx with one bounded sentence: deep JSON anywhere, invalid
nested JSON, too many or impossible ids, over-long names, files that are not audio."""

import json

import httpx
import pytest

from acestep_worker.doors.pod.api import MAX_QUERY_IDS, ApiSettings, create_app
from acestep_worker.doors.pod.queue import TaskManager

from ..support.live_server import LiveServer


def deep(levels: int, leaf=1):
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


# -- the HTTP API ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def api(engine):
    manager = TaskManager(engine, engine.settings.output_dir, maxsize=20, ttl_s=3600)  # never started
    with LiveServer(create_app(engine, manager, ApiSettings())) as server:
        yield server.url


def _post_json(api, path, text):
    return httpx.post(f"{api}{path}", content=text, headers={"content-type": "application/json"}, timeout=60)


@pytest.mark.parametrize("body", [
    "[" * 100_000 + "]" * 100_000,
    '{"caption": ' + "[" * 995 + "]" * 995 + "}",
    '{"caption": ' + "[" * 50_000 + "]" * 50_000 + "}",
    json.dumps({"param_obj": "[" * 50_000 + "]" * 50_000}),
    json.dumps({"param_obj": {"caption": deep(900)}}),
    json.dumps({"task_id_list": "[" * 50_000 + "]" * 50_000}),
])
@pytest.mark.parametrize("path", ["/release_task", "/query_result"])
def test_deep_json_anywhere_is_a_400(api, body, path):
    response = _post_json(api, path, body)
    assert response.status_code == 400 if path == "/release_task" else response.status_code < 500
    assert len(response.text) < 5_000


@pytest.mark.parametrize("field", ["param_obj", "metas"])
def test_invalid_nested_json_is_refused_naming_the_field(api, field):
    response = httpx.post(f"{api}/release_task", json={"caption": "x", field: "{not json"})
    assert response.status_code == 400 and field in response.json()["detail"]
    response = httpx.post(f"{api}/release_task", json={"caption": "x", field: "[1, 2]"})
    assert response.status_code == 400 and field in response.json()["detail"]
    assert httpx.get(f"{api}/v1/stats").json()["data"]["jobs"]["total"] == 0  # nothing was queued


def test_query_result_caps_the_ids_per_call(api):
    too_many = httpx.post(f"{api}/query_result", json={"task_id_list": [str(i) for i in range(200_000)]})
    assert too_many.status_code == 400 and f"at most {MAX_QUERY_IDS}" in too_many.json()["detail"]
    for bad in ([{"a": 1}], {"a": 1}, [True], "[not json"):
        assert httpx.post(f"{api}/query_result", json={"task_id_list": bad}).status_code == 400, bad
    unknown = httpx.post(f"{api}/query_result", json={"task_id_list": ["f" * 32]}).json()["data"][0]
    assert unknown["status"] == 2 and "not found" in unknown["error"]


@pytest.mark.parametrize("bad_id", ["x" * 100_000, r"\ud800", r"a\u0000b"])  # as JSON text: escapes stay escapes
def test_query_result_refuses_an_id_no_task_can_have_instead_of_echoing_it(api, bad_id):
    # Found by the 2,000-body fuzz: a lone surrogate echoed back was a 500, a 1 MB id a 1 MB answer.
    body = ('{"task_id_list": ["abc", "%s"]}' % bad_id).encode()
    response = httpx.post(f"{api}/query_result", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and len(response.text) < 1_000
    assert "task_id_list[1] cannot be a task id" in response.json()["detail"]


def test_a_huge_model_name_is_a_short_400(api):
    response = httpx.post(f"{api}/release_task", json={"model": "m" * 1_000_000, "duration": 10, "bpm": 5})
    assert response.status_code == 400 and len(response.text) < 1_000


@pytest.mark.parametrize("name", ["a" * 256 + ".mp3", "a/" * 2100 + "x.mp3", "é" * 200 + ".mp3",
                                  ("a" * 250 + "/") * 20 + "b.mp3"])
def test_over_long_audio_names_are_4xx(api, name):
    for query in ("filename", "path"):
        response = httpx.get(f"{api}/v1/audio", params={query: name})
        assert 400 <= response.status_code < 500, (query, response.status_code)


def test_only_audio_is_served(api, engine):
    output = engine.settings.output_dir
    output.mkdir(parents=True, exist_ok=True)
    (output / "notes.txt").write_text("private")
    (output / "song.mp3").write_bytes(b"ID3 fake")
    try:
        assert httpx.get(f"{api}/v1/audio", params={"filename": "notes.txt"}).status_code == 404
        served = httpx.get(f"{api}/v1/audio", params={"filename": "song.mp3"})
        assert served.status_code == 200 and served.headers["content-type"] == "audio/mpeg"
    finally:
        (output / "notes.txt").unlink()
        (output / "song.mp3").unlink()
