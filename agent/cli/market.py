"""`hive-agent market …`: service listings (NIP-99) from the command line — publish, update,
withdraw, refresh, browse, show — and what the marketplace's commands share (agent/cli/deals.py:
rfp and contract; agent/cli/reputation.py: rep)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from pydantic import ValidationError

from agent.cli.apps import AppFactory
from agent.cli.bech32 import enrich
from agent.cli.common import Bind, Emit
from agent.cli.types import integer, listing_ref, sats
from agent.cli.views import pairs, table
from agent.clock import SystemClock
from agent.config_files import read_user_file
from agent.market.ranking import Need
from agent.market.service import Market
from agent.settings import Settings
from agent.store import Store
from agent.store import market as repo
from agent.textsafe import inline
from events import listing
from events.errors import InvalidParams, NotFound
from events.kinds import Kind
from events.listing import Frequency, Listing, PricingModel, ServiceType, Trial
from events.types import first_error

DAY = 86400
T = TypeVar("T")
Job = Callable[[Market], Awaitable[dict[str, Any]]]


def validated(build: Callable[[], T]) -> T:
    """`build()`, a pydantic model from what the user typed; its first error is INVALID_PARAMS."""
    try:
        return build()
    except ValidationError as exc:
        raise InvalidParams(first_error(exc, "input")) from None


def with_market(
    args: argparse.Namespace, settings: Settings, make: AppFactory, job: Job
) -> dict[str, Any]:
    """Start the agent and do `job` with its marketplace."""

    async def run() -> dict[str, Any]:
        app = make(args, settings)
        async with app.agent:
            return await job(app.market)

    return anyio.run(run, backend="asyncio")


def answer_json(
    args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory, job: Job
) -> int:
    """`job` with the marketplace; its answer printed as JSON (indented without --json)."""
    result = with_market(args, settings, make, job)
    emit(result, json.dumps(enrich(result), indent=2))
    return 0


def trial(args: argparse.Namespace) -> Trial | None:
    """The trial that --trial-days and --trial-price describe, if any."""
    if args.trial_days is None:
        return None
    return validated(lambda: Trial(days=args.trial_days, price_sat=args.trial_price or 500))


# --- publish, update, withdraw, refresh -------------------------------------------------------


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
        fields["trial"] = trial(args)
    if args.days is not None and not 1 <= args.days <= 366:
        raise InvalidParams(
            f"--days must be 1 to 366, not {args.days} (re-publish a listing to extend it)"
        )
    fields["expires_at"] = now + (args.days or 30) * DAY  # published_at: the first time
    listing.require_lifetime(fields["expires_at"], now)
    return validated(lambda: Listing(**fields))


def _read_description(args: argparse.Namespace) -> None:
    if args.description_file:
        args.description = read_user_file(args.description_file, "--description-file")


def _fields_text(result: dict[str, Any]) -> str:
    return pairs([(k, _joined(v) if isinstance(v, list) else v) for k, v in result.items()])


def _joined(values: list[Any]) -> str:
    return ", ".join(map(str, values)) or "none"


def _publish(
    args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory, item: Listing
) -> int:
    async def job(market: Market) -> dict[str, Any]:
        event = await market.publish(item)
        return {"event_id": event.id, "address": listing.coordinate(market.me, item.listing_id)}

    result = with_market(args, settings, make, job)
    emit(result, _fields_text(enrich(result)))
    return 0


def cmd_publish(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    _read_description(args)
    item = _listing_from(args, SystemClock().now())  # checked before connecting to anything
    return _publish(args, settings, emit, make, item)


def cmd_update(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    _read_description(args)
    base = repo.my_listings(Store(settings.store_file)).get(args.id)
    if base is None:
        raise NotFound(f"no listing {args.id!r} of ours")
    item = _listing_from(args, SystemClock().now(), base=base)
    return _publish(args, settings, emit, make, item)


def own_listing(ref: str, me: str) -> str:
    """The id of one of our listings from its id, address or `naddr` (as `listing_ref` reads
    it); INVALID_PARAMS for an address that is not ours — someone else's `naddr` with the
    same `d` as one of ours must not withdraw ours."""
    if ":" not in ref:
        return ref
    kind, author, d = ref.split(":", 2)
    if int(kind) != Kind.CLASSIFIED_LISTING or author != me:
        raise InvalidParams(
            f"{inline(ref)[:90]} is not one of our listings (ours are 30402:{me[:12]}…:<id>)"
        )
    return d


def cmd_withdraw(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    async def job(market: Market) -> dict[str, Any]:
        lid = own_listing(args.id, market.me)
        return {"event_id": (await market.withdraw(lid)).id, "withdrawn": lid}

    result = with_market(args, settings, make, job)
    emit(result, _fields_text(enrich(result)))
    return 0


def cmd_refresh(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    async def job(market: Market) -> dict[str, Any]:
        return {"refreshed": await market.refresh()}

    result = with_market(args, settings, make, job)
    emit(result, _fields_text(enrich(result)))
    return 0


# --- browse, show -----------------------------------------------------------------------------


def _need(args: argparse.Namespace) -> Need:
    """What the user looks for, checked before connecting to anything."""
    return validated(
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


def ranked_row(r: Any) -> dict[str, Any]:
    """One ranked listing as `market browse` shows it (score, breakdown, explanation)."""
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


def _listings_text(result: dict[str, Any], explain: bool) -> str:
    rows = [
        (i, f"{row['score']:.3f}", f"{row['price_sat']:,}/{row['frequency']}",
         f"{row['reputation']['score']:.0f} {row['reputation']['tier']}", inline(row["title"]),
         f"{row['provider'][:12]}…")
        for i, row in enumerate(result["listings"], 1)
    ]  # fmt: skip
    parts = [table(["#", "score", "price", "rep", "title", "provider"], rows)]
    if explain:
        parts.append("\n".join(f"{i:>2}  {row['explain']}" for i, row in
                               enumerate(result["listings"], 1)))  # fmt: skip
    if result["skipped"]:
        parts.append("skipped invalid events\n" + table(
            ["error", "count"], sorted(result["skipped"].items())))  # fmt: skip
    return "\n\n".join(parts) if result["listings"] else "no listings match"


def cmd_browse(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    need = _need(args)

    async def job(market: Market) -> dict[str, Any]:
        rows = [ranked_row(r) for r in await market.browse(need)]
        return {"listings": rows, "skipped": dict(market.errors)}

    result = with_market(args, settings, make, job)
    emit(result, _listings_text(result, args.explain))
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    need = _need(args)

    async def job(market: Market) -> dict[str, Any]:
        rows = [ranked_row(r) for r in await market.browse(need)]
        rows = [r for r in rows if args.which in (r["address"], r["listing_id"])]
        if not rows:
            raise InvalidParams(f"no current listing {args.which!r} matches")
        return {"listings": rows, "skipped": dict(market.errors)}

    result = with_market(args, settings, make, job)
    emit(result, _listings_text(result, explain=True))
    return 0


# --- parsers ----------------------------------------------------------------------------------


def _listing_options(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--id", required=True, help="listing id (the `d` tag); same id = update")
    p.add_argument("--service", choices=[s.value for s in ServiceType], required=required)
    p.add_argument("--title", required=required)
    p.add_argument("--summary", required=required)
    p.add_argument("--description", help="Markdown shown by marketplace clients")
    p.add_argument("--description-file")
    p.add_argument("--price", type=sats, required=required, help="sat per --frequency, e.g. 50k")
    p.add_argument("--frequency", choices=[f.value for f in Frequency], required=required)
    p.add_argument("--pricing-model", choices=[m.value for m in PricingModel], required=required)
    p.add_argument("--primary", required=required, help="primary capability, e.g. fee-policy")
    p.add_argument("--secondary", action="append", help="secondary capability (repeatable)")
    p.add_argument("--schema", action="append", help="management schema, e.g. hive:fee-policy/v1")
    p.add_argument("--sla-seconds", type=integer, help="promised response time")
    p.add_argument("--mint", action="append", help="accepted Cashu mint URL (repeatable)")
    p.add_argument("--capacity", type=sats, help="liquidity capacity in sat, e.g. 5M")
    p.add_argument("--duration-days", type=integer)
    p.add_argument("--trial-days", type=integer)
    p.add_argument("--trial-price", type=sats)
    p.add_argument("--days", type=integer, help="lifetime before it expires (default 30)")


def _need_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--service", choices=[s.value for s in ServiceType])
    p.add_argument("--need", help="your primary need (capability)")
    p.add_argument("--capability", action="append", help="required capability (repeatable)")
    p.add_argument("--schema", dest="schema_filter")
    p.add_argument("--max-price", type=sats, help="sat, e.g. 100k")
    p.add_argument("--budget", type=sats, help="sat, e.g. 1M")
    p.add_argument("--mint", dest="mint_filter")
    p.add_argument("--explain", action="store_true", help="show each score's breakdown")


def register(sub: Any, relay_opt: argparse.ArgumentParser, bind: Bind) -> None:
    """`hive-agent market …`; `bind(fn)` turns a command into a handler."""
    market = sub.add_parser("market", help="service listings (NIP-99)").add_subparsers(
        required=True, metavar="ACTION"
    )
    publish = market.add_parser("publish", parents=[relay_opt], help="publish a listing")
    _listing_options(publish, True)
    publish.set_defaults(func=bind(cmd_publish))
    update = market.add_parser("update", parents=[relay_opt], help="change a listing")
    _listing_options(update, False)
    update.set_defaults(func=bind(cmd_update))
    withdraw = market.add_parser("withdraw", parents=[relay_opt], help="withdraw a listing")
    withdraw.add_argument("id", type=listing_ref, help="listing id, naddr1… or its address")
    withdraw.set_defaults(func=bind(cmd_withdraw))
    refresh = market.add_parser(
        "refresh", parents=[relay_opt], help="re-publish listings about to expire"
    )
    refresh.set_defaults(func=bind(cmd_refresh))
    browse = market.add_parser("browse", parents=[relay_opt], help="discover and rank listings")
    _need_options(browse)
    browse.set_defaults(func=bind(cmd_browse))
    show = market.add_parser("show", parents=[relay_opt], help="one listing, with its ranking")
    show.add_argument("which", type=listing_ref, help="naddr1…, 30402:<pubkey>:<id>, or the id")
    _need_options(show)
    show.set_defaults(func=bind(cmd_show))
