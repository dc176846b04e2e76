"""The serverless door: a Runpod job's input in, the seed contract's output out.

It parses the job, picks its delivery (the job's bucket, or inline base64 within its budget), hands
it to the job runner (runner/job.py) and shapes the result. This is everything `handler.py` does
except talking to Runpod: progress goes to a callback and cancellation comes from an event, so the
whole job runs (and is tested) without the SDK.
"""

from __future__ import annotations

import json
import os
import threading
import time
from functools import partial
from typing import Callable, Mapping

from ..audio.sources import SourcePolicy
from ..delivery.files import SavedSong, job_paths, prune_outputs, remove_orphaned_parts
from ..delivery.inline import attach_base64, check_deliverable
from ..net.bucket import Bucket, BucketConfig
from ..pipeline.engine import Engine, Progress
from ..pipeline.plan import JobPlan
from ..runner.deadline import Deadline
from ..runner.job import Finished, Job, JobRunner
from ..schema.request import JobRequest, parse, unused_fields

RESPONSE_LIMIT_BYTES = 19_500_000  # Runpod refuses /runsync results over 20 MB; keep a margin
RESPONSE_MARGIN_BYTES = 200_000  # the rest of the response beside the base64 text
# Stages that report progress; none after sampling (see ThrottledProgress).
PROGRESS_STAGES = {"planning", "audio_codes", "text_encoding", "conditioning", "diffusion"}


# Outside the worker `file` is reachable only through a shared volume or a pod, so a serverless
# caller is never told to fetch it.
NO_BUCKET_HINT = ("set a bucket (s3Config) to receive songs as URLs, or ask for audio_format opus or mp3, "
                  "a shorter duration or a smaller batch_size")


class ThrottledProgress:
    """Forward engine progress at most every `interval` seconds, and never near the end of a job.

    Runpod delivers progress updates asynchronously; one sent just before the result can land after
    it and leave the job looking IN_PROGRESS. So updates stop once sampling is done: decoding,
    encoding and delivery still separate the last update from the result.
    """

    def __init__(self, send: Callable[[dict], None] | None, interval_s: float, clock=time.monotonic):
        self.send, self.interval, self.clock = send, interval_s, clock
        self.started = clock()
        self.last: float | None = None
        self.sent = 0

    def __call__(self, progress: Progress) -> None:
        if self.send is None or progress.stage not in PROGRESS_STAGES:
            return
        if progress.stage == "diffusion" and progress.step == progress.total_steps:
            return
        now = self.clock()
        if self.last is not None and now - self.last < self.interval:
            return
        self.last = now
        self.sent += 1
        self.send({"stage": progress.stage, "step": progress.step, "total_steps": progress.total_steps,
                   "percent": round(100 * progress.fraction, 1), "elapsed_s": round(now - self.started, 1)})


class ServerlessDelivery:
    """A serverless job's songs: uploaded to its bucket when it has one, else only inline, which must
    fit `max_base64_bytes` and Runpod's response limit (checked before any GPU time is spent)."""

    def __init__(self, request: JobRequest, job_id: str, bucket: BucketConfig | None):
        self.request, self.job_id, self.bucket = request, job_id, bucket
        self.urls: list[str] = []

    def check(self, plan: JobPlan) -> None:
        check_deliverable(self.request, plan.length.seconds, plan.length.source, has_bucket=self.bucket is not None,
                          response_limit=RESPONSE_LIMIT_BYTES - RESPONSE_MARGIN_BYTES, songs=plan.song_count)

    def deliver(self, songs: list[SavedSong], deadline: Deadline) -> dict[str, float]:
        if self.bucket is None:
            return {}
        start = time.perf_counter()
        for song in songs:
            deadline.check()
            bucket = Bucket(self.bucket, timeout_s=deadline.remaining())
            self.urls.append(bucket.upload(song.path, f"{self.job_id}/{song.path.name}", song.content_type))
        return {"upload": time.perf_counter() - start}


