"""The node side of advisor commands: intake, checks, danger, policy, approval, execution on the
`NodeBackend`, and receipts.

Intake (a gift-wrap handler, inside the inbound transaction): the command is parsed and tied
to its sender; commands from anyone but the holder of a valid, unrevoked credential this node
granted are refused and counted, with no reply (no reflection, no chain for strangers).  For a
holder, every refusal gets a receipt: replays, the ±300 s window and expiry, nonces, schema
permissions and parameters.  Accepted commands are stored as `received`.

Processing (a task): danger, limits (constraints, budgets, rates, protected channels,
forbidden peers — all counted in the store), the approval decision, and the route: run now,
wait for the operator (notified by NIP-17 DM; approve by CLI, plugin method or DM reply), wait
for an approve-then-confirm, for m of n approver events, or for the oracle.  Execution claims
the command and reserves its budget in one transaction, runs it, then records the outcome and
the receipt (hash-chained, signed) in another, so a crash can neither run it twice nor lose
its receipt; on restart, commands caught mid-execution are settled by asking the node.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio

from agent.advisory import schemas
from agent.advisory.approvals import Approvals, pending, resolve, vote
from agent.advisory.context import NodeContext
from agent.advisory.credentials import Credentials, new_credential
from agent.advisory.execution import Execution
from agent.advisory.intake import Intake, parse_text
from agent.advisory.limits import Limits
from agent.advisory.oracle import oracle_verdict
from agent.advisory.policy import Decision, PolicyConfig, Route, decide, reputation_factor
from agent.advisory.ports import CommandPayments
from agent.advisory.receipts import Receipts, receipt_text
from agent.component import Messaging, Wiring
from agent.market.reputation import aggregate
from agent.node.backend import NodeBackend
from agent.nostr.pool import Subscription
from agent.store import Tx
from agent.store import advisory as repo
from agent.store import market as market_repo
from agent.store.advisory import CommandState as CS
from events.base import NostrEvent
from events.command import Command
from events.credential import Grant
from events.errors import HiveError, Internal, Rejected
from events.kinds import Kind
from events.nip59 import Unwrapped
from events.receipt import Status

__all__ = [  # the operator's tools, used by the CLI and the plugin
    "NodeService",
    "new_credential",
    "parse_text",
    "pending",
    "receipt_text",
    "resolve",
    "vote",
]
log = logging.getLogger("hive.node")
FULL_STEP_S = 1.0  # votes from other processes and expiries are looked at this often
Row = dict[str, Any]


class NodeService:
    """The node side of advisor commands, assembled from its parts (each in its own module)."""

    def __init__(
        self,
        host: Messaging,
        node: NodeBackend,
        policy: PolicyConfig,
        payments: CommandPayments | None = None,
    ) -> None:
        self.ctx = ctx = NodeContext(host, node, policy, payments)
        self.agent, self.node, self.me = host, node, host.pubkey
        self.credentials = Credentials(host)
        self.receipts = Receipts(ctx)
        self.intake = Intake(ctx, self.receipts)
        self.limits = Limits(ctx)
        self.approvals = Approvals(ctx, self.receipts, self.intake)
        self.execution = Execution(ctx, self.receipts, self.limits, self.intake)
        self._wake = anyio.Event()
        self._full = True  # the next step also moves waiting commands on (see step)
        self._full_at = 0.0
        self.after_step: list[Callable[[], None]] = []  # e.g. report fleet actions' outcomes

    def wiring(self) -> Wiring:
        return Wiring(
            rumors={
                Kind.COMMAND: self.intake.on_command,
                Kind.DIRECT_MESSAGE: self._on_dm,
            },
            handlers={Kind.APPROVAL: self._on_approval},
            subscriptions=[
                Subscription("approvals", [{"kinds": [Kind.APPROVAL], "#p": [self.me]}])
            ],
            after_batch=[self.arrived],
            known_keys=frozenset(  # and ourselves: the copies of our DMs (NIP-17) come back
                k for k in [self.policy.operator_pubkey, *self.policy.approvers, self.me] if k
            ),
        )

    @property
    def policy(self) -> PolicyConfig:
        return self.ctx.policy

    @policy.setter
    def policy(self, policy: PolicyConfig) -> None:
        self.ctx.policy = policy

    @property
    def now(self) -> int:
        return self.ctx.now

    def wake(self) -> None:
        """Anything may have changed (a vote, a fleet action): step now, all of it."""
        self._full = True
        self._wake.set()

    def arrived(self) -> None:
        """An inbound batch was handled: commands may wait to be processed."""
        self._wake.set()

    def _on_dm(self, opened: Unwrapped, tx: Tx) -> None:
        self.approvals.on_dm(opened, tx)  # perhaps an operator's answer
        self._full = True

    def _on_approval(self, ev: NostrEvent, tx: Tx) -> None:
        self.approvals.on_approval(ev, tx)
        self._full = True

    def pending(self) -> list[Row]:
        return pending(self.agent.store)

    # --- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Forever: settle interrupted executions once, then process commands as they come."""
        await self.execution.recover()
        while True:
            self._wake = anyio.Event()
            await self.step(full=False)
            with anyio.move_on_after(1.0):
                await self._wake.wait()

    async def step(self, *, full: bool = True) -> None:
        """Process the commands received; then apply votes and expiries and run what became
        ready.  The loop passes `full=False`: it then does that second part only when
        something may have moved a command on (a vote or DM handled, an oracle's answer, a
        wake from the plugin or a fleet action) or a second has passed (windows expire;
        another process, `hive-agent approve`, may have voted): an advisor's command alone
        needs only the first part, two queries and a pass over waiting commands fewer."""
        for row in repo.commands_in(self.agent.store, CS.RECEIVED):
            await self._guard(self.process, row)
        now = time.monotonic()
        if full or self._full or now - self._full_at >= FULL_STEP_S:
            self._full, self._full_at = False, now
            self.approvals.apply()
            for row in repo.commands_in(self.agent.store, CS.READY):
                await self._guard(self.execution.execute, row)
        for hook in self.after_step:
            try:
                hook()
            except Exception:  # a hook never stops the command loop
                log.exception("an after-step hook failed")

    async def _guard(self, fn: Any, row: Row) -> None:
        try:
            await fn(row)
        except HiveError as error:
            self.receipts.finish_row(row, status=Status.ERROR, error=error)
        except Exception:
            log.exception("command %s failed", row["command_id"])
            self.receipts.finish_row(
                row, status=Status.ERROR, error=Internal("the node hit an unexpected error")
            )

    # --- deciding --------------------------------------------------------------------------------

    async def process(self, row: Row) -> None:
        """Danger, limits, reputation → a decision; run now, or route to who decides."""
        cmd, grant, spec, params = self.intake.parsed(row)
        danger = spec.danger(params)
        if spec.self_inspection:
            budget = self.limits.budget(grant)
            self.receipts.finish_row(
                row, status=Status.OK, result=budget, danger=danger, decision="self-inspection"
            )
            return
        # one listing of the channels serves the limit checks and the receipt's "before"
        needs = spec.touches not in ("none", "funds") or spec.fee_change is not None
        listing = await self.node.channels() if needs else None
        decision = await self._decide(row, cmd, grant, spec, params, danger, listing)
        runs_now = decision.route == Route.AUTO and not cmd.dry_run
        before = await schemas.touched_state(spec, self.node, params, listing) if runs_now else None
        # The decision alone need not be durable (if lost, the command is decided again); a
        # command that runs now is claimed in the same commit, which is durable when the claim
        # must be (see Execution.execute).
        cols = {"danger": danger, "route": decision.route.value, "reasons": decision.explain()}
        reserve = None
        with self.agent.store.transaction(self.now, durable=runs_now and not spec.idempotent) as tx:
            repo.record_rate(tx, cmd.credential_id, danger >= 5)
            if runs_now:  # the decision is written by the claim's statement
                reserve = self.execution.claim(tx, cmd, spec, params, before, CS.RECEIVED, **cols)
            else:
                repo.record_decision(tx, cmd.command_id, **cols)
        if runs_now:
            if reserve is not None:
                await self.execution.run({**row, **cols}, cmd, spec, params, before, reserve)
            return
        await self._route(row, cmd, spec, params, decision)

    async def _decide(
        self,
        row: Row,
        cmd: Command,
        grant: Grant,
        spec: schemas.ActionSpec,
        params: schemas.Params,
        danger: int,
        listing: list[Any] | None,
    ) -> Decision:
        limit = await self.limits.error(cmd, grant, spec, params, danger, listing)
        sender, store = row["sender"], self.agent.store
        r = self.ctx.governance.reputation_factor  # the node's own actions (fleet)
        if sender != self.ctx.principal:
            # only this node's own credentials about the advisor: anyone can issue one, and a
            # store of before 2026-12 may hold strangers' (agents refuse them at intake now)
            mine = market_repo.credentials_issued_about(store, self.ctx.me, sender)
            rep = aggregate(sender, mine, self.now)
            r = reputation_factor(rep.score if rep.parts else None)
        pol = self.policy
        return decide(
            danger,
            r,
            pol.preset,
            grant.credential.tier,
            self.ctx.mode_of(store, cmd),
            quiet=pol.quiet(self.now),
            limit_error=limit,
            emergency=spec.emergency,
        )

    async def _route(
        self,
        row: Row,
        cmd: Command,
        spec: schemas.ActionSpec,
        params: schemas.Params,
        decision: Decision,
    ) -> None:
        if cmd.dry_run:
            await self.execution.dry_run(row, spec, params, decision)
        elif decision.route == Route.REFUSED:
            assert decision.error is not None
            self.receipts.finish_row(
                row,
                status=Status.ERROR,
                error=decision.error,
                danger=decision.danger,
                decision=decision.explain(),
            )
        elif decision.route == Route.ORACLE:
            await self.ask_oracle(row, cmd, decision)
        else:
            self.approvals.hold(row, cmd, decision)

    async def ask_oracle(self, row: Row, cmd: Command, decision: Decision) -> None:
        """Ask the oracle (5 s, one retry after 2 s): approve runs, deny rejects, silence queues."""
        verdict = await oracle_verdict(self.policy.oracle_url, cmd, decision)
        if verdict == "approve":
            self.approvals.move(cmd.command_id, CS.RECEIVED, CS.READY)
            self._full = True
        elif verdict == "deny":
            self.receipts.finish_row(
                row,
                status=Status.ERROR,
                error=Rejected("the oracle denied the command"),
                danger=decision.danger,
                decision=decision.explain(),
            )
        else:
            reasons = [*decision.reasons, "no oracle answer"]
            queued = Decision(Route.QUEUE, decision.danger, decision.level, reasons)
            self.approvals.hold(row, cmd, queued)
