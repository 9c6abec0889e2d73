"""Reading one relay's websocket for the relay pool (agent/nostr/pool.py).

Every event is handed on as the relay's raw JSON text (`Incoming`), never parsed here: the
inbound pipeline is the one door in.  Answers to one-shot queries go to their `Fetch`, `OK`s to
whoever published, NIP-77 messages to the sync waiting for them, and an AUTH challenge to the
pool's NIP-42 answer.  A frame that is no relay message goes through the inbound pipeline too,
which refuses it with a code and counts it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from websockets.client import WebSocketClientProtocol
from websockets.exceptions import ConnectionClosed

from agent.nostr.client import Incoming
from agent.nostr.relay_conn import Connection, Fetch, RelayState, clean, offer

_decoder = json.JSONDecoder()

Authenticate = Callable[[str, Connection, str], Awaitable[None]]


def split_event_frame(frame: str) -> tuple[str, str] | None:
    """(subscription id, the event's JSON text exactly as sent) from an `EVENT` frame that
    starts with `["EVENT"`, or None if it is not shaped like one; the event text itself is
    not checked here (the inbound pipeline does that, and counts what fails)."""
    i = _skip_space(frame, 8)  # after '["EVENT"'
    if i >= len(frame) or frame[i] != ",":
        return None
    try:
        sub, end = _decoder.raw_decode(frame, _skip_space(frame, i + 1))
    except (json.JSONDecodeError, ValueError):
        return None
    if not isinstance(sub, str):
        return None
    start = _skip_space(frame, end)
    stop = frame.rfind("]")
    if start >= len(frame) or frame[start] != "," or stop <= start:
        return None
    return sub, frame[start + 1 : stop].strip()


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


class RelayReader:
    """Handles the messages of every relay of one pool; the pool's `fetches` and inbox
    stream are shared with it, and `authenticate` answers AUTH challenges."""

    def __init__(
        self,
        fetches: dict[str, Fetch],
        send: anyio.abc.ObjectSendStream[Incoming],
        authenticate: Authenticate,
    ) -> None:
        self.fetches = fetches
        self.send = send
        self.authenticate = authenticate

    async def read(
        self, url: str, state: RelayState, conn: Connection, ws: WebSocketClientProtocol
    ) -> None:
        """Handle the relay's messages until the connection closes."""
        with contextlib.suppress(ConnectionClosed):
            await self._read_frames(url, state, conn, ws)

    async def _read_frames(
        self, url: str, state: RelayState, conn: Connection, ws: WebSocketClientProtocol
    ) -> None:
        async for frame in ws:
            if not isinstance(frame, str):  # relays speak text; counted like any junk
                frame = frame[:200].decode("utf-8", "replace")
            if frame.startswith('["EVENT"'):
                await self.on_event(url, state, frame)
                continue
            try:
                message = json.loads(frame)
            except (json.JSONDecodeError, RecursionError):
                state.last_error = "the relay sent a message that is not JSON"
                await self._junk(url, frame)
                continue
            if not (
                isinstance(message, list)
                and message
                and isinstance(message[0], str)
                and await self.on_message(url, state, conn, message)
            ):
                state.last_error = "the relay sent a message that makes no sense"
                await self._junk(url, frame)

    async def on_event(self, url: str, state: RelayState, frame: str) -> None:
        """An `EVENT` frame: to the query that asked for it, or into the inbox."""
        found = split_event_frame(frame)
        if found is None:
            state.last_error = "the relay sent a malformed EVENT message"
            await self._junk(url, frame)
            return
        req_id, raw = found
        state.received += 1
        fetch = self.fetches.get(req_id)
        if fetch is not None and url not in fetch.asked:
            return  # an answer to a query this relay was never sent
        if fetch is not None and fetch.forward is None:
            fetch.answered.add(url)
            fetch.events.append(raw)
            return
        await self.send.send(Incoming(url, raw, req_id.split(".", 1)[0]))

    async def _junk(self, url: str, frame: str) -> None:
        """A frame that is not a relay message: through the inbound pipeline, which refuses
        it with a code and counts it like every other refusal."""
        await self.send.send(Incoming(url, frame[:70_000], ""))

    async def on_message(
        self, url: str, state: RelayState, conn: Connection, message: list[Any]
    ) -> bool:
        """Act on one relay message; False if it is not a well-formed NIP-01/42/77 message."""
        shape = _SHAPES.get(message[0]) if isinstance(message[0], str) else None
        if shape is None:
            return False
        min_len, named, act = shape
        if len(message) < min_len or (named and not isinstance(message[1], str)):
            return False
        await act(self, url, state, conn, message)
        return True

    async def _event(self, url: str, state: RelayState, conn: Connection, m: list[Any]) -> None:
        # an EVENT frame not starting `["EVENT"` (whitespace): the event re-serialised
        frame = json.dumps(["EVENT", m[1], m[2]], separators=(",", ":"))
        await self.on_event(url, state, frame)

    async def _ok(self, url: str, state: RelayState, conn: Connection, m: list[Any]) -> None:
        future = conn.oks.pop(m[1], None)
        if future is not None and not future.done():
            reason = clean(str(m[3])) if len(m) > 3 else ""
            future.set_result((m[2] is True, reason))

    async def _eose(self, url: str, state: RelayState, conn: Connection, m: list[Any]) -> None:
        fetch = self.fetches.get(m[1])
        if fetch is not None:
            fetch.eose(url, answered=True)

    async def _closed(self, url: str, state: RelayState, conn: Connection, m: list[Any]) -> None:
        reason = clean(str(m[2])) if len(m) > 2 else ""
        fetch = self.fetches.get(m[1])
        if fetch is not None:
            fetch.eose(url)
        elif reason:  # (some relays answer our own CLOSE with an empty CLOSED)
            state.last_error = f"subscription closed: {reason}"[:200]

    async def _notice(self, url: str, state: RelayState, conn: Connection, m: list[Any]) -> None:
        notice = clean(str(m[1]))
        state.last_error = f"notice: {notice}"[:200]
        if "neg" in notice.lower():  # relays without NIP-77 often answer NEG-OPEN so
            for queue in conn.neg.values():
                offer(queue, ("NEG-ERR", f"notice: {notice}"))

    async def _neg(self, url: str, state: RelayState, conn: Connection, m: list[Any]) -> None:
        queue = conn.neg.get(m[1])
        if queue is not None:  # NEG-MSG carries hex (checked by bytes.fromhex), NEG-ERR text
            payload = str(m[2]) if m[0] == "NEG-MSG" else clean(str(m[2]))
            offer(queue, (m[0], payload))

    async def _auth(self, url: str, state: RelayState, conn: Connection, m: list[Any]) -> None:
        if not conn.challenged:  # one per connection: a relay cannot make us sign on demand
            conn.challenged = True
            await self.authenticate(url, conn, clean(m[1]))


Act = Callable[[RelayReader, str, RelayState, Connection, list[Any]], Awaitable[None]]
# message type → (least length, second element must be a string id, what to do)
_SHAPES: dict[str, tuple[int, bool, Act]] = {
    "EVENT": (3, True, RelayReader._event),
    "OK": (3, True, RelayReader._ok),
    "EOSE": (2, True, RelayReader._eose),
    "CLOSED": (2, True, RelayReader._closed),
    "NOTICE": (2, False, RelayReader._notice),
    "NEG-MSG": (3, True, RelayReader._neg),
    "NEG-ERR": (3, True, RelayReader._neg),
    "AUTH": (2, True, RelayReader._auth),
}
