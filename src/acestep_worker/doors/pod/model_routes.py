"""Model routes of the pod API: `/v1/models`, `/v1/model_inventory`, `/v1/init`, `/v1/reinitialize`,
`/create_random_sample`.

Shapes follow upstream. `/v1/models` keeps the OpenRouter list that upstream clients actually
receive there (upstream mounts that router first), with the inventory fields added beside it;
`/v1/model_inventory` is upstream's wrapped inventory. `/v1/init` swaps the DiT (and optionally
the planner LM) held in memory and is refused while any task is queued or running.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ...errors import AceStepError, InputError
from .samples import random_sample
from .wire import RouteContext, read_body, wrap

if TYPE_CHECKING:
    from ...pipeline.engine import Engine


def inventory(engine: Engine) -> dict:
    """What upstream's `/v1/model_inventory` reports: DiTs with their task types, and the planner LMs."""
    loaded_lm = engine.models.planner.name if engine.models.planner is not None else None
    return {"models": [{"name": m.name, "is_default": m.is_default, "is_loaded": m.loaded,
                        "supported_task_types": engine.models.supported_task_types(m.name)} for m in engine.models.installed()],
            "default_model": engine.models.default_model,
            "lm_models": [{"name": name, "is_loaded": name == loaded_lm} for name in engine.models.lm_models()],
            "loaded_lm_model": loaded_lm, "llm_initialized": engine.models.planner is not None}


def register(app: FastAPI, ctx: RouteContext) -> None:
    engine = ctx.engine

    @app.get("/v1/models")
    async def models() -> dict:
        return model_list(engine)

    @app.get("/v1/model_inventory")
    async def model_inventory(request: Request, _: None = Depends(ctx.header_auth)) -> dict:
        return wrap(inventory(engine))

    @app.post("/v1/init")
    async def init(request: Request, _: None = Depends(ctx.header_auth)) -> JSONResponse:
        return await _switch_models(ctx, await read_body(request))

    @app.post("/v1/reinitialize")
    async def reinitialize(request: Request, _: None = Depends(ctx.header_auth)) -> dict:
        """Upstream reloads components it offloaded; this engine never unloads its models, so this
        only reports what is held (a client calls it after an error, and expects it to succeed)."""
        await read_body(request)
        listing = inventory(engine)
        return wrap({"message": "Service reinitialized: the models stay loaded in this server",
                     "loaded_model": listing["default_model"], "loaded_lm_model": listing["loaded_lm_model"],
                     "llm_initialized": listing["llm_initialized"]})

    @app.post("/create_random_sample")
    async def create_random_sample(request: Request) -> JSONResponse:
        body = await ctx.authorized_body(request)
        sample_type = str(body.get("sample_type") or "simple_mode")
        data: dict[str, Any] = await run_in_threadpool(random_sample, engine, sample_type, random.Random())
        return JSONResponse(wrap(data))


def model_list(engine: Engine) -> dict:
    """/v1/models: the OpenRouter list upstream clients receive there, the inventory's fields beside it."""
    created = int(time.time()) - 30 * 86_400
    listing = inventory(engine)
    return {"object": "list", "data": [
        {"id": f"acestep/{m.name}", "name": f"ACE-Step {m.name}", "created": created,
         "input_modalities": ["text", "audio"], "output_modalities": ["audio", "text"],
         "context_length": 4096, "max_output_length": 600,
         "pricing": {"prompt": "0", "completion": "0", "request": "0", "image": "0"},
         "description": f"AI music generation model ({m.family})", "architecture": None,
         "is_default": m.is_default, "is_loaded": m.loaded,
         "supported_task_types": engine.models.supported_task_types(m.name)} for m in engine.models.installed()],
        **{k: v for k, v in listing.items()}}


async def _switch_models(ctx: RouteContext, body: dict) -> JSONResponse:
    """/v1/init's work: one slot, refused while any task is queued or running; failures in upstream's shape."""
    engine = ctx.engine
    slot = body.get("slot")
    if slot not in (None, 1, "1"):
        return JSONResponse(wrap(None, 400, f"Slot {slot} is not available: this server holds one DiT at a "
                                            "time (slot 1); name the model to switch to"))
    if ctx.manager.busy():
        return JSONResponse(wrap(None, 409, "Model switch refused: a task is queued or running; retry when "
                                            "/v1/stats shows no queued or running jobs"), status_code=409)
    init_llm = str(body.get("init_llm", False)).strip().lower() in ("1", "true", "yes", "y", "on")
    try:
        result = await run_in_threadpool(engine.models.init_models, body.get("model") or None, init_llm=init_llm,
                                         lm_model=body.get("lm_model_path") or None)
    except InputError as exc:
        return JSONResponse(wrap(None, 400, str(exc)))
    except AceStepError as exc:
        return JSONResponse(wrap(None, 500, f"Model initialization failed: {exc}"))
    listing = inventory(engine)
    return JSONResponse(wrap({"message": "Model initialization completed", "slot": 1, **result,
                              "models": listing["models"], "lm_models": listing["lm_models"],
                              "llm_initialized": listing["llm_initialized"]}))
