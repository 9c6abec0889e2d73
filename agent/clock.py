"""Clocks.  Everything time-based takes one of these, so tests can be exact and fast."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> int:
        """Unix time in whole seconds."""
        ...


class SystemClock:
    """The machine's wall clock."""

    def now(self) -> int:
        return int(time.time())


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: int = 1_700_000_000) -> None:
        self._now = start

    def now(self) -> int:
        return self._now

    def advance(self, seconds: int) -> None:
        self._now += seconds


class ShiftedClock:
    """The wall clock moved by an offset: from `start` (default: now) it runs at real speed,
    and `advance` moves it on at once (days pass in an instant while the members keep
    running: simulated fleets, the demo, tests, benchmarks)."""

    def __init__(self, start: int | None = None) -> None:
        self.offset = 0 if start is None else start - int(time.time())

    def now(self) -> int:
        return int(time.time()) + self.offset

    def advance(self, seconds: int) -> None:
        self.offset += int(seconds)
