"""Trial terms (UPSTREAM 04): 7–30 days, 500–5,000 sat; at most two at once per client;
14 days' cooldown before a trial with a different provider; repeats with the same provider
within 90 days cost ×2, then ×3.  A trial passes with ≥ 10 actions, ≥ 95 % uptime, revenue
no worse than −5 % and a 95th-percentile response within 30 minutes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from events.errors import Restricted

MAX_CONCURRENT = 2
COOLDOWN_S = 14 * 86400
REPEAT_WINDOW_S = 90 * 86400
PENDING_S = 7 * 86400  # a trial we offered counts as running for a week, or until accepted


def check_allowed(history: list[dict[str, Any]], provider: str, now: int) -> None:
    """Raise Restricted when the client has two trials running or is inside the cooldown."""
    running = [t for t in history if t["ends_at"] > now]
    if len(running) >= MAX_CONCURRENT:
        raise Restricted(f"at most {MAX_CONCURRENT} trials may run at once")
    others = [t for t in history if t["provider"] != provider and t["ends_at"] > now - COOLDOWN_S]
    if others:
        wait = (max(t["ends_at"] for t in others) + COOLDOWN_S - now) // 86400 + 1
        raise Restricted(f"a trial with a different provider ended recently; wait {wait} more days")


def trial_price(history: list[dict[str, Any]], provider: str, base_price_sat: int, now: int) -> int:
    """The price of a new trial with `provider`: ×1, ×2, then ×3 for repeats within 90 days.

    Raises Restricted like `check_allowed`.
    """
    check_allowed(history, provider, now)
    repeats = sum(
        1 for t in history if t["provider"] == provider and t["started_at"] > now - REPEAT_WINDOW_S
    )
    return base_price_sat * min(3, repeats + 1)


@dataclass(frozen=True)
class TrialResult:
    passed: bool
    reasons: list[str]


def evaluate(
    actions: int, uptime_pct: float, revenue_delta_pct: float, p95_response_s: int
) -> TrialResult:
    reasons = []
    if actions < 10:
        reasons.append(f"only {actions} actions (10 needed)")
    if uptime_pct < 95:
        reasons.append(f"uptime {uptime_pct:.1f} % (95 % needed)")
    if revenue_delta_pct < -5:
        reasons.append(f"revenue fell {-revenue_delta_pct:.1f} % (at most 5 %)")
    if p95_response_s > 1800:
        reasons.append(f"p95 response {p95_response_s // 60} min (30 min allowed)")
    return TrialResult(not reasons, reasons)
