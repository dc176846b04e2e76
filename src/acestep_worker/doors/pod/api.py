"""The upstream-compatible ACE-Step HTTP API over the shared engine and task queue.

Wire contract (see shared/reference/upstream-api.md): the `{data, code, error, timestamp, extra}`
envelope; `/release_task` takes JSON, urlencoded or multipart bodies with upstream's field names;
`/query_result` reports statuses 0 (queued/running), 1 (succeeded), 2 (failed) with `result` as a
JSON string whose items carry a root-relative `file` URL. Where upstream is weak this server is
stricter: unknown ids are failed with "not found", failed tasks carry their error, a full queue is
a 429 with Retry-After and no ghost job, `/v1/audio` serves only files inside the output folder,
the API key is compared in constant time and an empty key means no auth.

`create_app` assembles groups of routes, each a `register(app, ctx)` over one `RouteContext`
(wire.py): health, models (model_routes.py), LoRA (lora_routes.py), tasks, chat completions
(chat_routes.py), planner (and sample_routes.py), files, stats.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse

from ... import __version__
from ...errors import AceStepError, InputError, PlannerUnavailableError, echo
from ...pipeline import planner_services
from ...schema.formats import CONTENT_TYPES
from ...schema.messages import needs_planner
from ...schema.request import GenerationRequest, TimedRequest, parse, unused_fields
from . import chat_routes, lora_routes, model_routes, sample_routes
from .guard import AccessGuard
from .queue import QueueFull, Task, TaskManager, TaskState
from .uploads import attach, discard
from .wire import ApiSettings, RouteContext, check_auth, read_body, wrap  # noqa: F401 (also this module's names)

if TYPE_CHECKING:
    from ...pipeline.engine import Engine

log = logging.getLogger(__name__)

STATUS_CODES = {TaskState.QUEUED: 0, TaskState.RUNNING: 0, TaskState.SUCCEEDED: 1, TaskState.FAILED: 2}
NESTED_PARAMETER_OBJECTS = ("param_obj", "metas", "meta", "metadata", "user_metadata", "userMetadata")
# Auth: open to all (upstream leaves these open and clients probe them first), and the endpoints
# whose small bodies may carry the key as `ai_token` instead of a header.
OPEN_PATHS = ("/health", "/v1/models")
BODY_TOKEN_PATHS = ("/release_task", "/query_result", "/format_input", "/cancel_task", "/create_random_sample",
                    *sample_routes.PATHS)
MAX_NAME_BYTES, MAX_PATH_BYTES = 255, 4096  # the file system's own limits (NAME_MAX, PATH_MAX)
MAX_QUERY_IDS = 100  # upstream clients poll one task, or a handful; the answer grows with each id
MAX_TASK_ID_CHARS = 128  # ids this server mints are 32 hex digits; the answer echoes each id sent


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



# -- results --------------------------------------------------------------------------------------

def _metas(task: Task) -> dict:
    p = task.params
    def na(v):
        return "N/A" if v in (None, "") else v
    return {"bpm": na(p.get("bpm")), "duration": na(p.get("requested_duration")), "genres": "N/A",
            "keyscale": na(p.get("key_scale")), "timesignature": na(p.get("time_signature")),
            "prompt": task.request.caption, "lyrics": task.request.lyrics}


# Per song, under upstream's newer names: the LRC goes into `metas` (`lrc`, `lrc_source`), the scores and
# the best-of-N take beside the other per-song keys.
_METAS_KEYS = ("lrc", "lrc_source")


def _song_extras(metas: dict, song) -> dict:
    extras = dict(song.extras)
    if not extras:
        return {}
    song_metas = {**metas, **{k: extras.pop(k) for k in _METAS_KEYS if k in extras}}
    return {"metas": song_metas, **extras}


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
              *([f"- **Retake Seeds:** {','.join(map(str, p['retake_seeds']))} (variance {p['retake_variance']:g})"]
                if p.get("retake_seeds") else []),
              f"- **Steps:** {p.get('inference_steps')}", f"- **Audio Count:** {len(task.songs)}",
              f"- **BPM:** {p.get('bpm') or 'N/A'}", f"- **Key Scale:** {p.get('key_scale') or 'N/A'}",
              f"- **Time Signature:** {p.get('time_signature') or 'N/A'}",
              f"- **Duration:** {p.get('requested_duration')} seconds", f"- **Model:** {task.model}"]
    if "normalization_gain_db" in p:  # the finishing applied (audio/finishing.py)
        gains = ", ".join("skipped" if g is None else f"{g:+.2f} dB" for g in p["normalization_gain_db"])
        lines.append(f"- **Peak normalization:** {gains}" if p.get("enable_normalization")
                     else "- **Peak normalization:** off")
    if task.random_weights:
        lines.append("- **Warning:** made with random-weight test checkpoints: noise, not music")
    lines.append(f"\n**⏱️ Total Time: {t.get('total', 0):.2f}s**")
    return "\n".join(lines)


def analysis_items(task: Task, base: dict) -> list[dict]:
    """An analysis task's item, as upstream's result cache holds it (plus `mode`, which ran): the audio
    analyses' own result as it is; the metadata analysis as a song item without a file."""
    result, mode = task.analysis, task.plan.mode
    if mode != "analysis_only":
        return [dict(result, mode=mode)]
    metas = result.get("metas") or {}
    return [{"file": "", **base, "status": 1, "prompt": result.get("prompt", ""), "lyrics": result.get("lyrics", ""),
             "metas": {"bpm": metas.get("bpm"), "duration": metas.get("duration"), "genres": metas.get("genres", ""),
                       "keyscale": metas.get("keyscale", ""), "timesignature": metas.get("timesignature", ""),
                       "prompt": metas.get("prompt", ""), "lyrics": metas.get("lyrics", "")},
             "generation_info": result.get("generation_info", ""), "seed_value": "", "audio_codes": "",
             "lm_model": result.get("lm_model", ""), "dit_model": result.get("dit_model", ""),
             "progress": 1.0, "stage": "succeeded", "mode": mode}]


