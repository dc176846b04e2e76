"""Fuzzing the handler with generated job inputs, valid and invalid.

Thousands of inputs run through the real handler, schema, delivery and output shaping. So that they
finish in seconds, generation is replayed: `ReplayEngine` validates each request against the real
loaded models (model names, variant step ranges) and returns songs cut from one real generation of
the tiny model. A smaller run then uses the real engine throughout. The inputs include deep nesting,
megabyte strings, NaN and infinities, huge integers, odd types, conflicting aliases and garbage `s3Config`s.

CI runs a few hundred; the full run (figures in the README's reliability section) is
    ACESTEP_FUZZ_JOBS=5000 pytest tests/integration/test_handler_fuzz.py
"""

import base64
import hashlib
import itertools
import json
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from acestep_worker.pipeline.generation import GenerationResult, Song
from acestep_worker.pipeline.sampling_plan import sampling_plan
from acestep_worker.schema.request import JobRequest

from ..support.fuzz import ALIASES, FIELDS, shallow_hostile

FUZZ_JOBS = int(os.environ.get("ACESTEP_FUZZ_JOBS", "300"))


class ReplayEngine:
    def __init__(self, engine):
        self.engine = engine
        self.settings = engine.settings
        # One real second of tiny-model audio: encoding it keeps thousands of examples fast.
        self.recorded = engine.generate(JobRequest(duration=10, seed=0)).songs[0].audio[:48000]

    def plan(self, request, seeds=None):
        return self.engine.plan(request, seeds)

    def run(self, plan, on_progress=None, should_stop=None, audio=None):
        request = plan.request
        dit = self.engine.models.dit(request.model)
        _, params = sampling_plan(request, plan.steps, dit.variant)
        songs = [Song(self.recorded, 48000, seed, 1.0) for seed in plan.seeds]
        params.update(caption=request.caption, lyrics=request.lyrics, instrumental=request.instrumental,
                      vocal_language=request.vocal_language, bpm=request.bpm, key_scale=request.key_scale,
                      time_signature=request.time_signature, requested_duration=request.duration,
                      seeds=[s.seed for s in songs])
        return GenerationResult(songs, dit.variant.name, True, params, {"total": 0.0})


@pytest.fixture(scope="module")
def handle(engine, handler_module_factory):
    return handler_module_factory(ReplayEngine(engine))


@pytest.fixture(scope="module")
def handler_module_factory(engine, tiny_env):
    import os
    import sys

    from ..support.repo import REPO

    os.environ.update(tiny_env)
    sys.path.insert(0, str(REPO))
    import handler

    def make(replacement):
        def call(job):
            saved = handler._engine
            handler._engine, handler._load_error = replacement, None
            try:
                return handler.handle(job)
            finally:
                handler._engine = saved
        return call

    return make


def deep(levels: int, leaf=0):
    value = leaf
    for _ in range(levels):
        value = [value] if levels % 2 else {"k": value}
    return value


junk = st.one_of(
    shallow_hostile, st.integers(17, 5_000).map(deep), st.just(b"bytes"), st.just({1, 2}), st.recursive(st.one_of(st.none(), st.integers(), st.text(max_size=10)),
                          lambda children: st.lists(children, max_size=3) | st.dictionaries(
                              st.text(max_size=5), children, max_size=3), max_leaves=20),
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=50),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=3000, max_size=6000),
    st.lists(st.integers(), max_size=4), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
plausible = {
    "caption": st.text(max_size=200), "lyrics": st.sampled_from(["", "[inst]", "[Verse]\nla la", "日本語の歌詞"]),
    "duration": st.one_of(st.floats(min_value=-5, max_value=700), st.integers(0, 700)),
    "batch_size": st.integers(-1, 10), "seed": st.one_of(st.integers(-2, 2**33), st.just("1,2"), st.just("-1")),
    "inference_steps": st.integers(0, 250), "guidance_scale": st.floats(0, 20), "shift": st.floats(0, 6),
    "bpm": st.integers(0, 400), "key_scale": st.sampled_from(["C major", "F# minor", "Z major", ""]),
    "time_signature": st.sampled_from(["4", "6/8", "5", "3/4"]), "vocal_language": st.sampled_from(["en", "xx", "zh"]),
    "audio_format": st.sampled_from(["mp3", "flac", "wav", "opus", "aac", "wma"]), "model": st.sampled_from(
        ["acestep-v15-turbo", "acestep-v15-base", "nope"]),
    "return_audio_base64": st.booleans(), "max_base64_bytes": st.integers(-10, 20_000_000),
    "timeout_seconds": st.floats(-1, 100_000), "poll_interval": st.floats(0, 400),
}
valid = {
    "caption": st.text(max_size=300), "lyrics": st.text(max_size=300), "duration": st.floats(10, 600),
    "batch_size": st.integers(1, 8), "seed": st.one_of(st.integers(0, 2**32 - 1), st.just(-1)),
    "inference_steps": st.integers(1, 8), "shift": st.floats(1, 5), "bpm": st.integers(30, 300),
    "key_scale": st.sampled_from(["C major", "f# minor", "Bb maj"]), "time_signature": st.sampled_from(["2", "3/4", "6/8"]),
    "vocal_language": st.sampled_from(["en", "ZH", "unknown"]), "audio_format": st.sampled_from(["mp3", "flac", "wav32", "ogg", "opus", "aac"]),
    "return_audio_base64": st.booleans(), "max_base64_bytes": st.integers(0, 15_000_000),
    "guidance_scale": st.floats(1, 15), "timeout_seconds": st.floats(60, 3600), "poll_interval": st.floats(0.5, 300),
}
ALIAS_GROUPS = [[a for a in (getattr(f.validation_alias, "choices", None) or [])]
                for f in JobRequest.model_fields.values()]
