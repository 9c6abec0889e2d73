"""The bodies of contribution accounting (DESIGN §7.5, issue 18 §1):

- CONTRIBUTION_REPORT: once an ISO week (period `YYYY-WW`, UTC) is over, each member sends
  every active member its own figures for it — fees earned, rebalance costs, volume forwarded,
  capacity, uptime — and, per member it shares channels with, the msat it forwarded through
  those channels.  Signed by its author, a fact (anti-entropy hands it on); one per member
  and period: the settlement's inputs.  Its frame's message id is `report_id(body)`, the
  hash of its figures: two different reports of one member never share an id (a receiver
  that handled one would drop the other as a copy), and the same figures have one id.
- LEECH_NOTICE: a member tells the fleet that another member lost (or regained) the zero-fee
  treatment on its channels, with the numbers behind it (30-day in/out msat, the ratio, the
  days below the threshold).

Amounts are whole msat or sat, never negative; the ratio travels as parts per million (no
floats on the wire)."""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from events.canonical import canonical
from events.fleet.wire import Body, Unix
from events.types import NodeId

MAX_MSAT = 21_000_000 * 100_000_000 * 1000  # every bitcoin there will ever be, in msat
MAX_SHARED = 200  # members a report names (a member has at most 200 channels in its record)

# ASCII digits only: a Unicode-aware `\d` (and `int()`) would read "٢٠٢٦-٤٨" as 2026-48 — one
# more spelling of the same week, and so one more report per member and period
Period = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}$")]
Day = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
Msat = Annotated[int, Field(ge=0, le=MAX_MSAT)]
Sat = Annotated[int, Field(ge=0, le=MAX_MSAT // 1000)]
Pct = Annotated[int, Field(ge=0, le=100)]


class ContributionReport(Body):
    node: NodeId  # the author's node (must be the frame's signer)
    period: Period
    fees_msat: Msat
    rebalance_costs_msat: Msat
    forwards_msat: Msat
    capacity_sat: Sat
    uptime_pct: Pct
    # member node id → msat forwarded through our channel(s) with it in the period (in + out)
    shared: Annotated[dict[NodeId, Msat], Field(max_length=MAX_SHARED)] = Field(
        default_factory=dict
    )


def report_id(body: ContributionReport) -> str:
    """The message id a report's frame must carry: the first 16 bytes of the SHA-256 of its
    canonical JSON (hex)."""
    return hashlib.sha256(b"hive:contribution-report\0" + canonical(body)).hexdigest()[:32]


class LeechNotice(Body):
    member: NodeId  # the member judged
    status: Literal["leech", "recovered"]
    day: Day  # the UTC day the judgement was made for (its last day of data)
    since: Day  # leech: the first day below the threshold; recovered: the day it recovered
    window_days: Annotated[int, Field(ge=1, le=60)]
    in_msat: Msat  # what came in from the member over the window (we carried its traffic)
    out_msat: Msat  # what we sent out to it (it carried ours)
    ratio_ppm: Annotated[int, Field(ge=0, le=1_000_000_000)]
    threshold_ppm: Annotated[int, Field(ge=0, le=1_000_000_000)]
    below_days: Annotated[int, Field(ge=0, le=10_000)]
    at: Unix
