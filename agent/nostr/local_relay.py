"""nostr-sdk's embedded relay (rust-nostr `LocalRelay`) as a start/stop resource.

Used by `hive-agent relay`, the demo and the test fixtures.  Its default rate limit (60 events
a minute) is far below what a fleet or a test produces, so it is raised.  With `db_dir` the
relay keeps events in LMDB across restarts, which crash tests need so that "exactly once"
means the same event id and not the relay forgetting.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from types import TracebackType

import nostr_sdk as sdk

from agent.errors import RelayUnavailable

MAX_REQS_PER_CONN = 1_000
NOTES_PER_MINUTE = 1_000_000


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (LocalRelay cannot report the port it bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedRelay:
    """A real websocket relay in this process, on `host:port`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        db_dir: Path | None = None,
        auth: bool = False,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.db_dir = db_dir
        self.auth = auth
        self._relay: sdk.LocalRelay | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> str:
        """Start serving; returns the relay URL.  Raises RelayUnavailable if it cannot bind."""
        sdk.uniffi_set_event_loop(asyncio.get_running_loop())
        limit = sdk.RateLimit(max_reqs=MAX_REQS_PER_CONN, notes_per_minute=NOTES_PER_MINUTE)
        builder = sdk.LocalRelayBuilder().addr(self.host).port(self.port).rate_limit(limit)
        if self.auth:  # NIP-42: clients must authenticate to read and to write
            mode = sdk.LocalRelayBuilderNip42Mode.BOTH
            builder = builder.nip42(sdk.LocalRelayBuilderNip42(mode=mode))
        if self.db_dir is not None:
            self.db_dir.mkdir(parents=True, exist_ok=True)
            builder = builder.database(await sdk.NostrLmdb.open(str(self.db_dir)))
        relay = builder.build()
        try:
            await relay.run()
        except sdk.NostrSdkError as exc:
            raise RelayUnavailable(f"cannot start a relay on {self.url}: {exc}") from None
        self._relay = relay
        return self.url

    async def stop(self) -> None:
        """Stop serving and close every connection (idempotent)."""
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
