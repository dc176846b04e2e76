"""The one way this server downloads anything a caller names: audio by URL, LoRA adapters by URL or
hub repo, and `s3://` objects (through a presigned GET URL).

    rules = DownloadRules(deadline=time.monotonic() + 120, check_size=cap, should_stop=cancelled.is_set,
                          limit="ACESTEP_AUDIO_FETCH_TIMEOUT")
    data = download("src_audio", url, "the audio file", rules)

The whole download, from resolving the host to the last byte, is bounded by `deadline` (a
time.monotonic() value), not each read: every blocking step (name lookup, connect, TLS handshake,
each send and receive) waits at most STEP_S at a time, and between those waits the deadline and
`should_stop()` are checked. So a sender trickling one byte per second, or one that sends its
headers and then nothing, is stopped at the deadline, and a cancel is seen within STEP_S, whatever
the sender does. Reads hand on what has arrived (no buffering to a chunk size), so the byte cap is
checked as the bytes come.

The connections are made by our own httpcore network backend (httpcore's documented extension
point), plugged into httpx through a custom transport (httpx's documented one): it resolves the
host itself, applies safe_http's address rules to every address, and connects only to an address
it checked. Redirects are followed by hand, each re-checked, at most MAX_REDIRECTS.
"""

from __future__ import annotations

import errno
import selectors
import socket
import ssl
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping
from urllib.parse import urljoin

import httpcore
import httpx

from ..errors import GenerationCancelled, InputError, bounded
from .safe_http import MAX_REDIRECTS, BlockedAddress, blocked_error, check_addresses, checked_url

STEP_S = 0.2  # the longest any one blocking call waits before the deadline and the cancel are checked
ERROR_BODY_BYTES = 4_096  # what is kept of a refusal's body (a bucket's XML error)


class Stopped(Exception):
    """The download's deadline passed (`reason` "deadline") or its job was cancelled ("cancel")."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class HTTPRefused(InputError):
    """The server answered something other than 200 (after redirects); `status` and the first bytes of
    its `body` are kept for callers that read them (a bucket's error code)."""

    def __init__(self, field: str, message: str, status: int, body: bytes):
        super().__init__(field, message)
        self.status, self.body = status, body


class Clock:
    """One download's deadline and cancel, asked before every blocking step."""

    def __init__(self, deadline: float, should_stop: Callable[[], bool] | None = None):
        self.deadline = deadline
        self.should_stop = should_stop or (lambda: False)

    def step(self) -> float:
        """How long the next blocking call may wait; raise Stopped when the download must end."""
        if self.should_stop():
            raise Stopped("cancel")
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Stopped("deadline")
        return min(STEP_S, left)


def resolve(host: str, port: int, clock: Clock) -> list[tuple[int, tuple]]:
    """(family, socket address) of each address of `host`, looked up in a helper thread (getaddrinfo
    cannot be interrupted) that the download stops waiting for at its deadline or cancel."""
    try:  # an IP address needs no lookup
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        return [(infos[0][0], infos[0][4])]
    except (OSError, UnicodeError):
        pass
    box: dict = {}
    done = threading.Event()

    def look_up() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=look_up, name="download-resolve", daemon=True).start()
    while not done.wait(clock.step()):
        pass
    if "error" in box:
        raise httpcore.ConnectError(f"cannot resolve {bounded(host, 80)} ({type(box['error']).__name__})")
    found = {}
    for family, _, _, _, address in box["infos"]:
        found.setdefault(address[0], (family, address))
    return list(found.values())


