"""What `hive-agent relay` accepts when it is not a loopback test relay.

The embedded relay exists for the demo, tests and small private deployments.  Left open, bound
to a public address, it would store anything anyone sends at a million events a minute.  The
write policy admits only what Lightning Hive agents publish — the hive's kinds, at sizes and
dates an agent produces — at a rate a person or an agent really sends, per client address.
Public relays for real traffic should be production relays (strfry, nostr-rs-relay, …).

`judge()` is the pure decision (tested directly); `HiveWritePolicy` adapts it to nostr-sdk's
`WritePolicy` callback.  nostr-sdk's relay answers every policy refusal as `blocked: …`, so a
rate limit reads `blocked: rate-limited: …` (agents retry those: agent/outbox.py).
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from dataclasses import dataclass

import nostr_sdk as sdk

from agent.ratelimit import FloodLimiter
from events.kinds import Kind

# every kind an agent publishes in the open (rumors never reach a relay unwrapped)
ACCEPTED_KINDS = frozenset(
    {
        Kind.DELETION,
        Kind.GIFT_WRAP,
        Kind.LABEL,
        Kind.RELAY_LIST,
        Kind.DM_RELAYS,
        Kind.CLASSIFIED_LISTING,
        Kind.USER_ASSERTION,
        Kind.HANDLER_INFO,
        *range(36380, 36390),
        0,  # the agent's NIP-01 profile
    }
)
MAX_EVENT_BYTES = 65_536
MAX_TAGS = 300
PAST_S = 3 * 86400  # gift wraps are dated up to two days back; replaceable lists live longer
FUTURE_S = 600
TOTAL_FACTOR = 20  # the whole relay takes at most this many clients' worth of events


@dataclass(frozen=True)
class Limits:
    per_minute: int = 600  # events per client address
    burst: int = 120
    max_addresses: int = 10_000


def host_of(socket_addr: str) -> str:
    """The client's address without its port (IPv4 `a.b.c.d:p`, IPv6 `[..]:p`)."""
    host = socket_addr.rsplit(":", 1)[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))  # one client, one /64
    return str(ip)


def judge(
    kind: int, size: int, tags: int, created_at: int, replaceable: bool, now: int
) -> str | None:
    """Why an event is refused (a NIP-01 `OK false` reason), or None to store it."""
    if kind not in ACCEPTED_KINDS:
        return f"blocked: kind {kind} is not a Lightning Hive kind"
    if size > MAX_EVENT_BYTES:
        return f"invalid: event larger than {MAX_EVENT_BYTES} bytes"
    if tags > MAX_TAGS:
        return f"invalid: more than {MAX_TAGS} tags"
    if created_at > now + FUTURE_S:
        return "invalid: created_at is too far in the future"
    if created_at < now - PAST_S and not replaceable:
        return "invalid: created_at is too far in the past"
    return None


class HiveWritePolicy(sdk.WritePolicy):
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.flood = FloodLimiter(
            self.limits.per_minute, self.limits.burst, self.limits.max_addresses
        )
        # all clients together: a client rotating addresses (an IPv6 prefix holds millions of
        # /64s) gets a fresh burst from each, but not more than this in all
        self.total = FloodLimiter(
            self.limits.per_minute * TOTAL_FACTOR, self.limits.burst * TOTAL_FACTOR, 1
        )
        self.refused: OrderedDict[str, int] = OrderedDict()  # reason prefix -> count

    async def admit_event(self, event: sdk.Event, socket_addr: str) -> sdk.WritePolicyResult:
        # an exception escaping this callback aborts the whole relay process (uniffi panics),
        # so every failure here is a refusal instead
        try:
            reason = self._reason(event, socket_addr)
        except Exception as exc:  # noqa: BLE001 - see above
            reason = f"error: the relay could not check this event ({type(exc).__name__})"
        if reason is None:
            return sdk.WritePolicyResult.ACCEPT()
        key = reason.split(":", 1)[0]
        self.refused[key] = self.refused.get(key, 0) + 1
        # nostr-sdk's relay puts `blocked: ` in front of every policy refusal itself
        return sdk.WritePolicyResult.REJECT(reason.removeprefix("blocked: "))

    def _reason(self, event: sdk.Event, socket_addr: str) -> str | None:
        kind = event.kind().as_u16()
        reason = judge(
            kind,
            len(event.as_json()),
            len(event.tags()),
            event.created_at().as_secs(),
            kind in (0, 3) or 10000 <= kind < 20000 or 30000 <= kind < 40000,
            int(time.time()),
        )
        now = time.monotonic()
        if reason is None and not (
            self.flood.allow(host_of(socket_addr), now) and self.total.allow("", now)
        ):
            reason = "rate-limited: slow down"
        return reason
