"""Upstream's current API surface over the pod's HTTP API: upstream's request examples replayed, unused
fields reported, model-dependent checks at submission, and the newer endpoints."""

import httpx
import pytest

from acestep_worker.doors.pod.api import ApiSettings, create_app
from acestep_worker.doors.pod.queue import TaskManager

from ..support.live_server import LiveServer
from ..support.upstream_api import DOC_FIELDS, PENDING_ELSEWHERE

KEY = "k3y"


@pytest.fixture(scope="module")
def idle_api(engine, tmp_path_factory):
    """A server whose queue is never drained: submissions are checked and queued, nothing runs."""
    manager = TaskManager(engine, tmp_path_factory.mktemp("out"))
    with LiveServer(create_app(engine, manager, ApiSettings())) as server:
        yield server.url, manager


@pytest.fixture(scope="module")
def planner_api(planner_engine, tmp_path_factory):
    manager = TaskManager(planner_engine, tmp_path_factory.mktemp("out"))
    with LiveServer(create_app(planner_engine, manager, ApiSettings(api_key=KEY))) as server:
        yield server.url


def test_pod_reports_unused_fields_in_the_envelope_extra(idle_api):
    api, _ = idle_api
    body = httpx.post(f"{api}/release_task", json={"caption": "x", "lm_repetition_penalty": 1.1,
                                                  "use_tiled_decode": False}).json()
    assert body["code"] == 200
    assert set(body["extra"]["unused"]) == {"use_tiled_decode"}
    assert httpx.post(f"{api}/release_task", json={"caption": "x"}).json()["extra"] is None


def test_model_dependent_values_are_refused_at_submission(idle_api):
    api, manager = idle_api
    before = manager.stats()["jobs"]["total"]
    turbo = httpx.post(f"{api}/release_task", json={"caption": "x", "inference_steps": 20})
    assert turbo.status_code == 400 and turbo.json()["field"] == "inference_steps"
    assert "between 1 and 8 for turbo model 'acestep-v15-turbo'" in turbo.json()["detail"]
    base = httpx.post(f"{api}/release_task", json={"inference_steps": 20, "model": "acestep-v15-base"})
    assert base.status_code == 200
    custom = httpx.post(f"{api}/release_task", json={"timesteps": "0.9,0.5", "model": "acestep-v15-base"})
    assert custom.status_code == 400 and custom.json()["field"] == "timesteps"
    missing = httpx.post(f"{api}/release_task", json={"model": "acestep-v99"})
    assert missing.status_code == 400 and missing.json()["field"] == "model"
    assert manager.stats()["jobs"]["total"] == before + 1  # only the valid one was queued


# -- upstream's request examples, replayed (item 12) ----------------------------------------------
# Each example of upstream's current API reference, restated from its documented fields.
DOC_EXAMPLES = {
    "basic": {"prompt": "upbeat pop song", "lyrics": "Hello world", "inference_steps": 8},
    "thinking": {"prompt": "upbeat pop song", "lyrics": "Hello world", "thinking": True, "lm_temperature": 0.85,
                 "lm_cfg_scale": 2.5},
    "description": {"sample_query": "a soft Bengali love song for a quiet evening", "thinking": True},
    "format": {"prompt": "pop rock", "lyrics": "[Verse 1]\nWalking down the street...", "use_format": True,
               "thinking": True},
    "model": {"prompt": "electronic dance music", "model": "acestep-v15-turbo", "thinking": True},
    "timesteps": {"prompt": "jazz piano trio", "timesteps": "0.97,0.76,0.615,0.5,0.395,0.28,0.18,0.085,0",
                  "thinking": True},
    "auth_in_body": {"ai_token": KEY, "prompt": "upbeat pop song"},
    "nested_metas": {"prompt": "city pop", "metas": {"bpm": 100, "keyscale": "Am", "timesignature": "4"}},
    "camel_case": {"caption": "ambient", "audioDuration": 30, "keyScale": "C Major", "timeSignature": "3",
                   "description": "calm ambient pads", "useFormat": False},
}


