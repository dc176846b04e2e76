"""Fuzzing the pod's HTTP API with generated bodies and audio names over real HTTP: none is a server error.

CI runs a few hundred; the full run (figures in the README's reliability section) is
    ACESTEP_FUZZ_BODIES=2000 pytest tests/e2e/test_api_fuzz.py
"""

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acestep_worker.doors.pod.api import ApiSettings, create_app
from acestep_worker.doors.pod.queue import TaskManager

from ..support.fuzz import ALIASES, FIELDS, shallow_hostile
from ..support.live_server import LiveServer

FUZZ_BODIES = int(os.environ.get("ACESTEP_FUZZ_BODIES", "200"))


nested = st.recursive(st.one_of(st.none(), st.integers(), st.text(max_size=10)),
                      lambda children: st.lists(children, max_size=3) | st.dictionaries(
                          st.text(max_size=5), children, max_size=3), max_leaves=20)


def _body_text(fields: dict, deep_text: str | None) -> str:
    text = json.dumps(fields, default=repr)  # NaN and infinities go out as JSON's NaN/Infinity tokens
    if deep_text is not None and text.endswith("}"):
        text = text[:-1] + (", " if fields else "") + f'"param_obj": {deep_text}' + "}"
    return text


body_fields = st.dictionaries(st.sampled_from(FIELDS + ALIASES + ["param_obj", "metas", "task_id_list", "task_id",
                                                                 "ai_token", "bogus"]),
                              st.one_of(shallow_hostile, nested, st.floats(allow_nan=True, allow_infinity=True),
                                        st.sampled_from(["10", "{", "[1]", "", "null", '{"duration": 5}'])),
                              max_size=6)


@pytest.fixture(scope="module")
def fuzz_api(engine, tmp_path_factory):
    manager = TaskManager(engine, tmp_path_factory.mktemp("fuzz-api"), maxsize=10**6)  # never started: no GPU work
    with LiveServer(create_app(engine, manager, ApiSettings())) as server:
        yield server.url


@settings(max_examples=FUZZ_BODIES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(path=st.sampled_from(["/release_task", "/query_result", "/cancel_task", "/format_input", "/v1/create_sample",
                             "/v1/chat/completions"]), fields=body_fields,
       deep_levels=st.one_of(st.none(), st.integers(1, 120_000)),
       content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", None]))
def test_generated_api_bodies_never_make_a_server_error(fuzz_api, path, fields, deep_levels, content_type):
    import httpx

    deep_text = None if deep_levels is None else "[" * deep_levels + "]" * deep_levels
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.post(fuzz_api + path, content=_body_text(fields, deep_text).encode("utf-8", "surrogatepass"),
                          headers=headers, timeout=60)
    no_planner = path in ("/format_input", "/v1/create_sample") and response.status_code == 503  # none, on purpose
    assert response.status_code < 500 or no_planner, (path, response.status_code, response.text[:300])
    assert len(response.content) < 200_000


@settings(max_examples=max(20, FUZZ_BODIES // 10), deadline=None, suppress_health_check=list(HealthCheck),
          database=None)
@given(name=st.one_of(st.text(max_size=300), st.just("a" * 5000), st.just("../" * 2000), st.just("\x00")),
       query=st.sampled_from(["filename", "path"]))
def test_generated_audio_names_never_make_a_server_error(fuzz_api, name, query):
    import httpx

    response = httpx.get(f"{fuzz_api}/v1/audio", params={query: name}, timeout=30)
    assert response.status_code < 500, (name[:80], response.status_code)