def result_items(task: Task, lm_model: str, env: str) -> list[dict]:
    base = {"wave": "", "create_time": int(task.created), "env": env}
    if task.state is TaskState.SUCCEEDED and task.analysis is not None:
        return analysis_items(task, base)
    if task.state is TaskState.SUCCEEDED:
        shared = {"status": 1, "prompt": task.params.get("caption", ""), "lyrics": task.params.get("lyrics", ""),
                  "metas": _metas(task), "generation_info": generation_info(task),
                  "seed_value": ",".join(str(s.seed) for s in task.songs), "lm_model": lm_model,
                  "dit_model": task.model, "progress": 1.0, "stage": "succeeded",
                  "task_type": task.params.get("task_type", task.request.task_type), **task.sources}
        if "takes" in task.params:  # best-of-N: every take's score, and which were kept
            shared["takes"] = task.params["takes"]
        retakes = task.params.get("retake_seeds")
        if retakes:  # upstream's names for them (its extra outputs' retake_seed_value, retake_variance)
            shared.update(retake_seed_value=",".join(map(str, retakes)), retake_variance=task.params["retake_variance"])
        stems = task.plan.splits_stems  # a one-stem task keeps upstream's item shape
        return [{"file": song.file_url, **base, **shared, **_song_extras(shared["metas"], song), "seed": song.seed,
                 **({"retake_seed": retakes[song.take]} if retakes else {}), "format": song.format,
                 "bytes": song.size, "sha256": song.sha256, "duration": song.duration_s,
                 **({"track_name": song.stem} if stems else {})} for song in task.songs]
    if task.state is TaskState.FAILED:
        return [{"file": "", **base, "status": 2, "progress": task.progress, "stage": "failed", "error": task.error}]
    return [{"file": "", **base, "status": 0, "progress": task.progress, "stage": task.stage}]


