"""How a ticket's amount is cut into parts: one part (single, batch), one per milestone, or a
base and a bonus that waits for its measurement window (performance).  Pure."""

from __future__ import annotations

import json
from typing import NamedTuple

from pydantic import ValidationError

from events.errors import InvalidParams, TooLarge
from events.escrow import (
    TICKET,
    CashuProof,
    Dleq,
    Metric,
    Part,
    PartRole,
    Terms,
    Ticket,
    TicketType,
    window_s,
)
from events.types import first_error

MAX_LOCKTIME_S = 30 * 86400  # a ticket's deadline (commands are covered until then)


class PlannedPart(NamedTuple):
    role: PartRole
    amount: int
    after_commands: int
    locktime: int


def split_evenly(total: int, n: int) -> list[int]:
    base, extra = divmod(total, n)
    return [base + (1 if i >= n - extra else 0) for i in range(n)]


def plan_parts(
    kind: TicketType,
    amount_sat: int,
    *,
    commands: int,
    milestones: list[int] | None,
    bonus_sat: int,
    metric: Metric | None,
    locked_until: int,
) -> tuple[list[PlannedPart], int]:
    """The parts and the number of commands the ticket covers; InvalidParams if it cannot be."""
    if kind in (TicketType.SINGLE, TicketType.BATCH):
        plan = [PlannedPart(PartRole.RELEASE, amount_sat, commands, locked_until)]
    elif kind == TicketType.MILESTONE:
        steps = milestones or [commands]
        commands = steps[-1]
        amounts = split_evenly(amount_sat, len(steps))
        plan = [
            PlannedPart(PartRole.MILESTONE, amount, after, locked_until)
            for amount, after in zip(amounts, steps, strict=True)
        ]
    else:
        if metric is None or bonus_sat <= 0:
            raise InvalidParams("a performance ticket needs a bonus amount and a metric")
        plan = [
            PlannedPart(PartRole.BASE, amount_sat, 1, locked_until),
            PlannedPart(PartRole.BONUS, bonus_sat, 1, locked_until + metric.window_s),
        ]
    if any(part.amount <= 0 for part in plan):
        raise InvalidParams("every part of a ticket needs at least 1 sat")
    return plan, commands


def locked_until(now: int, max_danger: int, locktime_s: int | None) -> int:
    """When a ticket's parts unlock for the refund: `locktime_s` from now, or the escrow
    window of the danger it pays for; InvalidParams for a locktime not in the future."""
    if locktime_s is not None and locktime_s < 1:
        raise InvalidParams(f"--locktime-s {locktime_s}: a ticket's locktime is at least 1 s away")
    if locktime_s is not None and locktime_s > MAX_LOCKTIME_S:
        raise InvalidParams(
            f"--locktime-s {locktime_s}: at most {MAX_LOCKTIME_S:,} s (no command is covered"
            " after the ticket's 30-day deadline; later, the ecash would only wait for its refund)"
        )
    return now + (locktime_s or window_s(max_danger))


def refusal(exc: ValidationError) -> InvalidParams:
    """A model's first complaint, as the operator's INVALID_PARAMS."""
    return InvalidParams(first_error(exc, "ticket")[:200])


def _placeholder_proofs(amount: int, lock_hash: str, locktime: int, key: str) -> list[CashuProof]:
    """As many proofs as the mint's split will make (one per set bit of the amount), each
    at least as long as a real one: a v2 keyset id, a NUT-14 secret as the wallet library
    writes it (with a longer nonce), and a DLEQ."""
    tags = [["pubkeys", "02" + key], ["locktime", str(locktime)], ["refund", "02" + key]]
    body = {"nonce": "0" * 64, "data": lock_hash, "tags": tags}
    secret, dleq = json.dumps(["HTLC", body]), Dleq(e=key, s=key, r=key)
    return [
        CashuProof(id="01" + key, amount=1 << bit, secret=secret, C="02" + key, dleq=dleq)
        for bit in range(amount.bit_length())
        if amount >> bit & 1
    ]


def check_ticket(
    kind: TicketType, plan: list[PlannedPart], terms: Terms, mint: str, advisor: str, cred: str
) -> None:
    """The ticket these parts would make, built with placeholder locks and proofs of the real
    number and size, so one that could never be sent (milestones that do not rise, more than
    16 parts, an amount, a mint URL, an advisor key or a credential id the ticket cannot
    carry, more proofs than a private message holds) is refused before any ecash is locked:
    InvalidParams."""
    key = "0" * 64
    try:
        parts = [
            Part(index=i, role=p.role, amount_sat=p.amount, lock_hash=f"{i:064x}",
                 locktime=p.locktime, after_commands=p.after_commands,
                 proofs=_placeholder_proofs(p.amount, f"{i:064x}", p.locktime, key))
            for i, p in enumerate(plan)
        ]  # fmt: skip
        ticket = Ticket(ticket_id="0" * 32, type=kind, mint=mint, node=key, advisor=advisor,
                        credential_id=cred, refund_pubkey=key, terms=terms, parts=parts,
                        created_at=0)  # fmt: skip
    except ValidationError as exc:
        raise refusal(exc) from None
    try:
        TICKET.rumor(key, ticket, created_at=terms.deadline)
    except TooLarge as exc:
        proofs = sum(len(part.proofs) for part in parts)
        raise InvalidParams(
            f"the ticket would carry {proofs} proofs, too many for one private message "
            f"({exc.message}): fund fewer parts, or amounts with fewer 1 bits"
        ) from None


def plan_ticket(
    kind: TicketType,
    amount_sat: int,
    *,
    schema_pattern: str,
    max_danger: int,
    commands: int,
    milestones: list[int] | None,
    bonus_sat: int,
    metric: Metric | None,
    params_hash: str | None,
    mint: str,
    advisor: str,
    credential_id: str,
    locked_until: int,
    deadline: int,
) -> tuple[list[PlannedPart], Terms]:
    """The parts and terms of a ticket that can be sent (`check_ticket`); InvalidParams if
    it cannot.  Funding and the CLI's check before connecting both ask this."""
    plan, commands = plan_parts(kind, amount_sat, commands=commands, milestones=milestones,
                                bonus_sat=bonus_sat, metric=metric,
                                locked_until=locked_until)  # fmt: skip
    try:
        terms = Terms(schema_pattern=schema_pattern, params_hash=params_hash,
                      max_danger=max_danger, commands=commands, metric=metric,
                      deadline=deadline)  # fmt: skip
    except ValidationError as exc:
        raise refusal(exc) from None
    check_ticket(kind, plan, terms, mint, advisor, credential_id)
    return plan, terms
