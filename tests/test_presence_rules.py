"""Presence and quorum rules, pure: quorums over active full members (the table in
agent/fleet/rules.py), the plausibility of a named electorate, uptime credited per UTC day
(gaps, restarts, clock jumps), uptime %, the minting rate, and how many channels fit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.fleet import gossip_rules as rules
from agent.fleet.rules import ban_quorum, electorate, plausible_electorate, promotion_quorum
from events.errors import RateLimited
from events.fleet import StateRecord

DAY = 86_400
T0 = 20_000 * DAY  # a UTC midnight
GAP = rules.uptime_gap(300)  # 660 s


# --- quorums over active full members --------------------------------------------------------

# (full members, of which active, this node full) → (voters, promotion quorum, ban quorum)
QUORUMS = [
    (1, 1, (1, 1, 1)),
    (3, 3, (3, 2, 3)),
    (3, 2, (2, 2, 2)),
    (3, 1, (1, 1, 1)),  # only us: the others unheard of for a day
    (5, 5, (5, 3, 4)),
    (5, 2, (2, 2, 2)),
    (10, 10, (10, 6, 7)),
    (10, 4, (4, 3, 3)),
    (50, 50, (50, 26, 34)),
    (50, 12, (12, 7, 9)),
]


@pytest.mark.parametrize(("members", "active", "want"), QUORUMS)
def test_quorums_count_active_full_members(
    members: int, active: int, want: tuple[int, int, int]
) -> None:
    full = [f"m{i:02}" for i in range(members)]  # m00 is this node
    heard = full[1:active]  # we never hear of ourselves: we count anyway
    voters = electorate(full, heard, "m00")
    assert len(voters) == want[0]
    assert (promotion_quorum(len(voters)), ban_quorum(len(voters))) == want[1:]


def test_the_electorate_is_full_active_members_and_us_never_the_subject() -> None:
    full = ["a", "b", "c", "me"]
    assert electorate(full, ["a", "x", "neo"], "me") == {"a", "me"}  # x, neo: not full
    assert electorate(full, ["a", "b"], "me", subject="a") == {"b", "me"}
    assert electorate(["a", "b"], ["a", "b"], "neo") == {"a", "b"}  # we are a neophyte


@pytest.mark.parametrize(
    ("named", "here", "ok"),
    [(1, 1, True), (1, 2, True), (1, 3, False), (2, 4, True), (2, 5, False), (5, 10, True),
     (4, 10, False), (3, 0, True)],
)  # fmt: skip
def test_a_named_electorate_must_be_at_least_half_ours(named: int, here: int, ok: bool) -> None:
    assert plausible_electorate(named, here) is ok


# --- uptime -----------------------------------------------------------------------------------


def test_evidence_within_the_gap_is_credited_per_day() -> None:
    first = rules.credit(None, T0 + 100, T0 + 100, GAP)
    assert first == rules.Credit(T0 + 100, T0 + 100, ())  # the first evidence credits nothing
    got = rules.credit((T0 + 100, T0 + 100), T0 + 400, T0 + 400, GAP)
    assert got == rules.Credit(T0 + 100, T0 + 400, ((20_000, 300),))
    across = rules.credit((T0, DAY * 20_001 - 200), DAY * 20_001 + 100, DAY * 20_001 + 100, GAP)
    assert across is not None and across.days == ((20_000, 200), (20_001, 100))


def test_a_gap_a_stale_mark_and_a_clock_jump_credit_nothing() -> None:
    last = (T0, T0 + 1000)
    gap = rules.credit(last, T0 + 1000 + GAP + 1, T0 + 5000, GAP)  # down meanwhile (or we were)
    assert gap == rules.Credit(T0, T0 + 1001 + GAP, ())
    assert rules.credit(last, T0 + 900, T0 + 2000, GAP) is None  # older evidence (forwarded)
    assert rules.credit(last, T0 + 1000, T0 + 2000, GAP) is None  # the same
    # our clock went back an hour: the mark is in our future; counting restarts from now
    back = rules.credit(last, T0 - 2600, T0 - 2600, GAP)
    assert back == rules.Credit(T0 - 2600, T0 - 2600, ())
    # forward a day: a gap, nothing credited
    ahead = rules.credit(last, T0 + 1000 + DAY, T0 + 1000 + DAY, GAP)
    assert ahead is not None and ahead.days == ()


@given(st.lists(st.integers(min_value=-3 * DAY, max_value=3 * DAY), min_size=1, max_size=60))
def test_no_day_is_ever_credited_more_than_a_day(steps: list[int]) -> None:
    """Any sequence of evidence times, jumping back and forth: the credited seconds of a day
    (before the store's own cap) never exceed the day, nor the span the evidence covers."""
    mark: tuple[int, int] | None = None
    total: dict[int, int] = {}
    now = T0
    for step in steps:
        now += step
        got = rules.credit(mark, now, now, GAP)
        if got is None:
            continue
        for day, s in got.days:
            assert 0 < s <= DAY
            total[day] = total.get(day, 0) + s
        mark = (got.since, got.at)
    assert sum(total.values()) <= sum(abs(s) for s in steps)


def test_uptime_pct_over_what_we_observed() -> None:
    now = T0 + 10 * DAY + DAY // 2
    ours = {20_000 + d: DAY for d in range(10)} | {20_010: DAY // 2}
    half = {20_000 + d: DAY // 2 for d in range(10)} | {20_010: DAY // 4}
    assert rules.uptime_pct(half, ours, T0, now) == 50.0
    # first seen at noon of day 5: only what we observed since counts
    late = {20_005: DAY // 2} | {20_000 + d: DAY for d in range(6, 10)} | {20_010: DAY // 2}
    assert rules.uptime_pct(late, ours, T0 + 5 * DAY + DAY // 2, now) == 100.0
    assert rules.uptime_pct({}, {}, now, now) is None
    # 40 days: only the last 30 count
    long = {20_000 + d: DAY for d in range(40)}
    assert rules.uptime_pct(long, long, T0, T0 + 39 * DAY + DAY - 1) == 100.0
    old = {20_000 + d: DAY for d in range(10)}  # up only in days that left the window
    assert rules.uptime_pct(old, long, T0, T0 + 39 * DAY + DAY - 1) == 0.0


def test_split_days() -> None:
    assert rules.split_days(T0 - 10, T0 + DAY + 5) == [(19_999, 10), (20_000, DAY), (20_001, 5)]
    assert rules.split_days(T0, T0) == []


# --- minting and fitting ----------------------------------------------------------------------


def _rec(ts: int) -> StateRecord:
    return StateRecord(
        owner="02" + "a" * 64, version=2, timestamp=ts, capacity_sat=0, outbound_sat=0,
        channels=[], offered_sat=0, features=[], uptime_s=0,
    )  # fmt: skip


def test_an_owner_minting_faster_than_the_gap_is_rate_limited() -> None:
    rules.check_minting(_rec(T0 + 10), T0)  # 10 s apart: fine
    rules.check_minting(_rec(T0), None)  # nothing stored
    for ts in (T0 + 9, T0, T0 - 100):  # sooner, the same second, or dated before it
        with pytest.raises(RateLimited):
            rules.check_minting(_rec(ts), T0)
    assert rules.mint_wait(T0 + 3, T0) == 7
    assert rules.mint_wait(T0 + 10, T0) == 0
    assert rules.mint_wait(T0, 0) == 0  # never minted
    assert rules.mint_wait(T0 - 50, T0) == 60  # our clock went back: wait for it


@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=250))
def test_most_that_fit(n: int, limit: int) -> None:
    calls: list[int] = []

    def fits(k: int) -> bool:
        calls.append(k)
        return k <= limit

    assert rules.most_that_fit(n, fits) == min(n, limit)
    assert len(calls) <= 10  # one try, then a binary search
