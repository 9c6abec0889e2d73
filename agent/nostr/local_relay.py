"""nostr-sdk's embedded relay (rust-nostr `LocalRelay`) as a start/stop resource.

Used by `hive-agent relay`, the demo and the test fixtures.  Its default rate limit (60 events
a minute) is far below what a fleet or a test produces, so it is raised; a relay that others
can reach runs with a write policy instead (agent/nostr/relay_policy.py).  With `db_dir` the
relay keeps events in LMDB across restarts, which crash tests need so that "exactly once"
means the same event id and not the relay forgetting.

LocalRelay (0.45) leaves Nagle's algorithm on for its connections and offers no option to turn
it off.  In request/response traffic (a command out, its receipt back on the same connection)
the relay's next message then waits for the client's delayed ACK of the previous one: ~40 ms on
Linux per hop (measured: command round trip 48 ms p50 with it, 11 ms without).  So clients
connect to a byte splice in this process with TCP_NODELAY, and the splice forwards to
LocalRelay on a private loopback port, ACKing its data at once (TCP_QUICKACK) so the relay's
Nagle never waits.  The splice also lets `stop()` really close every client connection, which
`LocalRelay.shutdown()` does not.  (A relay started with NIP-42 AUTH is not spliced: AUTH
events name the URL the client dialled, which LocalRelay compares with its own.)

The splice also serves the NIP-11 relay information document, which LocalRelay has none of:
it reads the head of each connection's first request, answers a GET asking for
`application/nostr+json` (and CORS preflights) itself, and passes everything else on
(agent/nostr/nip11.py).  A relay with NIP-42 AUTH, not being spliced, serves no document.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

import nostr_sdk as sdk

from agent.errors import RelayUnavailable
from agent.nostr import nip11

MAX_REQS_PER_CONN = 1_000
BIND_ATTEMPTS = 5
NOTES_PER_MINUTE = 1_000_000


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (LocalRelay cannot report the port it bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only; elsewhere plain NODELAY


def _tune(transport: asyncio.BaseTransport, *, quickack: bool = False) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if quickack and QUICKACK is not None:
            sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)


class _Half(asyncio.Protocol):
    """One side of a spliced connection: what it reads, the peer side writes."""

    def __init__(self, splice: _Splice, *, quickack: bool) -> None:
        self.splice = splice
        self.quickack = quickack
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None
        self.backlog: list[bytes] = []  # data read before the peer side is connected
        self.head: bytearray | None = None if quickack else bytearray()  # client: sniffed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        _tune(transport, quickack=self.quickack)

    def data_received(self, data: bytes) -> None:
        if self.quickack and self.transport is not None:
            _tune(self.transport, quickack=True)  # re-armed after every read
        if self.head is not None:  # the client's first request, until its head is complete
            data = self.splice.sniff(self, data)
            if not data:
                return
        peer = self.peer
        if peer is None or peer.transport is None:
            self.backlog.append(data)
        else:
            peer.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.splice.close()

    def pause_writing(self) -> None:  # our buffer is full: stop reading the other side
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _Splice:
    """A client connection and its connection to LocalRelay, joined byte for byte."""

    def __init__(self, front: EmbeddedRelay) -> None:
        self.front = front
        self.client = _Half(self, quickack=False)
        self.relay = _Half(self, quickack=True)
        self.client.peer, self.relay.peer = self.relay, self.client
        self.closed = False

    def sniff(self, half: _Half, data: bytes) -> bytes:
        """Gather the client's first request head: a NIP-11 request (or CORS preflight) is
        answered here and the connection closed; anything else goes on to the relay."""
        assert half.head is not None
        half.head += data
        end = half.head.find(b"\r\n\r\n")
        if end < 0 and len(half.head) < nip11.MAX_HEAD:
            return b""
        whole, half.head = bytes(half.head), None
        reply = nip11.answer(whole[:end], self.front.information()) if end >= 0 else None
        if reply is None:
            return whole
        if half.transport is not None:
            half.transport.write(reply)
        self.close()
        return b""

    async def connect(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: self.relay, "127.0.0.1", port)
        except OSError:
            self.close()
            return
        assert self.relay.transport is not None
        if self.closed:  # answered (NIP-11) or gone while we dialled: hang up at once
            self.relay.transport.close()
            return
        for data in self.client.backlog:
            self.relay.transport.write(data)
        self.client.backlog.clear()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.front._splices.discard(self)
        for half in (self.client, self.relay):
            if half.transport is not None:
                half.transport.close()


class EmbeddedRelay:
    """A real websocket relay in this process, on `host:port`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        db_dir: Path | None = None,
        auth: bool = False,
        policy: sdk.WritePolicy | None = None,
        notes_per_minute: int = NOTES_PER_MINUTE,
    ) -> None:
        self.host = host
        self.chosen = port == 0  # ours to choose: the system's pick, no race with other binds
        self.port = port or free_port(host)
        self.db_dir = db_dir
        self.auth = auth
        self.policy = policy  # None: accept every valid event (loopback test relays)
        self.notes_per_minute = notes_per_minute
        self._relay: sdk.LocalRelay | None = None
        self._server: asyncio.Server | None = None
        self._splices: set[_Splice] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def information(self) -> dict[str, Any]:
        """This relay's NIP-11 document (served on its URL over http://)."""
        return nip11.document(
            auth=self.auth, restricted=self.policy is not None, max_subscriptions=MAX_REQS_PER_CONN
        )

    async def start(self) -> str:
        """Start serving; returns the relay URL.  Raises RelayUnavailable if it cannot bind."""
        sdk.uniffi_set_event_loop(asyncio.get_running_loop())
        limit = sdk.RateLimit(max_reqs=MAX_REQS_PER_CONN, notes_per_minute=self.notes_per_minute)
        # NIP-42 AUTH events name the relay URL the client dialled, and LocalRelay checks that
        # against its own: so a relay requiring AUTH serves clients directly (Nagle and all)
        spliced = not self.auth
        database = None
        if self.db_dir is not None:
            self.db_dir.mkdir(parents=True, exist_ok=True)
            database = await sdk.NostrLmdb.open(str(self.db_dir))
        for attempt in range(BIND_ATTEMPTS):
            host, inner = ("127.0.0.1", free_port()) if spliced else (self.host, self.port)
            try:
                self._relay = await self._run_inner(host, inner, limit, database)
                break
            except RelayUnavailable:
                # a port picked free a moment ago may be taken by now (another process): pick
                # again, unless the operator named it
                if attempt == BIND_ATTEMPTS - 1 or not (spliced or self.chosen):
                    raise
                self.port = self.port if spliced else free_port(self.host)
        if not spliced:
            return self.url
        try:
            port = 0 if self.chosen else self.port
            self._server = await asyncio.get_running_loop().create_server(
                lambda: self._accept(inner), self.host, port
            )
        except OSError as exc:
            await self.stop()
            raise RelayUnavailable(f"cannot start a relay on {self.url}: {exc}") from None
        self.port = self._server.sockets[0].getsockname()[1]
        return self.url

    async def _run_inner(
        self, host: str, port: int, limit: sdk.RateLimit, database: sdk.NostrLmdb | None
    ) -> sdk.LocalRelay:
        """nostr-sdk's LocalRelay on host:port (RelayUnavailable if it cannot bind)."""
        builder = sdk.LocalRelayBuilder().addr(host).port(port).rate_limit(limit)
        if self.auth:  # NIP-42: clients must authenticate to read and to write
            mode = sdk.LocalRelayBuilderNip42Mode.BOTH
            builder = builder.nip42(sdk.LocalRelayBuilderNip42(mode=mode))
        if self.policy is not None:
            builder = builder.write_policy(self.policy)
        if database is not None:
            builder = builder.database(database)
        relay = builder.build()
        try:
            await relay.run()
        except sdk.NostrSdkError as exc:
            raise RelayUnavailable(f"cannot start a relay on {self.url}: {exc}") from None
        return relay

    def _accept(self, inner: int) -> _Half:
        splice = _Splice(self)
        self._splices.add(splice)
        task = asyncio.get_running_loop().create_task(splice.connect(inner))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return splice.client

    async def stop(self) -> None:
        """Stop serving and close every connection (idempotent)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for splice in list(self._splices):
            splice.close()
        if self._relay is not None:
            self._relay.shutdown()
            self._relay = None
            await asyncio.sleep(0)  # let the runtime observe the shutdown

    async def __aenter__(self) -> EmbeddedRelay:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
