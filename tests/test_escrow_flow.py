"""Escrow tickets end to end: operator's node agent, advisor, real relay, real Nutshell mint.

One test per ticket type; a refused command keeps its preimage and is refunded after the
locktime."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from agent.store import escrow as erepo
from events.escrow import Metric, TicketType
from events.receipt import Status
from tests.advisory_world import World, funded, parts, until, world

pytestmark = pytest.mark.anyio
FEE = "hive:fee-policy/v1"


async def fee(w: World, ppm: int, ticket: str | None) -> Any:
    scid = (await w.channels())[0].short_channel_id
    _, got = await w.advisor.advise(
        w.node.me, FEE, "set_single", {"channel": scid, "fee_ppm": ppm}, ticket=ticket
    )
    assert got is not None
    return got


def advisor_balance(w: World) -> int:
    assert w.advisor_escrow is not None
    return sum(w.advisor_escrow.balances().values())


async def test_single_ticket_pays_for_a_completed_command(
    tmp_path: Path, relay_url: str, mint_url: str
) -> None:
    async with world(tmp_path, relay_url, mint=mint_url) as w:
        ticket, _ = await funded(w, TicketType.SINGLE, amount_sat=50)
        assert parts(w, ticket.ticket_id, "payee") == ["locked"]
        done = await fee(w, 110, ticket.ticket_id)
        assert done.status == Status.OK and done.preimage is not None
        await until(lambda: parts(w, ticket.ticket_id, "payee") == ["redeemed"])
        assert advisor_balance(w) == 50
        assert parts(w, ticket.ticket_id, "funder") == ["released"]
        status = await w.advisor_escrow.status(ticket.ticket_id)
        assert status["parts"][0]["states"] == ["spent"]
        assert status["parts"][0]["preimage_revealed"] == done.preimage
        # the ticket is used up: another command naming it is refused before it runs
        again = await fee(w, 100, ticket.ticket_id)
        assert again.error is not None and again.error.code == "RESTRICTED"
        assert again.preimage is None


async def test_a_refused_command_reveals_nothing_and_is_refunded(
    tmp_path: Path, relay_url: str, mint_url: str
) -> None:
    async with world(tmp_path, relay_url, mint=mint_url) as w:
        ticket, _ = await funded(w, TicketType.SINGLE, amount_sat=40, locktime_s=3)
        assert w.node_escrow is not None
        before = sum(w.node_escrow.balances().values())
        refused = await fee(w, 900, ticket.ticket_id)  # a 800 % jump: refused by policy
        assert refused.error is not None and refused.error.code == "RESTRICTED"
        assert refused.preimage is None
        lock = ticket.parts[0].lock_hash
        assert erepo.secret_state(w.node.agent.store, lock) == "held"
        assert parts(w, ticket.ticket_id, "payee") == ["locked"]
        await until(lambda: parts(w, ticket.ticket_id, "funder") == ["refunded"], timeout=15)
        assert sum(w.node_escrow.balances().values()) == before + 40
        assert advisor_balance(w) == 0


async def test_batch_ticket_pays_after_the_last_command(
    tmp_path: Path, relay_url: str, mint_url: str
) -> None:
    async with world(tmp_path, relay_url, mint=mint_url) as w:
        ticket, _ = await funded(w, TicketType.BATCH, amount_sat=90, commands=3)
        first = await fee(w, 105, ticket.ticket_id)
        second = await fee(w, 110, ticket.ticket_id)
        assert first.preimage is None and second.preimage is None
        third = await fee(w, 115, ticket.ticket_id)
        assert third.preimage is not None
        await until(lambda: parts(w, ticket.ticket_id, "payee") == ["redeemed"])
        assert advisor_balance(w) == 90


async def test_milestone_ticket_pays_each_milestone(
    tmp_path: Path, relay_url: str, mint_url: str
) -> None:
    async with world(tmp_path, relay_url, mint=mint_url) as w:
        ticket, _ = await funded(w, TicketType.MILESTONE, amount_sat=90, milestones=[1, 2, 4])
        assert [p.amount_sat for p in ticket.parts] == [30, 30, 30]
        revealed = []
        for ppm in (105, 110, 115, 120):
            revealed.append((await fee(w, ppm, ticket.ticket_id)).preimage is not None)
        assert revealed == [True, True, False, True]
        await until(lambda: parts(w, ticket.ticket_id, "payee") == ["redeemed"] * 3)
        assert advisor_balance(w) == 90


async def test_a_performance_ticket_for_two_commands_answers_the_second(
    tmp_path: Path, relay_url: str, mint_url: str
) -> None:
    """Its base part pays on the first command; the second is still covered (the ticket's
    `commands`) and runs — before, looking for a part it would complete raised a ValueError
    (an INTERNAL receipt)."""
    async with world(tmp_path, relay_url, mint=mint_url) as w:
        scid = (await w.channels())[0].short_channel_id
        metric = Metric(channel=scid, target=1, window_s=60)
        ticket, _ = await funded(
            w, TicketType.PERFORMANCE, amount_sat=40, bonus_sat=20, metric=metric, commands=2
        )
        assert (await fee(w, 110, ticket.ticket_id)).preimage is not None  # the base part
        second = await fee(w, 120, ticket.ticket_id)
        assert second.status == "ok" and second.error is None and second.preimage is None


@pytest.mark.parametrize("met", [True, False], ids=["target met", "target missed"])
async def test_performance_ticket_bonus_depends_on_forwards(
    tmp_path: Path, relay_url: str, mint_url: str, met: bool
) -> None:
    async with world(tmp_path, relay_url, mint=mint_url) as w:
        scid = (await w.channels())[0].short_channel_id
        metric = Metric(channel=scid, target=1, window_s=3)
        ticket, _ = await funded(
            w,
            TicketType.PERFORMANCE,
            amount_sat=40,
            bonus_sat=20,
            metric=metric,
            locktime_s=2,
        )
        done = await fee(w, 110, ticket.ticket_id)
        assert done.preimage is not None  # the base part
        if met:  # payments routed through the node earn fees on the channel in the window
            from agent.node.simnode import SimBackend

            payer = SimBackend(w.net, w.ids[1])
            for _ in range(3):
                invoice = w.net.invoice(w.ids[4], 200_000_000, f"through {time.time()}")
                await payer.pay(invoice.bolt11)
        final = ["redeemed", "redeemed"] if met else ["redeemed", "locked"]
        await until(lambda: parts(w, ticket.ticket_id, "payee") == final, timeout=20)
        funder = ["released", "released"] if met else ["released", "refunded"]
        await until(lambda: parts(w, ticket.ticket_id, "funder") == funder, timeout=20)
        assert advisor_balance(w) == (60 if met else 40)
