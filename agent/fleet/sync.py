"""Anti-entropy, a fleet component: members compare their fact sets (agent/fleet/facts.py) and
repair the differences, so a member back from days offline catches up exactly, whatever its
peers' outboxes gave up on.

1. On every (re)connect of a member, and every `sync_interval_s` (± 20 %) to one connected
   member chosen at random, a member sends STATE_HASH: a digest of its set and its size.
2. A member whose own digest differs starts a reconciliation: range-based set reconciliation
   (events/negentropy.py, NIP-77's algorithm) in SYNC frames — each within the frame limit,
   as few round trips as the differences need.
3. When it is over, the initiator hands on the facts only it holds and asks (`want`) for the
   ones only the other holds; both go as the original signed frames, through the durable
   outbox, and are judged by the receiver exactly as if their authors had sent them live
   (see the kernel's relayed intake and each component's `apply_fact`).

Bounded: one reconciliation each way per pair (a new one replaces the older); at most
DIGEST_BURST digests per member per `sync_gap_s` (a digest storm is refused with RATE_LIMITED;
the limit is kept in the store); at most MAX_OPEN open each way (begun here, answered here:
an answer never waits for a slot our own reconciliations hold, or members all reconciling at
once could each hold every slot waiting on the others' answers); a session lives
`sync_session_s` and at most MAX_ROUNDS negentropy messages; a responder serves only ids of
the set it reconciled, each once.  Bogus ranges or fingerprints end the session with a typed
error.  Sessions live in memory only: after a restart the peer's next step is dropped
(counted as stale) and the next digest starts afresh.
"""

from __future__ import annotations

import logging
import random
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.fleet import facts, roster
from agent.fleet.kernel import Effects, FleetComponent, short
from agent.store import fleet as db
from agent.store.db import Tx
from events.errors import HiveError, InvalidPayload, RateLimited
from events.fleet import Message, MsgType
from events.fleet.sync import (
    MAX_ROUNDS,
    MAX_WANT,
    NEG_LIMIT,
    StateHash,
    decode_data,
    encode_data,
    set_digest,
)
from events.fleet.sync import (
    Sync as SyncBody,
)
from events.negentropy import Negentropy, Storage

log = logging.getLogger("hive.fleet.sync")
MAX_OPEN = 8  # reconciliations open at once each way (and one each way per member)
LIMITS_KV = "fleet_sync_limits"  # peer → when its recent digests were taken
ANSWERS_KV = "fleet_sync_answers"  # peer → when it recently began reconciliations with us
SENT_KV = "fleet_sync_sent"  # peer → when we sent it our recent digests
STATS_KV = "fleet_sync_stats"
DIGEST_BURST = 3


@dataclass
class Session:
    peer: str
    sid: str
    initiator: bool
    neg: Negentropy
    ids: frozenset[bytes]  # the set reconciled (a responder serves only these)
    started: int
    steps: int = 0  # negentropy messages, both ways
    next_round: int = 0  # the round number the peer's next frame must carry
    neg_bytes: int = 0
    round_trips: int = 0
    served: set[bytes] = field(default_factory=set)
    reconciled: bool = False


@dataclass
class SyncStats:
    digests_sent: int = 0
    digests_received: int = 0
    in_sync: int = 0
    started: int = 0  # reconciliations this node initiated
    answered: int = 0  # … and answered
    completed: int = 0
    failed: int = 0
    round_trips: int = 0
    neg_bytes: int = 0  # negentropy messages, both ways
    facts_sent: int = 0  # handed on or served
    facts_wanted: int = 0  # asked for
    stale: int = 0  # steps of sessions no longer open here, dropped
    busy: int = 0  # digests that differed while a reconciliation with their sender was open
    last: dict[str, Any] = field(default_factory=dict)  # the last reconciliation we initiated


