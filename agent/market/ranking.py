"""Filtering and ranking listings for a buyer's need.  Pure functions; every component is in
[0, 1] and every ranked row carries its breakdown.

    reputation      aggregate reputation score ÷ 100
    capability      share of the required capabilities the listing offers
    specialisation  1 if the buyer's primary need is the provider's primary capability,
                    0.5 if one of its secondary ones, else 0
    price           min(1, budget ÷ price)          (free: 1)

Prices are compared per month: a listing priced per hour, day, week or year is converted to
30 days (×720, ×30, ×30/7, ÷12), so `--budget` and `--max-price` are sat a month — or sat per
action for a per-action listing.  Compared raw, 20 sat/hour (14,400 a month) looked cheaper
than 10,000 sat/month and passed a 12,000 ceiling.
    availability    heartbeat uptime over the last 30 days (0.5 with no history)
    freshness       1 − age ÷ lifetime

    total = .35 reputation + .25 capability + .15 specialisation + .10 price
            + .10 availability + .05 freshness
"""

from __future__ import annotations

from dataclasses import dataclass, field

from events.listing import Frequency, Listing, ServiceType

WEIGHTS = {
    "reputation": 0.35,
    "capability": 0.25,
    "specialisation": 0.15,
    "price": 0.10,
    "availability": 0.10,
    "freshness": 0.05,
}


@dataclass(frozen=True)
class Need:
    """What a buyer looks for; every filter is optional."""

    service: ServiceType | None = None
    primary: str | None = None
    capabilities: tuple[str, ...] = ()
    schema: str | None = None
    max_price_sat: int | None = None
    mint: str | None = None
    budget_sat: int | None = None


@dataclass(frozen=True)
class Breakdown:
    reputation: float
    capability: float
    specialisation: float
    price: float
    availability: float
    freshness: float
    total: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", sum(getattr(self, k) * w for k, w in WEIGHTS.items()))

    def explain(self) -> str:
        parts = [f"{k} {getattr(self, k):.2f}×{w:.2f}" for k, w in WEIGHTS.items()]
        return " + ".join(parts) + f" = {self.total:.3f}"


PER_MONTH = {
    Frequency.HOUR: 720.0,
    Frequency.DAY: 30.0,
    Frequency.WEEK: 30 / 7,
    Frequency.MONTH: 1.0,
    Frequency.YEAR: 1 / 12,
    Frequency.ACTION: 1.0,  # per action: nothing to convert it to
}


def comparable_price(item: Listing) -> float:
    """The listing's price a month (per action for a per-action listing), in sat."""
    return item.price_sat * PER_MONTH[item.frequency]


def schema_matches(offered: str, wanted: str) -> bool:
    """`hive:fee-policy/*` offered covers `hive:fee-policy/v1` wanted, and vice versa."""

    def family(s: str) -> str:
        return s.split("/", 1)[0]

    if offered == wanted:
        return True
    return (offered.endswith("/*") or wanted.endswith("/*")) and family(offered) == family(wanted)


def matches(item: Listing, need: Need) -> bool:
    """Does the listing pass the buyer's filters?"""
    if need.service is not None and item.service != need.service:
        return False
    wanted = set(need.capabilities) | ({need.primary} if need.primary else set())
    if wanted and not wanted & set(item.capabilities):
        return False
    if need.schema and not any(schema_matches(s, need.schema) for s in item.schemas):
        return False
    if need.max_price_sat is not None and comparable_price(item) > need.max_price_sat:
        return False
    return not (need.mint and need.mint not in item.mints)


def components(
    item: Listing,
    need: Need,
    reputation: float,
    availability: float | None,
    now: int,
    created_at: int | None = None,
) -> Breakdown:
    """The six components for one listing (`reputation` as an aggregate score 0–100).

    Freshness runs over the life of this version: from its `created_at` (an update or a
    refresh makes a listing fresh again; `published_at` stays its first publication) to its
    expiry."""
    required = set(need.capabilities) | ({need.primary} if need.primary else set())
    capability = len(required & set(item.capabilities)) / len(required) if required else 1.0
    if need.primary is None:
        special = 0.0
    elif need.primary == item.primary:
        special = 1.0
    else:
        special = 0.5 if need.primary in item.secondary else 0.0
    budget = need.budget_sat if need.budget_sat is not None else need.max_price_sat
    if item.price_sat == 0:
        price = 1.0
    else:
        price = 0.0 if budget is None else min(1.0, budget / comparable_price(item))
    made = item.published_at if created_at is None else created_at
    lifetime = max(1, item.expires_at - made)
    fresh = 1 - (now - made) / lifetime
    return Breakdown(
        reputation=min(1.0, max(0.0, reputation / 100)),
        capability=capability,
        specialisation=special,
        price=price,
        availability=0.5 if availability is None else min(1.0, max(0.0, availability)),
        freshness=min(1.0, max(0.0, fresh)),
    )
