"""A small deterministic network and one scenario, shared by tests that run it through
different paths (simulator directly, CLN RPC socket, the real plugin process)."""

from __future__ import annotations

from typing import Any

from agent.node.backend import NodeBackend
from agent.node.sim import Network

SEED = 7


def ring(clock=lambda: 0.0) -> tuple[Network, list[str]]:
    """Five nodes in a ring of 2M-sat channels, each node funded on chain."""
    net = Network(seed=SEED, clock=clock)
    ids = [net.add_node(f"node{i}", 50_000_000) for i in range(5)]
    for i in range(5):
        net.open_channel(ids[i], ids[(i + 1) % 5], 2_000_000, push_msat=500_000_000)
    return net, ids


async def scenario(node: NodeBackend, bolt11: str) -> dict[str, Any]:
    """Fees, a payment, a circular rebalance, a signed message and a derived secret."""
    chans = await node.channels()
    await node.set_fees(chans[0].short_channel_id, base_msat=0, ppm=250)
    await node.set_fees(chans[1].short_channel_id, htlc_max_msat=1_500_000_000)
    paid = await node.pay(bolt11, max_fee_msat=50_000)
    moved = await node.rebalance(
        chans[0].short_channel_id, chans[1].short_channel_id, 100_000_000, max_fee_ppm=2_000
    )
    signed = await node.signmessage("hive scenario")
    return {
        "paid_fee_msat": paid.fee_msat,
        "rebalance_fee_msat": moved.fee_msat,
        "zbase": signed.zbase,
        "verified": await node.checkmessage("hive scenario", signed.zbase, (await node.info()).id),
        "secret": (await node.makesecret("hive-agent/nostr-key")).hex(),
        "channels": [c.model_dump() for c in await node.channels()],
    }
