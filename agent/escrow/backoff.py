"""When to try again what failed: after 2, 4, … up to 300 s (a mint that is down is not asked
every second; each redemption attempt records one more swap start)."""

from __future__ import annotations

from collections.abc import Hashable

MAX_WAIT_S = 300


class Backoff:
    def __init__(self) -> None:
        self._waits: dict[Hashable, tuple[int, int]] = {}  # key → (failures, not before)

    def due(self, key: Hashable, now: int) -> bool:
        return self._waits.get(key, (0, 0))[1] <= now

    def failed(self, key: Hashable, now: int) -> None:
        failures = self._waits.get(key, (0, 0))[0] + 1
        self._waits[key] = (failures, now + min(MAX_WAIT_S, 2**failures))

    def succeeded(self, key: Hashable) -> None:
        self._waits.pop(key, None)