def run_job(engine: Engine, job_id: str, raw_input: object, *, s3_config: object = None,
            send_progress: Callable[[dict], None] | None = None, cancelled: threading.Event | None = None,
            env: Mapping[str, str] | None = None) -> dict:
    """Run one job; return the output dict or raise an AceStepError whose message is for the caller.

    `timeout_seconds` covers the whole job: audio inputs, the planner, text encoding, diffusion,
    decoding, encoding and delivery. Past it, or after a cancel, the job stops within one step and
    leaves no file behind.
    """
    request = parse(raw_input, JobRequest)
    settings = engine.settings
    private = settings.allow_private_urls  # a bucket endpoint follows the download rules
    bucket = (BucketConfig.from_job(s3_config, allow_private=private)
              or BucketConfig.from_env(os.environ if env is None else env, allow_private=private))
    deadline = Deadline(request.timeout_seconds, cancelled)
    sources = SourcePolicy.from_settings(settings, bucket=bucket)
    delivery = ServerlessDelivery(request, job_id, bucket)
    runner = JobRunner(engine)
    plan = runner.check(request, sources, delivery)  # refused before any download or GPU time
    job = Job(job_id, plan, deadline, sources, partial(job_paths, settings.output_dir, job_id), delivery,
              on_progress=ThrottledProgress(send_progress, request.poll_interval))
    finished = None
    try:
        finished = runner.run(job)
    finally:
        remove_orphaned_parts(settings.output_dir)
        prune_outputs(settings.output_dir, settings.output_max_files, settings.output_max_bytes,
                      keep=frozenset(song.path for song in (finished.songs if finished else ())))
    return _output(job_id, request, finished, delivery, deadline)


def _output(job_id: str, request: JobRequest, finished: Finished, delivery: ServerlessDelivery,
            deadline: Deadline) -> dict:
    """The job's result in the seed contract's shape, fitted under Runpod's response limit."""
    result = finished.result
    if result.analysis is not None:
        return _analysis_output(job_id, request, finished, deadline)
    entries = [_describe(song, result.params) for song in finished.songs]
    if finished.plan.splits_stems:  # a one-stem job keeps the seed contract's shape
        for entry, song in zip(entries, finished.songs):
            entry["track_name"] = song.stem
    for entry, url in zip(entries, delivery.urls):
        entry["url"] = url
    if request.return_audio_base64:
        attach_base64(entries, [song.read() for song in finished.songs], request.max_base64_bytes,
                      elsewhere="it is in the bucket: `url`" if delivery.bucket is not None else NO_BUCKET_HINT)
    output = {
        "task_id": job_id, "status": "completed", "duration": entries[0]["duration"],
        "batch_size": len(finished.plan.seeds), "model": result.model, "random_weights": result.random_weights,
        "task_type": result.params.get("task_type", request.task_type), **finished.sources,
        "results": entries, "params": {**_public_params(result.params), **_unused(request, finished.plan)},
        "timings": {k: round(v, 3) for k, v in finished.timings.items()},
    }
    if finished.plan.splits_stems:
        output["stems"] = list(finished.plan.stems)
    output["timings"]["job_total"] = round(time.monotonic() - deadline.started, 3)
    _fit_response(output)
    return output


def _analysis_output(job_id: str, request: JobRequest, finished: Finished, deadline: Deadline) -> dict:
    """An analysis job: upstream's result keys (`audio_codes`, or `bpm` ... `lyrics` and `metas`) at the
    top level beside the job's own, and no songs."""
    result = finished.result
    output = {"task_id": job_id, "status": "completed", "mode": finished.plan.mode, "model": result.model,
              "random_weights": result.random_weights, **finished.sources, **result.analysis,
              "params": _unused(request, finished.plan),
              "timings": {k: round(v, 3) for k, v in finished.timings.items()}}
    output["timings"]["job_total"] = round(time.monotonic() - deadline.started, 3)
    return output


def _describe(song: SavedSong, params: dict) -> dict:
    retake = {"retake_seed": params["retake_seeds"][song.take]} if "retake_seeds" in params else {}
    return {"file": song.file_url, "filename": song.path.name, "seed": song.seed, **retake, "format": song.format,
            "content_type": song.content_type, "bytes": song.size, "sha256": song.sha256,
            "duration": song.duration_s, "sample_rate": song.sample_rate, "caption": params["caption"],
            "bpm": params["bpm"], "key_scale": params["key_scale"], "time_signature": params["time_signature"],
            "vocal_language": params["vocal_language"], **song.extras}


def _public_params(params: dict) -> dict:
    hidden = {"caption", "lyrics", "seeds", "retake_seeds"}  # already per song, or echoed input
    return {k: v for k, v in params.items() if k not in hidden}


def _unused(request: JobRequest, plan: JobPlan) -> dict:
    unused = unused_fields(request, plan.replaced)
    return {"unused": unused} if unused else {}


def _fit_response(output: dict) -> None:
    """Drop inline audio from the last songs until the whole response fits Runpod's limit."""
    for entry in reversed(output["results"]):
        if len(json.dumps(output)) <= RESPONSE_LIMIT_BYTES:
            return
        if entry.pop("audio_base64", None) is not None:
            entry["base64_omitted"] = (f"the response would exceed Runpod's {RESPONSE_LIMIT_BYTES} byte limit; "
                                       + ("it is in the bucket: `url`" if "url" in entry else NO_BUCKET_HINT))
