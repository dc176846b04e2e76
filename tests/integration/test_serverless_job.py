"""A serverless job on the tiny checkpoints: files, checksums, base64, deadlines, progress, and audio inputs
sent inline (base64, data URIs); refusals come back as {"error": sentence} before any generation."""

import base64
import hashlib
import json
import threading

import pytest

from acestep_worker.audio.encode import decode
from acestep_worker.doors import serverless
from acestep_worker.doors.serverless import run_job
from acestep_worker.errors import GenerationCancelled, InputError
from acestep_worker.runner.deadline import JobTimedOut

from ..support.audio import B64, WAV, WAV_SHA


def _audio_job(engine, **fields):
    return run_job(engine, "job-audio", {"caption": "test", "duration": 10, **fields}, env={})


def test_base64_and_data_uri_sources_are_decoded_and_reported(engine):
    out = _audio_job(engine, src_audio=B64, reference_audio="data:audio/wav;base64," + B64)
    assert out["status"] == "completed" and out["task_type"]
    for key, field in (("source", "src_audio"), ("reference", "reference_audio")):
        assert out[key] == {"field": field, "duration_s": 1.0, "sha256": WAV_SHA, "bytes": len(WAV),
                            "format": "wav", "sample_rate": 48_000, "channels": 2}
    assert "audio_input" in out["timings"]


def test_bad_audio_is_an_error_sentence_naming_the_field(handler_module):
    out = handler_module.handle({"id": "bad", "input": {"reference_audio": base64.b64encode(b"no audio" * 99).decode()}})
    assert set(out) == {"error"} and out["error"].startswith("reference_audio is not audio")


def test_a_source_that_codes_replace_is_neither_fetched_nor_used_and_is_reported_unused(engine):
    codes = "".join(f"<|audio_code_{n}|>" for n in range(0, 64_000, 3_000))  # 22 codes: 110 frames
    # Not base64, not a URL this worker may fetch: any attempt to load it would fail the job.
    out = _audio_job(engine, task_type="cover", audio_code_string=codes, src_audio="https://127.0.0.1:9/song.wav")
    assert out["status"] == "completed" and "source" not in out
    assert "audio codes" in out["params"]["unused"]["src_audio"]
    plain = _audio_job(engine, task_type="cover", src_audio=B64)
    assert "src_audio" not in plain["params"].get("unused", {})


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


def test_timeout_stops_the_engine_and_the_next_job_runs(engine, monkeypatch):
    clock = {"t": 0.0}

    def fake_monotonic():
        clock["t"] += 0.5  # every look at the clock costs half a second of "work"
        return clock["t"]

    monkeypatch.setattr(serverless.time, "monotonic", fake_monotonic)
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
