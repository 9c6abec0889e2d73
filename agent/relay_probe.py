"""One short look at one relay, as `hive-agent doctor` and `hive-agent init --from-nostr` need
it: connect within a timeout, send one REQ, answer a NIP-42 AUTH challenge with our key (and
ask again once the relay accepts it), and collect the events until EOSE.  Also the HTTP `Date`
header of the websocket handshake, when the relay sends one (for the clock check)."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import anyio
import nostr_sdk as sdk
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from agent.nostr.relay_conn import clean, why
from events.base import NostrEvent, parse_event, sign_event
from events.errors import HiveError
from events.kinds import Kind

MAX_FRAME = 1 << 20


@dataclass
class Probe:
    """What one relay did: `error` is None once it connected."""

    url: str
    error: str | None = None
    auth_asked: bool = False
    auth_ok: bool | None = None  # None: not tried (not asked, or no key)
    auth_reason: str = ""
    answered: bool = False  # EOSE (or CLOSED) for our REQ
    closed_reason: str = ""
    server_time: float | None = None  # the handshake's Date header, as epoch seconds
    events: list[NostrEvent] = field(default_factory=list)


def http_date(value: str | None) -> float | None:
    """An HTTP `Date` header as epoch seconds; None if absent or unreadable."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


async def probe(
    url: str, keys: sdk.Keys | None, filters: list[dict[str, Any]], timeout_s: float
) -> Probe:
    """Connect to `url`, send `filters` as one REQ and wait (at most `timeout_s` after the
    connection) for its EOSE, answering AUTH with `keys`.  Never raises for the relay's sake."""
    found = Probe(url)
    try:
        with anyio.fail_after(timeout_s):
            ws = await websockets.connect(
                url,
                open_timeout=None,
                close_timeout=1,
                compression=None,
                max_size=MAX_FRAME,
                user_agent_header="hive-agent doctor",
            )
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ValueError) as exc:
        found.error = why(exc)
        return found
    found.server_time = http_date(ws.response_headers.get("Date"))
    try:
        with anyio.move_on_after(timeout_s):
            await _converse(ws, found, keys, filters)
    except ConnectionClosed:
        found.closed_reason = found.closed_reason or "the relay closed the connection"
    finally:
        with contextlib.suppress(Exception):
            await ws.close()
    return found


async def _converse(
    ws: Any, found: Probe, keys: sdk.Keys | None, filters: list[dict[str, Any]]
) -> None:
    talk = _Talk(ws, found, keys, json.dumps(["REQ", "doctor", *filters]))
    await ws.send(talk.req)
    async for raw in ws:
        try:
            msg = json.loads(raw)
        except ValueError:
            continue
        if isinstance(msg, list) and msg and await talk.on(msg):
            return


@dataclass
class _Talk:
    """One REQ's conversation; each `on_*` says whether it is over."""

    ws: Any
    found: Probe
    keys: sdk.Keys | None
    req: str
    auth_id: str = ""

    async def on(self, msg: list[Any]) -> bool:
        head, found = msg[0], self.found
        if head == "AUTH" and len(msg) > 1 and isinstance(msg[1], str):
            found.auth_asked = True
            if self.keys is not None and not self.auth_id:
                self.auth_id = await _authenticate(self.ws, found.url, self.keys, msg[1])
        elif head == "OK" and len(msg) > 2 and self.auth_id and msg[1] == self.auth_id:
            return await self.on_ok(msg[2] is True, clean(str(msg[3])) if len(msg) > 3 else "")
        elif head == "EVENT" and len(msg) > 2:
            with contextlib.suppress(HiveError, ValueError, TypeError):
                found.events.append(parse_event(json.dumps(msg[2])))
        elif head == "EOSE":
            found.answered = True
            return not (self.auth_id and found.auth_ok is None)  # else our AUTH's OK is due
        elif head == "CLOSED":
            found.closed_reason = clean(str(msg[2])) if len(msg) > 2 else "closed"
            found.answered = True
            return not (found.closed_reason.startswith("auth-required") and self.auth_id)
        return False

    async def on_ok(self, accepted: bool, reason: str) -> bool:
        found = self.found
        found.auth_ok, found.auth_reason = accepted, reason
        if not accepted or (found.answered and not found.closed_reason):
            return True  # refused, or it had answered the REQ anyway
        await self.ws.send(self.req)  # ask again, now that we may
        found.answered, found.closed_reason = False, ""
        return False


async def _authenticate(ws: Any, url: str, keys: sdk.Keys, challenge: str) -> str:
    event = sign_event(
        keys, Kind.AUTH, "", [["relay", url], ["challenge", challenge[:200]]], int(time.time())
    )
    await ws.send(f'["AUTH",{event.to_json()}]')
    return event.id
