"""More attacks on the contribution ledger (issue 18 §1), on the simulator with real members and
the real ledger: a member gone rogue signs, with its own bound key, reports the honest code
never sends; the test checks what every member holds and the refusals counted by code."""

from __future__ import annotations

import secrets

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from agent.clock import ManualClock, ShiftedClock
from agent.fleet import uptime
from agent.fleet.contribution_rules import day_of, day_text
from agent.fleet.service import FleetService
from agent.fleet.settlement_rules import next_period, parse_period, period_bounds
from agent.fleet.simfleet import sim_keys
from agent.node.sim import Network
from agent.node.simnode import SimBackend
from agent.store import contribution as cdb
from agent.store import contribution_reports as rdb
from agent.store import fleet as fdb
from agent.store.db import Store
from events.canonical import canonical
from events.errors import InvalidParams
from events.fleet import MsgType
from events.fleet.contribution import ContributionReport, Day, LeechNotice
from events.fleet.settlement import SettlementReady
from tests.fleet_world import Rogue
from tests.settle_world import PERIOD, settling
from tests.test_contribution_attacks import refused

pytestmark = pytest.mark.anyio
# PERIOD ("2026-40") in Arabic-Indic and in fullwidth digits: Unicode decimal digits that
# `int()` reads as 2026 and 40
ARABIC = "\u0662\u0660\u0662\u0666-\u0664\u0660"
FULLWIDTH = "\uff12\uff10\uff12\uff16-\uff14\uff10"


def report(node: str, period: str, fees_msat: int) -> ContributionReport:
    """The body as a rogue builds it (not validated here: the receiver judges it)."""
    return ContributionReport.model_construct(
        node=node, period=period, fees_msat=fees_msat, rebalance_costs_msat=0,
        forwards_msat=10**9, capacity_sat=1_000_000, uptime_pct=0, shared={},
    )  # fmt: skip


async def test_a_week_spelled_in_other_digits_is_no_second_report(tmp_path) -> None:
    """One report per member and period: a second, different one is REPORT_CONFLICT.  The
    same week spelled in Arabic-Indic or fullwidth digits (which Unicode-aware `\\d` and
    `int()` read as 2026-40) must not be a way around it: every spelling would be one more
    report every member stores and hands on as a fact for five weeks (about 10^11 spellings
    per week).  Refused (INVALID_PAYLOAD); no member holds it."""
    clock = ShiftedClock(period_bounds(PERIOD)[1] - 60)  # everyone joins before it ends
    async with settling(tmp_path, 3, ledgers=[None] * 3, clock=clock) as world:
        ids = world.ids
        hive = world.members[0].fleet.status()["hive_id"]
        clock.advance(120)  # the week is over
        rogue = Rogue(world.net, ids[2])
        for n, period in enumerate((ARABIC, FULLWIDTH), start=1):
            frame = rogue.frame(MsgType.CONTRIBUTION_REPORT, report(ids[2], period, 10**6 * n),
                                hive=hive, ts=clock.now())  # fmt: skip
            await rogue.send(ids[0], frame)
            await refused(world.members[0], "INVALID_PAYLOAD")
        store = world.members[0].fleet.store
        held = store.conn.execute("SELECT DISTINCT period FROM contribution_reports").fetchall()
        assert all(p.isascii() for (p,) in held), held
        assert not rdb.reports(store, ARABIC) and not rdb.reports(store, FULLWIDTH)
        with anyio.fail_after(5):  # (the honest reports of the week still arrive)
            while len(rdb.reports(store, PERIOD)) < 3:
                await anyio.sleep(0.05)


