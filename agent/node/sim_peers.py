"""The simulator's peer layer (agent/node/sim.py builds the Lightning ledger on it): nodes and
their keys, peer connections independent of channels, partitions, and the timed event queue
that carries custom messages — delivered only between connected peers, with latency, loss and
reordering — and every other node event to its listeners.

Time comes from `clock` (seconds, float); events are queued with a due time and handed to
listeners by `pump()`, which an async driver (agent/node/simnode.py) or a test calls.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.errors import PeerNotConnected
from agent.node.models import CustomMsg, NodeEvent, Payment, PeerConnected, PeerDisconnected
from events import lnsig
from events.errors import InvalidParams, NotFound

Listener = Callable[[NodeEvent], None]


@dataclass
class SimNode:
    """A simulated node: its key, and the ledger the Lightning layer (sim.py) keeps for it."""

    id: str
    secret: bytes
    alias: str
    onchain_sat: int
    channels: set[str] = field(default_factory=set)
    invoices: dict[str, tuple[str, int, bool]] = field(
        default_factory=dict
    )  # hash -> preimage, msat, paid
    labels: dict[str, str] = field(default_factory=dict)  # invoice label -> payment hash
    expiry: dict[str, int] = field(default_factory=dict)  # hash -> unix time it expires
    rebalances: dict[str, Payment] = field(default_factory=dict)  # label -> completed rebalance
    payments: dict[str, Payment] = field(default_factory=dict)  # hash -> a payment it made


@dataclass(order=True)
class _Queued:
    due: float
    seq: int
    to: str = field(compare=False)
    event: NodeEvent = field(compare=False)


class PeerNetwork:
    """Simulated nodes, their peer links and the events between them."""

    def __init__(
        self,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        latency_s: tuple[float, float] = (0.001, 0.005),
        loss: float = 0.0,
        reorder: float = 0.0,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)  # noqa: S311 - determinism is the point; not for keys
        self.clock = clock
        self.latency_s = latency_s
        self.loss = loss
        self.reorder = reorder
        self.nodes: dict[str, SimNode] = {}
        self.connections: set[frozenset[str]] = set()
        self.partition_of: dict[str, int] = {}
        self.listeners: dict[str, list[Listener]] = defaultdict(list)
        # (node, peer) → how many times that node's peer_connected hook chain has answered
        self.hooks_answered: dict[tuple[str, str], int] = defaultdict(int)
        self.plugins: set[str] = set()  # nodes with a plugin attached (lightningd.bridge)
        self._queue: list[_Queued] = []
        self.on_enqueue: Callable[[], None] = lambda: None  # lets an async driver wake up
        self._seq = 0
        self.stats = {"custommsgs_sent": 0, "custommsgs_dropped": 0}

    # --- nodes, peers, partitions --------------------------------------------------------

    def add_node(self, alias: str, onchain_sat: int = 0) -> str:
        secret = hashlib.sha256(f"hive-sim:{self.seed}:{len(self.nodes)}".encode()).digest()
        node_id = lnsig.node_id(secret)
        self.nodes[node_id] = SimNode(node_id, secret, alias, onchain_sat)
        return node_id

    def node(self, node_id: str) -> SimNode:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise NotFound(f"no node {node_id[:16]}… in the simulation") from None

    def connected(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self.connections and self._reachable(a, b)

    def reachable(self, a: str, b: str) -> bool:
        """Not cut off from each other by a partition."""
        return self._reachable(a, b)

    def _reachable(self, a: str, b: str) -> bool:
        return self.partition_of.get(a, 0) == self.partition_of.get(b, 0)

    def connect(self, a: str, b: str) -> None:
        self.node(a), self.node(b)
        pair = frozenset((a, b))
        if a == b or pair in self.connections:
            return
        self.connections.add(pair)
        if self._reachable(a, b):
            self._emit(a, PeerConnected(peer_id=b))
            self._emit(b, PeerConnected(peer_id=a))

    def disconnect(self, a: str, b: str) -> None:
        pair = frozenset((a, b))
        if pair in self.connections:
            self.connections.discard(pair)
            if self._reachable(a, b):
                self._emit(a, PeerDisconnected(peer_id=b))
                self._emit(b, PeerDisconnected(peer_id=a))

    def partition(self, *groups: set[str]) -> None:
        """Split the network: nodes in different groups cannot talk (their links drop)."""
        before = {p for p in self.connections if self._reachable(*p)}
        self.partition_of = {n: i + 1 for i, group in enumerate(groups) for n in group}
        for pair in before:
            if not self._reachable(*pair):
                a, b = sorted(pair)
                self._emit(a, PeerDisconnected(peer_id=b))
                self._emit(b, PeerDisconnected(peer_id=a))

    def heal(self) -> None:
        """End every partition; links that were cut come back."""
        cut = {p for p in self.connections if not self._reachable(*p)}
        self.partition_of = {}
        for pair in cut:
            a, b = sorted(pair)
            self._emit(a, PeerConnected(peer_id=b))
            self._emit(b, PeerConnected(peer_id=a))

    def peers(self, node_id: str) -> list[str]:
        return sorted(
            other
            for pair in self.connections
            if node_id in pair
            for other in pair
            if other != node_id
        )

    # --- custom messages -----------------------------------------------------------------

    def send_custommsg(self, sender: str, peer: str, payload: bytes) -> None:
        """Queue a message to a connected peer; PeerNotConnected otherwise."""
        if not self.connected(sender, peer):
            raise PeerNotConnected(f"{self.nodes[sender].alias} is not connected to {peer[:16]}…")
        if len(payload) > 65_535:
            raise InvalidParams("a custom message is at most 65,535 bytes including its type")
        self.stats["custommsgs_sent"] += 1
        if self.loss and self.rng.random() < self.loss:
            self.stats["custommsgs_dropped"] += 1
            return
        delay = self.rng.uniform(*self.latency_s)
        if self.reorder and self.rng.random() < self.reorder:
            delay += self.rng.uniform(*self.latency_s) * 4
        self._enqueue(peer, CustomMsg(peer_id=sender, payload=payload), self.clock() + delay)

    def _enqueue(self, to: str, event: NodeEvent, due: float) -> None:
        self._seq += 1
        heapq.heappush(self._queue, _Queued(due, self._seq, to, event))
        self.on_enqueue()

    def _emit(self, to: str, event: NodeEvent) -> None:
        self._enqueue(to, event, self.clock())

    def pump(self) -> int:
        """Deliver every queued event that is due; returns how many were delivered.

        A message whose link broke while it was in flight is dropped (as on a real disconnect).
        """
        now, delivered = self.clock(), 0
        while self._queue and self._queue[0].due <= now:
            item = heapq.heappop(self._queue)
            event = item.event
            if isinstance(event, CustomMsg) and not self.connected(item.to, event.peer_id):
                self.stats["custommsgs_dropped"] += 1
                continue
            for listener in list(self.listeners[item.to]):
                listener(event)
            delivered += 1
        return delivered

    def next_due(self) -> float | None:
        return self._queue[0].due if self._queue else None
