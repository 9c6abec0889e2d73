"""What the relay pool (agent/nostr/pool.py) keeps per relay and per query.

`RelayState` is the row `hive-agent status` shows; `Connection` is one relay's live websocket
and what waits on it (OKs, negentropy exchanges, whether it authenticated); `Fetch` is a
one-shot query collecting events until every relay asked says EOSE.  Also here: closing a
connection so nothing keeps waiting on it, and the words for why a connection failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio
from websockets.client import WebSocketClientProtocol

CONNECTED = "connected"


@dataclass(frozen=True)
class Subscription:
    """A logical subscription, sent to every read relay under the same id."""

    id: str
    filters: list[dict[str, Any]]
    lookback_s: int = 0  # always look at least this far back (gift wraps: two days and more)


@dataclass
class RelayState:
    """What `hive-agent status` shows about one relay."""

    url: str
    read: bool
    write: bool
    status: str = "initial"
    since: int = 0
    attempts: int = 0
    acks: int = 0
    rejections: int = 0
    received: int = 0
    last_error: str | None = None
    generation: int = field(default=0, repr=False)
    req_ids: dict[str, str] = field(default_factory=dict, repr=False)

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("generation", "req_ids")}


@dataclass
class PublishOutcome:
    accepted: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # url -> reason (offline, rejected…)


@dataclass
class Fetch:
    """A one-shot query: events collected until every relay asked said EOSE."""

    waiting: set[str]
    events: list[str] = field(default_factory=list)
    asked: frozenset[str] = frozenset()
    done: anyio.Event = field(default_factory=anyio.Event)
    forward: str | None = None  # a sync's fetch: into the inbox under this subscription
    answered: set[str] = field(default_factory=set)  # relays that sent an event or EOSE

    def eose(self, url: str, *, answered: bool = False) -> None:
        if answered:
            self.answered.add(url)
        self.waiting.discard(url)
        if not self.waiting:
            self.done.set()


@dataclass
class Connection:
    """One relay's live websocket and what waits on it."""

    ws: WebSocketClientProtocol | None = None
    oks: dict[str, asyncio.Future[tuple[bool, str]]] = field(default_factory=dict)
    authed: bool = False
    neg: dict[str, asyncio.Queue[tuple[str, str]]] = field(default_factory=dict)
    negentropy: bool | None = None  # does the relay speak NIP-77 (None: not tried yet)
    challenged: bool = False  # an AUTH challenge answered on this connection


async def close_connection(conn: Connection) -> None:
    """Close a relay's websocket (quickly) and fail what waited on it."""
    ws, conn.ws = conn.ws, None
    for future in conn.oks.values():
        if not future.done():
            future.set_result((False, "offline: connection lost"))
    conn.oks.clear()
    conn.authed = False
    if ws is None:
        return
    # shielded: this also runs while the pool is being cancelled, and a websocket left open
    # keeps its tasks and transport alive past the event loop
    with anyio.CancelScope(shield=True), anyio.move_on_after(0.5), contextlib.suppress(Exception):
        await ws.close()
    if not ws.closed and ws.transport is not None:
        ws.transport.abort()


def offer(queue: asyncio.Queue[tuple[str, str]], item: tuple[str, str]) -> None:
    """Queue a negentropy answer; a relay answering faster than we ask loses the extras."""
    with contextlib.suppress(asyncio.QueueFull):
        queue.put_nowait(item)


def clean(text: str) -> str:
    """A relay's text as valid UTF-8 (JSON lets it send lone surrogates, which SQLite and
    every encoder refuse), at most 300 characters."""
    return text[:300].encode("utf-8", "replace").decode("utf-8")


def why(exc: BaseException) -> str:
    """A short reason for a failed connection (or exchange) as `hive-agent status` shows it."""
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    if isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED
    ):
        return "connection refused"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"
