"""An honest Lightning network simulator: many nodes in one process, deterministic from a seed.

What it models: nodes with on-chain wallets and secret keys; channels with capacity, per-side
balances, reserves (1 % of capacity) and a fee policy per direction; payments routed along the
cheapest path by fee, with HTLC checks at every hop (spendable balance above reserve, htlc
min/max), retries around failed channels, fees kept by the forwarding nodes and forward events
(settled, failed, local_failed) at every intermediate node; circular rebalances; peer
connections independent of channels; custom messages delivered only between connected peers,
with latency, loss, reordering and partitions.

What it does not model: the chain (opens and closes confirm at once), HTLC timeouts, onion
errors beyond the failing hop, gossip delays.

Invariant (checked by property tests): no msat is created or destroyed — the sum of every
on-chain wallet, every channel balance and the fees paid to the chain never changes.

Time comes from `clock` (seconds, float) and, for invoice expiry, `wall` (unix time); custom
messages are queued with a due time and handed to listeners by `pump()`, which an async driver
(SimDriver, agent/node/simnode.py) or a test calls.

Nodes, peer links, partitions and that queue are the peer layer, `PeerNetwork`
(agent/node/sim_peers.py); `Network` adds the Lightning ledger: channels, payments, accounting.
"""

from __future__ import annotations

import hashlib
import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.node.models import (
    FeePolicy,
    Forward,
    ForwardStatus,
    Invoice,
    Payment,
)
from agent.node.sim_peers import PeerNetwork, SimNode
from events.errors import InsufficientBalance, InvalidParams, NotFound, PaymentFailed

__all__ = ["DEFAULT_POLICY", "Network", "SimChannel", "SimNode"]

TEMPORARY_CHANNEL_FAILURE = 0x1007
CLOSE_FEE_SAT = 500
OPEN_FEE_SAT = 700
DEFAULT_POLICY = FeePolicy(
    base_msat=1000, ppm=100, htlc_min_msat=1, htlc_max_msat=10**15, cltv_delta=34
)
MAX_ATTEMPTS = 8
INVOICE_EXPIRY_S = 604_800  # CLN's default: an invoice is payable for a week


@dataclass
class SimChannel:
    scid: str
    a: str
    b: str
    capacity_sat: int
    balance: dict[str, int]  # node id -> msat
    policy: dict[str, FeePolicy]  # node id -> what that node charges to forward out here
    open: bool = True

    @property
    def reserve_msat(self) -> int:
        return self.capacity_sat * 10  # 1 % of capacity, in msat

    def other(self, node: str) -> str:
        return self.b if node == self.a else self.a

    def spendable(self, node: str) -> int:
        return max(0, self.balance[node] - self.reserve_msat)


