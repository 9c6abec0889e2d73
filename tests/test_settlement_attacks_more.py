"""More attacks on the weekly settlement (issue 18), each on the simulator with real members: a
member gone rogue signs, with its own bound key, frames the honest code never sends (or feeds
the fleet figures no honest node has), and the test checks the real effect — the state each
member holds, the payments made (the simulator's balances), the refusals counted by code."""

from __future__ import annotations

import hashlib
import secrets

import anyio
import pytest

from agent.fleet.settlement_rules import MemberInput, compute_plan
from events.fleet import MsgType
from events.fleet.settlement import (
    MAX_SAT,
    PaidBody,
    SettlementExecuted,
    SettlementInvoice,
    SettlementInvoiceRequest,
    SettlementReady,
)
from tests.fleet_world import Rogue
from tests.settle_world import (
    PERIOD,
    SettleWorld,
    balances,
    inflated_week,
    settling,
    until_state,
    week,
)
from tests.test_settlement_attacks import propose_body, refused

pytestmark = pytest.mark.anyio
ANCIENT = "2020-01"  # a week long before anything the fleet keeps


def hold(world: SettleWorld, inputs: list[MemberInput]) -> None:
    """Every member's ledger holds `inputs` for the period."""
    for ledger in world.ledgers:
        ledger.by_period[PERIOD] = list(inputs)  # type: ignore[union-attr]


def one_payer(ids: list[str]) -> list[MemberInput]:
    """A earned every fee and contributed nothing; B everything: A pays B all of it, C and D
    neither pay nor receive."""
    return [
        MemberInput(ids[0], 10_000, 0, 0, 0, 0),
        MemberInput(ids[1], 0, 0, 1_000_000, 1_000_000_000, 100),
        MemberInput(ids[2], 0, 0, 0, 0, 0),
        MemberInput(ids[3], 0, 0, 0, 0, 0),
    ]


async def send(world: SettleWorld, who: Rogue, to: int, t: MsgType, body) -> None:
    hive = world.members[0].fleet.status()["hive_id"]
    assert world.clock is not None
    await who.send(world.ids[to], who.frame(t, body, hive=hive, ts=world.clock.now()))


async def test_an_executed_before_any_majority_does_not_close_the_period(tmp_path) -> None:
    """A payer's EXECUTED (with preimages it made up: only the receiver could tell) for a plan
    no majority agreed to is refused (RESTRICTED), not taken as the period settled."""
    async with settling(tmp_path, 4) as world:
        ids, net = world.ids, world.net
        hold(world, one_payer(ids))
        for i in (1, 2, 3):  # only A would agree: no majority
            world.ledgers[i].disputed[PERIOD] = [{"node": ids[0]}]  # type: ignore[union-attr]
        world.due()
        views = await until_state(world, "proposed")
        plan = compute_plan(PERIOD, one_payer(ids))
        assert [(t.payer, t.receiver) for t in plan.payments] == [(ids[0], ids[1])]
        pre = secrets.token_hex(32)
        paid = PaidBody(receiver=ids[1], amount_sat=plan.payments[0].amount_sat,
                        payment_hash=hashlib.sha256(bytes.fromhex(pre)).hexdigest(),
                        preimage=pre)  # fmt: skip
        body = SettlementExecuted(period=PERIOD, plan_hash=views[0]["plan_hash"], payer=ids[0],
                                  payments=[paid])  # fmt: skip
        before = {n: balances(net, n) for n in ids}
        await send(world, Rogue(net, ids[0]), 2, MsgType.SETTLEMENT_EXECUTED, body)
        await refused(world, 2, "RESTRICTED")
        assert world.members[2].fleet.settlement_view(PERIOD)["state"] == "proposed"
        assert {n: balances(net, n) for n in ids} == before


