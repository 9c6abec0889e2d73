"""`NodeBackend`: everything the agent asks of a Lightning node.

Two implementations stand side by side: `CLNBackend` (Core Lightning over pyln-client's
`LightningRpc`) and `SimBackend` (one node of the simulator).  The agent never knows which.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Protocol

from agent.node.models import (
    Channel,
    Funds,
    GraphChannel,
    Invoice,
    NodeEvent,
    NodeInfo,
    Payment,
    Peer,
    SignedMessage,
)


class NodeBackend(Protocol):
    async def info(self) -> NodeInfo: ...

    async def peers(self) -> list[Peer]: ...

    async def channels(self) -> list[Channel]:
        """Our open channels, with balances and our fee policy on each."""
        ...

    async def set_fees(
        self,
        scid: str,
        *,
        base_msat: int | None = None,
        ppm: int | None = None,
        htlc_min_msat: int | None = None,
        htlc_max_msat: int | None = None,
    ) -> Channel: ...

    async def open_channel(self, peer_id: str, amount_sat: int) -> Channel: ...

    async def close_channel(self, scid: str) -> None: ...

    async def invoice(self, amount_msat: int, label: str) -> Invoice: ...

    async def pay(self, bolt11: str, *, max_fee_msat: int | None = None) -> Payment: ...

    async def rebalance(
        self,
        out_scid: str,
        in_scid: str,
        amount_msat: int,
        *,
        max_fee_ppm: int,
        label: str | None = None,
    ) -> Payment:
        """Circular payment out through `out_scid` and back in through `in_scid`.

        With a `label`, the node refuses a second rebalance under the same label and
        `find_rebalance(label)` can tell afterwards whether it happened (crash recovery).
        """
        ...

    async def find_rebalance(self, label: str) -> Payment | None: ...

    async def find_payment(self, payment_hash: str) -> Payment | None:
        """A payment this node made to `payment_hash` that completed (with its preimage), or
        None (never made, or failed): what a payer asks after a restart before paying again."""
        ...

    async def find_invoice(self, label: str) -> Invoice | None:
        """The invoice this node issued under `label`, or None: an invoice asked for again is
        the same one."""
        ...

    async def decode_invoice(self, bolt11: str) -> Invoice:
        """An invoice as the node decodes it: the amount it asks for and its payment hash
        (what a payer checks before paying, rather than what the invoice's sender claims)."""
        ...

    async def funds(self) -> Funds: ...

    async def withdraw(self, address: str, amount_sat: int) -> str: ...

    async def signmessage(self, message: str) -> SignedMessage: ...

    async def checkmessage(self, message: str, zbase: str, node_id: str) -> bool: ...

    async def makesecret(self, label: str) -> bytes:
        """A 32-byte secret derived from the node's HSM and `label` (stable across restarts)."""
        ...

    async def connect(self, peer_id: str) -> None: ...

    async def sendcustommsg(self, peer_id: str, payload: bytes) -> None:
        """Send a BOLT 1 custom message (2-byte type included) to a connected peer."""
        ...

    def events(self) -> AsyncGenerator[NodeEvent, None]:
        """Custom messages, peer connects/disconnects and forwards, as they happen."""
        ...

    async def graph(self) -> list[GraphChannel]:
        """The public network as the node's gossip knows it: every channel once per direction
        (CLN `listchannels` without arguments), sorted by (scid, source)."""
        ...

    async def plugin_call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Any RPC method by name, with named parameters: lightningd's `plugin` command and
        the methods other plugins add (`revenue-status`, `clboss-ignore`, …).  Errors are
        mapped as for every other call (NodeRefused, NotFound, InvalidParams, …)."""
        ...


async def resize_channel(node: NodeBackend, scid: str, capacity_sat: int) -> Channel:
    """Splice-less resize: close the channel and open a new one of `capacity_sat` to the peer."""
    channel = next((c for c in await node.channels() if c.short_channel_id == scid), None)
    if channel is None:
        from events.errors import NotFound

        raise NotFound(f"no open channel {scid}")
    await node.close_channel(scid)
    return await node.open_channel(channel.peer_id, capacity_sat)
