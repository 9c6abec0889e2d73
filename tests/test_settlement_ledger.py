"""The settlement on the real contribution ledger (agent/fleet/contribution.py, the kernel's
`Ledger` port): forwards through two members in the week's last minutes are taken in by
their ledgers, every member reports the week once it is over, and the plan every member
computes from the reports it holds is agreed and paid — the money moved exactly by it."""

from __future__ import annotations

import anyio
import pytest

from agent.fleet.contribution_rules import period_days
from agent.fleet.settlement_rules import compute_plan, period_bounds
from agent.store import contribution as cdb
from tests.settle_world import (
    GRACE_S,
    PERIOD,
    ShiftedClock,
    balances,
    plan_moves,
    settling,
    until_state,
)

pytestmark = pytest.mark.anyio


def own_fees_msat(store) -> int:
    first, last = period_days(PERIOD)
    return cdb.totals(store, first, last).get(cdb.OWN, {}).get("fees_msat", 0)


async def test_a_week_of_forwards_settles_through_the_contribution_ledger(tmp_path) -> None:
    clock = ShiftedClock(period_bounds(PERIOD)[1] - 120)  # the week's last two minutes
    async with settling(tmp_path, 4, ledgers=[None] * 4, clock=clock) as world:
        net, ids = world.net, world.ids
        x0 = ids[4]  # the mesh's outsider: a channel to every member
        x1 = net.add_node("x1", 20_000_000)
        for i, ppm in ((1, 20_000), (2, 30_000)):  # (their fees toward x1: 2 % and 3 %)
            scid = net.open_channel(x1, ids[i], 2_000_000, push_msat=1_000_000_000)
            net.set_policy(ids[i], scid, ppm=ppm)
        start = {n: balances(net, n) for n in ids[:4]}
        for k in range(12):  # x0 → x1: through member 1 or 2, which earn the fees
            net.pay(x0, net.invoice(x1, 10_000_000 + 1_000_000 * k, f"w{k}").bolt11)
        earned = {n: balances(net, n) - start[n] for n in ids[:4]}
        assert earned[ids[1]] + earned[ids[2]] > 0
        with anyio.fail_after(10):  # each member's ledger takes in its forwards
            while any(own_fees_msat(world.members[i].fleet.store) < earned[ids[i]]
                      for i in range(4)):  # fmt: skip
                await anyio.sleep(0.05)

        clock.advance(125)  # the week is over: every member reports it
        for m in world.members:
            m.fleet.kernel.wake()
        with anyio.fail_after(20):
            while any(len(m.fleet.contribution.inputs(m.fleet.store, PERIOD)) < 4
                      for m in world.members):  # fmt: skip
                await anyio.sleep(0.05)
        held = world.members[0].fleet.contribution.inputs(world.members[0].fleet.store, PERIOD)
        plan = compute_plan(PERIOD, list(held.values()))
        assert plan.total_sat == sum(v // 1000 for v in earned.values())
        assert plan.payments  # (the two earners pay the other two)
        before = {n: balances(net, n) for n in ids[:4]}
        total = net.total_msat()

        world.due()  # a grace after the reports: proposed, agreed, paid
        views = await until_state(world, "executed", limit_s=30)
        assert all(v["plan_hash"] == plan.plan_hash for v in views)
        assert net.total_msat() == total
        moved = {n: balances(net, n) - before[n] for n in ids[:4]}
        assert moved == plan_moves(plan, ids[:4])
        assert clock.now() > period_bounds(PERIOD)[1] + GRACE_S
