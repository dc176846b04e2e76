"""The rules for every URL this server fetches on a caller's behalf (audio inputs, LoRA adapters).

Only globally routable unicast addresses are reached: a host name is resolved here, refused when
ANY of its addresses is loopback, private, link-local, shared (CGNAT), multicast, reserved or
unspecified, and the connection then goes to an address that was checked, so a second DNS answer
cannot slip in between check and connect. TLS still verifies the certificate against the host
name. `http://` and private addresses are allowed only where the caller's policy says so
(`ACESTEP_ALLOW_PRIVATE_URLS=1`: trusted networks and tests). Callers re-check every redirect with
`checked_url` and follow at most MAX_REDIRECTS; `fetch` does all of that for a whole download.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Callable, Mapping
from urllib.parse import SplitResult, urljoin, urlsplit

import httpcore
import httpx

from ..errors import InputError

MAX_REDIRECTS = 5


class BlockedAddress(Exception):
    def __init__(self, host: str, address: str):
        super().__init__(f"{host} resolves to {address}")
        self.host, self.address = host, address


def address_allowed(address: str) -> bool:
    """Only globally routable unicast addresses (an IPv4-mapped IPv6 address counts as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


class _CheckedAddressBackend(httpcore.NetworkBackend):
    """Resolves the host itself, refuses it if any address is not allowed, then connects to an
    address it checked. TLS still verifies the certificate against the host name."""

    def __init__(self, allow_private: bool):
        self._inner = httpcore.SyncBackend()
        self._allow_private = allow_private

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host} ({exc})") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        if not self._allow_private:
            for address in addresses:
                if not address_allowed(address):
                    raise BlockedAddress(host, address)
        error: Exception = httpcore.ConnectError(f"no address for {host}")
        for address in addresses:
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                error = exc
        raise error

    def connect_unix_socket(self, *args, **kwargs):
        raise httpcore.ConnectError("unix sockets are not reachable from a URL")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def guarded_transport(allow_private: bool) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(trust_env=False)
    # httpx builds its pool without a way to pass a network backend; ours is the one connecting.
    transport._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(trust_env=False),
                                              network_backend=_CheckedAddressBackend(allow_private))
    return transport


def checked_url(field_name: str, url: str, allow_private: bool) -> SplitResult:
    """`url` split, if it is http(s) with a host, https unless private URLs are allowed, and not an IP
    literal in a refused range (host names are judged when connecting)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        raise InputError(field_name, f"{field_name} is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname:
        raise InputError(field_name, f"{field_name} must be an https:// URL with a host name")
    if scheme == "http" and not allow_private:
        raise InputError(field_name, f"{field_name} must use https:// (plain http:// is refused unless "
                                     "ACESTEP_ALLOW_PRIVATE_URLS=1)")
    if not allow_private:
        try:
            literal = ipaddress.ip_address(parts.hostname)
        except ValueError:
            literal = None
        if literal is not None and not address_allowed(str(literal)):
            raise blocked_error(field_name, parts.hostname, str(literal))
    return parts


def blocked_error(field_name: str, host: str, address: str) -> InputError:
    return InputError(field_name, f"{field_name} points at {host} ({address}), a loopback, private or reserved "
                                  "address; only public hosts are fetched unless ACESTEP_ALLOW_PRIVATE_URLS=1")


def fetch(field_name: str, url: str, *, allow_private: bool, what: str, time_left: Callable[[], float],
          check_size: Callable[[int], None], on_chunk: Callable[[], None] | None = None,
          headers: Mapping[str, str] | None = None) -> bytes:
    """GET `url` under the address rules, following at most MAX_REDIRECTS (each re-checked).

    `time_left()` gives each request's timeout and raises once the caller's time is up;
    `check_size(n)` raises when n bytes (declared or received) exceed the caller's cap; `on_chunk`
    runs after every chunk (a deadline or a cancel). `what` names the expected file in errors.
    """
    with httpx.Client(transport=guarded_transport(allow_private), follow_redirects=False, trust_env=False,
                      headers=headers) as http:
        for _ in range(MAX_REDIRECTS + 1):
            parts = checked_url(field_name, url, allow_private)
            try:
                with http.stream("GET", url, timeout=time_left()) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise InputError(field_name, f"{field_name}: {parts.hostname} answered HTTP "
                                                     f"{response.status_code} instead of {what}")
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit():
                        check_size(int(declared))
                    data = bytearray()
                    for chunk in response.iter_bytes(1 << 16):
                        data += chunk
                        check_size(len(data))
                        if on_chunk is not None:
                            on_chunk()
                    return bytes(data)
            except BlockedAddress as exc:
                raise blocked_error(field_name, exc.host, exc.address) from None
            except httpx.TimeoutException:
                time_left()
                raise InputError(field_name, f"{field_name}: {parts.hostname} did not answer in time") from None
            except httpx.HTTPError as exc:
                raise InputError(field_name, f"{field_name} could not be downloaded from {parts.hostname} "
                                             f"({type(exc).__name__})") from None
    raise InputError(field_name, f"{field_name} redirected more than {MAX_REDIRECTS} times; give the final URL")
