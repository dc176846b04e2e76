"""The upstream-compatible ACE-Step HTTP API over the shared engine and task queue.

Wire contract (see shared/reference/upstream-api.md): the `{data, code, error, timestamp, extra}`
envelope; `/release_task` takes JSON, urlencoded or multipart bodies with upstream's field names;
`/query_result` reports statuses 0 (queued/running), 1 (succeeded), 2 (failed) with `result` as a
JSON string whose items carry a root-relative `file` URL. Where upstream is weak this server is
stricter: unknown ids are failed with "not found", failed tasks carry their error, a full queue is
a 429 with Retry-After and no ghost job, `/v1/audio` serves only files inside the output folder,
the API key is compared in constant time and an empty key means no auth.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse

from ... import __version__
from ...audio.encode import CONTENT_TYPES
from ...errors import AceStepError, InputError, PlannerUnavailableError, echo
from ...pipeline.engine import Engine
from ...schema.request import GenerationRequest, TimedRequest, parse, unused_fields
from . import defaults, lora_routes, model_routes
from .guard import AccessGuard, keys_match
from .queue import QueueFull, Task, TaskManager, TaskState
from .uploads import UPLOAD_PARTS, attach, discard

log = logging.getLogger(__name__)

STATUS_CODES = {TaskState.QUEUED: 0, TaskState.RUNNING: 0, TaskState.SUCCEEDED: 1, TaskState.FAILED: 2}
NESTED_PARAMETER_OBJECTS = ("param_obj", "metas", "meta", "metadata", "user_metadata", "userMetadata")
# Auth: open to all (upstream leaves these open and clients probe them first), and the endpoints
# whose small bodies may carry the key as `ai_token` instead of a header.
OPEN_PATHS = ("/health", "/v1/models")
BODY_TOKEN_PATHS = ("/release_task", "/query_result", "/format_input", "/cancel_task", "/create_random_sample")
MAX_NAME_BYTES, MAX_PATH_BYTES = 255, 4096  # the file system's own limits (NAME_MAX, PATH_MAX)
MAX_QUERY_IDS = 100  # upstream clients poll one task, or a handful; the answer grows with each id
MAX_TASK_ID_CHARS = 128  # ids this server mints are 32 hex digits; the answer echoes each id sent


@dataclass(frozen=True)
class ApiSettings:
    api_key: str | None = None  # None or "": no authentication
    env: str = "production"
    max_body_bytes: int = defaults.MAX_BODY_BYTES


def wrap(data: Any, code: int = 200, error: str | None = None, extra: Any = None) -> dict:
    return {"data": data, "code": code, "error": error, "timestamp": int(time.time() * 1000), "extra": extra}


# -- request bodies -------------------------------------------------------------------------------

async def read_body(request: Request, uploads: list | None = None) -> dict:
    """A body as a dict, from JSON, multipart or urlencoded forms, as upstream accepts them.

    Audio file parts under upstream's names go to `uploads` as (request field, UploadFile); where
    no list is given (endpoints that take no audio) they are ignored."""
    content_type = request.headers.get("content-type", "").lower()
    if "json" in content_type:
        return _json_object(await request.body())
    if content_type.startswith("application/x-www-form-urlencoded"):
        raw = await request.body()
        if raw.lstrip()[:1] == b"{":  # `curl -d '{...}'` labels JSON as a form; read it as JSON
            return _json_object(raw)
    if content_type.startswith("multipart/form-data") or content_type.startswith("application/x-www-form-urlencoded"):
        form = await request.form()
        for key, value in form.multi_items():
            if uploads is not None and key in UPLOAD_PARTS and hasattr(value, "filename"):
                if value.filename or value.size:  # a browser's empty file input is "not given"
                    uploads.append((UPLOAD_PARTS[key], value))
        return {key: value for key, value in form.items() if isinstance(value, str)}
    raw = await request.body()
    stripped = raw.lstrip()
    if stripped[:1] in (b"{", b"["):
        return _json_object(raw)
    if b"=" in raw:
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    if not raw.strip():
        return {}
    raise HTTPException(415, f"Unsupported Content-Type: {content_type or '(missing)'}; use application/json, "
                             "application/x-www-form-urlencoded, or multipart/form-data")


def _json_object(raw: bytes) -> dict:
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise HTTPException(400, "Invalid JSON body (hint: set 'Content-Type: application/json')") from None
    except RecursionError:  # json's parser recurses per nesting level
        raise HTTPException(400, "the JSON body is nested too deeply") from None
    if not isinstance(data, dict):
        raise HTTPException(400, "JSON payload must be an object")
    return data


def _json_text(value: str, field: str) -> Any:
    """A field that upstream clients send as a JSON string; invalid JSON is an error naming it."""
    try:
        return json.loads(value)
    except ValueError:
        raise InputError(field, f"{field} is not valid JSON; send an object (or its JSON text)") from None
    except RecursionError:
        raise InputError(field, f"{field} is nested too deeply") from None


def _nested(value: Any, field: str) -> dict:
    """One of upstream's nested parameter objects, given as an object or as JSON text."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, str):
        value = _json_text(value, field)
    if not isinstance(value, dict):
        raise InputError(field, f"{field} must be an object of generation fields (or its JSON text); got {echo(value)}")
    return value


