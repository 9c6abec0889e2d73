"""Every row of the approval decision (DESIGN.md §5), one parametrized test."""

from __future__ import annotations

import pytest

from agent.advisory.policy import Mode, Preset, Route, decide, level, reputation_factor
from events.credential import Tier
from events.errors import QuotaExceeded, RateLimited, Restricted

C, M, A = Preset.CONSERVATIVE, Preset.MODERATE, Preset.AGGRESSIVE
AUTO, OPER, ORAC, SAFE = Mode.AUTONOMOUS, Mode.OPERATOR, Mode.ORACLE, Mode.FAILSAFE
MON, STD, ADV, ADM = Tier.MONITOR, Tier.STANDARD, Tier.ADVANCED, Tier.ADMIN

ROWS = [
    # step 1: tier cap (monitor 2, standard 5, advanced 7, admin 10)
    ("monitor cap", 2, 1.0, M, MON, AUTO, False, None, Route.AUTO, None),
    ("monitor above cap", 3, 1.0, M, MON, AUTO, False, None, Route.REFUSED, "RESTRICTED"),
    ("standard cap", 5, 1.0, A, STD, AUTO, False, None, Route.QUEUE, None),
    ("standard above cap", 6, 2.0, A, STD, AUTO, False, None, Route.REFUSED, "RESTRICTED"),
    ("advanced above cap", 8, 2.0, A, ADV, AUTO, False, None, Route.REFUSED, "RESTRICTED"),
    ("admin may reach 10", 10, 2.0, A, ADM, AUTO, False, None, Route.MULTISIG, None),
    # step 2: quiet hours
    ("quiet, danger 2 runs", 2, 1.0, M, STD, AUTO, True, None, Route.AUTO, None),
    ("quiet, danger 3 refused", 3, 1.0, M, STD, AUTO, True, None, Route.REFUSED, "RESTRICTED"),
    # step 3: limits
    ("over budget", 3, 1.0, M, STD, AUTO, False, QuotaExceeded("budget"), Route.REFUSED, "QUOTA_EXCEEDED"),
    ("over rate", 3, 1.0, M, STD, AUTO, False, RateLimited("rate"), Route.REFUSED, "RATE_LIMITED"),
    ("protected channel", 2, 1.0, M, STD, AUTO, False, Restricted("protected"), Route.REFUSED, "RESTRICTED"),
    # step 4: route by level L = max(d/r, d/2) and the preset's confirm-from
    ("L 3: auto", 3, 1.0, M, ADV, AUTO, False, None, Route.AUTO, None),
    ("L 4: queue", 4, 1.0, M, ADV, AUTO, False, None, Route.QUEUE, None),
    ("L 6: queue", 6, 1.0, M, ADV, AUTO, False, None, Route.QUEUE, None),
    ("d 5 conservative: confirm", 5, 2.0, C, ADV, AUTO, False, None, Route.CONFIRM, None),
    ("d 6 moderate, r 2: L 3", 6, 2.0, M, ADV, AUTO, False, None, Route.AUTO, None),
    ("d 7 moderate: confirm", 7, 2.0, M, ADV, AUTO, False, None, Route.CONFIRM, None),
    ("d 7 aggressive, r 2: L 3.5", 7, 2.0, A, ADV, AUTO, False, None, Route.AUTO, None),
    ("d 8 aggressive, r 1: L 8", 8, 1.0, A, ADM, AUTO, False, None, Route.CONFIRM, None),
    ("low reputation raises L", 3, 0.5, M, STD, AUTO, False, None, Route.QUEUE, None),  # L 6
    ("r below 0.5 is clamped", 2, 0.1, M, STD, AUTO, False, None, Route.QUEUE, None),  # L 4
    ("high reputation: L ≥ d/2", 6, 2.0, A, ADV, AUTO, False, None, Route.AUTO, None),  # L 3
    ("d 9 always multisig", 9, 2.0, A, ADM, AUTO, False, None, Route.MULTISIG, None),
    # step 5: governance mode
    ("operator: auto → queue", 2, 1.0, M, STD, OPER, False, None, Route.QUEUE, None),
    ("operator: queue stays", 4, 1.0, M, STD, OPER, False, None, Route.QUEUE, None),
    ("operator: confirm stays", 7, 2.0, M, ADV, OPER, False, None, Route.CONFIRM, None),
    ("oracle: auto → oracle", 2, 1.0, M, STD, ORAC, False, None, Route.ORACLE, None),
    ("oracle: queue → oracle", 4, 1.0, M, STD, ORAC, False, None, Route.ORACLE, None),
    ("oracle: confirm stays", 5, 1.0, C, STD, ORAC, False, None, Route.CONFIRM, None),
    ("oracle: multisig stays", 9, 1.0, A, ADM, ORAC, False, None, Route.MULTISIG, None),
    ("mode never rescues a refusal", 3, 1.0, M, MON, ORAC, False, None, Route.REFUSED, "RESTRICTED"),
    # failsafe (the node's own actions): emergency ones only, AUTO and QUEUE run
    ("failsafe: not emergency", 2, 1.0, M, STD, SAFE, False, None, Route.REFUSED, "FAILSAFE_ONLY"),
    ("failsafe: emergency queue → auto", 6, 1.0, M, ADV, SAFE, False, None, Route.AUTO, None),
    ("failsafe: emergency confirm stays", 7, 1.0, M, ADV, SAFE, False, None, Route.CONFIRM, None),
    ("failsafe: over its budget", 4, 1.0, M, ADV, SAFE, False, QuotaExceeded("failsafe"), Route.REFUSED, "QUOTA_EXCEEDED"),
]  # fmt: skip
EMERGENCY = {"failsafe: emergency queue → auto", "failsafe: emergency confirm stays",
             "failsafe: over its budget"}  # fmt: skip


@pytest.mark.parametrize(
    ("danger", "r", "preset", "tier", "mode", "quiet", "limit", "route", "code", "emergency"),
    [(*row[1:], row[0] in EMERGENCY) for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_decision_table(
    danger, r, preset, tier, mode, quiet, limit, route, code, emergency
) -> None:
    decision = decide(
        danger, r, preset, tier, mode, quiet=quiet, limit_error=limit, emergency=emergency
    )
    assert decision.route == route, decision.explain()
    assert (decision.error.code if decision.error else None) == code
    assert decision.reasons


def test_level_and_reputation_factor() -> None:
    assert level(6, 2.0) == 3.0 and level(6, 0.5) == 12.0 and level(6, 4.0) == 3.0
    assert reputation_factor(None) == 1.0
    assert (
        reputation_factor(0) == 0.5
        and reputation_factor(100) == 2.0
        and reputation_factor(50) == 1.25
    )
