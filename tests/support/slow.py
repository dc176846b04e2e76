"""A hostile loopback sender for the download deadline and cancel tests, defined once.

    /trickle...  200 with a 1 MB Content-Length, then one byte per second
    /silent...   200 with a 1 MB Content-Length, then nothing at all

Any path works (`/trickle.wav`, `/trickle/adapter.safetensors`); the prefix picks the behaviour. Each
connection is cut by the server after GIVE_UP_S, so a client that never stops fails its test instead of
hanging it. `closed_after` records, per path, how long the client kept each connection open.
"""

from __future__ import annotations

import datetime
import http.server
import select
import ssl
import threading
import time
from pathlib import Path

import pytest

GIVE_UP_S = 12.0
DECLARED = 1_000_000


class SlowServer:
    """`tls`: a server-side SSLContext (see `self_signed`); the URL is then https://localhost:<port>."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.stopping = threading.Event()
        self.closed_after: dict[str, list[float]] = {}
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        port = self.server.server_address[1]
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://localhost:{port}" if tls is not None else f"http://127.0.0.1:{port}"

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


def self_signed(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a fresh self-signed certificate for localhost and 127.0.0.1, and the
    certificate's file (for a client that should trust it)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


@pytest.fixture(scope="module")
def slow_server():
    with SlowServer() as server:
        yield server
