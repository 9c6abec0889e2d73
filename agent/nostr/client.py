"""A thin relay client over nostr-sdk's `Client`: publish signed events, stream raw ones in.

Events go out exactly as `events.sign_event` made them (never re-signed) and come in as raw
JSON text, so `events.parse_event` stays the only door through which anything is trusted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio
import nostr_sdk as sdk

from agent.errors import RelayUnavailable
from events.base import NostrEvent


@dataclass(frozen=True)
class PublishResult:
    """Which relays acknowledged (`OK true`) an event, and why the others did not."""

    event_id: str
    accepted: list[str]
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Incoming:
    """One event as a relay sent it: its URL, the event's JSON text, the subscription id."""

    relay: str
    raw: str
    sub: str = ""


def to_filter(spec: dict[str, Any]) -> sdk.Filter:
    """A nostr-sdk filter from a NIP-01 filter object."""
    return sdk.Filter.from_json(json.dumps(spec))


class RelayClient:
    """Connections to a set of relays; `async with` connects and starts the inbox.

    `inbox` yields every new event of every subscription as an `Incoming`.
    """

    def __init__(self, urls: Sequence[str], *, timeout: float = 5.0, inbox_size: int = 1024):
        self.urls = list(urls)
        self.timeout = timeout
        self._client = sdk.Client()
        self._notes: sdk.ClientNotificationStream | None = None
        self._send, self.inbox = anyio.create_memory_object_stream[Incoming](inbox_size)
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> RelayClient:
        await self.connect()
        self._stack.callback(self.inbox.close)
        tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._stack.push_async_callback(self.aclose)
        self._stack.callback(tg.cancel_scope.cancel)
        tg.start_soon(self._pump)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _pump(self) -> None:
        assert self._notes is not None
        async with self._send:
            while (note := await self._notes.next()) is not None:
                if note.is_shutdown():
                    return
                if note.is_new_event():
                    await self._send.send(
                        Incoming(str(note.relay_url), note.event.as_json(), note.subscription_id)
                    )

    async def connect(self) -> None:
        """Connect to every relay; raises RelayUnavailable if none answers in time."""
        sdk.uniffi_set_event_loop(asyncio.get_running_loop())
        for url in self.urls:
            await self._client.add_relay(sdk.RelayUrl.parse(url))
        # Taken before any subscription, or early events are missed (nostr-sdk quirk).
        self._notes = self._client.notifications()
        out = await self._client.try_connect(timedelta(seconds=self.timeout))
        if not out.success:
            raise RelayUnavailable(f"none of {', '.join(self.urls)} accepted a connection")

    async def publish(self, event: NostrEvent) -> PublishResult:
        """Send `event` to every relay and wait for their `OK`s (up to the timeout)."""
        out = await self._client.send_event(
            event.to_sdk(), ok_timeout=timedelta(seconds=self.timeout)
        )
        return PublishResult(
            event_id=out.id.to_hex(),
            accepted=sorted(str(u) for u in out.success),
            failed={str(u): reason for u, reason in out.failed.items()},
        )

    async def subscribe(self, filters: Sequence[dict[str, Any]]) -> str:
        """Open a subscription on every relay; returns its id."""
        out = await self._client.subscribe(sdk.ReqTarget.auto([to_filter(f) for f in filters]))
        return str(out.id)

    async def aclose(self) -> None:
        """Close every connection (inside the event loop, avoiding a crash at exit)."""
        await self._client.shutdown()
