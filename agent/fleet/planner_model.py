"""What goes into the fleet planner and what comes out (agent/fleet/planner.py computes it):
the graph edge it reads, its configuration, and the plan's parts — each recommendation with the
inputs it used and a `reason` a person can read.  Pure data."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

SHARE_CAP = 0.20
CHANNEL_MIN_SAT, CHANNEL_MAX_SAT, CHANNEL_DEFAULT_SAT = 1_000_000, 50_000_000, 5_000_000
INTERVAL_S = 3600
MAX_FEERATE_PERKB = 5000
NOTED = 5  # candidates no member can open to, named one by one in the notes


class GraphEdge(Protocol):
    """One direction of a channel in the network graph (agent.node.models.GraphChannel)."""

    @property
    def source(self) -> str: ...
    @property
    def destination(self) -> str: ...
    @property
    def scid(self) -> str: ...
    @property
    def capacity_sat(self) -> int: ...
    @property
    def fee_ppm(self) -> int: ...
    @property
    def active(self) -> bool: ...


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PlannerConfig(_Frozen):
    market_share_cap: Annotated[float, Field(gt=0, lt=1)] = SHARE_CAP
    channel_min_sat: Annotated[int, Field(gt=0)] = CHANNEL_MIN_SAT
    channel_max_sat: Annotated[int, Field(gt=0)] = CHANNEL_MAX_SAT
    channel_default_sat: Annotated[int, Field(gt=0)] = CHANNEL_DEFAULT_SAT
    max_expansions: Annotated[int, Field(ge=0, le=100)] = 3
    min_degree: Annotated[int, Field(ge=1)] = 2
    max_expansion_feerate_perkb: Annotated[int, Field(ge=0)] = MAX_FEERATE_PERKB
    interval_s: Annotated[int, Field(ge=60, le=86_400)] = INTERVAL_S  # how often the caller plans
    report_nodes: Annotated[int, Field(ge=0, le=1000)] = 20

    @model_validator(mode="after")
    def _sizes(self) -> Self:
        if not self.channel_min_sat <= self.channel_default_sat <= self.channel_max_sat:
            raise ValueError("channel sizes must satisfy min ≤ default ≤ max")
        return self

    @property
    def cap(self) -> Fraction:
        """The cap as an exact fraction (0.20 → 1/5), so the share check is exact."""
        return Fraction(self.market_share_cap).limit_denominator(1_000_000)


class NodeView(_Frozen):
    node: str
    capacity_sat: int
    degree: int
    fleet_capacity_sat: int
    share: float
    served_by: tuple[str, ...]
    score: float


class Expansion(_Frozen):
    member: str
    node: str
    amount_sat: int
    bound: str  # what set the amount: default, funds or cap
    score: float
    node_capacity_sat: int
    degree: int
    fleet_capacity_sat: int
    share: float
    share_after: float
    headroom_sat: int
    offered_sat: int  # the member's offered funds left before this expansion
    member_channels: int
    eligible: int  # members that could have opened to it
    reason: str


class Overlap(_Frozen):
    node: str
    served_by: tuple[str, ...]
    ignore_by: tuple[str, ...]
    share: float
    reason: str


class FeeHint(_Frozen):
    node: str
    ppm_by_member: dict[str, int]
    hint_ppm: int
    below: tuple[str, ...]
    reason: str


class PlanInputs(_Frozen):
    graph_channels: int  # distinct channels with an active direction
    graph_nodes: int
    members: tuple[str, ...]
    with_record: tuple[str, ...]
    fleet_channels: int
    fleet_capacity_sat: int
    offered_sat: int
    external_nodes: int
    feerate_perkb: int | None
    config: PlannerConfig


class Plan(_Frozen):
    inputs: PlanInputs
    nodes: tuple[NodeView, ...]  # the best-scored external nodes (config.report_nodes)
    expansions: tuple[Expansion, ...]
    overlaps: tuple[Overlap, ...]
    fee_hints: tuple[FeeHint, ...]
    notes: tuple[str, ...]

    def ignore_pairs(self) -> list[tuple[str, str]]:
        """(member, node): nodes each member's CLBOSS may ignore, sorted."""
        return sorted((m, o.node) for o in self.overlaps for m in o.ignore_by)

    def ignores_for(self, member: str) -> list[str]:
        return sorted(o.node for o in self.overlaps if member in o.ignore_by)


@dataclass(frozen=True)
class Link:
    """A fleet channel: a member's channel with an external node."""

    member: str
    peer: str
    scid: str
    capacity_sat: int
    fee_ppm: int | None  # what the member charges toward the peer (None: not known)


def short(node: str) -> str:
    return f"{node[:12]}…"
