"""Which relay addresses the agent may dial when someone else names them.

A recipient's NIP-17 inbox list (kind 10050) or NIP-65 list (kind 10002) is a stranger's
signed event, and following it blindly makes the agent a port scanner for whoever publishes
one: a list naming `ws://127.0.0.1:6379` or `ws://10.0.0.5/admin` would make it open
connections inside the operator's network.  So addresses taken from other people's events are
dialled only if they are plain `ws://` / `wss://` URLs whose host is a public address (or a
name that resolves only to public addresses); loopback, private, link-local, shared, reserved
and multicast addresses are refused unless the operator allows them (`HIVE_ALLOW_PRIVATE_RELAYS`,
for test networks).  The operator's own `relays.json` is never filtered.

Names are checked twice: by their spelling here (cheap, before anything is queued) and by what
they resolve to just before the connection (`resolve_refusal`, in a worker thread).  A name
that changes its answer between that lookup and the connection (DNS rebinding) is not caught;
that window is a few milliseconds.
"""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache
from urllib.parse import urlsplit

import anyio
import nostr_sdk as sdk

LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".onion")
MAX_FROM_ONE_EVENT = 3  # NIP-17 asks for small inbox lists; more is someone padding it
# Judging a URL's spelling is a pure function of its text, and every private message we send
# judges the recipient's inbox list again (nostr-sdk's parser, twice per URL, costs 0.1–0.2 ms
# through its bindings): answers for URLs up to this length are remembered, at most CACHED.
CACHE_URL_LEN, CACHED = 512, 1024


NAT64 = ipaddress.ip_network("64:ff9b::/96")
COMPATIBLE = ipaddress.ip_network("::/96")
SIIT = ipaddress.ip_network("::ffff:0:0:0/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, SIIT, NAT64, 6to4, Teredo,
    IPv4-compatible), which is where a packet to it may end up."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64 or ip in SIIT or (ip in COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _address_refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and _address_refusal(inner) is not None:
            return f"{ip} leads to {inner}, which is not a public address"
    if not ip.is_global or ip.is_multicast:
        return f"{ip} is not a public address"
    return None


def normalized(url: str) -> str | None:
    """The relay URL as nostr-sdk spells it, if it is a plain one — printable ASCII with no
    `\\`, `@` or spaces, so that every URL parser (nostr-sdk's, urllib's in `websockets`)
    reads the same host from it — else None."""
    return _normalized_cached(url) if len(url) <= CACHE_URL_LEN else _normalized(url)


def _normalized(url: str) -> str | None:
    if not url.isascii() or not url.isprintable() or any(c in url for c in "\\@ "):
        return None
    try:
        normal = str(sdk.RelayUrl.parse(url))
    except sdk.NostrSdkError:
        return None
    parts = urlsplit(normal)
    if parts.scheme not in ("ws", "wss") or parts.username or parts.password:
        return None
    return normal


def host_of(url: str) -> str | None:
    """The host of a plain relay URL as nostr-sdk normalises it (None if it is not one)."""
    normal = normalized(url)
    if normal is None:
        return None
    return (urlsplit(normal).hostname or "").rstrip(".").lower() or None


def spelling_refusal(url: str) -> str | None:
    """Why a relay URL from someone else's event must not be dialled, judged by its text;
    None if it may be (subject to `resolve_refusal`)."""
    return _spelling_cached(url) if len(url) <= CACHE_URL_LEN else _spelling_refusal(url)


def _spelling_refusal(url: str) -> str | None:
    host = host_of(url)
    if host is None:
        return "not a ws:// or wss:// relay URL"
    try:
        return _address_refusal(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    if host == "localhost" or host.endswith(LOCAL_SUFFIXES) or "." not in host:
        return f"{host} is a local name"
    return None


_normalized_cached = lru_cache(maxsize=CACHED)(_normalized)
_spelling_cached = lru_cache(maxsize=CACHED)(_spelling_refusal)


def resolve_refusal(url: str) -> str | None:
    """Why `url` must not be dialled, judged by every address its host resolves to.

    Blocking (a DNS lookup): call it from a worker thread, under a timeout of your own.
    """
    reason = spelling_refusal(url)
    if reason is not None:
        return reason
    host = host_of(url)
    assert host is not None
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"{host} does not resolve: {exc}"
    for info in infos:
        found = _address_refusal(ipaddress.ip_address(info[4][0].split("%")[0]))
        if found is not None:
            return f"{host} resolves to {found}"
    return None


async def refusal_in_time(url: str, timeout_s: float) -> str | None:
    """`resolve_refusal` in a worker thread; a name that does not resolve within `timeout_s`
    is refused too (the thread is left to finish on its own)."""
    with anyio.move_on_after(timeout_s):
        return await anyio.to_thread.run_sync(resolve_refusal, url, abandon_on_cancel=True)
    return "its name did not resolve in time"


def usable(urls: list[str], own: set[str], *, allow_private: bool) -> list[str]:
    """Of relay URLs taken from someone else's event, those we may dial: at most
    MAX_FROM_ONE_EVENT, our own configured relays always allowed."""
    out: list[str] = []
    for url in urls:
        normal = normalized(url)
        if url in own:
            out.append(url)
        elif normal is not None and (allow_private or spelling_refusal(normal) is None):
            out.append(normal)  # the spelling that was checked is the one that is dialled
        if len(out) == MAX_FROM_ONE_EVENT:
            break
    return list(dict.fromkeys(out))
