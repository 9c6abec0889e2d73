"""The settlement's wire bodies (events/fleet/settlement.py): round trips through signed
frames, a proposal of the largest plan (200 members) within the 65,535-byte frame, strict
fields, and a plan → PROPOSE → plan round trip that gives the same hashes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.fleet.settlement import _recompute, propose_body
from agent.fleet.settlement_rules import MemberInput, compute_plan
from events import fleet as wire
from events.fleet import MsgType
from events.fleet.settlement import (
    MAX_MEMBERS,
    MAX_SAT,
    PaidBody,
    SettlementExecuted,
    SettlementInvoice,
    SettlementInvoiceRequest,
    SettlementReady,
)
from tests.test_fleet_wire import _frame

node_ids = st.integers(1, 2**200).map(lambda i: "02" + f"{i:064x}"[-64:])
hashes = st.binary(min_size=32, max_size=32).map(bytes.hex)
periods = st.tuples(st.integers(2000, 2099), st.integers(1, 52)).map(lambda t: f"{t[0]}-{t[1]:02d}")
members = st.builds(
    MemberInput, node_ids, st.integers(0, 10**9), st.integers(0, 10**9),
    st.integers(0, 10**10), st.integers(0, 10**15), st.integers(0, 100),
)  # fmt: skip


def _unique(xs: list[MemberInput]) -> list[MemberInput]:
    return list({m.node: m for m in xs}.values())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=st.lists(members, min_size=1, max_size=30).map(_unique), period=periods)
def test_a_plan_goes_over_the_wire_and_comes_back_the_same(inputs, period) -> None:
    plan = compute_plan(period, inputs)
    if plan.empty:
        return
    msg = wire.parse_frame(_frame(MsgType.SETTLEMENT_PROPOSE, propose_body(plan)))
    again = _recompute(msg.body)  # type: ignore[arg-type]
    assert (again.plan_hash, again.data_hash, again.payments) == (
        plan.plan_hash, plan.data_hash, plan.payments,
    )  # fmt: skip


def test_the_largest_proposal_fits_a_frame() -> None:
    big = [
        MemberInput("03" + f"{i:064x}", 10**9 + i, 10**6, 10**10, 10**15 - i, 100)
        for i in range(MAX_MEMBERS)
    ]
    plan = compute_plan("2026-40", big)
    frame = _frame(MsgType.SETTLEMENT_PROPOSE, propose_body(plan))
    assert len(frame) <= wire.MAX_FRAME
    assert wire.parse_frame(frame).body == propose_body(plan)


def test_a_plan_of_more_members_than_a_proposal_carries_is_a_typed_refusal() -> None:
    """A hive that outgrew the settlement (201 members): proposing is refused TOO_LARGE,
    a sentence saying why (it was an untyped validation error at every check)."""
    from events.errors import TooLarge

    many = [MemberInput("03" + f"{i:064x}", 10**6, 0, 10**6, 10**9, 100) for i in range(201)]
    with pytest.raises(TooLarge, match="201 members"):
        propose_body(compute_plan("2026-40", many))


big = st.integers(0, MAX_SAT)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(figures=st.lists(st.tuples(big, big, big, st.integers(0, 2**63 - 1), st.integers(0, 100)),
                        min_size=MAX_MEMBERS - 1, max_size=MAX_MEMBERS - 1),
       absurd=big)  # fmt: skip
def test_a_proposal_of_200_members_fits_a_frame_whatever_they_report(figures, absurd) -> None:
    """Any 200 members' figures within the wire's bounds — here one member reporting up to
    every bitcoin there is as fees, so that it owes each of the other 199 — make a PROPOSE
    that fits one frame (65,535 bytes), and a receiver gets the same plan from it.  (With its
    payments listed, such a plan took 76 KB: the week could not be proposed by anyone.)"""
    inputs = [MemberInput("03" + f"{i:064x}", *f) for i, f in enumerate(figures)]
    inputs.append(MemberInput("02" + "f" * 64, absurd, 0, 0, 0, 0))
    plan = compute_plan("2026-40", inputs)
    if plan.empty:
        return
    frame = _frame(MsgType.SETTLEMENT_PROPOSE, propose_body(plan))
    assert len(frame) <= wire.MAX_FRAME
    again = _recompute(wire.parse_frame(frame).body)  # type: ignore[arg-type]
    assert (again.plan_hash, again.payments) == (plan.plan_hash, plan.payments)


bodies = st.one_of(
    st.builds(lambda p, h, a: (MsgType.SETTLEMENT_READY,
                               SettlementReady(period=p, plan_hash=h, agree=a)),
              periods, hashes, st.booleans()),
    st.builds(lambda p, h, n, amt: (MsgType.SETTLEMENT_INVOICE_REQUEST,
                                    SettlementInvoiceRequest(period=p, plan_hash=h, receiver=n,
                                                             amount_sat=amt)),
              periods, hashes, node_ids, st.integers(1, 21 * 10**14)),
    st.builds(lambda p, h, b: (MsgType.SETTLEMENT_INVOICE,
                               SettlementInvoice(period=p, plan_hash=h, bolt11=b, payment_hash=h)),
              periods, hashes, st.text(min_size=1, max_size=4096)),
    st.builds(lambda p, h, n, pre: (MsgType.SETTLEMENT_EXECUTED, SettlementExecuted(
        period=p, plan_hash=h, payer=n,
        payments=[PaidBody(receiver=n, amount_sat=1, payment_hash=h, preimage=pre)])),
              periods, hashes, node_ids, hashes),
)  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=bodies)
def test_round_trip(case) -> None:
    msg_type, body = case
    msg = wire.parse_frame(_frame(msg_type, body))
    assert (msg.type, msg.body) == (msg_type, body)


@pytest.mark.parametrize(
    "data",
    [
        {"period": "2026-40", "plan_hash": "ab" * 32, "agree": 1},  # not a bool
        {"period": "2026-4", "plan_hash": "ab" * 32, "agree": True},
        {"period": "2026-40", "plan_hash": "AB" * 32, "agree": True},
        {"period": "2026-40", "plan_hash": "ab" * 32, "agree": True, "extra": 1},
    ],
)
def test_strict_fields(data: dict) -> None:
    with pytest.raises(ValidationError):
        SettlementReady.model_validate(data)
    with pytest.raises(ValidationError):
        SettlementInvoiceRequest.model_validate(
            {"period": "2026-40", "plan_hash": "ab" * 32, "receiver": "02" + "a" * 64,
             "amount_sat": 0}
        )  # fmt: skip
