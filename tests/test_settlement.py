"""Weekly settlement end to end on the simulator (issue 18 §2): four members, their stores on
disk, the week's inputs through the `Ledger` port (tests/settle_world.py), real payments
over the simulated network.

The worked week (tests/settle_world.py `week`), four members A B C D (ids[0..3]):

    member  fees    costs  net     capacity   forwards (msat)  uptime
    A       12,000  2,000  10,000  4,000,000    900,000,000    100
    B        1,000      0   1,000  2,000,000  2,400,000,000    100
    C        6,000  1,000   5,000  2,000,000    300,000,000     90
    D            0    500       0  1,000,000  1,200,000,000     80
    total net 16,000 sat; Σcap 9,000,000; Σfwd 4,800,000,000; Σup 370

    weight = 3·cap/Σcap + 6·fwd/Σfwd + 1·up/Σup   (Σweight = 10)
      A = 3·4/9 + 6·9/48 + 100/370 = 4/3 + 9/8 + 10/37 = 2423/888
      B = 3·2/9 + 6·24/48 + 100/370 = 2/3 + 3 + 10/37  = 455/111 (= 3640/888)
      C = 3·2/9 + 6·3/48 + 90/370  = 2/3 + 3/8 + 9/37  = 1141/888
      D = 3·1/9 + 6·12/48 + 80/370 = 1/3 + 3/2 + 8/37  = 1821/888 … (the rest of 10)
    share = 16,000 · weight / 10, floored, the leftover sats by largest remainder:
      A 4,366   B 6,299   C 2,056   D 3,279          (Σ 16,000)
    balance = share − net:  A −5,634  B +5,299  C −2,944  D +3,279
    min payment = max(100, 16,000 // (10·4)) = 400
    matching (payers by balance, receivers by −balance):
      A → B 5,299;  A → D 335 (< 400: forgiven);  C → D 2,944

(A B C D are named by the mesh's ids; which is which is asserted below, not assumed.)
"""

from __future__ import annotations

import anyio
import pytest

from agent.fleet.settlement_view import need, rank
from tests.settle_world import (
    PERIOD,
    FixedLedger,
    balances,
    plan_for,
    settling,
    until_state,
    week,
)

pytestmark = pytest.mark.anyio


async def test_the_worked_week_settles_and_money_moves_exactly_by_the_plan(tmp_path) -> None:
    async with settling(tmp_path, 4) as world:
        ids, net = world.ids, world.net
        plan = plan_for(ids)
        a, b, c, d = ids[:4]
        assert plan.total_sat == 16_000 and plan.min_payment_sat == 400
        assert plan.shares == {a: 4_366, b: 6_299, c: 2_056, d: 3_279}
        assert plan.balances == {a: -5_634, b: 5_299, c: -2_944, d: 3_279}
        assert [(t.payer, t.receiver, t.amount_sat) for t in plan.payments] == [
            (a, b, 5_299), (c, d, 2_944),
        ]  # fmt: skip
        assert plan.forgiven_sat == 335
        before = {n: balances(net, n) for n in ids}
        total = net.total_msat()

        world.due()  # a grace after the week's end: the first in rank proposes
        views = await until_state(world, "executed")

        proposer = rank(PERIOD, ids[:4])[0]
        for v in views:
            assert v["plan_hash"] == plan.plan_hash and v["proposer"] == proposer
            assert v["majority"]["need"] == need(4) == 3
            assert v["majority"]["agreeing"] == 4
            assert sorted(v["executed"]) == sorted({a, c})
        assert net.total_msat() == total  # no msat created or lost
        moved = {n: balances(net, n) - before[n] for n in ids}
        assert moved == {a: -5_299_000, b: 5_299_000, c: -2_944_000, d: 2_944_000, ids[4]: 0}
        # each receiver's node holds exactly one paid settlement invoice per payer
        for payer, receiver in ((a, b), (c, d)):
            node = net.node(receiver)
            label = f"hive-settle:{PERIOD}:{payer}"
            assert node.invoices[node.labels[label]][2] is True
            assert len(net.node(payer).payments) == 1
        mine = views[0]["my_payments"]
        assert [(p["receiver"], p["amount_sat"], p["state"]) for p in mine] == [(b, 5_299, "paid")]
        status = world.members[0].fleet.status()["settlement"]
        assert status["periods"] == {PERIOD: "executed"}
        assert status["counts"]["paid"] == 1


