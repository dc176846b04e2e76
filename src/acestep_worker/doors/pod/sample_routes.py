"""`POST /v1/create_sample`: upstream's sample mode on its own, a description in, a song's text out.

    {"query": "an upbeat rock track with heavy guitars", "instrumental": false,
     "vocal_language": "en", "temperature": 0.85}
    -> {"data": {"caption", "lyrics", "bpm", "keyscale", "duration", "timesignature", "vocal_language"}, ...}

The planner writes a caption, lyrics and metadata that can be sent on to `/release_task`; nothing is
generated or queued. Upstream's four fields, no aliases (its other fields are ignored, as upstream
ignores them); `vocal_language` `unknown` (the default) lets the planner choose and is answered with
the language it chose. Values are checked by the one schema (the same languages and temperature
range as `/release_task`), and a bad one is a 400 naming the field as it was sent.

Like `/format_input`: 503 without a planner (upstream's status for an LM that is not loaded), and a
planner failure is HTTP 200 with `code: 500` and the reason in `error`. The body may carry the
key as `ai_token`. `/create_sample` is the same route under the name some upstream clients call.
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ...errors import AceStepError, InputError, PlannerUnavailableError, echo
from ...pipeline import planner_services
from ...schema.messages import needs_planner
from ...schema.request import parse
from ...schema.values import UNKNOWN_LANGUAGE
from .wire import RouteContext, wrap

PATHS = ("/v1/create_sample", "/create_sample")
# upstream's name -> the schema's, so the one schema checks each value
FIELDS = {"query": "sample_query", "vocal_language": "vocal_language", "temperature": "lm_temperature"}
TRUE, FALSE = {"true", "1", "yes", "y", "on"}, {"false", "0", "no", "n", "off", ""}


def register(app: FastAPI, ctx: RouteContext) -> None:
    engine = ctx.engine
    text, number = {"type": "string"}, {"type": "number"}
    body_schema = {"requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {
        "query": text, "instrumental": {"type": "boolean"}, "vocal_language": text, "temperature": number,
        "ai_token": text}}}}}}

    async def create_sample(request: Request) -> JSONResponse:
        body = await ctx.authorized_body(request)
        if engine.models.planner is None:
            raise HTTPException(503, needs_planner("/v1/create_sample"))
        query, instrumental, language, temperature = sample_request(body)
        try:
            # the planner never runs on the event loop
            data = await run_in_threadpool(planner_services.create_sample, engine.models, query,
                                           language=language, instrumental=instrumental, temperature=temperature)
        except PlannerUnavailableError as exc:  # unloaded by /v1/init meanwhile
            raise HTTPException(503, str(exc)) from None
        except AceStepError as exc:
            return JSONResponse(wrap(None, 500, f"create_sample error: {exc}"))
        return JSONResponse(wrap(sample_answer(data, language)))

    for path in PATHS:
        app.add_api_route(path, create_sample, methods=["POST"], openapi_extra=body_schema,
                          name=path.strip("/").replace("/", "_"))


def sample_request(body: dict) -> tuple[str, bool, str | None, float]:
    """(query, instrumental, language or None, temperature) from upstream's body, checked by the schema."""
    sent = {FIELDS[name]: body[name] for name in FIELDS if body.get(name) not in (None, "")}
    try:
        request = parse(sent)
    except InputError as exc:  # name the field as the caller sent it
        for given, canonical in FIELDS.items():
            if exc.field == canonical:
                raise InputError(given, str(exc).replace(canonical, given, 1)) from None
        raise
    return request.sample_query, _flag(body.get("instrumental")), request.vocal_language, request.lm_temperature


def _flag(value) -> bool:
    """upstream reads `instrumental` leniently (a bool, or text such as "true"); anything else is refused."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, (str, int)) and str(value).strip().lower() in TRUE | FALSE:
        return str(value).strip().lower() in TRUE
    raise InputError("instrumental", f"instrumental must be true or false; got {echo(value)}")


def sample_answer(data: dict, language: str | None) -> dict:
    """planner_services' sample in upstream's keys: absent text is "", absent numbers null."""
    return {"caption": data["caption"] or "", "lyrics": data["lyrics"] or "", "bpm": data["bpm"],
            "keyscale": data["keyscale"] or "", "duration": data["duration"],
            "timesignature": data["timesignature"] or "",
            "vocal_language": data["language"] or language or UNKNOWN_LANGUAGE}
