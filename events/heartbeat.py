"""Contract heartbeats (kind 36382, addressable per contract).

The provider of a lease or an advisor publishes one every `heartbeat_interval_s`; each expires
after two intervals (NIP-40), so relays forget stale ones.  Three missed in a row end a lease
or flag an advisor (agent/market/heartbeats.py).
"""

from __future__ import annotations

from pydantic import Field

from events.family import JsonFamily, Payload
from events.kinds import Kind
from events.types import Hex64


class Heartbeat(Payload):
    contract: Hex64
    seq: int = Field(ge=0)
    sent_at: int = Field(ge=0)
    uptime_bp: int = Field(ge=0, le=10_000)  # uptime since the last beat, in basis points


def _tags(beat: Heartbeat) -> list[list[str]]:
    return [["d", beat.contract], ["t", "hive-heartbeat"]]


FAMILY = JsonFamily(
    Kind.HEARTBEAT, Heartbeat, alt="Lightning Hive contract heartbeat", derived_tags=_tags
)
build = FAMILY.build
parse = FAMILY.parse