@given(st.text(st.characters(categories=("Nd",)), min_size=6, max_size=6))
def test_a_period_is_spelled_in_ascii_digits_only(digits: str) -> None:
    """Any six decimal digits (any script) make a period on the wire, for the settlement's rule
    and for a leech notice's day only if they are ASCII."""
    text = f"{digits[:4]}-{digits[4:]}"
    ascii_ = digits.isascii()
    body = report("02" + "ab" * 32, text, 0).model_dump()
    try:
        ContributionReport.model_validate(body)
        wire_ok = True
    except ValidationError:
        wire_ok = False
    assert wire_ok == ascii_
    if not ascii_:
        with pytest.raises(InvalidParams):
            parse_period(text)
        with pytest.raises(ValidationError):
            SettlementReady.model_validate({"period": text, "plan_hash": "00" * 32, "agree": True})
        with pytest.raises(ValidationError):
            TypeAdapter(Day).validate_python(f"{digits[:4]}-01-01")


async def test_a_member_gone_cannot_report_a_week_after_it_left(tmp_path) -> None:
    """C leaves the hive; a week later a member still in it (B, its accomplice) hands on a
    report signed with C's bound key for that week, claiming the fleet's volume.  A report
    made while its author was a member stays a fact after it leaves — this one cannot have
    been: refused (UNAUTHORIZED), so C gets no share of a week it was not in (a share no
    payer could ever pay: C sends no invoice any more)."""
    async with settling(tmp_path, 3, ledgers=[None] * 3) as world:
        ids, clock = world.ids, world.clock
        assert clock is not None
        hive = world.members[0].fleet.status()["hive_id"]
        await world.members[2].fleet.leave("gone")
        with anyio.fail_after(10):
            while True:
                gone = {m["node_id"]: m for m in world.members[0].fleet.members()["members"]}
                if gone[ids[2]]["status"] == "left":
                    break
                await anyio.sleep(0.02)
        later = next_period(PERIOD)
        clock.advance(period_bounds(later)[1] + 60 - clock.now())  # that week is over
        body = report(ids[2], later, 0)
        forged = Rogue(world.net, ids[2]).frame(
            MsgType.CONTRIBUTION_REPORT, body, hive=hive, ts=clock.now()
        )
        await Rogue(world.net, ids[1]).send(ids[0], forged)  # B hands it on
        await refused(world.members[0], "UNAUTHORIZED")
        store = world.members[0].fleet.store
        assert ids[2] not in rdb.reports(store, later)


async def test_leech_notices_about_nodes_outside_the_hive_are_refused(tmp_path) -> None:
    """A notice judges a member: one per author, member, day and status is kept and handed on
    for five weeks.  With any node id as the member — 2^256 of them — one member could make
    every member store (and hand on) as many notices as it likes each day.  A notice about a
    node that is not a member here is refused (NOT_MEMBER); one about a member is held."""
    async with settling(tmp_path, 3, ledgers=[None] * 3) as world:
        ids, clock = world.ids, world.clock
        assert clock is not None
        hive = world.members[0].fleet.status()["hive_id"]
        rogue = Rogue(world.net, ids[2])
        today = day_text(day_of(clock.now()))

        def notice(member: str) -> LeechNotice:
            return LeechNotice(
                member=member, status="leech", day=today, since=today, window_days=30,
                in_msat=10**9, out_msat=0, ratio_ppm=0, threshold_ppm=500_000, below_days=7,
                at=clock.now(),
            )  # fmt: skip

        for n in range(1, 4):
            made_up = "02" + secrets.token_hex(32)
            frame = rogue.frame(MsgType.LEECH_NOTICE, notice(made_up), hive=hive, ts=clock.now())
            await rogue.send(ids[0], frame)
            with anyio.fail_after(10):
                while world.members[0].fleet.status()["refused"].get("NOT_MEMBER", 0) < n:
                    await anyio.sleep(0.02)
        frame = rogue.frame(MsgType.LEECH_NOTICE, notice(ids[1]), hive=hive, ts=clock.now())
        await rogue.send(ids[0], frame)
        store = world.members[0].fleet.store
        with anyio.fail_after(10):
            while not cdb.notices(store):
                await anyio.sleep(0.02)
        await anyio.sleep(0.2)
        assert [x["member"] for x in cdb.notices(store)] == [ids[1]]


