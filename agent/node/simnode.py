"""`SimBackend`: one simulated node behind the `NodeBackend` interface, and `SimDriver`, the
task that delivers the simulator's queued events in real time."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncGenerator, Callable
from typing import Any

import anyio

from agent.errors import NodeRefused
from agent.node.models import (
    Channel,
    ChannelState,
    Funds,
    GraphChannel,
    Invoice,
    NodeEvent,
    NodeInfo,
    Payment,
    Peer,
    SignedMessage,
)
from agent.node.sim import Network, SimNode
from agent.node.sim_plugins import PluginFailure, plugins_on
from events import lnsig


class SimDriver:
    """Delivers due simulator events (custom messages after their latency, forwards, peer
    changes) as time passes.  `async with SimDriver(net):` runs it in the background."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self._wake: anyio.Event | None = None
        network.on_enqueue = self._poke

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake = anyio.Event()
            self.network.pump()
            due = self.network.next_due()
            timeout = None if due is None else max(0.0, due - self.network.clock())
            with anyio.move_on_after(timeout):
                await self._wake.wait()

    async def __aenter__(self) -> SimDriver:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self.run)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)


def channel_view(network: Network, node_id: str, scid: str) -> Channel:
    chan = network.channels[scid]
    return Channel(
        short_channel_id=scid,
        peer_id=chan.other(node_id),
        capacity_sat=chan.capacity_sat,
        local_msat=chan.balance[node_id],
        remote_msat=chan.balance[chan.other(node_id)],
        reserve_sat=chan.reserve_msat // 1000,
        state=ChannelState.NORMAL if chan.open else ChannelState.CLOSED,
        policy=chan.policy[node_id],
    )


