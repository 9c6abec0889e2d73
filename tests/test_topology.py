"""agent/fleet/topology.py: what `hive-topology` shows, from the gossip view, the roster and
presence — members without a record yet, channels between members from either side's record,
channels to outsiders left out of those, totals."""

from __future__ import annotations

from typing import Any

from agent.fleet import topology

A, B, C, X = (f"02{i:064x}" for i in (1, 2, 3, 9))


def channel(peer: str, scid: str, ppm: int, capacity: int = 1_000_000) -> dict[str, Any]:
    return {
        "peer": peer, "scid": scid, "capacity_sat": capacity, "balance": 10,
        "fee_base_msat": 1000, "fee_ppm": ppm, "htlc_min_msat": 1, "htlc_max_msat": 10**9,
        "cltv_delta": 34, "state": "normal",
    }  # fmt: skip


def entry(owner: str, channels: list[dict[str, Any]], version: int = 1) -> dict[str, Any]:
    return {
        "owner": owner, "version": version, "age_s": 5, "last_seen": 100, "active": True,
        "capacity_sat": sum(c["capacity_sat"] for c in channels),
        "outbound_sat": sum(c["capacity_sat"] for c in channels) // 2, "channels": channels,
    }  # fmt: skip


def test_members_channels_between_them_and_totals() -> None:
    entries = [
        entry(A, [channel(B, "1x1x0", 100), channel(X, "1x2x0", 50)]),
        entry(B, [channel(A, "1x1x0", 200)]),
        entry(X, [channel(A, "1x2x0", 1)]),  # a record of a node no longer a member
    ]
    records = {A: {"timestamp": 95, "offered_sat": 7, "features": ["anchor"], "uptime_s": 60}}
    presence = {C: {"last_seen": 40, "active": True}}
    out = topology.assemble(
        hive_id="hive_00", me=A, tiers={A: "member", B: "neophyte", C: "neophyte"},
        entries=entries, records=records, presence=presence,
    )  # fmt: skip
    by = {m["owner"]: m for m in out["members"]}
    assert list(by) == [A, B, C]
    assert by[A]["self"] and by[A]["offered_sat"] == 7 and by[A]["features"] == ["anchor"]
    assert by[B]["tier"] == "neophyte" and by[B]["offered_sat"] is None  # field not given
    assert by[C]["version"] is None and by[C]["last_seen"] == 40 and by[C]["active"]
    assert out["member_channels"] == [
        {
            "scid": "1x1x0", "nodes": sorted((A, B)), "capacity_sat": 1_000_000,
            "sides": {
                A: {k: channel(B, "1x1x0", 100)[k] for k in topology.SIDE_FIELDS},
                B: {k: channel(A, "1x1x0", 200)[k] for k in topology.SIDE_FIELDS},
            },
        }
    ]  # fmt: skip
    assert out["totals"] == {
        "members": 3, "active": 3, "with_record": 2, "capacity_sat": 3_000_000,
        "outbound_sat": 1_500_000, "offered_sat": 7, "channels": 3, "member_channels": 1,
        "member_capacity_sat": 1_000_000,
    }  # fmt: skip


def test_one_side_reported_and_an_empty_fleet() -> None:
    out = topology.assemble(
        hive_id="hive_00", me=A, tiers={A: "member", B: "member"},
        entries=[entry(A, [channel(B, "1x1x0", 100)])], records={}, presence={},
    )  # fmt: skip
    [link] = out["member_channels"]
    assert list(link["sides"]) == [A]  # B's record has not reached us yet
    empty = topology.assemble(hive_id=None, me=A, tiers={}, entries=[], records={}, presence={})
    assert empty["members"] == [] and empty["totals"]["members"] == 0
