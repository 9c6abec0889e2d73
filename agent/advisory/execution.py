"""Execution: claim the command and reserve its budget in one transaction, run it on the node,
then record the outcome and the receipt in another, so a crash can neither run it twice nor
lose its receipt; on restart, commands caught mid-execution are settled by asking the node."""

from __future__ import annotations

import json
from typing import Any

import anyio

from agent.advisory import effects, schemas
from agent.advisory.context import NodeContext
from agent.advisory.intake import Intake
from agent.advisory.limits import FAILSAFE, Limits
from agent.advisory.policy import Decision, Mode, Route
from agent.advisory.receipts import Receipts
from agent.crash import crash_point
from agent.node.backend import NodeBackend
from agent.store import Tx
from agent.store import advisory as repo
from agent.store import contribution as ledger
from agent.store.advisory import CommandState as CS
from events.canonical import content_hash
from events.command import Command
from events.errors import HiveError, Internal
from events.receipt import Status

Row = dict[str, Any]


class Execution:
    def __init__(
        self, ctx: NodeContext, receipts: Receipts, limits: Limits, intake: Intake
    ) -> None:
        self.ctx = ctx
        self.receipts = receipts
        self.limits = limits
        self.intake = intake

    async def dry_run(
        self, row: Row, spec: schemas.ActionSpec, params: schemas.Params, decision: Decision
    ) -> None:
        before = await schemas.touched_state(spec, self.ctx.node, params)
        predicted = effects.predict(spec, before, params)
        result = {
            "danger": decision.danger,
            "route": decision.route.value,
            "reasons": decision.reasons,
            "would_run": decision.route != Route.REFUSED,
            "state_before": before,
            "predicted_diff": None if predicted is None else effects.diff(before, predicted),
            "error": decision.error.to_dict() if decision.error else None,
        }
        self.receipts.finish_row(
            row,
            status=Status.DRY_RUN,
            result=result,
            danger=decision.danger,
            decision=decision.explain(),
            before=content_hash(before),
            after=content_hash(before),
        )

    async def execute(self, row: Row) -> None:
        """Run a command that became `ready` (approved, confirmed or allowed by the oracle)."""
        cmd, _grant, spec, params = self.intake.parsed(row)
        before = await schemas.touched_state(spec, self.ctx.node, params)
        # The claim must be on disk before an action that must not run twice.  An idempotent
        # one (setting an absolute value) may run again after a power cut, so its claim rides
        # on the receipt's durable commit instead; recover() re-runs such actions anyway.
        with self.ctx.agent.store.transaction(self.ctx.now, durable=not spec.idempotent) as tx:
            reserve = self.claim(tx, cmd, spec, params, before, CS.READY)
        if reserve is not None:
            await self.run(row, cmd, spec, params, before, reserve)

    def claim(
        self,
        tx: Tx,
        cmd: Command,
        spec: schemas.ActionSpec,
        params: schemas.Params,
        before: Any,
        frm: CS,
        **decided: Any,
    ) -> dict[str, int] | None:
        """Move the command to `executing` and reserve its budget; None if already claimed.
        `decided`: columns written in the same statement (the decision that lets it run)."""
        reserve = {
            "sats_moved": spec.moves_sats(params),
            "fees_sat": spec.max_fee_sats(params),
            "channels": int(spec.opens_channel),
            "actions": 1,
        }
        self.limits.check_budgets(cmd, spec, params, tx)  # re-checked where it is reserved
        self.limits.recheck_cover(cmd, spec.danger(params), tx)  # and the ticket paying for it
        saved = json.dumps({"usage": reserve, "before": before})
        if not repo.move(tx, cmd.command_id, (frm,), CS.EXECUTING, reserved=saved, **decided):
            return None  # someone else claimed it
        for scope in ("node", cmd.credential_id):
            repo.add_usage(tx, scope, **reserve)
        if self.ctx.mode_of(tx, cmd) == Mode.FAILSAFE:  # counted as attempted, never refunded
            repo.add_usage(tx, FAILSAFE, **reserve)
            repo.record_rate(tx, FAILSAFE, True)
        return reserve

    async def run(
        self,
        row: Row,
        cmd: Command,
        spec: schemas.ActionSpec,
        params: schemas.Params,
        before: Any,
        reserve: dict[str, int],
    ) -> None:
        crash_point("command.before_execute", spec.family)
        try:
            result = await schemas.execute(spec, self.ctx.node, params, cmd.command_id)
        except HiveError as error:
            self.settle(row, cmd, spec, params, before, reserve, error=error)
        else:
            crash_point("command.after_execute", spec.family)
            await self.settle_ok(row, cmd, spec, params, before, reserve, result)
        await anyio.lowlevel.checkpoint()  # the outbox sends the receipt before this loop goes on

    async def settle_ok(
        self,
        row: Row,
        cmd: Command,
        spec: schemas.ActionSpec,
        params: schemas.Params,
        before: Any,
        reserve: dict[str, int],
        result: dict[str, Any],
    ) -> None:
        after = await schemas.touched_state(spec, self.ctx.node, params)
        fee_sat = -(-int(result.get("fee_msat", 0)) // 1000)
        self.settle(
            row, cmd, spec, params, before, reserve, result=result, after=after, fee_sat=fee_sat
        )
        crash_point("command.after_receipt", spec.family)

    def settle(
        self,
        row: Row,
        cmd: Command,
        spec: schemas.ActionSpec,
        params: schemas.Params,
        before: Any,
        reserve: dict[str, int],
        *,
        error: HiveError | None = None,
        result: dict[str, Any] | None = None,
        after: Any = None,
        fee_sat: int = 0,
    ) -> None:
        """Outcome, usage corrected from the reservation, receipt: one transaction."""
        with self.ctx.agent.store.transaction(self.ctx.now) as tx:
            if not repo.move(tx, cmd.command_id, (CS.EXECUTING,), CS.SETTLING):
                return
            undo = (
                {k: -v for k, v in reserve.items()}
                if error
                else {"fees_sat": fee_sat - reserve["fees_sat"]}
            )
            for scope in ("node", cmd.credential_id):
                repo.add_usage(tx, scope, **undo)
            if error:
                tx.count_errors({error.code: 1})
            elif spec.family == "rebalance" and result:  # its fee: a cost in the fleet ledger
                fee, moved = int(result.get("fee_msat", 0)), int(result.get("amount_msat", 0))
                ledger.record_rebalance(tx, cmd.command_id, fee, moved)
            sealed = self.receipts.finish(
                tx,
                cmd,
                row["sender"],
                row["reply"],
                status=Status.ERROR if error else Status.OK,
                error=error,
                result=result,
                danger=row.get("danger") or spec.danger(params),
                decision=row.get("reasons") or "",
                before=content_hash(before),
                after=content_hash(after if after is not None else before),
                diff=_changed(before, after) if error is None else None,
            )
            outcome = json.dumps(sealed.error.model_dump() if sealed.error else sealed.result)
            final = CS.REFUSED if error else CS.DONE
            repo.move(tx, cmd.command_id, (CS.SETTLING,), final, outcome=outcome)
        self.ctx.agent.wake_outbox()

    async def recover(self) -> None:
        """Settle commands a crash left in `executing`, without ever running one twice."""
        for row in repo.commands_in(self.ctx.agent.store, CS.EXECUTING):
            cmd, _grant, spec, params = self.intake.parsed(row)
            saved = json.loads(row["reserved"])
            before, usage = saved["before"], saved["usage"]
            result = await self._made(spec, params, cmd, before)
            if result is None:
                error = Internal(
                    "the node restarted during this action and cannot tell if it ran; not retried"
                )
                self.settle(row, cmd, spec, params, before, usage, error=error)
            else:
                await self.settle_ok(row, cmd, spec, params, before, usage, result)

    async def _made(
        self, spec: schemas.ActionSpec, params: schemas.Params, cmd: Command, before: Any
    ) -> dict[str, Any] | None:
        """What an interrupted action did: run again if that is harmless (idempotent), found
        on the node if it can tell (its own hook; for an open, a channel to the peer of that
        size that was not there when it was claimed), run now if the node says it never was;
        None if nobody can tell."""
        node = self.ctx.node
        if spec.idempotent:  # setting an absolute value again changes nothing
            return await schemas.execute(spec, node, params, cmd.command_id)
        if spec.opens_channel and isinstance(params, schemas.Open) and isinstance(before, dict):
            # found: it ran.  Not found is no proof it never will (lightningd may still be
            # funding it), so never run again: nobody can tell.
            return await _opened_since(node, params, before)
        if spec.find_made is not None:
            found = await spec.find_made(node, cmd.command_id)
            if found is not None:
                return found
            return await schemas.execute(spec, node, params, cmd.command_id)  # never made
        return None


def _changed(before: Any, after: Any) -> dict[str, list[Any]] | None:
    """What the command changed of the state it touches (None: no after-state was taken)."""
    if isinstance(before, dict) and isinstance(after, dict):
        return effects.diff(before, after)
    return None


async def _opened_since(
    node: NodeBackend, params: schemas.Open, before: dict[str, Any]
) -> dict[str, Any] | None:
    for chan in await node.channels():
        new = chan.short_channel_id and chan.short_channel_id not in before
        if new and chan.peer_id == params.peer and chan.capacity_sat == params.amount_sats:
            return {"channel": chan.short_channel_id, "capacity_sat": chan.capacity_sat}
    return None