async def test_a_member_whose_inputs_differ_says_so_and_the_majority_settles(tmp_path) -> None:
    """D holds another figure for B: it answers READY disagree with its own plan hash and
    inputs (counted, logged); A, B and C are a majority of four and the week settles."""
    async with settling(tmp_path, 4) as world:
        ids, net = world.ids, world.net
        other = [m if m.node != ids[1] else type(m)(m.node, 900, 0, m.capacity_sat,
                 m.forwards_msat, m.uptime_pct) for m in week(ids[:4])]  # fmt: skip
        ledger = world.ledgers[3]
        assert isinstance(ledger, FixedLedger)
        ledger.by_period[PERIOD] = other
        total = net.total_msat()
        world.due()
        views = await until_state(world, "executed")
        votes = {v["voter"]: v for v in views[0]["votes"]}
        assert votes[ids[3]]["agree"] is False
        assert votes[ids[3]]["code"] == "SETTLEMENT_MISMATCH"
        assert votes[ids[3]]["own_plan_hash"] not in ("", views[0]["plan_hash"])
        assert views[0]["majority"]["agreeing"] == 3
        assert world.members[3].fleet.settlement.counts["disagreed:SETTLEMENT_MISMATCH"] == 1
        assert world.members[0].fleet.settlement.counts["heard_disagree:SETTLEMENT_MISMATCH"] == 1
        assert net.total_msat() == total
        # D, a receiver, still got its payment from C: the plan a majority agreed on stands
        assert views[3]["invoices_issued"][0]["state"] == "paid"


async def test_disputed_reports_block_agreement_and_nothing_is_paid(tmp_path) -> None:
    """Two of four members dispute a report for the week: two agreeing votes are no
    majority, the plan stays proposed, no invoice is issued and nothing moves."""
    async with settling(tmp_path, 4) as world:
        ids, net = world.ids, world.net
        for i in (2, 3):
            ledger = world.ledgers[i]
            assert isinstance(ledger, FixedLedger)
            ledger.disputed[PERIOD] = [{"node": ids[1], "code": "REPORT_MISMATCH",
                                        "field": "forwards_msat"}]  # fmt: skip
        before = {n: balances(net, n) for n in ids}
        world.due()
        views = await until_state(world, "proposed")
        with anyio.fail_after(10):
            while len(world.members[0].fleet.settlement_view(PERIOD)["votes"]) < 4:
                await anyio.sleep(0.05)
        await anyio.sleep(1)  # a few more loop passes
        v = world.members[0].fleet.settlement_view(PERIOD)
        assert v["state"] == "proposed" and v["majority"]["agreeing"] == 2
        codes = sorted(x["code"] for x in v["votes"] if not x["agree"])
        assert codes == ["REPORT_DISPUTED", "REPORT_DISPUTED"]
        assert all(not m.fleet.settlement_view(PERIOD)["invoices_issued"] for m in world.members)
        assert {n: balances(net, n) for n in ids} == before
        # the operator's dry run says what would be paid — nothing, without a majority (A owes
        # B 5,299 sat in the plan: listed, it told the operator a payment `execute` never
        # makes) — and pays nothing
        dry = await world.members[0].fleet.settlement_execute(PERIOD, dry_run=True)
        assert dry["action"] == "would pay" and dry["state"] == "proposed"
        assert dry["would_pay"] == []
        assert views[0]["state"] == "proposed"


async def test_a_week_without_net_fees_is_skipped(tmp_path) -> None:
    async with settling(tmp_path, 3) as world:
        ids = world.ids
        for ledger in world.ledgers:
            assert isinstance(ledger, FixedLedger)
            ledger.by_period[PERIOD] = [
                type(m)(m.node, 100, 500, m.capacity_sat, m.forwards_msat, m.uptime_pct)
                for m in week(ids[:3])
            ]
        world.due()
        await anyio.sleep(1.5)
        for m in world.members:
            v = m.fleet.settlement_view(PERIOD)
            assert v["state"] == "skipped" and v["preview"]["plan_hash"]
        out = await world.members[0].fleet.settlement_execute(PERIOD)
        assert out["state"] == "skipped"


async def test_weeks_after_the_end_only_the_first_in_rank_proposes(tmp_path) -> None:
    """The fleet notices the week long after it ended (ten graces): the first in rank
    proposes at once, the others wait a grace per rank from when they noticed, and the
    proposal reaches them first."""
    async with settling(tmp_path, 4) as world:
        world.due(graces=10)
        await until_state(world, "executed")
        first = rank(PERIOD, world.ids[:4])[0]
        for m in world.members:
            assert m.fleet.settlement_view(PERIOD)["proposer"] == first
            proposed = m.fleet.settlement.counts.get("proposed", 0)
            assert proposed == (1 if m.node_id == first else 0)


async def test_the_operator_proposes_and_pays_through_execute(tmp_path) -> None:
    """Before the grace is over nobody proposes by itself; `execute` on a member proposes
    now (dry run first: nothing sent), and the week settles."""
    async with settling(tmp_path, 4) as world:
        fleet = world.members[2].fleet
        dry = await fleet.settlement_execute(PERIOD, dry_run=True)
        assert dry["action"] == "would propose"
        assert [p["amount_sat"] for p in dry["would_pay"]] == [2_944]
        assert world.members[0].fleet.settlement_view(PERIOD)["state"] == "unproposed"
        await fleet.settlement_execute(PERIOD)
        views = await until_state(world, "executed")
        assert all(v["proposer"] == world.ids[2] for v in views)
