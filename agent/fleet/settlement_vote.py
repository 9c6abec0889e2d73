"""The settlement's vote (agent/fleet/settlement.py): what this member answers to a proposal,
and whether a proposal nobody agreed to gives way to another.  A member agrees to the plan its
own inputs give — or to one that counts a member proved to have signed two reports by either
report or not at all, all else as it holds it (agent/fleet/report_variants.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from agent.fleet import settlement_rules as rules
from agent.fleet.component import Ledger
from agent.fleet.settlement_rules import MemberInput, Plan
from agent.store.db import Db, Tx
from agent.store.settlement import PeriodRow
from events.errors import InvalidParams, InvalidPayload, ReportDisputed, SettlementMismatch
from events.fleet.settlement import InputBody, SettlementPropose, SettlementReady

log = logging.getLogger("hive.fleet")
Alternatives = dict[str, list[MemberInput]]  # an equivocator → the inputs its two reports give
Inputs = Sequence[InputBody] | Sequence[dict[str, Any]]  # a proposal's (or a held row's)


def _dicts(inputs: Inputs) -> list[dict[str, Any]]:
    return [b.model_dump() if isinstance(b, InputBody) else dict(b) for b in inputs]


def input_body(m: MemberInput) -> InputBody:
    return InputBody(
        node=m.node, fees_sat=m.fees_sat, rebalance_costs_sat=m.rebalance_costs_sat,
        capacity_sat=m.capacity_sat, forwards_msat=m.forwards_msat, uptime_pct=m.uptime_pct,
    )  # fmt: skip


def own_hash(ledger: Ledger | None, db: Db, period: str) -> str | None:
    """The plan hash this member's own inputs give for `period` (None: no ledger, no inputs,
    or a report it disputes — it would agree to no plan then)."""
    if ledger is None or ledger.disputes(db, period):
        return None
    held = ledger.inputs(db, period)
    return rules.compute_plan(period, list(held.values())).plan_hash if held else None


def fits(inputs: Inputs, held: dict[str, MemberInput], alt: Alternatives) -> bool:
    """True if a plan of `inputs` counts every input this member holds as it holds it, and
    each other member only if it is one proved to have signed two reports (`alt`: what each
    of its two gives), by either of them: a member that learned of the equivocation after the
    plan was made (the others may have agreed already) still agrees to it."""
    proposed = {str(b.get("node")): b for b in _dicts(inputs)}
    for node, m in held.items():
        if node not in proposed or input_body(m).model_dump() != proposed[node]:
            return False
    counted = {node: b for node, b in proposed.items() if node not in held}
    return all(
        node in alt and b in [input_body(m).model_dump() for m in alt[node]]
        for node, b in counted.items()
    )


def accepts(ledger: Ledger | None, db: Db, period: str, plan_hash: str, inputs: Inputs) -> bool:
    """True if this member agrees to the plan `plan_hash` (of `inputs`) for `period`: the one
    its own inputs give, or one that `fits` them; never while it disputes a report."""
    own = own_hash(ledger, db, period)
    if own is None or ledger is None:
        return False
    if own == plan_hash:
        return True
    return fits(inputs, ledger.inputs(db, period), ledger.equivocated(db, period))


def gives_way(
    ledger: Ledger | None, db: Db, held: PeriodRow, plan_hash: str, inputs: Inputs
) -> bool:
    """A proposal no majority agreed to here gives way to one this member agrees to (a member
    that proposed a plan of its own making first must not block the week): only while it is
    `proposed`.  Of two it could agree to (one counting an equivocator, one not), the one
    counting more members wins, then the smaller plan hash — one way only, so members that
    got them in any order end on the same (members without the proof agree to the larger)."""
    if held.state != "proposed" or not accepts(ledger, db, held.period, plan_hash, inputs):
        return False
    if not accepts(ledger, db, held.period, held.plan_hash, held.inputs):
        return True
    return (-len(inputs), plan_hash) < (-len(held.inputs), held.plan_hash)


def verdict(ledger: Ledger | None, tx: Tx, row: PeriodRow) -> SettlementReady:
    """This member's READY on the period's proposal: agree if the inputs it holds give the same
    plan; disagree with its own hashes and inputs; refuse while it disputes a report."""
    base = {"period": row.period, "plan_hash": row.plan_hash}
    if ledger is None:
        return SettlementReady(
            **base, agree=False, code="NOT_IMPLEMENTED", message="no ledger here"
        )
    disputes = ledger.disputes(tx, row.period)
    if disputes:
        who = sorted({str(d.get("node", ""))[:12] for d in disputes})
        return SettlementReady(
            **base, agree=False, code=ReportDisputed.code,
            message=f"disputed reports of {', '.join(who)}"[:280],
        )  # fmt: skip
    held = ledger.inputs(tx, row.period)
    own = rules.compute_plan(row.period, list(held.values())) if held else None
    if own is not None and own.plan_hash == row.plan_hash:
        return SettlementReady(**base, agree=True)
    if own is not None and fits(row.inputs, held, ledger.equivocated(tx, row.period)):
        return SettlementReady(**base, agree=True)
    log.info(
        "fleet: settlement %s: our inputs give plan %s, not the proposed %s",
        row.period, own.plan_hash[:12] if own else "none", row.plan_hash[:12],
    )  # fmt: skip
    return SettlementReady(
        **base, agree=False, code=SettlementMismatch.code,
        message=f"our {len(held)} input(s) give another plan",
        own_plan_hash=own.plan_hash if own else None,
        own_data_hash=own.data_hash if own else None,
        inputs=[input_body(m) for m in sorted(held.values())][:200],
    )  # fmt: skip


def recompute(body: SettlementPropose) -> Plan:
    """The plan the proposal's own inputs give; SETTLEMENT_MISMATCH unless it is the one
    proposed, to the hash, total, members and payments."""
    try:
        plan = rules.compute_plan(body.period, [MemberInput(**b.model_dump()) for b in body.inputs])
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
