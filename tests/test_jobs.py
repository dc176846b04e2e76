"""A serverless job end to end on the tiny checkpoints: files, checksums, base64, deadlines, progress."""

import base64
import hashlib
import json
import threading

import pytest

from acestep_worker.audio.encode import decode
from acestep_worker.doors import serverless as jobs
from acestep_worker.doors.serverless import RESPONSE_LIMIT_BYTES, ThrottledProgress, run_job
from acestep_worker.errors import GenerationCancelled, InputError
from acestep_worker.pipeline.engine import Progress
from acestep_worker.runner.deadline import JobTimedOut


def _run(engine, job_id="job-1", **fields):
    return run_job(engine, job_id, {"caption": "test", "duration": 10, **fields}, env={})


def test_output_shape_and_files_match_their_checksums(engine):
    out = _run(engine, seed=9, batch_size=2, bpm=100, key_scale="a minor")
    assert out["status"] == "completed" and out["task_id"] == "job-1" and out["batch_size"] == 2
    assert out["duration"] == 10.0 and out["random_weights"] is True
    assert [r["seed"] for r in out["results"]] == [9, 10]
    for result in out["results"]:
        path = engine.settings.output_dir / result["filename"]
        data = path.read_bytes()
        assert result["file"] == f"/v1/audio?filename={result['filename']}"
        assert result["bytes"] == len(data) and result["sha256"] == hashlib.sha256(data).hexdigest()
        assert (result["format"], result["content_type"]) == ("mp3", "audio/mpeg")
        assert (result["bpm"], result["key_scale"], result["caption"]) == (100, "A minor", "test")
        assert "audio_base64" not in result
    assert {"diffusion", "vae_decode", "encode", "total"} <= set(out["timings"])
    assert out["params"]["inference_steps"] == 8
    json.dumps(out)  # the whole output is JSON


def test_base64_alone_decodes_to_a_playable_file(engine):
    out = _run(engine, return_audio_base64=True, audio_format="flac")
    result, = out["results"]
    data = base64.b64decode(result["audio_base64"])
    assert hashlib.sha256(data).hexdigest() == result["sha256"]
    audio, rate = decode(data)
    assert rate == 48000 and audio.shape == (480000, 2)


def test_aac_job_writes_m4a_files_served_as_audio_mp4(engine):
    out = _run(engine, seed=2, batch_size=2, audio_format="aac")
    for result in out["results"]:
        assert result["filename"].endswith(".m4a")
        assert (result["format"], result["content_type"]) == ("aac", "audio/mp4")
        audio, rate = decode((engine.settings.output_dir / result["filename"]).read_bytes())
        assert rate == 48000 and audio.shape[1] == 2 and abs(audio.shape[0] - 480000) <= 2048


def test_base64_budget_is_respected_in_order(engine):
    """FLAC's size is predicted low (music compresses; the tiny model's noise does not), so this
    batch passes the up-front check and the budget is applied song by song after encoding."""
    first = _run(engine, seed=1, return_audio_base64=True, audio_format="flac")
    one_song = len(first["results"][0]["audio_base64"])
    out = _run(engine, seed=1, batch_size=2, return_audio_base64=True, audio_format="flac",
               max_base64_bytes=int(one_song * 1.5))
    a, b = out["results"]
    assert "audio_base64" in a and "base64_omitted" in b and "audio_base64" not in b
    assert "max_base64_bytes" in b["base64_omitted"]


def test_response_never_exceeds_runpods_limit():
    output = {"results": [{"audio_base64": "x" * 12_000_000}, {"audio_base64": "y" * 12_000_000}]}
    jobs._fit_response(output)
    assert len(json.dumps(output)) <= RESPONSE_LIMIT_BYTES
    assert "audio_base64" in output["results"][0] and "base64_omitted" in output["results"][1]


def test_timeout_stops_the_engine_and_the_next_job_runs(engine, monkeypatch):
    clock = {"t": 0.0}

    def fake_monotonic():
        clock["t"] += 0.5  # every look at the clock costs half a second of "work"
        return clock["t"]

    monkeypatch.setattr(jobs.time, "monotonic", fake_monotonic)
    with pytest.raises(JobTimedOut, match=r"timed out after 2 s"):
        _run(engine, timeout_seconds=2)
    monkeypatch.undo()
    assert _run(engine)["status"] == "completed"


def test_cancel_event_stops_the_job(engine):
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(GenerationCancelled):
        run_job(engine, "c", {"duration": 10}, cancelled=cancelled, env={})


def test_progress_is_throttled_and_stops_before_the_end(engine):
    updates = []
    run_job(engine, "p", {"duration": 10, "poll_interval": 0.5}, send_progress=updates.append, env={})
    assert updates, "a job should report progress"
    assert all(u["stage"] in {"text_encoding", "conditioning", "diffusion"} for u in updates)
    assert all(not (u["stage"] == "diffusion" and u["step"] == u["total_steps"]) for u in updates)
    assert set(updates[0]) == {"stage", "step", "total_steps", "percent", "elapsed_s"}


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


def test_invalid_input_is_one_sentence(engine):
    with pytest.raises(InputError, match="max_base64_bytes must be an integer from 0 to 15000000"):
        _run(engine, max_base64_bytes=-5)
    with pytest.raises(InputError, match="timeout_seconds must be seconds from 1 to 86400"):
        _run(engine, timeout_seconds=0)


def test_job_ids_become_safe_file_names(engine):
    out = _run(engine, job_id="../../etc/passwd x")
    name = out["results"][0]["filename"]
    assert name.startswith("etc_passwd_x-") and name.endswith("-1.mp3") and "/" not in name
    assert (engine.settings.output_dir / name).is_file()


def test_planner_stages_report_progress_too():
    now = {"t": 0.0}
    sent = []
    throttle = ThrottledProgress(sent.append, 1.0, clock=lambda: now["t"])
    for step, stage in enumerate(["planning", "audio_codes", "audio_codes"], 1):
        now["t"] = step * 2.0
        throttle(Progress(stage, step, 3, step / 10))
    assert [u["stage"] for u in sent] == ["planning", "audio_codes", "audio_codes"]
