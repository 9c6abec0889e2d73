"""Receipts: every answer to a command is a signed, hash-chained receipt, sent gift-wrapped to
the advisor (and as a one-line DM when the command came as a DM), in the same transaction as
the state it reports."""

from __future__ import annotations

import json
import secrets
from typing import Any

from agent.advisory.context import NodeContext
from agent.store import Tx
from agent.store import advisory as repo
from agent.store.advisory import CommandState as CS
from agent.store.advisory import ReplyChannel
from events import dm, receipt
from events.canonical import content_hash
from events.command import Command
from events.errors import HiveError
from events.receipt import Receipt, Status

EMPTY = content_hash({})


class Receipts:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    def finish(
        self,
        tx: Tx,
        cmd: Command,
        sender: str,
        reply: ReplyChannel | str,  # a stored row holds it as text
        *,
        status: Status,
        error: HiveError | None = None,
        result: dict[str, Any] | None = None,
        danger: int = 0,
        decision: str = "",
        before: str = EMPTY,
        after: str = EMPTY,
        diff: dict[str, list[Any]] | None = None,
    ) -> Receipt:
        """Append a receipt to the credential's chain and send it (in the open transaction);
        `diff`: the node state the command changed, kept beside the receipt (not sent)."""
        ctx = self.ctx
        seq, prev = repo.chain_tip(tx, cmd.credential_id)
        receipt_id = secrets.token_hex(16)
        preimage = None
        if status == Status.OK and ctx.payments is not None:
            preimage = ctx.payments.on_success(tx, cmd, receipt_id)  # same commit as the receipt
        body = {
            "receipt_id": receipt_id,
            "seq": seq + 1,
            "node": ctx.me,
            "credential_id": cmd.credential_id,
            "advisor": sender,
            "command_id": cmd.command_id,
            "schema_ref": cmd.schema,
            "action": cmd.action,
            "params_hash": cmd.params_hash,
            "status": status.value,
            "error": None if error is None else {"code": error.code, "message": error.message},
            "result": result or {},
            "danger": danger,
            "decision": decision[:300],
            "state_hash_before": before,
            "state_hash_after": after,
            "created_at": ctx.now,
            "prev_hash": prev,
            "preimage": preimage,
        }
        sealed = receipt.seal(ctx.agent.keys, body)
        repo.save_receipt(tx, sealed, diff)
        self.deliver(tx, sealed, sender, reply)
        return sealed

    def deliver(self, tx: Tx, sealed: Receipt, to: str, reply: ReplyChannel | str) -> None:
        if to == self.ctx.principal:
            return  # the node's own action (agent/advisory/local.py): the chain is its record
        rumor = receipt.FAMILY.rumor(self.ctx.me, sealed, created_at=self.ctx.now)
        self.ctx.agent.enqueue_private(tx, to, rumor)
        if is_dm(reply):
            origin = replied_rumor(reply) or repo.dm_origin(tx, sealed.command_id)
            self.dm(tx, to, receipt_text(sealed), reply_to=origin)

    def dm(self, tx: Tx, to: str, text: str, reply_to: str | None = None) -> None:
        """A NIP-17 DM to `to` (an `e` tag names the DM it answers), and the copy NIP-17 has
        the sender wrap to itself."""
        rumor = dm.rumor(self.ctx.me, to, text, created_at=self.ctx.now, reply_to=reply_to)
        self.ctx.agent.enqueue_private(tx, to, rumor)
        if to != self.ctx.me:
            self.ctx.agent.enqueue_private(tx, self.ctx.me, rumor)

    def finish_row(self, row: dict[str, Any], **kw: Any) -> Receipt:
        """A receipt for a stored command, in its own transaction; a final one (OK or error)
        also records the command's final state and outcome."""
        cmd = Command.model_validate_json(row["command"])
        state = CS.REFUSED if kw.get("error") else CS.DONE
        if kw.get("status") == Status.QUEUED:
            state = row["state"]
        with self.ctx.agent.store.transaction(self.ctx.now) as tx:
            if kw.get("error") is not None:
                tx.count_errors({kw["error"].code: 1})
            sealed = self.finish(tx, cmd, row["sender"], row["reply"], **kw)
            if state in (CS.REFUSED, CS.DONE):
                outcome = json.dumps(sealed.error.model_dump() if sealed.error else sealed.result)
                repo.finalize(tx, cmd.command_id, state, outcome)
                repo.forget_dm_origin(tx, cmd.command_id)
        self.ctx.agent.wake_outbox()
        return sealed

    def refuse(self, row: dict[str, Any], error: HiveError) -> None:
        """An error receipt for a stored command, with the decision it had."""
        self.finish_row(
            row,
            status=Status.ERROR,
            error=error,
            danger=row["danger"] or 0,
            decision=row["reasons"] or "",
        )


def dm_channel(rumor_id: str) -> str:
    """The `commands.reply` value of a command that came as the DM `rumor_id`."""
    return f"{ReplyChannel.DM.value}:{rumor_id}"


def is_dm(reply: ReplyChannel | str) -> bool:
    return reply == ReplyChannel.DM or str(reply).startswith(f"{ReplyChannel.DM.value}:")


def replied_rumor(reply: ReplyChannel | str) -> str | None:
    """The DM a command came in, which its DM receipts answer (None for older rows)."""
    _, sep, rumor_id = str(reply).partition(":")
    return rumor_id if sep and rumor_id else None


def receipt_text(r: Receipt) -> str:
    """A receipt as one line for a DM reply."""
    head = (
        f"{r.schema_ref.removeprefix('hive:').removesuffix('/v1')} {r.action} ({r.command_id[:12]})"
    )
    if r.status == Status.OK:
        return f"done: {head}: {json.dumps(r.result, sort_keys=True)[:400]}"
    if r.status == Status.QUEUED:
        return f"waiting: {head}: {r.result.get('waiting_for', '')}"
    if r.status == Status.DRY_RUN:
        return f"dry run: {head}: {json.dumps(r.result, sort_keys=True)[:400]}"
    assert r.error is not None
    return f"refused: {head}: {r.error.code}: {r.error.message}"
