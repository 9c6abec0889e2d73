"""What several acts share: one way to wait for state that other tasks or processes write, and
the simulated ring network the node acts run on."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio

from agent.node.sim import Network


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
