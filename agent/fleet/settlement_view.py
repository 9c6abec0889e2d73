"""What an operator sees of the weekly settlement and what it may trigger (`hive-settlement`,
`hive-settlement-execute`): the plan with its arithmetic, votes, state and payments, and the
operator's propose-or-pay, for the settlement component (agent/fleet/settlement.py)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import anyio

from agent.fleet import settlement_rules as rules
from agent.fleet.settlement_rules import Plan
from agent.store import settlement as sdb
from events.errors import InvalidParams, NotFound, ReportDisputed

if TYPE_CHECKING:
    from agent.fleet.settlement import Settlement


def rank(period: str, nodes: list[str]) -> list[str]:
    """The order in which members may propose `period`'s plan: by sha256(period‖node)."""
    return sorted(nodes, key=lambda n: (hashlib.sha256(f"{period}{n}".encode()).digest(), n))


def need(members: int) -> int:
    """Votes that make a majority of `members`."""
    return members // 2 + 1


def latest_period(s: Settlement) -> str:
    """The most recent period with a proposal, else the last week that ended."""
    rows = sdb.periods(s.kernel.store, limit=1)
    if rows:
        return rows[0].period
    return rules.previous_period(rules.period_of(s.kernel.clock.now()))


def view(s: Settlement, period: str | None = None) -> dict[str, Any]:
    """The period's plan with every input and its arithmetic, the votes, the state and
    the payments (`hive-settlement`)."""
    k = s.kernel
    name = period or latest_period(s)
    rules.parse_period(name)
    row = sdb.period(k.store, name)
    if row is None:
        plan = s.own_plan(k.store, name)
        out: dict[str, Any] = {"period": name, "state": "none", "proposer": None}
        if plan is not None:
            out["state"] = "skipped" if plan.empty else "unproposed"
            out["preview"] = plan.explain()
            out["proposers"] = rank(name, list(plan.shares))
        return out
    plan = s.plan_of(row)
    votes = sdb.votes(k.store, name)
    agreeing = [v.voter for v in votes if v.agree and v.plan_hash == row.plan_hash]
    return {
        **plan.explain(), "state": row.state, "proposer": row.proposer,
        "majority": {"need": need(len(plan.shares)), "agreeing": len(agreeing),
                     "members": len(plan.shares)},
        "votes": [{"voter": v.voter, "agree": v.agree, "code": v.code,
                   "own_plan_hash": v.own_plan_hash} for v in votes],
        "my_payments": [p.to_dict() for p in sdb.pays(k.store, name)],
        "invoices_issued": [{"payer": i.payer, "amount_sat": i.amount_sat,
                             "payment_hash": i.payment_hash, "state": i.state}
                            for i in sdb.invoices(k.store, name)],
        "executed": sdb.executed(k.store, name),
    }  # fmt: skip


async def execute(
    s: Settlement, period: str | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Operator-triggered: propose now if nothing was (and this node may), or pay this
    node's own assignments once a majority agreed.  `dry_run`: what would be done."""
    k = s.kernel
    name = period or rules.previous_period(rules.period_of(k.clock.now()))
    rules.parse_period(name)
    if sdb.period(k.store, name) is None:
        plan = proposable(s, name)
        if plan.empty:
            return {"period": name, "state": "skipped", "action": "none (no net fees)"}
        if dry_run:
            owed = [_transfer(t) for t in plan.owed_by(k.me)]
            return {"period": name, "action": "would propose", "would_pay": owed,
                    "plan": plan.explain()}  # fmt: skip
        await s.propose(plan)
    row = sdb.period(k.store, name)
    assert row is not None
    if dry_run:  # (what `execute` pays: our assignments set up once a majority agreed — with us)
        todo = [
            {"payer": k.me, "receiver": p.receiver, "amount_sat": p.amount_sat}
            for p in sdb.pays(k.store, name)
            if p.state != "paid" and row.state == "agreed"
        ]
        return {"period": name, "state": row.state, "action": "would pay", "would_pay": todo}
    if row.state == "agreed":
        with anyio.move_on_after(60):
            await s.payments.pay_period(name, force=True)
    return view(s, name)


def proposable(s: Settlement, period: str) -> Plan:
    k = s.kernel
    if k.clock.now() < rules.period_bounds(period)[1]:
        raise InvalidParams(f"{period} has not ended yet")
    plan = s.own_plan(k.store, period)
    if plan is None or k.me not in plan.shares:
        raise NotFound(f"this node holds no settlement inputs for {period} that include it")
    ledger = s.ledger
    if ledger is not None and ledger.disputes(k.store, period):
        raise ReportDisputed(f"a member's report for {period} is disputed here")
    return plan


def _transfer(t: rules.Transfer) -> dict[str, Any]:
    return {"payer": t.payer, "receiver": t.receiver, "amount_sat": t.amount_sat}
