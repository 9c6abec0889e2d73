"""How a ticket's amount is cut into parts: one part (single, batch), one per milestone, or a
base and a bonus that waits for its measurement window (performance).  Pure."""

from __future__ import annotations

from typing import NamedTuple

from events.errors import InvalidParams
from events.escrow import Metric, PartRole, TicketType


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
