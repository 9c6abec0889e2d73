"""The fleet's topology as `hive-topology` shows it, pure (the caller reads the store): every
active member with its latest state record (or none yet), the record's freshness and the
member's presence; the channels between members, derived from the records (a channel whose
peer is another member, each side's policy as that side reported it); and fleet totals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RECORD_FIELDS = ("timestamp", "offered_sat", "features", "uptime_s")
SIDE_FIELDS = (
    "balance", "fee_base_msat", "fee_ppm", "htlc_min_msat", "htlc_max_msat", "cltv_delta",
    "state",
)  # fmt: skip


def assemble(
    *,
    hive_id: str | None,
    me: str,
    tiers: Mapping[str, str],
    entries: list[dict[str, Any]],
    records: Mapping[str, Mapping[str, Any]],
    presence: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    """`tiers`: active member → tier; `entries`: the gossip component's per-record view (owner,
    version, age_s, last_seen, active, totals, channels: passed through as they are);
    `records`: owner → the record's other fields; `presence`: member → {last_seen, active}
    for members with no record yet."""
    by_owner = {e["owner"]: e for e in entries if e["owner"] in tiers}
    members = [_member(n, tiers[n], me, by_owner.get(n), records, presence) for n in sorted(tiers)]
    links = member_channels(members)
    held = [m for m in members if m["version"] is not None]
    return {
        "hive_id": hive_id,
        "node_id": me,
        "members": members,
        "member_channels": links,
        "totals": {
            "members": len(members),
            "active": sum(bool(m["active"]) for m in members),
            "with_record": len(held),
            "capacity_sat": sum(m["capacity_sat"] for m in held),
            "outbound_sat": sum(m["outbound_sat"] for m in held),
            "offered_sat": sum(m["offered_sat"] or 0 for m in held),
            "channels": sum(len(m["channels"]) for m in held),
            "member_channels": len(links),
            "member_capacity_sat": sum(link["capacity_sat"] for link in links),
        },
    }


def _member(
    node: str,
    tier: str,
    me: str,
    entry: dict[str, Any] | None,
    records: Mapping[str, Mapping[str, Any]],
    presence: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    if entry is None:  # admitted, but no record of it has reached us yet
        seen = presence.get(node, {})
        return {
            "owner": node, "tier": tier, "self": node == me, "version": None, "age_s": None,
            "last_seen": seen.get("last_seen"), "active": bool(seen.get("active")),
            "capacity_sat": 0, "outbound_sat": 0, "channels": [],
            **dict.fromkeys(RECORD_FIELDS),
        }  # fmt: skip
    extra = records.get(node, {})
    return {  # what the gossip view says wins over the record's own fields
        "owner": node, "tier": tier, "self": node == me,
        **{f: extra.get(f) for f in RECORD_FIELDS}, **entry,
    }  # fmt: skip


def member_channels(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Channels between two members, one entry per channel (by scid) with each side's view as
    its owner's record reports it; a side whose record does not list the channel is absent."""
    inside = {m["owner"] for m in members}
    links: dict[str, dict[str, Any]] = {}
    for m in members:
        for ch in m["channels"]:
            peer = ch["peer"]
            if peer not in inside or peer == m["owner"]:
                continue
            link = links.setdefault(
                ch["scid"],
                {"scid": ch["scid"], "nodes": sorted((m["owner"], peer)),
                 "capacity_sat": ch["capacity_sat"], "sides": {}},
            )  # fmt: skip
            link["sides"][m["owner"]] = {f: ch[f] for f in SIDE_FIELDS}
    return [links[scid] for scid in sorted(links)]
