"""Attacks on the weekly settlement (issue 18 §4): a member gone rogue signs, with its own
bound key, frames the honest code never sends — each is refused with its code (counted),
and nothing is paid or issued because of it (the simulator's balances and invoices)."""

from __future__ import annotations

import hashlib
import secrets

import anyio
import pytest

from agent.fleet.settlement import input_body
from agent.fleet.settlement_rules import MemberInput, compute_plan
from events.fleet import MsgType
from events.fleet.settlement import (
    PaidBody,
    SettlementExecuted,
    SettlementInvoiceRequest,
    SettlementPropose,
    SettlementReady,
    TransferBody,
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

pytestmark = pytest.mark.anyio
EARLIER = "2026-39"  # an ended week nobody proposed


def propose_body(period: str, inputs: list[MemberInput], plan_hash: str | None = None):
    plan = compute_plan(period, inputs)
    return SettlementPropose(
        period=period, plan_hash=plan_hash or plan.plan_hash, data_hash=plan.data_hash,
        total_sat=plan.total_sat, member_count=len(plan.members),
        inputs=[input_body(m) for m in plan.members],
        payments=[TransferBody(payer=t.payer, receiver=t.receiver, amount_sat=t.amount_sat)
                  for t in plan.payments],
    )  # fmt: skip


async def refused(world: SettleWorld, target: int, code: str, times: int = 1) -> None:
    counts = world.members[target].fleet.settlement.counts
    with anyio.fail_after(10):
        while counts.get(f"refused:{code}", 0) < times:
            await anyio.sleep(0.02)


async def test_every_forged_settlement_frame_is_refused_and_nothing_moves(tmp_path) -> None:
    async with settling(tmp_path, 4) as world:
        ids, net = world.ids, world.net
        assert world.clock is not None
        world.due()
        views = await until_state(world, "executed")
        plan_hash = views[0]["plan_hash"]
        hive = world.members[0].fleet.status()["hive_id"]
        rogue = Rogue(net, ids[3])  # D: a member, signing with its own bound key
        payer = Rogue(net, ids[2])  # C: D's payer in the plan, gone rogue too
        before = {n: balances(net, n) for n in ids}
        labels = {n: dict(net.node(n).labels) for n in ids}
        total = net.total_msat()

        async def send(who: Rogue, to: int, t: MsgType, body) -> None:
            await who.send(ids[to], who.frame(t, body, hive=hive, ts=world.clock.now()))

        # a proposal whose hash is not what its own inputs give
        bad = propose_body(EARLIER, week(ids[:4]), plan_hash="ab" * 32)
        await send(rogue, 0, MsgType.SETTLEMENT_PROPOSE, bad)
        await refused(world, 0, "SETTLEMENT_MISMATCH", 1)
        # a second, different (self-consistent) plan for a period that has one
        inflated = inflated_week(ids[:4], ids[3])
        await send(rogue, 0, MsgType.SETTLEMENT_PROPOSE, propose_body(PERIOD, inflated))
        await refused(world, 0, "SETTLEMENT_CONFLICT")
        # a READY for another period (naming this one's plan), and for an unknown plan
        await send(rogue, 0, MsgType.SETTLEMENT_READY,
                   SettlementReady(period=EARLIER, plan_hash=plan_hash, agree=True))  # fmt: skip
        await refused(world, 0, "SETTLEMENT_MISMATCH", 2)
        await send(rogue, 0, MsgType.SETTLEMENT_READY,
                   SettlementReady(period=PERIOD, plan_hash="cd" * 32, agree=True))  # fmt: skip
        await refused(world, 0, "SETTLEMENT_MISMATCH", 3)
        # an invoice asked for an assignment the plan does not make (D pays nobody)
        ask = SettlementInvoiceRequest(period=PERIOD, plan_hash=plan_hash, receiver=ids[1],
                                       amount_sat=5_000)  # fmt: skip
        await send(rogue, 1, MsgType.SETTLEMENT_INVOICE_REQUEST, ask)
        await refused(world, 1, "SETTLEMENT_MISMATCH", 1)
        # EXECUTED with a preimage that is not the hash's, and one whose hash is not the
        # invoice D issued
        fake = PaidBody(receiver=ids[3], amount_sat=2_944, payment_hash="ee" * 32,
                        preimage=secrets.token_hex(32))  # fmt: skip
        body = SettlementExecuted(period=PERIOD, plan_hash=plan_hash, payer=ids[2],
                                  payments=[fake])  # fmt: skip
        await send(payer, 3, MsgType.SETTLEMENT_EXECUTED, body)
        await refused(world, 3, "BAD_PREIMAGE", 1)
        pre = secrets.token_hex(32)
        other = fake.model_copy(
            update={"preimage": pre, "payment_hash": hashlib.sha256(bytes.fromhex(pre)).hexdigest()}
        )
        await send(
            payer, 3, MsgType.SETTLEMENT_EXECUTED, body.model_copy(update={"payments": [other]})
        )
        await refused(world, 3, "BAD_PREIMAGE", 2)

        await anyio.sleep(0.5)
        assert {n: balances(net, n) for n in ids} == before  # nothing paid
        assert {n: dict(net.node(n).labels) for n in ids} == labels  # no invoice issued
        assert net.total_msat() == total
        for m in world.members:  # the week's record is untouched everywhere
            v = m.fleet.settlement_view(PERIOD)
            assert v["state"] == "executed" and v["plan_hash"] == plan_hash
            assert m.fleet.settlement_view(EARLIER)["state"] in ("none", "unproposed")
        counted = world.members[0].fleet.status()["refused"]
        assert counted.get("SETTLEMENT_MISMATCH", 0) >= 3
        assert counted.get("SETTLEMENT_CONFLICT", 0) >= 1


async def test_an_invoice_is_not_issued_before_a_majority_agreed(tmp_path) -> None:
    """A payer asking for its invoice while the plan is only proposed is told to retry
    later (RESTRICTED); no invoice exists on the receiver's node."""
    async with settling(tmp_path, 4) as world:
        ids, net = world.ids, world.net
        for i in (1, 2, 3):  # only A would agree: no majority
            world.ledgers[i].disputed[PERIOD] = [{"node": ids[0]}]  # type: ignore[attr-defined]
        world.due()
        views = await until_state(world, "proposed")
        hive = world.members[0].fleet.status()["hive_id"]
        a = Rogue(net, ids[0])
        ask = SettlementInvoiceRequest(period=PERIOD, plan_hash=views[0]["plan_hash"],
                                       receiver=ids[1], amount_sat=5_299)  # fmt: skip
        await a.send(ids[1], a.frame(MsgType.SETTLEMENT_INVOICE_REQUEST, ask, hive=hive,
                                     ts=world.clock.now()))  # fmt: skip
        await refused(world, 1, "RESTRICTED")
        assert not [k for k in net.node(ids[1]).labels if k.startswith("hive-settle:")]
