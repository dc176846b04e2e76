"""`POST /v1/chat/completions`: upstream's OpenRouter-compatible route, over the pod's one task queue.

The request is read by chat_wire.py into a generation request and queued like any `/release_task`
task (same checks at submission, same runner, visible in `/query_result` and `/v1/stats` under its
own id); the route then waits for it and answers in OpenAI's chat shape, the songs inline as data
URLs. With `"stream": true` the answer is server-sent events: an empty first chunk at once, a `"."`
heartbeat every 2 s while the task waits or runs, then the summary, the audio, the finish reason
and `[DONE]`. A client that goes away cancels its task, queued or running.

Status codes: 400 for a request the schema refuses (as `/release_task`), 429 with Retry-After when
the queue is full; a task that fails answers 504 when it ran past its `timeout_seconds`, 400 when
its input failed at run time (a URL that cannot be fetched), and 500 otherwise, each with the
task's error as `detail` (streamed: an `Error:` chunk and `finish_reason: "error"`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from ...errors import InputError
from ...runner.deadline import JobTimedOut
from .chat_wire import (
    MODEL_PREFIX,
    ChunkWriter,
    audio_url,
    completion,
    read_chat,
    summary,
)
from .queue import QueueFull, Task, TaskManager, TaskState
from .wire import RouteContext, read_body

HEARTBEAT_S = 2.0  # upstream's: one "." chunk this often while the song is made
POLL_S = 0.25  # how often a waiting route looks at its task and its client


def register(app: FastAPI, ctx: RouteContext) -> None:
    @app.post("/v1/chat/completions", openapi_extra=_chat_schema())
    async def chat_completions(request: Request):
        ctx.header_auth(request)
        chat = read_chat(await read_body(request))
        model_id = chat.model_id or MODEL_PREFIX + (chat.generation.model or ctx.engine.models.default_model)
        try:
            task = await run_in_threadpool(ctx.manager.submit, chat.generation)
        except QueueFull as exc:
            return JSONResponse({"detail": "Server busy: queue is full"}, status_code=429,
                                headers={"Retry-After": str(exc.retry_after_s)})
        if chat.stream:
            return StreamingResponse(_events(ctx.manager, task, model_id), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        if not await _settled(ctx.manager, task, request):
            return JSONResponse({"detail": "the client went away; the task was cancelled"}, status_code=400)
        if task.state is not TaskState.SUCCEEDED:
            raise HTTPException(_failure_status(task), task.error or "Generation failed")
        return JSONResponse(completion(model_id, summary(task.params), await run_in_threadpool(_songs, task)))


async def _settled(manager: TaskManager, task: Task, request: Request) -> bool:
    """Wait for the task to end; False (and the task cancelled) when the client disconnects first."""
    while not task.done.is_set():
        if await request.is_disconnected():
            manager.cancel(task.id)
            return False
        await asyncio.sleep(POLL_S)
    return True


async def _events(manager: TaskManager, task: Task, model_id: str) -> AsyncIterator[str]:
    writer = ChunkWriter.start(model_id)
    finished = False
    try:
        yield writer.event({"role": "assistant", "content": ""})
        waited = 0.0
        while not task.done.is_set():
            await asyncio.sleep(POLL_S)
            waited += POLL_S
            if waited >= HEARTBEAT_S:
                waited = 0.0
                yield writer.event({"content": "."})
        if task.state is TaskState.SUCCEEDED:
            yield writer.event({"content": "\n\n" + summary(task.params)})
            yield writer.event({"audio": await run_in_threadpool(_songs, task)})
            yield writer.event({}, "stop")
        else:
            yield writer.event({"content": f"\n\nError: {task.error or 'Generation failed'}"})
            yield writer.event({}, "error")
        yield ChunkWriter.DONE
        finished = True
    finally:
        if not finished:  # the client left mid-stream: nobody will read this song
            manager.cancel(task.id)


def _songs(task: Task) -> list[dict]:
    return [audio_url(song.read(), song.format) for song in task.songs]


def _failure_status(task: Task) -> int:
    failure = task.failure
    if failure is not None and issubclass(failure, JobTimedOut):
        return 504
    if failure is not None and issubclass(failure, InputError):
        return 400
    return 500


def _chat_schema() -> dict:
    """openapi_extra: the body's documented fields (the rest of /release_task's fields pass through)."""
    text, number = {"type": "string"}, {"type": "number"}
    part = {"type": "object", "properties": {"type": {"type": "string", "enum": ["text", "input_audio"]},
                                             "text": text, "input_audio": {"type": "object"}}}
    message = {"type": "object", "required": ["role", "content"], "properties": {
        "role": {"type": "string", "enum": ["system", "user", "assistant"]},
        "content": {"anyOf": [text, {"type": "array", "items": part}]}}}
    audio_config = {"type": "object", "properties": {
        "duration": number, "bpm": {"type": "integer"}, "key_scale": text, "time_signature": text,
        "vocal_language": text, "instrumental": {"type": "boolean"}, "format": text}}
    schema = {"type": "object", "required": ["messages"], "properties": {
        "model": text, "messages": {"type": "array", "items": message}, "stream": {"type": "boolean"},
        "audio_config": audio_config, "temperature": number, "top_p": number, "top_k": {"type": "integer"},
        "seed": {"anyOf": [{"type": "integer"}, text]}, "lyrics": text, "sample_mode": {"type": "boolean"},
        "thinking": {"type": "boolean"}, "use_format": {"type": "boolean"}, "batch_size": {"type": "integer"},
        "guidance_scale": number, "task_type": text}}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
