"""The rules for every URL this server fetches on a caller's behalf (audio inputs, LoRA adapters,
bucket objects); net/download.py applies them to every connection it makes.

Only globally routable unicast addresses are reached: a host name is resolved by the downloader
itself, refused when ANY of its addresses is loopback, private, link-local, shared (CGNAT),
multicast, reserved or unspecified, and the connection then goes to an address that was checked,
so a second DNS answer cannot slip in between check and connect. TLS still verifies the
certificate against the host name. `http://` and private addresses are allowed only where the
caller's policy says so (`ACESTEP_ALLOW_PRIVATE_URLS=1`: trusted networks and tests). Every
redirect is checked again with `checked_url`, at most MAX_REDIRECTS of them.

A URL is read once, by httpx's parser (the one the request uses), and refused as an InputError
naming the field when that parser, or the rules below, cannot make a plain host of it: octal or hex
IPv4 spellings, characters IDNA refuses (circled digits, full-width letters), percent signs, zone
ids, user names and passwords, ports outside 1-65535. None of these ever reaches the network.
"""

from __future__ import annotations

import ipaddress
import re

import httpx

from ..errors import InputError, bounded, echo

MAX_REDIRECTS = 5
MAX_URL_CHARS = 8_192
_HOST_CHARS = re.compile(r"^[A-Za-z0-9_.-]+$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)


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


def check_addresses(host: str, addresses: list[str], allow_private: bool) -> None:
    """Raise BlockedAddress when any of `host`'s addresses is not allowed."""
    if allow_private:
        return
    for address in addresses:
        if not address_allowed(address):
            raise BlockedAddress(host, address)


def checked_url(field_name: str, url: str, allow_private: bool, *, allow_http: bool | None = None) -> httpx.URL:
    """`url` parsed, if it is http(s) with a plain host, https unless `allow_http` (by default: unless
    private URLs are allowed), and not an IP literal in a refused range (host names are judged when
    connecting). Anything else is an InputError naming `field_name`."""
    allow_http = allow_private if allow_http is None else allow_http
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
        raise InputError(field_name, f"{field_name} is not a valid URL (at most {MAX_URL_CHARS} characters)")
    try:
        parsed = httpx.URL(url)
        raw_host = parsed.raw_host.decode("ascii")
        parsed.host  # noqa: B018  (decodes punycode labels: raises on one IDNA refuses)
    except (httpx.InvalidURL, ValueError):  # ValueError: UnicodeError and idna's errors too
        raise InputError(field_name, f"{field_name} is not a valid URL: its host or port cannot be read "
                                     "(write the host as a name or a plain IP address)") from None
    if parsed.scheme not in ("https", "http") or not raw_host:
        raise InputError(field_name, f"{field_name} must be an https:// URL with a host name")
    if parsed.scheme == "http" and not allow_http:
        raise InputError(field_name, f"{field_name} must use https:// (plain http:// is refused unless "
                                     "ACESTEP_ALLOW_PRIVATE_URLS=1)")
    if parsed.userinfo:
        raise InputError(field_name, f"{field_name} must not carry a user name or password before its host")
    if parsed.port is not None and not 1 <= parsed.port <= 65_535:
        raise InputError(field_name, f"{field_name} is not a valid URL: the port must be from 1 to 65535")
    literal = _plain_host(field_name, raw_host)
    if literal is not None and not allow_private and not address_allowed(literal):
        raise blocked_error(field_name, raw_host, literal)
    return parsed


def _plain_host(field_name: str, host: str) -> str | None:
    """The IP address `host` spells, None for a host name; an InputError for anything else."""
    if "%" in host:  # a percent-encoded name, or an IPv6 zone id: neither is a plain host
        raise _bad_host(field_name, host)
    if ":" in host:  # httpx checked the brackets' content is an IPv6 address
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise _bad_host(field_name, host) from None
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if not _HOST_CHARS.match(name) or len(name) > 253 or any(not 0 < len(label) <= 63 for label in labels):
        raise _bad_host(field_name, host)
    if _NUMERIC_LABEL.match(labels[-1]):  # resolvers read these as IPv4 (127.1, 2130706433, 0x7f.1)
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            raise InputError(field_name, f"{field_name} is not a valid URL: write an IPv4 host as four decimal "
                                         f"numbers (got {echo(host)})") from None
    return None


def _bad_host(field_name: str, host: str) -> InputError:
    return InputError(field_name, f"{field_name} is not a valid URL: {echo(host)} is not a host name or an IP "
                                  "address")


def blocked_error(field_name: str, host: str, address: str) -> InputError:
    return InputError(field_name, f"{field_name} points at {bounded(host, 80)} ({address}), a loopback, private "
                                  "or reserved address; only public hosts are fetched unless "
                                  "ACESTEP_ALLOW_PRIVATE_URLS=1")