def generation_fields(body: dict) -> dict:
    """The body's generation fields: top level first, then upstream's nested parameter objects.

    Form posts send every field as a string and often empty ones; an empty value means "not given".
    """
    fields = {k: v for k, v in body.items() if k not in NESTED_PARAMETER_OBJECTS and k != "ai_token"}
    for key in NESTED_PARAMETER_OBJECTS:
        for name, value in _nested(body.get(key), key).items():
            fields.setdefault(name, value)
    return {k: v for k, v in fields.items() if v != "" or k in ("caption", "prompt", "lyrics")}


def task_ids(value: Any) -> list[str]:
    """`task_id_list` as a list of ids: a list, its JSON text, or one bare id; at most MAX_QUERY_IDS."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = _json_text(value, "task_id_list") if value.lstrip()[:1] == "[" else [value]
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, (str, int)) for v in value):
        raise InputError("task_id_list", "task_id_list must be a list of task id strings")
    if len(value) > MAX_QUERY_IDS:
        raise InputError("task_id_list", f"task_id_list holds {len(value)} ids; ask for at most {MAX_QUERY_IDS} "
                         "per call")
    ids = [str(v) for v in value]
    for i, task_id in enumerate(ids):
        # Each id is echoed in the answer: one that no task can have (a megabyte long, or text JSON
        # cannot carry, such as a lone surrogate) is refused here rather than sent back.
        if len(task_id) > MAX_TASK_ID_CHARS or not task_id.isprintable():  # lone surrogates are not
            raise InputError("task_id_list", f"task_id_list[{i}] cannot be a task id (ids are at most "
                             f"{MAX_TASK_ID_CHARS} printable characters); got {echo(task_id)}")
    return ids



# -- auth -----------------------------------------------------------------------------------------

def _header_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    return header[7:].strip() if header.lower().startswith("bearer ") else header.strip()


def check_auth(request: Request, settings: ApiSettings, body: dict | None = None) -> None:
    """Upstream's rules; the header was already checked by AccessGuard, before the body was read."""
    if not settings.api_key:
        return
    token = (body or {}).get("ai_token")
    if token:
        if not isinstance(token, str) or not keys_match(token, settings.api_key):
            raise HTTPException(401, "Invalid ai_token")
        return
    header = _header_token(request)
    if header is None:
        raise HTTPException(401, "Missing ai_token or Authorization header" if body is not None
                            else "Missing Authorization header")
    if not keys_match(header, settings.api_key):
        raise HTTPException(401, "Invalid API key")


# -- results --------------------------------------------------------------------------------------

