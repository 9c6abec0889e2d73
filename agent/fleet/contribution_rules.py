"""The contribution ledger's rules, pure (no store, clock or node): a forward's key, the
contribution ratio, the anti-leech judgement, when a member's report is disputed, and a report
as a settlement input.

**Contribution ratio** of member m, as this node measures it over the `WINDOW_DAYS` (30) UTC
days ending with the day judged:

    in_m   = msat of settled forwards that came IN to us from m   (we carried m's traffic)
    out_m  = msat of settled forwards we sent OUT to m            (m carried ours)
    ratio_m = out_m / in_m            if in_m > 0, capped at RATIO_CAP (10)
            = 1 (neutral)             if in_m = out_m = 0
            = RATIO_CAP               if in_m = 0 < out_m

Worked: in 4,000,000 msat, out 1,000,000 → 0.25; in 0, out 0 → 1; in 1,000, out 50,000 → 10
(capped from 50).  A member is *below* on a day when its ratio < 0.5 and in_m ≥
`MIN_JUDGED_MSAT` (1,000 sat: a member that sent us next to nothing is not judged on dust).

**Anti-leech**: after `LEECH_DAYS` (7) consecutive days below, the member loses the zero-fee
treatment on our channels to it (the same path as a member that left); the first day it is
not below, it recovers and gets it back.  Both changes are announced with their numbers.

**Disputes**: a member's report for a period disagrees with what we observed when its
`shared[us]` differs from the msat we measured through our channels with it in that period
by more than max(1 %, 1,000 sat), or its uptime is more than 10 points above what we saw.
Both sides count the forwards they made: an HTLC that crossed the shared channel and was
forwarded by both is in both counts, alike.  One that either of us sent or received itself
(a payment, a circular rebalance) is in the other's count only, so heavy own traffic through
a fellow member can raise a dispute: it is a flag for the operators, never an automatic
correction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from agent.fleet.settlement_rules import MemberInput, period_bounds

DAY_S = 86_400
WINDOW_DAYS = 30
LEECH_DAYS = 7
THRESHOLD = Fraction(1, 2)
RATIO_CAP = Fraction(10)
MIN_JUDGED_MSAT = 1_000_000
KEEP_DAYS = 35  # day totals and chain rows kept; older days are pruned (anchored)
KEY_KEEP_S = 3 * DAY_S  # forward keys kept: a forward replayed within this is counted once
DISPUTE_PCT = 1
DISPUTE_FLOOR_MSAT = 1_000_000
UPTIME_SLACK_PCT = 10
PPM = 1_000_000


def forward_key(
    in_channel: str, out_channel: str, in_msat: int, out_msat: int, received: float,
    resolved: float, payment_hash: str = "", in_htlc_id: int | None = None,
) -> str:  # fmt: skip
    """A settled forward's identity: the same forward delivered twice has the same key."""
    text = "|".join(
        map(str, (in_channel, out_channel, in_msat, out_msat, repr(float(received)),
                  repr(float(resolved)), payment_hash, in_htlc_id))
    )  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()


def day_of(ts: int) -> int:
    return ts // DAY_S


def day_text(day: int) -> str:
    return dt.datetime.fromtimestamp(day * DAY_S, dt.UTC).strftime("%Y-%m-%d")


def period_days(period: str) -> tuple[int, int]:
    """The first and last UTC day of an ISO week (inclusive)."""
    start, end = period_bounds(period)
    return start // DAY_S, end // DAY_S - 1


# --- the ratio and anti-leech -----------------------------------------------------------------


def ratio(in_msat: int, out_msat: int) -> Fraction:
    """out ÷ in (see the module docstring): 0/0 → 1, x/0 → the cap, never above it."""
    if in_msat < 0 or out_msat < 0:
        raise ValueError("amounts are never negative")
    if in_msat == 0:
        return Fraction(1) if out_msat == 0 else RATIO_CAP
    return min(Fraction(out_msat, in_msat), RATIO_CAP)


def ratio_ppm(value: Fraction) -> int:
    return int(value * PPM)


def below(in_msat: int, out_msat: int) -> bool:
    """A member under the threshold on enough traffic to be judged."""
    return in_msat >= MIN_JUDGED_MSAT and ratio(in_msat, out_msat) < THRESHOLD


@dataclass(frozen=True)
class LeechState:
    below_since: int | None = None  # first day of the current run below
    below_days: int = 0
    leech_since: int | None = None  # the day the treatment was withdrawn


def judge(state: LeechState, day: int, in_msat: int, out_msat: int) -> tuple[LeechState, str]:
    """One day's judgement: the new state and what changed ("leech", "recovered" or "")."""
    if below(in_msat, out_msat):
        since = state.below_since if state.below_since is not None else day
        n = state.below_days + 1
        if state.leech_since is None and n >= LEECH_DAYS:
            return LeechState(since, n, day), "leech"
        return replace(state, below_since=since, below_days=n), ""
    recovered = state.leech_since is not None
    return LeechState(), "recovered" if recovered else ""


# --- reports as settlement inputs, and disputes ---------------------------------------------


def member_input(node: str, report: dict[str, Any]) -> MemberInput:
    """A report as the settlement takes it: fees rounded down to the sat, costs up."""
    return MemberInput(
        node=node,
        fees_sat=int(report["fees_msat"]) // 1000,
        rebalance_costs_sat=-(-int(report["rebalance_costs_msat"]) // 1000),
        capacity_sat=int(report["capacity_sat"]),
        forwards_msat=int(report["forwards_msat"]),
        uptime_pct=int(report["uptime_pct"]),
    )


def tolerance(observed_msat: int) -> int:
    return max(observed_msat * DISPUTE_PCT // 100, DISPUTE_FLOOR_MSAT)


def disputes(
    me: str, report: dict[str, Any], observed_msat: int, uptime_seen: float | None
) -> list[dict[str, Any]]:
    """What in `report` (by its author, about a period) disagrees with our own view: the
    msat through our shared channels, and its uptime.  [{field, reported, observed, reason}]."""
    out: list[dict[str, Any]] = []
    reported = int(report.get("shared", {}).get(me, 0))
    if abs(reported - observed_msat) > tolerance(observed_msat):
        out.append({
            "field": "shared", "reported": reported, "observed": observed_msat,
            "reason": (
                f"it reports {reported:,} msat through our channels; we measured "
                f"{observed_msat:,} (tolerance {tolerance(observed_msat):,})"
            ),
        })  # fmt: skip
    claimed = int(report["uptime_pct"])
    if uptime_seen is not None and claimed > uptime_seen + UPTIME_SLACK_PCT:
        seen = int(uptime_seen)
        out.append({
            "field": "uptime_pct", "reported": claimed, "observed": seen,
            "reason": f"it claims {claimed} % uptime; we saw {seen} % (slack {UPTIME_SLACK_PCT})",
        })  # fmt: skip
    return out
