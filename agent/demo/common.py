"""What several acts share: one way to wait for state that other tasks or processes write, the
simulated ring network the node acts run on, and Olivia and Adam on the embedded relay (acts 1-3).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import nostr_sdk as sdk

from agent.clock import SystemClock
from agent.node.sim import Network
from agent.nostr.client import RelayClient
from events import nip59
from events.base import NostrEvent, parse_event
from events.kinds import Kind

WAIT = 5.0
"""How long acts 1-3 wait for an event from the relay."""


async def until(predicate: Callable[[], bool], timeout_s: float) -> None:
    """Poll `predicate` until it holds; `TimeoutError` after `timeout_s`.

    The acts wait for state owned by other tasks or processes (SQLite rows, a list a handler
    appends to, a pool's connections), which has no event to wait on."""
    with anyio.fail_after(timeout_s):
        while not predicate():  # noqa: ASYNC110 - no event to wait on, see above
            await anyio.sleep(0.05)


def ring(seed: int, names: Sequence[str], push_msat: int) -> tuple[Network, list[str]]:
    """Simulated nodes of 50M sat each in a ring of 2M-sat channels, each channel's opener
    pushing `push_msat` to the next node; returns the network and the node ids in order."""
    net = Network(seed=seed)
    ids = [net.add_node(name, 50_000_000) for name in names]
    for i in range(len(ids)):
        net.open_channel(ids[i], ids[(i + 1) % len(ids)], 2_000_000, push_msat=push_msat)
    return net, ids


def operator_ring() -> tuple[Network, list[str]]:
    """The operator's node (the first id) and four peers: the advisory and escrow acts' network."""
    return ring(7, [f"node{i}" for i in range(5)], push_msat=500_000_000)


@dataclass(frozen=True)
class Pair:
    """Olivia (the operator) and Adam (an advisor), each with a client on the embedded relay,
    subscribed to what acts 1-3 send them."""

    olivia: sdk.Keys
    adam: sdk.Keys
    o_pub: str
    a_pub: str
    oc: RelayClient
    ac: RelayClient
    clock: SystemClock
    relay_url: str


@asynccontextmanager
async def connected(
    relay_url: str, olivia: sdk.Keys, adam: sdk.Keys, clock: SystemClock
) -> AsyncIterator[Pair]:
    """Both clients connected: Olivia hears Adam's profile and her gift wraps, Adam his."""
    o_pub, a_pub = olivia.public_key().to_hex(), adam.public_key().to_hex()
    two_days_ago = clock.now() - nip59.TWO_DAYS
    async with RelayClient([relay_url]) as oc, RelayClient([relay_url]) as ac:
        await oc.subscribe([{"kinds": [Kind.AGENT_INFO], "authors": [a_pub]}])
        await oc.subscribe([{"kinds": [Kind.GIFT_WRAP], "#p": [o_pub], "since": two_days_ago}])
        await ac.subscribe([{"kinds": [Kind.GIFT_WRAP], "#p": [a_pub], "since": two_days_ago}])
        yield Pair(olivia, adam, o_pub, a_pub, oc, ac, clock, relay_url)


async def receive(client: RelayClient, kind: int) -> NostrEvent:
    """The next event of `kind` the client's subscriptions deliver (other kinds are skipped)."""
    with anyio.fail_after(WAIT):
        async for incoming in client.inbox:
            event = parse_event(incoming.raw)
            if event.kind == kind:
                return event
    raise RuntimeError("relay connection closed")
