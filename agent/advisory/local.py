"""Fleet actions under the node's own governance: a planner's action on this node is a command
like an advisor's, through the very same path (`NodeService`: danger from the catalogue, limits
and budgets counted in the store, protected channels and forbidden peers, the approval decision,
execution claimed at most once, a signed receipt in a hash chain).

The principal is the node's own fleet role: a key derived from the agent's (`NodeContext.
principal`; a node cannot hold its own credential).  At the first action the node grants it a
credential (advanced tier, the schema families the fleet acts with, `KINDS`), signed and stored
like any credential it grants, but never sent (receipts to the principal are kept in its chain,
not delivered).  That chain is the fleet's record; the operator may revoke the credential
(`hive-revoke`), which stops fleet actions until the agent restarts with a new one.  Each
action's command id is derived from the intent id that guards it, so an action submitted twice
(a retry, a restart) is one command.

The governance mode (`Governance`, plugin option `hive-governance-mode`; `operator` by default,
see `Governance`) replaces the policy's mode for these commands only: autonomous keeps the
approval table's route, operator queues what would run for `hive-pending`/`hive-approve`,
failsafe refuses (FAILSAFE_ONLY) what the catalogue does not mark emergency and runs emergency
actions within `hive-failsafe-budget-per-day` and 2 an hour.

The outcome is kept in the store (the command row and its receipts), so `outcome(intent_id)`
answers after a restart; `on_outcome` is called once an action is final (ok, failed, refused,
rejected, expired), after each step of the node's loop, at least once across restarts (the open
actions are a store entry, dropped after the call).  The fleet side sees this module only
through its port, agent/fleet/actions.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from pydantic import ValidationError

from agent.advisory.approvals import vote
from agent.advisory.credentials import new_credential
from agent.advisory.node import NodeService
from agent.advisory.policy import Governance
from agent.store import advisory as repo
from agent.store.advisory import CommandState as CS
from agent.store.advisory import ReplyChannel
from events import credential
from events.command import Command
from events.credential import Grant, Tier
from events.errors import HiveError, InvalidParams, Unauthorized
from events.types import first_error

log = logging.getLogger("hive.fleet-actions")

# a fleet action kind → (schema family, action) in the catalogue (agent/advisory/schemas.py)
KINDS: dict[str, tuple[str, str]] = {
    "channel_open": ("channel", "open"),  # danger 5, 6 from 1M sat
    "channel_close": ("channel", "close"),  # 6
    "channel_force_close": ("channel", "force_close"),  # 7 (recognised, not executed)
    "splice_in": ("splice", "splice_in"),  # 6 (recognised, not executed)
    "splice_out": ("splice", "splice_out"),  # 7 (recognised, not executed)
    "rebalance": ("rebalance", "circular"),  # 3, 5 from 100k sat
    "fee_set": ("fee-policy", "set_single"),  # 2 (members route to each other at zero fee)
    "ban_peer": ("emergency", "ban_peer"),  # 4, emergency (recognised, not executed)
    "emergency_close": ("emergency", "close_channel"),  # 6, emergency
}
ORIGINS = frozenset({"planner", "hive-expand"})
SCHEMAS = sorted({f"hive:{family}/*" for family, _ in KINDS.values()})
CREDENTIAL_DAYS = 365
RENEW_BEFORE_S = 30 * 86400  # a new credential when less than this is left
OPEN_KEY = "fleet-actions:open"  # intent id → {command_id, kind, origin}: not yet reported
WAITING = (CS.QUEUED, CS.CONFIRM, CS.CONFIRMED, CS.MULTISIG)


class Status(StrEnum):
    PENDING = "pending"  # accepted: being decided, or runs at the next step
    WAITING = "waiting"  # waits for the operator (hive-pending / hive-approve) or approvers
    OK = "ok"  # ran; `result` is what the node returned
    FAILED = "failed"  # was run and failed (or a crash left it unknown): `code`
    REFUSED = "refused"  # policy, budgets, the mode or its parameters said no: `code`
    REJECTED = "rejected"  # the operator (or the approvers) rejected it
    EXPIRED = "expired"  # nobody approved it in time


FINAL = frozenset({Status.OK, Status.FAILED, Status.REFUSED, Status.REJECTED, Status.EXPIRED})


class ActionRequest(Protocol):
    """What the fleet asks for (agent/fleet/actions.py `FleetAction` is one)."""

    @property
    def kind(self) -> str: ...
    @property
    def params(self) -> Mapping[str, Any]: ...
    @property
    def intent_id(self) -> str: ...
    @property
    def origin(self) -> str: ...


@dataclass(frozen=True)
class ActionOutcome:
    """Where a fleet action is: final once `status` is in FINAL (then `ok` says how)."""

    intent_id: str
    command_id: str
    status: Status
    code: str | None = None  # the typed error's stable code, when not ok
    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    danger: int | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def ok(self) -> bool:
        return self.status == Status.OK


ActionTicket = ActionOutcome  # what submit() answers: the outcome as it stands


def command_id_for(intent_id: str) -> str:
    """The command id of the action an intent guards (one intent, one command)."""
    return hashlib.sha256(b"hive-fleet-action\0" + intent_id.encode()).hexdigest()[:32]


class LocalActions:
    """The fleet's way into the node's command path; `ActionPort` (agent/fleet/actions.py)."""

    def __init__(
        self,
        node: NodeService,
        governance: Governance | None = None,
        on_outcome: Callable[[ActionOutcome], None] | None = None,
    ) -> None:
        self.node = node
        self.governance = governance or Governance()
        self.on_outcome = on_outcome
        node.after_step.append(self.report)
        newest = self._newest()  # revoked before this start: replaced at the first action
        self._revoked_at_start = (
            newest["credential_id"] if newest and newest["revoked_at"] else None
        )

    @property
    def governance(self) -> Governance:
        return self.node.ctx.governance

    @governance.setter
    def governance(self, governance: Governance) -> None:
        self.node.ctx.governance = governance

    def principal(self) -> Grant:
        """The credential the node holds for its own actions (granted to itself if none)."""
        store, me, now = self.node.agent.store, self.node.me, self.node.now
        holder = self.node.ctx.principal
        newest = self._newest()
        if newest and newest["revoked_at"] and newest["credential_id"] != self._revoked_at_start:
            raise Unauthorized(
                "the operator revoked the credential fleet actions run under; they stay off "
                "until the agent restarts"
            )
        grant = repo.active_granted_to(store, holder, now + RENEW_BEFORE_S)
        if grant is not None and all(grant.credential.allows(s[:-2] + "/v1") for s in SCHEMAS):
            return grant
        cred = new_credential(
            me, holder, Tier.ADVANCED.value, SCHEMAS, now=now, days=CREDENTIAL_DAYS
        )
        grant = credential.sign(self.node.agent.keys, cred)
        with store.transaction(now) as tx:
            repo.save_credential(tx, grant, "granted")
        log.info("granted credential %s to the fleet role (fleet actions)", cred.credential_id)
        return grant

    def _newest(self) -> dict[str, Any] | None:
        """The newest credential granted to the fleet role (revoked or not)."""
        mine = [
            r
            for r in repo.credentials(self.node.agent.store, "granted")
            if r["advisor"] == self.node.ctx.principal
        ]
        return mine[-1] if mine else None

    def submit(self, action: ActionRequest) -> ActionOutcome:
        """Hand a fleet action to the node's command path; the outcome as it stands (final at
        once when refused at intake).  Submitting the same intent again changes nothing."""
        cid = command_id_for(str(action.intent_id))
        try:
            cmd = self._command(action, cid)
            self._intake(action, cmd)
        except HiveError as error:  # nothing was stored: the intent is released by the caller
            log.info("fleet action %s refused: %s", action.intent_id, error)
            return ActionOutcome(
                str(action.intent_id), cid, Status.REFUSED, error.code, error.message
            )
        self.node.wake()
        found = self.outcome(action.intent_id)
        assert found is not None  # a row, or a receipt refusing it
        return found

    def _command(self, action: ActionRequest, cid: str) -> Command:
        if action.kind not in KINDS:
            raise InvalidParams(f"unknown fleet action {action.kind!r}; known: {', '.join(KINDS)}")
        if action.origin not in ORIGINS:
            raise InvalidParams(f"unknown origin {action.origin!r}; known: {', '.join(ORIGINS)}")
        if not 1 <= len(action.intent_id) <= 128:
            raise InvalidParams("a fleet action needs its intent id (1 to 128 characters)")
        family, name = KINDS[action.kind]
        now = self.node.now
        try:
            return Command(
                command_id=cid,
                node=self.node.me,
                credential_id=self.principal().credential.credential_id,
                schema=f"hive:{family}/v1",
                action=name,
                params=dict(action.params),
                nonce=secrets.token_hex(16),
                issued_at=now,
                expires_at=now + 300,
            )
        except ValidationError as exc:
            raise InvalidParams(f"fleet action {action.kind}: {first_error(exc)}") from None

    def _intake(self, action: ActionRequest, cmd: Command) -> None:
        """The advisor's intake (same checks, same receipts), and the action noted as open."""
        store, holder = self.node.agent.store, self.node.ctx.principal
        again = repo.command_row(store, cmd.command_id) is not None  # reported as it stands
        opened = dict(store.kv(OPEN_KEY, {}))
        opened[action.intent_id] = {
            "command_id": cmd.command_id,
            "kind": action.kind,
            "origin": action.origin,
        }
        with store.transaction(self.node.now) as tx:
            self.node.intake.intake(tx, cmd, holder, ReplyChannel.RECEIPT)
            if not again:
                tx.set_kv(OPEN_KEY, opened)

    def outcome(self, intent_id: str) -> ActionOutcome | None:
        """The action an intent guards, as it stands; None if it was never submitted."""
        store, cid = self.node.agent.store, command_id_for(intent_id)
        row = repo.command_row(store, cid)
        if row is None:
            found = repo.latest_receipt(store, cid)
            if found is None:
                return None
            error = found.error
            code, message = (error.code, error.message) if error else (None, "")
            return ActionOutcome(intent_id, cid, Status.REFUSED, code, message, {}, found.danger)
        return _from_row(intent_id, row)

    def withdraw(self, intent_id: str) -> ActionOutcome | None:
        """The fleet's lock on this action lapsed while it waited for the operator: reject it
        (as the fleet), so a later approval cannot run it outside the lock.  The outcome as
        it stands (an action already running is left to finish)."""
        found = self.outcome(intent_id)
        if found is not None and found.status == Status.WAITING:
            vote(self.node.agent.store, found.command_id, "reject", self.node.now, "fleet")
            self.node.wake()
        return self.outcome(intent_id)

    def open_actions(self) -> dict[str, dict[str, str]]:
        """Submitted actions whose final outcome was not reported yet, by intent id."""
        return dict(self.node.agent.store.kv(OPEN_KEY, {}))

    def report(self) -> None:
        """Call `on_outcome` for each open action that became final; then forget it."""
        if self.on_outcome is None:
            return
        opened = self.open_actions()
        done = []
        for intent_id in opened:
            found = self.outcome(intent_id)
            if found is None or not found.final:
                continue
            try:
                self.on_outcome(found)
            except Exception:
                log.exception("the fleet's outcome callback failed for %s", intent_id)
                continue  # reported again at the next step
            done.append(intent_id)
        if done:
            store = self.node.agent.store
            left = {k: v for k, v in self.open_actions().items() if k not in done}
            with store.transaction(self.node.now) as tx:
                tx.set_kv(OPEN_KEY, left)


def _from_row(intent_id: str, row: dict[str, Any]) -> ActionOutcome:
    state, cid, danger = CS(row["state"]), row["command_id"], row["danger"]
    if state in WAITING:
        why = f"waits for the operator: hive-approve {cid[:12]}"
        return ActionOutcome(intent_id, cid, Status.WAITING, None, why, {}, danger)
    if state not in (CS.DONE, CS.REFUSED):
        return ActionOutcome(intent_id, cid, Status.PENDING, None, "", {}, danger)
    outcome = json.loads(row["outcome"] or "{}")
    if state == CS.DONE:
        return ActionOutcome(intent_id, cid, Status.OK, None, "", outcome, danger)
    code, message = outcome.get("code"), outcome.get("message", "")
    status = (
        Status.FAILED
        if row["reserved"] is not None  # it was claimed to run
        else Status.EXPIRED
        if code == "EXPIRED"
        else Status.REJECTED
        if code == "REJECTED"
        else Status.REFUSED
    )
    return ActionOutcome(intent_id, cid, status, code, message, {}, danger)
