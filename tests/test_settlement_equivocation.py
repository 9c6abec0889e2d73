"""A member that signs two different contribution reports for one week (one sent to some
members, another to the rest) used to block that week's settlement for good: each member held
another report, computed another plan and disagreed (SETTLEMENT_MISMATCH), the fact sets never
agreed, and the second copy was refused, so nobody learned why.  Now the two variants are the
proof: every member ends holding the same two (agent/fleet/report_variants.py), the
equivocator is no input to that week, and the others settle it — here on the real
contribution ledger, with real forwards, the money moved exactly by the plan."""

from __future__ import annotations

from dataclasses import replace

import anyio
import pytest

from agent.fleet.contribution_rules import period_days
from agent.fleet.settlement_rules import compute_plan, period_bounds
from agent.store import contribution as cdb
from agent.store import contribution_reports as rdb
from agent.store import fleet as fdb
from agent.store import settlement as sdb
from events.fleet import MsgType
from events.fleet.contribution import ContributionReport
from tests.fleet_world import Rogue
from tests.settle_world import (
    PERIOD,
    SETTLE,
    FixedLedger,
    SettleWorld,
    ShiftedClock,
    balances,
    inflated_week,
    plan_for,
    plan_moves,
    settling,
    until_state,
)

pytestmark = pytest.mark.anyio


def variant(node: str, fees_msat: int) -> ContributionReport:
    return ContributionReport(
        node=node, period=PERIOD, fees_msat=fees_msat, rebalance_costs_msat=0,
        forwards_msat=10**9, capacity_sat=1_000_000, uptime_pct=100, shared={},
    )  # fmt: skip


async def _earn(world: SettleWorld) -> None:
    """Payments from the mesh's outsider through members 1 and 2 (who earn the fees) in the
    week's last minutes, taken in by every member's ledger."""
    net, ids, members = world.net, world.ids, world.members
    x0, x1 = ids[4], net.add_node("x1", 20_000_000)
    for i, ppm in ((1, 20_000), (2, 30_000)):  # members 1 and 2 earn fees toward x1
        scid = net.open_channel(x1, ids[i], 2_000_000, push_msat=1_000_000_000)
        net.set_policy(ids[i], scid, ppm=ppm)
    start = {n: balances(net, n) for n in ids[:4]}
    for k in range(8):
        net.pay(x0, net.invoice(x1, 10_000_000 + 1_000_000 * k, f"w{k}").bolt11)
    earned = {i: balances(net, ids[i]) - start[ids[i]] for i in range(4)}
    assert earned[1] + earned[2] > 0
    first, last = period_days(PERIOD)

    def fees(i: int) -> int:
        own = cdb.totals(members[i].fleet.store, first, last).get(cdb.OWN, {})
        return int(own.get("fees_msat", 0))

    with anyio.fail_after(10):  # (each ledger has taken its forwards in)
        while any(fees(i) < earned[i] for i in range(4)):
            await anyio.sleep(0.05)


async def test_a_member_signing_two_reports_is_left_out_and_the_week_settles(tmp_path) -> None:
    clock = ShiftedClock(period_bounds(PERIOD)[1] - 120)  # the week's last two minutes
    # (a reconciliation every 2 s, not 5 min: one that failed midway is soon done again)
    config = replace(SETTLE, sync_interval_s=2)
    async with settling(tmp_path, 4, ledgers=[None] * 4, clock=clock, config=config) as world:
        net, ids, members = world.net, world.ids, world.members
        await _earn(world)

        clock.advance(125)  # the week is over: every member reports it …
        hive = members[0].fleet.status()["hive_id"]
        cheat, honest = ids[3], ids[:3]
        rogue = Rogue(net, cheat)  # … and member 3's key signs two more, one to 0, one to 1
        for to, fees in ((ids[0], 40_000_000), (ids[1], 90_000_000)):
            frame = rogue.frame(
                MsgType.CONTRIBUTION_REPORT, variant(cheat, fees), hive=hive, ts=clock.now()
            )
            await rogue.send(to, frame)
        for m in members:
            m.fleet.kernel.wake()

        def held(i: int) -> tuple[object, object]:
            store = members[i].fleet.store
            return rdb.report(store, cheat, PERIOD), rdb.conflict(store, cheat, PERIOD)

        with anyio.fail_after(30):  # every member ends with the same two: the proof
            while not (held(0)[1] is not None and all(held(i) == held(0) for i in range(4))):
                await anyio.sleep(0.05)
        for m in members:
            store = m.fleet.store
            assert rdb.equivocators(store, PERIOD) == {cheat}
            assert set(m.fleet.contribution.inputs(store, PERIOD)) == set(honest)
            assert store.error_counts().get("REPORT_CONFLICT", 0) >= 1
        inputs = members[0].fleet.contribution.inputs(members[0].fleet.store, PERIOD)
        plan = compute_plan(PERIOD, list(inputs.values()))  # (the honest members' alone)
        assert plan.total_sat > 0 and cheat not in plan.shares
        before = {n: balances(net, n) for n in ids[:4]}

        world.due()  # a grace on: proposed, agreed and paid without the equivocator
        views = await until_state(world, "executed", limit_s=40)
        assert all(v["plan_hash"] == plan.plan_hash for v in views)
        moved = {n: balances(net, n) - before[n] for n in ids[:4]}
        assert moved == plan_moves(plan, ids[:4])
        with anyio.fail_after(30):  # and the fleet's fact sets agree again
            while len({m.fleet.sync.summary()["digest"] for m in members}) != 1:
                await anyio.sleep(0.1)


