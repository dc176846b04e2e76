"""One serverless job: parse, generate under a deadline, keep the files, deliver, shape the output.

This is everything `handler.py` does except talking to Runpod: progress goes to a callback and
cancellation comes from a callable, so the whole job runs (and is tested) without the SDK.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import quote

from .audio_io import FORMATS, encode, write_atomically
from .delivery import Bucket, BucketConfig, attach_base64
from .engine import Engine, GenerationResult, Progress
from .errors import AceStepError, GenerationCancelled
from .request import JobRequest, parse

RESPONSE_LIMIT_BYTES = 19_500_000  # Runpod refuses /runsync results over 20 MB; keep a margin
PROGRESS_STAGES = {"text_encoding", "conditioning", "diffusion"}  # none after sampling: see ThrottledProgress


class JobTimedOut(AceStepError):
    pass


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


def safe_name(job_id: str) -> str:
    """A file-system and URL safe stem from a job id."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", job_id).strip("_")[:80]
    return cleaned or "job"


def run_job(engine: Engine, job_id: str, raw_input: object, *, s3_config: object = None,
            send_progress: Callable[[dict], None] | None = None, cancelled: threading.Event | None = None,
            env: Mapping[str, str] | None = None) -> dict:
    """Run one job; return the output dict or raise an AceStepError whose message is for the caller."""
    env = os.environ if env is None else env
    request = parse(raw_input, JobRequest)
    bucket_config = BucketConfig.from_job(s3_config) or BucketConfig.from_env(env)
    started = time.monotonic()
    deadline = started + request.timeout_seconds

    def should_stop() -> bool:
        return time.monotonic() > deadline or (cancelled is not None and cancelled.is_set())

    try:
        result = engine.generate(request, on_progress=ThrottledProgress(send_progress, request.poll_interval),
                                 should_stop=should_stop)
    except GenerationCancelled:
        if cancelled is not None and cancelled.is_set():
            raise
        raise JobTimedOut(f"the job timed out after {request.timeout_seconds:g} s (timeout_seconds) and was "
                          "stopped; raise timeout_seconds or ask for a shorter duration") from None

    output_dir = engine.settings.output_dir
    entries, payloads, paths = _save_songs(result, request, job_id, output_dir)
    timings = dict(result.timings)
    if bucket_config is not None:
        t0 = time.perf_counter()
        bucket = Bucket(bucket_config)
        for entry, path in zip(entries, paths):
            entry["url"] = bucket.upload(path, f"{job_id}/{path.name}", entry["content_type"])
        timings["upload"] = time.perf_counter() - t0
    if request.return_audio_base64:
        attach_base64(entries, payloads, request.max_base64_bytes)
    output = {
        "task_id": job_id, "status": "completed", "duration": entries[0]["duration"],
        "batch_size": len(entries), "model": result.model, "random_weights": result.random_weights,
        "results": entries, "params": _public_params(result.params),
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    output["timings"]["job_total"] = round(time.monotonic() - started, 3)
    _fit_response(output)
    return output


def _save_songs(result: GenerationResult, request: JobRequest, job_id: str, output_dir: Path):
    fmt = FORMATS[request.audio_format]
    comment = ("RANDOM-WEIGHT TEST MODEL: noise, not music" if result.random_weights
               else f"ACE-Step 1.5 ({result.model})")
    entries, payloads, paths = [], [], []
    t0 = time.perf_counter()
    for index, song in enumerate(result.songs, 1):
        data = encode(song.audio, song.sample_rate, fmt.name, bitrate_kbps=request.mp3_bitrate,
                      tags={"comment": comment, "title": request.caption[:120]})
        path = output_dir / f"{safe_name(job_id)}-{index}.{fmt.extension}"
        write_atomically(path, data)
        params = result.params
        entries.append({
            "file": f"/v1/audio?filename={quote(path.name)}", "filename": path.name, "seed": song.seed,
            "format": fmt.name, "content_type": fmt.content_type, "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "duration": song.duration_s,
            "sample_rate": song.sample_rate, "caption": params["caption"], "bpm": params["bpm"],
            "key_scale": params["key_scale"], "time_signature": params["time_signature"],
            "vocal_language": params["vocal_language"],
        })
        payloads.append(data)
        paths.append(path)
    result.timings["encode"] = time.perf_counter() - t0
    return entries, payloads, paths


def _public_params(params: dict) -> dict:
    hidden = {"caption", "lyrics", "seeds"}  # already per song, or echoed input
    return {k: v for k, v in params.items() if k not in hidden}


def _fit_response(output: dict) -> None:
    """Drop inline audio from the last songs until the whole response fits Runpod's limit."""
    for entry in reversed(output["results"]):
        if len(json.dumps(output)) <= RESPONSE_LIMIT_BYTES:
            return
        if entry.pop("audio_base64", None) is not None:
            entry["base64_omitted"] = f"the response would exceed Runpod's {RESPONSE_LIMIT_BYTES} byte limit"