# -- the app --------------------------------------------------------------------------------------

def create_app(engine: Engine, manager: TaskManager, settings: ApiSettings) -> FastAPI:
    app = FastAPI(title="ACE-Step 1.5 API", version=__version__,
                  description="Upstream-compatible ACE-Step 1.5 music generation API.")
    app.add_middleware(AccessGuard, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes,
                       open_paths=OPEN_PATHS, body_token_paths=BODY_TOKEN_PATHS)
    app.add_exception_handler(InputError, _input_error)
    ctx = RouteContext(engine, manager, settings)
    for register in (register_health, model_routes.register, lora_routes.register, register_tasks,
                     chat_routes.register, register_planner, sample_routes.register, register_files,
                     register_stats):  # the order /docs lists them in
        register(app, ctx)
    return app


async def _input_error(_: Request, exc: InputError) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "field": exc.field}, status_code=400)


def register_health(app: FastAPI, ctx: RouteContext) -> None:
    engine = ctx.engine

    @app.get("/health")
    async def health() -> dict:
        return wrap({"status": "ok", "service": "ACE-Step API", "version": __version__,
                     "models_initialized": True, "llm_initialized": engine.models.planner is not None,
                     "loaded_model": engine.models.default_model, "loaded_lm_model": ctx.lm_model() or None,
                     "random_weights": engine.models.random_weights})


# -- tasks: release, query, cancel ----------------------------------------------------------------

_TEXT = {"type": "string"}
_TEXTS = {"type": "array", "items": _TEXT}


def _release_task_schema() -> dict:
    schema = GenerationRequest.model_json_schema()
    schema["properties"]["ai_token"] = {"type": "string"}
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": schema}}}}


def _body_schema(**properties: dict) -> dict:
    """openapi_extra for a JSON object body with these properties (name: JSON schema)."""
    return {"requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": properties}}}}}


def register_tasks(app: FastAPI, ctx: RouteContext) -> None:
    manager = ctx.manager

    @app.post("/release_task", openapi_extra=_release_task_schema())
    async def release_task(request: Request) -> JSONResponse:
        uploads: list = []
        body = await ctx.authorized_body(request, uploads)
        return await _queue_generation(manager, body, uploads)

    @app.post("/query_result", openapi_extra=_body_schema(task_id_list=_TEXTS, ai_token=_TEXT))
    async def query_result(request: Request) -> dict:
        body = await ctx.authorized_body(request)
        return wrap([_query_entry(ctx, task_id) for task_id in task_ids(body.get("task_id_list"))])

    @app.post("/cancel_task", openapi_extra=_body_schema(task_id=_TEXT, ai_token=_TEXT))
    async def cancel_task(request: Request) -> dict:
        """Not in upstream (which has no cancel): a queued task leaves the queue, a running one
        stops at its next step and keeps no file; either is then failed with "cancelled"."""
        body = await ctx.authorized_body(request)
        task_id = body.get("task_id")
        if not isinstance(task_id, str) or not task_id.strip():
            raise InputError("task_id", "task_id must be the id that /release_task returned")
        task = manager.cancel(task_id)
        if task is None:
            raise HTTPException(404, f"task {echo(task_id)} not found (unknown, or expired)")
        stopping = task.state is TaskState.RUNNING
        return wrap({"task_id": task.id, "status": STATUS_CODES[task.state],
                     "stage": "cancelling" if stopping else task.stage, "error": task.error})


