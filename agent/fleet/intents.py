"""Intent locks, a fleet component (DESIGN §7.3; the rules are in intent_rules.py): before a
member does something another member might also do, it announces INTENT to every member, and
acts only once the lock commits.

- `request()` persists the intent and queues INTENT for every member in one transaction (the
  active ones are waited for); a live intent on the same kind and target — ours or another
  member's — refuses it (INTENT_CONFLICT).
- Every member answers INTENT_ACK (ok / conflict naming the blocking intent / refused with a
  code: the target is banned, its own policy forbids), through the durable outbox.
- The owner commits (INTENT_COMMIT to every member) once the rule says so, claims the action
  in the store, runs it through the `Executor` port and reports INTENT_DONE ok/failed; it
  aborts (INTENT_ABORT, with the reason) when it loses, is refused, or hears nothing in time.
- INTENT, COMMIT, ABORT and DONE are facts (agent/fleet/facts.py): anti-entropy hands them to
  a member that missed them, so it learns which targets are taken.

Crash-safe: every state change and the frames it sends are one transaction; the action is
claimed (committed) before it runs, and a claim found without an outcome after a restart is
settled by asking the node (`Executor.settle`), never run again.  Bounded: at most
MAX_LIVE live intents per member and MAX_RECENT announced per 10 minutes (counted in the store).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Protocol

from agent.crash import crash_point
from agent.fleet import facts, roster
from agent.fleet import intent_rules as rules
from agent.fleet.facts import FactKind
from agent.fleet.intent_exec import Executor, Outcome
from agent.fleet.intent_rules import Lock, Status
from agent.fleet.kernel import Effects, FleetComponent, short
from agent.store import fleet as db
from agent.store import intents as idb
from agent.store.db import Db, Tx
from agent.store.intents import IntentRow
from events import fleet as wire
from events.errors import (
    Banned,
    HiveError,
    IntentConflict,
    InvalidParams,
    InvalidPayload,
    NotFound,
    RateLimited,
    Replayed,
    Unauthorized,
)
from events.fleet import Message, MsgType
from events.fleet.intent import (
    MAX_LIFE_S,
    Intent,
    IntentAbort,
    IntentAck,
    IntentCommit,
    IntentDone,
    IntentKind,
)
from events.fleet.wire import validated

log = logging.getLogger("hive.fleet.intents")
MAX_LIVE = 20  # live intents per member
MAX_RECENT = 60  # intents announced per member per RECENT_S
RECENT_S = 600
KEEP_OWN_S = 7 * 86_400  # our finished intents stay listed a week
KEEP_FOREIGN_S = 3_600  # other members' an hour past their expiry
ENDS = {MsgType.INTENT_COMMIT, MsgType.INTENT_ABORT, MsgType.INTENT_DONE}


class IntentPolicy(Protocol):
    def check(self, kind: str, target: str, amount_sat: int) -> None:
        """Raise a HiveError if this node's own policy forbids the action (for anyone)."""


