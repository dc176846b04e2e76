"""What every group of the pod API's routes shares: its settings, upstream's envelope, reading a
body in any of upstream's encodings, upstream's auth rules, and `RouteContext`, the one object a
group of routes is registered with (api.py assembles the groups; model_routes.py and
lora_routes.py hold some of them).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fastapi import HTTPException, Request

from . import defaults
from .guard import keys_match
from .uploads import UPLOAD_PARTS

if TYPE_CHECKING:
    from ...pipeline.engine import Engine
    from .queue import TaskManager


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


# -- what a group of routes is registered with ----------------------------------------------------

@dataclass(frozen=True)
class RouteContext:
    """The engine, the task queue and the settings that every route group reads, with the auth
    checks in the two forms the routes use."""
    engine: Engine
    manager: TaskManager
    settings: ApiSettings

    def lm_model(self) -> str:
        """The planner's name, or "": read each time, since /v1/init may swap the planner."""
        return self.engine.models.planner.name if self.engine.models.planner is not None else ""

    def header_auth(self, request: Request) -> None:
        """Endpoints without a body token (also usable as a FastAPI dependency)."""
        check_auth(request, self.settings)

    def body_auth(self, request: Request, body: dict) -> None:
        """Endpoints whose body may carry the key as `ai_token`, else the header."""
        check_auth(request, self.settings, body)

    async def authorized_body(self, request: Request, uploads: list | None = None) -> dict:
        """The body, read as `read_body` reads it, once its `ai_token` (or the header) passed."""
        body = await read_body(request, uploads)
        self.body_auth(request, body)
        return body