class _Stream(httpcore.NetworkStream):
    """A connected socket (plain or TLS) whose every wait is cut into the clock's steps."""

    def __init__(self, sock: socket.socket, clock: Clock):
        self._sock, self._clock = sock, clock

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        while True:  # the per-read timeout is replaced by the whole download's deadline
            self._sock.settimeout(self._clock.step())
            try:
                return self._sock.recv(max_bytes)
            except socket.timeout:
                continue
            except OSError as exc:
                raise httpcore.ReadError(f"{type(exc).__name__}: {exc}") from None

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        while view:
            self._sock.settimeout(self._clock.step())
            try:
                view = view[self._sock.send(view):]
            except socket.timeout:
                continue
            except OSError as exc:
                raise httpcore.WriteError(f"{type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        self._sock.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        try:
            tls = ssl_context.wrap_socket(self._sock, server_hostname=server_hostname, do_handshake_on_connect=False)
        except OSError as exc:
            self._sock.close()
            raise httpcore.ConnectError(f"{type(exc).__name__}: {exc}") from None
        try:
            while True:
                tls.settimeout(self._clock.step())
                try:
                    tls.do_handshake()
                    break
                except socket.timeout:
                    continue
        except OSError as exc:  # ssl.SSLError (a certificate refused, too) is an OSError
            tls.close()
            raise httpcore.ConnectError(f"{type(exc).__name__}: {exc}") from None
        except BaseException:
            tls.close()
            raise
        return _Stream(tls, self._clock)

    def get_extra_info(self, info: str):
        if info == "ssl_object":
            return self._sock if isinstance(self._sock, ssl.SSLSocket) else None
        if info == "socket":
            return self._sock
        if info == "client_addr":
            return self._sock.getsockname()
        if info == "server_addr":
            return self._sock.getpeername()
        if info == "is_readable":  # an idle pooled connection the server closed (or sent junk on)
            with selectors.DefaultSelector() as selector:
                selector.register(self._sock, selectors.EVENT_READ)
                return bool(selector.select(0))
        return None


class PinnedBackend(httpcore.NetworkBackend):
    """Resolves the host itself, refuses it if any address is not allowed, then connects to an
    address it checked, every wait bounded by `clock`. TLS still verifies the certificate against the
    host name (httpcore passes it to start_tls)."""

    def __init__(self, clock: Clock, allow_private: bool):
        self._clock, self._allow_private = clock, allow_private

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        addresses = resolve(host, port, self._clock)
        check_addresses(host, [address[0] for _, address in addresses], self._allow_private)
        error: Exception = httpcore.ConnectError(f"no address for {bounded(host, 80)}")
        for family, address in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                for option in socket_options or ():
                    sock.setsockopt(*option)
                self._connect(sock, address)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return _Stream(sock, self._clock)
            except OSError as exc:
                sock.close()
                error = httpcore.ConnectError(f"{type(exc).__name__}: {exc}")
            except BaseException:
                sock.close()
                raise
        raise error

    def _connect(self, sock: socket.socket, address: tuple) -> None:
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
            raise OSError(code, f"connect failed ({errno.errorcode.get(code, code)})")
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_WRITE)
            while code != 0 and not selector.select(self._clock.step()):
                pass
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, f"connect failed ({errno.errorcode.get(code, code)})")
        sock.setblocking(True)

    def connect_unix_socket(self, *args, **kwargs):
        raise httpcore.ConnectError("unix sockets are not reachable from a URL")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """httpcore's exceptions as httpx's of the same name (as httpx's own transport does)."""
    try:
        yield
    except httpcore.TimeoutException as exc:
        raise httpx.TimeoutException(str(exc)) from None
    except (httpcore.ConnectError, httpcore.ReadError, httpcore.WriteError, httpcore.RemoteProtocolError,
            httpcore.LocalProtocolError, httpcore.UnsupportedProtocol, httpcore.ProtocolError,
            httpcore.NetworkError) as exc:
        raise getattr(httpx, type(exc).__name__, httpx.TransportError)(str(exc)) from None


class _Body(httpx.SyncByteStream):
    def __init__(self, response: httpcore.Response):
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._response.stream

    def close(self) -> None:
        self._response.close()


def _ssl_context() -> ssl.SSLContext:
    """The system's trust store, certificates verified against the host name (tests trust their own)."""
    return httpx.create_ssl_context(trust_env=False)


