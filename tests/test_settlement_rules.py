"""The settlement's arithmetic (agent/fleet/settlement_rules.py): worked examples with every
step written out, ISO-week periods at week and year changes (the upstream audit found them
wrong), and properties over any inputs: the plan sums exactly, nobody pays themselves, and the
same inputs in any order give the same hash."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.fleet import settlement_rules as sr
from agent.fleet.settlement_rules import MemberInput, compute_plan
from events.errors import InvalidParams

A, B, C, D = ("02" + ch * 64 for ch in "abcd")


def utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp())  # type: ignore[misc]


# --- worked examples ----------------------------------------------------------------------


def test_worked_example_three_members():
    """
    A: fees 10,000, rebalances 2,000 → net 8,000;  B: no fees → net 0;
    C: fees 500, rebalances 900 → net max(0, −400) = 0 (upstream #42: never negative).
    total = 8,000.  Σcapacity = 3,500,000, Σforwards = 60,000,000 msat, Σuptime = 240.
    weight A = 3·1.0M/3.5M + 6·50M/60M + 1·100/240 = 6/7 + 5 + 5/12   = 527/84
    weight B = 3·2.0M/3.5M + 6·10M/60M + 1·90/240  = 12/7 + 1 + 3/8   = 173/56
    weight C = 3·0.5M/3.5M + 6·0       + 1·50/240  = 3/7 + 5/24       = 107/168
    Σweight = 10, so share = 8,000 · weight / 10:
      A 5,019.05 → 5,019;  B 2,471.43 → 2,471;  C 509.52 → 509;  Σ 7,999, one sat left over,
      to the largest remainder (C .52 > B .43 > A .05): C 510.
    balance = share − net: A −2,981, B +2,471, C +510 (Σ 0).
    min payment = max(100, 8,000 // (10·3) = 266) = 266.
    A pays B 2,471 (the largest receiver first), then C 510.
    """
    plan = compute_plan("2026-49", [
        MemberInput(C, 500, 900, 500_000, 0, 50),
        MemberInput(A, 10_000, 2_000, 1_000_000, 50_000_000, 100),
        MemberInput(B, 0, 0, 2_000_000, 10_000_000, 90),
    ])  # fmt: skip
    rows = {r["node"]: r for r in plan.explain()["members"]}
    assert [rows[n]["weight"] for n in (A, B, C)] == ["527/84", "173/56", "107/168"]
    assert plan.total_sat == 8_000
    assert plan.shares == {A: 5_019, B: 2_471, C: 510}
    assert plan.balances == {A: -2_981, B: 2_471, C: 510}
    assert plan.min_payment_sat == 266
    assert plan.payments == (sr.Transfer(A, B, 2_471), sr.Transfer(A, C, 510))
    assert plan.forgiven_sat == 0
    assert plan.owed_by(A) == list(plan.payments) and plan.owed_to(B) == [plan.payments[0]]


def test_worked_example_ties_and_a_forgiven_transfer():
    """
    Four members alike in capacity, forwards and uptime: equal weights.
    nets A 1,000, B 0, C 0, D 250 → total 1,250 → 312.5 each → 312 each (1,248), two sats
    left over, every remainder .5: ties go by node id, so A and B get 313.
    balances: A 313 − 1,000 = −687, B +313, C +312, D 312 − 250 = +62.
    min payment = max(100, 1,250 // 40 = 31) = 100.
    A pays B 313, C 312; the last 62 to D is under the minimum: forgiven, not sent.
    """
    inputs = [MemberInput(n, fees, 0, 1_000_000, 5_000_000, 99) for n, fees in
              ((A, 1_000), (B, 0), (C, 0), (D, 250))]  # fmt: skip
    plan = compute_plan("2026-49", inputs)
    assert plan.shares == {A: 313, B: 313, C: 312, D: 312}
    assert plan.balances == {A: -687, B: 313, C: 312, D: 62}
    assert plan.min_payment_sat == 100
    assert plan.payments == (sr.Transfer(A, B, 313), sr.Transfer(A, C, 312))
    assert plan.forgiven_sat == 62


def test_a_zero_fee_period_is_empty_and_pays_nothing():
    plan = compute_plan("2026-49", [MemberInput(A, 0, 0, 1, 1, 100), MemberInput(B, 5, 9, 1, 1, 1)])
    assert plan.empty and plan.payments == () and set(plan.shares.values()) == {0}


def test_a_fleet_without_forwards_splits_by_the_other_terms():
    """Σforwards = 0: that term drops; weights are capacity and uptime only (3:1)."""
    plan = compute_plan("2026-49", [
        MemberInput(A, 1_000, 0, 3_000_000, 0, 100),
        MemberInput(B, 0, 0, 1_000_000, 0, 100),
    ])  # fmt: skip
    # A: 3·3/4 + 1·1/2 = 2.75; B: 3·1/4 + 1·1/2 = 1.25; of 1,000: 687.5 and 312.5 → 687 + 312,
    # the sat left over ties at .5: the lower node id (A) takes it.  A (net 1,000) pays B 312.
    assert plan.shares == {A: 688, B: 312}
    assert plan.payments == (sr.Transfer(A, B, 312),)


def test_inputs_are_checked():
    with pytest.raises(InvalidParams):
        MemberInput(A, -1, 0, 0, 0, 0)
    with pytest.raises(InvalidParams):
        MemberInput(A, 0, 0, 0, 0, 101)
    with pytest.raises(InvalidParams):
        compute_plan("2026-49", [MemberInput(A, 1, 0, 0, 0, 0), MemberInput(A, 2, 0, 0, 0, 0)])
    with pytest.raises(InvalidParams):
        compute_plan("2026-54", [])


# --- periods ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "period"),
    [
        (utc(2026, 11, 30), "2026-49"),  # a Monday, 00:00 UTC: the week starts here
        (utc(2026, 11, 29, 23, 59, 59), "2026-48"),  # the Sunday before
        (utc(2026, 12, 31, 12), "2026-53"),  # 2026 has 53 ISO weeks (it starts on a Thursday)
        (utc(2027, 1, 3, 23, 59, 59), "2026-53"),  # the new year's first days: still 2026-53
        (utc(2027, 1, 4), "2027-01"),
        (utc(2025, 12, 29), "2026-01"),  # ISO 2026 starts in December 2025
        (utc(2025, 12, 28, 23, 59, 59), "2025-52"),
        (utc(2021, 1, 3), "2020-53"),
    ],
)
def test_period_of_at_week_and_year_changes(ts: int, period: str):
    assert sr.period_of(ts) == period
    start, end = sr.period_bounds(period)
    assert start <= ts < end and end - start == 7 * 86_400
    assert dt.datetime.fromtimestamp(start, dt.UTC).weekday() == 0


def test_period_neighbours_and_bad_periods():
    assert sr.previous_period("2027-01") == "2026-53"
    assert sr.next_period("2026-53") == "2027-01"
    assert sr.previous_period("2026-01") == "2025-52"
    assert sr.parse_period("2026-W05") == (2026, 5)
    for bad in ("2025-53", "2026-00", "2026-5", "26-05", "2026-05-01", "last week"):
        with pytest.raises(InvalidParams):
            sr.parse_period(bad)


@given(st.integers(min_value=0, max_value=2**34))
def test_every_instant_lies_in_its_period(ts: int):
    period = sr.period_of(ts)
    start, end = sr.period_bounds(period)
    assert start <= ts < end
    assert sr.next_period(sr.previous_period(period)) == period


# --- properties -----------------------------------------------------------------------------

nodes = st.lists(
    st.binary(min_size=32, max_size=32).map(lambda b: "02" + b.hex()),
    min_size=1, max_size=12, unique=True,
)  # fmt: skip
figures = st.tuples(
    st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**10), st.integers(0, 10**12),
    st.integers(0, 100),
)  # fmt: skip


@st.composite
def member_inputs(draw: st.DrawFn) -> list[MemberInput]:
    return [MemberInput(n, *draw(figures)) for n in draw(nodes)]


@settings(max_examples=300)
@given(member_inputs(), st.randoms(use_true_random=False))
def test_the_plan_sums_exactly_and_nobody_pays_themselves(inputs, rnd):
    plan = compute_plan("2026-49", inputs)
    assert sum(plan.shares.values()) == plan.total_sat == sum(m.net_sat for m in inputs)
    assert sum(plan.balances.values()) == 0
    paid: dict[str, int] = {}
    got: dict[str, int] = {}
    for p in plan.payments:
        assert p.payer != p.receiver
        assert plan.balances[p.payer] < 0 < plan.balances[p.receiver]
        assert p.amount_sat >= plan.min_payment_sat >= 100
        paid[p.payer] = paid.get(p.payer, 0) + p.amount_sat
        got[p.receiver] = got.get(p.receiver, 0) + p.amount_sat
    assert all(paid[n] <= -plan.balances[n] for n in paid)
    assert all(got[n] <= plan.balances[n] for n in got)
    owed = sum(-b for b in plan.balances.values() if b < 0)
    assert sum(p.amount_sat for p in plan.payments) + plan.forgiven_sat == owed
    # nobody gets more than its exact share rounded up
    sums = {k: sum(m.metric(k) for m in inputs) for k, _ in sr.WEIGHTS}
    weights = {m.node: sr._weight(m, sums) for m in inputs}
    whole = sum(weights.values(), Fraction(0)) or None
    for m in inputs:
        exact = (
            Fraction(plan.total_sat, len(inputs))
            if whole is None
            else plan.total_sat * weights[m.node] / whole
        )
        assert exact - 1 < plan.shares[m.node] < exact + 1
    shuffled = list(inputs)
    rnd.shuffle(shuffled)
    again = compute_plan("2026-49", shuffled)
    assert (again.plan_hash, again.data_hash, again.payments) == (
        plan.plan_hash, plan.data_hash, plan.payments,
    )  # fmt: skip


@given(member_inputs(), st.integers(0, 4), st.integers(1, 1000))
def test_any_changed_input_changes_the_data_hash(inputs, field, bump):
    m = inputs[0]
    values = [m.fees_sat, m.rebalance_costs_sat, m.capacity_sat, m.forwards_msat, m.uptime_pct]
    values[field] = values[field] + bump if field != 4 else (values[4] + bump) % 101
    if values[field] == [m.fees_sat, m.rebalance_costs_sat, m.capacity_sat, m.forwards_msat,
                         m.uptime_pct][field]:  # fmt: skip
        return
    changed = [MemberInput(m.node, *values), *inputs[1:]]
    assert sr.data_hash("2026-49", changed) != sr.data_hash("2026-49", inputs)
    assert sr.data_hash("2026-50", inputs) != sr.data_hash("2026-49", inputs)
