"""Exponential backoff with jitter, shared by relay reconnection and outbox retries."""

from __future__ import annotations

import random

_RNG = random.SystemRandom()


def delay(
    attempt: int, base: float, cap: float, jitter: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait before attempt number `attempt` (0 = first retry).

    base·2^attempt, capped at `cap`, plus a random extra of up to `jitter` × that, so that many
    agents who lost the same relay do not all come back in the same second.
    """
    raw = min(cap, base * (2 ** min(attempt, 32)))
    return float(raw * (1 + jitter * (rng or _RNG).random()))
