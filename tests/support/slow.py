"""A hostile loopback sender for the download deadline and cancel tests, defined once.

    /trickle...  200 with a 1 MB Content-Length, then one byte per second
    /silent...   200 with a 1 MB Content-Length, then nothing at all

Any path works (`/trickle.wav`, `/trickle/adapter.safetensors`); the prefix picks the behaviour. Each
connection is cut by the server after GIVE_UP_S, so a client that never stops fails its test instead of
hanging it. `closed_after` records, per path, how long the client kept each connection open.
"""

from __future__ import annotations

import http.server
import select
import threading
import time

import pytest

GIVE_UP_S = 12.0
DECLARED = 1_000_000


class SlowServer:
    def __init__(self):
        self.stopping = threading.Event()
        self.closed_after: dict[str, list[float]] = {}
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "SlowServer":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def wait_closed(self, path: str, timeout: float = 3.0) -> float:
        """How long the client kept `path`'s (latest) connection open, once it has closed it."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.closed_after.get(path):
                return self.closed_after[path][-1]
            time.sleep(0.02)
        raise AssertionError(f"the client kept {path} open")

    def _handler(self):
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _client_gone(self) -> bool:
                readable, _, _ = select.select([self.connection], [], [], 0)
                if not readable:
                    return False
                try:
                    return self.connection.recv(1, 0x2) == b""  # MSG_PEEK: EOF means the client closed
                except OSError:
                    return True

            def do_GET(self):  # noqa: N802
                started = time.monotonic()
                trickle = self.path.startswith("/trickle")
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(DECLARED))
                self.end_headers()
                self.wfile.flush()
                next_byte = time.monotonic()
                try:
                    while not owner.stopping.is_set() and time.monotonic() - started < GIVE_UP_S:
                        if self._client_gone():
                            break
                        if trickle and time.monotonic() >= next_byte:
                            self.wfile.write(b"R")
                            self.wfile.flush()
                            next_byte += 1.0
                        time.sleep(0.02)
                except OSError:
                    pass
                owner.closed_after.setdefault(self.path, []).append(time.monotonic() - started)
                self.close_connection = True

        return Handler


@pytest.fixture(scope="module")
def slow_server():
    with SlowServer() as server:
        yield server
