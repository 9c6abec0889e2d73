"""Approvals: what waits for a human (or m of n approvers) and how it moves on — the operator's
approve/reject/confirm (CLI, plugin method or DM reply), approvers' signed votes, expiry."""

from __future__ import annotations

import json
from typing import Any

from agent.advisory.context import NodeContext
from agent.advisory.intake import Intake, parse_text
from agent.advisory.policy import CONFIRM_TTL_S, QUEUE_TTL_S, Decision, Route
from agent.advisory.receipts import Receipts, dm_channel
from agent.advisory.usage import claim_usage_reply, is_help, usage_text
from agent.store import Tx
from agent.store import advisory as repo
from agent.store.advisory import CommandState as CS
from events import approval
from events.command import Command
from events.errors import (
    Expired,
    InvalidParams,
    RateLimited,
    Rejected,
    Restricted,
    Unauthorized,
)
from events.nip59 import Unwrapped
from events.receipt import Status

HELD = {Route.QUEUE: CS.QUEUED, Route.CONFIRM: CS.CONFIRM, Route.MULTISIG: CS.MULTISIG}
WAITING = (CS.QUEUED, CS.CONFIRM, CS.CONFIRMED, CS.MULTISIG)  # for a person to decide
WAITING_FOR = {
    CS.QUEUED: "the operator's approval",
    CS.CONFIRM: "approval and confirmation",
    CS.MULTISIG: "{n} approver signatures",
}


class Approvals:
    def __init__(self, ctx: NodeContext, receipts: Receipts, intake: Intake) -> None:
        self.ctx = ctx
        self.receipts = receipts
        self.intake = intake

    def move(self, command_id: str, frm: CS, to: CS, **fields: Any) -> bool:
        with self.ctx.agent.store.transaction(self.ctx.now) as tx:
            return repo.move(tx, command_id, (frm,), to, **fields)

    def hold(self, row: dict[str, Any], cmd: Command, decision: Decision) -> None:
        """Park the command until someone decides; tell the advisor and the operator."""
        ctx = self.ctx
        state = HELD[decision.route]
        cap = ctx.policy.max_waiting_per_advisor
        sender = row["sender"]
        if sender != ctx.principal and repo.waiting_from(ctx.agent.store, sender, WAITING) >= cap:
            # (each one is read at every step of the node's loop, for up to a day)
            limit = RateLimited(f"{cap} commands of this advisor already wait for the operator")
            self.receipts.finish_row(
                row,
                status=Status.ERROR,
                error=limit,
                danger=decision.danger,
                decision=decision.explain(),
            )
            return
        self.move(cmd.command_id, CS.RECEIVED, state, decide_by=ctx.now + QUEUE_TTL_S)
        what = WAITING_FOR[state].format(n=ctx.policy.approvals_needed)
        result = {"waiting_for": what, "decide_by": ctx.now + QUEUE_TTL_S, "id": cmd.command_id}
        self.receipts.finish_row(
            {**row, "state": state},
            status=Status.QUEUED,
            result=result,
            danger=decision.danger,
            decision=decision.explain(),
        )
        if ctx.policy.operator_pubkey:
            with ctx.agent.store.transaction(ctx.now) as tx:
                ask = _ask(row, cmd, decision, state, local=row["sender"] == ctx.principal)
                self.receipts.dm(tx, ctx.policy.operator_pubkey, ask)
            ctx.agent.wake_outbox()

    def apply(self) -> None:
        """Move waiting commands on as approvals arrive; expire those whose window passed."""
        store, pol, now = self.ctx.agent.store, self.ctx.policy, self.ctx.now
        for row in repo.commands_in(store, *WAITING):
            votes = repo.approvals(store, row["command_id"])
            cid, state = row["command_id"], row["state"]
            if votes["reject"] and state != CS.MULTISIG:
                self.receipts.refuse(row, Rejected("the operator rejected the command"))
            elif (
                state == CS.MULTISIG
                and len(votes["reject"]) > len(pol.approvers) - pol.approvals_needed
            ):
                self.receipts.refuse(row, Rejected("too many approvers rejected the command"))
            elif state == CS.QUEUED and votes["approve"]:
                self.move(cid, CS.QUEUED, CS.READY)
            elif state == CS.CONFIRM and votes["approve"]:
                self.move(cid, CS.CONFIRM, CS.CONFIRMED, decide_by=now + CONFIRM_TTL_S)
            elif state == CS.CONFIRMED and votes["confirm"]:
                self.move(cid, CS.CONFIRMED, CS.READY)
            elif state == CS.MULTISIG and len(votes["approve"]) >= pol.approvals_needed:
                self.move(cid, CS.MULTISIG, CS.READY)
            elif row["decide_by"] is not None and now >= row["decide_by"]:
                self.receipts.refuse(row, Expired("nobody approved the command in time"))

    def on_approval(self, ev: Any, tx: Tx) -> None:
        """An approver's signed m-of-n vote (kind 36386)."""
        ctx = self.ctx
        item = approval.FAMILY.parse(ev, now=ctx.now).payload
        if ev.pubkey not in ctx.policy.approvers:
            raise Unauthorized("not one of this node's approvers")
        row = repo.command_row(tx, item.command_id)
        if item.node != ctx.me or row is None or row["state"] != CS.MULTISIG:
            raise Restricted("no command of this node waits for approvers")
        if item.params_hash != row["params_hash"] or ctx.now >= item.expires_at:
            raise Restricted("the approval is for other parameters or has expired")
        step = "approve" if item.verdict == approval.Verdict.APPROVE else "reject"
        repo.add_approval(tx, item.command_id, ev.pubkey, step)

    def on_dm(self, opened: Unwrapped, tx: Tx) -> None:
        """A NIP-17 DM: the operator approving, a credential holder's plain-text command, or
        `help` / text that is no command (answered with the usage text, rate-limited)."""
        text = opened.rumor.content.strip()
        sender, asked = opened.sender, opened.rumor.id
        if sender == self.ctx.me:
            return  # our own copy of a DM we sent (NIP-17 wraps one to the sender)
        words = text.split()
        if is_help(text):
            self.usage(tx, sender, asked)
            return
        if (
            sender == self.ctx.policy.operator_pubkey
            and words
            and words[0].lower() in ("approve", "reject", "confirm")
        ):
            found = resolve(tx, words[1] if len(words) > 1 else "")
            if found is None:
                self.receipts.dm(tx, sender, f"no waiting command matches {text!r}", asked)
                return
            try:
                record_vote(tx, found, sender, words[0].lower())
            except InvalidParams as refused:
                self.receipts.dm(tx, sender, f"{found[:12]}: {refused.message}", asked)
                return
            self.receipts.dm(tx, sender, f"{words[0].lower()}d {found[:12]}", asked)
            return
        # a reply (an `e` tag) is another agent's answer, never a request: answering it with
        # the usage text would start two agents answering each other
        replying = any(t[:1] == ["e"] for t in opened.rumor.tags)
        grant = repo.active_granted_to(tx, sender, self.ctx.now)
        if grant is None:
            tx.count_errors({Unauthorized.code: 1})  # a stranger's DM: counted, usage at most
            if not replying:
                self.usage(tx, sender, asked)
            return
        try:
            cmd = parse_text(text, grant, self.ctx.me, self.ctx.now)
        except InvalidParams as error:
            tx.count_errors({error.code: 1})
            if not replying:
                self.usage(tx, sender, asked, f"{error.message}\n\n")
            return
        self.intake.intake(tx, cmd, sender, dm_channel(asked))

    def usage(self, tx: Tx, to: str, reply_to: str, before: str = "") -> None:
        """The usage text as a reply to `reply_to`, unless `to` or everyone has had enough
        of it this hour (then counted as RATE_LIMITED, and no reply)."""
        try:
            claim_usage_reply(tx, to)
        except RateLimited as error:
            tx.count_errors({error.code: 1})
            return
        self.receipts.dm(tx, to, before + usage_text(), reply_to)


