"""A simulated fleet that settles a week: meshed simulator nodes, one `SimMember` each (own
store on disk), a clock set just past the period's end and its grace, and the settlement's
inputs through the kernel's `Ledger` port.

`FixedLedger` is a small real `Ledger` (agent/fleet/component.py): the inputs and disputes it
is given, per period, so the worked figures are exact.  The contribution component implements
the same port from forwards (tests/test_settlement_ledger.py settles a week through it:
`settling(..., ledgers=[None] * n)`).  To switch more of these tests, `make_ledgers` is the
one place: have it return `None` for each member (the
members then use the kernel's own port, `kernel.ledger`, which the contribution component
fills) and drive the simulated week's forwards and reports so that the period's inputs are
`week(ids)`; the tests that change one member's inputs or disputes (they check
`isinstance(ledger, FixedLedger)`) need the same done through reports and observations.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio

from agent.clock import ShiftedClock
from agent.fleet.component import FleetConfig, Ledger
from agent.fleet.settlement_rules import MemberInput, compute_plan, period_bounds
from agent.fleet.simfleet import SimMember
from agent.node.sim import Network
from agent.node.simnode import SimDriver
from agent.store.db import Db
from tests.fleet_world import FAST, Fleet, mesh

PERIOD = "2026-40"  # a week long past: (Mon 2026-09-28 … Sun 2026-10-04, UTC)
GRACE_S = 20
SETTLE = replace(
    FAST, settlement_grace_s=GRACE_S, settlement_check_s=0, settlement_retry_s=0.2,
    settlement_retry_cap_s=1.0,
)  # fmt: skip


def at_end(period: str = PERIOD) -> ShiftedClock:
    """A clock a second past the period's end: nobody proposes until a grace has passed
    (`SettleWorld.due()` jumps there)."""
    return ShiftedClock(period_bounds(period)[1] + 1)


@dataclass
class SettleWorld(Fleet):
    clock: ShiftedClock | None = None
    ledgers: list[Ledger | None] = field(default_factory=list)

    def due(self, graces: int = 1) -> None:
        """Move time `graces` graces on (one: the first in rank proposes) and wake them."""
        assert self.clock is not None
        self.clock.advance(GRACE_S * graces)
        for m in self.members:
            if m.service is not None:
                m.fleet.kernel.wake()


@dataclass
class FixedLedger:
    """The inputs and disputes this member holds, per period (tests change them at will)."""

    by_period: dict[str, list[MemberInput]] = field(default_factory=dict)
    disputed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def inputs(self, store: Db, period: str) -> dict[str, MemberInput]:
        return {m.node: m for m in self.by_period.get(period, [])}

    def disputes(self, store: Db, period: str) -> list[dict[str, Any]]:
        return list(self.disputed.get(period, []))


def week(ids: list[str]) -> list[MemberInput]:
    """The worked example's week for four members (see tests/test_settlement.py)."""
    figures = [  # fees, rebalance costs, capacity, forwards (msat), uptime
        (12_000, 2_000, 4_000_000, 900_000_000, 100),
        (1_000, 0, 2_000_000, 2_400_000_000, 100),
        (6_000, 1_000, 2_000_000, 300_000_000, 90),
        (0, 500, 1_000_000, 1_200_000_000, 80),
    ]
    return [
        MemberInput(node, fees, costs, cap, fwd, up)
        for node, (fees, costs, cap, fwd, up) in zip(ids, figures, strict=False)
    ]


def inflated_week(ids: list[str], who: str, factor: int = 10) -> list[MemberInput]:
    """The worked week with `who`'s forwards multiplied: the self-consistent plan of its own
    making that a hostile member proposes."""
    return [replace(m, forwards_msat=m.forwards_msat * factor) if m.node == who else m
            for m in week(ids)]  # fmt: skip


def make_ledgers(ids: list[str], n: int, period: str = PERIOD) -> list[Ledger | None]:
    """One ledger per member, each holding the same week (the honest case)."""
    inputs = week(ids[:n])
    return [FixedLedger({period: list(inputs)}) for _ in range(n)]


def balances(net: Network, node: str) -> int:
    """A node's msat in its channels and on chain: what a payment moves."""
    chans = sum(c.balance[node] for c in net.channels.values() if node in (c.a, c.b))
    return chans + net.node(node).onchain_sat * 1000


def plan_moves(plan: Any, nodes: list[str]) -> dict[str, int]:
    """What `plan`'s payments move, per node of `nodes` (msat: a payer's negative)."""
    moved = dict.fromkeys(nodes, 0)
    for t in plan.payments:
        moved[t.payer] -= t.amount_sat * 1000
        moved[t.receiver] += t.amount_sat * 1000
    return moved


@asynccontextmanager
async def settling(
    tmp: Path,
    n: int = 4,
    *,
    ledgers: list[Ledger | None] | None = None,
    clock: ShiftedClock | None = None,
    config: FleetConfig = SETTLE,
) -> AsyncIterator[SettleWorld]:
    """n members in one hive (member 0 founded it, the others joined), each with its ledger."""
    net, ids = mesh(n, extra=1)
    held = ledgers if ledgers is not None else make_ledgers(ids, n)
    clk = clock or at_end()
    async with SimDriver(net), anyio.create_task_group() as tg:
        members = [
            SimMember(net, ids[i], tmp / f"m{i}", clock=clk, config=config, ledger=held[i])
            for i in range(n)
        ]
        for m in members:
            await m.start(tg)
        world = SettleWorld(net, ids, members, tg, clk, held)
        try:
            await members[0].fleet.genesis()
            for j in range(1, n):
                await world.admit(0, j)
            yield world
        finally:
            for m in members:
                if m.service is not None:
                    await m.stop()
            tg.cancel_scope.cancel()


async def until_state(world: Fleet, state: str, indexes: list[int] | None = None,
                      period: str = PERIOD, limit_s: float = 20) -> list[dict[str, Any]]:  # fmt: skip
    """Wait until the chosen members hold `period` in `state`; their views."""
    chosen = indexes if indexes is not None else list(range(len(world.members)))
    with anyio.fail_after(limit_s):
        while True:
            views = [world.members[i].fleet.settlement_view(period) for i in chosen]
            if all(v["state"] == state for v in views):
                return views
            await anyio.sleep(0.05)


def plan_for(ids: list[str], n: int = 4, period: str = PERIOD) -> Any:
    return compute_plan(period, week(ids[:n]))
