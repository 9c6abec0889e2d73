"""Anti-entropy bodies (STATE_HASH, SYNC) and the fact set's arithmetic.

Everything durable the fleet agrees on is a *fact*: the latest state record of each member,
membership decisions (joins, promotions, bans, leaves) and, later, intents and settlement votes.
Each fact is proved by one signed frame and named by a 32-byte id derived from what it states
(so two members holding the same fact name it alike, whichever copy they hold), and has a
timestamp taken from the signed content.  A member's set of (timestamp, id) items is compared
with a peer's by a digest (STATE_HASH), and, when they differ, by range-based set
reconciliation (events/negentropy.py) carried in SYNC frames; the facts one side lacks then
travel as their original signed frames and are checked as if they had arrived live.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from typing import Annotated

from pydantic import Field, StringConstraints

from events.canonical import canonical
from events.errors import InvalidPayload
from events.fleet.wire import Body
from events.types import Hex32, Hex64

FACT_TAG = "lightning-hive/fact/v1"
NEG_LIMIT = 40_000  # bytes of one negentropy message: base64 (4/3) + envelope < 65,535
MAX_WANT = 500  # ids asked for in one SYNC frame (64 hex digits each)
MAX_ROUNDS = 24  # negentropy messages one session may carry, both ways together
MAX_FACTS = 1_000_000

FactId = Hex64  # SHA-256, hex
SessionId = Hex32
B64 = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9+/]*={0,2}$", max_length=(NEG_LIMIT + 2) // 3 * 4),
]


class StateHash(Body):
    """A digest of the sender's fact set: SHA-256 over its sorted items, and their number."""

    digest: FactId
    count: Annotated[int, Field(ge=0, le=MAX_FACTS)]


class Sync(Body):
    """One step of a reconciliation session.

    `data`: a negentropy message (base64), initiator → responder and back, `round` counting
    them from 0.  `want`: fact ids the initiator found it lacks, asked of the responder once
    the reconciliation is over (`done` on the last such frame: the session ends)."""

    session: SessionId
    round: Annotated[int, Field(ge=0, le=MAX_FACTS)]  # want frames number on past the rounds
    data: B64 = ""
    want: list[FactId] = Field(default_factory=list, max_length=MAX_WANT)
    done: bool = False


def fact_id(kind: str, *parts: str | int) -> str:
    """The id of a fact: what it states, hashed under the fact tag (hex)."""
    return hashlib.sha256(canonical([FACT_TAG, kind, *parts])).hexdigest()


def set_digest(items: Iterable[tuple[int, bytes]]) -> tuple[str, int]:
    """(SHA-256 over the sorted (timestamp, id) items, their number)."""
    h = hashlib.sha256()
    n = 0
    for ts, item_id in sorted(set(items)):
        h.update(ts.to_bytes(8, "big") + item_id)
        n += 1
    h.update(n.to_bytes(8, "big"))
    return h.hexdigest(), n


def encode_data(message: bytes) -> str:
    return base64.b64encode(message).decode()


def decode_data(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidPayload("a SYNC frame's data is not base64") from None