async def test_a_report_for_a_week_that_does_not_exist_is_an_invalid_payload(tmp_path) -> None:
    """A report for 2026-00 or 2026-54 (weeks no calendar has) is a frame's fault, refused
    INVALID_PAYLOAD like a PROPOSE for such a week — not INVALID_PARAMS, the code of an
    operator's bad method parameters."""
    async with settling(tmp_path, 3, ledgers=[None] * 3) as world:
        ids, clock = world.ids, world.clock
        assert clock is not None
        hive = world.members[0].fleet.status()["hive_id"]
        rogue = Rogue(world.net, ids[2])
        for n, period in enumerate(("2026-00", "2026-54"), start=1):
            frame = rogue.frame(MsgType.CONTRIBUTION_REPORT, report(ids[2], period, 0),
                                hive=hive, ts=clock.now())  # fmt: skip
            await rogue.send(ids[0], frame)
            with anyio.fail_after(10):
                while world.members[0].fleet.status()["refused"].get("INVALID_PAYLOAD", 0) < n:
                    assert "INVALID_PARAMS" not in world.members[0].fleet.status()["refused"]
                    await anyio.sleep(0.02)


async def _ledger_with_reports(tmp_path, n: int) -> tuple[FleetService, int]:
    """A member (its real components and store, not started) of a hive of `n` members that
    were seen every 10 minutes for a day and all reported PERIOD; the time it judges at."""
    net = Network(seed=n)
    me = net.add_node("me", 1_000_000)
    end = period_bounds(PERIOD)[1]
    clock = ManualClock(end + 7_200)
    store = Store(tmp_path / f"ledger{n}.sqlite")
    svc = FleetService(SimBackend(net, me), store, sim_keys(net, me), clock=clock)
    await svc.kernel.start()
    nodes = [me] + ["02" + secrets.token_hex(32) for _ in range(n - 1)]
    with store.transaction(end - 86_400) as tx:
        fdb.set_hive(tx, fdb.Hive("hive_" + "0" * 16, me, end - 86_400, end - 86_400))
        for node in nodes:
            fdb.add_member(tx, node, secrets.token_hex(32), "z", "member", end - 86_400)
    for t in range(end - 86_400, end, 600):
        with store.transaction(t) as tx:
            for node in nodes:
                uptime.observe(tx, node, t, 1_000)
    with store.transaction(end + 7_200) as tx:
        for node in nodes:
            body = report(node, PERIOD, 10**6).model_copy(update={"shared": {me: 0}})
            rdb.put_report(tx, node, PERIOD, secrets.token_hex(16), canonical(body).decode())
    return svc, end + 7_200


def _statements(store: Store, call) -> int:
    seen: list[str] = []
    store.conn.set_trace_callback(seen.append)
    try:
        call()
    finally:
        store.conn.set_trace_callback(None)
    return len(seen)


async def test_judging_every_report_reads_what_this_node_saw_once(tmp_path) -> None:
    """The ledger's `disputes` (what a READY for a plan not proposed here, a conflicting
    PROPOSE, every vote and every settlement check ask) read this node's presence view and
    its week's totals again for each report: O(n²) for n members — 176 ms per call measured
    at 50 members, so a member sending small READYs with made-up plan hashes kept every other
    member's CPU busy.  What it saw is read once per call: as many statements for 40
    members' reports as for 5."""
    small, _ = await _ledger_with_reports(tmp_path, 5)
    big, _ = await _ledger_with_reports(tmp_path, 40)
    few = _statements(small.kernel.store, lambda: small.contribution.disputes(
        small.kernel.store, PERIOD))  # fmt: skip
    many = _statements(big.kernel.store, lambda: big.contribution.disputes(
        big.kernel.store, PERIOD))  # fmt: skip
    assert many <= few + 2, (few, many)
    assert big.contribution.disputes(big.kernel.store, PERIOD) == []  # (honest figures)