class Network(PeerNetwork):
    """The simulated network.  All amounts are integers."""

    def __init__(
        self,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        latency_s: tuple[float, float] = (0.001, 0.005),
        loss: float = 0.0,
        reorder: float = 0.0,
    ) -> None:
        super().__init__(seed, clock, latency_s, loss, reorder)
        self.wall = wall  # unix time, for invoice expiry (a test's shifted clock)
        self.stats["payments"] = 0
        self.channels: dict[str, SimChannel] = {}
        self.chain_fees_sat = 0
        self.external_sat = 0  # sent on chain to addresses outside the simulation
        self.dust_msat = 0  # sub-satoshi remainders of closed channels (lost to the chain)
        self.blockheight = 800_000
        self._txindex = 0

    # --- channels ------------------------------------------------------------------------

    def open_channel(self, a: str, b: str, capacity_sat: int, push_msat: int = 0) -> str:
        """Fund a channel from `a`'s wallet (confirmed at once); connects the peers."""
        opener = self.node(a)
        self.node(b)
        if capacity_sat <= 0 or not 0 <= push_msat <= capacity_sat * 1000:
            raise InvalidParams("capacity must be positive and the push within it")
        if opener.onchain_sat < capacity_sat + OPEN_FEE_SAT:
            raise InsufficientBalance(
                f"{opener.alias} has {opener.onchain_sat:,} sat on chain; opening "
                f"{capacity_sat:,} sat needs {capacity_sat + OPEN_FEE_SAT:,}"
            )
        opener.onchain_sat -= capacity_sat + OPEN_FEE_SAT
        self.chain_fees_sat += OPEN_FEE_SAT
        self.blockheight += 1
        self._txindex += 1
        scid = f"{self.blockheight}x{self._txindex}x0"
        self.channels[scid] = SimChannel(
            scid, a, b, capacity_sat,
            {a: capacity_sat * 1000 - push_msat, b: push_msat},
            {a: DEFAULT_POLICY, b: DEFAULT_POLICY},
        )  # fmt: skip
        opener.channels.add(scid)
        self.nodes[b].channels.add(scid)
        self.connect(a, b)
        return scid

    def channel(self, scid: str) -> SimChannel:
        chan = self.channels.get(scid)
        if chan is None or not chan.open:
            raise NotFound(f"no open channel {scid}")
        return chan

    def close_channel(self, scid: str, closer: str) -> None:
        """Close: each side's balance returns to its wallet; the closer pays the chain fee."""
        chan = self.channel(scid)
        if closer not in (chan.a, chan.b):
            raise NotFound(f"channel {scid} is not this node's")
        fee_msat = min(CLOSE_FEE_SAT * 1000, chan.balance[closer])
        chan.balance[closer] -= fee_msat
        self.chain_fees_sat += fee_msat // 1000
        dust = fee_msat % 1000  # sub-sat remainders go to the chain too
        for side in (chan.a, chan.b):
            sats, rest = divmod(chan.balance[side], 1000)
            self.nodes[side].onchain_sat += sats
            dust += rest
            chan.balance[side] = 0
        self.dust_msat += dust
        chan.open = False
        self.nodes[chan.a].channels.discard(scid)
        self.nodes[chan.b].channels.discard(scid)
        self.blockheight += 1

    def set_policy(self, node_id: str, scid: str, **changes: int) -> FeePolicy:
        chan = self.channel(scid)
        if node_id not in (chan.a, chan.b):
            raise NotFound(f"channel {scid} is not this node's")
        policy = chan.policy[node_id].model_copy(update=changes)
        chan.policy[node_id] = FeePolicy.model_validate(policy.model_dump())
        return chan.policy[node_id]

    def withdraw(self, node_id: str, amount_sat: int) -> str:
        node = self.node(node_id)
        if amount_sat <= 0 or node.onchain_sat < amount_sat + CLOSE_FEE_SAT:
            raise InsufficientBalance(f"{node.alias} cannot send {amount_sat:,} sat on chain")
        node.onchain_sat -= amount_sat + CLOSE_FEE_SAT
        self.chain_fees_sat += CLOSE_FEE_SAT
        self.external_sat += amount_sat
        self._txindex += 1
        return hashlib.sha256(f"tx{self.seed}:{self._txindex}".encode()).hexdigest()

    # --- payments ------------------------------------------------------------------------

    def invoice(
        self, node_id: str, amount_msat: int, label: str, expiry_s: int = INVOICE_EXPIRY_S
    ) -> Invoice:
        node = self.node(node_id)
        if amount_msat <= 0:
            raise InvalidParams("an invoice needs a positive amount")
        preimage = self.rng.randbytes(32).hex()
        payment_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        if label in node.labels:
            raise InvalidParams(f"an invoice labelled {label!r} already exists")
        node.invoices[payment_hash] = (preimage, amount_msat, False)
        node.labels[label] = payment_hash
        node.expiry[payment_hash] = int(self.wall()) + expiry_s
        return self.invoice_of(node_id, payment_hash)

    def invoice_of(self, node_id: str, payment_hash: str) -> Invoice:
        """An invoice `node_id` issued, as its bolt11 says it (amount, payee, hash, expiry)."""
        node = self.node(node_id)
        amount, expires = node.invoices[payment_hash][1], node.expiry.get(payment_hash)
        tail = "" if expires is None else f"x{expires}"
        bolt11 = f"lnsim1{amount}x{node_id}x{payment_hash}{tail}"
        return Invoice(
            bolt11=bolt11, payment_hash=payment_hash, amount_msat=amount, expires_at=expires
        )

    def expired(self, node_id: str, payment_hash: str) -> bool:
        expires = self.node(node_id).expiry.get(payment_hash)
        return expires is not None and self.wall() >= expires

    @staticmethod
    def decode(bolt11: str) -> tuple[int, str, str, int | None]:
        """(amount msat, payee, payment hash, expiry as unix time or None) of a simulator
        invoice (one of before 2026-12 carries no expiry)."""
        try:
            prefix, payee, payment_hash, *rest = bolt11.split("x")
            assert prefix.startswith("lnsim1") and len(rest) <= 1
            return int(prefix[6:]), payee, payment_hash, int(rest[0]) if rest else None
        except (ValueError, AssertionError):
            raise InvalidParams("not an invoice of this simulator") from None

    def pay(self, payer: str, bolt11: str, max_fee_msat: int | None = None) -> Payment:
        amount, payee, payment_hash, _ = self.decode(bolt11)
        target = self.node(payee)
        if payment_hash not in target.invoices:
            raise NotFound("the payee does not know this invoice")
        preimage, _, paid = target.invoices[payment_hash]
        if paid:
            raise InvalidParams("this invoice is already paid")
        if self.expired(payee, payment_hash):  # (CLN: pay's error 207, nothing sent)
            raise PaymentFailed("the invoice has expired")
        payment = self._route_and_send(payer, payee, amount, payment_hash, max_fee_msat, set())
        target.invoices[payment_hash] = (preimage, amount, True)
        made = payment.model_copy(update={"preimage": preimage})
        self.node(payer).payments[payment_hash] = made  # (remembered: `find_payment`)
        return made

    def rebalance(
        self,
        node_id: str,
        out_scid: str,
        in_scid: str,
        amount_msat: int,
        max_fee_ppm: int,
        label: str | None = None,
    ) -> Payment:
        """Circular payment: out through `out_scid`, around, back in through `in_scid`."""
        out_chan, in_chan = self.channel(out_scid), self.channel(in_scid)
        if node_id not in (out_chan.a, out_chan.b) or node_id not in (in_chan.a, in_chan.b):
            raise NotFound("both channels must be this node's")
        if out_scid == in_scid:
            raise InvalidParams("a rebalance needs two different channels")
        first, last = out_chan.other(node_id), in_chan.other(node_id)
        max_fee = amount_msat * max_fee_ppm // 1_000_000
        inner = self._cheapest_path(first, last, amount_msat, exclude={node_id})
        if inner is None and first != last:
            raise PaymentFailed("no route between the two peers")
        hops = [(out_scid, node_id, first), *(inner or []), (in_scid, last, node_id)]
        payment_hash = hashlib.sha256(self.rng.randbytes(32)).hexdigest()
        if label is not None and label in self.nodes[node_id].rebalances:
            raise InvalidParams(f"a rebalance labelled {label!r} was already made")
        try:
            paid = self._send_along(hops, amount_msat, payment_hash, max_fee)
        except _HopFailed as failed:
            raise PaymentFailed(f"the circular route failed at {failed.scid}") from None
        if label is not None:
            self.nodes[node_id].rebalances[label] = paid
        return paid

    def _route_and_send(
        self, payer: str, payee: str, amount: int, payment_hash: str,
        max_fee_msat: int | None, excluded: set[str],
    ) -> Payment:  # fmt: skip
        last_error = "no route"
        for _ in range(MAX_ATTEMPTS):
            path = self._cheapest_path(payer, payee, amount, exclude=set(), bad_channels=excluded)
            if path is None:
                break
            try:
                return self._send_along(path, amount, payment_hash, max_fee_msat)
            except _HopFailed as failed:
                excluded.add(failed.scid)
                last_error = f"temporary channel failure at {failed.scid}"
        raise PaymentFailed(f"could not deliver {amount:,} msat: {last_error}")

    def _fee(self, policy: FeePolicy, amount: int) -> int:
        return policy.base_msat + amount * policy.ppm // 1_000_000

    def _cheapest_path(
        self, src: str, dst: str, amount: int, exclude: set[str],
        bad_channels: set[str] | None = None,
    ) -> list[tuple[str, str, str]] | None:  # fmt: skip
        """Dijkstra backwards from `dst` by fee; hops are (scid, from, to).

        The sender knows its own balances but not others' (only capacities), like a real node.
        """
        if src == dst:
            return []
        bad = bad_channels or set()
        best: dict[str, int] = {dst: amount}
        nxt: dict[str, tuple[str, str]] = {}
        heap = [(0, amount, dst)]
        while heap:
            cost, amt, node = heapq.heappop(heap)
            if node == src:
                break
            if amt != best.get(node):
                continue
            for scid in self.nodes[node].channels:
                chan = self.channels[scid]
                prev = chan.other(node)
                if scid in bad or prev in exclude or not self._reachable(prev, node):
                    continue
                if amt > chan.capacity_sat * 1000 - chan.reserve_msat:
                    continue
                if prev == src and chan.spendable(src) < amt:
                    continue
                fee = 0 if prev == src else self._fee(chan.policy[prev], amt)
                need = amt + fee
                if need < best.get(prev, 1 << 62):
                    best[prev] = need
                    nxt[prev] = (scid, node)
                    heapq.heappush(heap, (cost + fee + 1, need, prev))
        if src not in nxt:
            return None
        hops, node = [], src
        while node != dst:
            scid, to = nxt[node]
            hops.append((scid, node, to))
            node = to
        return hops

    def _send_along(
        self, hops: list[tuple[str, str, str]], amount: int, payment_hash: str,
        max_fee_msat: int | None,
    ) -> Payment:  # fmt: skip
        amounts = [amount] * len(hops)  # amounts[i]: msat carried over hops[i]
        for i in range(len(hops) - 2, -1, -1):
            forwarder_out = hops[i + 1]
            chan = self.channels[forwarder_out[0]]
            amounts[i] = amounts[i + 1] + self._fee(chan.policy[forwarder_out[1]], amounts[i + 1])
        fee = amounts[0] - amount
        if max_fee_msat is not None and fee > max_fee_msat:
            raise PaymentFailed(
                f"the cheapest route costs {fee:,} msat, over the {max_fee_msat:,} allowed"
            )
        now = self.clock()
        for i, (scid, frm, _to) in enumerate(hops):
            chan = self.channels[scid]
            policy = chan.policy[frm]
            ok = chan.open and chan.spendable(frm) >= amounts[i]
            ok = ok and policy.htlc_min_msat <= amounts[i] <= policy.htlc_max_msat
            if not ok:
                self._report_failure(hops, amounts, i, now)
                raise _HopFailed(scid)
        for i, (scid, frm, to) in enumerate(hops):
            chan = self.channels[scid]
            chan.balance[frm] -= amounts[i]
            chan.balance[to] += amounts[i]
        for i in range(1, len(hops)):
            self._emit(hops[i][1], Forward(
                in_channel=hops[i - 1][0], out_channel=hops[i][0], in_msat=amounts[i - 1],
                out_msat=amounts[i], fee_msat=amounts[i - 1] - amounts[i],
                status=ForwardStatus.SETTLED, received_time=now, resolved_time=now,
                payment_hash=payment_hash,
            ))  # fmt: skip
        self.stats["payments"] += 1
        return Payment(
            payment_hash=payment_hash, preimage="", amount_msat=amount, fee_msat=fee, hops=len(hops)
        )

    def _report_failure(
        self, hops: list[tuple[str, str, str]], amounts: list[int], at: int, now: float
    ) -> None:
        for i in range(1, at + 1):
            status = ForwardStatus.LOCAL_FAILED if i == at else ForwardStatus.FAILED
            self._emit(hops[i][1], Forward(
                in_channel=hops[i - 1][0], out_channel=hops[i][0], in_msat=amounts[i - 1],
                out_msat=amounts[i], fee_msat=0, status=status,
                failcode=TEMPORARY_CHANNEL_FAILURE, received_time=now, resolved_time=now,
            ))  # fmt: skip

    # --- accounting ----------------------------------------------------------------------

    def total_msat(self) -> int:
        """Everything in the system; constant across every operation (property-tested)."""
        onchain = sum(n.onchain_sat for n in self.nodes.values()) * 1000
        channels = sum(sum(c.balance.values()) for c in self.channels.values())
        outside = (self.chain_fees_sat + self.external_sat) * 1000
        return onchain + channels + outside + self.dust_msat


class _HopFailed(Exception):
    def __init__(self, scid: str) -> None:
        self.scid = scid