conflicting = st.sampled_from([g for g in ALIAS_GROUPS if len(g) > 1]).flatmap(
    lambda group: st.fixed_dictionaries({name: plausible.get(group[0], st.just(1)) for name in group[:2]}))
job_inputs = st.one_of(
    conflicting,
    st.fixed_dictionaries({}, optional=valid),
    st.fixed_dictionaries({}, optional=valid).flatmap(
        lambda d: st.fixed_dictionaries({k: st.just(v) for k, v in d.items()}, optional={"bogus": junk})),
    st.fixed_dictionaries({}, optional={k: v for k, v in plausible.items()}),
    st.dictionaries(st.sampled_from(FIELDS + ALIASES + ["bogus", "ünïcode", ""]), junk, max_size=6),
    junk,
)


s3_configs = st.one_of(
    st.none(), junk,
    st.fixed_dictionaries({}, optional={"endpointUrl": st.one_of(junk, st.sampled_from(
        ["127.0.0.1:9000", "ftp://x", "http://h:port", "http://", "https://s3.example.com"])),
        "accessId": junk, "accessSecret": junk, "bucketName": st.one_of(junk, st.just("a/b"))}),
)
job_ids = itertools.count()


def check_output(job_input, out):
    assert isinstance(out, dict)
    event("rejected" if "error" in out else "generated")
    if "error" in out:
        assert set(out) <= {"error", "refresh_worker"}
        message = out["error"]
        assert isinstance(message, str) and message and "\n" not in message and "Traceback" not in message
        return
    assert out["status"] == "completed" and len(out["results"]) == out["batch_size"]
    assert len(json.dumps(out)) < 20_000_000
    budget = job_input.get("max_base64_bytes", 8_000_000)
    used = 0
    for result in out["results"]:
        assert result["file"].startswith("/v1/audio?filename=") and result["bytes"] > 0
        if "audio_base64" in result:
            data = base64.b64decode(result["audio_base64"])
            assert hashlib.sha256(data).hexdigest() == result["sha256"]
            used += len(result["audio_base64"])
    assert used <= budget


@settings(max_examples=FUZZ_JOBS, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(job_input=job_inputs, s3_config=st.one_of(st.none(), st.none(), s3_configs))
def test_thousands_of_inputs_never_crash_the_handler(handle, engine, job_input, s3_config):
    job_id = f"fuzz-{next(job_ids)}"
    job = {"id": job_id, "input": job_input, **({"s3Config": s3_config} if s3_config is not None else {})}
    out = handle(job)
    check_output(job_input if isinstance(job_input, dict) else {}, out)
    if "error" in out:  # a failed job leaves no file behind
        assert not list(engine.settings.output_dir.glob(f"{job_id}-*")), out["error"]
        assert len(out["error"]) < 2_100


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(job_input=st.fixed_dictionaries({"duration": st.just(10)}, optional={
    k: plausible[k] for k in ("caption", "lyrics", "seed", "bpm", "key_scale", "audio_format", "model",
                              "return_audio_base64", "batch_size")}))
def test_real_engine_on_generated_inputs(engine, handler_module_factory, job_input):
    out = handler_module_factory(engine)({"id": "fuzz-real", "input": job_input})
    check_output(job_input, out)
    if "error" not in out:
        assert all(math.isclose(r["duration"], 10.0) for r in out["results"])


def test_replay_engine_really_replays_tiny_audio(engine):
    replay = ReplayEngine(engine)
    assert replay.recorded.shape == (48000, 2) and np.isfinite(replay.recorded).all()
