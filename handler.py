"""Runpod serverless worker for ACE-Step 1.5 text-to-music.

Job input (`job["input"]`), every field optional:
  caption (alias prompt), lyrics ("" or "[inst]" = instrumental), duration (10-600 s), batch_size (1-8),
  seed (int, -1, or "a,b,c"), inference_steps, guidance_scale, shift, bpm, key_scale, time_signature,
  vocal_language, audio_format (mp3|flac|wav|wav32|ogg|opus), mp3_bitrate, model (a DiT folder name),
  planner: thinking, use_format, sample_query, use_cot_metas/caption/language, lm_temperature, ...,
  timeout_seconds (default 1800), poll_interval (default 3 s between progress updates),
  return_audio_base64 (default false), max_base64_bytes (default 8,000,000).
  The full list, with aliases and ranges, is `acestep_worker.request.JobRequest` (and the README).
Job top level: optional `s3Config` {endpointUrl, accessId, accessSecret, bucketName}.

Output: {task_id, status: "completed", duration, batch_size, model, random_weights, results: [{file,
filename, seed, format, content_type, bytes, sha256, duration, sample_rate, caption, bpm, key_scale,
time_signature, vocal_language, url?, audio_base64? | base64_omitted?}], params, timings}.
Bad input, a timeout or a failed delivery: {"error": "<one sentence>"} (Runpod reports FAILED).
CUDA out of memory: {"error": ..., "refresh_worker": true}, so the next job gets a fresh worker.

Run it: `python -u handler.py` on Runpod; locally `python handler.py` (reads ./test_input.json),
`python handler.py --test_input '{"input": {...}}'` or `python handler.py --rp_serve_api`.
With ACESTEP_MODE=pod the same image serves the HTTP API and the Gradio page instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

import runpod
import torch

from acestep_worker.engine import Engine
from acestep_worker.errors import AceStepError
from acestep_worker.jobs import run_job
from acestep_worker.settings import Settings

log = logging.getLogger("handler")
ON_PLATFORM = bool(os.environ.get("RUNPOD_WEBHOOK_GET_JOB"))  # progress updates only reach a real endpoint

_engine: Engine | None = None
_load_error: str | None = None


def load_engine() -> Engine | None:
    """Load the models once per process; remember the failure instead of crashing, so the fitness
    check and every job can report it."""
    global _engine, _load_error
    if _engine is None and _load_error is None:
        try:
            _engine = Engine(Settings.from_env())
        except AceStepError as exc:
            _load_error = str(exc)
            log.error("cannot load the models: %s", exc)
    return _engine


@runpod.serverless.register_fitness_check
def models_loaded() -> None:
    """Fail the worker at start (on the platform) when the checkpoints are missing or unreadable."""
    if load_engine() is None:
        raise RuntimeError(f"ACE-Step models failed to load: {_load_error}")


def _error(message: str, **extra) -> dict:
    return {"error": message, **extra}


def handle(job: dict, cancelled: threading.Event | None = None) -> dict:
    engine = load_engine()
    if engine is None:
        return _error(f"the worker could not load its models: {_load_error}")

    def send_progress(update: dict) -> None:
        if ON_PLATFORM:
            runpod.serverless.progress_update(job, update)

    try:
        return run_job(engine, str(job.get("id") or "local_test"), job.get("input"), s3_config=job.get("s3Config"),
                       send_progress=send_progress, cancelled=cancelled)
    except torch.cuda.OutOfMemoryError:
        log.exception("CUDA out of memory; asking Runpod for a fresh worker")
        return _error("the GPU ran out of memory for this job; retry it, or ask for a shorter duration or a "
                      "smaller batch_size", refresh_worker=True)
    except AceStepError as exc:
        return _error(str(exc))


async def handler(job: dict) -> dict:
    """Run the job off the event loop; a Runpod cancel stops the engine at its next step."""
    cancelled = threading.Event()
    try:
        return await asyncio.to_thread(handle, job, cancelled)
    except asyncio.CancelledError:
        cancelled.set()
        raise


def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.environ.get("ACESTEP_MODE", "serverless").lower() == "pod":
        from acestep_worker.server import serve  # pod mode: HTTP API + Gradio page, one engine

        serve()
        return
    load_engine()  # before the first job is taken
    runpod.serverless.start({"handler": handler})


if __name__ == "__main__":
    main()
