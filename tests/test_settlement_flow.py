"""The settlement's slower paths on the simulator: members that lacked a report agree once it
arrives (their vote is recomputed), a failed payment is retried with backoff until it goes
through (once), and READY is sent again, freshly signed, while a week waits to be executed."""

from __future__ import annotations

from dataclasses import replace

import anyio
import pytest

from agent.store import settlement as sdb
from events.fleet import MsgType
from events.fleet.settlement import SettlementReady
from tests.fleet_world import Rogue
from tests.settle_world import (
    PERIOD,
    SETTLE,
    FixedLedger,
    balances,
    plan_for,
    settling,
    until_state,
    week,
)

pytestmark = pytest.mark.anyio


def cap_htlcs(net, node: str, msat: int) -> None:
    """Every channel of `node` carries HTLCs of at most `msat` (1,000: it cannot pay)."""
    for scid, ch in net.channels.items():
        if node in (ch.a, ch.b):
            net.set_policy(node, scid, htlc_max_msat=msat)


async def test_members_missing_a_report_disagree_then_agree_when_it_arrives(tmp_path) -> None:
    async with settling(tmp_path, 4) as world:
        ids = world.ids
        full = week(ids[:4])
        for i in (2, 3):  # C and D have not got B's report yet
            ledger = world.ledgers[i]
            assert isinstance(ledger, FixedLedger)
            ledger.by_period[PERIOD] = [m for m in full if m.node != ids[1]]
        world.due()
        views = await until_state(world, "proposed")
        with anyio.fail_after(10):
            while len(world.members[0].fleet.settlement_view(PERIOD)["votes"]) < 4:
                await anyio.sleep(0.05)
        v = world.members[0].fleet.settlement_view(PERIOD)
        assert v["majority"]["agreeing"] == 2
        for i in (2, 3):
            world.ledgers[i].by_period[PERIOD] = list(full)  # type: ignore[attr-defined]
        views = await until_state(world, "executed")
        assert views[0]["majority"]["agreeing"] == 4
        assert views[0]["plan_hash"] == plan_for(ids).plan_hash


async def test_a_failed_payment_is_retried_until_it_goes_through_once(tmp_path) -> None:
    """C cannot send (its channels take no HTLC above 1 sat): its payment to D fails and is
    retried with backoff; once C's channels carry it again, it goes through, once."""
    async with settling(tmp_path, 4) as world:
        ids, net = world.ids, world.net
        c, d = ids[2], ids[3]
        cap_htlcs(net, c, 1_000)
        before = {n: balances(net, n) for n in ids}
        world.due()
        store = world.members[2].fleet.store
        counts = world.members[2].fleet.settlement.counts
        with anyio.fail_after(15):
            while counts.get("payment_failed", 0) < 2:  # failed, waited, tried again, failed
                await anyio.sleep(0.05)
        rows = sdb.pays(store, PERIOD)
        assert rows[0].state in ("invoiced", "attempting") and "could not deliver" in rows[0].error
        assert balances(net, c) == before[c]  # nothing went
        cap_htlcs(net, c, 10**15)
        views = await until_state(world, "executed")
        assert views[2]["my_payments"][0]["state"] == "paid"
        assert balances(net, c) - before[c] == -2_944_000
        assert balances(net, d) - before[d] == 2_944_000
        assert len(net.node(c).payments) == 1


