"""Bids on an RFP (rumor kind 4386, only inside gift wraps): sealed, then revealed.

Before the deadline a bidder sends only a commitment, SHA-256(canonical bid ‖ 32-byte nonce),
so no bid can be tailored to another; after the deadline it sends the bid and the nonce, and
the RFP's author checks the reveal against the commitment it already holds.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from events.canonical import canonical
from events.errors import Expired, InvalidPayload
from events.family import JsonFamily, Payload
from events.kinds import Kind
from events.listing import PricingModel, Trial
from events.types import Hex64

Address = Annotated[str, StringConstraints(pattern=r"^36381:[0-9a-f]{64}:[A-Za-z0-9._:-]{1,64}$")]


class BidTerms(Payload):
    price_sat: int = Field(ge=0)
    pricing_model: PricingModel
    duration_days: int = Field(ge=1, le=3650)
    sla_response_s: int = Field(ge=1, le=7 * 86400)
    trial: Trial | None = None
    note: str = Field(default="", max_length=2000)


class Phase(StrEnum):
    COMMIT = "commit"
    REVEAL = "reveal"


class Bid(Payload):
    rfp: Address
    phase: Phase
    commitment: Hex64
    terms: BidTerms | None = None
    nonce: Hex64 | None = None

    @model_validator(mode="after")
    def _shape(self) -> Bid:
        revealed = self.terms is not None and self.nonce is not None
        if (self.phase == Phase.REVEAL) != revealed:
            raise ValueError("a reveal carries terms and nonce; a commitment carries neither")
        return self


def commitment(terms: BidTerms, nonce: str) -> str:
    """SHA-256(canonical bid terms ‖ nonce bytes), hex."""
    return hashlib.sha256(canonical(terms) + bytes.fromhex(nonce)).hexdigest()


def check_phase(bid: Bid, deadline: int, now: int) -> None:
    """Raise Expired for a commitment after the deadline or a reveal before it, and
    InvalidPayload for a reveal that does not open its commitment."""
    if bid.phase == Phase.COMMIT and now >= deadline:
        raise Expired("bids closed at the deadline; commitments are no longer accepted")
    if bid.phase == Phase.REVEAL:
        if now < deadline:
            raise Expired("reveals are accepted only after the bid deadline")
        assert bid.terms is not None and bid.nonce is not None
        if commitment(bid.terms, bid.nonce) != bid.commitment:
            raise InvalidPayload("the revealed bid does not match its commitment")


FAMILY = JsonFamily(Kind.BID, Bid, alt="Lightning Hive sealed bid")
rumor = FAMILY.rumor
parse = FAMILY.parse_rumor
