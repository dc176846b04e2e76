"""Pod mode: the upstream-compatible HTTP API and the Gradio page in one process, one engine.

    python -m acestep_worker serve        (or ACESTEP_MODE=pod python handler.py in the image)

The API listens on ACESTEP_API_HOST:ACESTEP_API_PORT (0.0.0.0:8000), the page on
ACESTEP_GRADIO_PORT (7860; 0 turns it off). Both submit to one bounded task queue
(ACESTEP_QUEUE_MAXSIZE, 200) drained by one generation thread; results and their files expire after
ACESTEP_RESULT_TTL seconds (86400). ACESTEP_API_KEY enables authentication.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Callable, Mapping

from ...settings import env_value, in_range
from . import defaults

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PodSettings:
    host: str = defaults.HOST
    port: int = defaults.API_PORT
    gradio_port: int = defaults.GRADIO_PORT
    queue_maxsize: int = defaults.QUEUE_MAXSIZE
    result_ttl_s: float = defaults.RESULT_TTL_S
    api_key: str | None = None
    max_body_bytes: int = defaults.MAX_BODY_BYTES
    result_max_tasks: int | None = defaults.RESULT_MAX_TASKS  # finished tasks kept (0/None: no cap); oldest go first
    result_max_bytes: int | None = defaults.RESULT_MAX_BYTES  # their audio on disk

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "PodSettings":
        env = os.environ if env is None else env
        key = env.get("ACESTEP_API_KEY")
        if key is not None and not key.strip():
            log.warning("ACESTEP_API_KEY is set but empty: authentication is OFF")
        port = "an integer port from 1 to 65535"
        return cls(host=env.get("ACESTEP_API_HOST") or defaults.HOST,
                   port=env_value(env, "ACESTEP_API_PORT", defaults.API_PORT, in_range(int, 1, 65535), port),
                   gradio_port=env_value(env, "ACESTEP_GRADIO_PORT", defaults.GRADIO_PORT, in_range(int, 0, 65535),
                                         port + " (0: no page)"),
                   queue_maxsize=env_value(env, "ACESTEP_QUEUE_MAXSIZE", defaults.QUEUE_MAXSIZE,
                                           in_range(int, 1, 100_000), "an integer from 1 to 100000"),
                   result_ttl_s=env_value(env, "ACESTEP_RESULT_TTL", defaults.RESULT_TTL_S,
                                          in_range(float, 1, 365 * 86_400), "seconds from 1 to 31536000"),
                   api_key=key.strip() if key and key.strip() else None,
                   max_body_bytes=_megabytes(env, "ACESTEP_MAX_BODY_MB", defaults.MAX_BODY_BYTES, 0.01, 4096,
                                             "megabytes from 0.01 to 4096"),
                   result_max_tasks=env_value(env, "ACESTEP_RESULT_MAX_TASKS", defaults.RESULT_MAX_TASKS,
                                              in_range(int, 0, 10**9), "a whole number of tasks, or 0 for no limit")
                   or None,
                   result_max_bytes=_megabytes(env, "ACESTEP_RESULT_MAX_MB", defaults.RESULT_MAX_BYTES, 0, 1e9,
                                               "megabytes, or 0 for no limit") or None)


def _megabytes(env: Mapping[str, str], name: str, default_bytes: int, low: float, high: float,
               accepted: str) -> int:
    """A size the variable gives in megabytes (fractions allowed), in bytes; `default_bytes` when unset."""
    return int(1_000_000 * env_value(env, name, default_bytes / 1_000_000, in_range(float, low, high), accepted))


def build(engine, pod: PodSettings):
    """The API app, the Gradio app (or None) and the task manager, sharing `engine`."""
    from .api import ApiSettings, create_app
    from .queue import TaskManager

    manager = TaskManager(engine, engine.settings.output_dir, maxsize=pod.queue_maxsize, ttl_s=pod.result_ttl_s,
                          max_tasks=pod.result_max_tasks, max_bytes=pod.result_max_bytes).start()
    api = create_app(engine, manager, ApiSettings(api_key=pod.api_key, max_body_bytes=pod.max_body_bytes))
    page = page_app(engine, manager, pod.api_key, pod.max_body_bytes) if pod.gradio_port else None
    return api, page, manager


def page_app(engine, manager, api_key: str | None, max_body_bytes: int):
    """The Gradio page as an app. With a key, Gradio's own login form guards the page and every
    route under it (queue, uploads, `/gradio_api/file=`): any user name, the key as the password."""
    import gradio as gr
    from fastapi import FastAPI

    from .guard import AccessGuard, keys_match
    from .page.form import build_ui

    login = None
    if api_key:
        def login(_user: str, password: str) -> bool:
            return keys_match(password, api_key)

    page = build_ui(engine, manager)
    # Gradio copies every song it shows into its cache; those copies expire with the tasks.
    page.delete_cache = (int(min(3600, manager.ttl_s)), int(manager.ttl_s))
    app = gr.mount_gradio_app(FastAPI(), page, path="/", auth=login,
                              auth_message="This page is protected by the server's ACESTEP_API_KEY: enter any "
                                           "user name and the key as the password." if api_key else None,
                              allowed_paths=[str(engine.settings.output_dir.resolve())])
    return AccessGuard(app, api_key=None, max_body_bytes=max_body_bytes)


def run_servers(apps: list[tuple[object, str, int]], on_start: Callable[[list], None] | None = None) -> None:
    """Serve each app on its own thread and event loop until the first one stops.

    Gradio runs page handlers in its event loop's worker threads (anyio's pool of 40); sharing a
    loop, 40 waiting page users would stall the API's file downloads and thread-pool work. Apart,
    each has its own pool. The first app runs on the calling thread (and gets Ctrl-C).
    """
    import uvicorn

    servers = [uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info", workers=1))
               for app, host, port in apps]
    threads = [threading.Thread(target=server.run, name=f"http-{port}", daemon=True)
               for server, (_, _, port) in zip(servers[1:], apps[1:])]
    for thread in threads:
        thread.start()
    if on_start is not None:
        on_start(servers)
    try:
        servers[0].run()
    finally:
        for server in servers[1:]:
            server.should_exit = True
        for thread in threads:
            thread.join(30)


def serve(env: Mapping[str, str] | None = None) -> None:
    from ...errors import AceStepError
    from ...pipeline.engine import Engine
    from ...settings import Settings

    try:
        settings = Settings.from_env(env)
        pod = PodSettings.from_env(env)
    except AceStepError as exc:  # a bad variable is a sentence and exit status 2, not a traceback
        raise SystemExit(f"cannot start: {exc}") from None
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    from ...delivery.files import tidy_output_dir

    tidy_output_dir(settings)  # partial files of a killed process, and the folder's budget
    if pod.api_key is None:
        log.warning("ACESTEP_API_KEY is not set: the API accepts requests without authentication")
    engine = Engine(settings)  # models load before any port opens: reaching /health means ready
    api, page, _ = build(engine, pod)
    apps = [(api, pod.host, pod.port)] + ([(page, pod.host, pod.gradio_port)] if page is not None else [])
    run_servers(apps)
