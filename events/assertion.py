"""NIP-85 trusted assertions about a pubkey (kind 30382): this agent's reputation summary of an
agent it has issued credentials about, in the shape any NIP-85 client reads.

    {"kind": 30382, "content": "",
     "tags": [["d", <subject pubkey>], ["rank", "0"…"100"], ["p", <subject pubkey>]]}

Addressable by (issuer, `d` = subject): a newer summary replaces the older one.  `rank` is the
aggregate of the issuer's own unrevoked credentials about the subject (agent/market/reputation
.py); `p` lets clients filter by subject as well as by `d`.
"""

from __future__ import annotations

import nostr_sdk as sdk
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from events.base import NostrEvent, Rumor, require_kind, require_tags, sign_event, tag_value
from events.errors import InvalidPayload
from events.family import Signed
from events.kinds import Kind
from events.types import XOnly, first_error


class UserRank(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: XOnly
    rank: int = Field(ge=0, le=100)


def tags(item: UserRank) -> list[list[str]]:
    return [["d", item.subject], ["rank", str(item.rank)], ["p", item.subject]]


def build(keys: sdk.Keys, item: UserRank, *, created_at: int) -> NostrEvent:
    """A signed kind-30382 assertion (empty content, as NIP-85 has it)."""
    return sign_event(keys, Kind.USER_ASSERTION, "", tags(item), created_at)


def parse(ev: Rumor) -> Signed[UserRank]:
    """The rank a kind-30382 event asserts; WrongKind, MissingTag or InvalidPayload."""
    require_kind(ev, Kind.USER_ASSERTION)
    require_tags(ev, ["d", "rank"])
    rank = tag_value(ev.tags, "rank") or ""
    try:
        if not (rank.isascii() and rank.isdigit() and len(rank) <= 3):
            raise ValueError("rank must be an integer from 0 to 100")
        item = UserRank(subject=tag_value(ev.tags, "d"), rank=int(rank))
    except (ValidationError, ValueError) as exc:
        first = first_error(exc) if isinstance(exc, ValidationError) else str(exc)
        raise InvalidPayload(f"trusted assertion: {first}"[:300]) from None
    return Signed(item, ev.id, ev.pubkey, ev.created_at, ev.kind)


def address(issuer: str, subject: str) -> str:
    return f"{Kind.USER_ASSERTION}:{issuer}:{subject}"
