"""The contribution ledger's pure rules (ratio, anti-leech, disputes, settlement inputs) with
worked examples and hypothesis; the report and notice bodies' codec; and the store's hash
chain on a real SQLite file: bounded rows rolled up, pruning anchored, a tampered row found."""

from __future__ import annotations

import json
import secrets
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.fleet import contribution_rules as rules
from agent.store import contribution as cdb
from agent.store.db import Store
from events import fleet as wire
from events.errors import InvalidPayload
from events.fleet import MsgType
from events.fleet.contribution import MAX_SHARED, ContributionReport, LeechNotice
from tests.test_fleet_wire import KEYS, NODE

DAY = 86_400
A = "02" + "a" * 64
B = "03" + "b" * 64
msats = st.integers(min_value=0, max_value=10**15)

# --- the ratio -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_msat", "out_msat", "expected"),
    [
        (4_000_000, 1_000_000, Fraction(1, 4)),  # it sent us 4×, we sent it 1×
        (0, 0, Fraction(1)),  # nothing either way: neutral
        (1_000, 50_000, Fraction(10)),  # 50 capped at 10
        (0, 7, Fraction(10)),  # only ours: the cap
        (3_000_000, 1_500_000, Fraction(1, 2)),  # exactly the threshold: not below
    ],
)
def test_ratio_worked_examples(in_msat: int, out_msat: int, expected: Fraction) -> None:
    assert rules.ratio(in_msat, out_msat) == expected


def test_below_needs_enough_traffic_and_a_ratio_under_one_half() -> None:
    assert rules.below(4_000_000, 1_000_000)  # 0.25 on 4,000 sat
    assert not rules.below(3_000_000, 1_500_000)  # 0.5 is not below
    assert not rules.below(999_999, 0)  # under 1,000 sat in: not judged


@given(msats, msats)
def test_ratio_is_bounded_and_monotone(in_msat: int, out_msat: int) -> None:
    r = rules.ratio(in_msat, out_msat)
    assert 0 <= r <= rules.RATIO_CAP
    assert rules.ratio(in_msat, out_msat + 1) >= r  # more carried for us never lowers it
    assert rules.ratio(in_msat + 1, out_msat) <= r or in_msat == 0
    assert 0 <= rules.ratio_ppm(r) <= 10 * rules.PPM


# --- anti-leech ------------------------------------------------------------------------------


def test_seven_days_below_make_a_leech_and_one_good_day_recovers() -> None:
    state, changes = rules.LeechState(), []
    for day in range(100, 107):
        state, change = rules.judge(state, day, 4_000_000, 0)
        changes.append(change)
    assert changes == [""] * 6 + ["leech"]
    assert state == rules.LeechState(100, 7, 106)
    state, change = rules.judge(state, 107, 4_000_000, 0)  # still below: stays a leech
    assert (change, state.leech_since, state.below_days) == ("", 106, 8)
    state, change = rules.judge(state, 108, 4_000_000, 2_000_000)
    assert change == "recovered" and state == rules.LeechState()


def test_a_good_day_inside_the_run_starts_it_again() -> None:
    state = rules.LeechState()
    for day in range(6):
        state, _ = rules.judge(state, day, 4_000_000, 0)
    state, _ = rules.judge(state, 6, 4_000_000, 4_000_000)
    for day in range(7, 13):
        state, change = rules.judge(state, day, 4_000_000, 0)
        assert change == ""
    assert state.leech_since is None and state.below_days == 6


@given(st.lists(st.tuples(msats, msats), max_size=40))
def test_a_leech_always_had_seven_days_below_in_a_row(days: list[tuple[int, int]]) -> None:
    state, run = rules.LeechState(), 0
    for day, (i, o) in enumerate(days):
        state, change = rules.judge(state, day, i, o)
        run = run + 1 if rules.below(i, o) else 0
        assert (state.leech_since is not None) == (run >= rules.LEECH_DAYS)
        assert change != "leech" or run == rules.LEECH_DAYS
        assert state.below_days == run


# --- disputes and settlement inputs -----------------------------------------------------------


def _report(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "fees_msat": 12_345_678, "rebalance_costs_msat": 1_001, "forwards_msat": 9_000_000,
        "capacity_sat": 5_000_000, "uptime_pct": 90, "shared": {A: 200_000_000},
    }  # fmt: skip
    return base | over


def test_report_to_settlement_input_rounds_fees_down_and_costs_up() -> None:
    got = rules.member_input(B, _report())
    assert (got.fees_sat, got.rebalance_costs_sat) == (12_345, 2)
    assert (got.capacity_sat, got.forwards_msat, got.uptime_pct) == (5_000_000, 9_000_000, 90)


