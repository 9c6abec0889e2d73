"""The fleet wire's basics: frame limits and tags, message types, node ids, invite requirement
bits, and the strict base of every body."""

from __future__ import annotations

import re
from enum import IntEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from events.errors import InvalidPayload
from events.types import first_error

MAGIC = b"HIVE"
MAX_FRAME = 65_535  # BOLT 1: the whole message, 2-byte type included
MAX_TICKET = 10_240
VERSION = 1
FRAME_TAG = "lightning-hive/fleet/v1"
TICKET_TAG = "lightning-hive/invite/v1"

NODE_ID = re.compile(r"^0[23][0-9a-f]{64}$")
HiveId = Annotated[str, StringConstraints(pattern=r"^hive_[0-9a-f]{16}$")]
Zbase = Annotated[str, StringConstraints(pattern=r"^[ybndrfg8ejkmcpqxot1uwisza345h769]{100,110}$")]
Text = Annotated[str, StringConstraints(max_length=280)]
Unix = Annotated[int, Field(ge=0, lt=2**40)]
STRICT = ConfigDict(strict=True, frozen=True, extra="forbid")
One = Annotated[int, Field(ge=1, le=1)]  # strict int: `true` is not 1 here (a Literal[1] allows it)


class MsgType(IntEnum):
    """Custom message types (UPSTREAM.md §2 numbering; MEMBER_JOINED is ours)."""

    HELLO = 32769
    CHALLENGE = 32771
    ATTEST = 32773
    WELCOME = 32775
    GOSSIP = 32777
    STATE_HASH = 32779
    SYNC = 32781  # UPSTREAM's FULL_SYNC slot: here, range-based set reconciliation
    INTENT = 32783
    INTENT_ACK = 32785
    INTENT_ABORT = 32787
    VOUCH = 32789
    BAN = 32791
    PROMOTION = 32793
    MEMBER_LEFT = 32797
    BAN_PROPOSAL = 32799
    BAN_VOTE = 32801
    SETTLEMENT_PROPOSE = 32847
    SETTLEMENT_READY = 32849
    SETTLEMENT_EXECUTED = 32851
    MSG_ACK = 32881
    MEMBER_JOINED = 32905
    INTENT_COMMIT = 32907
    INTENT_DONE = 32909
    CONTRIBUTION_REPORT = 32911  # a member's own figures for a settled period (a fact)
    LEECH_NOTICE = 32913  # a member lost (or regained) our zero-fee treatment, with the numbers
    SETTLEMENT_INVOICE_REQUEST = 32915
    SETTLEMENT_INVOICE = 32917


TierName = Literal["neophyte", "member"]

# requirement bits of an invite ticket (UPSTREAM.md §2) and the manifest feature names
REQUIREMENT_BITS = {"splice": 1, "dual_fund": 2, "anchor": 4, "onion": 8}


def is_node_id(value: object) -> bool:
    """True for a Lightning node id: 33-byte compressed key, lowercase hex."""
    return isinstance(value, str) and NODE_ID.fullmatch(value) is not None


def requirement_names(bits: int) -> list[str]:
    return [name for name, bit in REQUIREMENT_BITS.items() if bits & bit]


def requirement_bits(names: list[str]) -> int:
    unknown = [n for n in names if n not in REQUIREMENT_BITS]
    if unknown:
        raise InvalidPayload(
            f"unknown requirement {unknown[0]!r}; known: {', '.join(REQUIREMENT_BITS)}"
        )
    bits = 0
    for name in names:
        bits |= REQUIREMENT_BITS[name]
    return bits


class Body(BaseModel):
    model_config = STRICT


def validated(model: type[Any], data: Any, what: str) -> Any:
    """`model` from `data`, or InvalidPayload naming `what` and the first problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidPayload(f"{what}: {first_error(exc)}") from None
