"""NIP-11 relay information for `hive-agent relay`: nostr-sdk's LocalRelay serves none, so the
byte splice in front of it (agent/nostr/local_relay.py) answers an HTTP GET that asks for
`application/nostr+json` on the relay's own URL (http:// for ws://) and passes every other
request, websocket upgrades included, to the relay untouched.

The document says what this relay enforces: its write policy's limits when it has one
(agent/nostr/relay_policy.py), the REQs LocalRelay allows per connection, NIP-42 AUTH.
"""

from __future__ import annotations

import json
from typing import Any

from agent import __version__
from agent.nostr import relay_policy

MAX_HEAD = 8192  # an HTTP request head larger than this is no NIP-11 request: passed on
CORS = (
    "Access-Control-Allow-Origin: *\r\n"
    "Access-Control-Allow-Headers: *\r\n"
    "Access-Control-Allow-Methods: GET, OPTIONS\r\n"
)


def document(*, auth: bool, restricted: bool, max_subscriptions: int) -> dict[str, Any]:
    """The relay information document of an embedded relay with these settings."""
    limitation: dict[str, Any] = {
        "max_subscriptions": max_subscriptions,
        "auth_required": auth,
        "payment_required": False,
        "restricted_writes": restricted,
    }
    if restricted:  # the hive write policy's limits
        limitation |= {
            "max_message_length": relay_policy.MAX_EVENT_BYTES,
            "max_event_tags": relay_policy.MAX_TAGS,
            "created_at_lower_limit": relay_policy.PAST_S,
            "created_at_upper_limit": relay_policy.FUTURE_S,
        }
    description = "Lightning Hive agents' embedded relay (rust-nostr LocalRelay)" + (
        ": only Lightning Hive kinds, rate-limited per client" if restricted else ""
    )
    return {
        "name": "hive-agent relay",
        "description": description,
        "supported_nips": sorted({1, 9, 11, 40, 77, *([42] if auth else [])}),
        "software": "https://github.com/rust-nostr/nostr (LocalRelay) via hive-agent",
        "version": __version__,
        "limitation": limitation,
    }


def answer(head: bytes, doc: dict[str, Any]) -> bytes | None:
    """The HTTP response to a complete request head, if it is a NIP-11 request (GET asking for
    application/nostr+json, no websocket upgrade) or a CORS preflight; None to pass it on."""
    lines = head.decode("latin-1").split("\r\n")
    method = lines[0].split(" ", 1)[0].upper()
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip().lower()
    if "websocket" in headers.get("upgrade", ""):
        return None
    if method == "OPTIONS":
        head = f"HTTP/1.1 204 No Content\r\n{CORS}Content-Length: 0\r\nConnection: close\r\n\r\n"
        return head.encode()
    if method != "GET" or "application/nostr+json" not in headers.get("accept", ""):
        return None
    body = json.dumps(doc, sort_keys=True).encode()
    return (
        "HTTP/1.1 200 OK\r\nContent-Type: application/nostr+json\r\n"
        f"Content-Length: {len(body)}\r\n{CORS}Connection: close\r\n\r\n"
    ).encode() + body
