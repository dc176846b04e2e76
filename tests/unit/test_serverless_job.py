"""A serverless job's response size and progress throttling, without a model."""

import json

from acestep_worker.doors import serverless
from acestep_worker.doors.serverless import RESPONSE_LIMIT_BYTES, ThrottledProgress
from acestep_worker.pipeline.engine import Progress


def test_response_never_exceeds_runpods_limit():
    output = {"results": [{"audio_base64": "x" * 12_000_000}, {"audio_base64": "y" * 12_000_000}]}
    serverless._fit_response(output)
    assert len(json.dumps(output)) <= RESPONSE_LIMIT_BYTES
    assert "audio_base64" in output["results"][0] and "base64_omitted" in output["results"][1]


def test_throttle_interval_with_a_fake_clock():
    now = {"t": 0.0}
    sent = []
    throttle = ThrottledProgress(sent.append, 3.0, clock=lambda: now["t"])
    for step in range(1, 8):
        now["t"] = step * 1.0
        throttle(Progress("diffusion", step, 8, step / 8))
    assert [u["step"] for u in sent] == [1, 4, 7]
    now["t"] = 100.0
    throttle(Progress("diffusion", 8, 8, 0.9))
    throttle(Progress("vae_decode", 0, 1, 0.9))
    assert len(sent) == 3


def test_planner_stages_report_progress_too():
    now = {"t": 0.0}
    sent = []
    throttle = ThrottledProgress(sent.append, 1.0, clock=lambda: now["t"])
    for step, stage in enumerate(["planning", "audio_codes", "audio_codes"], 1):
        now["t"] = step * 2.0
        throttle(Progress(stage, step, 3, step / 10))
    assert [u["stage"] for u in sent] == ["planning", "audio_codes", "audio_codes"]