async def test_absurd_fees_do_not_stop_the_proposal(tmp_path) -> None:
    """A member reporting every bitcoin there is as its fees (the report's bound) makes the
    fleet's total exceed one member's bound: the plan is still proposed and voted on (the
    member that reported it is the one that owes), not lost to a body that cannot be built."""
    async with settling(tmp_path, 4) as world:
        ids = world.ids
        inputs = week(ids)
        inputs[3] = MemberInput(ids[3], MAX_SAT, 0, 1_000_000, 1_200_000_000, 80)
        hold(world, inputs)
        plan = compute_plan(PERIOD, inputs)
        assert plan.total_sat > MAX_SAT
        world.due()
        views = await until_state(world, "agreed", [0, 1, 2])
        assert {v["plan_hash"] for v in views} == {plan.plan_hash}
        assert all(t.payer == ids[3] for t in plan.payments)


async def test_a_proposal_for_a_week_long_gone_is_refused(tmp_path) -> None:
    """A self-consistent PROPOSE for a week older than anything kept (the ledger keeps five
    weeks) is refused (EXPIRED): a rogue cannot make every member store a proposal for every
    week back to year 1."""
    async with settling(tmp_path, 4) as world:
        ids = world.ids
        await send(world, Rogue(world.net, ids[3]), 0, MsgType.SETTLEMENT_PROPOSE,
                   propose_body(ANCIENT, week(ids)))  # fmt: skip
        await refused(world, 0, "EXPIRED")
        assert world.members[0].fleet.settlement_view(ANCIENT)["state"] == "none"
        # weeks that do not exist, and the week now under way: never stored either
        good = propose_body(PERIOD, week(ids))
        for n, period in enumerate(("2026-00", "2026-54", "2026-41"), start=1):
            await send(world, Rogue(world.net, ids[3]), 0, MsgType.SETTLEMENT_PROPOSE,
                       good.model_copy(update={"period": period}))  # fmt: skip
            await refused(world, 0, "INVALID_PAYLOAD", n)
        assert world.members[0].fleet.settlement.summary()["periods"] == {}


async def test_a_plan_naming_a_stranger_is_refused(tmp_path) -> None:
    """A PROPOSE whose inputs name a node that never was a member (here: a receiver made up
    for the rogue's friend) is refused (NOT_MEMBER), so it cannot take the period's
    one proposal and the honest plan settles."""
    async with settling(tmp_path, 4) as world:
        ids = world.ids
        stranger = world.ids[4]  # a node of the simulated network, not in the hive
        forged = [*week(ids), MemberInput(stranger, 0, 0, 9_000_000, 9_000_000_000, 100)]
        await send(world, Rogue(world.net, ids[3]), 0, MsgType.SETTLEMENT_PROPOSE,
                   propose_body(PERIOD, forged))  # fmt: skip
        await refused(world, 0, "NOT_MEMBER")
        assert world.members[0].fleet.settlement_view(PERIOD)["state"] == "unproposed"
        world.due()
        await until_state(world, "executed")


async def test_votes_repeated_or_from_outside_the_plan_count_once(tmp_path) -> None:
    """One member's agreeing READY sent five times under five ids, and READYs from a node
    outside the hive, make no majority: the period stays proposed and nothing is paid."""
    async with settling(tmp_path, 4) as world:
        ids, net = world.ids, world.net
        for i in (1, 2, 3):  # only A would agree
            world.ledgers[i].disputed[PERIOD] = [{"node": ids[0]}]  # type: ignore[union-attr]
        world.due()
        views = await until_state(world, "proposed")
        before = {n: balances(net, n) for n in ids}
        yes = SettlementReady(period=PERIOD, plan_hash=views[0]["plan_hash"], agree=True)
        b = Rogue(net, ids[1])
        for _ in range(5):
            await send(world, b, 2, MsgType.SETTLEMENT_READY, yes)
        stranger = Rogue(net, ids[4])
        await send(world, stranger, 2, MsgType.SETTLEMENT_READY, yes)
        await anyio.sleep(0.5)
        v = world.members[2].fleet.settlement_view(PERIOD)
        assert v["state"] == "proposed" and v["majority"]["agreeing"] == 2
        assert {n: balances(net, n) for n in ids} == before


