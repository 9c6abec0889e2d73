"""`hive-agent rfp | contract …`: requests for proposals with sealed bids, and two-party
signed contracts, from the command line (text views: agent/cli/dealviews.py)."""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Callable
from typing import Any

from agent.cli import dealviews as view
from agent.cli.apps import AppFactory
from agent.cli.common import Bind, Emit
from agent.cli.ids import fetch_rfp, resolving
from agent.cli.market import Job, trial, validated, with_market
from agent.cli.types import address, id_prefix, integer, positive, pubkey, rfp_ref, sats
from agent.clock import SystemClock
from agent.market.service import Market
from agent.settings import Settings
from agent.store import market as repo
from events import bid, listing, rfp
from events.contract import ContractTerms
from events.errors import InvalidParams
from events.listing import Frequency, PricingModel, ServiceType


def answer(
    args: argparse.Namespace,
    settings: Settings,
    emit: Emit,
    make: AppFactory,
    job: Job,
    text: Callable[[dict[str, Any]], str],
) -> int:
    """`job` with the marketplace; its answer as JSON (--json) or as `text` shows it."""
    result = with_market(args, settings, make, job)
    emit(result, text(result))
    return 0


# --- rfp --------------------------------------------------------------------------------------


def cmd_rfp_post(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    now = SystemClock().now()
    item = validated(  # checked before connecting to anything
        lambda: rfp.Rfp(
            rfp_id=args.id,
            service=args.service,
            need=args.need,
            capabilities=args.capability or [],
            schemas=args.schema or [],
            max_price_sat=args.max_price,
            duration_days=args.duration_days,
            description=args.description or "",
            posted_at=now,
            bid_deadline=now + int(args.deadline_hours * 3600),
            award_by=now + int(max(args.award_hours, args.deadline_hours) * 3600),
        )
    )

    async def job(market: Market) -> dict[str, Any]:
        event = await market.post_rfp(item)
        return {"event_id": event.id, "address": rfp.address(market.me, item.rfp_id)}

    return answer(args, settings, emit, make, job, view.rfp_posted)


def cmd_rfp_list(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    async def job(market: Market) -> dict[str, Any]:
        return {"rfps": await market.list_rfps()}

    return answer(args, settings, emit, make, job, view.rfp_list)


def cmd_rfp_bids(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    async def job(market: Market) -> dict[str, Any]:
        return {"bids": repo.bids_received(market.agent.store, args.address)}

    return answer(args, settings, emit, make, job, view.rfp_bids)


def cmd_rfp_bid(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    async def job(market: Market) -> dict[str, Any]:
        terms = validated(
            lambda: bid.BidTerms(
                price_sat=args.price,
                pricing_model=args.pricing_model,
                duration_days=args.duration_days,
                sla_response_s=args.sla_seconds,
                trial=trial(args),
                note=args.note or "",
            )
        )
        args.address = await fetch_rfp(market, args.address)  # no earlier `rfp list` needed
        return {"commitment": await market.bid(args.address, terms), "rfp": args.address}

    return answer(args, settings, emit, make, job, view.rfp_bid)


def cmd_rfp_reveal(
    args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory
) -> int:
    async def job(market: Market) -> dict[str, Any]:
        item = await market.reveal(args.address)
        return {"revealed": args.address, "event_id": item.event_id}

    return answer(args, settings, emit, make, job, view.rfp_revealed)


# --- contract ---------------------------------------------------------------------------------


def _terms(args: argparse.Namespace, market: Market) -> ContractTerms:
    me, other = listing.did(market.me), listing.did(args.pubkey)
    client, provider = (me, other) if args.role == "client" else (other, me)
    return validated(
        lambda: ContractTerms(
            service=args.service,
            client=client,
            provider=provider,
            listing=args.listing,
            schemas=args.schema or [],
            price_sat=args.price,
            pricing_model=args.pricing_model,
            frequency=args.frequency,
            capacity_sat=args.capacity,
            starts_at=market.now,
            duration_days=args.duration_days,
            trial=trial(args),
            heartbeat_interval_s=args.heartbeat_seconds,
            nonce=secrets.token_hex(32),
        )
    )


def cmd_contract_offer(
    args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory
) -> int:
    async def job(market: Market) -> dict[str, Any]:
        offer = await market.offer(_terms(args, market))
        return {"terms_hash": offer.terms.hash, "offered_to": args.pubkey}

    return answer(args, settings, emit, make, job, view.contract_offered)


def cmd_contract_accept(
    args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory
) -> int:
    async def job(market: Market) -> dict[str, Any]:
        signed = await market.accept(args.terms_hash)
        return {"contract": signed.id, "terms": signed.terms.model_dump(mode="json")}

    return answer(args, settings, emit, make, job, view.contract_accepted)


def _contract_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.model_dump(mode="json") if k == "contract" else v) for k, v in row.items()}


def cmd_contract_list(
    args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory
) -> int:
    async def job(market: Market) -> dict[str, Any]:
        store = market.agent.store
        contracts = [_contract_row(row) for row in repo.contracts(store)]
        return {"contracts": contracts, "offers": repo.offers(store, "open")}

    return answer(args, settings, emit, make, job, view.contract_list)


def cmd_contract_show(
    args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory
) -> int:
    async def job(market: Market) -> dict[str, Any]:
        rows = [r for r in repo.contracts(market.agent.store) if r["id"] == args.id]
        if not rows:
            raise InvalidParams(f"no contract {args.id}")
        return _contract_row(rows[0])

    return answer(args, settings, emit, make, job, view.contract_one)


# --- parsers ----------------------------------------------------------------------------------


def register(sub: Any, relay_opt: argparse.ArgumentParser, bind: Bind) -> None:
    """`hive-agent rfp …` and `hive-agent contract …`."""
    rfps = sub.add_parser("rfp", help="requests for proposals and sealed bids").add_subparsers(
        required=True, metavar="ACTION"
    )
    post = rfps.add_parser("post", parents=[relay_opt], help="publish a request for proposals")
    _post_options(post)
    post.set_defaults(func=bind(cmd_rfp_post))
    rfps.add_parser("list", parents=[relay_opt], help="open RFPs").set_defaults(
        func=bind(cmd_rfp_list)
    )
    bids = rfps.add_parser("bids", parents=[relay_opt], help="bids received on our RFP")
    bids.add_argument("address", type=address, help="naddr1… or 36381:<pubkey>:<id>")
    bids.set_defaults(func=bind(cmd_rfp_bids))
    b = rfps.add_parser("bid", parents=[relay_opt], help="send a sealed bid")
    _bid_options(b)
    b.set_defaults(func=bind(cmd_rfp_bid))
    reveal = rfps.add_parser(
        "reveal", parents=[relay_opt], help="reveal our bid after the deadline"
    )
    reveal.add_argument("address", type=address, help="naddr1… or 36381:<pubkey>:<id>")
    reveal.set_defaults(func=bind(cmd_rfp_reveal))
    _register_contract(sub, relay_opt, bind)


def _post_options(post: argparse.ArgumentParser) -> None:
    post.add_argument("--id", required=True)
    post.add_argument("--service", choices=[s.value for s in ServiceType], required=True)
    post.add_argument("--need", required=True)
    post.add_argument("--capability", action="append")
    post.add_argument("--schema", action="append")
    post.add_argument("--max-price", type=sats, required=True, help="sat, e.g. 300k")
    post.add_argument("--duration-days", type=integer, default=30)
    post.add_argument("--deadline-hours", type=positive, default=72)
    post.add_argument("--award-hours", type=positive, default=168)
    post.add_argument("--description")


def _bid_options(b: argparse.ArgumentParser) -> None:
    b.add_argument("address", type=rfp_ref, help="naddr1…, 36381:<pubkey>:<id>, or the id")
    b.add_argument("--price", type=sats, required=True, help="sat, e.g. 300k")
    b.add_argument("--pricing-model", choices=[m.value for m in PricingModel], required=True)
    b.add_argument("--duration-days", type=integer, default=30)
    b.add_argument("--sla-seconds", type=integer, default=3600)
    b.add_argument("--trial-days", type=integer)
    b.add_argument("--trial-price", type=sats)
    b.add_argument("--note")


def _register_contract(sub: Any, relay_opt: argparse.ArgumentParser, bind: Bind) -> None:
    contracts = sub.add_parser("contract", help="two-party signed contracts").add_subparsers(
        required=True, metavar="ACTION"
    )
    o = contracts.add_parser("offer", parents=[relay_opt], help="offer a contract to PUBKEY")
    o.add_argument("pubkey", type=pubkey, help="hex, npub1… or nprofile1…")
    o.add_argument("--role", choices=["client", "provider"], required=True, help="our role")
    o.add_argument("--service", choices=[s.value for s in ServiceType], required=True)
    o.add_argument("--price", type=sats, required=True, help="sat, e.g. 300k")
    o.add_argument("--pricing-model", choices=[m.value for m in PricingModel], required=True)
    o.add_argument("--frequency", choices=[f.value for f in Frequency], default="month")
    o.add_argument("--duration-days", type=integer, default=30)
    o.add_argument("--schema", action="append")
    o.add_argument("--capacity", type=sats)
    o.add_argument("--listing", type=address, help="naddr1… or 30402:<pubkey>:<id>")
    o.add_argument("--trial-days", type=integer)
    o.add_argument("--trial-price", type=sats)
    o.add_argument("--heartbeat-seconds", type=integer, default=3600)
    o.set_defaults(func=bind(cmd_contract_offer))
    accept = contracts.add_parser("accept", parents=[relay_opt], help="countersign an offer")
    accept.add_argument("terms_hash", type=id_prefix, help="terms hash or unique prefix")
    accept.set_defaults(func=bind(resolving("terms_hash", "offer", cmd_contract_accept)))
    listed = contracts.add_parser("list", parents=[relay_opt], help="contracts and open offers")
    listed.set_defaults(func=bind(cmd_contract_list))
    show = contracts.add_parser("show", parents=[relay_opt], help="one contract")
    show.add_argument("id", type=id_prefix, help="contract id or unique prefix")
    show.set_defaults(func=bind(resolving("id", "contract", cmd_contract_show)))
