"""Pod mode: the upstream-compatible HTTP API and the Gradio page in one process, one engine.

    python -m acestep_worker serve        (or ACESTEP_MODE=pod python handler.py in the image)

The API listens on ACESTEP_API_HOST:ACESTEP_API_PORT (0.0.0.0:8000), the page on
ACESTEP_GRADIO_PORT (7860; 0 turns it off). Both submit to one bounded task queue
(ACESTEP_QUEUE_MAXSIZE, 200) drained by one generation thread; results and their files expire after
ACESTEP_RESULT_TTL seconds (86400). ACESTEP_API_KEY enables authentication.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Mapping

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PodSettings:
    host: str = "0.0.0.0"
    port: int = 8000
    gradio_port: int = 7860
    queue_maxsize: int = 200
    result_ttl_s: float = 86_400.0
    api_key: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "PodSettings":
        env = os.environ if env is None else env
        key = env.get("ACESTEP_API_KEY")
        if key is not None and not key.strip():
            log.warning("ACESTEP_API_KEY is set but empty: authentication is OFF")
        return cls(host=env.get("ACESTEP_API_HOST", "0.0.0.0"), port=int(env.get("ACESTEP_API_PORT", "8000")),
                   gradio_port=int(env.get("ACESTEP_GRADIO_PORT", "7860")),
                   queue_maxsize=int(env.get("ACESTEP_QUEUE_MAXSIZE", "200")),
                   result_ttl_s=float(env.get("ACESTEP_RESULT_TTL", "86400")),
                   api_key=key.strip() if key and key.strip() else None)


def build(engine, pod: PodSettings):
    """The API app, the Gradio app (or None) and the task manager, sharing `engine`."""
    from fastapi import FastAPI

    from .api import ApiSettings, create_app
    from .tasks import TaskManager

    manager = TaskManager(engine, engine.settings.output_dir, pod.queue_maxsize, pod.result_ttl_s).start()
    api = create_app(engine, manager, ApiSettings(api_key=pod.api_key))
    page = None
    if pod.gradio_port:
        import gradio as gr

        from .ui import build_ui

        page = gr.mount_gradio_app(FastAPI(), build_ui(engine, manager), path="/",
                                   allowed_paths=[str(engine.settings.output_dir.resolve())])
    return api, page, manager


async def _serve(apps: list[tuple[object, str, int]]) -> None:
    import uvicorn

    servers = [uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info", workers=1))
               for app, host, port in apps]
    await asyncio.gather(*(server.serve() for server in servers))


def serve(env: Mapping[str, str] | None = None) -> None:
    from ..engine import Engine
    from ..settings import Settings

    settings = Settings.from_env(env)
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    pod = PodSettings.from_env(env)
    if pod.api_key is None:
        log.warning("ACESTEP_API_KEY is not set: the API accepts requests without authentication")
    engine = Engine(settings)  # models load before any port opens: reaching /health means ready
    api, page, _ = build(engine, pod)
    apps = [(api, pod.host, pod.port)] + ([(page, pod.host, pod.gradio_port)] if page is not None else [])
    asyncio.run(_serve(apps))
