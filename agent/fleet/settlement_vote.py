"""The settlement's vote (agent/fleet/settlement.py): what this member answers to a proposal,
and whether a proposal nobody agreed to gives way to another."""

from __future__ import annotations

import logging

from agent.fleet import settlement_rules as rules
from agent.fleet.component import Ledger
from agent.fleet.settlement_rules import MemberInput
from agent.store.db import Db, Tx
from agent.store.settlement import PeriodRow
from events.errors import ReportDisputed, SettlementMismatch
from events.fleet.settlement import InputBody, SettlementReady

log = logging.getLogger("hive.fleet")


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


def gives_way(ledger: Ledger | None, db: Db, held: PeriodRow, plan_hash: str) -> bool:
    """A proposal no majority agreed to here gives way to one this member agrees to (a member
    that proposed a plan of its own making first must not block the week): only while it is
    `proposed`, and only for the plan this member's own inputs give."""
    return held.state == "proposed" and own_hash(ledger, db, held.period) == plan_hash


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
