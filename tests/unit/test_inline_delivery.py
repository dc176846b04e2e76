"""Undeliverable serverless jobs are refused before any compute, with what would work instead."""

import numpy as np
import pytest

from acestep_worker.audio.encode import encode
from acestep_worker.delivery.inline import base64_size, check_deliverable, encoded_bytes, inline_bytes
from acestep_worker.doors import serverless
from acestep_worker.errors import InputError
from acestep_worker.models.variants import detect_variant
from acestep_worker.pipeline.plan import EngineFacts, resolve
from acestep_worker.schema.request import JobRequest, parse

LIMIT = serverless.RESPONSE_LIMIT_BYTES - serverless.RESPONSE_MARGIN_BYTES


def _check(has_bucket=False, **fields):
    request = parse({"return_audio_base64": True, **fields}, JobRequest)
    check_deliverable(request, request.duration, "duration", has_bucket=has_bucket, response_limit=LIMIT)


def test_a_60_second_wav_without_a_bucket_is_refused_with_what_works():
    with pytest.raises(InputError) as refused:
        _check(duration=60, audio_format="wav")
    message = str(refused.value)
    assert refused.value.field == "return_audio_base64"
    assert "a song of 60 s as wav would be about 15.4 MB of base64, more than max_base64_bytes=8,000,000" in message
    assert "bucket" in message and "audio_format opus or mp3" in message
    assert "a duration of at most 31 s" in message
    assert "`file`" not in message


def test_mp3_fits_up_to_about_four_minutes():
    _check(duration=240, audio_format="mp3")
    with pytest.raises(InputError, match=r"a duration of at most 249 s"):
        _check(duration=260, audio_format="mp3")


def test_a_batch_too_big_is_told_the_batch_size_that_fits():
    with pytest.raises(InputError, match=r"4 songs of 120 s as mp3 .*, or batch_size 2$"):
        _check(duration=120, batch_size=4)


def test_the_response_limit_binds_when_it_is_below_max_base64_bytes():
    request = parse({"return_audio_base64": True, "duration": 200, "max_base64_bytes": 15_000_000}, JobRequest)
    check_deliverable(request, 200, "duration", has_bucket=False, response_limit=LIMIT)  # 6.4 MB: fits both
    with pytest.raises(InputError, match="more than Runpod's response limit of 5,000,000 bytes allows"):
        check_deliverable(request, 200, "duration", has_bucket=False, response_limit=5_000_000)


@pytest.mark.parametrize("fields,has_bucket", [
    ({"duration": 600, "audio_format": "wav32", "batch_size": 8}, True),  # a bucket takes anything
    ({"duration": 600, "audio_format": "wav32", "return_audio_base64": False}, False),  # not asked inline
    ({"duration": 30, "audio_format": "flac"}, False),
])
def test_deliverable_jobs_pass(fields, has_bucket):
    _check(has_bucket=has_bucket, **fields)


def _length(planner_loaded: bool, **fields):
    facts = EngineFacts(detect_variant("acestep-v15-base", {}), {"acestep-v15-base": "base"}, planner_loaded)
    return resolve(parse(fields, JobRequest), facts).length


def test_the_duration_is_known_unless_the_planner_or_a_source_decides_it():
    assert (_length(False).source, _length(False).seconds) == ("default", 30.0)
    assert (_length(True).source, _length(True).seconds) == ("planner", None)  # the planner's CoT picks it
    assert (_length(True, duration=75).source, _length(True, duration=75).seconds) == ("duration", 75.0)
    assert _length(True, use_cot_metas=False).seconds == 30.0
    assert _length(True, task_type="cover", src_audio="https://example.com/a.wav", duration=10).source == "source"
    codes = _length(True, duration=10, audio_code_string="<|audio_code_1|>" * 3000)  # 3000 codes: 600 s
    assert (codes.source, codes.seconds) == ("codes", 600.0)


def _test_signal(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(48_000 * seconds)) / 48_000
    tones = sum(0.08 * np.sin(2 * np.pi * f * t) for f in (110, 220, 330, 440, 660))
    mono = tones + 0.03 * rng.standard_normal(t.size)
    return np.stack([mono, np.roll(mono, 100)], axis=1).astype(np.float32)


@pytest.mark.parametrize("fmt", ["mp3", "wav", "wav32"])
def test_constant_rate_predictions_match_the_encoder(fmt):
    actual = len(encode(_test_signal(12), 48_000, fmt))
    assert abs(encoded_bytes(fmt, 12) - actual) < 0.01 * actual + 4_096


@pytest.mark.parametrize("fmt", ["flac", "ogg", "opus"])
def test_variable_rate_predictions_never_overstate(fmt):
    """A low estimate: a job is refused only when even the smallest plausible file would not fit."""
    assert encoded_bytes(fmt, 12) <= len(encode(_test_signal(12), 48_000, fmt))
    assert inline_bytes(fmt, 12, 2) == 2 * base64_size(encoded_bytes(fmt, 12))