class PinnedTransport(httpx.BaseTransport):
    """An httpx transport (httpx's documented extension point) over an httpcore pool whose
    connections all come from `backend` (httpcore's documented `network_backend`)."""

    def __init__(self, backend: httpcore.NetworkBackend):
        self._pool = httpcore.ConnectionPool(ssl_context=_ssl_context(), network_backend=backend, max_connections=4)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                           target=request.url.raw_path)
        core = httpcore.Request(request.method, url, headers=request.headers.raw, content=request.stream,
                                extensions=request.extensions)
        with _as_httpx_errors():
            response = self._pool.handle_request(core)
        return httpx.Response(response.status, headers=response.headers, stream=_Body(response),
                              extensions=response.extensions)

    def close(self) -> None:
        self._pool.close()


@dataclass(frozen=True)
class DownloadRules:
    """How far one download may go: until when, how big, where to, and when to stop early."""

    deadline: float  # a time.monotonic() value: the whole download, not each read, ends by then
    check_size: Callable[[int], None]  # raises once n bytes (declared, or received so far) are too many
    allow_private: bool = False  # loopback/private addresses (ACESTEP_ALLOW_PRIVATE_URLS)
    allow_http: bool | None = None  # plain http://; None: as allow_private
    should_stop: Callable[[], bool] | None = None  # the job was cancelled
    limit: str = "its time limit"  # what set the deadline, for the sentence that says it passed


def download(field: str, url: str, what: str, rules: DownloadRules,
             headers: Mapping[str, str] | None = None) -> bytes:
    """GET `url` under safe_http's rules and `rules`' bounds and return the body, or raise:

    * InputError naming `field`: a URL that is malformed or refused, a server that cannot be reached
      or answers other than 200 (HTTPRefused), more than MAX_REDIRECTS redirects, or the deadline
      passed ("could not be downloaded in time (`limit`)");
    * GenerationCancelled: `should_stop()` said so (the job was cancelled);
    * whatever `rules.check_size(n)` raises once n bytes (declared, or received so far) are too many.

    `what` names the expected file in errors.
    """
    clock = Clock(rules.deadline, rules.should_stop)
    check_size, allow_private = rules.check_size, rules.allow_private
    host = ""
    try:
        clock.step()
        with httpx.Client(transport=PinnedTransport(PinnedBackend(clock, allow_private)), follow_redirects=False,
                          trust_env=False, timeout=None, headers=headers) as http:
            for _ in range(MAX_REDIRECTS + 1):
                parsed = checked_url(field, url, allow_private, allow_http=rules.allow_http)
                host = bounded(parsed.host, 80)
                with http.stream("GET", parsed) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(str(parsed), response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise HTTPRefused(field, f"{field}: {host} answered HTTP {response.status_code} instead "
                                                 f"of {what}", response.status_code, _first_bytes(response))
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit():
                        check_size(int(declared))
                    data = bytearray()
                    for chunk in response.iter_bytes():
                        data += chunk
                        check_size(len(data))
                    clock.step()  # a stop can look like the end of a body: never return it as one
                    return bytes(data)
    except Stopped as stop:
        if stop.reason == "cancel":
            raise GenerationCancelled("the job was cancelled") from None
        raise InputError(field, f"{field} could not be downloaded in time ({rules.limit}); use a faster host or a "
                                "smaller file") from None
    except BlockedAddress as exc:
        raise blocked_error(field, exc.host, exc.address) from None
    except httpx.HTTPError as exc:
        raise InputError(field, f"{field} could not be downloaded from {host or 'its host'} "
                                f"({type(exc).__name__})") from None
    raise InputError(field, f"{field} redirected more than {MAX_REDIRECTS} times; give the final URL")


def _first_bytes(response: httpx.Response) -> bytes:
    body = bytearray()
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) >= ERROR_BODY_BYTES:
                break
    except httpx.HTTPError:
        pass
    return bytes(body[:ERROR_BODY_BYTES])
