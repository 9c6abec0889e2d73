"""State gossip's rules, pure (no store, clock or node: times and records are given).

- When to send our own record: capacity or outbound liquidity moved by the threshold (10 %,
  1–50), any fee-policy or HTLC-limit field changed, a channel opened or closed, or the
  heartbeat (300 s, 60–3600) is due.
- The per-peer rate: at most one record per 10 s to a peer; what is held back meanwhile is
  replaced by the newest (coalescing), never queued behind it.
- Accepting a record: a version above the stored one (else REPLAYED), a timestamp within
  −3600/+300 s of the receiver's clock (else EXPIRED).
- Minting: an owner mints at most one version per 10 s (its record timestamps at least that
  far apart); a receiver refuses a newer version dated sooner after the stored one
  (RATE_LIMITED).  Forwarded copies carry the owner's timestamp, so any number of paths and
  any delay leave a legit owner's records apart.
- Forwarding an accepted record: TTL 3 decremented per hop, the path of forwarders at most 10
  long, never to a node on the path, the owner or the peer it came from.
- Uptime: evidence that a node is up (a frame from it, its record, its connection, for us our
  own loop) credits the time since the previous evidence to UTC days, if it is no older than
  the gap allowed (twice the heartbeat, plus a minute); a longer gap credits nothing (it was,
  or may have been, down), as does evidence older than the last, and a last mark in our
  future (our clock went back) only restarts the count.  Uptime % over 30 days is the seconds
  credited over the seconds we observed (our own uptime since we first saw it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from events.errors import Expired, InvalidParams, RateLimited, Replayed
from events.fleet.gossip import BALANCE_STEPS, MAX_PATH, MAX_TTL, ChannelEntry, StateRecord

THRESHOLD_PCT = 10
THRESHOLD_RANGE = (1, 50)
HEARTBEAT_S = 300
HEARTBEAT_RANGE = (60, 3600)
PEER_GAP_S = 10  # at most one record per peer per 10 s
PAST_WINDOW_S = 3600
FUTURE_WINDOW_S = 300
DAY_S = 86_400
UPTIME_DAYS = 30
POLICY_FIELDS = ("fee_base_msat", "fee_ppm", "htlc_min_msat", "htlc_max_msat", "cltv_delta")


class Why(StrEnum):
    """Why a record is sent."""

    FIRST = "first"  # nothing was sent before
    CAPACITY = "capacity"
    OUTBOUND = "outbound"
    POLICY = "policy"  # a fee-policy or HTLC-limit field
    TOPOLOGY = "topology"  # a channel opened or closed
    HEARTBEAT = "heartbeat"


@dataclass(frozen=True)
class Decision:
    send: bool
    why: tuple[Why, ...] = ()


def check_options(threshold_pct: int, heartbeat_s: int) -> None:
    """Raise InvalidParams unless both options are within their bounds."""
    lo, hi = THRESHOLD_RANGE
    if not lo <= threshold_pct <= hi:
        raise InvalidParams(f"the gossip threshold is {lo}–{hi} %, not {threshold_pct}")
    lo, hi = HEARTBEAT_RANGE
    if not lo <= heartbeat_s <= hi:
        raise InvalidParams(f"the heartbeat interval is {lo}–{hi} s, not {heartbeat_s}")


def moved(old: int, new: int, threshold_pct: int) -> bool:
    """True if `new` differs from `old` by at least `threshold_pct` % of `old`."""
    if old == 0:
        return new != 0
    return abs(new - old) * 100 >= threshold_pct * old


def _open(channels: Iterable[ChannelEntry]) -> dict[str, ChannelEntry]:
    return {c.scid: c for c in channels if c.state != "closing"}


def policy_changed(old: ChannelEntry, new: ChannelEntry) -> bool:
    return any(getattr(old, f) != getattr(new, f) for f in POLICY_FIELDS)


def changes(last: StateRecord, new: StateRecord, threshold_pct: int) -> tuple[Why, ...]:
    """What changed enough between the record last sent and `new` to send it now."""
    why: list[Why] = []
    if moved(last.capacity_sat, new.capacity_sat, threshold_pct):
        why.append(Why.CAPACITY)
    if moved(last.outbound_sat, new.outbound_sat, threshold_pct):
        why.append(Why.OUTBOUND)
    before, after = _open(last.channels), _open(new.channels)
    if before.keys() != after.keys():
        why.append(Why.TOPOLOGY)
    if any(policy_changed(before[s], after[s]) for s in before.keys() & after.keys()):
        why.append(Why.POLICY)
    return tuple(why)


def decide(
    last: StateRecord | None,
    new: StateRecord,
    *,
    since_last_s: int,
    threshold_pct: int = THRESHOLD_PCT,
    heartbeat_s: int = HEARTBEAT_S,
) -> Decision:
    """Send `new` or not, and why, given the record last sent `since_last_s` seconds ago."""
    if last is None:
        return Decision(True, (Why.FIRST,))
    why = changes(last, new, threshold_pct)
    if since_last_s >= heartbeat_s:
        why = (*why, Why.HEARTBEAT)
    return Decision(bool(why), why)


def balance_step(local_msat: int, capacity_sat: int) -> int:
    """Our share of a channel in 5 % steps (0 … 20), rounded to the nearest step."""
    if capacity_sat <= 0:
        return 0
    step = (local_msat * BALANCE_STEPS * 2 + capacity_sat * 1000) // (capacity_sat * 1000 * 2)
    return max(0, min(BALANCE_STEPS, step))


# --- the per-peer rate --------------------------------------------------------------------


def rate_allows(last_sent_at: int | None, now: int, gap_s: int = PEER_GAP_S) -> bool:
    return last_sent_at is None or now - last_sent_at >= gap_s


Stream = tuple[str, str]  # (peer, record owner): each owner's records to a peer


class PeerRate:
    """At most one record of an owner to a peer per `gap_s`; a record held back is replaced
    by a newer one (coalescing: only the newest waits).  Pure: the caller gives the time."""

    def __init__(self, gap_s: int = PEER_GAP_S) -> None:
        self.gap_s = gap_s
        self.last: dict[Stream, int] = {}
        self.held: dict[Stream, bytes] = {}

    def offer(self, stream: Stream, frame: bytes, now: int) -> bytes | None:
        """`frame` if it may go now (recorded as sent), else None (held, as the newest)."""
        if rate_allows(self.last.get(stream), now, self.gap_s):
            self.last[stream] = now
            self.held.pop(stream, None)
            return frame
        self.held[stream] = frame
        return None

    def due(self, now: int) -> list[tuple[str, bytes]]:
        """(peer, frame) for each held record that may now go (each recorded as sent)."""
        return [(s[0], frame) for s, frame in self.due_streams(now)]

    def due_streams(self, now: int) -> list[tuple[Stream, bytes]]:
        """((peer, owner), frame) for each held record that may now go (recorded as sent)."""
        out = [s for s in sorted(self.held) if rate_allows(self.last[s], now, self.gap_s)]
        for stream in out:
            self.last[stream] = now
        return [(s, self.held.pop(s)) for s in out]

    def forget(self, peer: str) -> None:
        """The peer went away: what was held for it is dropped (heartbeats repair it)."""
        for stream in [s for s in self.held if s[0] == peer]:
            del self.held[stream]


def most_that_fit(n: int, fits: Callable[[int], bool]) -> int:
    """The largest k ≤ n with fits(k) (fits is monotone: fewer always fit); 0 if none."""
    if fits(n):
        return n
    lo, hi = 0, n  # fits(lo) assumed (an empty list), not fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


# --- acceptance and forwarding --------------------------------------------------------------


def check_fresh(record: StateRecord, stored_version: int | None, now: int) -> None:
    """Raise REPLAYED for a version not above the stored one, EXPIRED outside the window."""
    if stored_version is not None and record.version <= stored_version:
        raise Replayed(f"state version {record.version} is not above the stored {stored_version}")
    if record.timestamp > now + FUTURE_WINDOW_S:
        raise Expired(f"the state record is dated {record.timestamp - now} s in the future")
    if record.timestamp < now - PAST_WINDOW_S:
        raise Expired(f"the state record is {now - record.timestamp} s old; the limit is 3600 s")


def check_minting(record: StateRecord, stored_ts: int | None, gap_s: int = PEER_GAP_S) -> None:
    """Raise RATE_LIMITED for a new version dated less than `gap_s` after the stored one: its
    owner mints faster than the sending rule allows (legit owners coalesce)."""
    if stored_ts is not None and record.timestamp < stored_ts + gap_s:
        raise RateLimited(
            f"state version {record.version} is dated {record.timestamp - stored_ts} s after the"
            f" stored one; an owner mints at most one per {gap_s} s"
        )


def mint_wait(now: int, last_minted_at: int, gap_s: int = PEER_GAP_S) -> int:
    """Seconds until our next version may be minted (0: now).  A last mint in our future (the
    clock went back) waits for the clock: receivers judge by the timestamps."""
    if last_minted_at <= 0:
        return 0
    return max(0, last_minted_at + gap_s - now)


@dataclass(frozen=True)
class Forward:
    ttl: int
    path: tuple[str, ...]
    to: tuple[str, ...]


def forward(
    *, owner: str, ttl: int, path: Iterable[str], came_from: str, me: str, members: Iterable[str]
) -> Forward | None:
    """Where an accepted record goes next, or None: the TTL is spent or the path full.
    `members` are the connected members we could send to."""
    path = tuple(path)
    if ttl <= 0 or len(path) + 1 > MAX_PATH:
        return None
    visited = {owner, came_from, me, *path}
    to = tuple(sorted(m for m in set(members) if m not in visited))
    if not to:
        return None
    return Forward(min(ttl, MAX_TTL) - 1, (*path, me), to)


# --- uptime -------------------------------------------------------------------------------------


def uptime_gap(heartbeat_s: int) -> int:
    """The longest silence still counted as up: a heartbeat missed, and a minute."""
    return 2 * heartbeat_s + 60


def split_days(start: int, end: int) -> list[tuple[int, int]]:
    """(UTC day, seconds) covering [start, end)."""
    out: list[tuple[int, int]] = []
    t = start
    while t < end:
        day = t // DAY_S
        stop = min(end, (day + 1) * DAY_S)
        out.append((day, stop - t))
        t = stop
    return out


@dataclass(frozen=True)
class Credit:
    since: int  # the first evidence kept
    at: int  # the last evidence
    days: tuple[tuple[int, int], ...]  # seconds to credit, per UTC day


def credit(last: tuple[int, int] | None, at: int, now: int, gap_s: int) -> Credit | None:
    """What evidence that a node was up at `at` credits (our clock reads `now`), given the
    previous (since, at); None: nothing changes (evidence no newer than the last)."""
    if last is None:
        return Credit(at, at, ())
    since, prev = last
    if prev > now + FUTURE_WINDOW_S:  # the last mark is in our future: the clock went back
        return Credit(min(since, at), at, ())
    if at <= prev:
        return None
    if at - prev > gap_s:  # down (or unobserved) meanwhile: nothing credited
        return Credit(since, at, ())
    return Credit(since, at, tuple(split_days(prev, at)))


def uptime_pct(up: dict[int, int], observed: dict[int, int], since: int, now: int) -> float | None:
    """A node's uptime % over the last 30 days: its seconds up over the seconds we observed
    (our own uptime) since we first saw it; None before anything was observed."""
    first = max(now // DAY_S - UPTIME_DAYS + 1, since // DAY_S)
    seen = 0
    for day in range(first, now // DAY_S + 1):
        ours = observed.get(day, 0)
        if day == since // DAY_S:  # the day we first saw it: only what we observed after
            ours = min(ours, min(now, (day + 1) * DAY_S) - since)
        seen += max(0, ours)
    got = sum(s for d, s in up.items() if d >= first)
    if seen <= 0:
        return None
    return round(min(100.0, 100.0 * got / seen), 1)