async def test_an_invoice_swapped_while_the_payer_checks_it_is_never_paid(tmp_path) -> None:
    """D (owed 2,944 sat by C) floods C for 4 s with another real invoice of its node, for
    50,000 sat, while C asks for, checks and pays its assignment: the big one is refused at
    each check (counted `bad_invoice`) and never paid; once the flood stops C pays the plan's
    invoice, and D gets exactly 2,944 sat.  (A receiver can delay its own payment so, no
    other member's.)"""
    async with settling(tmp_path, 4) as world:
        ids, net = world.ids, world.net
        plan = compute_plan(PERIOD, week(ids))
        d = Rogue(net, ids[3])
        big = await d.backend.invoice(50_000_000, "not-the-plan")
        swap = SettlementInvoice(period=PERIOD, plan_hash=plan.plan_hash, bolt11=big.bolt11,
                                 payment_hash=big.payment_hash)  # fmt: skip
        before = {n: balances(net, n) for n in ids}
        done = anyio.Event()

        async def flood() -> None:
            with anyio.move_on_after(4):
                while not done.is_set():
                    await send(world, d, 2, MsgType.SETTLEMENT_INVOICE, swap)
                    await anyio.sleep(0.003)

        async with anyio.create_task_group() as tg:
            tg.start_soon(flood)
            world.due()
            try:
                await until_state(world, "executed", [2], limit_s=20)
            finally:
                done.set()
        assert world.members[2].fleet.settlement.counts.get("bad_invoice", 0) > 0
        got = balances(net, ids[3]) - before[ids[3]]
        assert got == 2_944_000, got
        assert not net.node(ids[3]).invoices[big.payment_hash][2]  # (never paid)


async def test_a_member_front_running_with_its_own_plan_does_not_block_the_week(
    tmp_path,
) -> None:
    """D proposes a self-consistent plan of its own making (its forwards ×10) before the first
    in rank: nobody agrees to it, so it gives way when the honest plan is proposed — the week
    is executed, not blocked (only a proposal no majority agreed to gives way, and only to the
    plan a member's own inputs give)."""
    async with settling(tmp_path, 4) as world:
        ids = world.ids
        inflated = inflated_week(ids, ids[3])
        for i in range(3):  # D, before the grace is over
            await send(world, Rogue(world.net, ids[3]), i, MsgType.SETTLEMENT_PROPOSE,
                       propose_body(PERIOD, inflated))  # fmt: skip
        await until_state(world, "proposed", [0, 1, 2])
        world.due(4)  # every fallback proposer's turn has come
        views = await until_state(world, "executed", limit_s=6)
        honest, rogue = compute_plan(PERIOD, week(ids)), compute_plan(PERIOD, inflated)
        assert {v["plan_hash"] for v in views} == {honest.plan_hash} != {rogue.plan_hash}


async def test_an_invoice_request_flood_makes_one_invoice(tmp_path) -> None:
    """A (B's payer) asks B for its invoice 200 times under 200 ids once the week is paid:
    B's node holds one settlement invoice for A, ever (answers: at most one per request)."""
    async with settling(tmp_path, 4) as world:
        ids, net = world.ids, world.net
        world.due()
        views = await until_state(world, "executed")
        ask = SettlementInvoiceRequest(period=PERIOD, plan_hash=views[0]["plan_hash"],
                                       receiver=ids[1], amount_sat=5_299)  # fmt: skip
        b = world.members[1].fleet
        sent = b.store.conn.execute("SELECT count(*) FROM fleet_outbox").fetchone()[0]
        a = Rogue(net, ids[0])
        for _ in range(200):
            await send(world, a, 1, MsgType.SETTLEMENT_INVOICE_REQUEST, ask)
        await anyio.sleep(1)
        settle = [k for k in net.node(ids[1]).labels if k.startswith("hive-settle:")]
        assert settle == [f"hive-settle:{PERIOD}:{ids[0]}"]
        answers = b.store.conn.execute("SELECT count(*) FROM fleet_outbox").fetchone()[0] - sent
        assert answers <= 200  # (one answer per request at most: no amplification; not
        # rate limited either — the kernel's per-peer limits are what bound a flood)
