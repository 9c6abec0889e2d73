"""Backoff with jitter and the per-sender flood limiter."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from agent.backoff import delay
from agent.ratelimit import FloodLimiter


@given(
    attempt=st.integers(0, 200),
    base=st.floats(0.01, 10),
    cap=st.floats(1, 3600),
    jitter=st.floats(0, 1),
    seed=st.integers(),
)
def test_delay_bounds(attempt: int, base: float, cap: float, jitter: float, seed: int) -> None:
    raw = min(cap, base * 2**attempt)
    d = delay(attempt, base, cap, jitter, random.Random(seed))
    assert raw <= d <= raw * (1 + jitter) + 1e-9


def test_delay_grows_then_caps_and_jitter_spreads() -> None:
    rng = random.Random(1)
    plain = [delay(a, 1, 60, 0, rng) for a in range(10)]
    assert plain == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    spread = {round(delay(3, 1, 60, 0.25, rng), 3) for _ in range(50)}
    assert len(spread) > 40  # agents that lost the same relay do not return in lockstep


def test_burst_then_rate() -> None:
    limiter = FloodLimiter(per_minute=60, burst=5, max_senders=100)
    assert [limiter.allow("a", 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert limiter.allow("b", 0.0)  # another sender is unaffected
    assert limiter.allow("a", 1.0)  # one token per second refills
    assert not limiter.allow("a", 1.0)


def test_sender_table_is_bounded() -> None:
    limiter = FloodLimiter(per_minute=60, burst=1, max_senders=100)
    for i in range(10_000):
        limiter.allow(f"sender{i}", 0.0)
    assert len(limiter) == 100
