"""Undeliverable serverless jobs are refused before the engine runs, and an omitted song never points a
serverless caller at a file."""

import base64

import pytest

from acestep_worker.delivery.inline import inline_bytes
from acestep_worker.doors import serverless
from acestep_worker.errors import InputError

from ..support.audio import wav


def _never(*args, **kwargs):
    raise AssertionError("generation started for an undeliverable job")


def test_the_job_is_refused_before_the_engine_runs(engine, monkeypatch):
    monkeypatch.setattr(engine, "run", _never)
    with pytest.raises(InputError, match="as wav would be about"):
        serverless.run_job(engine, "job-big", {"duration": 60, "audio_format": "wav", "return_audio_base64": True},
                     env={})


def test_an_omitted_song_never_points_a_serverless_caller_at_file(engine):
    predicted = inline_bytes("flac", 10, 1)  # below the tiny model's noise, which FLAC cannot shrink
    out = serverless.run_job(engine, "job-omit", {"duration": 10, "return_audio_base64": True, "audio_format": "flac",
                                            "max_base64_bytes": predicted + 1}, env={})
    reason = out["results"][0]["base64_omitted"]
    assert "bucket" in reason and "`file`" not in reason


def test_codes_that_make_a_long_song_are_refused_for_their_length_not_the_duration(engine, monkeypatch):
    """`duration: 10` with codes for 10 minutes: the codes set the length, so 10 minutes of WAV is what
    would have to fit inline; the job is refused before it runs, naming what would work."""
    monkeypatch.setattr(engine, "run", _never)
    codes = "".join(f"<|audio_code_{n % 64000}|>" for n in range(3000))
    with pytest.raises(InputError) as refused:
        serverless.run_job(engine, "job-codes", {"duration": 10, "audio_code_string": codes, "audio_format": "wav",
                                           "return_audio_base64": True}, env={})
    message = str(refused.value)
    assert "a song of 600 s (the length of its audio codes) as wav" in message
    assert "an audio_code_string of at most 155 codes (31 s)" in message and "duration" not in message


def test_a_source_longer_than_the_duration_is_refused_for_its_own_length_before_generating(engine, monkeypatch):
    """A cover keeps its source's length: 20 s of WAV is predicted once the source is decoded (and
    refused before any GPU time), not the 10 s that `duration` says."""
    monkeypatch.setattr(engine, "run", _never)
    source = "data:audio/wav;base64," + base64.b64encode(wav(48_000, 20.0)).decode()
    with pytest.raises(InputError) as refused:
        serverless.run_job(engine, "job-source", {"task_type": "cover", "src_audio": source, "duration": 10,
                                            "audio_format": "wav", "return_audio_base64": True,
                                            "max_base64_bytes": 4_000_000}, env={})
    assert "a song of 20 s (the length of its source song) as wav" in str(refused.value)
    assert "a source song of at most 15 s" in str(refused.value)
