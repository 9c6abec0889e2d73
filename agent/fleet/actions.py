"""The fleet's port to the node's own governance: a planner action on this node (an expansion
open, a close, a rebalance through a member, an emergency close) is handed to the node's
command path, which decides, runs and records it exactly like an advisor's command (danger,
budgets, approval decision by the node's governance mode, a signed receipt).

The fleet imports nothing of that path (agent/advisory/local.py `LocalActions` implements
`ActionPort` structurally; the plugin hands it to the fleet).  The intent component submits the
action its intent lock guards (`action_for`), then learns the outcome from `on_outcome` or by
asking `outcome(intent_id)` (after a restart too), and ends the intent with `intent_result`:
True → INTENT_DONE ok, False → INTENT_DONE failed (the lock is released), None → not yet
(`outcome_state` says the same as "ok" / "failed" / "waiting" with a detail).  `submit` is
idempotent by intent id (the command id is derived from it), so settling after a restart may
simply submit again: an action already handed over is never run twice, one that never was is
handed over now.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# statuses an outcome may have (the values agent/advisory/local.py `Status` uses)
PENDING, WAITING, OK = "pending", "waiting", "ok"
FAILED, REFUSED, REJECTED, EXPIRED = "failed", "refused", "rejected", "expired"
FINAL = frozenset({OK, FAILED, REFUSED, REJECTED, EXPIRED})


@dataclass(frozen=True)
class FleetAction:
    """One action on this node, guarded by the fleet intent lock `intent_id`.

    `kind`: channel_open {peer, amount_sats}, channel_close {channel}, rebalance
    {from_channel, to_channel, amount_sats, max_fee_ppm}, fee_set {channel, fee_ppm},
    emergency_close {channel, amount_sats = its capacity}, ban_peer {peer}, and the catalogue's
    recognised-only channel_force_close, splice_in, splice_out.  `origin`: planner | hive-expand.
    """

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    intent_id: str = ""
    origin: str = "planner"


class ActionReport(Protocol):
    """An action's outcome as the node's command path reports it."""

    @property
    def intent_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def code(self) -> str | None: ...
    @property
    def message(self) -> str: ...
    @property
    def final(self) -> bool: ...
    @property
    def ok(self) -> bool: ...


class ActionPort(Protocol):
    """What the fleet calls (agent/advisory/local.py `LocalActions`)."""

    def submit(self, action: FleetAction) -> ActionReport: ...

    def outcome(self, intent_id: str) -> ActionReport | None: ...

    def withdraw(self, intent_id: str) -> ActionReport | None: ...


def intent_result(report: ActionReport | None) -> bool | None:
    """How the intent ends: True (done ok), False (failed: release the lock), None (not yet).
    Never submitted counts as failed: nothing runs for it."""
    if report is None:
        return False
    if not report.final:
        return None
    return report.ok


def action_for(
    kind: str, target: str, amount_sat: int, intent_id: str, origin: str = "planner"
) -> FleetAction | None:
    """The node action an intent lock (kind, target, amount) guards; None for a ban proposal,
    which is a vote among members (membership), not an action on this node."""
    if kind == "channel_open":
        return FleetAction(kind, {"peer": target, "amount_sats": amount_sat}, intent_id, origin)
    if kind == "channel_close":
        return FleetAction(kind, {"channel": target}, intent_id, origin)
    if kind == "splice":  # amount: the capacity wanted (recognised, not executed yet)
        return FleetAction("splice_in", {"channel": target, "amount_sats": amount_sat}, intent_id)
    if kind == "ban_proposal":
        return None
    return FleetAction(kind, {}, intent_id, origin)  # refused INVALID_PARAMS, naming the kind


def outcome_state(report: ActionReport | None) -> tuple[str, str]:
    """("ok" | "failed" | "waiting", detail): how the intent stands, in a line."""
    if report is None:
        return "failed", "the action was never handed to the node"
    if not report.final:
        return "waiting", report.message or report.status
    if report.ok:
        return "ok", report.message or "done"
    return "failed", f"{report.status} {report.code or ''}: {report.message}".strip()
