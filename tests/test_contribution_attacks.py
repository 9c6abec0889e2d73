"""Attacks on the contribution ledger (issue 18 §1) on the simulator with real members and the
real ledger (the kernel's `Ledger` port): a member gone rogue signs, with its own bound key,
reports the honest code never sends; the test checks what every member holds as the
settlement's inputs and the refusals counted by code."""

from __future__ import annotations

import anyio
import pytest

from agent.fleet.contribution_rules import day_of, day_text
from agent.store import contribution as cdb
from events.fleet import MsgType
from events.fleet.contribution import MAX_MSAT, ContributionReport, LeechNotice
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


async def test_leech_notices_for_days_long_gone_or_to_come_are_refused(tmp_path) -> None:
    """A member may announce one judgement per member, day and status: with any day it likes,
    it could make every member store (and hand on) millions.  A notice for a day the ledger
    no longer keeps is refused EXPIRED, one for a day not begun FROM_FUTURE; today's is held."""
    async with settling(tmp_path, 3, ledgers=[None] * 3) as world:
        ids = world.ids
        hive = world.members[0].fleet.status()["hive_id"]
        rogue = Rogue(world.net, ids[2])
        assert world.clock is not None
        now = world.clock.now()

        def notice(day: str) -> LeechNotice:
            return LeechNotice(
                member=ids[1], status="leech", day=day, since=day, window_days=30,
                in_msat=10**9, out_msat=0, ratio_ppm=0, threshold_ppm=500_000, below_days=7,
                at=now,
            )  # fmt: skip

        today = day_text(day_of(now))
        for day, code in (("2001-01-01", "EXPIRED"), ("2099-01-01", "FROM_FUTURE")):
            await rogue.send(ids[0], rogue.frame(MsgType.LEECH_NOTICE, notice(day), hive=hive,
                                                 ts=now))  # fmt: skip
            await refused(world.members[0], code)
        await rogue.send(ids[0], rogue.frame(MsgType.LEECH_NOTICE, notice(today), hive=hive,
                                             ts=now))  # fmt: skip
        store = world.members[0].fleet.store
        with anyio.fail_after(10):
            while not cdb.notices(store):
                await anyio.sleep(0.02)
        assert [n["day"] for n in cdb.notices(store)] == [today]