async def test_inputs_that_change_after_a_majority_agreed_do_not_turn_a_vote(tmp_path) -> None:
    """D is offline; A, B and C agree, so the week waits for D (C's invoice from D cannot
    come).  Then B's and C's inputs change — as a report arriving late, or an equivocation
    found after the vote, changes them.  Their READYs sent again every rebroadcast used to be
    recomputed: both turned to disagree, and D, back, saw two of four agree and never counted
    a majority (C was never paid).  A vote agreed by a majority stays agreed."""
    config = replace(SETTLE, settlement_rebroadcast_s=1)
    async with settling(tmp_path, 4, config=config) as world:
        ids, members = world.ids, world.members
        await members[3].stop()
        world.due()
        await until_state(world, "agreed", [0, 1, 2])
        first = {v.voter: v.ts for v in sdb.votes(members[0].fleet.store, PERIOD)}
        for i in (1, 2):  # (their inputs now give another plan)
            ledger = world.ledgers[i]
            assert isinstance(ledger, FixedLedger)
            ledger.by_period[PERIOD] = inflated_week(ids[:4], ids[1])
        with anyio.fail_after(10):  # both sent their READY again since
            while True:
                votes = {v.voter: v for v in sdb.votes(members[0].fleet.store, PERIOD)}
                if all(votes[ids[i]].ts > first[ids[i]] for i in (1, 2)):
                    break
                await anyio.sleep(0.1)
        assert all(votes[ids[i]].agree for i in (1, 2))
        await members[3].start(world.tg)
        views = await until_state(world, "executed", limit_s=30)
        assert {v["plan_hash"] for v in views} == {plan_for(ids).plan_hash}


async def test_a_member_banned_after_the_week_is_left_out_and_the_week_settles(
    tmp_path,
) -> None:
    """Member 3 reported the week, then was banned.  Its report stayed an input, and as it
    is owed a share its payers asked it for an invoice that never came (its frames are
    refused): the week waited for good.  A banned member is no input to a week not yet
    agreed; the others settle it among themselves."""
    clock = ShiftedClock(period_bounds(PERIOD)[1] - 120)
    async with settling(tmp_path, 4, ledgers=[None] * 4, clock=clock) as world:
        net, ids, members = world.net, world.ids, world.members
        await _earn(world)
        clock.advance(125)  # the week is over: every member reports it
        for m in members:
            m.fleet.kernel.wake()
        with anyio.fail_after(20):
            while any(len(rdb.reports(m.fleet.store, PERIOD)) < 4 for m in members):
                await anyio.sleep(0.05)
        everyone = members[0].fleet.contribution.inputs(members[0].fleet.store, PERIOD)
        assert ids[3] in compute_plan(PERIOD, list(everyone.values())).shares
        tiers = {m.node_id: m.tier for m in fdb.members(members[0].fleet.store)}
        for i in range(3):  # (the full members vote)
            if tiers[ids[i]] == "member":
                await members[i].fleet.ban(ids[3], "test: misbehaved")
        with anyio.fail_after(20):
            while not all(fdb.is_banned(m.fleet.store, ids[3]) for m in members[:3]):
                await anyio.sleep(0.05)
        inputs = members[0].fleet.contribution.inputs(members[0].fleet.store, PERIOD)
        assert set(inputs) == set(ids[:3])
        plan = compute_plan(PERIOD, list(inputs.values()))
        before = {n: balances(net, n) for n in ids[:3]}

        world.due()
        views = await until_state(world, "executed", indexes=[0, 1, 2], limit_s=40)
        assert all(v["plan_hash"] == plan.plan_hash for v in views)
        moved = {n: balances(net, n) - before[n] for n in ids[:3]}
        assert moved == plan_moves(plan, ids[:3])
