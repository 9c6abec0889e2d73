"""Per-sender token buckets with a bounded number of senders.

Applied to inbound events after the signature check and before any decryption or handler,
so a flood from one key costs a hash and a Schnorr check per event and never delays others.
The table of senders is an LRU of fixed size: a flood from many keys cannot grow memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

STRANGER, KNOWN, TRUSTED = 0, 1, 2  # a seal signer's standing with this agent (WrapGuard)


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


class WrapGuard:
    """Limits for gift wraps, whose outer key NIP-59 makes new for every message (so the
    per-sender limiter above sees a different sender each time).

    * Wraps that do not open (junk, or sealed for someone else) draw on one global budget;
      once it is spent, further failures are refused as RATE_LIMITED and not remembered, so
      a flood of them cannot fill the store.
    * Once a wrap is open, its seal names the real sender.  Trusted keys (the operator and
      approvers, advisors we granted a credential, nodes we sent commands to, contract
      parties) pass.  Keys we merely heard from — a node that granted us a credential, an
      offer's sender: anyone can become one with a single message — draw on a per-key
      bucket of their own (`per_known_per_minute`) and on one budget shared by all of them
      (`known_per_minute`: many keys made known one by one do not add up to an unlimited
      flood).  Strangers draw on a per-stranger bucket
      and on one budget shared by all strangers, so a flood of valid wraps from fresh keys is
      refused before any rumor handler runs.
    * Optionally, a NIP-13 proof-of-work floor on the wrap's id (checked before any crypto).
    """

    def __init__(
        self,
        *,
        failures_per_minute: int = 600,
        failures_burst: int = 300,
        strangers_per_minute: int = 1200,
        strangers_burst: int = 600,
        per_stranger_per_minute: int = 60,
        per_stranger_burst: int = 30,
        per_known_per_minute: int = 600,
        known_per_minute: int = 6_000,
        max_senders: int = 10_000,
        min_pow: int = 0,
        standing: Callable[[str], int] = lambda pubkey: STRANGER,
    ) -> None:
        self.failures = FloodLimiter(failures_per_minute, failures_burst, 1)
        self.strangers = FloodLimiter(strangers_per_minute, strangers_burst, 1)
        self.per_stranger = FloodLimiter(per_stranger_per_minute, per_stranger_burst, max_senders)
        self.per_known = FloodLimiter(
            per_known_per_minute, max(1, per_known_per_minute // 2), max_senders
        )
        self.known_total = FloodLimiter(known_per_minute, max(1, known_per_minute // 2), 1)
        self.min_pow = min_pow
        self.standing = standing

    def failed(self, now: float) -> bool:
        """A wrap failed to open: False once the budget for such failures is spent."""
        return self.failures.allow("", now)

    def admit(self, sender: str, now: float) -> bool:
        """May the seal signer `sender`'s message be opened and handled now?"""
        standing = self.standing(sender)
        if standing >= TRUSTED:
            return True
        if standing == KNOWN:  # (one budget for them all too: keys are free to make known)
            return self.per_known.allow(sender, now) and self.known_total.allow("", now)
        return self.per_stranger.allow(sender, now) and self.strangers.allow("", now)


class Strikes:
    """Peers whose messages keep being refused.  Each refusal takes a token from the peer's
    bucket (`burst`, refilled at `per_minute`); a peer that empties it is muted for `mute_s`:
    its frames are dropped unread — not parsed, verified, counted, logged or answered one by
    one (a legitimate sender's outbox retries them later).  A fleet peer sending junk or
    refused frames otherwise cost a signature check, a store transaction, a log line and a
    signed acknowledgement (one `sendcustommsg`) each."""

    def __init__(
        self, per_minute: int = 600, burst: int = 300, mute_s: int = 60, max_peers: int = 4096
    ) -> None:
        self._tokens = FloodLimiter(per_minute, burst, max_peers)
        self.mute_s = mute_s
        self.max_peers = max_peers
        self._until: OrderedDict[str, float] = OrderedDict()
        self.dropped = 0  # frames dropped unread while their sender was muted

    def muted(self, peer: str, now: float) -> bool:
        """True (and the frame counted as dropped) while `peer` is muted."""
        until = self._until.get(peer)
        if until is None:
            return False
        if now < until:
            self.dropped += 1
            return True
        del self._until[peer]
        return False

    def strike(self, peer: str, now: float) -> bool:
        """One of `peer`'s messages was refused; True if that mutes it now."""
        if self._tokens.allow(peer, now):
            return False
        self._until[peer] = now + self.mute_s
        if len(self._until) > self.max_peers:
            self._until.popitem(last=False)
        return True
