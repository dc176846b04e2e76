"""The door of every pod app: the API key is checked from the headers before any body byte is
read, and no body may exceed the configured size.

An ASGI middleware, so it sees the request before FastAPI (or Gradio) reads anything:

* a `Content-Length` over the cap is a 413 at once; a streamed body is counted as it arrives and
  cut off with a 413 the moment it passes the cap;
* with a key set, every path except `open_paths` needs `Authorization: Bearer <key>` (or the bare
  key). A wrong header is a 401 before the body is read. Upstream clients may instead put the key
  in the body (`ai_token`) on `body_token_paths`; such header-less requests are let through only
  with small bodies (`body_token_max_bytes`), and the endpoint then checks the token itself.
"""

from __future__ import annotations

import hmac
import json
from typing import Awaitable, Callable, Iterable

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY_TOKEN_MAX_BYTES = 1_000_000  # an upstream JSON or form body with an ai_token is a few kB


def keys_match(given: str | None, key: str) -> bool:
    """Constant-time comparison that never raises, whatever the caller sent (lone surrogates too)."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), key.encode("utf-8", "surrogatepass"))


def header_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key from `Authorization: Bearer <key>` or `Authorization: <key>`, or None when absent."""
    for name, value in headers:
        if name.lower() == b"authorization":
            text = value.decode("latin-1").strip()
            return text[7:].strip() if text.lower().startswith("bearer ") else text
    return None


class _Refused(Exception):
    """Raised inside `receive` once a reply has been sent for a body that broke a limit."""


class AccessGuard:
    def __init__(self, app, *, api_key: str | None, max_body_bytes: int, open_paths: Iterable[str] = (),
                 body_token_paths: Iterable[str] = (), body_token_max_bytes: int = BODY_TOKEN_MAX_BYTES):
        self.app = app
        self.api_key = api_key or None
        self.max_body_bytes = max_body_bytes
        self.open_paths = frozenset(open_paths)
        self.body_token_paths = frozenset(body_token_paths)
        self.body_token_max_bytes = min(body_token_max_bytes, max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = scope.get("headers", [])
        limit, over_limit = self.max_body_bytes, (413, f"the request body exceeds {_mb(self.max_body_bytes)} "
                                                        "(ACESTEP_MAX_BODY_MB)")
        if self.api_key and path not in self.open_paths:
            token = header_token(headers)
            if token is not None and not keys_match(token, self.api_key):
                await _reply(send, 401, "Invalid API key")
                return
            if token is None:
                if path not in self.body_token_paths:
                    await _reply(send, 401, "Missing Authorization header")
                    return
                # No header: the key can only be in the body, read only while it is small.
                limit = self.body_token_max_bytes
                over_limit = (401, "Missing Authorization header (an ai_token is read only from bodies up to "
                                   f"{_mb(limit)}; send large bodies with the header)")
        declared = _content_length(headers)
        if declared is not None and declared > limit:
            await _reply(send, *over_limit)
            return

        received = 0
        replied = False

        async def limited_receive() -> Message:
            nonlocal received, replied
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not replied:
                        replied = True
                        await _reply(send, *over_limit)
                    raise _Refused()
            return message

        async def guarded_send(message: Message) -> None:
            if not replied:  # after our own reply, whatever the app says goes nowhere
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if replied:  # the app saw its body cut off; the client already has its answer
                return
            raise


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _mb(size: int) -> str:
    return f"{size / 1_000_000:g} MB"


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
