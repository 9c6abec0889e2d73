"""What a component (the marketplace, the advisor side, the node side, escrow, …) gives the agent
that runs it, and the ports it is given in return.

A component is built with the ports it needs (`Messaging`, and narrower ones such as
`CommandPayments`) and hands its `Wiring` to `Agent(transport, components=[…])`: the public
event kinds and gift-wrapped rumor kinds it handles, the subscriptions it needs, what to do
after each inbound batch.  Nothing attaches itself to the agent later; `agent/app.py` is the
one place that assembles them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from agent.inbound import Handler, RumorHandler

if TYPE_CHECKING:
    import nostr_sdk as sdk

    from agent.clock import Clock
    from agent.nostr.pool import Subscription
    from agent.settings import RelaysConfig, Settings
    from agent.store import OutboxItem, Store, Tx
    from events.base import NostrEvent, Rumor


@dataclass(frozen=True)
class Wiring:
    """A component's part of the agent.  Also a component by itself (for small extras)."""

    handlers: Mapping[int, Handler] = field(default_factory=dict)  # public events, by kind
    rumors: Mapping[int, RumorHandler] = field(default_factory=dict)  # private, by rumor kind
    subscriptions: Sequence[Subscription] = ()  # subscribed when the agent starts
    # asked after each inbound batch: a subscription to (re)send when what it covers changed
    resubscribe: Sequence[Callable[[], Subscription | None]] = ()
    after_batch: Sequence[Callable[[], None]] = ()  # e.g. wake a loop that waits for input
    known_keys: frozenset[str] = frozenset()  # keys never limited as strangers

    def wiring(self) -> Wiring:
        return self


class Component(Protocol):
    def wiring(self) -> Wiring: ...


class Messaging(Protocol):
    """The agent's transport, as a component sees it (implemented by `agent.transport`)."""

    pubkey: str
    keys: sdk.Keys
    clock: Clock
    store: Store
    settings: Settings
    relays: RelaysConfig

    def enqueue_private(
        self, tx: Tx, recipient: str, rumor: Rumor, targets: list[str] | None = None
    ) -> NostrEvent: ...

    async def send_private(
        self, recipient: str, rumor: Rumor, *, wait: bool = True
    ) -> OutboxItem: ...

    async def publish(self, event: NostrEvent, *, wait: bool = True) -> OutboxItem: ...

    async def inbox_of(self, pubkey: str) -> list[str]: ...

    async def fetch(self, filters: list[dict[str, Any]], timeout_s: float = 5) -> list[str]: ...

    async def fetch_into_store(
        self, filters: list[dict[str, Any]], timeout_s: float = 5
    ) -> list[str]: ...

    async def subscribe(self, subscription: Subscription) -> None: ...

    def wake_outbox(self) -> None: ...


class Routes:
    """The kind → handler tables the inbound pipeline dispatches on; filled once, by the agent
    from its components' wiring (a kind claimed twice is an assembly error)."""

    def __init__(self) -> None:
        self.handlers: dict[int, Handler] = {}
        self.rumors: dict[int, RumorHandler] = {}

    def add(self, wiring: Wiring) -> None:
        for table, new in ((self.handlers, wiring.handlers), (self.rumors, wiring.rumors)):
            twice = set(table) & set(new)
            if twice:
                raise ValueError(f"event kinds {sorted(twice)} are handled by two components")
            table.update(new)
