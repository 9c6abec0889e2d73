"""Heartbeat accounting: missed beats end a lease or flag an advisor; uptime feeds ranking."""

from __future__ import annotations

MISSES_ALLOWED = 2  # the third miss in a row ends a lease or flags an advisor
WINDOW_S = 30 * 86400


def too_soon(last_received_at: int | None, interval_s: int, now: int) -> bool:
    """UPSTREAM: beats closer than half an interval are rejected — counted by when *we*
    received them, so a burst of beats backdated one interval apart buys no uptime."""
    return last_received_at is not None and now - last_received_at < interval_s / 2


def missed(last_beat_at: int, interval_s: int, now: int) -> int:
    """Whole intervals since the last beat without a new one."""
    return max(0, (now - last_beat_at) // interval_s)


def verdict(last_beat_at: int, interval_s: int, now: int) -> bool:
    """True once three beats in a row are missing."""
    return missed(last_beat_at, interval_s, now) > MISSES_ALLOWED


def uptime(
    beats: list[int], interval_s: int, started_at: int, now: int, window_s: int = WINDOW_S
) -> float | None:
    """Share of the expected beats received over the window (None when none were expected)."""
    start = max(started_at, now - window_s)
    expected = (now - start) // interval_s
    if expected <= 0:
        return None
    received = sum(1 for t in beats if start <= t <= now)
    return min(1.0, received / expected)
