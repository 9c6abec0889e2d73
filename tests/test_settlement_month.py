"""A simulated month of a ten-member fleet on the real contribution ledger: random traffic
through the members each week (their fees changed every week, so different members earn), the
week reported once it is over, planned, agreed and paid — four weeks in a row, one of them
without traffic (skipped).  Every member holds the same inputs and computes the same plan, no
msat is created or lost across all nodes, and every member's balance moves by exactly the
plans' payments."""

from __future__ import annotations

import random

import anyio
import pytest

from agent.fleet.contribution_rules import period_days
from agent.fleet.settlement_rules import compute_plan, next_period, period_bounds
from agent.store import contribution as cdb
from tests.settle_world import ShiftedClock, balances, settling, until_state

pytestmark = pytest.mark.anyio
N = 10
FIRST = "2026-36"
WEEKS = [FIRST, next_period(FIRST), next_period(next_period(FIRST))]
WEEKS.append(next_period(WEEKS[-1]))
QUIET = WEEKS[2]  # no traffic that week: nothing to settle


def own_fees_msat(world, i: int, period: str) -> int:
    first, last = period_days(period)
    totals = cdb.totals(world.members[i].fleet.store, first, last)
    return totals.get(cdb.OWN, {}).get("fees_msat", 0)


def inputs_held(world, i: int, period: str) -> dict:
    m = world.members[i].fleet
    return m.contribution.inputs(m.store, period)


async def traffic(world, rng: random.Random, period: str, toward: dict[int, str]) -> dict:
    """A week's random payments x0 → x1 and back through the members (their fees toward x1
    drawn anew: whoever is cheapest earns); what each member earned, once its ledger has it."""
    net, members, x0, x1 = world.net, world.ids[:N], world.ids[N], world.x1
    for i in range(N):
        net.set_policy(members[i], toward[i], ppm=rng.randrange(1_000, 30_000))
    before = {x: balances(net, x) for x in members}
    for k in range(0 if period == QUIET else rng.randrange(8, 16)):
        amount = rng.randrange(2_000_000, 30_000_000)
        net.pay(x0, net.invoice(x1, amount, f"{period}-{k}").bolt11)
        back = rng.randrange(2_000_000, 30_000_000)
        net.pay(x1, net.invoice(x0, back, f"{period}-back-{k}").bolt11)
    earned = {x: balances(net, x) - before[x] for x in members}
    with anyio.fail_after(20):  # each member's ledger takes in its forwards
        while any(own_fees_msat(world, i, period) < earned[members[i]] for i in range(N)):
            await anyio.sleep(0.05)
    return earned


async def reported(world, period: str) -> list[dict]:
    """Once the week is over, until every member holds every member's report; what each holds."""
    for m in world.members:
        m.fleet.kernel.wake()
    try:
        with anyio.fail_after(60):
            while any(len(inputs_held(world, i, period)) < N for i in range(N)):
                await anyio.sleep(0.05)
    except TimeoutError:
        ids = world.ids
        held = [sorted(ids.index(n) for n in inputs_held(world, i, period)) for i in range(N)]
        raise AssertionError(f"{period}: the reports each member holds: {held}") from None
    return [inputs_held(world, i, period) for i in range(N)]


@pytest.mark.timeout(240)
async def test_a_month_of_weeks_settles_and_no_msat_is_created_or_lost(tmp_path) -> None:
    rng = random.Random(2026)
    clock = ShiftedClock(period_bounds(FIRST)[1] - 300)
    async with settling(tmp_path, N, ledgers=[None] * N, clock=clock) as world:
        net, members = world.net, world.ids[:N]
        world.x1 = net.add_node("x1", 50_000_000)  # type: ignore[attr-defined]
        toward = {  # every member a way to x1 (both sides with liquidity)
            i: net.open_channel(world.x1, members[i], 2_000_000, push_msat=1_000_000_000)
            for i in range(N)
        }
        total = net.total_msat()
        paid_total = 0
        for n, period in enumerate(WEEKS):
            end = period_bounds(period)[1]
            if n:  # to this week's last minutes (a week's jump: heartbeats bring presence)
                clock.advance(end - 300 - clock.now())
            earned = await traffic(world, rng, period, toward)
            assert net.total_msat() == total
            clock.advance(end + 2 - clock.now())  # the week is over: every member reports it
            held = await reported(world, period)
            assert all(h == held[0] for h in held), "every member's ledger agrees"
            plan = compute_plan(period, list(held[0].values()))
            # each member earned exactly its forwarding fees (rounded down to the sat)
            assert plan.total_sat == sum(e // 1000 for e in earned.values())
            settled = {x: balances(net, x) for x in members}
            world.due()
            state = "skipped" if plan.empty else "executed"
            assert plan.empty == (period == QUIET)
            views = await until_state(world, state, period=period, limit_s=60)
            expected = dict.fromkeys(members, 0)
            for t in plan.payments:
                expected[t.payer] -= t.amount_sat * 1000
                expected[t.receiver] += t.amount_sat * 1000
                paid_total += t.amount_sat
            assert all(v.get("plan_hash", plan.plan_hash) == plan.plan_hash for v in views)
            moved = {x: balances(net, x) - settled[x] for x in members}
            assert moved == expected, f"{period}: balances moved exactly by the plan"
            assert net.total_msat() == total, "no msat created or lost"
        assert paid_total > 0
