"""Demo act: the marketplace.  Two advisors and a liquidity provider publish NIP-99 listings;
an operator browses and ranks them, runs a short trial under a contract both sides sign, and a
reputation credential changes the ranking."""

from __future__ import annotations

import secrets
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import nostr_sdk as sdk

from agent import app
from agent.clock import Clock
from agent.demo.common import until
from agent.demo.narrator import Say
from agent.market.ranking import Need
from agent.settings import RelaysConfig, Settings
from agent.store import market as repo
from events import contract, listing, reputation
from events.listing import Frequency, Listing, PricingModel, ServiceType, Trial

DAY = 86400


def offers(now: int) -> dict[str, Listing]:
    common = {"published_at": now, "expires_at": now + 30 * DAY, "frequency": Frequency.MONTH}
    return {
        "adam": Listing(
            listing_id="adam-fees",
            service=ServiceType.ADVISOR,
            title="Adam's fee desk",
            summary="Daily fee tuning for routing nodes",
            price_sat=20_000,
            pricing_model=PricingModel.SUBSCRIPTION,
            primary="fee-policy",
            secondary=["monitor"],
            schemas=["hive:fee-policy/v1", "hive:monitor/v1"],
            trial=Trial(days=7, price_sat=1000),
            description="## What you get\n\n- fee changes within your limits\n- a weekly report",
            **common,
        ),
        "bea": Listing(
            listing_id="bea-flow",
            service=ServiceType.ADVISOR,
            title="Bea's liquidity flow",
            summary="Rebalancing first, fees second",
            price_sat=15_000,
            pricing_model=PricingModel.SUBSCRIPTION,
            primary="rebalance",
            secondary=["fee-policy"],
            schemas=["hive:rebalance/v1", "hive:fee-policy/v1"],
            trial=Trial(days=7, price_sat=800),
            **common,
        ),
        "lio": Listing(
            listing_id="lio-lease",
            service=ServiceType.LIQUIDITY,
            title="Lio's inbound leases",
            summary="5M sat inbound for 30 days",
            price_sat=3_600,
            pricing_model=PricingModel.SAT_HOURS,
            primary="lease",
            capacity_sat=5_000_000,
            duration_days=30,
            **{**common, "frequency": Frequency.HOUR},
        ),
    }


async def market_act(say: Say, relay_url: str, clock: Clock) -> dict[str, Any]:
    """Run the act against `relay_url`; `say` prints one line."""
    now = clock.now()
    names = ("olivia", "adam", "bea", "lio")
    keys = {n: sdk.Keys.generate() for n in names}
    config = RelaysConfig.single(relay_url)
    with tempfile.TemporaryDirectory(prefix="hive-market-") as tmp:
        async with AsyncExitStack() as stack:
            m = {}
            for n in names:
                built = app.standalone(Settings(home=Path(tmp) / n), keys[n], config, clock=clock)
                await stack.enter_async_context(built.agent)
                m[n] = built.market
            for n, item in offers(now).items():
                await m[n].publish(item)
                price = f"{item.price_sat:,} sat/{item.frequency.value}"
                say(f"{n.title()} publishes '{item.title}' (kind 30402, {price})")

            need = Need(service=ServiceType.ADVISOR, primary="fee-policy", budget_sat=20_000)
            ranked = await m["olivia"].browse(need)
            say("Olivia browses advisors for fee-policy with a 20,000 sat budget:")
            for i, r in enumerate(ranked, 1):
                say(f"  {i}. {r.found.listing.title:<24} {r.breakdown.explain()}")
            before = [r.found.listing.listing_id for r in ranked]

            top = ranked[0]
            terms = contract.ContractTerms(
                service=ServiceType.ADVISOR,
                client=listing.did(m["olivia"].me),
                provider=listing.did(top.found.author),
                listing=top.found.address,
                schemas=top.found.listing.schemas,
                price_sat=top.found.listing.price_sat,
                pricing_model=top.found.listing.pricing_model,
                frequency=top.found.listing.frequency,
                starts_at=now,
                duration_days=30,
                trial=top.found.listing.trial,
                heartbeat_interval_s=600,
                nonce=secrets.token_hex(32),
            )
            await m["olivia"].offer(terms)
            provider = next(n for n in names if m[n].me == top.found.author)
            await until(lambda: bool(repo.offers(m[provider].agent.store, "open")), 10)
            signed = await m[provider].accept(terms.hash)
            await until(lambda: bool(repo.contracts(m["olivia"].agent.store)), 10)
            contract.verify(repo.contracts(m["olivia"].agent.store)[0]["contract"])
            say(
                f"Olivia offers a {terms.trial.days}-day trial at {terms.trial.price_sat:,} sat to "
                f"{provider.title()}; both sign: contract {signed.id[:16]}…, both signatures verify"
            )
            await m[provider].beat(signed.id, 0)
            await until(
                lambda: repo.last_heartbeat(m["olivia"].agent.store, signed.id) is not None, 10
            )
            say(f"{provider.title()}'s heartbeat (kind 36382) reaches Olivia")

            issuer = next(n for n in ("lio", "adam") if n != provider)
            cred = reputation.ReputationCredential(
                issuer=listing.did(m[issuer].me),
                validFrom=reputation.iso(now),
                credentialSubject=reputation.Subject(
                    id=listing.did(m["bea"].me),
                    domain=reputation.Domain.ADVISOR,
                    period=reputation.Period(
                        start=reputation.iso(now - 60 * DAY), end=reputation.iso(now)
                    ),
                    metrics={
                        "revenue_delta_pct": 35,
                        "actions_taken": 140,
                        "uptime_pct": 99.8,
                        "channels_managed": 45,
                    },
                    outcome=reputation.Outcome.RENEW,
                ),
            )
            await m[issuer].issue_credential(cred)
            value = reputation.score(cred.credentialSubject)
            say(
                f"{issuer.title()} issues Bea a reputation credential (kind 36383): "
                f"score {value:.1f}, tier {reputation.tier(value)}"
            )
            after = await m["olivia"].browse(need)
            for i, r in enumerate(after, 1):
                say(f"  {i}. {r.found.listing.title:<24} {r.breakdown.explain()}")
            order = [r.found.listing.listing_id for r in after]
            say(f"ranking before: {before}; after: {order}")
            return {"before": before, "after": order, "contract": signed.id, "trial_with": provider}