class SimBackend:
    """One node of a `Network`, as the agent sees a node."""

    def __init__(
        self,
        network: Network,
        node_id: str,
        on_change: Callable[[], None] = lambda: None,
        on_policy: Callable[[str, str], None] | None = None,
    ) -> None:
        self.network = network
        self.node_id = node_id
        self.changed = on_change  # called after every change (e.g. to persist the network)
        # called instead after a fee change alone, with (node id, channel): a journal can
        # then write just that policy (sim_state.Journal.policy)
        self.policy_changed = on_policy
        network.node(node_id)

    @property
    def _node(self) -> SimNode:
        return self.network.node(self.node_id)

    async def info(self) -> NodeInfo:
        return NodeInfo(
            id=self.node_id,
            alias=self._node.alias,
            blockheight=self.network.blockheight,
            num_peers=len(self.network.peers(self.node_id)),
            num_channels=len(self._node.channels),
        )

    async def peers(self) -> list[Peer]:
        counts: dict[str, int] = {}
        for scid in self._node.channels:
            other = self.network.channels[scid].other(self.node_id)
            counts[other] = counts.get(other, 0) + 1
        ids = sorted(set(self.network.peers(self.node_id)) | set(counts))
        return [
            Peer(
                id=p,
                connected=self.network.connected(self.node_id, p),
                num_channels=counts.get(p, 0),
            )
            for p in ids
        ]

    async def channels(self) -> list[Channel]:
        return [channel_view(self.network, self.node_id, s) for s in sorted(self._node.channels)]

    async def set_fees(self, scid: str, **changes: int | None) -> Channel:
        self.network.set_policy(
            self.node_id, scid, **{k: v for k, v in changes.items() if v is not None}
        )
        if self.policy_changed is not None:
            self.policy_changed(self.node_id, scid)
        else:
            self.changed()
        return channel_view(self.network, self.node_id, scid)

    async def open_channel(self, peer_id: str, amount_sat: int) -> Channel:
        scid = self.network.open_channel(self.node_id, peer_id, amount_sat)
        self.changed()
        return channel_view(self.network, self.node_id, scid)

    async def close_channel(self, scid: str) -> None:
        self.network.close_channel(scid, self.node_id)
        self.changed()

    async def invoice(self, amount_msat: int, label: str) -> Invoice:
        invoice = self.network.invoice(self.node_id, amount_msat, label)
        self.changed()
        return invoice

    async def pay(self, bolt11: str, *, max_fee_msat: int | None = None) -> Payment:
        paid = self.network.pay(self.node_id, bolt11, max_fee_msat)
        self.changed()
        return paid

    async def rebalance(
        self,
        out_scid: str,
        in_scid: str,
        amount_msat: int,
        *,
        max_fee_ppm: int,
        label: str | None = None,
    ) -> Payment:
        try:
            return self.network.rebalance(
                self.node_id, out_scid, in_scid, amount_msat, max_fee_ppm, label
            )
        finally:
            self.changed()

    async def find_rebalance(self, label: str) -> Payment | None:
        return self._node.rebalances.get(label)

    async def find_payment(self, payment_hash: str) -> Payment | None:
        return self._node.payments.get(payment_hash)

    async def find_invoice(self, label: str) -> Invoice | None:
        payment_hash = self._node.labels.get(label)
        if payment_hash is None:
            return None
        return self.network.invoice_of(self.node_id, payment_hash)

    async def decode_invoice(self, bolt11: str) -> Invoice:
        amount, _, payment_hash, expires = self.network.decode(bolt11)
        return Invoice(
            bolt11=bolt11, payment_hash=payment_hash, amount_msat=amount, expires_at=expires
        )

    async def funds(self) -> Funds:
        local = sum(self.network.channels[s].balance[self.node_id] for s in self._node.channels)
        return Funds(onchain_sat=self._node.onchain_sat, channels_local_msat=local)

    async def withdraw(self, address: str, amount_sat: int) -> str:
        txid = self.network.withdraw(self.node_id, amount_sat)
        self.changed()
        return txid

    async def signmessage(self, message: str) -> SignedMessage:
        signed = lnsig.sign(self._node.secret, message)
        return SignedMessage(signature=signed.signature, recid=signed.recid, zbase=signed.zbase)

    async def checkmessage(self, message: str, zbase: str, node_id: str) -> bool:
        return lnsig.check(message, zbase, node_id)

    async def makesecret(self, label: str) -> bytes:
        return hashlib.sha256(self._node.secret + b"makesecret:" + label.encode()).digest()

    async def connect(self, peer_id: str) -> None:
        self.network.connect(self.node_id, peer_id)
        self.changed()

    async def sendcustommsg(self, peer_id: str, payload: bytes) -> None:
        self.network.send_custommsg(self.node_id, peer_id, payload)

    def events(self) -> AsyncGenerator[NodeEvent, None]:
        """The node's events from this call on (the listener is registered at once, so nothing
        that happens before the first iteration is missed)."""
        send, receive = anyio.create_memory_object_stream[NodeEvent](10_000)

        def listener(event: NodeEvent) -> None:
            # a consumer that stops reading loses events; it never stalls the network
            with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
                send.send_nowait(event)

        listeners = self.network.listeners[self.node_id]
        listeners.append(listener)

        async def stream() -> AsyncGenerator[NodeEvent, None]:
            try:
                async with receive:
                    async for event in receive:
                        yield event
            finally:
                if listener in listeners:
                    listeners.remove(listener)
                send.close()

        return stream()

    async def graph(self) -> list[GraphChannel]:
        """The whole simulated network's open channels, once per direction (sim_graph.py)."""
        from agent.node.sim_graph import graph

        return graph(self.network)

    async def plugin_call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Other plugins' methods, as the simulated node's plugins answer them
        (agent/node/sim_plugins.py); an error answer is NodeRefused, as through CLNBackend."""
        try:
            return await plugins_on(self.network, self.node_id).call(method, params)
        except PluginFailure as exc:
            raise NodeRefused(f"{method}: {exc.message}") from None
