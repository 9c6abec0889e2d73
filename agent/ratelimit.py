"""Per-sender token buckets with a bounded number of senders.

Applied to inbound events after the signature check and before any decryption or handler,
so a flood from one key costs a hash and a Schnorr check per event and never delays others.
The table of senders is an LRU of fixed size: a flood from many keys cannot grow memory.
"""

from __future__ import annotations

from collections import OrderedDict


class FloodLimiter:
    def __init__(self, per_minute: int, burst: int, max_senders: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_senders = max_senders
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, sender: str, now: float) -> bool:
        """Take one token from `sender`'s bucket at time `now` (seconds); False if empty."""
        tokens, last = self._buckets.pop(sender, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[sender] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_senders:
            self._buckets.popitem(last=False)
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)
