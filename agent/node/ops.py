"""Node-level operations the agent performs through any `NodeBackend`."""

from __future__ import annotations

from typing import Any

from agent.node.backend import NodeBackend


async def node_summary(node: NodeBackend) -> dict[str, Any]:
    """What an operator (and `hive-status`) sees of the node: identity, funds, channels."""
    info = await node.info()
    funds = await node.funds()
    channels = await node.channels()
    return {
        "id": info.id,
        "alias": info.alias,
        "blockheight": info.blockheight,
        "onchain_sat": funds.onchain_sat,
        "channels_local_msat": funds.channels_local_msat,
        "channels": [
            {
                "short_channel_id": c.short_channel_id,
                "peer_id": c.peer_id,
                "capacity_sat": c.capacity_sat,
                "local_msat": c.local_msat,
                "remote_msat": c.remote_msat,
                "fee_base_msat": c.policy.base_msat,
                "fee_ppm": c.policy.ppm,
            }
            for c in channels
        ],
    }