def _metas(task: Task) -> dict:
    p = task.params
    def na(v):
        return "N/A" if v in (None, "") else v
    return {"bpm": na(p.get("bpm")), "duration": na(p.get("requested_duration")), "genres": "N/A",
            "keyscale": na(p.get("key_scale")), "timesignature": na(p.get("time_signature")),
            "prompt": task.request.caption, "lyrics": task.request.lyrics}


def generation_info(task: Task) -> str:
    p, t = task.params, task.timings
    lines = []
    if task.songs:
        lines.append(f"**🎯 Average Time per Track: {t.get('total', 0) / len(task.songs):.2f}s** "
                     f"({len(task.songs)} track(s))")
    if p.get("lm_metadata"):
        lines.append("\n**🤖 LM-Generated Metadata:**")
        names = {"bpm": "BPM", "caption": "Refined Caption", "duration": "Duration", "keyscale": "Key Scale",
                 "language": "Language", "timesignature": "Time Signature"}
        lines += [f"- **{names[k]}:** {v}" for k, v in p["lm_metadata"].items() if k in names]
    lines += ["\n**🎵 Generation Complete**", f"- **Seeds:** {','.join(str(s.seed) for s in task.songs)}",
              f"- **Steps:** {p.get('inference_steps')}", f"- **Audio Count:** {len(task.songs)}",
              f"- **BPM:** {p.get('bpm') or 'N/A'}", f"- **Key Scale:** {p.get('key_scale') or 'N/A'}",
              f"- **Time Signature:** {p.get('time_signature') or 'N/A'}",
              f"- **Duration:** {p.get('requested_duration')} seconds", f"- **Model:** {task.model}"]
    if task.random_weights:
        lines.append("- **Warning:** made with random-weight test checkpoints: noise, not music")
    lines.append(f"\n**⏱️ Total Time: {t.get('total', 0):.2f}s**")
    return "\n".join(lines)


def result_items(task: Task, lm_model: str, env: str) -> list[dict]:
    base = {"wave": "", "create_time": int(task.created), "env": env}
    if task.state is TaskState.SUCCEEDED:
        shared = {"status": 1, "prompt": task.params.get("caption", ""), "lyrics": task.params.get("lyrics", ""),
                  "metas": _metas(task), "generation_info": generation_info(task),
                  "seed_value": ",".join(str(s.seed) for s in task.songs), "lm_model": lm_model,
                  "dit_model": task.model, "progress": 1.0, "stage": "succeeded",
                  "task_type": task.params.get("task_type", task.request.task_type), **task.sources}
        return [{"file": song.file_url, **base, **shared, "seed": song.seed, "format": song.format,
                 "bytes": song.size, "sha256": song.sha256, "duration": song.duration_s} for song in task.songs]
    if task.state is TaskState.FAILED:
        return [{"file": "", **base, "status": 2, "progress": task.progress, "stage": "failed", "error": task.error}]
    return [{"file": "", **base, "status": 0, "progress": task.progress, "stage": task.stage}]


# -- the app --------------------------------------------------------------------------------------

def _release_task_schema() -> dict:
    schema = GenerationRequest.model_json_schema()
    schema["properties"]["ai_token"] = {"type": "string"}
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": schema}}}}


