"""The other pages' data — escrow, marketplace, node channels and fees, fleet — read from the
same store functions and services the CLI views use (agent/store/escrow.py, market.py, the
node backend, `FleetService.topology`)."""

from __future__ import annotations

from typing import Any

from agent.dashboard.data import SHOWN
from agent.escrow.checks import label
from agent.node.backend import NodeBackend
from agent.store import Store
from agent.store import escrow as escrow_repo
from agent.store import market as market_repo

HOUR = 3600


def escrow(store: Store) -> dict[str, Any]:
    """Tickets — every one we funded, the newest `SHOWN` paid to us (any node may send us
    one) — with each part's amount, state and locktime; wallet per mint."""
    tickets = []
    rows = escrow_repo.tickets(store, "funder") + escrow_repo.tickets(store, "payee", SHOWN)
    for row in rows:
        found = escrow_repo.ticket(store, row["ticket_id"])
        if found is None:
            continue
        ticket, role, successes = found
        tickets.append(
            {
                "id": ticket.ticket_id,
                "role": role,
                "type": ticket.type.value,
                "amount_sat": ticket.amount_sat,
                "mint": ticket.mint,
                "advisor": ticket.advisor,
                "successes": successes,
                # what the payee's check at the mint found (agent/escrow/checks.py)
                "ecash": label(role, row["checked"], short=True),
                "ecash_why": label(role, row["checked"]),
                "created_at": ticket.created_at,
                "parts": [
                    {k: p[k] for k in ("part_index", "amount", "state", "locktime", "note")}
                    for p in row["parts"]
                ],
            }
        )
    hidden = max(0, escrow_repo.count_tickets(store, "payee") - SHOWN)
    return {"tickets": tickets, "hidden": hidden, "balances": escrow_repo.balances(store)}


def market(store: Store) -> dict[str, Any]:
    """Our listings, RFPs, offers and contracts with their last heartbeat."""
    contracts = []
    for c in market_repo.contracts(store):
        beat = market_repo.last_heartbeat(store, c["id"])
        contracts.append(
            {k: v for k, v in c.items() if k != "contract"}
            | {"terms": c["contract"].model_dump(mode="json"), "last_heartbeat": beat}
        )
    listings = [
        item.model_dump(mode="json", include={"listing_id", "title", "service", "price_sat"})
        for item in market_repo.my_listings(store).values()
    ]
    return {
        "listings": listings,
        "rfps": market_repo.rfps(store, SHOWN),
        "rfps_total": market_repo.count_rfps(store),
        "shown": SHOWN,
        "offers": market_repo.offers(store, newest=SHOWN),
        "offers_total": market_repo.count_offers(store),
        "contracts": contracts,
    }


