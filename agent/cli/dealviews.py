"""Text views of `rfp`, `contract` and `rep` answers (their `--json` answers are the dicts these
read): amounts with units, local ISO times, keys as npub beside short hex."""

from __future__ import annotations

from typing import Any

from nostr_sdk import NostrSdkError

from agent.cli.views import pairs, since, table, when
from agent.textsafe import inline
from events import nip19


def npub(pubkey: str) -> str:
    """A hex public key (or `did:nostr:<hex>`) as `npub1… (ab12cd34)`; unchanged if not a key."""
    hexkey = pubkey.removeprefix("did:nostr:")
    if not nip19.is_hex64(hexkey):
        return pubkey
    try:
        return f"{nip19.npub(hexkey)} ({hexkey[:8]})"
    except NostrSdkError:  # 64 hex digits that are no point on the curve
        return pubkey


def sat(amount: int | None) -> str | None:
    return None if amount is None else f"{amount:,} sat"


def _trial(trial: dict[str, Any] | None) -> str:
    return "none" if not trial else f"{trial['days']} days for {trial['price_sat']:,} sat"


# --- rfp --------------------------------------------------------------------------------------


def rfp_posted(r: dict[str, Any]) -> str:
    return pairs([("posted", r["address"]), ("event", r["event_id"])])


def rfp_list(r: dict[str, Any]) -> str:
    rows = [
        [
            x["address"],
            x["rfp"]["service"],
            x["rfp"]["need"],
            sat(x["rfp"]["max_price_sat"]),
            f"{x['rfp']['duration_days']} d",
            when(x["rfp"]["bid_deadline"]),
        ]
        for x in r["rfps"]
    ]
    headers = ["rfp", "service", "need", "max price", "term", "bids due"]
    return table(headers, rows) if rows else "no open RFPs"


def rfp_bids(r: dict[str, Any]) -> str:
    rows = []
    for b in r["bids"]:
        terms = b["terms"]
        price = None if terms is None else f"{terms['price_sat']:,} sat {terms['pricing_model']}"
        rows.append(
            [npub(b["bidder"]), b["commitment"][:16], when(b["received_at"]), price or "sealed"]
        )
    return table(["bidder", "commitment", "received", "price"], rows) if rows else "no bids yet"


def rfp_bid(r: dict[str, Any]) -> str:
    return (
        pairs([("sealed bid sent", r["rfp"]), ("commitment", r["commitment"])])
        + "\nreveal it after the bid deadline: hive-agent rfp reveal "
        + r["rfp"]
    )


def rfp_revealed(r: dict[str, Any]) -> str:
    return pairs([("revealed bid on", r["revealed"]), ("event", r["event_id"])])


# --- contract ---------------------------------------------------------------------------------


def _terms_pairs(t: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("service", t["service"]),
        ("client", npub(t["client"])),
        ("provider", npub(t["provider"])),
        ("price", f"{t['price_sat']:,} sat/{t['frequency']} ({t['pricing_model']})"),
        ("starts", when(t["starts_at"])),
        ("duration", f"{t['duration_days']} days"),
        ("trial", _trial(t["trial"])),
        ("schemas", ", ".join(t["schemas"]) or "-"),
        ("capacity", sat(t["capacity_sat"])),
        ("listing", None if t["listing"] is None else inline(t["listing"])),  # the offerer's
        ("heartbeat", f"every {t['heartbeat_interval_s']} s"),
    ]


def contract_offered(r: dict[str, Any]) -> str:
    return pairs([("offered to", npub(r["offered_to"])), ("terms hash", r["terms_hash"])])


def contract_accepted(r: dict[str, Any]) -> str:
    return pairs([("contract", r["contract"]), *_terms_pairs(r["terms"])])


def contract_one(r: dict[str, Any]) -> str:
    head = [
        ("contract", r["id"]),
        ("role", f"we are the {r['role']}"),
        ("state", r["state"] + (f" ({r['state_reason']})" if r.get("state_reason") else "")),
        ("signed", since(r["created_at"])),
    ]
    return pairs([*head, *_terms_pairs(r["contract"]["terms"])])


def contract_list(r: dict[str, Any]) -> str:
    signed = [
        [
            c["id"][:16],
            c["role"],
            npub(c["counterparty"]),
            c["contract"]["terms"]["service"],
            f"{c['contract']['terms']['price_sat']:,} sat/{c['contract']['terms']['frequency']}",
            c["state"],
            when(c["created_at"]),
        ]
        for c in r["contracts"]
    ]
    offers = [
        [
            o["terms_hash"],
            "to us" if o["direction"] == "in" else "from us",
            npub(o["counterparty"] if o["direction"] == "out" else o["offerer"]),
            f"{o['offer']['terms']['price_sat']:,} sat/{o['offer']['terms']['frequency']}",
            when(o["created_at"]),
        ]
        for o in r["offers"]
    ]
    return (
        "contracts\n"
        + table(["id", "role", "counterparty", "service", "price", "state", "signed"], signed)
        + "\n\nopen offers\n"
        + table(["terms hash", "direction", "party", "price", "offered"], offers)
    )


# --- rep --------------------------------------------------------------------------------------


def rep_issued(r: dict[str, Any]) -> str:
    return pairs(
        [("credential", r["credential_id"]), ("score", r["score"]), ("event", r["event_id"])]
    )


def rep_show(r: dict[str, Any]) -> str:
    head = pairs(
        [
            ("subject", npub(r["subject"])),
            ("score", f"{r['score']} of 100"),
            ("tier", r["tier"]),
            ("credentials", len(r["credentials"])),
        ]
    )
    rows = [
        [c["credential_id"], npub(c["issuer"]), round(c["score"], 2), c["weight"]]
        for c in r["credentials"]
    ]
    return (
        head
        if not rows
        else head + "\n\n" + table(["credential", "issuer", "score", "weight"], rows)
    )


def rep_verified(r: dict[str, Any]) -> str:
    return pairs(
        [
            ("valid", "yes, signed by its issuer"),
            ("issuer", npub(r["issuer"])),
            ("subject", npub(r["subject"])),
            ("score", f"{r['score']} ({r['tier']})"),
            ("verified evidence", r["verified_evidence"]),
        ]
    )


def rep_revoked(r: dict[str, Any]) -> str:
    return pairs([("revoked", r["revoked"]), ("deletion event", r["event_id"])])
