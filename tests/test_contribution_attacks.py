"""Attacks on the contribution ledger (issue 18 §1) on the simulator with real members and the
real ledger (the kernel's `Ledger` port): a member gone rogue signs, with its own bound key,
reports the honest code never sends; the test checks what every member holds as the
settlement's inputs and the refusals counted by code."""

from __future__ import annotations

import anyio
import pytest

from events.fleet import MsgType
from events.fleet.contribution import MAX_MSAT, ContributionReport
from tests.fleet_world import Rogue
from tests.settle_world import PERIOD, settling

pytestmark = pytest.mark.anyio


async def refused(member, code: str) -> None:
    with anyio.fail_after(10):
        while member.fleet.status()["refused"].get(code, 0) < 1:
            await anyio.sleep(0.02)


async def test_a_report_for_a_week_that_ended_before_the_author_joined_is_refused(
    tmp_path,
) -> None:
    """Members 1 and 2 joined after PERIOD ended (the clock starts past its end): a report
    by one of them for PERIOD, claiming the week's fleet forwards, would buy it a share of
    fees earned before it was there.  Refused (UNAUTHORIZED); no member holds it."""
    async with settling(tmp_path, 3, ledgers=[None] * 3) as world:
        ids = world.ids
        hive = world.members[0].fleet.status()["hive_id"]
        rogue = Rogue(world.net, ids[2])
        body = ContributionReport(
            node=ids[2], period=PERIOD, fees_msat=0, rebalance_costs_msat=0,
            forwards_msat=MAX_MSAT, capacity_sat=MAX_MSAT // 1000, uptime_pct=100,
        )  # fmt: skip
        assert world.clock is not None
        for to in (0, 1):
            await rogue.send(ids[to], rogue.frame(MsgType.CONTRIBUTION_REPORT, body, hive=hive,
                                                  ts=world.clock.now()))  # fmt: skip
        for i in (0, 1):
            await refused(world.members[i], "UNAUTHORIZED")
            m = world.members[i].fleet
            assert ids[2] not in m.contribution.inputs(m.store, PERIOD)
