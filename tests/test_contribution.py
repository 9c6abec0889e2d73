"""The contribution ledger on the simulator: three members A, B, C (a triangle of channels) and
an outsider X with one channel, to A.  Real payments routed through A produce A's per-member
rows and ratio; a forward delivered again (also after a restart) is counted once; B, which only
sends traffic through A, loses A's zero fees after 7 days below 0.5 and gets them back when it
recovers, announced to the fleet; after the week ends every member reports and the others hold
the reports (one offline catches up through anti-entropy); an inflated report is disputed and
hostile reports are refused with their codes."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from agent.clock import ShiftedClock
from agent.fleet import contribution_rules as rules
from agent.fleet.settlement_rules import period_bounds, period_of, previous_period
from agent.fleet.simfleet import SimMember
from agent.node.models import Forward
from agent.node.sim import Network
from agent.node.simnode import SimDriver
from agent.store import contribution as cdb
from agent.store import contribution_reports as rdb
from agent.store import fleet as fdb
from events.errors import NotFound
from events.fleet import MsgType
from events.fleet.contribution import ContributionReport, LeechNotice
from tests.fleet_world import FAST, Fleet, Rogue

pytestmark = pytest.mark.anyio
DAY = 86_400
SAT = 1_000


@dataclasses.dataclass
class World:
    f: Fleet
    x: str  # an outsider with one channel, to A
    y: str  # another, with one channel to B
    clock: ShiftedClock
    hive: str

    @property
    def ids(self) -> list[str]:
        return self.f.ids

    def m(self, i: int) -> SimMember:
        return self.f.members[i]

    def pay(self, payer: str, payee: str, sats: int) -> None:
        bolt11 = self.f.net.invoice(payee, sats * SAT, secrets.token_hex(8)).bolt11
        self.f.net.pay(payer, bolt11)

    def fees(self, i: int, peer: str) -> tuple[int, int]:
        net, me = self.f.net, self.ids[i]
        scid = next(s for s in net.nodes[me].channels if net.channels[s].other(me) == peer)
        pol = net.channels[scid].policy[me]
        return pol.base_msat, pol.ppm


@asynccontextmanager
async def world(tmp: Path, start: int | None = None) -> AsyncIterator[World]:
    net = Network(seed=5, clock=time.monotonic)
    ids = [net.add_node(f"n{i}", 50_000_000) for i in range(3)]
    x = net.add_node("outsider-x", 50_000_000)
    y = net.add_node("outsider-y", 50_000_000)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        net.open_channel(ids[a], ids[b], 5_000_000, push_msat=2_500_000_000)
    net.open_channel(ids[0], x, 5_000_000, push_msat=2_500_000_000)
    net.open_channel(ids[1], y, 5_000_000, push_msat=2_500_000_000)
    clock = ShiftedClock(start or int(time.time()))
    async with SimDriver(net), anyio.create_task_group() as tg:
        members = [
            SimMember(net, ids[i], tmp / f"m{i}", clock=clock, config=FAST) for i in range(3)
        ]
        for m in members:
            await m.start(tg)
        f = Fleet(net, ids, members, tg)
        hive = str((await members[0].fleet.genesis())["hive_id"])
        await f.admit(0, 1)
        await f.admit(0, 2)
        await f.settle()
        try:
            yield World(f, x, y, clock, hive)
        finally:
            for m in members:
                if m.service is not None:
                    await m.stop()
            tg.cancel_scope.cancel()


async def until(check: Callable[[], object], limit_s: float = 10) -> None:
    with anyio.fail_after(limit_s):
        while not check():
            await anyio.sleep(0.02)


def row(w: World, at: int, of: int) -> dict[str, object]:
    """Member `of` as member `at`'s ledger shows it."""
    view = w.m(at).fleet.contribution_view(w.ids[of])
    return dict(view["members"][0])