@pytest.mark.parametrize("name", list(DOC_EXAMPLES) + ["every_documented_field"])
def test_upstream_request_examples_are_accepted(planner_api, name):
    body = DOC_EXAMPLES.get(name) or {k: v for k, v in DOC_FIELDS.items() if k not in PENDING_ELSEWHERE}
    headers = {} if "ai_token" in body else {"Authorization": f"Bearer {KEY}"}
    response = httpx.post(f"{planner_api}/release_task", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "queued"
# -- the newer endpoints (item 11) ----------------------------------------------------------------
def test_health_reports_the_loaded_models(planner_api):
    data = httpx.get(f"{planner_api}/health").json()["data"]
    assert data["status"] == "ok" and data["models_initialized"] and data["llm_initialized"]
    assert data["loaded_model"] == "acestep-v15-turbo" and data["loaded_lm_model"] == "acestep-5Hz-lm-1.7B"


def test_models_list_keeps_the_openrouter_shape_and_adds_the_inventory(idle_api):
    api, _ = idle_api
    body = httpx.get(f"{api}/v1/models").json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert by_id["acestep/acestep-v15-turbo"]["supported_task_types"][0] == "text2music"
    assert by_id["acestep/acestep-v15-turbo"]["is_loaded"]
    assert body["default_model"] == "acestep-v15-turbo" and body["llm_initialized"] is False
    assert [m["name"] for m in body["lm_models"]] == ["acestep-5Hz-lm-1.7B"]  # installed, not loaded


def test_model_inventory_is_wrapped_and_needs_the_key(planner_api):
    assert httpx.get(f"{planner_api}/v1/model_inventory").status_code == 401
    data = httpx.get(f"{planner_api}/v1/model_inventory", headers={"Authorization": KEY}).json()["data"]
    assert {m["name"] for m in data["models"]} == {"acestep-v15-turbo", "acestep-v15-base"}
    assert data["lm_models"] == [{"name": "acestep-5Hz-lm-1.7B", "is_loaded": True}]


@pytest.mark.parametrize("sample_type,keys", [
    ("simple_mode", {"description", "instrumental", "vocal_language"}),
    ("custom_mode", {"think", "caption", "lyrics", "bpm", "duration", "keyscale", "language", "timesignature"}),
])
def test_random_sample_shapes_without_a_planner(idle_api, sample_type, keys):
    api, _ = idle_api
    body = httpx.post(f"{api}/create_random_sample", json={"sample_type": sample_type}).json()
    assert body["code"] == 200 and set(body["data"]) == keys


def test_random_sample_custom_mode_uses_the_planner(planner_api):
    body = httpx.post(f"{planner_api}/create_random_sample", json={"sample_type": "custom_mode", "ai_token": KEY},
                      timeout=300).json()
    assert body["code"] == 200 and body["data"]["think"] is True
    assert isinstance(body["data"]["caption"], str) and body["data"]["caption"]
    assert httpx.post(f"{planner_api}/create_random_sample", json={}).status_code == 401


def test_init_switches_the_dit_held_in_memory(tiny_env, tmp_path):
    from acestep_worker.pipeline.engine import Engine
    from acestep_worker.settings import Settings

    engine = Engine(Settings.from_env(tiny_env))
    manager = TaskManager(engine, tmp_path)
    with LiveServer(create_app(engine, manager, ApiSettings())) as server:
        body = httpx.post(f"{server.url}/v1/init", json={"model": "acestep-v15-base"}, timeout=120).json()
        assert body["code"] == 200 and body["data"]["loaded_model"] == "acestep-v15-base"
        loaded = {m["name"]: m["is_loaded"] for m in body["data"]["models"]}
        assert loaded == {"acestep-v15-base": True, "acestep-v15-turbo": False}
        assert httpx.get(f"{server.url}/health").json()["data"]["loaded_model"] == "acestep-v15-base"
        steps = httpx.post(f"{server.url}/release_task", json={"inference_steps": 20})
        assert steps.status_code == 200  # the base model now decides what is valid
        busy = httpx.post(f"{server.url}/v1/init", json={"model": "acestep-v15-turbo"})
        assert busy.status_code == 409 and "queued or running" in busy.json()["error"]
    bad_slot = _init(engine, {"slot": 2})
    assert bad_slot["code"] == 400 and "Slot 2" in bad_slot["error"]
    unknown = _init(engine, {"model": "acestep-v99"})
    assert unknown["code"] == 400 and "acestep-v99" in unknown["error"]
    with_lm = _init(engine, {"model": "acestep-v15-turbo", "init_llm": True, "lm_model_path": "acestep-5Hz-lm-1.7B"})
    assert with_lm["data"]["loaded_lm_model"] == "acestep-5Hz-lm-1.7B" and with_lm["data"]["llm_initialized"]


def _init(engine, body):
    manager = TaskManager(engine, engine.settings.output_dir)
    with LiveServer(create_app(engine, manager, ApiSettings())) as server:
        return httpx.post(f"{server.url}/v1/init", json=body, timeout=300).json()
