"""`hive-agent market|rfp|contract|rep …`: the marketplace from the command line."""

from __future__ import annotations

import argparse
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from pydantic import ValidationError

from agent.cli.apps import AppFactory
from agent.cli.types import days, integer, positive, pubkey
from agent.clock import SystemClock
from agent.config_files import parse_user_json, read_user_file
from agent.keys import load_key_file
from agent.market.ranking import Need
from agent.market.service import Market
from agent.settings import Settings
from agent.store import Store
from agent.store import market as repo
from events import bid, listing, reputation, rfp
from events.base import parse_event
from events.contract import ContractTerms
from events.errors import InvalidParams, NotFound
from events.listing import Frequency, Listing, PricingModel, ServiceType, Trial
from events.types import first_error

Emit = Callable[[dict[str, Any], str], None]
DAY = 86400


def _validated(build: Callable[[], Any]) -> Any:
    try:
        return build()
    except ValidationError as exc:
        raise InvalidParams(first_error(exc, "input")) from None


def _with_market(
    args: argparse.Namespace,
    settings: Settings,
    make: AppFactory,
    job: Callable[[Market], Awaitable[Any]],
) -> Any:
    async def run() -> Any:
        app = make(args, settings)
        async with app.agent:
            return await job(app.market)

    return anyio.run(run, backend="asyncio")


def _trial(args: argparse.Namespace) -> Trial | None:
    if args.trial_days is None:
        return None
    return _validated(lambda: Trial(days=args.trial_days, price_sat=args.trial_price or 500))


# --- market ---------------------------------------------------------------------------------


def _listing_from(args: argparse.Namespace, now: int, base: Listing | None = None) -> Listing:
    fields: dict[str, Any] = dict(base.model_dump()) if base else {"published_at": now}
    given = {
        "listing_id": args.id,
        "service": args.service,
        "title": args.title,
        "summary": args.summary,
        "description": args.description,
        "price_sat": args.price,
        "frequency": args.frequency,
        "pricing_model": args.pricing_model,
        "primary": args.primary,
        "secondary": args.secondary,
        "schemas": args.schema,
        "sla_response_s": args.sla_seconds,
        "mints": args.mint,
        "capacity_sat": args.capacity,
        "duration_days": args.duration_days,
    }
    fields.update({k: v for k, v in given.items() if v is not None})
    if args.trial_days is not None:
        fields["trial"] = _trial(args)
    fields["published_at"] = now
    fields["expires_at"] = now + (args.days or 30) * DAY
    return _validated(lambda: Listing(**fields))


