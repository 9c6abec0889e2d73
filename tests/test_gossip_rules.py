"""State gossip's pure rules (agent/fleet/gossip_rules.py): the threshold table, the heartbeat,
the per-peer rate with coalescing, acceptance (version, clock window) and forwarding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.cln_plugin import fleet_options
from agent.fleet import gossip_rules as rules
from agent.fleet.gossip_rules import Why
from events.errors import Expired, InvalidParams, Replayed
from events.fleet import ChannelEntry, StateRecord

A, B, C, D, E = (f"02{i:064x}" for i in range(1, 6))
NOW = 1_700_000_000


def chan(scid: str = "1x1x0", **kw: object) -> ChannelEntry:
    base = {
        "peer": B, "scid": scid, "capacity_sat": 1_000_000, "balance": 10, "fee_base_msat": 1000,
        "fee_ppm": 100, "htlc_min_msat": 1000, "htlc_max_msat": 990_000_000, "cltv_delta": 34,
        "state": "normal",
    }  # fmt: skip
    return ChannelEntry.model_validate(base | kw)


def rec(capacity: int = 1_000_000, outbound: int = 500_000, **kw: object) -> StateRecord:
    base = {
        "owner": A, "version": 1, "timestamp": NOW, "capacity_sat": capacity,
        "outbound_sat": outbound, "channels": [chan()], "offered_sat": 0, "features": [],
        "uptime_s": 0,
    }  # fmt: skip
    return StateRecord.model_validate(base | kw)


LAST = rec()

# (what changed, threshold %, seconds since the last send) → why it is sent ((): not sent)
TABLE = [
    ("nothing", rec(), 10, 0, ()),
    ("capacity +9 %", rec(capacity=1_090_000), 10, 0, ()),
    ("capacity +10 %", rec(capacity=1_100_000), 10, 0, (Why.CAPACITY,)),
    ("capacity −10 %", rec(capacity=900_000), 10, 0, (Why.CAPACITY,)),
    ("capacity +5 % at a 5 % threshold", rec(capacity=1_050_000), 5, 0, (Why.CAPACITY,)),
    ("capacity +49 % at 50 %", rec(capacity=1_490_000), 50, 0, ()),
    ("outbound +9.9 %", rec(outbound=549_500), 10, 0, ()),
    ("outbound −10 %", rec(outbound=450_000), 10, 0, (Why.OUTBOUND,)),
    ("outbound from 0", rec(outbound=0), 10, 0, (Why.OUTBOUND,)),
    ("fee base", rec(channels=[chan(fee_base_msat=1001)]), 10, 0, (Why.POLICY,)),
    ("fee ppm", rec(channels=[chan(fee_ppm=101)]), 10, 0, (Why.POLICY,)),
    ("htlc min", rec(channels=[chan(htlc_min_msat=1)]), 10, 0, (Why.POLICY,)),
    ("htlc max", rec(channels=[chan(htlc_max_msat=1)]), 10, 0, (Why.POLICY,)),
    ("cltv delta", rec(channels=[chan(cltv_delta=40)]), 10, 0, (Why.POLICY,)),
    ("balance step only", rec(channels=[chan(balance=11)]), 10, 0, ()),
    ("channel opened", rec(channels=[chan(), chan("2x1x0")]), 10, 0, (Why.TOPOLOGY,)),
    ("channel closed", rec(channels=[]), 10, 0, (Why.TOPOLOGY,)),
    ("channel closing", rec(channels=[chan(state="closing")]), 10, 0, (Why.TOPOLOGY,)),
    ("heartbeat not due", rec(), 10, 299, ()),
    ("heartbeat due", rec(), 10, 300, (Why.HEARTBEAT,)),
    ("fee and heartbeat", rec(channels=[chan(fee_ppm=1)]), 10, 400, (Why.POLICY, Why.HEARTBEAT)),
    (
        "capacity, outbound and topology",
        rec(capacity=2_000_000, outbound=0, channels=[]),
        10,
        0,
        (Why.CAPACITY, Why.OUTBOUND, Why.TOPOLOGY),
    ),
]


@pytest.mark.parametrize(("label", "new", "pct", "since", "why"), TABLE, ids=[t[0] for t in TABLE])
def test_threshold_table(
    label: str, new: StateRecord, pct: int, since: int, why: tuple[Why, ...]
) -> None:
    decision = rules.decide(LAST, new, since_last_s=since, threshold_pct=pct)
    assert decision == rules.Decision(bool(why), why)


def test_the_first_record_is_always_sent() -> None:
    assert rules.decide(None, rec(), since_last_s=0) == rules.Decision(True, (Why.FIRST,))


@pytest.mark.parametrize(
    ("pct", "beat", "ok"),
    [(1, 60, True), (50, 3600, True), (10, 300, True), (0, 300, False), (51, 300, False),
     (10, 59, False), (10, 3601, False)],
)  # fmt: skip
def test_option_bounds(pct: int, beat: int, ok: bool) -> None:
    if ok:
        rules.check_options(pct, beat)
    else:
        with pytest.raises(InvalidParams):
            rules.check_options(pct, beat)


@given(st.integers(0, 10**12), st.integers(0, 10**12), st.integers(1, 50))
def test_moved_is_symmetric_in_sign(old: int, delta: int, pct: int) -> None:
    up, down = rules.moved(old, old + delta, pct), rules.moved(old, max(0, old - delta), pct)
    if old and delta <= old:
        assert up == down == (delta * 100 >= pct * old)


@pytest.mark.parametrize(
    ("local_msat", "capacity", "step"),
    [(0, 1000, 0), (1_000_000, 1000, 20), (500_000, 1000, 10), (24_000, 1000, 0),
     (26_000, 1000, 1), (10**9, 1000, 20), (5, 0, 0)],
)  # fmt: skip
def test_balance_steps(local_msat: int, capacity: int, step: int) -> None:
    assert rules.balance_step(local_msat, capacity) == step


def test_peer_rate_one_per_10s_coalescing_to_the_newest() -> None:
    rate = rules.PeerRate()
    assert rate.offer((B, A), b"v1", NOW) == b"v1"
    assert rate.offer((C, A), b"v1", NOW) == b"v1"  # per peer
    assert rate.offer((B, D), b"d1", NOW) == b"d1"  # and per owner
    assert rate.offer((B, A), b"v2", NOW + 3) is None
    assert rate.offer((B, A), b"v3", NOW + 6) is None  # replaces v2: only the newest waits
    assert rate.due(NOW + 9) == []
    assert rate.due(NOW + 10) == [(B, b"v3")]
    assert rate.due(NOW + 30) == []
    assert rate.offer((B, A), b"v4", NOW + 15) is None  # 5 s after v3 went out
    rate.forget(B)
    assert rate.due(NOW + 40) == []


def test_acceptance_version_and_clock_window() -> None:
    rules.check_fresh(rec(version=5), 4, NOW)
    rules.check_fresh(rec(version=1), None, NOW)
    for stored in (5, 6):
        with pytest.raises(Replayed):
            rules.check_fresh(rec(version=5), stored, NOW)
    rules.check_fresh(rec(timestamp=NOW - 3600), None, NOW)
    rules.check_fresh(rec(timestamp=NOW + 300), None, NOW)
    for ts in (NOW - 3601, NOW + 301):
        with pytest.raises(Expired):
            rules.check_fresh(rec(timestamp=ts), None, NOW)


def test_forwarding_decrements_the_ttl_and_never_echoes() -> None:
    # A's record, straight from A, at B: on to B's other connected members
    fwd = rules.forward(owner=A, ttl=3, path=[], came_from=A, me=B, members=[A, C, D])
    assert fwd == rules.Forward(2, (B,), (C, D))
    # at C, from B: never back to B or A, and D is offered it too
    fwd = rules.forward(owner=A, ttl=2, path=[B], came_from=B, me=C, members=[A, B, D, E])
    assert fwd == rules.Forward(1, (B, C), (D, E))
    # the last hop: TTL 0 travels no further
    assert rules.forward(owner=A, ttl=0, path=[B, C, D], came_from=D, me=E, members=[C]) is None
    # nobody left who has not seen it
    assert rules.forward(owner=A, ttl=2, path=[B], came_from=B, me=C, members=[A, B]) is None
    # a full path stops it whatever the TTL says
    path = [f"03{i:064x}" for i in range(10)]
    assert rules.forward(owner=A, ttl=3, path=path, came_from=path[-1], me=C, members=[D]) is None


@pytest.mark.parametrize(
    ("options", "error"),
    [({}, None), ({"hive-gossip-threshold": "25", "hive-heartbeat-interval": "60"}, None),
     ({"hive-gossip-threshold": "0"}, "threshold"), ({"hive-heartbeat-interval": "3601"}, "heartbeat"),
     ({"hive-gossip-threshold": "ten"}, "hive-gossip-threshold")],
)  # fmt: skip
def test_plugin_options(options: dict[str, str], error: str | None) -> None:
    if error is None:
        cfg = fleet_options(options)
        assert 1 <= cfg.gossip_threshold_pct <= 50 and 60 <= cfg.heartbeat_s <= 3600
    else:
        with pytest.raises(InvalidParams, match=error):
            fleet_options(options)
