"""Service listings as NIP-99 classified listings (kind 30402), browsable by any Nostr client.

Generic marketplace clients read the NIP-99 fields: `d`, `title`, `summary`, `published_at`
(the *first* publication time: an update or refresh keeps it, `created_at` says how recent the
version is), `location` (`online`: a Lightning service has no place; nostr-tools'
`nip99.validateEvent` refuses a listing without one), `price [amount, "SAT", frequency]`,
`status`, `t`, Markdown content (the summary when there is no description), NIP-40
`expiration`, NIP-31 `alt`.  Hive agents also read the machine terms in further tags:

    ["service", "advisor"|"liquidity"]     ["pricing-model", model]
    ["capability", name, "primary"|"secondary"]   (also mirrored as `t` tags)
    ["schema", "hive:fee-policy/v1"] …     ["mint", url] …
    ["sla-response-time", seconds]         ["capacity", sats]     ["duration-days", n]
    ["trial", days, price_sat]             ["did", "did:nostr:<hex pubkey>"]

A withdrawn listing keeps its `d` with `status` = `sold` (the NIP-99 word for "no longer
available") and is also deleted with NIP-09.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import nostr_sdk as sdk
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from events.base import (
    NostrEvent,
    Rumor,
    require_kind,
    require_tags,
    require_unexpired,
    sign_event,
    tag_value,
    tag_values,
)
from events.errors import InvalidPayload, InvalidTag
from events.family import Signed
from events.kinds import Kind
from events.types import first_error

ListingId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
Capability = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
SchemaRef = Annotated[str, StringConstraints(pattern=r"^hive:[a-z-]{2,30}(/v[0-9]+|/\*)$")]
MintUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s]{1,200}$")]
MAX_DESCRIPTION = 16_000
LOCATION = "online"


class ServiceType(StrEnum):
    ADVISOR = "advisor"
    LIQUIDITY = "liquidity"


class PricingModel(StrEnum):
    # advisor services
    PER_ACTION = "per-action"
    SUBSCRIPTION = "subscription"
    PERFORMANCE = "performance"
    # liquidity services
    SAT_HOURS = "sat-hours"
    FLAT = "flat"
    REVENUE_SHARE = "revenue-share"
    YIELD_CURVE = "yield-curve"
    AUCTION = "auction"
    DYNAMIC = "dynamic"


ADVISOR_MODELS = {PricingModel.PER_ACTION, PricingModel.SUBSCRIPTION, PricingModel.PERFORMANCE}


class Frequency(StrEnum):
    ACTION = "action"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


class ListingStatus(StrEnum):
    ACTIVE = "active"
    WITHDRAWN = "sold"  # NIP-99's word for "no longer available"


class Trial(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    days: int = Field(ge=7, le=30)
    price_sat: int = Field(ge=500, le=5000)


MAX_LIFETIME_S = 366 * 86400  # a listing is re-published to live longer


class Listing(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    listing_id: ListingId
    service: ServiceType
    title: str = Field(min_length=1, max_length=120)
    summary: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=MAX_DESCRIPTION)
    price_sat: int = Field(ge=0, le=21_000_000 * 100_000_000)
    frequency: Frequency
    pricing_model: PricingModel
    primary: Capability
    secondary: list[Capability] = Field(default_factory=list, max_length=16)
    schemas: list[SchemaRef] = Field(default_factory=list, max_length=32)
    sla_response_s: int = Field(default=3600, ge=1, le=7 * 86400)
    mints: list[MintUrl] = Field(default_factory=list, max_length=8)
    capacity_sat: int | None = Field(default=None, ge=0)
    duration_days: int | None = Field(default=None, ge=1, le=3650)
    trial: Trial | None = None
    status: ListingStatus = ListingStatus.ACTIVE
    published_at: int = Field(ge=0)
    expires_at: int = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _no_copy_of_summary(cls, data: Any) -> Any:
        """A description equal to the summary is no description: the content defaults to the
        summary, so reading it back must not make one up."""
        if isinstance(data, dict) and data.get("description") == data.get("summary"):
            return {**data, "description": ""}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Listing:
        advisor = self.service == ServiceType.ADVISOR
        if advisor != (self.pricing_model in ADVISOR_MODELS):
            raise ValueError(
                f"pricing model {self.pricing_model} does not fit a {self.service} service"
            )
        if self.expires_at <= self.published_at:
            raise ValueError("a listing must expire after it is published")
        if self.primary in self.secondary:
            raise ValueError("the primary capability is not also secondary")
        return self

    @property
    def capabilities(self) -> list[str]:
        return [self.primary, *self.secondary]


def did(pubkey: str) -> str:
    """The `did:nostr` identifier of a Nostr public key."""
    return f"did:nostr:{pubkey}"


def coordinate(pubkey: str, listing_id: str) -> str:
    """The NIP-01 address of a listing (`30402:<pubkey>:<d>`), for `a` tags and deletions."""
    return f"{Kind.CLASSIFIED_LISTING}:{pubkey}:{listing_id}"


def _tags(item: Listing, pubkey: str) -> list[list[str]]:
    tags = [
        ["d", item.listing_id],
        ["title", item.title],
        ["summary", item.summary],
        ["published_at", str(item.published_at)],
        ["location", LOCATION],
        ["price", str(item.price_sat), "SAT", item.frequency.value],
        ["status", item.status.value],
        ["t", f"hive-{item.service.value}"],
        *(["t", cap] for cap in item.capabilities),
        ["service", item.service.value],
        ["pricing-model", item.pricing_model.value],
        ["capability", item.primary, "primary"],
        *(["capability", cap, "secondary"] for cap in item.secondary),
        *(["schema", s] for s in item.schemas),
        ["sla-response-time", str(item.sla_response_s)],
        *(["mint", m] for m in item.mints),
        ["did", did(pubkey)],
        ["expiration", str(item.expires_at)],
        ["alt", f"Lightning Hive {item.service.value} service: {item.title}"],
    ]
    if item.capacity_sat is not None:
        tags.append(["capacity", str(item.capacity_sat)])
    if item.duration_days is not None:
        tags.append(["duration-days", str(item.duration_days)])
    if item.trial is not None:
        tags.append(["trial", str(item.trial.days), str(item.trial.price_sat)])
    return tags


def require_lifetime(expires_at: int, created_at: int) -> None:
    """InvalidPayload unless this version expires after it is made and within 366 days of it
    (`published_at` stays the first publication: a refreshed listing lives on from now)."""
    if not created_at < expires_at <= created_at + MAX_LIFETIME_S:
        raise InvalidPayload(
            "a listing expires after it is published and within 366 days (re-publish it to "
            "extend it)"
        )


def build(keys: sdk.Keys, item: Listing, *, created_at: int) -> NostrEvent:
    """A signed kind-30402 listing; raises the typed error every receiver would refuse it
    with (a listing nobody can read is never published)."""
    require_lifetime(item.expires_at, created_at)
    event = sign_event(
        keys,
        Kind.CLASSIFIED_LISTING,
        item.description or item.summary,
        _tags(item, keys.public_key().to_hex()),
        created_at,
    )
    parse(event, now=created_at, include_withdrawn=True)
    return event


def _int(ev: Rumor, name: str) -> int | None:
    value = tag_value(ev.tags, name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise InvalidTag(f"tag {name!r} must be a non-negative integer, got {value!r:.30}")
    return int(value)


def parse(ev: Rumor, *, now: int, include_withdrawn: bool = False) -> Signed[Listing]:
    """A hive listing from a verified kind-30402 event.

    Raises WrongKind, MissingTag, InvalidTag (also for a `did` tag that is not the author's),
    Expired or InvalidPayload; a withdrawn listing raises InvalidPayload unless
    `include_withdrawn`.
    """
    require_kind(ev, Kind.CLASSIFIED_LISTING)
    require_tags(
        ev,
        ["d", "title", "summary", "price", "service", "pricing-model", "capability", "expiration"],
    )
    require_unexpired(ev, now)
    if any(value != did(ev.pubkey) for value in tag_values(ev.tags, "did")):
        # a listing signed by one key claiming another's identity: never attributed to it
        raise InvalidTag("a listing's `did` names its own author")
    price = next(t for t in ev.tags if t[0] == "price")
    amount = price[1] if len(price) > 1 else ""
    if (
        len(price) < 3
        or price[2].upper() not in ("SAT", "SATS")
        or not (amount.isascii() and amount.isdigit() and len(amount) <= 18)
    ):
        raise InvalidTag('price must be [amount, "SAT", frequency] with an integer amount')
    caps = [t for t in ev.tags if t[0] == "capability" and len(t) >= 3]
    primary = [t[1] for t in caps if t[2] == "primary"]
    trial = next((t for t in ev.tags if t[0] == "trial"), None)
    try:
        item = Listing(
            listing_id=tag_value(ev.tags, "d"),
            service=tag_value(ev.tags, "service"),
            title=tag_value(ev.tags, "title"),
            summary=tag_value(ev.tags, "summary"),
            description=ev.content,
            price_sat=int(price[1]),
            frequency=price[3] if len(price) > 3 else Frequency.ACTION,
            pricing_model=tag_value(ev.tags, "pricing-model"),
            primary=primary[0] if len(primary) == 1 else "",
            secondary=[t[1] for t in caps if t[2] == "secondary"],
            schemas=tag_values(ev.tags, "schema"),
            sla_response_s=_int(ev, "sla-response-time") or 3600,
            mints=tag_values(ev.tags, "mint"),
            capacity_sat=_int(ev, "capacity"),
            duration_days=_int(ev, "duration-days"),
            trial=None if trial is None else Trial(days=int(trial[1]), price_sat=int(trial[2])),
            status=tag_value(ev.tags, "status") or ListingStatus.ACTIVE,
            published_at=_int(ev, "published_at") or ev.created_at,
            expires_at=_int(ev, "expiration"),
        )
    except (ValidationError, ValueError, IndexError) as exc:
        first = first_error(exc) if isinstance(exc, ValidationError) else str(exc)
        raise InvalidPayload(f"listing {tag_value(ev.tags, 'd')!r:.40}: {first}"[:300]) from None
    require_lifetime(item.expires_at, ev.created_at)
    if item.status == ListingStatus.WITHDRAWN and not include_withdrawn:
        raise InvalidPayload("the listing has been withdrawn")
    return Signed(item, ev.id, ev.pubkey, ev.created_at, ev.kind)


def deletion(keys: sdk.Keys, listing_id: str, event_id: str, *, created_at: int) -> NostrEvent:
    """A NIP-09 deletion request for a listing (by id and by address)."""
    pubkey = keys.public_key().to_hex()
    tags = [
        ["e", event_id],
        ["a", coordinate(pubkey, listing_id)],
        ["k", str(int(Kind.CLASSIFIED_LISTING))],
    ]
    return sign_event(keys, Kind.DELETION, "withdrawn", tags, created_at)
