"""The malformed-adapter corpus (issue #18) through the doors: every hostile adapter of
tests/support/hostile_loras.py, and generated ones, sent as a serverless job (the real handler) and to the
pod's `/release_task` and `/v1/lora/load` over HTTP. Each is one sentence naming the entry (the job's
`loras[i]`), a serverless `{"error"}` and a pod 400; never an uncaught exception, never a 500. Part of the
fuzz run in CI: the corpus is refused before any model runs, so it takes seconds."""

import json
import os
import sys

import httpx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from ..support import hostile_loras
from ..support.pod import serve_api
from ..support.repo import REPO

BASE = {"duration": 10, "seed": 3, "inference_steps": 2, "caption": "adapter corpus"}
FILE_CASES = [case for case in hostile_loras.CASES if case[0] != "scale-400-digits"]


@pytest.fixture(scope="module")
def corpus_engine(tiny_env, hostile_lora_dir, tmp_path_factory):
    from acestep_worker.pipeline.engine import Engine
    from acestep_worker.settings import Settings

    return Engine(Settings.from_env({**tiny_env, "ACESTEP_LORA_DIR": str(hostile_lora_dir),
                                     "ACESTEP_LORA_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}))


@pytest.fixture(scope="module")
def handle(corpus_engine, tiny_env):
    """The root handler.py's `handle`, over the corpus engine."""
    os.environ.update(tiny_env)
    sys.path.insert(0, str(REPO))
    import handler

    saved = handler._engine, handler._load_error
    handler._engine, handler._load_error = corpus_engine, None
    yield handler.handle
    handler._engine, handler._load_error = saved


@pytest.fixture(scope="module")
def pod(corpus_engine):
    from acestep_worker.doors.pod.queue import TaskManager

    manager = TaskManager(corpus_engine, corpus_engine.settings.output_dir, maxsize=50, ttl_s=3600).start()
    try:
        with serve_api(corpus_engine, manager) as url:
            with httpx.Client(base_url=url, timeout=60) as client:
                yield client
    finally:
        manager.stop()


def _one_sentence(text: str) -> None:
    assert "\n" not in text and "Traceback" not in text and len(text) < 600, text


@pytest.mark.parametrize("case,entry,fragment", hostile_loras.CASES, ids=[c[0] for c in hostile_loras.CASES])
def test_a_serverless_job_refuses_each_hostile_adapter(handle, case, entry, fragment):
    output = handle({"id": f"corpus-{case}", "input": {**BASE, "loras": [{"name": "h-good"}, entry]}})
    assert set(output) == {"error"}, output
    assert output["error"].startswith("loras[1]") and fragment in output["error"], output["error"]
    _one_sentence(output["error"])


@pytest.mark.parametrize("case,entry,fragment", hostile_loras.CASES, ids=[c[0] for c in hostile_loras.CASES])
def test_release_task_refuses_each_hostile_adapter_at_submission(pod, case, entry, fragment):
    answer = pod.post("/release_task", json={**BASE, "loras": [{"name": "h-good"}, entry]})
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "loras[1]" and fragment in answer.json()["detail"], answer.json()
    _one_sentence(answer.json()["detail"])


@pytest.mark.parametrize("case,entry,fragment", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_lora_load_refuses_each_hostile_adapter(pod, case, entry, fragment):
    answer = pod.post("/v1/lora/load", json={"lora_path": entry.get("name") or entry["path"], "adapter_name": "x"})
    assert answer.status_code == 200, answer.text  # upstream's shape: failures are code 400 inside
    body = answer.json()
    assert body["code"] == 400 and body["error"].startswith("adapter 'x'") and fragment in body["error"], body
    _one_sentence(body["error"])
    assert pod.get("/v1/lora/status").json()["data"]["adapters"] == []  # nothing was kept


# -- generated adapters ------------------------------------------------------------------------------

_A, _B = f"{hostile_loras.PEFT_KEY}.lora_A.weight", f"{hostile_loras.PEFT_KEY}.lora_B.weight"
_KEYS = [_A, _B, f"{hostile_loras.PEFT_KEY}.alpha", f"{hostile_loras.PEFT_KEY}.lora_magnitude_vector",
         "lycoris_layers_0_self_attn_q_proj.lokr_w1", "lycoris_layers_0_self_attn_q_proj.lokr_w2_a",
         "lycoris_layers_0_self_attn_q_proj.hada_w1_a", "lora_unet_layers_0_self_attn_q_proj.dora_scale"]
_shape = st.one_of(st.just([]), st.lists(st.sampled_from([0, 1, 2, 3, 64, 65]), max_size=3))
_fill = st.sampled_from([0.1, -1.0, 0.0, float("nan"), float("inf"), 1e38])
# a good rank-2 pair on q_proj, with some of its tensors replaced or added: most examples reach the config
_tensors = st.dictionaries(st.sampled_from(_KEYS), st.tuples(_shape, _fill), max_size=2).map(
    lambda changed: {_A: ([2, 64], 0.1), _B: ([64, 2], 0.1), **changed})
_configs = st.one_of(st.none(), st.fixed_dictionaries({}, optional={
    "peft_type": st.sampled_from(["LORA", "LOKR", "LOHA", "OFT", 3, None]),
    "r": st.one_of(st.integers(-2, 4), st.text(max_size=3), st.none(), st.floats()),
    "lora_alpha": st.one_of(st.integers(-10**20, 10**20), st.floats(), st.text(max_size=3), st.none()),
    "alpha_pattern": st.one_of(st.dictionaries(st.sampled_from(["q_proj", "(", ".*", "[", "a{99999}"]),
                                               st.one_of(st.integers(), st.floats(), st.text(max_size=2))),
                               st.lists(st.integers(), max_size=2), st.text(max_size=3)),
    "use_rslora": st.one_of(st.booleans(), st.integers(0, 2))}))


@settings(max_examples=int(os.environ.get("ACESTEP_FUZZ_ADAPTERS", "40")), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(tensors=_tensors, config=_configs)
def test_generated_adapters_are_an_answer_never_a_crash(hostile_lora_dir, handle, pod, tensors, config):
    folder = hostile_lora_dir / "generated"
    folder.mkdir(exist_ok=True)
    save_file({key: torch.full(shape, fill) for key, (shape, fill) in tensors.items()},
              str(folder / "adapter_model.safetensors"))
    config_file = folder / "adapter_config.json"
    config_file.unlink(missing_ok=True)
    if config is not None:
        config_file.write_text(json.dumps(config))
    loaded = pod.post("/v1/lora/load", json={"lora_path": "generated", "adapter_name": "g"}).json()
    assert loaded["code"] in (200, 400), loaded
    if loaded["code"] == 400:
        _one_sentence(loaded["error"])
        output = handle({"id": "generated", "input": {**BASE, "loras": [{"name": "generated"}]}})
        assert output["error"].startswith("loras[0]"), output  # the same adapter is refused by a job too
        _one_sentence(output["error"])
    pod.post("/v1/lora/unload", json={})


def test_lora_load_reads_and_refuses_without_waiting_for_the_running_job(pod, corpus_engine):
    """/v1/lora/load reads and checks the adapter before it takes the engine's lock: a bad adapter is
    refused while a job holds the accelerator (it waited for the job before)."""
    with corpus_engine.models.lock:  # a job is generating
        try:
            answer = pod.post("/v1/lora/load", json={"lora_path": "h-nan", "adapter_name": "x"}, timeout=10).json()
        except httpx.TimeoutException:
            answer = {"code": "waited for the lock"}
    assert answer["code"] == 400 and "holds NaN or infinite values" in answer["error"], answer
