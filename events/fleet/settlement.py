"""The bodies of the weekly settlement (DESIGN §7.5; the arithmetic is in
agent/fleet/settlement_rules.py).

- SETTLEMENT_PROPOSE (proposer, to every member): the period's plan — its hashes and every
  member's input it was computed from; a receiver recomputes it, payments included (the plan
  hash commits to them).  The payments are not listed: 200 inputs and 199 payments at the
  wire's bounds do not fit one frame (an older agent's list is still checked).
- SETTLEMENT_READY (every member, to every member): agree (the same plan hash from its own
  inputs), or disagree with its own hashes and inputs, or refuse with a code (a dispute).
- SETTLEMENT_INVOICE_REQUEST (payer, to one receiver) and SETTLEMENT_INVOICE (the answer):
  the invoice for one assignment of a plan a majority agreed on.
- SETTLEMENT_EXECUTED (payer, to every member): what it paid, with the preimages.

PROPOSE, READY and EXECUTED are facts (anti-entropy hands them on); the invoice pair is
between two members only.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from events.fleet.wire import Body, Text
from events.types import Hex64, NodeId

MAX_MEMBERS = 200  # a plan's members (a PROPOSE with 200 inputs stays below 64 KiB)
MAX_SAT = 21_000_000 * 100_000_000

Period = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}$")]
Sat = Annotated[int, Field(ge=0, le=MAX_SAT)]
Msat = Annotated[int, Field(ge=0, lt=2**63)]
Pct = Annotated[int, Field(ge=0, le=100)]
Code = Annotated[str, StringConstraints(pattern=r"^[A-Z_]{0,32}$")]
Bolt11 = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class InputBody(Body):
    """One member's figures for the period (settlement_rules.MemberInput)."""

    node: NodeId
    fees_sat: Sat
    rebalance_costs_sat: Sat
    capacity_sat: Sat
    forwards_msat: Msat
    uptime_pct: Pct


class TransferBody(Body):
    payer: NodeId
    receiver: NodeId
    amount_sat: Annotated[int, Field(ge=1, le=MAX_SAT)]


class SettlementPropose(Body):
    period: Period
    plan_hash: Hex64
    data_hash: Hex64
    # Σ of every member's net: up to MAX_MEMBERS × one member's bound (a report may claim
    # every bitcoin there is; the plan must still travel, and that member is the one that owes)
    total_sat: Annotated[int, Field(ge=0, le=MAX_MEMBERS * MAX_SAT)]
    member_count: Annotated[int, Field(ge=1, le=MAX_MEMBERS)]
    inputs: Annotated[list[InputBody], Field(min_length=1, max_length=MAX_MEMBERS)]
    # (sent by older agents only; when present they must be the plan's)
    payments: Annotated[list[TransferBody], Field(max_length=MAX_MEMBERS)] = Field(
        default_factory=list
    )


class SettlementReady(Body):
    period: Period
    plan_hash: Hex64  # the proposal answered
    agree: bool
    code: Code = ""  # why not (a disagreement, a dispute)
    message: Text = ""
    # when disagreeing: what this member computed, and from what
    own_plan_hash: Hex64 | None = None
    own_data_hash: Hex64 | None = None
    inputs: Annotated[list[InputBody], Field(max_length=MAX_MEMBERS)] = Field(default_factory=list)


class SettlementInvoiceRequest(Body):
    period: Period
    plan_hash: Hex64
    receiver: NodeId
    amount_sat: Annotated[int, Field(ge=1, le=MAX_SAT)]


class SettlementInvoice(Body):
    period: Period
    plan_hash: Hex64
    bolt11: Bolt11
    payment_hash: Hex64


class PaidBody(Body):
    receiver: NodeId
    amount_sat: Annotated[int, Field(ge=1, le=MAX_SAT)]
    payment_hash: Hex64
    preimage: Hex64


class SettlementExecuted(Body):
    period: Period
    plan_hash: Hex64
    payer: NodeId
    payments: Annotated[list[PaidBody], Field(min_length=1, max_length=MAX_MEMBERS)]