def _ask(
    row: dict[str, Any], cmd: Command, decision: Decision, state: CS, *, local: bool = False
) -> str:
    """The operator's DM about a command that waits for them."""
    who = "This node's fleet" if local else f"Advisor {row['sender'][:12]}…"
    return (
        f"{who} asks {cmd.schema} {cmd.action} "
        f"{json.dumps(cmd.params, sort_keys=True)} (danger {decision.danger};"
        f" {decision.route.value}). "
        f"Reply 'approve {cmd.command_id[:12]}' or 'reject {cmd.command_id[:12]}'"
        + (" and then 'confirm …'" if state == CS.CONFIRM else "")
        + "."
    )


def pending(store: Any) -> list[dict[str, Any]]:
    """Commands waiting for a human (or the approvers), oldest first."""
    rows = repo.commands_in(store, CS.QUEUED, CS.CONFIRM, CS.CONFIRMED, CS.MULTISIG)
    out = []
    for row in rows:
        cmd = Command.model_validate_json(row["command"])
        out.append(
            {
                "id": row["command_id"],
                "state": row["state"],
                "advisor": row["sender"],
                "schema": cmd.schema,
                "action": cmd.action,
                "params": cmd.params,
                "danger": row["danger"],
                "decision": row["reasons"],
                "decide_by": row["decide_by"],
                "votes": {
                    k: sorted(v) for k, v in repo.approvals(store, row["command_id"]).items()
                },
            }
        )
    return out


def resolve(db: Any, prefix: str) -> str | None:
    """A waiting command by id or unique id prefix (at least 6 characters)."""
    if len(prefix) < 6:
        return None
    ids = [r["id"] for r in pending(db) if r["id"].startswith(prefix.lower())]
    return ids[0] if len(ids) == 1 else None


def vote(store: Any, prefix: str, step: str, now: int, approver: str = "operator") -> str:
    """Record an operator's approve/reject/confirm; the running node applies it."""
    with store.transaction(now) as tx:
        found = resolve(tx, prefix)
        if found is None:
            raise InvalidParams(f"no waiting command matches {prefix!r}")
        record_vote(tx, found, approver, step)
    return found


def record_vote(tx: Tx, command_id: str, voter: str, step: str) -> None:
    """An operator's approve/reject/confirm of a waiting command.  A confirmation counts only
    once the command is approved (two separate decisions: one given before the approval
    would let the approval run the command at once): InvalidParams before."""
    row = repo.command_row(tx, command_id)
    if step == "confirm" and (row is None or row["state"] != CS.CONFIRMED):
        raise InvalidParams("this command waits for its approval; confirm it once approved")
    repo.add_approval(tx, command_id, voter, step)