async def test_payments_through_a_member_make_its_rows_and_a_replay_counts_once(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        a, b = w.ids[0], w.ids[1]
        seen: list[Forward] = []
        w.f.net.listeners[a].append(lambda e: seen.append(e) if isinstance(e, Forward) else None)
        w.pay(b, w.x, 100_000)  # B → A → X: A carries B's traffic
        w.pay(b, w.x, 50_000)
        await until(lambda: row(w, 0, 1)["forwards"] == 2)
        fwd_in = sum(f.in_msat for f in seen)
        fees = sum(f.fee_msat for f in seen)
        got = row(w, 0, 1)
        assert (got["in_msat"], got["out_msat"], got["fees_msat"]) == (fwd_in, 0, fees)
        assert fees > 0 and got["ratio"] == 0.0  # it took, and carried nothing of ours
        w.pay(w.x, b, 30_000)  # X → A → B: now B carries ours
        await until(lambda: row(w, 0, 1)["forwards"] == 3)
        out = seen[-1].out_msat
        got = row(w, 0, 1)
        assert got["out_msat"] == out and got["ratio_ppm"] == out * rules.PPM // fwd_in
        own = w.m(0).fleet.contribution_view()["own"]
        assert own["forwards"] == 3 and own["out_msat"] == sum(f.out_msat for f in seen)
        assert row(w, 0, 2)["forwards"] == 0  # C carried nothing of this
        # the same forward again (a replay), then after a restart: counted once
        await w.m(0).fleet.handle(seen[0])
        await w.f.restart(0)
        await w.m(0).fleet.handle(seen[0])
        view = w.m(0).fleet.contribution_view(b)
        assert view["members"][0]["forwards"] == 3
        assert view["counts"]["forwards_duplicate"] == 2
        assert view["chain"]["ok"] and view["chain"]["rows"] == 3


async def test_a_member_that_only_takes_loses_zero_fees_after_seven_days_and_recovers(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        a, b, c = w.ids
        svc = w.m(0).fleet
        await svc.planning.reconcile()  # zero fees for members, through the bridge
        assert w.fees(0, b) == (0, 0) and w.fees(0, c) == (0, 0)
        day0 = rules.day_of(w.clock.now())
        for _ in range(3):
            w.pay(b, w.x, 200_000)
        await until(lambda: row(w, 0, 1)["forwards"] == 3)

        w.clock.advance(6 * DAY)  # six days judged below: not yet
        await until(lambda: row(w, 0, 1)["judged"] == rules.day_text(day0 + 5))
        assert row(w, 0, 1)["below_days"] == 6 and not row(w, 0, 1)["leech"]
        w.clock.advance(DAY)  # the seventh
        await until(lambda: row(w, 0, 1)["leech"])
        assert row(w, 0, 1)["leech_since"] == rules.day_text(day0 + 6)
        assert svc.contribution.withheld(svc.store) == {b}
        await svc.planning.reconcile()  # the same mechanism as a member that left
        assert w.fees(0, b) != (0, 0) and w.fees(0, c) == (0, 0)
        # announced to the fleet with the numbers: C holds A's notice
        await until(lambda: any(n["member"] == b for n in cdb.notices(w.m(2).fleet.store)))
        notice = next(n for n in cdb.notices(w.m(2).fleet.store) if n["member"] == b)
        assert notice["author"] == a and notice["status"] == "leech"
        assert notice["ratio_ppm"] == 0 and notice["below_days"] == 7
        assert notice["in_msat"] == row(w, 0, 1)["in_msat"]
        assert svc.status()["contribution"]["leeches"] == [b]

        w.pay(w.x, b, 400_000)  # B carries ours now: out 400k ≥ half of in ~600k
        await until(lambda: row(w, 0, 1)["forwards"] == 4)
        w.clock.advance(DAY)
        await until(lambda: not row(w, 0, 1)["leech"])
        assert svc.contribution.withheld(svc.store) == set()
        await svc.planning.reconcile()
        assert w.fees(0, b) == (0, 0)
        await until(
            lambda: any(n["status"] == "recovered" for n in cdb.notices(w.m(2).fleet.store))
        )
        assert cdb.counts(svc.store)["leech_leech"] == 1
        assert cdb.counts(svc.store)["leech_recovered"] == 1


def _monday_noon() -> int:
    """Noon on the Tuesday of the current ISO week (well inside it)."""
    start, _ = period_bounds(period_of(int(time.time())))
    return start + DAY + 12 * 3600


async def test_reports_go_out_after_the_week_and_an_offline_member_catches_up(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, start=_monday_noon()) as w:
        a, b, c = w.ids
        period = period_of(w.clock.now())
        w.pay(w.x, w.y, 100_000)  # X → A → B → Y: both A and B forward it over A–B
        w.pay(w.y, w.x, 80_000)  # and back
        await until(lambda: w.m(0).fleet.contribution_view()["own"]["forwards"] == 2)
        await until(lambda: w.m(1).fleet.contribution_view()["own"]["forwards"] == 2)
        await w.m(2).stop()  # C is offline when the week ends
        w.clock.advance(period_bounds(period)[1] - w.clock.now() + 3600)
        assert previous_period(period_of(w.clock.now())) == period
        await until(lambda: set(rdb.reports(w.m(1).fleet.store, period)) == {a, b}, 15)
        await until(lambda: set(rdb.reports(w.m(0).fleet.store, period)) == {a, b}, 15)
        ledger = w.m(1).fleet.kernel.ledger
        assert ledger is not None
        inputs = ledger.inputs(w.m(1).fleet.store, period)
        own = w.m(0).fleet.contribution_view()["own"]
        assert inputs[a].fees_sat == own["fees_msat"] // 1000
        assert inputs[a].forwards_msat == own["out_msat"]
        reported = json.loads(rdb.reports(w.m(1).fleet.store, period)[a])
        ab = row(w, 0, 1)
        assert reported["shared"] == {b: ab["in_msat"] + ab["out_msat"]}
        assert reported["shared"][b] == sum(
            json.loads(rdb.reports(w.m(0).fleet.store, period)[b])["shared"].values()
        )  # the same HTLCs, counted alike on both ends of A–B
        assert ledger.disputes(w.m(1).fleet.store, period) == []  # honest: nothing flagged
        assert w.m(0).fleet.kernel.ledger.disputes(w.m(0).fleet.store, period) == []  # type: ignore[union-attr]
        w.clock.advance(2 * DAY)  # the outboxes gave up on C: only anti-entropy brings them
        await until(lambda: not w.m(0).fleet.status()["outbox"].get("pending"))
        await w.m(2).start(w.f.tg)  # back: it sends its own; anti-entropy brings the others
        await until(lambda: set(rdb.reports(w.m(2).fleet.store, period)) == {a, b, c}, 30)
        await until(lambda: set(rdb.reports(w.m(0).fleet.store, period)) == {a, b, c}, 30)
        # the authors' own frames, days old, were taken as handed on, not refused as stale
        assert "EXPIRED" not in w.m(2).fleet.store.error_counts()
        # one report per member and period: a restart does not send another
        await w.f.restart(0)
        await anyio.sleep(1.5)
        assert cdb.counts(w.m(0).fleet.store).get("reports_held") == 3
        assert await w.m(0).fleet.contribution_report(period) is None  # (sent already)


async def test_inflated_and_hostile_reports_are_flagged_or_refused(tmp_path: Path) -> None:
    async with world(tmp_path, start=_monday_noon() - 14 * DAY) as w:
        w.clock.advance(14 * DAY)  # (the hive began two weeks ago: members in `before`)
        a, b, c = w.ids
        last = previous_period(period_of(w.clock.now()))
        before = previous_period(last)  # (only last week is reported by the members' code)
        rogue = Rogue(w.f.net, b)  # B's own identity, by hand
        store = w.m(0).fleet.store

        def report(**over: object) -> ContributionReport:
            fields: dict[str, object] = {
                "node": b, "period": before, "fees_msat": 5_000_000,
                "rebalance_costs_msat": 0, "forwards_msat": 90_000_000_000,
                "capacity_sat": 5_000_000, "uptime_pct": 50, "shared": {a: 90_000_000_000},
            }  # fmt: skip
            return ContributionReport.model_validate(fields | over)

        async def send(body: ContributionReport, **kw: object) -> None:
            frame = rogue.frame(
                MsgType.CONTRIBUTION_REPORT, body, hive=w.hive, **({"ts": w.clock.now()} | kw)
            )  # type: ignore[arg-type]
            await rogue.send(a, frame)

        errors = store.error_counts
        n = errors().get("REPORT_DISPUTED", 0)
        await send(report())  # 90,000,000 sat through A that A never carried
        await until(lambda: errors().get("REPORT_DISPUTED", 0) == n + 1)
        ledger = w.m(0).fleet.kernel.ledger
        assert ledger is not None
        found = ledger.disputes(store, before)
        assert found == [{
            "node": b, "code": "REPORT_DISPUTED", "field": "shared",
            "reported": 90_000_000_000, "observed": 0, "reason": found[0]["reason"],
        }]  # fmt: skip
        assert b in ledger.inputs(store, before)  # held and flagged, never averaged away

        ended = period_bounds(before)[1]
        cases: list[tuple[str, ContributionReport, dict[str, object]]] = [
            ("REPORT_CONFLICT", report(fees_msat=6_000_000), {}),  # a second, different one: kept
            ("UNAUTHORIZED", report(node=c, period=last), {}),  # for another member's node
            ("FROM_FUTURE", report(period=period_of(w.clock.now())), {}),  # not over yet
            # an id of its own choosing: two reports with one id, and a member that handled
            # one would drop the other as a copy (the fleet could not learn of the second)
            ("INVALID_PAYLOAD", report(fees_msat=7_000_000), {"msg_id": "5" * 32}),
            # dated before its week ended (as if handed on: its fact would leave the set)
            ("INVALID_PAYLOAD", report(fees_msat=8_000_000), {"ts": ended - 86_400}),
        ]
        for code, body, kw in cases:
            count = errors().get(code, 0)
            await send(body, **kw)
            await until(lambda code=code, count=count: errors().get(code, 0) == count + 1)
        # B signed two different reports for the week: both are held, the smaller id as its
        # report and the other as the proof, and B is no input to the week's settlement
        report_held, proof = rdb.report(store, b, before), rdb.conflict(store, b, before)
        assert report_held is not None and proof is not None and report_held[0] < proof[0]
        fees = {json.loads(report_held[1])["fees_msat"], json.loads(proof[1])["fees_msat"]}
        assert fees == {5_000_000, 6_000_000}
        assert rdb.equivocators(store, before) == {b}
        assert b not in ledger.inputs(store, before) and ledger.disputes(store, before) == []
        assert cdb.counts(store)["reports_equivocated"] == 1
        assert set(rdb.reports(store, period_of(w.clock.now()))) == set()
        # a member does not judge itself
        own = LeechNotice(
            member=b, status="recovered", day="2026-12-03", since="2026-12-03", window_days=30,
            in_msat=0, out_msat=0, ratio_ppm=1_000_000, threshold_ppm=500_000, below_days=0,
            at=w.clock.now(),
        )  # fmt: skip
        count = errors().get("UNAUTHORIZED", 0)
        await rogue.send(a, rogue.frame(MsgType.LEECH_NOTICE, own, hive=w.hive, ts=w.clock.now()))
        await until(lambda: errors().get("UNAUTHORIZED", 0) == count + 1)
        assert cdb.notices(store) == []
        # negative numbers never get past the wire
        good = rogue.frame(MsgType.CONTRIBUTION_REPORT, report(), hive=w.hive, ts=w.clock.now())
        env = json.loads(good[6:])
        env["body"]["fees_msat"] = -1
        count = errors().get("INVALID_PAYLOAD", 0)
        await rogue.send(a, good[:6] + json.dumps(env, separators=(",", ":")).encode())
        await until(lambda: errors().get("INVALID_PAYLOAD", 0) == count + 1)


async def test_old_days_are_pruned_and_the_chain_still_verifies_from_its_anchor(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        b = w.ids[1]
        w.pay(w.x, w.y, 50_000)
        await until(lambda: row(w, 0, 1)["forwards"] == 1)
        with pytest.raises(NotFound, match="not a member"):
            w.m(0).fleet.contribution_view("02" + "e" * 64)
        w.clock.advance(40 * DAY)  # past the 35 days kept
        await until(lambda: cdb.chain_size(w.m(0).fleet.store) == 0)
        view = w.m(0).fleet.contribution_view(b)
        assert view["members"][0]["forwards"] == 0 and view["own"]["days"] == []
        assert view["chain"]["ok"] and view["chain"]["anchor"]["seq"] == 1
        w.pay(w.x, w.y, 20_000)  # new rows chain on from the anchor
        await until(lambda: row(w, 0, 1)["forwards"] == 1)
        assert w.m(0).fleet.contribution_view()["chain"] == {
            **w.m(0).fleet.contribution_view()["chain"],
            "ok": True,
            "rows": 1,
        }


async def test_a_report_made_before_its_author_left_is_still_handed_on(tmp_path: Path) -> None:
    async with world(tmp_path, start=_monday_noon() - 14 * DAY) as w:
        w.clock.advance(14 * DAY)  # (C was a member in `before`)
        a, b, c = w.ids
        before = previous_period(previous_period(period_of(w.clock.now())))
        body = ContributionReport(
            node=c, period=before, fees_msat=1_000, rebalance_costs_msat=0, forwards_msat=0,
            capacity_sat=0, uptime_pct=0,
        )  # fmt: skip
        signed = Rogue(w.f.net, c).frame(
            MsgType.CONTRIBUTION_REPORT, body, hive=w.hive, ts=w.clock.now()
        )
        await w.m(2).fleet.leave("moving on")
        await until(lambda: getattr(fdb.member(w.m(1).fleet.store, c), "status", "") == "left")
        await Rogue(w.f.net, a).send(b, signed)  # A hands C's report on to B
        await until(lambda: rdb.report(w.m(1).fleet.store, c, before) is not None)
        # the same from a node that never was a member: refused
        stranger = Rogue(w.f.net, w.x)
        forged = stranger.frame(
            MsgType.CONTRIBUTION_REPORT, body.model_copy(update={"node": w.x}), hive=w.hive,
            ts=w.clock.now(),
        )  # fmt: skip
        count = w.m(1).fleet.store.error_counts().get("NOT_MEMBER", 0)
        await Rogue(w.f.net, a).send(b, forged)
        await until(lambda: w.m(1).fleet.store.error_counts().get("NOT_MEMBER", 0) > count)
        assert rdb.report(w.m(1).fleet.store, w.x, before) is None