def test_disputes_worked_examples() -> None:
    # 200,000 sat observed: the tolerance is 1 % = 2,000,000 msat
    assert rules.disputes(A, _report(), 201_999_999, 85) == []
    flagged = rules.disputes(A, _report(), 197_000_000, 85)
    assert [d["field"] for d in flagged] == ["shared"]
    assert (flagged[0]["reported"], flagged[0]["observed"]) == (200_000_000, 197_000_000)
    assert rules.disputes(A, _report(shared={A: 1}), 197_000_000, 85)[0]["field"] == "shared"
    # small amounts: the floor is 1,000 sat
    assert rules.disputes(A, _report(shared={A: 900_000}), 0, None) == []
    assert rules.disputes(A, _report(shared={A: 1_000_001}), 0, None)[0]["field"] == "shared"
    # uptime: more than 10 points above what we saw
    assert rules.disputes(A, _report(), 200_000_000, 80) == []
    assert [d["field"] for d in rules.disputes(A, _report(), 200_000_000, 79.5)] == ["uptime_pct"]


@given(msats, msats)
def test_a_report_matching_our_view_is_never_disputed(observed: int, delta: int) -> None:
    within = min(delta, rules.tolerance(observed))
    assert rules.disputes(A, _report(shared={A: observed + within}), observed, None) == []
    beyond = rules.tolerance(observed) + 1 + delta
    assert rules.disputes(A, _report(shared={A: observed + beyond}), observed, None)
    if observed >= beyond:
        assert rules.disputes(A, _report(shared={A: observed - beyond}), observed, None)


# --- the bodies' codec ------------------------------------------------------------------------

reports = st.builds(
    ContributionReport,
    node=st.just(NODE),
    period=st.from_regex(r"^20[2-9][0-9]-(0[1-9]|[1-4][0-9]|5[0-2])$", fullmatch=True),
    fees_msat=msats, rebalance_costs_msat=msats, forwards_msat=msats,
    capacity_sat=st.integers(0, 10**12), uptime_pct=st.integers(0, 100),
    shared=st.dictionaries(st.sampled_from([A, B]), msats, max_size=2),
)  # fmt: skip


@settings(max_examples=40)
@given(reports)
def test_a_report_survives_the_wire(body: ContributionReport) -> None:
    frame = wire.build_frame(
        KEYS, MsgType.CONTRIBUTION_REPORT, body, hive="hive_" + "1" * 16,
        msg_id=secrets.token_hex(16), node=NODE, ts=1_800_000_000,
    )  # fmt: skip
    assert wire.parse_frame(frame).body_as(ContributionReport) == body


@pytest.mark.parametrize(
    "change",
    [
        {"fees_msat": -1},  # negative numbers
        {"uptime_pct": 101},
        {"shared": {f"02{i:064x}": 1 for i in range(MAX_SHARED + 1)}},  # oversize
        {"shared": {"not-a-node": 1}},
        {"period": "2026-W49"},
        {"fees_msat": 1.5},
    ],
)
def test_malformed_reports_are_refused_at_the_wire(change: dict[str, object]) -> None:
    good = ContributionReport(
        node=NODE, period="2026-49", fees_msat=1, rebalance_costs_msat=0, forwards_msat=0,
        capacity_sat=0, uptime_pct=0,
    )  # fmt: skip
    raw = wire.build_frame(
        KEYS, MsgType.CONTRIBUTION_REPORT, good, hive="hive_" + "1" * 16,
        msg_id=secrets.token_hex(16), node=NODE, ts=1_800_000_000,
    )  # fmt: skip
    head = raw[:6]  # type + magic; the JSON envelope follows
    env = json.loads(raw[6:])
    env["body"] |= change
    bad = head + json.dumps(env, separators=(",", ":")).encode()
    with pytest.raises(InvalidPayload):
        wire.parse_frame(bad)


days = st.dates().map(lambda d: d.isoformat()).filter(lambda t: len(t) == 10)
notices = st.builds(
    LeechNotice,
    member=st.sampled_from([A, B]), status=st.sampled_from(["leech", "recovered"]),
    day=days, since=days, window_days=st.integers(1, 60), in_msat=msats, out_msat=msats,
    ratio_ppm=st.integers(0, 10 * rules.PPM), threshold_ppm=st.integers(0, rules.PPM),
    below_days=st.integers(0, 10_000), at=st.integers(0, 2**40 - 1),
)  # fmt: skip


@settings(max_examples=40)
@given(notices)
def test_any_leech_notice_survives_the_wire(body: LeechNotice) -> None:
    frame = wire.build_frame(
        KEYS, MsgType.LEECH_NOTICE, body, hive="hive_" + "1" * 16, msg_id=secrets.token_hex(16),
        node=NODE, ts=1_800_000_000,
    )  # fmt: skip
    assert wire.parse_frame(frame).body_as(LeechNotice) == body


