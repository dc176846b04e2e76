"""A loopback web server for audio downloads: a song, redirects, a slow answer and oversize bodies."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from .audio import WAV


class _Handler(http.server.BaseHTTPRequestHandler):
    routes = {}

    def do_GET(self):  # noqa: N802
        status, headers, body, delay = self.routes.get(self.path, (404, {}, b"missing", 0))
        time.sleep(delay)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers and "Connection" not in headers:  # else: the body ends at close
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def web():
    """(base URL, port) of the server; its routes are listed here."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    _Handler.routes = {
        "/song.wav": (200, {"Content-Type": "audio/wav"}, WAV, 0),
        "/hop": (302, {"Location": "/song.wav"}, b"", 0),
        "/loop": (302, {"Location": "/loop"}, b"", 0),
        "/to-file": (302, {"Location": "file:///etc/passwd"}, b"", 0),
        "/slow": (200, {}, WAV, 3.0),
        "/big-declared": (200, {"Content-Length": "999999999"}, b"", 0),
        "/big-undeclared": (200, {"Connection": "close"}, WAV * 3, 0),
    }
    yield f"http://127.0.0.1:{port}", port
    server.shutdown()
