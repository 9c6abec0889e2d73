"""Requests for proposals (kind 36381, addressable): an operator's want-to-buy.

NIP-99 has no want-to-buy convention yet, so RFPs get their own addressable kind from the
hive block.  Bids answer privately (gift-wrapped `events.bid`) to the RFP's author, sealed
until `bid_deadline` and revealed after it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from events.family import JsonFamily, Payload
from events.kinds import Kind
from events.listing import Capability, SchemaRef, ServiceType

RfpId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
BID_WINDOW_MAX_S = 14 * 86400  # UPSTREAM 04: bids due within 7 days, award within 14


class Rfp(Payload):
    rfp_id: RfpId
    service: ServiceType
    need: Capability  # the primary capability wanted
    capabilities: list[Capability] = Field(default_factory=list, max_length=16)
    schemas: list[SchemaRef] = Field(default_factory=list, max_length=32)
    max_price_sat: int = Field(ge=0)
    duration_days: int = Field(ge=1, le=3650)
    description: str = Field(default="", max_length=8000)
    posted_at: int = Field(ge=0)
    bid_deadline: int = Field(ge=0)
    award_by: int = Field(ge=0)

    @model_validator(mode="after")
    def _windows(self) -> Rfp:
        if not self.posted_at < self.bid_deadline <= self.award_by:
            raise ValueError("posted_at < bid_deadline <= award_by must hold")
        if self.award_by - self.posted_at > BID_WINDOW_MAX_S:
            raise ValueError("awards are due within 14 days of posting")
        return self


def address(pubkey: str, rfp_id: str) -> str:
    return f"{Kind.RFP}:{pubkey}:{rfp_id}"


def _tags(item: Rfp) -> list[list[str]]:
    return [
        ["d", item.rfp_id],
        ["t", "hive-rfp"],
        ["t", f"hive-{item.service.value}"],
        ["capability-needed", item.need],
        ["max-price-sats", str(item.max_price_sat)],
        ["bid-deadline", str(item.bid_deadline)],
    ]


FAMILY = JsonFamily(Kind.RFP, Rfp, alt="Lightning Hive request for proposals", derived_tags=_tags)
build = FAMILY.build
parse = FAMILY.parse
