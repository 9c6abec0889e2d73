"""Attacks on the weekly settlement's invoices (issue 18), on the simulator with real members: a
receiver gone rogue answers its payer with SETTLEMENT_INVOICE bodies the honest code never
sends, or never answers at all, and the test checks the real effect — the payments made (the
simulator's balances), the state each member holds, what is sent."""

from __future__ import annotations

import secrets
from dataclasses import replace

import anyio
import pytest

from agent.fleet.facts import SETTLEMENT_KEEP_S
from agent.fleet.settlement_pay import label
from events.fleet import MsgType
from events.fleet.settlement import SettlementInvoice
from tests.fleet_world import Rogue
from tests.settle_world import PERIOD, SETTLE, balances, plan_for, settling, until_state
from tests.test_settlement_attacks_more import send

pytestmark = pytest.mark.anyio


async def test_an_invoice_whose_hash_is_not_its_bolt11s_is_not_paid(tmp_path) -> None:
    """D (owed 2,944 sat by C) is offline but for a rogue that answers C with D's real invoice
    for exactly the assignment, under the settlement's label, and a `payment_hash` that is not
    the invoice's.  Paid, C could neither look the payment up by that hash after a crash nor
    report it (its own check of the preimage refused its SETTLEMENT_EXECUTED on every pass,
    and the week stayed unexecuted everywhere).  C checks the hash its node decodes: the lie
    is refused (`bad_invoice`) and not paid; the truthful answer is paid once, and the week is
    executed on every member online."""
    async with settling(tmp_path, 4) as world:
        ids, net = world.ids, world.net
        plan = plan_for(ids)
        assert [(t.payer, t.receiver, t.amount_sat) for t in plan.owed_by(ids[2])] == [
            (ids[2], ids[3], 2_944)
        ]
        await world.members[3].stop()  # (A, B and C make the majority)
        net.connect(ids[3], ids[2])  # the rogue's way to C
        d = Rogue(net, ids[3])
        real = await d.backend.invoice(2_944_000, label(PERIOD, ids[2]))
        truth = SettlementInvoice(period=PERIOD, plan_hash=plan.plan_hash, bolt11=real.bolt11,
                                  payment_hash=real.payment_hash)  # fmt: skip
        lie = truth.model_copy(update={"payment_hash": secrets.token_hex(32)})
        before = {n: balances(net, n) for n in ids}
        world.due()
        c = world.members[2].fleet
        with anyio.fail_after(10):  # C has its assignment to pay: the rogue answers
            while not c.settlement_view(PERIOD).get("my_payments"):
                await anyio.sleep(0.02)
        await send(world, d, 2, MsgType.SETTLEMENT_INVOICE, lie)
        with anyio.fail_after(10):
            while (
                not c.settlement.counts.get("bad_invoice")
                and not net.node(ids[3]).invoices[real.payment_hash][2]
            ):
                await anyio.sleep(0.02)
        assert not net.node(ids[3]).invoices[real.payment_hash][2]  # (the lie: not paid)
        await send(world, d, 2, MsgType.SETTLEMENT_INVOICE, truth)
        views = await until_state(world, "executed", [0, 1, 2])
        paid = views[0]["executed"][ids[2]]
        assert [(p["receiver"], p["payment_hash"]) for p in paid] == [(ids[3], real.payment_hash)]
        assert balances(net, ids[3]) - before[ids[3]] == 2_944_000  # (once)


async def test_a_week_a_payer_never_pays_is_not_sent_again_once_it_is_no_longer_kept(
    tmp_path,
) -> None:
    """D (owed by C) never answers for its invoice, so the week stays `agreed` for good: its
    READYs and PROPOSE were signed and sent to every member again every rebroadcast, for
    ever — after five weeks every receiver refuses them (EXPIRED: nothing of the week is kept
    there).  Once the week is past what the settlement keeps, nothing is sent for it."""
    config = replace(SETTLE, settlement_rebroadcast_s=1)
    async with settling(tmp_path, 4, config=config) as world:
        clock = world.clock
        assert clock is not None
        await world.members[3].stop()  # (D: A, B and C make the majority)
        world.due()
        await until_state(world, "agreed", [0, 1, 2])
        clock.advance(SETTLEMENT_KEEP_S + 86_400)
        for m in world.members[:3]:
            m.fleet.kernel.wake()
        await anyio.sleep(1.5)  # (a rebroadcast falling due meanwhile was the last one)
        sent = [dict(m.fleet.settlement.counts) for m in world.members[:3]]
        await anyio.sleep(3)  # three rebroadcast intervals
        assert [dict(m.fleet.settlement.counts) for m in world.members[:3]] == sent
        for m in world.members[:3]:  # (and none refused as EXPIRED: it is in the counts)
            assert m.fleet.settlement_view(PERIOD)["state"] == "agreed"