def fees_by_hour(store: Store, now: int, hours: int = 24) -> dict[str, list[int]]:
    """Forwarding fees (sat) settled in each of the last `hours` hours (the forwards ledger)."""
    end = (now // HOUR + 1) * HOUR
    starts = [end - (hours - i) * HOUR for i in range(hours)]
    fees = [escrow_repo.fees_earned(store, s, s + HOUR) // 1000 for s in starts]
    return {"t": starts, "fees_sat": fees}


async def channels(node: NodeBackend | None) -> list[dict[str, Any]]:
    """Our channels with local/remote shares for the balance bars (needs a node backend)."""
    if node is None:
        return []
    out = []
    for ch in await node.channels():
        total = max(1, ch.local_msat + ch.remote_msat)
        out.append(
            {
                "scid": ch.short_channel_id,
                "peer": ch.peer_id,
                "capacity_sat": ch.capacity_sat,
                "local_sat": ch.local_msat // 1000,
                "remote_sat": ch.remote_msat // 1000,
                "local_pct": round(100 * ch.local_msat / total),
                "state": ch.state.value,
                "fee_ppm": ch.policy.ppm,
            }
        )
    return out


def fleet_graph(topology: dict[str, Any]) -> dict[str, Any]:
    """The fleet's members and the channels between them, as graph nodes and edges."""
    nodes = [
        {"id": m["owner"], "label": f"{m['owner'][:8]} ({m.get('tier') or '?'})",
         "active": bool(m.get("active")), "self": bool(m.get("self"))}
        for m in topology.get("members", [])
    ]  # fmt: skip
    edges = [
        {"id": link["scid"], "source": link["nodes"][0], "target": link["nodes"][1],
         "capacity_sat": link["capacity_sat"], "label": edge_label(link)}
        for link in topology.get("member_channels", [])
    ]  # fmt: skip
    return {"nodes": nodes, "edges": edges}


def edge_label(link: dict[str, Any]) -> str:
    """A channel between members as its owners reported it: capacity, then per side its
    local balance (5 % steps) and fee rate — `1,000,000 sat · 02ab12 60 % 0 ppm · …`."""
    sides = [
        f"{owner[:6]} {side.get('balance', '?')} % {side.get('fee_ppm', '?')} ppm"
        for owner, side in sorted(link.get("sides", {}).items())
    ]
    return " · ".join([f"{link['capacity_sat']:,} sat", *sides])


def fleet_money(
    contribution: dict[str, Any], settlement: dict[str, Any], me: str
) -> dict[str, Any]:
    """The fleet's contribution figures (`FleetService.contribution_view()`: per member its
    30-day in/out msat, fees, ratio, leech state) and the latest settlement period
    (`settlement_view()`: its state, each member's net/share/balance, the payments with the
    state this node knows of each)."""
    members = [
        {k: m.get(k) for k in ("node", "in_msat", "out_msat", "fees_msat", "forwards", "ratio",
                               "leech", "leech_since", "below_days")}
        for m in contribution.get("members", [])
    ]  # fmt: skip
    own = contribution.get("own")  # every forward through us, whoever the peers were
    if own:  # (none when the view was refused: its error is shown instead)
        members.append({k: own.get(k, 0) for k in ("in_msat", "out_msat", "fees_msat", "forwards")}
                       | {"node": me, "self": True, "ratio": None, "leech": None})  # fmt: skip
    plan = settlement if "members" in settlement else settlement.get("preview") or {}
    return {
        "window": contribution.get("window", {}),
        "threshold": contribution.get("rule", {}).get("threshold"),
        "members": members,
        "chain_ok": (contribution.get("chain") or {}).get("ok"),
        "errors": [v["error"] for v in (contribution, settlement) if v.get("error")],
        "period": settlement.get("period"),
        "state": settlement.get("state"),
        "proposer": settlement.get("proposer"),
        "majority": settlement.get("majority"),
        "net_sat": (plan.get("totals") or {}).get("net_sat"),
        "plan": [
            {k: m[k] for k in ("node", "net_sat", "share_sat", "balance_sat")}
            for m in plan.get("members", [])
        ],
        "payments": [p | {"status": _paid(p, settlement, me)} for p in plan.get("payments", [])],
    }


def _paid(p: dict[str, Any], settlement: dict[str, Any], me: str) -> str:
    """A planned payment's state as this node knows it: reported executed by its payer (with
    the preimage), else our own payment's state (we pay) or our invoice's (we are paid)."""
    reported = settlement.get("executed", {}).get(p["payer"], [])
    if any(r.get("receiver") == p["receiver"] for r in reported):
        return "paid"
    if p["payer"] == me:
        mine = [x for x in settlement.get("my_payments", []) if x["receiver"] == p["receiver"]]
        return mine[0]["state"] if mine else "not started"
    if p["receiver"] == me:
        issued = [x for x in settlement.get("invoices_issued", []) if x["payer"] == p["payer"]]
        return f"invoice {issued[0]['state']}" if issued else "no invoice yet"
    return "pending" if settlement.get("state") in ("proposed", "agreed") else "-"