async def _queue_generation(manager: TaskManager, body: dict, uploads: list) -> JSONResponse:
    """/release_task's work: store the uploads, validate, check and queue; the answer or a 429."""
    stored: list[Path] = []
    try:
        fields = await run_in_threadpool(attach, generation_fields(body), uploads, stored, manager.input_dir,
                                         manager.audio_policy.limits)
        generation = parse(fields, TimedRequest)
        # What the model cannot do, or bad audio, is a 400 now, not a failure in the queue.
        task = await run_in_threadpool(manager.submit, generation, stored)
    except QueueFull as exc:
        discard(stored)
        return JSONResponse({"detail": "Server busy: queue is full"}, status_code=429,
                            headers={"Retry-After": str(exc.retry_after_s)})
    except BaseException:
        discard(stored)
        raise
    unused = unused_fields(generation, task.plan.replaced)
    return JSONResponse(wrap({"task_id": task.id, "status": "queued",
                              "queue_position": manager.queue_position(task) or 1},
                             extra={"unused": unused} if unused else None))


def _query_entry(ctx: RouteContext, task_id: str) -> dict:
    """One task's item in /query_result's answer; an unknown id is a failed task that says so."""
    task = ctx.manager.get(task_id)
    if task is None:
        error = f"task {echo(task_id)} not found (unknown, or expired)"
        return {"task_id": task_id, "status": 2, "error": error, "progress_text": error,
                "result": json.dumps([{"file": "", "status": 2, "stage": "not_found", "error": error}])}
    items = result_items(task, ctx.lm_model(), ctx.settings.env)
    entry = {"task_id": task.id, "status": STATUS_CODES[task.state],
             "result": json.dumps(items, ensure_ascii=False),
             "progress_text": task.error or f"{task.stage} ({round(100 * task.progress)}%)",
             "progress": task.progress, "stage": task.stage}
    if task.state is TaskState.QUEUED:
        entry["queue_position"] = ctx.manager.queue_position(task)
    if task.error:
        entry["error"] = task.error
    return entry


# -- the planner: format_input --------------------------------------------------------------------

def register_planner(app: FastAPI, ctx: RouteContext) -> None:
    engine = ctx.engine

    @app.post("/format_input", openapi_extra=_body_schema(prompt=_TEXT, lyrics=_TEXT, temperature={"type": "number"},
                                                          param_obj={"type": "object"}))
    async def format_input(request: Request) -> JSONResponse:
        body = await ctx.authorized_body(request)
        if engine.models.planner is None:
            raise HTTPException(503, needs_planner("/format_input"))
        checked = _format_request(body)
        try:
            # the planner never runs on the event loop
            data = await run_in_threadpool(planner_services.format_input, engine.models, checked)
        except PlannerUnavailableError as exc:
            raise HTTPException(503, str(exc)) from None
        except AceStepError as exc:
            return JSONResponse(wrap(None, 500, f"format_sample failed: {exc}"))
        return JSONResponse(wrap(data))


def _format_request(body: dict) -> GenerationRequest:
    """/format_input's fields in upstream's names, validated through the one schema: the same names,
    aliases and ranges as everywhere else."""
    params = _nested(body.get("param_obj"), "param_obj")
    fields = {"caption": body.get("prompt", body.get("caption", "")), "lyrics": body.get("lyrics", ""),
              "lm_temperature": body.get("temperature", 0.85), "duration": params.get("duration"),
              "bpm": params.get("bpm"), "key_scale": params.get("key_scale", params.get("key")),
              "time_signature": params.get("time_signature", body.get("time_signature")),
              "vocal_language": params.get("language")}
    return parse({k: v for k, v in fields.items() if v not in (None, "")})


# -- files and stats ------------------------------------------------------------------------------

def register_files(app: FastAPI, ctx: RouteContext) -> None:
    output_dir = ctx.manager.output_dir.resolve()

    @app.get("/v1/audio")
    async def audio(request: Request, filename: str | None = Query(None),
                    path: str | None = Query(None)) -> FileResponse:
        ctx.header_auth(request)
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


def register_stats(app: FastAPI, ctx: RouteContext) -> None:
    @app.get("/v1/stats")
    async def stats(request: Request) -> dict:
        ctx.header_auth(request)
        return wrap(ctx.manager.stats())


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

