"""The marketplace attacked, on a real relay with real agents and stores: a dishonest provider's
heartbeats, a stranger's future-dated listing, an operator re-listing what it withdrew, sybil
reputation and text that forges the lines of a view."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest

from agent.clock import ManualClock
from agent.market.service import Market
from agent.store import market as repo
from events import contract, heartbeat, listing
from events.listing import Frequency, PricingModel, ServiceType
from tests.test_market_flow import DAY, agent, eventually


async def signed_contract(client: Market, lsp: Market, now: int, **kw) -> contract.Contract:
    terms = contract.ContractTerms(
        **{
            "service": ServiceType.LIQUIDITY,
            "client": listing.did(client.me),
            "provider": listing.did(lsp.me),
            "price_sat": 3600,
            "pricing_model": PricingModel.SAT_HOURS,
            "frequency": Frequency.HOUR,
            "capacity_sat": 5_000_000,
            "starts_at": now,
            "duration_days": 30,
            "heartbeat_interval_s": 600,
            "nonce": secrets.token_hex(32),
            **kw,
        }
    )
    await client.offer(terms)
    await eventually(lambda: repo.offer(lsp.agent.store, terms.hash) is not None)
    signed = await lsp.accept(terms.hash)
    await eventually(lambda: len(repo.contracts(client.agent.store)) == 1)
    return signed


def errors(market: Market) -> dict[str, int]:
    return market.agent.store.error_counts()


# --- heartbeats -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_future_dated_heartbeat_cannot_keep_a_dead_lease_alive(
    tmp_path: Path, relay_url: str
) -> None:
    """A provider's one beat saying `sent_at` = ten years ahead made the client's lease look
    beaten until then: three missed intervals never ended it (the client kept paying)."""
    now = int(time.time())
    clock = ManualClock(now)
    async with (
        agent(tmp_path / "client", [relay_url], clock=clock) as client,
        agent(tmp_path / "lsp", [relay_url]) as lsp,
    ):
        signed = await signed_contract(client, lsp, now)
        forged = heartbeat.Heartbeat(contract=signed.id, seq=0, sent_at=now + 3650 * DAY,
                                     uptime_bp=10_000)  # fmt: skip
        await lsp.agent.publish(heartbeat.build(lsp.agent.keys, forged, created_at=now))
        await eventually(lambda: errors(client).get("FROM_FUTURE", 0) == 1)
        assert repo.last_heartbeat(client.agent.store, signed.id) is None
        clock.advance(3 * 600 + 1)
        assert client.check_heartbeats() == [(signed.id, "ended")]


@pytest.mark.anyio
async def test_a_burst_of_backdated_heartbeats_does_not_buy_uptime(
    tmp_path: Path, relay_url: str
) -> None:
    """Twenty beats sent at once, dated one interval apart over the past, counted as twenty
    intervals of uptime (availability 1.0 in ranking) for a provider that was never up."""
    now = int(time.time())
    clock = ManualClock(now)
    async with (
        agent(tmp_path / "client", [relay_url], clock=clock) as client,
        agent(tmp_path / "lsp", [relay_url]) as lsp,
    ):
        signed = await signed_contract(client, lsp, now, starts_at=now - 20 * 600)
        for seq in range(20):
            beat = heartbeat.Heartbeat(contract=signed.id, seq=seq, sent_at=now - seq * 600,
                                       uptime_bp=10_000)  # fmt: skip
            # each newer than the last (a relay keeps one per contract and refuses an older one)
            event = heartbeat.build(lsp.agent.keys, beat, created_at=now - 20 + seq)
            await lsp.agent.publish(event)
        await eventually(lambda: errors(client).get("RATE_LIMITED", 0) == 19)
        assert client.availability(lsp.me) == pytest.approx(1 / 20)
