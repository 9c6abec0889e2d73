"""One id rule for every command that names a stored item (a contract, an offer, an escrow
ticket, a credential, a waiting command): the whole id or a unique prefix of it, at least
`MIN_PREFIX` characters (agent/cli/types.py `id_prefix` checks the length).

Resolution reads the store before anything connects: an unknown prefix is NOT_FOUND (65), a
prefix that names several items is AMBIGUOUS_ID (64) with how many it names."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any

from agent.advisory import node as node_side
from agent.errors import AmbiguousId
from agent.market.service import Market
from agent.settings import Settings
from agent.store import Store
from agent.store import advisory as advisory_repo
from agent.store import escrow as escrow_repo
from agent.store import market as market_repo
from events.errors import NotFound
from events.kinds import Kind

Source = Callable[[Store], Iterable[str]]


def _offers_to_us(store: Store) -> Iterable[str]:
    return (r["terms_hash"] for r in market_repo.offers(store) if r["direction"] == "in")


def _reputation_ids(store: Store) -> Iterable[str]:
    return (r["address"].split(":", 2)[2] for r in market_repo.credential_rows(store))


# what each kind of id is called in messages, and where the known ones are
SOURCES: dict[str, tuple[str, Source]] = {
    "offer": ("offer to us", _offers_to_us),
    "contract": ("contract", lambda s: (r["id"] for r in market_repo.contracts(s))),
    "ticket": ("escrow ticket", lambda s: (r["ticket_id"] for r in escrow_repo.tickets(s))),
    "credential": (
        "credential",
        lambda s: (r["credential_id"] for r in advisory_repo.credentials(s)),
    ),
    "command": ("waiting command", lambda s: (r["id"] for r in node_side.pending(s))),
    "reputation": ("reputation credential", _reputation_ids),
}


def match(given: str, known: Iterable[str], what: str, *, unknown_ok: bool = False) -> str:
    """The one id in `known` equal to or starting with `given`.

    Raises NotFound (none; unless `unknown_ok`, then `given` itself) or AmbiguousId."""
    ids = set(known)
    if given in ids:
        return given
    found = sorted(i for i in ids if i.lower().startswith(given.lower()))
    if len(found) == 1:
        return found[0]
    if found:
        raise AmbiguousId(f"{len(found)} {what}s start with {given[:80]!r}; give more of the id")
    if unknown_ok:
        return given
    raise NotFound(f"no {what} matches {given[:80]!r}")


def resolve(settings: Settings, kind: str, given: str, *, unknown_ok: bool = False) -> str:
    """`given` (an id or a unique prefix) as the whole id of a stored `kind` (SOURCES)."""
    what, source = SOURCES[kind]
    store = Store(settings.store_file)
    try:
        return match(given, list(source(store)), what, unknown_ok=unknown_ok)
    finally:
        store.close()


def resolving(
    field: str, kind: str, command: Callable[..., int], *, unknown_ok: bool = False
) -> Callable[..., int]:
    """`command` with `args.<field>` resolved to a whole id first (when given)."""

    def resolved(args: argparse.Namespace, settings: Settings, *rest: Any) -> int:
        given = getattr(args, field, None)
        if given is not None:
            setattr(args, field, resolve(settings, kind, given, unknown_ok=unknown_ok))
        return command(args, settings, *rest)

    return resolved


async def fetch_rfp(market: Market, ref: str) -> str:
    """The address of the RFP `ref` names — an address, or an RFP's id (its `d` tag) — brought
    into the store from the relays unless it is there already (so `rfp bid` needs no earlier
    `rfp list`).  Raises NotFound, or AmbiguousId when several authors use that id."""
    store = market.agent.store
    if ":" in ref:
        if market_repo.rfp(store, ref) is None:
            kind, author, d = ref.split(":", 2)
            await market.agent.fetch_into_store(
                [{"kinds": [int(kind)], "authors": [author], "#d": [d]}]
            )
        return ref

    def named() -> list[str]:
        return [r["address"] for r in market_repo.rfps(store) if r["address"].endswith(":" + ref)]

    if not named():
        await market.agent.fetch_into_store([{"kinds": [int(Kind.RFP)], "#d": [ref]}])
    found = named()
    if len(found) > 1:
        raise AmbiguousId(f"{len(found)} RFPs are called {ref[:80]!r}; give its naddr1…")
    if not found:
        raise NotFound(f"no RFP {ref[:80]!r} on the relays")
    return found[0]