async def test_an_invoice_that_expired_unpaid_is_renewed_and_the_new_one_is_paid_once(
    tmp_path,
) -> None:
    """C cannot send for longer than D's invoice lasts (a week, as CLN's): the payer does not
    pay a dead invoice but asks again, and D issues a fresh one under a label of its own
    (before, D handed the expired invoice back for good and the week never settled)."""
    async with settling(tmp_path, 4) as world:
        ids, net = world.ids, world.net
        c, d = ids[2], ids[3]
        cap_htlcs(net, c, 1_000)
        before = {n: balances(net, n) for n in ids}
        world.due()
        payer, receiver = world.members[2].fleet, world.members[3].fleet
        with anyio.fail_after(15):
            while payer.settlement.counts.get("payment_failed", 0) < 1:
                await anyio.sleep(0.05)
        first = sdb.invoice(receiver.store, PERIOD, c)
        assert first is not None and sdb.pays(payer.store, PERIOD)[0].bolt11 == first.bolt11
        assert world.clock is not None
        world.clock.advance(8 * 86400)  # the invoice's week is over
        with anyio.fail_after(15):
            while payer.settlement.counts.get("invoice_expired", 0) < 1:
                await anyio.sleep(0.05)
        cap_htlcs(net, c, 10**15)
        views = await until_state(world, "executed")
        assert views[2]["my_payments"][0]["state"] == "paid"
        renewed = sdb.invoice(receiver.store, PERIOD, c)
        assert renewed is not None and renewed.payment_hash != first.payment_hash
        assert renewed.state == "paid" and receiver.settlement.counts["invoice_renewed"] >= 1
        assert list(net.node(c).payments) == [renewed.payment_hash]  # paid once, the new one
        assert not net.node(d).invoices[first.payment_hash][2]  # the dead one never was
        assert balances(net, c) - before[c] == -2_944_000
        assert balances(net, d) - before[d] == 2_944_000


async def test_a_vote_that_overtakes_its_proposal_still_counts(tmp_path) -> None:
    """D's READY reaches B before the proposal does (votes are not retried): B keeps it and
    counts it once the proposal is here.  D is offline by then, so that early READY is its
    only vote."""
    async with settling(tmp_path, 4) as world:
        ids, net = world.ids, world.net
        assert world.clock is not None
        hive = world.members[0].fleet.status()["hive_id"]
        plan = plan_for(ids)
        d = Rogue(net, ids[3])
        body = SettlementReady(period=PERIOD, plan_hash=plan.plan_hash, agree=True)
        await d.send(ids[1], d.frame(MsgType.SETTLEMENT_READY, body, hive=hive,
                                     ts=world.clock.now()))  # fmt: skip
        counts = world.members[1].fleet.settlement.counts
        with anyio.fail_after(5):
            while not counts.get("refused:NOT_FOUND"):
                await anyio.sleep(0.02)
        await world.members[3].stop()
        await world.members[0].fleet.settlement_execute(PERIOD)
        with anyio.fail_after(10):
            while (
                world.members[1].fleet.settlement_view(PERIOD).get("majority", {}).get("agreeing")
                != 4
            ):
                await anyio.sleep(0.05)
        votes = {v["voter"] for v in world.members[1].fleet.settlement_view(PERIOD)["votes"]}
        assert ids[3] in votes


async def test_ready_is_sent_again_while_the_week_waits(tmp_path) -> None:
    """D is offline: a majority agrees without it, but C's invoice from D cannot come, so the
    week waits; every `settlement_rebroadcast_s` each member's READY is signed and sent again
    (the votes others hold get newer).  D comes back and the week is executed."""
    config = replace(SETTLE, settlement_rebroadcast_s=1)
    async with settling(tmp_path, 4, config=config) as world:
        ids = world.ids
        await world.members[3].stop()
        world.due()
        await until_state(world, "agreed", [0, 1, 2])
        first = {v.voter: v.ts for v in sdb.votes(world.members[0].fleet.store, PERIOD)}
        with anyio.fail_after(10):
            while True:
                now = {v.voter: v.ts for v in sdb.votes(world.members[0].fleet.store, PERIOD)}
                if now[ids[1]] > first[ids[1]] and now[ids[2]] > first[ids[2]]:
                    break
                await anyio.sleep(0.1)
        await world.members[3].start(world.tg)
        views = await until_state(world, "executed", limit_s=30)
        assert {v["plan_hash"] for v in views} == {plan_for(ids).plan_hash}
        assert all(p["state"] == "paid" for v in views for p in v["my_payments"])
