"""Intent races at scale: N members running the pure core of intent locks
(agent/fleet/intent_rules.py, wired as agent/fleet/intents.py wires it) over a discrete-event
network that loses, delays and reorders messages and retries them until acknowledged, like the
kernel's outbox.  The real component runs the same rules on the simulator in
tests/test_intents.py; this runs them ten thousand times in seconds.

`run(...)` returns what a fleet operator cares about: how many races, how many locks
committed, duplicate actions (two actions on one target while a lock on it was live),
intents left pending or committed at the end (stuck), and commit latencies.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field, replace
from typing import Any

from agent.fleet import intent_rules as rules
from agent.fleet.intent_rules import Lock, Status
from events.fleet.intent import IntentAck

KIND = "channel_open"


@dataclass
class Msg:
    id: int
    src: int
    dst: int
    type: str  # intent, ack, commit, abort, done
    body: Any


@dataclass
class Member:
    idx: int
    node: str
    locks: dict[str, Lock] = field(default_factory=dict)
    seen: set[int] = field(default_factory=set)
    by_target: dict[str, dict[str, Lock]] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)  # ids of own pending and others' live locks

    def put(self, lock: Lock) -> None:
        self.locks[lock.id] = lock
        self.by_target.setdefault(lock.target, {})[lock.id] = lock
        if lock.status in rules.LIVE and lock.status != Status.DONE:
            self.live.add(lock.id)
        else:
            self.live.discard(lock.id)

    def on(self, target: str) -> list[Lock]:
        return list(self.by_target.get(target, {}).values())


@dataclass
class Result:
    races: int = 0
    announced: int = 0
    committed: int = 0
    executed: int = 0
    duplicates: int = 0
    stuck: int = 0
    aborted: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    messages: int = 0
    lost: int = 0


class Model:
    def __init__(
        self, n: int, *, loss: float, seed: int, hold_ms: int = 10_000, expiry_ms: int = 30_000,
        latency_ms: tuple[float, float] = (1.0, 40.0), retry_ms: float = 200.0,
        silence_is_consent: bool = False,
    ) -> None:  # fmt: skip
        # silence_is_consent: a broken variant (every silent member taken as unreachable when
        # the hold ends) that shows this harness does catch duplicate actions
        self.rng = random.Random(seed)
        self.members = [Member(i, f"02{self.rng.getrandbits(256):064x}") for i in range(n)]
        self.loss, self.latency, self.retry = loss, latency_ms, retry_ms
        self.hold_s, self.expiry_s = hold_ms // 1000, expiry_ms // 1000
        self.now_ms = 0.0
        self.queue: list[tuple[float, int, str, Any]] = []
        self.seq = 0
        self.unacked: dict[int, Msg] = {}
        self.result = Result()
        self.executions: dict[str, list[tuple[float, float]]] = {}  # target → (at, lock end)
        self.started: dict[str, float] = {}
        self.silence_is_consent = silence_is_consent

    # --- the discrete-event network -------------------------------------------------------

    def at(self, t_ms: float, what: str, data: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (t_ms, self.seq, what, data))

    def now(self) -> int:
        return int(self.now_ms // 1000)

    def send(self, src: int, dst: int, type_: str, body: Any) -> None:
        self.seq += 1
        msg = Msg(self.seq, src, dst, type_, body)
        self.unacked[msg.id] = msg
        self.result.messages += 1
        self._attempt(msg)

    def _attempt(self, msg: Msg) -> None:
        if self.rng.random() >= self.loss:
            self.at(self.now_ms + self.rng.uniform(*self.latency), "deliver", msg)
        else:
            self.result.lost += 1
        self.at(self.now_ms + self.retry * self.rng.uniform(1.0, 1.25), "retry", msg.id)

    def broadcast(self, src: int, type_: str, body: Any) -> None:
        for m in self.members:
            if m.idx != src:
                self.send(src, m.idx, type_, body)

    # --- members: the component's wiring of the rules --------------------------------------

    def request(self, i: int, target: str) -> None:
        me = self.members[i]
        now = self.now()
        probe = Lock("", me.node, KIND, target, 1, self.hold_s, now, now + self.expiry_s)
        if rules.blockers(probe, me.on(target), now):
            return  # refused locally: another intent holds the target
        self.seq += 1
        lock = replace(
            probe, id=f"{self.seq:032x}", mine=True,
            waiting=frozenset(m.node for m in self.members if m.idx != i),
        )  # fmt: skip
        me.put(lock)
        self.started[lock.id] = self.now_ms
        self.result.announced += 1
        self.broadcast(i, "intent", lock)
        self.drive(i, lock.id)

    def drive(self, i: int, lock_id: str) -> None:
        me = self.members[i]
        lock = me.locks[lock_id]
        reachable = (
            set() if self.silence_is_consent else {m.node for m in self.members if m.idx != i}
        )
        to = rules.due(lock, self.now(), reachable)
        if to == Status.COMMITTED:
            me.put(rules.move(lock, Status.COMMITTED))
            self.result.committed += 1
            self.result.latencies_ms.append(self.now_ms - self.started[lock_id])
            self.broadcast(i, "commit", lock_id)
            self.execute(i, lock_id)
        elif to == Status.ABORTED:
            self.abort(i, lock_id, "expired")

    def execute(self, i: int, lock_id: str) -> None:
        lock = self.members[i].locks[lock_id]
        runs = self.executions.setdefault(lock.target, [])
        if any(at <= self.now_ms < end for at, end in runs):
            self.result.duplicates += 1
        runs.append((self.now_ms, lock.expires_at * 1000.0))
        self.result.executed += 1
        self.members[i].put(rules.move(lock, Status.DONE))
        self.broadcast(i, "done", lock_id)

    def abort(self, i: int, lock_id: str, reason: str) -> None:
        me = self.members[i]
        lock = me.locks[lock_id]
        if lock.status == Status.PENDING:
            lock = rules.move(lock, Status.ABORTED, reason)
        me.put(lock)
        self.result.aborted[lock.reason] = self.result.aborted.get(lock.reason, 0) + 1
        self.broadcast(i, "abort", lock_id)

    def receive(self, msg: Msg) -> bool:
        """Handle `msg` at its destination; False: not handled yet (retried)."""
        me = self.members[msg.dst]
        if msg.id in me.seen:
            return True
        now = self.now()
        if msg.type == "intent":
            incoming: Lock = replace(msg.body, mine=False, waiting=frozenset(), acks={})
            if now >= incoming.expires_at:
                me.put(replace(incoming, status=Status.EXPIRED))
            else:
                answer = rules.answer(incoming, me.on(incoming.target), me.node, now)
                for mine in answer.stand_down:
                    self.abort(msg.dst, mine.id, "tie_breaker_loss")
                me.put(incoming)
                self.send(msg.dst, msg.src, "ack", answer.ack)
        elif msg.type == "ack":
            ack: IntentAck = msg.body
            lock = me.locks[ack.intent]
            if lock.status == Status.PENDING:
                lock = rules.read_answer(lock, self.members[msg.src].node, ack)
                me.put(lock)
                if lock.status == Status.ABORTED:
                    self.abort(msg.dst, lock.id, lock.reason)
                else:
                    self.drive(msg.dst, lock.id)
        else:
            lock_id = msg.body
            if lock_id not in me.locks:
                return False  # (overtook the INTENT: the sender retries)
            self.end(msg.dst, lock_id, msg.type)
        me.seen.add(msg.id)
        return True

    def end(self, i: int, lock_id: str, type_: str) -> None:
        me = self.members[i]
        lock = me.locks[lock_id]
        to = {"commit": Status.COMMITTED, "abort": Status.ABORTED, "done": Status.DONE}[type_]
        if lock.status == to:
            return
        if lock.status == Status.PENDING and to == Status.DONE:
            lock = rules.move(lock, Status.COMMITTED)  # (the COMMIT is still on its way)
        if to in rules.MOVES[lock.status]:
            me.put(rules.move(lock, to))
        if to == Status.COMMITTED:
            for mine in rules.yield_to(me.locks[lock_id], me.on(lock.target), me.node):
                self.abort(i, mine.id, "conflict_committed")

    def tick(self) -> None:
        now = self.now()
        for m in self.members:
            for lock in [m.locks[x] for x in list(m.live)]:
                if lock.mine and lock.status == Status.PENDING:
                    self.drive(m.idx, lock.id)
                elif (
                    not lock.mine
                    and now >= lock.expires_at
                    and Status.EXPIRED in rules.MOVES[lock.status]
                ):
                    m.put(rules.move(lock, Status.EXPIRED))

    # --- the run ---------------------------------------------------------------------------

    def run(self, races: int, targets: int, gap_ms: float = 20.0) -> Result:
        pool = [f"03{self.rng.getrandbits(256):064x}" for _ in range(targets)]
        for r in range(races):
            t0 = r * gap_ms
            target = self.rng.choice(pool)
            for i in self.rng.sample(range(len(self.members)), self.rng.randint(2, 4)):
                self.at(t0 + self.rng.uniform(0, 20), "request", (i, target))
        end = races * gap_ms + 3 * self.expiry_s * 1000
        for t in range(0, int(end), 500):
            self.at(float(t), "tick", None)
        self.result.races = races
        while self.queue:
            self.now_ms, _, what, data = heapq.heappop(self.queue)
            self._event(what, data)
        for m in self.members:
            self.result.stuck += sum(
                1 for lk in m.locks.values() if lk.mine and lk.status in (Status.PENDING,)
            )
        return self.result

    def _event(self, what: str, data: Any) -> None:
        if what == "request":
            self.request(*data)
        elif what == "tick":
            self.tick()
        elif what == "deliver":
            # the receiver's acknowledgement of the frame is lost as often as anything
            handled = data.id in self.unacked and self.receive(data)
            if handled and self.rng.random() >= self.loss:
                self.unacked.pop(data.id, None)
        elif what == "retry":
            msg = self.unacked.get(data)
            if msg is not None:
                self._attempt(msg)


def run(
    races: int = 10_000, members: int = 10, loss: float = 0.25, seed: int = 1,
    targets: int = 2_000, **kw: Any,
) -> Result:  # fmt: skip
    return Model(members, loss=loss, seed=seed, **kw).run(races, targets)
