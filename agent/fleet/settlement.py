"""Weekly settlement, a fleet component (DESIGN §7.5; the arithmetic is pure, in
settlement_rules.py; the payer's side is in settlement_pay.py).

- Once a week (`YYYY-WW`, UTC) has ended and a grace has passed, the member ranked first by
  sha256(period‖node) among the plan's members computes the plan from the inputs the
  `Ledger` port holds (kernel.ledger: every member's signed report) and sends PROPOSE to
  every member; the next in rank does so after one more grace if none came.
- Each member recomputes the plan from ITS inputs: the same plan hash → READY agree; another
  → READY disagree with its own hashes and inputs (said, counted, logged); a disputed report
  for the period → no agreement (REPORT_DISPUTED).  One proposal per period: another
  plan for the same period is refused (SETTLEMENT_CONFLICT); the same plan again is fine.
- A majority (n // 2 + 1 of the plan's members, the proposer's own vote included) agreeing on
  the same plan hash lets each payer pay exactly its own assignments (settlement_pay.py) and
  report SETTLEMENT_EXECUTED with the preimages, which every member checks.
- Our PROPOSE (if ours) and READY are sent again, freshly signed, every
  `settlement_rebroadcast_s` until the period is executed; a member whose vote disagreed
  recomputes then (its missing reports may have arrived) and may agree; a vote that agreed
  to the plan a majority agreed to stays agreed, whatever comes later.
- PROPOSE, READY and EXECUTED are facts (agent/fleet/facts.py).  Weeks without net fees are
  skipped.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from typing import Any

from agent.fleet import facts, roster
from agent.fleet import settlement_rules as rules
from agent.fleet import settlement_view as faces
from agent.fleet.component import Effects, FleetComponent, Ledger
from agent.fleet.facts import FactKind
from agent.fleet.settlement_pay import Payments, inputs_of
from agent.fleet.settlement_rules import MemberInput, Plan
from agent.fleet.settlement_view import need, rank
from agent.fleet.settlement_vote import gives_way, input_body, own_hash, verdict
from agent.store import fleet as db
from agent.store import settlement as sdb
from agent.store.db import Db, Tx
from agent.store.settlement import PeriodRow, Vote
from events.errors import (
    BadPreimage,
    Expired,
    HiveError,
    InvalidParams,
    InvalidPayload,
    NotFound,
    NotMember,
    Restricted,
    SettlementConflict,
    SettlementMismatch,
    TooLarge,
    Unauthorized,
)
from events.fleet import Message, MsgType
from events.fleet.settlement import (
    MAX_MEMBERS,
    SettlementExecuted,
    SettlementPropose,
    SettlementReady,
)

log = logging.getLogger("hive.fleet.settlement")
OPEN = ("proposed", "agreed")
MAX_EARLY = 1_000  # votes kept while their proposal is on its way


def propose_body(plan: Plan) -> SettlementPropose:
    """The PROPOSE body of `plan`: its hashes and every input (a receiver recomputes the
    payments: listed, 199 of them at the wire's bounds would not fit one frame).  TooLarge
    for a plan of more members than one PROPOSE carries (the hive outgrew the settlement)."""
    if len(plan.members) > MAX_MEMBERS:
        raise TooLarge(
            f"a plan of {len(plan.members)} members: one settlement carries at most {MAX_MEMBERS}"
        )
    return SettlementPropose(
        period=plan.period, plan_hash=plan.plan_hash, data_hash=plan.data_hash,
        total_sat=plan.total_sat, member_count=len(plan.members),
        inputs=[input_body(m) for m in plan.members],
    )  # fmt: skip


class Settlement(FleetComponent):
    owns = frozenset({
        MsgType.SETTLEMENT_PROPOSE, MsgType.SETTLEMENT_READY, MsgType.SETTLEMENT_EXECUTED,
        MsgType.SETTLEMENT_INVOICE_REQUEST, MsgType.SETTLEMENT_INVOICE,
    })  # fmt: skip
    facts = frozenset(
        {MsgType.SETTLEMENT_PROPOSE, MsgType.SETTLEMENT_READY, MsgType.SETTLEMENT_EXECUTED}
    )
    # committed without an fsync: a proposal or vote lost to a power failure is sent again
    # (rebroadcast, anti-entropy), an invoice is found again by its label and a lost answer
    # asked for again; only EXECUTED (the payments' proofs) is fsynced
    light = frozenset({
        MsgType.SETTLEMENT_PROPOSE, MsgType.SETTLEMENT_INVOICE_REQUEST,
        MsgType.SETTLEMENT_INVOICE,
    })  # fmt: skip
    # a vote goes to every member at once and is not acknowledged or retried: a newer one
    # supersedes it, it is sent again every `settlement_rebroadcast_s`, and anti-entropy
    # hands a lost one on (n² acknowledged frames would cost the majority dearly)
    unacked = frozenset({MsgType.SETTLEMENT_READY})

    def __init__(self, ledger: Ledger | None = None) -> None:
        self._ledger = ledger
        self.counts: dict[str, int] = {}
        self.payments = Payments(self)
        self._plans: dict[str, Plan] = {}  # plan hash → plan (recomputing is not free)
        self._checked = -(10**9)
        self._due_since: dict[str, int] = {}  # period → when we first found it due
        # votes that came before their proposal (a vote is not retried): handled again once
        # the proposal is here — the latest per (voter, period), so a member flooding votes
        # holds one slot per week, never pushes out the others' (voter, period) → (peer,
        # frame, plan hash, ts)
        self._early: dict[tuple[str, str], tuple[str, bytes, str, int]] = {}

    @property
    def ledger(self) -> Ledger | None:
        """The ledger given to this component, else the kernel's (the contribution
        component's)."""
        return self._ledger if self._ledger is not None else self.kernel.ledger

    def tally(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def plan_of(self, row: PeriodRow) -> Plan:
        plan = self._plans.get(row.plan_hash)
        if plan is None:
            plan = rules.compute_plan(row.period, [MemberInput(**d) for d in row.inputs])
            if len(self._plans) > 64:
                self._plans.clear()
            self._plans[row.plan_hash] = plan
        return plan

    def own_plan(self, store: Db, period: str) -> Plan | None:
        """The plan this node computes for `period` from the inputs it holds (None: no
        ledger or no inputs)."""
        ledger = self.ledger
        if ledger is None:
            return None
        held = ledger.inputs(store, period)
        return rules.compute_plan(period, list(held.values())) if held else None

    # --- proposing ---------------------------------------------------------------------------

    async def tick(self) -> None:
        k = self.kernel
        await self._replay_early()
        now = k.clock.now()
        if now - self._checked >= k.config.settlement_check_s and db.hive(k.store) is not None:
            self._checked = now
            await self._propose_due(now)
            await self._refresh(now)
        await self.payments.tick()

    async def _propose_due(self, now: int) -> None:
        k = self.kernel
        period = rules.previous_period(rules.period_of(now))
        end = rules.period_bounds(period)[1]
        grace = k.config.settlement_grace_s
        held = sdb.period(k.store, period)
        if now < end + grace or (held is not None and held.state != "proposed"):
            return
        plan = self.own_plan(k.store, period)
        if plan is None or k.me not in plan.shares:
            return
        if held is not None and held.plan_hash == plan.plan_hash:
            return  # (proposed already, as we would)
        if plan.empty:
            if f"skipped:{period}" not in self.counts:
                self.tally(f"skipped:{period}")
            return
        # the first in rank proposes as soon as it finds the week due, the next one grace
        # later (counted from when each found it due: a fleet back after days away does not
        # propose all at once)
        since = self._due_since.setdefault(period, now)
        if now < since + grace * rank(period, list(plan.shares)).index(k.me):
            return  # (another member proposes first)
        ledger = self.ledger
        if ledger is not None and ledger.disputes(k.store, period):
            return  # (we would not agree to it ourselves: the next in rank may)
        try:
            await self.propose(plan)
        except TooLarge as err:  # said once per week, not at every check
            if f"too_large:{period}" not in self.counts:
                self.tally(f"too_large:{period}")
                log.warning("fleet: settlement %s cannot be proposed: %s", period, err)

    async def propose(self, plan: Plan) -> None:
        """Send PROPOSE for `plan` to every member (applied here first, with our READY)."""
        k = self.kernel
        h = roster.current_hive(k.store)
        body = propose_body(plan)
        async with k.lock:
            held = sdb.period(k.store, plan.period)
            if held is not None and not gives_way(self.ledger, k.store, held, plan.plan_hash):
                return
            # applied here as a receiver would, and queued, in one commit without an fsync
            # (a proposal lost to a power failure is simply proposed again)
            msg = k.message(MsgType.SETTLEMENT_PROPOSE, body, h.hive_id)
            fx = Effects()
            with k.store.transaction(k.clock.now(), durable=False) as tx:
                self.apply(tx, k.me, msg, None, fx)
                db.claim(tx, k.me, msg.id, tx.now)
                k.enqueue_frame(tx, self._others(tx), msg, fx)
        self.tally("proposed")
        log.info("fleet: settlement %s proposed (%s sat)", plan.period, plan.total_sat)
        await k.after(fx)

    def _others(self, tx: Tx) -> list[str]:
        return [m.node_id for m in db.members(tx) if m.node_id != self.kernel.me]

    async def _refresh(self, now: int) -> None:
        """Send our READY again (and our PROPOSE) for every open period when due, and change
        a vote that disagreed if our inputs now give the proposed plan."""
        k = self.kernel
        h = db.hive(k.store)
        if h is None:
            return
        for row in sdb.periods(k.store, OPEN, limit=10):
            if rules.period_bounds(row.period)[1] < now - facts.SETTLEMENT_KEEP_S:
                continue  # (every member refuses it now: EXPIRED — a payer never paid)
            mine = {v.voter: v for v in sdb.votes(k.store, row.period)}.get(k.me)
            due = now >= row.broadcast_at + k.config.settlement_rebroadcast_s
            if not due and mine is not None and mine.agree:
                continue
            async with k.lock:
                fx = Effects()
                with k.store.transaction(k.clock.now(), durable=False) as tx:
                    fresh = sdb.period(tx, row.period)
                    if fresh is None or fresh.state not in OPEN:
                        continue
                    agree = self._vote(tx, fresh, h.hive_id, fx, only_if_changed=not due)
                    if due:
                        if fresh.proposer == k.me:
                            self._resend_proposal(tx, fresh, h.hive_id, fx)
                        sdb.broadcast(tx, fresh.period)
                    if agree:
                        self._count(tx, fresh)
            await k.after(fx)

    def _resend_proposal(self, tx: Tx, row: PeriodRow, hive: str, fx: Effects) -> None:
        plan = self.plan_of(row)
        body = propose_body(plan)
        self.kernel.enqueue(tx, self._others(tx), MsgType.SETTLEMENT_PROPOSE, body, hive, fx)

    # --- frames ------------------------------------------------------------------------------

    async def prepare(self, peer: str, msg: Message) -> Any:
        if msg.type == MsgType.SETTLEMENT_INVOICE_REQUEST:
            return await self.payments.issue(msg)
        return None

    def apply(self, tx: Tx, peer: str, msg: Message, prepared: Any, fx: Effects) -> None:
        roster.active_member(tx, msg.node, msg.sender_key)
        if msg.type == MsgType.SETTLEMENT_PROPOSE:
            self._on_propose(tx, msg, fx)
        elif msg.type == MsgType.SETTLEMENT_READY:
            self._on_ready(tx, msg)
        elif msg.type == MsgType.SETTLEMENT_EXECUTED:
            self._on_executed(tx, msg)
        elif msg.type == MsgType.SETTLEMENT_INVOICE_REQUEST:
            self.payments.on_request(tx, msg, prepared, fx)
        else:
            self.payments.on_invoice(tx, msg)

    def on_refused(self, peer: str, msg: Message, err: HiveError) -> None:
        self.tally(f"refused:{err.code}")
        log.info("fleet: refused %s from %s: %s", msg.type.name, peer[:12], err.code)
        if msg.type == MsgType.SETTLEMENT_READY and isinstance(err, NotFound):
            body = msg.body_as(SettlementReady)
            key = (msg.node, body.period)
            held = self._early.get(key)
            if held is not None and held[3] > msg.ts:
                return  # (a newer vote of the same voter for the week waits already)
            if held is None and len(self._early) >= MAX_EARLY:
                self._early.pop(next(iter(self._early)))
            self._early[key] = (peer, msg.raw, body.plan_hash, msg.ts)

    async def _replay_early(self) -> None:
        """Votes that overtook their proposal, handed to the kernel again once it is here."""
        if not self._early:
            return
        store = self.kernel.store
        for key, (peer, raw, plan_hash, _) in list(self._early.items()):
            held = sdb.period(store, key[1])
            if held is None or held.plan_hash != plan_hash:
                continue  # (its proposal is not here yet: nothing parsed again meanwhile)
            del self._early[key]
            await self.kernel.receive(peer, raw)

    def _on_propose(self, tx: Tx, msg: Message, fx: Effects) -> None:
        body = msg.body_as(SettlementPropose)
        _settled_week(body.period, msg.ts, tx.now)
        plan = _recompute(body)
        if msg.node not in plan.shares:
            raise SettlementMismatch("the proposer is not a member of its own plan")
        for node in plan.shares:  # (a member that left keeps its report: it was one)
            if db.member(tx, node) is None:
                raise NotMember(f"the plan names {node[:12]}…, who is not a member here")
        held = sdb.period(tx, body.period)
        if held is not None:
            if held.plan_hash == body.plan_hash:
                return  # (the same plan again: a rebroadcast, a fallback proposer, a copy)
            if not gives_way(self.ledger, tx, held, body.plan_hash):
                raise SettlementConflict(
                    f"{body.period} has proposal {held.plan_hash[:12]}… already"
                )
            sdb.drop_period(tx, body.period)  # (nobody agreed to it: ours replaces it)
            self.tally("superseded")
        row = PeriodRow(
            body.period, plan.plan_hash, plan.data_hash, msg.node, plan.total_sat,
            [b.model_dump() for b in body.inputs], "proposed", msg.raw, tx.now, None, tx.now,
        )  # fmt: skip
        sdb.put_period(tx, row)
        self._plans[plan.plan_hash] = plan
        # one fact per period, the proposal held: one that gave way leaves the set (its holders
        # would offer it for weeks to members that refuse it, and the sets never agree)
        facts.record(tx, FactKind.SETTLE_PROPOSE, body.period, msg,
                     names=(body.period, body.plan_hash), single=True)  # fmt: skip
        if self._early:
            self.kernel.wake()  # (votes that came first are handled again in the next pass)
        self._vote(tx, row, msg.hive, fx)
        self._count(tx, row)

    def _vote(
        self, tx: Tx, row: PeriodRow, hive: str, fx: Effects, *, only_if_changed: bool = False
    ) -> bool:
        """Our verdict on the period's proposal, sent to every member as READY (with
        `only_if_changed`: only if it differs from the vote we sent).  True if we agree."""
        k = self.kernel
        body = verdict(self.ledger, tx, row)
        held = {v.voter: v for v in sdb.votes(tx, row.period)}.get(k.me)
        # agreed by a majority with us: inputs changed since (a late report, an equivocation
        # found) change nothing of it — a member still to count the votes must see ours
        if row.state != "proposed" and held and held.agree and held.plan_hash == row.plan_hash:
            body = SettlementReady(period=row.period, plan_hash=row.plan_hash, agree=True)
        if only_if_changed and held is not None and held.agree == body.agree:
            return body.agree
        msg = k.message(MsgType.SETTLEMENT_READY, body, hive)
        fx.direct.extend((peer, msg.raw) for peer in self._others(tx) if peer in k.connected)
        db.claim(tx, k.me, msg.id, tx.now)
        self._keep_vote(tx, msg, body)
        self.tally("agreed" if body.agree else f"disagreed:{body.code}")
        return body.agree

    def _keep_vote(self, tx: Tx, msg: Message, body: SettlementReady) -> None:
        vote = Vote(msg.node, body.plan_hash, body.agree, body.code, body.own_plan_hash or "",
                    msg.ts)  # fmt: skip
        if sdb.put_vote(tx, body.period, vote):
            subject = f"{body.period}:{msg.node}"
            facts.record(tx, FactKind.SETTLE_READY, subject, msg, single=True)

    def _on_ready(self, tx: Tx, msg: Message) -> None:
        body = msg.body_as(SettlementReady)
        if body.agree and (body.code or body.own_plan_hash):
            raise InvalidPayload("an agreeing READY carries no refusal")
        # (else it would wait for a proposal; a voter's clock may be a little behind ours)
        _settled_week(body.period, msg.ts + self.kernel.config.future_skew_s, tx.now)
        held = sdb.period(tx, body.period)
        if held is None or held.plan_hash != body.plan_hash:
            other = sdb.by_plan(tx, body.plan_hash)
            if other is not None and other.period != body.period:
                raise SettlementMismatch(
                    f"plan {body.plan_hash[:12]}… is {other.period}'s, not {body.period}'s"
                )
            if held is not None and own_hash(self.ledger, tx, body.period) == body.plan_hash:
                raise NotFound(
                    f"{body.period}'s plan {body.plan_hash[:12]}… is not proposed here yet"
                )
            if held is not None:
                raise SettlementMismatch(
                    f"plan {body.plan_hash[:12]}… is not {body.period}'s proposal"
                )
            raise NotFound(f"no proposal for {body.period} is known here (yet)")
        self._keep_vote(tx, msg, body)
        if not body.agree:
            self.tally(f"heard_disagree:{body.code or 'NO'}")
            log.info(
                "fleet: %s does not agree to settlement %s: %s %s", msg.node[:12], body.period,
                body.code, body.message,
            )  # fmt: skip
        self._count(tx, held)

    def _count(self, tx: Tx, row: PeriodRow) -> None:
        """Has a majority of the plan's members agreed?  Then it is agreed, and our own
        assignments are set up to be paid (if we agreed too)."""
        fresh = sdb.period(tx, row.period)
        if fresh is None or fresh.state == "executed":
            return
        plan = self.plan_of(fresh)
        members = set(plan.shares)
        votes = sdb.votes(tx, fresh.period)
        agreeing = {v.voter for v in votes if v.agree and v.plan_hash == fresh.plan_hash}
        if len(agreeing & members) < need(len(members)):
            return
        if fresh.state == "proposed":
            sdb.set_state(tx, fresh.period, "agreed")
            self.tally("majority")
            log.info("fleet: settlement %s agreed by %d member(s)", fresh.period, len(agreeing))
        if self.kernel.me in agreeing:
            self.payments.ensure(tx, plan)
        if not plan.payments:  # (every transfer under the minimum: nothing to wait for)
            self.check_executed(tx, replace(fresh, state="agreed"))
        self.kernel.wake()

    def _on_executed(self, tx: Tx, msg: Message) -> None:
        body = msg.body_as(SettlementExecuted)
        if body.payer != msg.node:
            raise Unauthorized("only a payer reports its own payments")
        held = sdb.period(tx, body.period)
        if held is None:
            raise NotFound(f"no proposal for {body.period} is known here (yet)")
        if held.plan_hash != body.plan_hash:
            raise SettlementMismatch(f"plan {body.plan_hash[:12]}… is not {body.period}'s")
        if held.state == "proposed":  # (no majority seen here yet: the payer asks again)
            raise Restricted(f"no majority has agreed to {body.period}'s plan here (yet)")
        plan = self.plan_of(held)
        owed = sorted((t.receiver, t.amount_sat) for t in plan.owed_by(body.payer))
        if sorted((p.receiver, p.amount_sat) for p in body.payments) != owed:
            raise SettlementMismatch("the payments reported are not the payer's assignments")
        for p in body.payments:
            if hashlib.sha256(bytes.fromhex(p.preimage)).hexdigest() != p.payment_hash:
                raise BadPreimage(f"the preimage for {p.receiver[:12]}… is not the hash's")
            if p.receiver == self.kernel.me:
                self.payments.received(tx, body.period, body.payer, p.payment_hash)
        payments = [p.model_dump() for p in body.payments]
        if sdb.put_executed(tx, body.period, body.payer, body.plan_hash, payments, msg.ts):
            names = (body.period, body.payer)
            facts.record(tx, FactKind.SETTLE_EXECUTED, body.period, msg, names=names)
        self.check_executed(tx, held)

    def check_executed(self, tx: Tx, row: PeriodRow) -> None:
        plan = self.plan_of(row)
        payers = {t.payer for t in plan.payments}
        if payers <= set(sdb.executed(tx, row.period)) and row.state != "executed":
            sdb.set_state(tx, row.period, "executed")
            self.tally("executed")
            log.info("fleet: settlement %s executed", row.period)

    # --- upkeep and reads --------------------------------------------------------------------

    def housekeeping(self, tx: Tx, now: int) -> None:
        facts.expire_settlement(tx, now)

    def view(self, period: str | None = None) -> dict[str, Any]:
        """The period's plan with every input and its arithmetic, the votes, the state and
        the payments (`hive-settlement`; settlement_view.py)."""
        return faces.view(self, period)

    async def execute(self, period: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        """Operator-triggered: propose now, or pay our assignments (settlement_view.py)."""
        return await faces.execute(self, period, dry_run)

    def summary(self) -> dict[str, Any]:
        rows = sdb.periods(self.kernel.store, limit=5)
        return {
            "periods": {r.period: r.state for r in rows},
            "ledger": self.ledger is not None,
            "counts": dict(sorted(self.counts.items())),
        }


def _settled_week(period: str, ts: int, now: int) -> None:
    """A week a PROPOSE or READY may be about: one that exists, had ended when the frame was
    made (INVALID_PAYLOAD otherwise) and that the settlement still keeps (EXPIRED)."""
    try:
        end = rules.period_bounds(period)[1]
    except InvalidParams as err:
        raise InvalidPayload(err.message) from None
    if ts < end:
        raise InvalidPayload(f"{period} had not ended when the frame was made")
    if end < now - facts.SETTLEMENT_KEEP_S:  # (nothing of it is kept: no reports)
        raise Expired(f"{period} is older than the settlement keeps")


def _recompute(body: SettlementPropose) -> Plan:
    """The plan the proposal's own inputs give; SETTLEMENT_MISMATCH unless it is the one
    proposed, to the hash, total, members and payments."""
    try:
        plan = rules.compute_plan(body.period, inputs_of(body.inputs))
    except InvalidParams as err:
        raise SettlementMismatch(f"the proposal's inputs: {err.message}") from None
    proposed = [(p.payer, p.receiver, p.amount_sat) for p in body.payments]
    ours = [(p.payer, p.receiver, p.amount_sat) for p in plan.payments]
    if (plan.plan_hash, plan.data_hash) != (body.plan_hash, body.data_hash):
        raise SettlementMismatch(
            f"the proposal's inputs give plan {plan.plan_hash[:12]}…, not {body.plan_hash[:12]}…"
        )
    if (plan.total_sat, len(plan.members)) != (body.total_sat, body.member_count) or (
        proposed and ours != proposed  # (listed by an older agent: they must be the plan's)
    ):
        raise SettlementMismatch("the proposal's total, members or payments are not its plan's")
    if plan.empty:
        raise InvalidPayload(f"{body.period} has no net fees: nothing to settle")
    return plan
