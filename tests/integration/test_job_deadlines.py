"""The deadline and the cancel flag cover the whole job on the tiny models: every planner mode, decoding,
encoding, writing and delivery settings; a stopped job leaves no file."""

import threading
import time

import pytest
import torch

from acestep_worker.doors.serverless import run_job
from acestep_worker.errors import GenerationCancelled
from acestep_worker.models.planner import planner as planner_module
from acestep_worker.net.bucket import DeliveryError
from acestep_worker.runner.deadline import JobTimedOut
from acestep_worker.schema.request import parse


class StopAfter:
    """A should_stop that turns true after `calls` looks, counting what ran after that."""

    def __init__(self, calls: int):
        self.calls, self.seen = calls, 0

    def __call__(self) -> bool:
        self.seen += 1
        return self.seen > self.calls


class Wrapped:
    """The real engine with something done after it generates (a late cancel, a slow stage)."""

    def __init__(self, engine, after=None, settings=None):
        self.engine, self.after, self.generated = engine, after, 0
        self.settings = settings or engine.settings

    def plan(self, request, seeds=None):
        return self.engine.plan(request, seeds)

    def run(self, plan, *args):
        result = self.engine.run(plan, *args)
        self.generated += 1
        if self.after is not None:
            self.after()
        return result


def _outputs(folder, stem):
    return sorted(p.name for p in folder.glob(f"{stem}*"))


@pytest.mark.parametrize("fields", [{"sample_query": "a calm piano piece"}, {"use_format": True, "caption": "rock"},
                                    {"caption": "rock", "use_cot_metas": True}])
def test_every_planner_mode_stops_within_a_token(planner_engine, monkeypatch, fields):
    steps = []
    real_step = planner_module.PairedDecoder.step
    monkeypatch.setattr(planner_module.PairedDecoder, "step", lambda self, t: (steps.append(1), real_step(self, t)))
    stop = StopAfter(3)
    with pytest.raises(GenerationCancelled):
        planner_engine.generate(parse({"duration": 10, **fields}), should_stop=stop)
    assert len(steps) <= 3, f"{len(steps)} planner tokens were decoded after the stop"


def test_vae_decode_stops_between_songs(engine, monkeypatch):
    decoded = []
    stop = {"now": False}

    def on_progress(progress):
        if progress.stage == "vae_decode":
            stop["now"] = True

    vae = engine.synthesizer.vae
    real_decode = vae.decode
    monkeypatch.setattr(vae, "decode", lambda z: (decoded.append(1), real_decode(z))[1])
    with pytest.raises(GenerationCancelled):
        engine.generate(parse({"duration": 10, "batch_size": 2}), on_progress=on_progress,
                        should_stop=lambda: stop["now"])
    assert decoded == []


def test_a_cancel_after_diffusion_writes_and_uploads_nothing(s3_engine):
    engine = s3_engine  # its bucket is on loopback
    cancelled = threading.Event()
    late = Wrapped(engine, after=cancelled.set)
    s3 = {"endpointUrl": "http://127.0.0.1:9", "accessId": "a", "accessSecret": "b", "bucketName": "songs"}
    with pytest.raises(GenerationCancelled, match="cancelled"):
        run_job(late, "late-cancel", {"duration": 10, "batch_size": 2}, s3_config=s3, cancelled=cancelled, env={})
    assert late.generated == 1 and _outputs(engine.settings.output_dir, "late-cancel") == []


def test_the_deadline_covers_encoding_and_writing(engine):
    slow = Wrapped(engine, after=lambda: time.sleep(1.2))
    with pytest.raises(JobTimedOut, match="timed out after 1 s"):
        run_job(slow, "slow-encode", {"duration": 10, "timeout_seconds": 1}, env={})
    assert _outputs(engine.settings.output_dir, "slow-encode") == []
    assert run_job(engine, "after-timeout", {"duration": 10}, env={})["status"] == "completed"


@pytest.mark.parametrize("s3,fragment", [
    ({"endpointUrl": "127.0.0.1:9000"}, "s3Config.endpointUrl must be an http(s) URL"),
    ({"endpointUrl": "ftp://x"}, "s3Config.endpointUrl"),
    ({"endpointUrl": "http://h:notaport"}, "s3Config.endpointUrl"),
    ({"bucketName": "a/b"}, "s3Config.bucketName"),
    ({"accessId": ["x"]}, "s3Config must be an object"),
    ({"accessSecret": "[" * 10_000}, "s3Config must be an object"),
])
def test_bucket_settings_are_checked_before_generating(s3_engine, s3, fragment):
    engine = s3_engine  # loopback endpoints, so that each case meets the check it names
    config = {"endpointUrl": "http://127.0.0.1:9000", "accessId": "a", "accessSecret": "b", "bucketName": "songs", **s3}
    counting = Wrapped(engine)
    with pytest.raises(DeliveryError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        run_job(counting, "bad-s3", {"duration": 10}, s3_config=config, env={})
    assert counting.generated == 0


def test_bucket_environment_is_checked_before_generating(engine):
    env = {"BUCKET_ENDPOINT_URL": "localhost:9000", "BUCKET_ACCESS_KEY_ID": "a", "BUCKET_SECRET_ACCESS_KEY": "b",
           "BUCKET_NAME": "songs"}
    counting = Wrapped(engine)
    with pytest.raises(DeliveryError, match="BUCKET_ENDPOINT_URL must be an http"):
        run_job(counting, "bad-env", {"duration": 10}, env=env)
    assert counting.generated == 0


def test_vae_decode_stops_between_tiles(engine):
    from acestep_worker.models.vae import decode

    vae = engine.synthesizer.vae
    calls = []
    hook = vae.decoder.register_forward_pre_hook(lambda *_: calls.append(1))
    latents = torch.randn(1, 3000, 64)  # 120 s: several 512-frame tiles

    def stop_after_two():
        if len(calls) >= 2:
            raise GenerationCancelled("stopped")

    try:
        with pytest.raises(GenerationCancelled):
            decode(vae, latents, check=stop_after_two)
    finally:
        hook.remove()
    assert len(calls) == 2, f"{len(calls)} tiles were decoded"
