"""Upstream's LoRA routes on the pod API, over the engine's adapters (they act on the default DiT
and on every later task that does not send its own `loras`).

    POST /v1/lora/load    {lora_path, adapter_name?}   a path inside ACESTEP_LORA_DIR; without a name
                                                       it replaces the loaded adapters (upstream)
    POST /v1/lora/unload  {}                           forget every global adapter
    POST /v1/lora/toggle  {use_lora: bool}             switch the global adapters on or off
    POST /v1/lora/scale   {scale, adapter_name?}       one adapter's scale, or all of them
    GET  /v1/lora/status                               {loaded, active, scale, adapters, scales}

Failures keep upstream's shape: HTTP 200 with `code: 400` and the sentence in `error`.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from ...errors import InputError
from ...schema.lora_refs import MAX_SCALE, LoraRef
from .wire import RouteContext, read_body, wrap

DEFAULT_NAME = "default"


def register(app: FastAPI, ctx: RouteContext) -> None:
    engine = ctx.engine
    adapters = engine.models.adapters

    def failed(exc: InputError) -> dict:
        return wrap(None, 400, str(exc))

    @app.post("/v1/lora/load")
    async def load(request: Request) -> dict:
        body = await read_body(request)
        path, name = body.get("lora_path"), body.get("adapter_name")
        if not isinstance(path, str) or not path.strip():
            return failed(InputError("lora_path", "lora_path must name an adapter file or folder inside "
                                                  "ACESTEP_LORA_DIR"))
        if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 100):
            return failed(InputError("adapter_name", "adapter_name must be text of 1 to 100 characters"))
        try:
            data = await run_in_threadpool(adapters.add_global, engine.models.dit(), name or DEFAULT_NAME,
                                           LoraRef("path", path.strip()), replace=name is None)
        except InputError as exc:
            return failed(exc)
        return wrap({**data, "message": f"✅ LoRA {data['adapter_name']!r} loaded ({data['format']}, rank "
                                        f"{data['rank']})"})

    @app.post("/v1/lora/unload")
    async def unload(request: Request) -> dict:
        await read_body(request)
        adapters.clear_global()
        return wrap({"message": "✅ LoRA adapters unloaded"})

    @app.post("/v1/lora/toggle")
    async def toggle(request: Request) -> dict:
        body = await read_body(request)
        value = body.get("use_lora")
        if not isinstance(value, bool):
            return failed(InputError("use_lora", "use_lora must be true or false"))
        adapters.state.use_lora = value
        return wrap({"use_lora": value, "message": f"✅ LoRA {'enabled' if value else 'disabled'}"})

    @app.post("/v1/lora/scale")
    async def scale(request: Request) -> dict:
        body = await read_body(request)
        value = body.get("scale")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_SCALE:
            return failed(InputError("scale", f"scale must be a number from 0 to {MAX_SCALE:g}; got {value!r}"))
        try:
            names = adapters.set_scale(body.get("adapter_name"), float(value))
        except InputError as exc:
            return failed(exc)
        return wrap({"adapter_names": names, "scale": float(value), "message": f"✅ LoRA scale set to {value:g}"})

    @app.get("/v1/lora/status")
    async def status() -> dict:
        return wrap({**adapters.status(), "available": adapters.available()})
