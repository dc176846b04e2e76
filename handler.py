"""Runpod serverless worker for ACE-Step 1.5 text-to-music.

Job input (`job["input"]`), every field optional:
  caption (alias prompt), lyrics ("" or "[inst]" = instrumental), duration (10-600 s), batch_size (1-8),
  seed (int, -1, or "a,b,c"), inference_steps, guidance_scale, shift, bpm, key_scale, time_signature,
  vocal_language, audio_format (mp3|flac|wav|wav32|ogg|opus|aac), mp3_bitrate, model (a DiT folder name),
  planner: thinking, use_format, sample_query, use_cot_metas/caption/language, lm_temperature, ...,
  timeout_seconds (default 1800), poll_interval (default 3 s between progress updates),
  return_audio_base64 (default false), max_base64_bytes (default 8,000,000).
  Editing: task_type, src_audio (the song to edit) and reference_audio (a timbre reference), each an
  https URL, a data:audio/<type>;base64 URI, plain base64, or an s3://bucket/key read with the job's
  s3Config or the BUCKET_* variables. Downloads share the job's deadline, are capped at
  ACESTEP_MAX_AUDIO_MB (128) and ACESTEP_MAX_AUDIO_SECONDS (600), and never reach private addresses.
  The full list, with aliases and ranges, is `acestep_worker.schema.request.JobRequest` (and the README).
Job top level: optional `s3Config` {endpointUrl, accessId, accessSecret, bucketName}.

Output: {task_id, status: "completed", duration, batch_size, model, random_weights, task_type,
source? / reference?: {field, duration_s, sha256, bytes, format, sample_rate, channels}, results: [{file,
filename, seed, format, content_type, bytes, sha256, duration, sample_rate, caption, bpm, key_scale,
time_signature, vocal_language, url?, audio_base64? | base64_omitted?}], params, timings}.
Bad input, a timeout or a failed delivery: {"error": "<one sentence>"} (Runpod reports FAILED).
CUDA out of memory: {"error": ..., "refresh_worker": true}, so the next job gets a fresh worker.

Run it: `python -u handler.py` on Runpod; locally `python handler.py` (reads ./test_input.json) or
`python handler.py --test_input '{"input": {...}}'`: one job, its result printed on stdout as ONE JSON
document shaped like a /runsync answer ({"id", "status": COMPLETED|FAILED, "output" | "error"}), logs
on stderr, exit 0/1, so `python handler.py | jq .output.results` works. `python handler.py
--rp_serve_api` emulates the endpoint over HTTP (the Runpod SDK's own server).
With ACESTEP_MODE=pod the same image serves the HTTP API and the Gradio page instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import threading

import runpod
import torch

from acestep_worker.delivery.files import tidy_output_dir
from acestep_worker.doors.serverless import run_job
from acestep_worker.errors import AceStepError
from acestep_worker.pipeline.engine import Engine
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
            settings = Settings.from_env()
            tidy_output_dir(settings)  # what a killed worker left, and the budget, before the first job
            _engine = Engine(settings)
        except AceStepError as exc:
            _load_error = str(exc)
            log.error("cannot load the models: %s", exc)
        except Exception as exc:  # a fault no loader foresaw: fail the worker once, not every job
            log.exception("cannot load the models")
            _load_error = f"unexpected {type(exc).__name__} while loading the models (see the worker log)"
    return _engine


def models_loaded() -> None:
    """Fail the worker at start (on the platform) when the checkpoints are missing or unreadable."""
    if load_engine() is None:
        raise RuntimeError(f"ACE-Step models failed to load: {_load_error}")


with contextlib.redirect_stdout(sys.stderr):  # the SDK logs the registration with print()
    runpod.serverless.register_fitness_check(models_loaded)


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


def local_test_job(argv: list[str]) -> tuple[dict, dict | None] | None:
    """The one job (and optional expected result) of local test mode, or None when the SDK should run:
    on the platform, with --rp_serve_api, or in realtime mode. The SDK's own local mode logs the result
    as a Python dict on stdout, mixed with its log lines, so this mode is ours."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--test_input", type=json.loads)
    parser.add_argument("--test_output", type=json.loads)
    parser.add_argument("--rp_serve_api", action="store_true")
    try:
        args, _ = parser.parse_known_args(argv)
    except SystemExit:
        raise SystemExit("--test_input and --test_output take a JSON document, e.g. '{\"input\": {...}}'") from None
    sdk_runs = args.rp_serve_api or ON_PLATFORM or bool(os.environ.get("RUNPOD_REALTIME_PORT"))
    if args.test_input is None and sdk_runs:
        return None
    job = args.test_input
    if job is None:
        if not os.path.exists("test_input.json"):
            raise SystemExit("no job to run: give --test_input '{\"input\": {...}}' or put a test_input.json here")
        with open("test_input.json", encoding="utf-8") as file:
            job = json.load(file)
    if not isinstance(job, dict) or not isinstance(job.get("input"), dict):
        raise SystemExit('the test job must be a JSON object with an "input" object: {"input": {"caption": ...}}')
    return {**job, "id": job.get("id", "local_test")}, args.test_output


def run_local_test(job: dict, expected: dict | None) -> int:
    """Run one job as the platform would and print what /runsync would answer; 0 when it completed."""
    from runpod.serverless.modules.rp_job import run_job as sdk_run_job  # the SDK's output/error mapping

    with contextlib.redirect_stdout(sys.stderr):  # the SDK logs with print(); stdout carries only the result
        result = asyncio.run(sdk_run_job(handler, job))
    if result.pop("stopPod", None):
        log.warning("the job asked for a fresh worker (refresh_worker)")
    failed = bool(result.get("error"))
    print(json.dumps({"id": job["id"], "status": "FAILED" if failed else "COMPLETED", **result}, indent=2))
    if expected is not None and result != expected:
        log.error("the job result does not match --test_output")
        return 1
    return 1 if failed else 0


def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.environ.get("ACESTEP_MODE", "serverless").lower() == "pod":
        from acestep_worker.doors.pod.launch import serve  # pod mode: HTTP API + Gradio page, one engine

        serve()
        return
    local = local_test_job(sys.argv[1:])
    if local is not None:
        sys.exit(run_local_test(*local))
    load_engine()  # before the first job is taken
    runpod.serverless.start({"handler": handler})


if __name__ == "__main__":
    main()