class Intents(FleetComponent):
    owns = frozenset({MsgType.INTENT, MsgType.INTENT_ACK, *ENDS})
    facts = frozenset({MsgType.INTENT, *ENDS})
    # only an INTENT's answer is a promise (an `ok` blocks our own intents): it is fsynced; an
    # answer, commit, abort or end lost to a power failure only delays (see intent_rules.py)
    light = frozenset({MsgType.INTENT_ACK, *ENDS})

    def __init__(
        self, executor: Executor | None = None, policy: IntentPolicy | None = None
    ) -> None:
        self.executor = executor
        self.policy = policy
        self.counts: dict[str, int] = {}

    @staticmethod
    def retry_later(err: HiveError) -> bool:
        """An end of an intent we have not heard of yet (it overtook the INTENT) is worth a
        retry; so is anything the default says."""
        return isinstance(err, NotFound) or FleetComponent.retry_later(err)

    # --- this member's intents ------------------------------------------------------------

    async def request(
        self, kind: str, target: str, amount_sat: int = 0, *, origin: str = "operator",
        hold_s: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Announce an intent; the lock commits (and the action runs) as the rule says."""
        k = self.kernel
        cfg = k.config
        async with k.lock:
            now = k.clock.now()
            h = roster.current_hive(k.store)
            hold = cfg.intent_hold_s if hold_s is None else hold_s
            body = validated(
                Intent,
                {"kind": _kind(kind), "target": target, "amount_sat": amount_sat, "hold_s": hold,
                 "expires_at": now + max(cfg.intent_expiry_s, hold)},
                "intent",
            )  # fmt: skip
            if self.policy is not None:
                self.policy.check(kind, target, amount_sat)
            fx = Effects()
            with k.store.transaction(now) as tx:
                live = rules.blockers(self._probe(body, now), idb.on_target(tx, kind, target), now)
                if live:
                    top = live[0]
                    raise IntentConflict(
                        f"{kind} to {target[:12]}… is {top.status} by {top.owner[:12]}…"
                        f" (intent {top.id[:8]}) until {top.expires_at}"
                    )
                others = [m.node_id for m in db.members(tx) if m.node_id != k.me]
                msg = k.enqueue(tx, others, MsgType.INTENT, body, h.hive_id, fx)
                db.claim(tx, k.me, msg.id, now)
                active = self._active(tx, now)
                lock = replace(
                    self._lock(msg, body), mine=True, waiting=frozenset(set(others) & active)
                )
                row = IntentRow(lock, origin=origin, frame=msg.raw)
                idb.put(tx, row)
                facts.record(tx, FactKind.INTENT, msg.id, msg, names=(msg.id,))
                row = self._drive(tx, row, h.hive_id, fx)
            self._tally("announced")
        await k.after(fx)
        k.wake()  # the loop runs the action of a lock committed at once
        return row.to_dict()

    def _probe(self, body: Intent, now: int) -> Lock:
        k = self.kernel
        return Lock("", k.me, body.kind, body.target, body.amount_sat, body.hold_s, now,
                    body.expires_at)  # fmt: skip

    @staticmethod
    def _lock(msg: Message, body: Intent) -> Lock:
        return Lock(msg.id, msg.node, body.kind, body.target, body.amount_sat,
                    body.hold_s, msg.ts, body.expires_at)  # fmt: skip

    def _active(self, tx: Tx, now: int) -> set[str]:
        presence = self.kernel.presence
        members = {m.node_id for m in db.members(tx)}
        return members if presence is None else presence.active(tx, now) & members

    def _drive(self, tx: Tx, row: IntentRow, hive: str, fx: Effects) -> IntentRow:
        """Commit or abort an own pending intent if the rule says so now."""
        k = self.kernel
        to = rules.due(row.lock, tx.now, k.connected, k.config.intent_mode)
        if to == Status.COMMITTED:
            row = replace(row, lock=rules.move(row.lock, Status.COMMITTED))
            self._send_all(tx, MsgType.INTENT_COMMIT, IntentCommit(
                intent=row.lock.id, acks=sorted(m for m, v in row.lock.acks.items() if v == "ok"),
            ), hive, fx, FactKind.INTENT_COMMIT)  # fmt: skip
            self._tally("committed")
        elif to == Status.ABORTED:
            silent = sorted(rules.missing(row.lock))
            reason = "expired" if tx.now >= row.lock.expires_at else "no_answer"
            why = f"no answer from {len(silent)} member(s)"
            return self._abort(tx, row, reason, why, hive, fx)
        idb.put(tx, row)
        return row

    def _abort(
        self, tx: Tx, row: IntentRow, reason: str, message: str, hive: str, fx: Effects
    ) -> IntentRow:
        if row.lock.status == Status.PENDING:
            row = replace(row, lock=rules.move(row.lock, Status.ABORTED, reason))
        body = IntentAbort(intent=row.lock.id, reason=reason, message=message[:280])
        self._send_all(tx, MsgType.INTENT_ABORT, body, hive, fx, FactKind.INTENT_END)
        idb.put(tx, row)
        self._tally(f"aborted:{reason}")
        log.info("fleet: intent %s aborted: %s", row.lock.id[:8], reason)
        return row

    def _send_all(
        self, tx: Tx, t: MsgType, body: wire.Body, hive: str, fx: Effects, kind: FactKind
    ) -> None:
        k = self.kernel
        others = [m.node_id for m in db.members(tx) if m.node_id != k.me]
        msg = k.enqueue(tx, others, t, body, hive, fx)
        db.claim(tx, k.me, msg.id, tx.now)
        intent_id = getattr(body, "intent", msg.id)
        facts.record(tx, kind, intent_id, msg, names=(intent_id,))

    # --- the loop: drive our intents, run committed actions ----------------------------------

    async def tick(self) -> None:
        k = self.kernel
        h = db.hive(k.store)
        if h is None:
            return
        for row in idb.own_open(k.store):
            if row.lock.status == Status.PENDING:
                now, mode = k.clock.now(), k.config.intent_mode
                if rules.due(row.lock, now, k.connected, mode) is None:
                    continue  # (nothing to decide yet: no write)
                async with k.lock:
                    fx = Effects()
                    with k.store.transaction(k.clock.now()) as tx:
                        fresh = idb.get(tx, row.lock.id)
                        if fresh is not None and fresh.lock.status == Status.PENDING:
                            self._drive(tx, fresh, h.hive_id, fx)
                await k.after(fx)
            else:
                await self._execute(row, h.hive_id)

    async def _execute(self, row: IntentRow, hive: str) -> None:
        """Run (once) or settle the action of a committed own intent, then report DONE."""
        k = self.kernel
        if self.executor is None:
            return
        if row.exec == "none":
            with k.store.transaction(k.clock.now()) as tx:
                fresh = idb.get(tx, row.lock.id)
                if fresh is None or fresh.exec != "none":
                    return
                idb.put(tx, replace(fresh, exec="claimed"))
            crash_point("intent.before_execute", row.lock.kind)
            outcome = await self.executor.run(row)
            crash_point("intent.after_execute", row.lock.kind)
        elif row.exec == "waiting" and k.clock.now() >= row.lock.expires_at:
            outcome = await self.executor.withdraw(row)  # (never run outside the lock)
        else:
            outcome = await self.executor.settle(row)
        async with k.lock:
            fx = Effects()
            with k.store.transaction(k.clock.now()) as tx:
                fresh = idb.get(tx, row.lock.id)
                if fresh is None or fresh.exec == "finished":
                    return
                self._finish(tx, fresh, outcome, hive, fx)
        await k.after(fx)

    def _finish(self, tx: Tx, row: IntentRow, outcome: Outcome, hive: str, fx: Effects) -> None:
        if not outcome.final:
            idb.put(tx, replace(row, exec="waiting", outcome=outcome.detail[:280]))
            return
        ok = outcome.state == "ok"
        lock = rules.move(row.lock, Status.DONE if ok else Status.FAILED)
        idb.put(tx, replace(row, lock=lock, exec="finished", outcome=outcome.detail[:280]))
        body = IntentDone(intent=row.lock.id, ok=ok, detail=outcome.detail[:280])
        self._send_all(tx, MsgType.INTENT_DONE, body, hive, fx, FactKind.INTENT_END)
        self._tally("done" if ok else "failed")

    # --- frames ------------------------------------------------------------------------------

    def apply(self, tx: Tx, peer: str, msg: Message, prepared: Any, fx: Effects) -> None:
        roster.active_member(tx, msg.node, msg.sender_key)
        if msg.type == MsgType.INTENT:
            self._on_intent(tx, msg, fx)
        elif msg.type == MsgType.INTENT_ACK:
            self._on_answer(tx, peer, msg, fx)
        else:
            self._on_end(tx, msg, fx)

    def _on_intent(self, tx: Tx, msg: Message, fx: Effects) -> None:
        body = msg.body_as(Intent)
        if body.expires_at - msg.ts > MAX_LIFE_S or body.expires_at < msg.ts + body.hold_s:
            raise InvalidPayload("an intent lives from its hold to at most an hour")
        known = idb.get(tx, msg.id)
        if known is not None and known.lock.owner != msg.node:
            # (seen ids are per sender: this one names another member's intent)
            raise Replayed(f"intent {msg.id[:8]} is {short(known.lock.owner)}'s")
        if known is not None:
            return  # (known: a copy handed on by anti-entropy)
        lock = self._lock(msg, body)
        self._limit(tx, msg.node, msg.ts, live=tx.now < body.expires_at)
        if tx.now >= body.expires_at:  # (a fact of the past: kept as such, never answered)
            idb.put(tx, IntentRow(replace(lock, status=Status.EXPIRED), frame=msg.raw))
            facts.record(tx, FactKind.INTENT, msg.id, msg, names=(msg.id,))
            return
        ack = self._verdict(tx, lock, msg.hive, fx)
        idb.put(tx, IntentRow(lock, frame=msg.raw))
        facts.record(tx, FactKind.INTENT, msg.id, msg, names=(msg.id,))
        self.kernel.enqueue(tx, [msg.node], MsgType.INTENT_ACK, ack, msg.hive, fx)
        self._tally(f"answered:{ack.verdict}")

    def _verdict(self, tx: Tx, lock: Lock, hive: str, fx: Effects) -> IntentAck:
        """Our answer to another member's intent (standing down our own that lose)."""
        refusal = self._forbids(tx, lock)
        if refusal is not None:
            return IntentAck(
                intent=lock.id, verdict="refused", code=refusal.code,
                message=refusal.message[:280],
            )  # fmt: skip
        k = self.kernel
        answer = rules.answer(lock, idb.on_target(tx, lock.kind, lock.target), k.me, tx.now)
        for mine in answer.stand_down:
            row = idb.get(tx, mine.id)
            if row is not None:
                self._abort(tx, row, "tie_breaker_loss", f"{lock.owner[:12]}… wins", hive, fx)
        return answer.ack

    def _forbids(self, tx: Tx, lock: Lock) -> HiveError | None:
        if lock.kind in ("channel_open", "rebalance_through") and db.is_banned(tx, lock.target):
            return Banned(f"{lock.target[:12]}… is banned from the hive")
        if self.policy is None:
            return None
        try:
            self.policy.check(lock.kind, lock.target, lock.amount_sat)
        except HiveError as err:
            return err
        return None

    def _limit(self, tx: Tx, owner: str, created: int, *, live: bool) -> None:
        """MAX_LIVE live intents, and MAX_RECENT a RECENT_S by when they were announced — an
        intent dated back (expired on arrival, or living a moment) counts as much as a fresh
        one: else a member backdating its frames stored and spread any number of them."""
        now = tx.now
        if live and idb.live_count(tx, owner, now) >= MAX_LIVE:
            raise RateLimited(f"{owner[:12]}… holds {MAX_LIVE} live intents already")
        before, after = idb.around(tx, owner, created, RECENT_S)
        if max(before, after) >= MAX_RECENT or idb.recent_count(tx, owner, now - RECENT_S) >= (
            MAX_RECENT
        ):
            raise RateLimited(f"at most {MAX_RECENT} intents per member per {RECENT_S} s")

    def _tally(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def _on_answer(self, tx: Tx, peer: str, msg: Message, fx: Effects) -> None:
        ack = msg.body_as(IntentAck)
        row = idb.get(tx, ack.intent)
        if row is None or not row.lock.mine or peer != msg.node:
            raise InvalidPayload("an answer to an intent this node never announced")
        if row.lock.status != Status.PENDING:
            return  # (decided already: a late answer changes nothing)
        lock = rules.read_answer(row.lock, msg.node, ack)
        row = replace(row, lock=lock)
        if lock.status == Status.ABORTED:
            self._abort(tx, row, lock.reason, ack.message or ack.code, msg.hive, fx)
            return
        self._drive(tx, row, msg.hive, fx)

    def on_ack(self, tx: Tx, peer: str, ack: wire.MsgAck) -> None:
        """A member refused our INTENT frame itself (not a member, banned, …): we abort."""
        if ack.outcome != wire.AckStatus.INVALID:
            return
        row = idb.get(tx, ack.ref)
        if row is None or not row.lock.mine or row.lock.status != Status.PENDING:
            return
        if peer not in row.lock.waiting:
            return
        h = db.hive(tx)
        lock = rules.refused(row.lock, peer, ack.code or "REFUSED")
        fx = Effects()
        self._abort(tx, replace(row, lock=lock), "refused", f"{ack.code}: {ack.message}",
                    h.hive_id if h else "", fx)  # fmt: skip
        self.kernel.wake()  # (the loop flushes the ABORT queued above)

    def _on_end(self, tx: Tx, msg: Message, fx: Effects) -> None:
        intent = getattr(msg.body, "intent", "")
        row = idb.get(tx, intent)
        if row is None:
            raise NotFound(f"no intent {intent[:8]} is known here (yet)")
        if row.lock.owner != msg.node:
            raise Unauthorized("only the owner of an intent may commit, abort or finish it")
        to = _end_status(msg)
        kind = FactKind.INTENT_COMMIT if msg.type == MsgType.INTENT_COMMIT else FactKind.INTENT_END
        if row.lock.status == to or row.lock.mine:
            return  # (a copy of what we know)
        reason = msg.body.reason if isinstance(msg.body, IntentAbort) else ""
        lock = row.lock
        if lock.status == Status.PENDING and to in (Status.DONE, Status.FAILED):
            lock = rules.move(lock, Status.COMMITTED)  # (its COMMIT is still on its way)
        # news of a lock that lapsed here already, or a commit its end overtook (a retry, anti-
        # entropy's order), is kept as the fact it is; any other illegal move is refused
        # (INVALID_TRANSITION)
        lapsed = lock.status == Status.EXPIRED and to in (Status.COMMITTED, Status.ABORTED)
        overtaken = lock.status in (Status.DONE, Status.FAILED) and to == Status.COMMITTED
        if not (lapsed or overtaken):
            lock = rules.move(lock, to, reason)
        idb.put(tx, replace(row, lock=lock))
        facts.record(tx, kind, intent, msg, names=(intent,))
        if to == Status.COMMITTED:
            self._yield_to(tx, lock, msg.hive, fx)

    def _yield_to(self, tx: Tx, held: Lock, hive: str, fx: Effects) -> None:
        """A lock committed elsewhere beats our own pending intent on the same target."""
        known = idb.on_target(tx, held.kind, held.target)
        for mine in rules.yield_to(held, known, self.kernel.me):
            row = idb.get(tx, mine.id)
            if row is not None:
                why = f"{held.owner[:12]}… committed first"
                self._abort(tx, row, "conflict_committed", why, hive, fx)

    def apply_fact(self, tx: Tx, relayer: str, msg: Message, fx: Effects) -> None:
        """An intent or its end, handed on by anti-entropy: judged as if its owner sent it
        (an INTENT we missed is answered to its owner like a live one)."""
        self.apply(tx, msg.node, msg, None, fx)

    # --- upkeep and reads --------------------------------------------------------------------

    def housekeeping(self, tx: Tx, now: int) -> None:
        idb.lapse(tx, now)
        idb.prune(tx, now - KEEP_FOREIGN_S, now - KEEP_OWN_S)
        facts.expire_intents(tx, now)

    def listing(self, store: Db, limit: int = 200) -> list[dict[str, Any]]:
        return [r.to_dict() for r in idb.listing(store, limit)]

    def summary(self) -> dict[str, Any]:
        store, now = self.kernel.store, self.kernel.clock.now()
        rows = idb.listing(store, 1000)
        by: dict[str, int] = {}
        for r in rows:
            by[r.lock.status.value] = by.get(r.lock.status.value, 0) + 1
        live = sum(1 for r in rows if r.lock.live(now))
        return {"mode": self.kernel.config.intent_mode, "live": live, "by_status": by,
                "counts": dict(sorted(self.counts.items()))}  # fmt: skip


def _kind(kind: str) -> str:
    try:
        return IntentKind(kind).value
    except ValueError:
        known = ", ".join(k.value for k in IntentKind)
        raise InvalidParams(f"unknown intent kind {kind!r}; known: {known}") from None


def _end_status(msg: Message) -> Status:
    if msg.type == MsgType.INTENT_COMMIT:
        return Status.COMMITTED
    if msg.type == MsgType.INTENT_ABORT:
        return Status.ABORTED
    return Status.DONE if msg.body_as(IntentDone).ok else Status.FAILED
