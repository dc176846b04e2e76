"""The doors of the pod: the key guards the API and the Gradio page alike, is checked before any
body is read, bodies are capped, and a saturated page does not stall the API."""

import json
import socket

import httpx
import psutil
import pytest

from acestep_worker.doors.pod.api import ApiSettings, create_app
from acestep_worker.doors.pod.launch import page_app

from ..support.live_server import LiveServer

KEY = "page-key"


@pytest.fixture(scope="module")
def locked_page(engine, manager):
    with LiveServer(page_app(engine, manager, KEY, 2_000_000)) as server:
        yield server.url


@pytest.fixture(scope="module")
def locked_api(engine, manager):
    with LiveServer(create_app(engine, manager, ApiSettings(api_key=KEY, max_body_bytes=2_000_000))) as server:
        yield server.url


@pytest.fixture(scope="module")
def song_file(engine):
    path = engine.settings.output_dir / "page-secret-1.mp3"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"ID3 not really audio")
    yield path
    path.unlink(missing_ok=True)


def test_the_page_gives_an_anonymous_client_nothing(locked_page, song_file):
    from gradio_client import Client

    with pytest.raises(Exception):
        Client(locked_page, verbose=False).predict(api_name="/generate")
    for route in ("/config", "/gradio_api/info", f"/gradio_api/file={song_file.resolve()}",
                  "/gradio_api/queue/join"):
        response = httpx.get(locked_page + route)
        assert response.status_code in (401, 403, 405), route
        assert b"ID3" not in response.content


def test_the_page_opens_with_the_key_as_password(locked_page, song_file):
    with httpx.Client(base_url=locked_page) as client:
        assert client.post("/login", data={"username": "anyone", "password": "wrong"}).status_code >= 400
        assert client.post("/login", data={"username": "anyone", "password": KEY}).status_code == 200
        assert client.get("/config").status_code == 200
        served = client.get(f"/gradio_api/file={song_file.resolve()}")
    assert served.status_code == 200 and served.content.startswith(b"ID3")


def _raw_post(url: str, path: str, headers: dict, body_chunks, read_reply=True) -> str:
    """POST over a plain socket, so the test controls how much of the body is ever sent."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(head.encode() + b"\r\n")
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking the whole body: what we want
        return sock.recv(65536).decode("latin-1")


def test_a_wrong_key_is_refused_before_the_body_is_read(locked_api):
    process = psutil.Process()
    before = process.memory_info().rss
    reply = _raw_post(locked_api, "/release_task", {"Content-Type": "application/json",
                                                    "Content-Length": "200000000", "Authorization": "Bearer nope"},
                      [b"{" + b" " * 1_000_000])
    assert reply.startswith("HTTP/1.1 401") and "Invalid API key" in reply
    assert process.memory_info().rss - before < 50_000_000


def test_a_header_less_big_body_is_refused_before_it_is_read(locked_api):
    reply = _raw_post(locked_api, "/release_task", {"Content-Type": "application/json",
                                                    "Content-Length": "1500000"}, [b"{" + b" " * 1000])
    assert reply.startswith("HTTP/1.1 401") and "ai_token" in reply


def test_bodies_over_the_cap_are_413_declared_or_streamed(locked_api):
    auth = {"Authorization": f"Bearer {KEY}"}
    declared = httpx.post(f"{locked_api}/release_task", content=b"x" * 2_100_000,
                          headers={**auth, "content-type": "application/json"})
    assert declared.status_code == 413 and "ACESTEP_MAX_BODY_MB" in declared.json()["detail"]

    def chunks():
        for _ in range(30):
            yield b" " * 100_000

    streamed = httpx.post(f"{locked_api}/release_task", content=chunks(),
                          headers={**auth, "content-type": "application/json"})
    assert streamed.status_code == 413
    assert httpx.get(f"{locked_api}/health").status_code == 200  # and the server is fine


def test_ai_token_in_a_small_body_still_works(locked_api):
    ok = httpx.post(f"{locked_api}/query_result", json={"task_id_list": [], "ai_token": KEY})
    assert ok.status_code == 200
    assert httpx.post(f"{locked_api}/query_result", json={"task_id_list": [], "ai_token": "bad"}).status_code == 401


@pytest.mark.parametrize("token", ["\ud800", "\udfff x", "é" * 3])
def test_odd_tokens_are_401_never_500(locked_api, token):
    body = json.dumps({"task_id_list": [], "ai_token": token})  # json.dumps escapes lone surrogates
    response = httpx.post(f"{locked_api}/query_result", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 401
    assert httpx.get(f"{locked_api}/v1/stats", headers={"Authorization": "Bearer \xe9".encode("latin-1")}).status_code == 401


def test_docs_and_schema_need_the_key_when_one_is_set(locked_api):
    for route in ("/docs", "/openapi.json", "/redoc"):
        assert httpx.get(locked_api + route).status_code == 401, route
    assert httpx.get(f"{locked_api}/openapi.json", headers={"Authorization": KEY}).status_code == 200
    assert httpx.get(f"{locked_api}/health").status_code == 200
    assert httpx.get(f"{locked_api}/v1/models").status_code == 200


def test_a_saturated_page_does_not_stall_the_api(engine, manager):
    """60 page requests hold every worker thread of the page's event loop; the API, served by the
    same run_servers() as `serve`, still streams a file (which needs a worker thread)."""
    import threading

    from fastapi import FastAPI

    from acestep_worker.doors.pod.launch import run_servers

    from ..support.live_server import free_port

    release = threading.Event()
    page = FastAPI()

    @page.get("/slow")
    def slow() -> dict:  # a sync handler: runs in the loop's worker threads, as Gradio's do
        release.wait(60)
        return {}

    song = engine.settings.output_dir / "saturation-1.mp3"
    song.parent.mkdir(parents=True, exist_ok=True)
    song.write_bytes(b"ID3 audio")
    api_port, page_port = free_port(), free_port()
    servers = []
    runner = threading.Thread(target=run_servers, daemon=True, kwargs={
        "apps": [(create_app(engine, manager, ApiSettings()), "127.0.0.1", api_port), (page, "127.0.0.1", page_port)],
        "on_start": servers.extend})
    runner.start()
    try:
        for port in (api_port, page_port):
            for _ in range(300):
                try:
                    httpx.get(f"http://127.0.0.1:{port}/nothing", timeout=1)
                    break
                except httpx.TransportError:
                    threading.Event().wait(0.1)
        blockers = [threading.Thread(target=httpx.get, args=(f"http://127.0.0.1:{page_port}/slow",),
                                     kwargs={"timeout": 90}, daemon=True) for _ in range(60)]
        for blocker in blockers:
            blocker.start()
        threading.Event().wait(2)  # let them occupy the page's 40 worker threads
        served = httpx.get(f"http://127.0.0.1:{api_port}/v1/audio", params={"filename": song.name}, timeout=30)
        assert served.status_code == 200 and served.content == b"ID3 audio"
    finally:
        release.set()
        servers[0].should_exit = True
        runner.join(30)
        song.unlink(missing_ok=True)
