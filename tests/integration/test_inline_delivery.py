"""Undeliverable serverless jobs are refused before the engine runs, and an omitted song never points a
serverless caller at a file."""

import pytest

from acestep_worker.delivery.inline import inline_bytes
from acestep_worker.doors import serverless as jobs
from acestep_worker.errors import InputError


def test_the_job_is_refused_before_the_engine_runs(engine, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("generation started for an undeliverable job")

    monkeypatch.setattr(engine, "generate", never)
    with pytest.raises(InputError, match="as wav would be about"):
        jobs.run_job(engine, "job-big", {"duration": 60, "audio_format": "wav", "return_audio_base64": True},
                     env={})


def test_an_omitted_song_never_points_a_serverless_caller_at_file(engine):
    predicted = inline_bytes("flac", 10, 1)  # below the tiny model's noise, which FLAC cannot shrink
    out = jobs.run_job(engine, "job-omit", {"duration": 10, "return_audio_base64": True, "audio_format": "flac",
                                            "max_base64_bytes": predicted + 1}, env={})
    reason = out["results"][0]["base64_omitted"]
    assert "bucket" in reason and "`file`" not in reason
