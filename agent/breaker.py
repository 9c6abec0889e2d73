"""A circuit breaker for calls into something that may fail or hang: lightningd itself
(agent/node/cln.py) and other plugins on the node (agent/fleet/bridge.py).

Closed: calls go through.  `threshold` failures — each within `window_s` of the newest, with no
success between them — open it.  Open: calls are refused at once with the breaker's typed error
(no attempt is made).  After `reset_s` it is half-open: calls go through as probes; `successes`
of them in a row close it, one failure opens it again for another `reset_s`.  A call that does
not answer within its timeout counts as a failure (`run`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, TypeVar

import anyio

from agent.errors import NodeUnavailable
from events.errors import HiveError

T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Closed → (`failures` within `window_s`) → open for `reset_s` → half-open probes →
    closed after `successes` in a row, or open again after one failure."""

    def __init__(
        self,
        failures: int = 5,
        reset_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        window_s: float | None = None,
        successes: int = 1,
        name: str = "the node",
        error: type[HiveError] = NodeUnavailable,
    ) -> None:
        self.threshold, self.reset_s, self.clock = failures, reset_s, clock
        self.window_s, self.needed, self.name, self.error = window_s, successes, name, error
        self._failed_at: list[float] = []
        self._probed = 0  # successes in a row while half-open
        self.opened_at: float | None = None
        self.last_error: str | None = None

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self.opened_at < self.reset_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    @property
    def failures(self) -> int:
        """Failures that count towards opening (within the window), or that opened it."""
        if self.opened_at is None and self.window_s is not None:
            now = self.clock()
            return sum(1 for t in self._failed_at if now - t < self.window_s)
        return len(self._failed_at)

    def check(self) -> None:
        """Raises the breaker's error while it is open."""
        if self.state == BreakerState.OPEN:
            wait = self.reset_s - (self.clock() - (self.opened_at or 0))
            last = f" (last: {self.last_error})" if self.last_error else ""
            raise self.error(
                f"{self.name} failed {self.failures} times in a row; retrying in {wait:.0f} s{last}"
            )

    def success(self) -> None:
        state = self.state
        if state == BreakerState.HALF_OPEN:
            self._probed += 1
            if self._probed < self.needed:
                return
        elif state == BreakerState.OPEN:
            return  # a call from before it opened: the probes decide
        self._failed_at, self._probed, self.opened_at = [], 0, None

    def failure(self, error: str | None = None) -> None:
        now = self.clock()
        self.last_error = error or self.last_error
        if self.state == BreakerState.HALF_OPEN:
            self.opened_at, self._probed = now, 0
            return
        if self.window_s is not None:
            self._failed_at = [t for t in self._failed_at if now - t < self.window_s]
        self._failed_at.append(now)
        if self.opened_at is None and len(self._failed_at) >= self.threshold:
            self.opened_at = now

    async def run(self, call: Callable[[], Awaitable[T]], *, timeout_s: float, what: str) -> T:
        """`call()` through the breaker: refused while open, at most `timeout_s` seconds (a
        hang is a failure, raised as the breaker's error), any HiveError a failure too."""
        self.check()
        try:
            with anyio.fail_after(timeout_s):
                result = await call()
        except TimeoutError:
            self.failure(f"{what}: no answer within {timeout_s:g} s")
            raise self.error(f"{what} got no answer within {timeout_s:g} s") from None
        except HiveError as exc:
            self.failure(f"{what}: {exc}")
            raise
        self.success()
        return result

    def report(self) -> dict[str, Any]:
        """What `hive-status` shows: state, failures counted, the last error."""
        return {
            "state": self.state.value,
            "failures": self.failures,
            "last_error": self.last_error,
        }