def cmd_market(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    action = args.market_command
    if getattr(args, "description_file", None):
        args.description = read_user_file(args.description_file, "--description-file")

    # everything the user typed is checked before connecting to anything
    item: Listing | None = None
    if action == "publish":
        item = _listing_from(args, SystemClock().now())
    elif action == "update":
        base = repo.my_listings(Store(settings.store_file)).get(args.id)
        if base is None:
            raise NotFound(f"no listing {args.id!r} of ours")
        item = _listing_from(args, SystemClock().now(), base=base)
    need = None
    if action in ("browse", "show"):
        need = _validated(
            lambda: Need(
                service=ServiceType(args.service) if args.service else None,
                primary=args.need,
                capabilities=tuple(args.capability or ()),
                schema=args.schema_filter,
                max_price_sat=args.max_price,
                mint=args.mint_filter,
                budget_sat=args.budget,
            )
        )

    async def job(market: Market) -> dict[str, Any]:
        if item is not None:
            event = await market.publish(item)
            return {"event_id": event.id, "address": listing.coordinate(market.me, item.listing_id)}
        if action == "withdraw":
            return {"event_id": (await market.withdraw(args.id)).id, "withdrawn": args.id}
        if action == "refresh":
            return {"refreshed": await market.refresh()}
        assert need is not None
        ranked = await market.browse(need)
        rows = [_row(r) for r in ranked]
        if action == "show":
            rows = [r for r in rows if args.which in (r["address"], r["listing_id"])]
            if not rows:
                raise InvalidParams(f"no current listing {args.which!r} matches")
        return {"listings": rows, "skipped": dict(market.errors)}

    result = _with_market(args, settings, make, job)
    emit(result, _market_text(action, result, getattr(args, "explain", False)))
    return 0


def _row(r: Any) -> dict[str, Any]:
    item = r.found.listing
    return {
        "address": r.found.address,
        "listing_id": item.listing_id,
        "provider": r.found.author,
        "title": item.title,
        "service": item.service.value,
        "price_sat": item.price_sat,
        "frequency": item.frequency.value,
        "pricing_model": item.pricing_model.value,
        "capabilities": item.capabilities,
        "schemas": item.schemas,
        "mints": item.mints,
        "trial": item.trial.model_dump() if item.trial else None,
        "score": round(r.breakdown.total, 4),
        "reputation": {"score": round(r.reputation.score, 2), "tier": r.reputation.tier},
        "breakdown": {
            k: round(getattr(r.breakdown, k), 4)
            for k in (
                "reputation",
                "capability",
                "specialisation",
                "price",
                "availability",
                "freshness",
            )
        },
        "explain": r.breakdown.explain(),
    }


def _market_text(action: str, result: dict[str, Any], explain: bool) -> str:
    if "listings" not in result:
        return " ".join(f"{k}: {v}" for k, v in result.items())
    lines = [f"{'#':>2}  {'score':>5}  {'price':>12}  {'rep':>9}  title (provider)"]
    for i, row in enumerate(result["listings"], 1):
        price = f"{row['price_sat']:,}/{row['frequency']}"
        rep = f"{row['reputation']['score']:.0f} {row['reputation']['tier'][:4]}"
        who = f"{row['title']} ({row['provider'][:12]}…)"
        lines.append(f"{i:>2}  {row['score']:.3f}  {price:>12}  {rep:>9}  {who}")
        if explain or action == "show":
            lines.append(f"      {row['explain']}")
    if result["skipped"]:
        lines.append(f"skipped invalid events: {result['skipped']}")
    return "\n".join(lines) if result["listings"] else "no listings match"


# --- rfp --------------------------------------------------------------------------------------


def cmd_rfp(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    action = args.rfp_command

    async def job(market: Market) -> dict[str, Any]:
        now = market.now
        if action == "post":
            item = _validated(
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
            event = await market.post_rfp(item)
            return {"event_id": event.id, "address": rfp.address(market.me, item.rfp_id)}
        if action == "list":
            return {"rfps": await market.list_rfps()}
        if action == "bids":
            return {"bids": repo.bids_received(market.agent.store, args.address)}
        if action == "bid":
            terms = _validated(
                lambda: bid.BidTerms(
                    price_sat=args.price,
                    pricing_model=args.pricing_model,
                    duration_days=args.duration_days,
                    sla_response_s=args.sla_seconds,
                    trial=_trial(args),
                    note=args.note or "",
                )
            )
            return {"commitment": await market.bid(args.address, terms), "rfp": args.address}
        item = await market.reveal(args.address)
        return {"revealed": args.address, "event_id": item.event_id}

    result = _with_market(args, settings, make, job)
    emit(result, json.dumps(result, indent=2))
    return 0


# --- contract ---------------------------------------------------------------------------------


def cmd_contract(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    action = args.contract_command

    async def job(market: Market) -> dict[str, Any]:
        if action == "offer":
            me, other = listing.did(market.me), listing.did(args.pubkey)
            client, provider = (me, other) if args.role == "client" else (other, me)
            terms = _validated(
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
                    trial=_trial(args),
                    heartbeat_interval_s=args.heartbeat_seconds,
                    nonce=secrets.token_hex(32),
                )
            )
            offer = await market.offer(terms)
            return {"terms_hash": offer.terms.hash, "offered_to": args.pubkey}
        if action == "accept":
            signed = await market.accept(args.terms_hash)
            return {"contract": signed.id, "terms": signed.terms.model_dump(mode="json")}
        if action == "list":
            store = market.agent.store
            contracts = [
                {k: (v.model_dump(mode="json") if k == "contract" else v) for k, v in row.items()}
                for row in repo.contracts(store)
            ]
            return {"contracts": contracts, "offers": repo.offers(store, "open")}
        rows = [r for r in repo.contracts(market.agent.store) if r["id"] == args.id]
        if not rows:
            raise InvalidParams(f"no contract {args.id}")
        return {
            k: (v.model_dump(mode="json") if k == "contract" else v) for k, v in rows[0].items()
        }

    result = _with_market(args, settings, make, job)
    emit(result, json.dumps(result, indent=2))
    return 0


# --- rep --------------------------------------------------------------------------------------


def _reputation_credential(
    args: argparse.Namespace, settings: Settings, evidence: Any
) -> reputation.ReputationCredential:
    """The credential `rep issue` publishes, checked before connecting to anything."""
    end = SystemClock().now()
    metrics = {}
    for pair in args.metric or []:
        name, _, value = pair.partition("=")
        try:
            metrics[name] = float(value)
        except ValueError:
            raise InvalidParams(f"--metric {pair!r}: expected name=number") from None
    me = load_key_file(settings.key_file).public_key().to_hex()
    return _validated(
        lambda: reputation.ReputationCredential(
            issuer=listing.did(me),
            validFrom=reputation.iso(end),
            credentialSubject=reputation.Subject(
                id=listing.did(args.subject),
                domain=args.domain,
                period=reputation.Period(
                    start=reputation.iso(end - args.period_days * DAY),
                    end=reputation.iso(end),
                ),
                metrics=metrics,
                outcome=args.outcome,
                evidence=evidence,
            ),
        )
    )


def cmd_rep(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    action = args.rep_command
    if action == "verify":
        raw = read_user_file(args.file, "the credential file")
        cred = reputation.parse(parse_event(raw), now=SystemClock().now()).payload
        value = reputation.score(cred.credentialSubject)
        result = {
            "valid": True,
            "issuer": cred.issuer,
            "subject": cred.credentialSubject.id,
            "score": round(value, 2),
            "tier": reputation.tier(value),
            "verified_evidence": reputation.verified_evidence(cred),
        }
        emit(result, json.dumps(result, indent=2))
        return 0

    evidence = (
        parse_user_json(read_user_file(args.evidence_file, "--evidence-file"), "--evidence-file")
        if getattr(args, "evidence_file", None)
        else []
    )

    cred = _reputation_credential(args, settings, evidence) if action == "issue" else None

    async def job(market: Market) -> dict[str, Any]:
        if cred is not None:
            event = await market.issue_credential(cred)
            return {
                "event_id": event.id,
                "credential_id": cred.credential_id,
                "score": round(reputation.score(cred.credentialSubject), 2),
            }
        if action == "revoke":
            return {
                "revoked": args.credential_id,
                "event_id": (await market.revoke_credential(args.credential_id)).id,
            }
        agg = await market.reputation_of(args.pubkey)
        return {
            "subject": agg.subject,
            "score": round(agg.score, 2),
            "tier": agg.tier,
            "credentials": [p.__dict__ | {"weight": round(p.weight, 6)} for p in agg.parts],
        }

    result = _with_market(args, settings, make, job)
    emit(result, json.dumps(result, indent=2))
    return 0


# --- parsers ----------------------------------------------------------------------------------


def _listing_options(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--id", required=True, help="listing id (the `d` tag); same id = update")
    p.add_argument("--service", choices=[s.value for s in ServiceType], required=required)
    p.add_argument("--title", required=required)
    p.add_argument("--summary", required=required)
    p.add_argument("--description", help="Markdown shown by marketplace clients")
    p.add_argument("--description-file")
    p.add_argument("--price", type=integer, required=required, help="sats per --frequency")
    p.add_argument("--frequency", choices=[f.value for f in Frequency], required=required)
    p.add_argument("--pricing-model", choices=[m.value for m in PricingModel], required=required)
    p.add_argument("--primary", required=required, help="primary capability, e.g. fee-policy")
    p.add_argument("--secondary", action="append", help="secondary capability (repeatable)")
    p.add_argument("--schema", action="append", help="management schema, e.g. hive:fee-policy/v1")
    p.add_argument("--sla-seconds", type=integer, help="promised response time")
    p.add_argument("--mint", action="append", help="accepted Cashu mint URL (repeatable)")
    p.add_argument("--capacity", type=integer, help="liquidity capacity in sat")
    p.add_argument("--duration-days", type=integer)
    p.add_argument("--trial-days", type=integer)
    p.add_argument("--trial-price", type=integer)
    p.add_argument("--days", type=integer, help="lifetime before it expires (default 30)")


def _need_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--service", choices=[s.value for s in ServiceType])
    p.add_argument("--need", help="your primary need (capability)")
    p.add_argument("--capability", action="append", help="required capability (repeatable)")
    p.add_argument("--schema", dest="schema_filter")
    p.add_argument("--max-price", type=integer)
    p.add_argument("--budget", type=integer)
    p.add_argument("--mint", dest="mint_filter")
    p.add_argument("--explain", action="store_true", help="show each score's breakdown")


def register(sub: Any, relay_opt: argparse.ArgumentParser, bind: Callable[..., Any]) -> None:
    """Add the marketplace commands to the CLI; `bind(fn)` turns a command into a handler."""
    market = sub.add_parser("market", help="service listings (NIP-99)").add_subparsers(
        dest="market_command", required=True, metavar="ACTION"
    )
    _listing_options(
        market.add_parser("publish", parents=[relay_opt], help="publish a listing"), True
    )
    _listing_options(
        market.add_parser("update", parents=[relay_opt], help="change a listing"), False
    )
    market.add_parser("withdraw", parents=[relay_opt], help="withdraw a listing").add_argument("id")
    market.add_parser("refresh", parents=[relay_opt], help="re-publish listings about to expire")
    _need_options(
        market.add_parser("browse", parents=[relay_opt], help="discover and rank listings")
    )
    show = market.add_parser("show", parents=[relay_opt], help="one listing, with its ranking")
    show.add_argument("which", help="listing address or id")
    _need_options(show)
    for name in ("publish", "update", "withdraw", "refresh", "browse", "show"):
        market.choices[name].set_defaults(func=bind(cmd_market))

    rfps = sub.add_parser("rfp", help="requests for proposals and sealed bids").add_subparsers(
        dest="rfp_command", required=True, metavar="ACTION"
    )
    post = rfps.add_parser("post", parents=[relay_opt], help="publish a request for proposals")
    post.add_argument("--id", required=True)
    post.add_argument("--service", choices=[s.value for s in ServiceType], required=True)
    post.add_argument("--need", required=True)
    post.add_argument("--capability", action="append")
    post.add_argument("--schema", action="append")
    post.add_argument("--max-price", type=integer, required=True)
    post.add_argument("--duration-days", type=integer, default=30)
    post.add_argument("--deadline-hours", type=positive, default=72)
    post.add_argument("--award-hours", type=positive, default=168)
    post.add_argument("--description")
    rfps.add_parser("list", parents=[relay_opt], help="open RFPs")
    rfps.add_parser("bids", parents=[relay_opt], help="bids received on our RFP").add_argument(
        "address"
    )
    b = rfps.add_parser("bid", parents=[relay_opt], help="send a sealed bid")
    b.add_argument("address")
    b.add_argument("--price", type=integer, required=True)
    b.add_argument("--pricing-model", choices=[m.value for m in PricingModel], required=True)
    b.add_argument("--duration-days", type=integer, default=30)
    b.add_argument("--sla-seconds", type=integer, default=3600)
    b.add_argument("--trial-days", type=integer)
    b.add_argument("--trial-price", type=integer)
    b.add_argument("--note")
    rfps.add_parser(
        "reveal", parents=[relay_opt], help="reveal our bid after the deadline"
    ).add_argument("address")
    for name in ("post", "list", "bids", "bid", "reveal"):
        rfps.choices[name].set_defaults(func=bind(cmd_rfp))

    contracts = sub.add_parser("contract", help="two-party signed contracts").add_subparsers(
        dest="contract_command", required=True, metavar="ACTION"
    )
    o = contracts.add_parser("offer", parents=[relay_opt], help="offer a contract to PUBKEY")
    o.add_argument("pubkey", type=pubkey)
    o.add_argument("--role", choices=["client", "provider"], required=True, help="our role")
    o.add_argument("--service", choices=[s.value for s in ServiceType], required=True)
    o.add_argument("--price", type=integer, required=True)
    o.add_argument("--pricing-model", choices=[m.value for m in PricingModel], required=True)
    o.add_argument("--frequency", choices=[f.value for f in Frequency], default="month")
    o.add_argument("--duration-days", type=integer, default=30)
    o.add_argument("--schema", action="append")
    o.add_argument("--capacity", type=integer)
    o.add_argument("--listing")
    o.add_argument("--trial-days", type=integer)
    o.add_argument("--trial-price", type=integer)
    o.add_argument("--heartbeat-seconds", type=integer, default=3600)
    contracts.add_parser("accept", parents=[relay_opt], help="countersign an offer").add_argument(
        "terms_hash"
    )
    contracts.add_parser("list", parents=[relay_opt], help="contracts and open offers")
    contracts.add_parser("show", parents=[relay_opt], help="one contract").add_argument("id")
    for name in ("offer", "accept", "list", "show"):
        contracts.choices[name].set_defaults(func=bind(cmd_contract))

    rep = sub.add_parser("rep", help="reputation credentials").add_subparsers(
        dest="rep_command", required=True, metavar="ACTION"
    )
    issue = rep.add_parser("issue", parents=[relay_opt], help="issue a credential about SUBJECT")
    issue.add_argument("subject", type=pubkey, help="hex, npub or nprofile")
    issue.add_argument("--domain", choices=[d.value for d in reputation.Domain], required=True)
    issue.add_argument("--period-days", type=days, default=30)
    issue.add_argument("--metric", action="append", help="name=value (repeatable)")
    issue.add_argument(
        "--outcome", choices=[o.value for o in reputation.Outcome], default="neutral"
    )
    issue.add_argument("--evidence-file", help="JSON list of evidence items")
    rep.add_parser("show", parents=[relay_opt], help="aggregate reputation of PUBKEY").add_argument(
        "pubkey", type=pubkey
    )
    rep.add_parser("verify", help="verify a credential event (file or -)").add_argument("file")
    rep.add_parser("revoke", parents=[relay_opt], help="revoke our credential").add_argument(
        "credential_id"
    )
    for name in ("issue", "show", "verify", "revoke"):
        rep.choices[name].set_defaults(func=bind(cmd_rep))