class Sync(FleetComponent):
    owns = frozenset({MsgType.STATE_HASH, MsgType.SYNC})
    unacked = frozenset({MsgType.STATE_HASH})
    session = frozenset({MsgType.STATE_HASH, MsgType.SYNC})  # point to point, never handed on

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.SystemRandom()
        self.sessions: dict[tuple[str, str], Session] = {}
        self.stats = SyncStats()
        self._greeted: set[str] = set()  # connected members sent a digest since they connected
        self._next_at = 0

    @staticmethod
    def retry_later(err: HiveError) -> bool:
        """A step refused because too many reconciliations are open is worth a retry (a slot
        frees within a session's life); so is anything the default says."""
        return isinstance(err, RateLimited) or FleetComponent.retry_later(err)

    def bind(self, kernel: Any) -> None:
        super().bind(kernel)
        saved = kernel.store.kv(STATS_KV)
        if isinstance(saved, dict):
            known = {k: v for k, v in saved.items() if k in SyncStats.__dataclass_fields__}
            self.stats = SyncStats(**known)

    # --- digests --------------------------------------------------------------------------

    async def tick(self) -> None:
        k = self.kernel
        now = k.clock.now()
        self._expire(now)
        h = db.hive(k.store)
        if h is None or now - h.joined_at < k.config.sync_join_grace_s:
            self._greeted.clear()  # (just joined: let the news of our arrival spread first)
            return
        members = {m.node_id for m in db.members(k.store)} - {k.me}
        live = k.connected & members
        # new or back: a digest now (from both sides: a digest sent before the other side's
        # agent was listening is lost, and only the periodic one would repair that)
        targets = sorted(live - self._greeted)
        self._greeted = live
        if now >= self._next_at and live:
            interval = k.config.sync_interval_s
            self._next_at = now + round(interval * self.rng.uniform(0.8, 1.2))
            if not targets:
                targets = [self.rng.choice(sorted(live))]
        for peer in targets:
            if self._may_greet(peer, now):
                await self.send_digest(peer)
            else:  # (greeted again on a later pass, within the receiver's limit)
                self._greeted.discard(peer)

    def _may_greet(self, peer: str, now: int) -> bool:
        """Keep within the receiver's DIGEST_BURST per `sync_gap_s` (one short of it, for
        clock skew), counted in the store so restarts in a row do not trip it: a legitimate
        member is never refused for a storm it did not make."""
        gap = self.kernel.config.sync_gap_s
        saved = self.kernel.store.kv(SENT_KV) or {}
        sent = {
            p: recent
            for p, times in saved.items()
            if (recent := [int(t) for t in times if now - int(t) < gap])
        }
        if len(sent.get(peer, [])) >= DIGEST_BURST - 1:
            return False
        sent[peer] = [*sent.get(peer, []), now]
        with self.kernel.store.transaction(now, durable=False) as tx:
            tx.set_kv(SENT_KV, sent)
        return True

    async def send_digest(self, peer: str) -> None:
        k = self.kernel
        h = db.hive(k.store)
        if h is None:
            return
        digest, count = set_digest(facts.items(k.store, k.clock.now()))
        _, frame = k.frame(MsgType.STATE_HASH, StateHash(digest=digest, count=count), h.hive_id)
        self.stats.digests_sent += 1
        await k.send_direct(peer, frame)

    def apply(self, tx: Tx, peer: str, msg: Message, prepared: Any, fx: Effects) -> None:
        roster.active_member(tx, peer, msg.sender_key if msg.signed else None)
        if msg.type == MsgType.STATE_HASH:
            self._on_digest(tx, peer, msg.body_as(StateHash), fx)
        else:
            self._on_step(tx, peer, msg.body_as(SyncBody), fx)
        self._save(tx)

    def _on_digest(self, tx: Tx, peer: str, body: StateHash, fx: Effects) -> None:
        self.stats.digests_received += 1
        self._limit(tx, peer)
        items = facts.items(tx, tx.now)
        if set_digest(items) == (body.digest, body.count):
            self.stats.in_sync += 1
            return
        if any(s.peer == peer and s.initiator for s in self.sessions.values()):
            self.stats.busy += 1  # the reconciliation under way repairs it
            return
        self._admit(initiator=True)
        neg = Negentropy(Storage(items), frame_limit=NEG_LIMIT)
        first = neg.initiate()
        ids = frozenset(i for _, i in items)
        session = Session(peer, secrets.token_hex(16), True, neg, ids, tx.now)
        self.sessions[(peer, session.sid)] = session
        self.stats.started += 1
        self._send(tx, session, SyncBody(session=session.sid, round=0, data=encode_data(first)), fx)
        session.steps, session.neg_bytes = 1, len(first)
        self.stats.neg_bytes += len(first)

    def _admit(self, *, initiator: bool) -> None:
        """Refuse a reconciliation beyond the limit of open ones its way (RATE_LIMITED)."""
        if sum(s.initiator == initiator for s in self.sessions.values()) >= MAX_OPEN:
            raise RateLimited(f"{MAX_OPEN} reconciliations are open here; try again later")

    def _limit(self, tx: Tx, peer: str, kv: str = LIMITS_KV) -> None:
        """At most DIGEST_BURST digests (or reconciliations begun: `kv`) per member per
        `sync_gap_s` (a restart and a reconnect may come close together), counted in the
        store; beyond: RATE_LIMITED."""
        gap = self.kernel.config.sync_gap_s
        saved = self.kernel.store.kv(kv) or {}
        limits = {
            p: recent
            for p, times in saved.items()
            if (recent := [int(t) for t in times if tx.now - int(t) < gap])
        }
        if len(limits.get(peer, [])) >= DIGEST_BURST:
            what = "digests" if kv == LIMITS_KV else "reconciliations begun"
            raise RateLimited(f"at most {DIGEST_BURST} {what} per {gap} s per member")
        limits[peer] = [*limits.get(peer, []), tx.now]
        tx.set_kv(kv, limits)

    # --- reconciliation steps ---------------------------------------------------------------

    def _on_step(self, tx: Tx, peer: str, body: SyncBody, fx: Effects) -> None:
        session = self.sessions.get((peer, body.session))
        if session is None:
            if body.round != 0 or not body.data:
                # a step of a session that ended (timed out, or we restarted since): routine,
                # harmless, and answered by the next digest — dropped, and counted
                self.stats.stale += 1
                return
            session = self._answer(tx, peer, body)
        try:
            if session.initiator:
                self._reconcile(tx, session, body, fx)
            else:
                self._respond(tx, session, body, fx)
        except HiveError:
            self._close(session, ok=False)
            raise

    def _answer(self, tx: Tx, peer: str, body: SyncBody) -> Session:
        """A reconciliation the peer begins; it replaces one it began before (a member runs
        one at a time: the older was abandoned, its last step lost).  A peer begins at most
        DIGEST_BURST per `sync_gap_s` (an honest one begins one per digest we sent it): else
        opening after opening, each wanting the whole set, had every fact served again."""
        self._limit(tx, peer, ANSWERS_KV)
        for old in [s for s in self.sessions.values() if s.peer == peer and not s.initiator]:
            self._close(old, ok=old.reconciled)
        self._admit(initiator=False)
        items = facts.items(tx, tx.now)
        neg = Negentropy(Storage(items), frame_limit=NEG_LIMIT)
        session = Session(peer, body.session, False, neg, frozenset(i for _, i in items), tx.now)
        self.sessions[(peer, body.session)] = session
        self.stats.answered += 1
        return session

    def _respond(self, tx: Tx, s: Session, body: SyncBody, fx: Effects) -> None:
        if body.data:
            if s.reconciled or body.round != s.next_round:
                raise InvalidPayload("a reconciliation message out of turn")
            data = decode_data(body.data)
            answer = s.neg.respond(data)
            self._count(s, data, answer)
            self._send(tx, s, SyncBody(session=s.sid, round=body.round + 1,
                                       data=encode_data(answer)), fx)  # fmt: skip
        if body.want:
            wanted = [w for w in map(bytes.fromhex, body.want) if w in s.ids and w not in s.served]
            s.served.update(wanted)
            self._hand_on(tx, s.peer, wanted, fx)
        if body.done:
            self._close(s, ok=True)

    def _reconcile(self, tx: Tx, s: Session, body: SyncBody, fx: Effects) -> None:
        if s.reconciled or body.round != s.next_round or not body.data:
            raise InvalidPayload("a reconciliation answer out of turn")
        data = decode_data(body.data)
        nxt = s.neg.reconcile(data)
        self._count(s, data, nxt or b"")
        s.round_trips += 1
        self.stats.round_trips += 1
        if nxt is not None:
            step = SyncBody(session=s.sid, round=body.round + 1, data=encode_data(nxt))
            self._send(tx, s, step, fx)
            return
        s.reconciled = True
        have, need = sorted(s.neg.have), sorted(s.neg.need)
        self._hand_on(tx, s.peer, have, fx)
        chunks = [need[i : i + MAX_WANT] for i in range(0, len(need), MAX_WANT)] or [[]]
        for n, chunk in enumerate(chunks):
            ask = SyncBody(
                session=s.sid, round=body.round + 1 + n, want=[w.hex() for w in chunk],
                done=n == len(chunks) - 1,
            )  # fmt: skip
            self._send(tx, s, ask, fx)
        self.stats.facts_wanted += len(need)
        self.stats.last = {
            "peer": s.peer, "round_trips": s.round_trips, "neg_bytes": s.neg_bytes,
            "have": len(have), "need": len(need), "at": tx.now,
        }  # fmt: skip
        self._close(s, ok=True)

    def _count(self, s: Session, data: bytes, answer: bytes) -> None:
        s.steps += 1 + bool(answer)
        s.neg_bytes += len(data) + len(answer)
        self.stats.neg_bytes += len(data) + len(answer)
        if s.steps > MAX_ROUNDS:
            raise InvalidPayload(f"the reconciliation took more than {MAX_ROUNDS} messages")

    def _send(self, tx: Tx, s: Session, body: SyncBody, fx: Effects) -> None:
        self.kernel.enqueue(tx, [s.peer], MsgType.SYNC, body, roster.current_hive(tx).hive_id, fx)
        s.next_round = body.round + 1

    def _hand_on(self, tx: Tx, peer: str, ids: list[bytes], fx: Effects) -> None:
        """The facts named, as their proving frames, queued for `peer` (oldest first)."""
        for row in facts.proofs(tx, ids):
            if self.kernel.unacked(row.msg_type):  # (a state record: sent once, never acked)
                fx.direct.append((peer, row.frame))
            else:
                self.kernel.requeue(tx, peer, row.msg_id, row.msg_type, row.frame, fx)
            self.stats.facts_sent += 1

    # --- upkeep ----------------------------------------------------------------------------

    def _close(self, s: Session, *, ok: bool) -> None:
        if self.sessions.pop((s.peer, s.sid), None) is not None:
            if ok:
                self.stats.completed += 1
            else:
                self.stats.failed += 1

    def _expire(self, now: int) -> None:
        ttl = self.kernel.config.sync_session_s
        for s in [s for s in self.sessions.values() if now - s.started > ttl]:
            log.info("sync: the session with %s timed out", short(s.peer))
            self._close(s, ok=s.reconciled)

    def _save(self, tx: Tx) -> None:
        tx.set_kv(STATS_KV, asdict(self.stats))

    def summary(self) -> dict[str, Any]:
        now = self.kernel.clock.now()
        digest, count = set_digest(facts.items(self.kernel.store, now))
        return {"facts": count, "digest": digest, "open": len(self.sessions),
                **asdict(self.stats)}  # fmt: skip