def create_app(engine: Engine, manager: TaskManager, settings: ApiSettings) -> FastAPI:
    app = FastAPI(title="ACE-Step 1.5 API", version=__version__,
                  description="Upstream-compatible ACE-Step 1.5 music generation API.")
    app.add_middleware(AccessGuard, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes,
                       open_paths=OPEN_PATHS, body_token_paths=BODY_TOKEN_PATHS)

    def lm_model() -> str:  # read each time: /v1/init may swap the planner
        return engine.planner.name if engine.planner is not None else ""
    output_dir = manager.output_dir.resolve()

    def settings_dep() -> ApiSettings:
        return settings

    @app.exception_handler(InputError)
    async def _input_error(_: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "field": exc.field}, status_code=400)

    @app.get("/health")
    async def health() -> dict:
        return wrap({"status": "ok", "service": "ACE-Step API", "version": __version__,
                     "models_initialized": True, "llm_initialized": engine.planner is not None,
                     "loaded_model": engine.default_model, "loaded_lm_model": lm_model() or None,
                     "random_weights": engine.random_weights})

    def header_auth(request: Request) -> None:
        check_auth(request, settings)

    def body_auth(request: Request, body: dict) -> None:
        check_auth(request, settings, body)

    model_routes.register(app, engine, manager, header_auth, body_auth, read_body, wrap)
    lora_routes.register(app, engine, read_body, wrap)

    @app.post("/release_task", openapi_extra=_release_task_schema())
    async def release_task(request: Request, cfg: ApiSettings = Depends(settings_dep)) -> JSONResponse:
        uploads: list = []
        body = await read_body(request, uploads)
        check_auth(request, cfg, body)
        stored: list[Path] = []
        try:
            fields = await run_in_threadpool(attach, generation_fields(body), uploads, stored, manager.input_dir,
                                             manager.audio_policy.limits)
            generation = parse(fields, TimedRequest)
            # What the model cannot do, or bad audio, is a 400 now, not a failure in the queue.
            await run_in_threadpool(manager.check, generation)
            task = manager.submit(generation, inputs=stored)
        except QueueFull as exc:
            discard(stored)
            return JSONResponse({"detail": "Server busy: queue is full"}, status_code=429,
                                headers={"Retry-After": str(exc.retry_after_s)})
        except BaseException:
            discard(stored)
            raise
        unused = unused_fields(generation)
        return JSONResponse(wrap({"task_id": task.id, "status": "queued",
                                  "queue_position": manager.queue_position(task) or 1},
                                 extra={"unused": unused} if unused else None))

    @app.post("/query_result", openapi_extra={"requestBody": {"content": {"application/json": {"schema": {
        "type": "object", "properties": {"task_id_list": {"type": "array", "items": {"type": "string"}},
                                         "ai_token": {"type": "string"}}}}}}})
    async def query_result(request: Request, cfg: ApiSettings = Depends(settings_dep)) -> dict:
        body = await read_body(request)
        check_auth(request, cfg, body)
        data = []
        for task_id in task_ids(body.get("task_id_list")):
            task = manager.get(task_id)
            if task is None:
                error = f"task {echo(task_id)} not found (unknown, or expired)"
                data.append({"task_id": task_id, "status": 2, "error": error, "progress_text": error,
                             "result": json.dumps([{"file": "", "status": 2, "stage": "not_found", "error": error}])})
                continue
            items = result_items(task, lm_model(), cfg.env)
            entry = {"task_id": task.id, "status": STATUS_CODES[task.state],
                     "result": json.dumps(items, ensure_ascii=False),
                     "progress_text": task.error or f"{task.stage} ({round(100 * task.progress)}%)",
                     "progress": task.progress, "stage": task.stage}
            if task.state is TaskState.QUEUED:
                entry["queue_position"] = manager.queue_position(task)
            if task.error:
                entry["error"] = task.error
            data.append(entry)
        return wrap(data)

    @app.post("/cancel_task", openapi_extra={"requestBody": {"content": {"application/json": {"schema": {
        "type": "object", "properties": {"task_id": {"type": "string"}, "ai_token": {"type": "string"}}}}}}})
    async def cancel_task(request: Request, cfg: ApiSettings = Depends(settings_dep)) -> dict:
        """Not in upstream (which has no cancel): a queued task leaves the queue, a running one
        stops at its next step and keeps no file; either is then failed with "cancelled"."""
        body = await read_body(request)
        check_auth(request, cfg, body)
        task_id = body.get("task_id")
        if not isinstance(task_id, str) or not task_id.strip():
            raise InputError("task_id", "task_id must be the id that /release_task returned")
        task = manager.cancel(task_id)
        if task is None:
            raise HTTPException(404, f"task {echo(task_id)} not found (unknown, or expired)")
        stopping = task.state is TaskState.RUNNING
        return wrap({"task_id": task.id, "status": STATUS_CODES[task.state],
                     "stage": "cancelling" if stopping else task.stage, "error": task.error})

    @app.post("/format_input", openapi_extra={"requestBody": {"content": {"application/json": {"schema": {
        "type": "object", "properties": {"prompt": {"type": "string"}, "lyrics": {"type": "string"},
                                         "temperature": {"type": "number"}, "param_obj": {"type": "object"}}}}}}})
    async def format_input(request: Request, cfg: ApiSettings = Depends(settings_dep)) -> JSONResponse:
        body = await read_body(request)
        check_auth(request, cfg, body)
        if engine.planner is None:
            raise HTTPException(503, "the 5 Hz planner LM is not loaded on this server (set ACESTEP_LM_MODEL_PATH)")
        params = _nested(body.get("param_obj"), "param_obj")
        # Validate through the one schema: the same names, aliases and ranges as everywhere else.
        fields = {"caption": body.get("prompt", body.get("caption", "")), "lyrics": body.get("lyrics", ""),
                  "lm_temperature": body.get("temperature", 0.85), "duration": params.get("duration"),
                  "bpm": params.get("bpm"), "key_scale": params.get("key_scale", params.get("key")),
                  "time_signature": params.get("time_signature", body.get("time_signature")),
                  "vocal_language": params.get("language")}
        checked = parse({k: v for k, v in fields.items() if v not in (None, "")})
        try:
            data = await run_in_threadpool(  # the planner never runs on the event loop
                engine.format_input, checked.caption, checked.lyrics, bpm=checked.bpm, duration=checked.duration,
                key_scale=checked.key_scale, time_signature=checked.time_signature,
                language=checked.vocal_language, temperature=checked.lm_temperature)
        except PlannerUnavailableError as exc:
            raise HTTPException(503, str(exc)) from None
        except AceStepError as exc:
            return JSONResponse(wrap(None, 500, f"format_sample failed: {exc}"))
        return JSONResponse(wrap(data))

    @app.get("/v1/audio")
    async def audio(request: Request, filename: str | None = Query(None), path: str | None = Query(None),
                    cfg: ApiSettings = Depends(settings_dep)) -> FileResponse:
        check_auth(request, cfg)
        name = filename if filename is not None else path
        if not name:
            raise HTTPException(400, "give filename= (or upstream's path=)")
        target = _inside(output_dir, name)
        media = CONTENT_TYPES.get(target.suffix.lstrip(".").lower())
        try:
            found = media is not None and target.is_file()  # only our audio formats are ever served
        except OSError:  # a name the file system cannot even look up (too long, ...) names no file of ours
            found = False
        if not found:
            raise HTTPException(404, "Audio file not found")
        return FileResponse(target, media_type=media, filename=target.name)

    @app.get("/v1/stats")
    async def stats(request: Request, cfg: ApiSettings = Depends(settings_dep)) -> dict:
        check_auth(request, cfg)
        return wrap(manager.stats())

    return app


def _inside(root: Path, name: str) -> Path:
    """Resolve `name` (relative to the output folder, or absolute) and refuse anything outside it,
    symlinks included: the real path must lie under the real output folder."""
    if "\x00" in name:
        raise HTTPException(400, "invalid file name")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES or any(
            len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in Path(name).parts):
        raise HTTPException(400, f"file name too long: at most {MAX_NAME_BYTES} bytes per name and "
                                 f"{MAX_PATH_BYTES} bytes in all")
    candidate = Path(name) if Path(name).is_absolute() else root / name
    try:
        real = candidate.resolve(strict=False)
    except (OSError, RuntimeError):
        raise HTTPException(403, "Access denied: path outside allowed directory") from None
    if real != root and root not in real.parents:
        raise HTTPException(403, "Access denied: path outside allowed directory")
    return real