def test_a_leech_notice_survives_the_wire() -> None:
    body = LeechNotice(
        member=A, status="leech", day="2026-12-03", since="2026-11-27", window_days=30,
        in_msat=4_000_000, out_msat=0, ratio_ppm=0, threshold_ppm=500_000, below_days=7,
        at=1_800_000_000,
    )  # fmt: skip
    frame = wire.build_frame(
        KEYS, MsgType.LEECH_NOTICE, body, hive="hive_" + "1" * 16, msg_id=secrets.token_hex(16),
        node=NODE, ts=1_800_000_000,
    )  # fmt: skip
    assert wire.parse_frame(frame).body_as(LeechNotice) == body


# --- the chain on a real store ----------------------------------------------------------------


def _ingest(store: Store, now: int, n: int, *, cap: int = cdb.RAW_PER_DAY, peer: str = A) -> None:
    with store.transaction(now) as tx:
        for i in range(n):
            key = rules.forward_key("1x1x0", "2x2x0", 1_000 + i, 990 + i, now, now, f"{i:064x}")
            cdb.ingest_forward(tx, key, now // DAY, peer, "", 1_000 + i, 990 + i, 10, cap)


def test_the_chain_verifies_and_a_tampered_row_is_found(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.sqlite")
    now = 1_800_000_000
    _ingest(store, now, 20)
    with store.transaction(now) as tx:
        assert cdb.record_rebalance(tx, "cmd-1", 1_234)
        assert not cdb.record_rebalance(tx, "cmd-1", 1_234)  # counted once
    assert cdb.verify(store)["ok"] and cdb.verify(store)["rows"] == 21
    with store.transaction(now) as tx:  # an attacker with the file rewrites an amount
        tx.execute(
            "UPDATE contribution_chain SET body = replace(body, '\"in_msat\":1005', "
            "'\"in_msat\":9005') WHERE seq = 6"
        )
    bad = cdb.verify(store)
    assert not bad["ok"] and bad["seq"] == 6 and "hash" in bad["reason"]


def test_a_deleted_row_or_edited_totals_are_found(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.sqlite")
    now = 1_800_000_000
    _ingest(store, now - DAY, 3)  # yesterday
    _ingest(store, now, 5)
    with store.transaction(now) as tx:
        tx.execute("UPDATE contribution_days SET in_msat = in_msat + 1 WHERE member = ?", (A,))
    bad = cdb.verify(store)
    assert not bad["ok"] and "totals" in bad["reason"]
    store2 = Store(tmp_path / "m.sqlite")
    _ingest(store2, now, 5)
    with store2.transaction(now) as tx:
        tx.execute("DELETE FROM contribution_chain WHERE seq = 3")
    gone = cdb.verify(store2)
    assert not gone["ok"] and gone["seq"] == 4


def test_past_the_bound_forwards_roll_up_and_the_chain_still_adds_up(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.sqlite")
    now = 1_800_000_000
    _ingest(store, now, 30, cap=10)  # 10 rows of their own, 20 summed
    assert cdb.chain_size(store) == 10
    assert cdb.verify(store)["ok"]  # the overflow is pending, not missing
    day = cdb.totals(store, now // DAY, now // DAY)[A]
    assert day["forwards"] == 30 and day["in_msat"] == sum(1_000 + i for i in range(30))
    with store.transaction(now + DAY) as tx:
        assert cdb.roll_up(tx, now // DAY + 1) == 1
    assert cdb.chain_size(store) == 11 and cdb.verify(store)["ok"]
    assert cdb.totals(store, now // DAY, now // DAY)[A] == day  # nothing lost
    with store.transaction(now + 40 * DAY) as tx:  # 40 days on: pruned, anchored
        cdb.prune(tx, (now + 40 * DAY) // DAY - rules.KEEP_DAYS + 1)
    assert cdb.chain_size(store) == 0 and cdb.totals(store, 0, 10**9) == {}
    _ingest(store, now + 40 * DAY, 2)
    ok = cdb.verify(store)
    assert ok["ok"] and ok["anchor"]["seq"] == 11  # the new rows chain on from the anchor


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 10**9)), min_size=1, max_size=30))
def test_ingest_then_replay_counts_each_forward_once(
    tmp_path_factory: pytest.TempPathFactory, forwards: list[tuple[int, int]]
) -> None:
    store = Store(tmp_path_factory.mktemp("h") / "l.sqlite")
    now = 1_800_000_000
    peers = [A, B, "", A]
    for _ in range(2):  # delivered twice
        with store.transaction(now) as tx:
            for i, (who, amount) in enumerate(forwards):
                key = rules.forward_key("1x1x0", "2x2x0", amount, amount, 0.0, 0.0, str(i))
                cdb.ingest_forward(tx, key, now // DAY, peers[who], "", amount + 1, amount, 1, 5)
    own = cdb.totals(store, now // DAY, now // DAY)[cdb.OWN]
    assert own["forwards"] == len(forwards)
    assert own["in_msat"] == sum(a + 1 for _, a in forwards)
    assert cdb.verify(store)["ok"]
