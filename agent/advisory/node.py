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

import json
import logging
import secrets
import shlex
from typing import Any

import anyio

from agent.advisory import schemas
from agent.advisory.credentials import Credentials
from agent.advisory.policy import (
    CONFIRM_TTL_S,
    PRESETS,
    QUEUE_TTL_S,
    Decision,
    PolicyConfig,
    Route,
    decide,
    reputation_factor,
)
from agent.advisory.ports import CommandPayments
from agent.component import Messaging, Wiring
from agent.crash import crash_point
from agent.market.reputation import aggregate
from agent.node.backend import NodeBackend
from agent.nostr.pool import Subscription
from agent.store import Tx
from agent.store import advisory as repo
from agent.store import market as market_repo
from agent.store.advisory import CommandState as CS
from events import approval, command, receipt
from events.base import make_rumor
from events.canonical import content_hash
from events.command import Command
from events.credential import Grant
from events.errors import (
    Expired,
    HiveError,
    Internal,
    InvalidParams,
    QuotaExceeded,
    RateLimited,
    Rejected,
    Replayed,
    Restricted,
    Unauthorized,
    WrongRecipient,
)
from events.kinds import Kind
from events.nip59 import Unwrapped
from events.receipt import Receipt, Status

log = logging.getLogger("hive.node")
CLOCK_WINDOW_S = 300
EMPTY = content_hash({})
DAY = 86400


class NodeService:
    def __init__(
        self,
        host: Messaging,
        node: NodeBackend,
        policy: PolicyConfig,
        payments: CommandPayments | None = None,
    ) -> None:
        self.agent = host
        self.node = node
        self.policy = policy
        self.me = host.pubkey
        self.payments = payments  # escrow tickets that pay for commands
        self.credentials = Credentials(host)
        self._wake = anyio.Event()
        self._intaken: dict[str, Command] = {}  # commands parsed at intake, by id

    def wiring(self) -> Wiring:
        return Wiring(
            rumors={Kind.COMMAND: self.on_command, Kind.DIRECT_MESSAGE: self.on_dm},
            handlers={Kind.APPROVAL: self.on_approval},
            subscriptions=[
                Subscription("approvals", [{"kinds": [Kind.APPROVAL], "#p": [self.me]}])
            ],
            after_batch=[self.wake],
            known_keys=frozenset(
                k for k in [self.policy.operator_pubkey, *self.policy.approvers] if k
            ),
        )

    @property
    def now(self) -> int:
        return self.agent.clock.now()

    def wake(self) -> None:
        self._wake.set()

    # --- intake ------------------------------------------------------------------------------

    def holder_credential(self, tx: Tx, cmd: Command, sender: str) -> Grant:
        """The credential, if `sender` holds it and it is valid now; Unauthorized otherwise.

        Fails closed: a credential whose revocation state cannot be read is not honoured.
        """
        try:
            found = repo.credential(tx, cmd.credential_id)
        except Exception:  # noqa: BLE001 - cannot check revocation: refuse
            raise Unauthorized("the credential's revocation state cannot be checked") from None
        if found is None or found[2] != "granted" or found[0].credential.node != self.me:
            raise Unauthorized("no such credential was granted by this node")
        grant, revoked_at, _ = found
        cred = grant.credential
        if cred.advisor != sender:
            raise Unauthorized("the sender does not hold this credential")
        if revoked_at is not None:
            raise Unauthorized("the credential has been revoked")
        if not cred.valid_from <= self.now < cred.valid_until:
            raise Unauthorized("the credential is not valid at this time")
        return grant

    def on_command(self, opened: Unwrapped, tx: Tx) -> None:
        cmd = command.FAMILY.parse(opened.rumor, now=self.now).payload
        self.intake(tx, cmd, opened.sender, "receipt")

    def intake(self, tx: Tx, cmd: Command, sender: str, reply: str) -> None:
        if cmd.node != self.me:
            raise WrongRecipient("the command is addressed to another node")
        grant = self.holder_credential(tx, cmd, sender)
        existing = repo.command_row(tx, cmd.command_id)
        if existing is not None and not _same_holder(existing, cmd, sender):
            # another advisor's command id: answering (even REPLAYED) would leak its receipt or
            # its existence; refused without a reply, counted by the pipeline
            raise Unauthorized("this command id belongs to a command another advisor sent")
        try:
            if existing is not None:
                if existing["params_hash"] != cmd.params_hash:
                    raise Replayed("this idempotency id was already used with other parameters")
                stored = repo.latest_receipt(tx, cmd.command_id)
                if stored is not None:  # a duplicate delivery gets the receipt it already earned
                    self._deliver(tx, stored, sender, existing["reply"])
                return
            if abs(cmd.issued_at - self.now) > CLOCK_WINDOW_S:
                raise Expired(
                    f"the command was issued {cmd.issued_at - self.now:+d} s from the node's "
                    "clock (±300 s allowed)"
                )
            if self.now >= cmd.expires_at:
                raise Expired("the command expired before it arrived")
            if not repo.claim_nonce(tx, cmd.credential_id, cmd.nonce):
                raise Replayed("this nonce was already used with this credential")
            spec = schemas.lookup(cmd.schema, cmd.action)
            if not grant.credential.allows(cmd.schema):
                raise Restricted(f"the credential does not allow {cmd.schema}")
            schemas.parse_params(spec, cmd.params)
        except HiveError as error:
            tx.count_errors({error.code: 1})
            self._finish(tx, cmd, sender, reply, status=Status.ERROR, error=error)
            return
        repo.insert_command(tx, cmd, sender, reply)
        self._intaken[cmd.command_id] = cmd
        while len(self._intaken) > 1024:  # bounded: what is never processed here falls out
            self._intaken.pop(next(iter(self._intaken)))

    # --- receipts --------------------------------------------------------------------------

    def _finish(
        self,
        tx: Tx,
        cmd: Command,
        sender: str,
        reply: str,
        *,
        status: Status,
        error: HiveError | None = None,
        result: dict[str, Any] | None = None,
        danger: int = 0,
        decision: str = "",
        before: str = EMPTY,
        after: str = EMPTY,
    ) -> Receipt:
        """Append a receipt to the credential's chain and send it (in the open transaction)."""
        seq, prev = repo.chain_tip(tx, cmd.credential_id)
        receipt_id = secrets.token_hex(16)
        preimage = None
        if status == Status.OK and self.payments is not None:
            preimage = self.payments.on_success(tx, cmd, receipt_id)  # same commit as the receipt
        body = {
            "receipt_id": receipt_id,
            "seq": seq + 1,
            "node": self.me,
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
            "created_at": self.now,
            "prev_hash": prev,
            "preimage": preimage,
        }
        sealed = receipt.seal(self.agent.keys, body)
        repo.save_receipt(tx, sealed)
        self._deliver(tx, sealed, sender, reply)
        return sealed

    def _deliver(self, tx: Tx, sealed: Receipt, to: str, reply: str) -> None:
        rumor = receipt.FAMILY.rumor(self.me, sealed, created_at=self.now)
        self.agent.enqueue_private(tx, to, rumor)
        if reply == "dm":
            self._dm(tx, to, receipt_text(sealed))

    def _dm(self, tx: Tx, to: str, text: str) -> None:
        rumor = make_rumor(self.me, Kind.DIRECT_MESSAGE, text, [["p", to]], self.now)
        self.agent.enqueue_private(tx, to, rumor)

    def _finish_row(self, row: dict[str, Any], **kw: Any) -> Receipt:
        cmd = Command.model_validate_json(row["command"])
        state = CS.REFUSED if kw.get("error") else CS.DONE
        if kw.get("status") == Status.QUEUED:
            state = row["state"]
        with self.agent.store.transaction(self.now) as tx:
            if kw.get("error") is not None:
                tx.count_errors({kw["error"].code: 1})
            sealed = self._finish(tx, cmd, row["sender"], row["reply"], **kw)
            if state in (CS.REFUSED, CS.DONE):
                outcome = json.dumps(sealed.error.model_dump() if sealed.error else sealed.result)
                tx.execute(
                    "UPDATE commands SET state = ?, outcome = ?, updated_at = ? WHERE command_id"
                    " = ?",
                    (state, outcome, self.now, cmd.command_id),
                )
        self.agent.wake_outbox()
        return sealed

    # --- processing ------------------------------------------------------------------------

    async def run(self) -> None:
        """Forever: settle interrupted executions once, then process commands as they come."""
        await self.recover()
        while True:
            self._wake = anyio.Event()
            await self.step()
            with anyio.move_on_after(1.0):
                await self._wake.wait()

    async def step(self) -> None:
        for row in repo.commands_in(self.agent.store, CS.RECEIVED):
            await self._guard(self.process, row)
        self.apply_approvals()
        for row in repo.commands_in(self.agent.store, CS.READY):
            await self._guard(self.execute, row)

    async def _guard(self, fn: Any, row: dict[str, Any]) -> None:
        try:
            await fn(row)
        except HiveError as error:
            self._finish_row(row, status=Status.ERROR, error=error)
        except Exception:
            log.exception("command %s failed", row["command_id"])
            self._finish_row(
                row, status=Status.ERROR, error=Internal("the node hit an unexpected error")
            )

    def _parsed(
        self, row: dict[str, Any]
    ) -> tuple[Command, Grant, schemas.ActionSpec, schemas.Params]:
        # parsed moments ago at intake (a frozen model, stored as exactly this JSON)
        cmd = self._intaken.pop(row["command_id"], None)
        if cmd is None:
            cmd = Command.model_validate_json(row["command"])
        found = repo.credential(self.agent.store, cmd.credential_id)
        if found is None or found[1] is not None:
            raise Unauthorized("the credential has been revoked")
        spec = schemas.lookup(cmd.schema, cmd.action)
        return cmd, found[0], spec, schemas.parse_params(spec, cmd.params)

    async def process(self, row: dict[str, Any]) -> None:
        cmd, grant, spec, params = self._parsed(row)
        danger = spec.danger(params)
        if spec.family == "monitor" and spec.name == "budget":
            self._finish_row(
                row,
                status=Status.OK,
                result=self.budget(grant),
                danger=danger,
                decision="self-inspection",
            )
            return
        # one listing of the channels serves the limit checks and the receipt's "before"
        needs = spec.touches not in ("none", "funds") or (
            spec.family == "fee-policy" and spec.name != "set_bulk"
        )
        listing = await self.node.channels() if needs else None
        limit = await self.limit_error(cmd, grant, spec, params, danger, listing)
        rep = aggregate(
            row["sender"], market_repo.credentials_about(self.agent.store, row["sender"]), self.now
        )
        factor = reputation_factor(rep.score if rep.parts else None)
        decision = decide(
            danger,
            factor,
            self.policy.preset,
            grant.credential.tier,
            self.policy.mode,
            quiet=self.policy.quiet(self.now),
            limit_error=limit,
        )
        runs_now = decision.route == Route.AUTO and not cmd.dry_run
        reasons = decision.explain()
        before = await schemas.touched_state(spec, self.node, params, listing) if runs_now else None
        # The decision alone need not be durable (if lost, the command is decided again); a
        # command that runs now is claimed in the same commit, which is durable when the claim
        # must be (see _claim).
        durable = runs_now and not spec.idempotent
        with self.agent.store.transaction(self.now, durable=durable) as tx:
            repo.record_rate(tx, cmd.credential_id, danger >= 5)
            tx.execute(
                "UPDATE commands SET danger = ?, route = ?, reasons = ? WHERE command_id = ?",
                (danger, decision.route.value, reasons, cmd.command_id),
            )
            reserve = self._claim(tx, cmd, spec, params, before, CS.RECEIVED) if runs_now else None
        if runs_now:
            if reserve is not None:
                decided = {
                    **row,
                    "danger": danger,
                    "route": decision.route.value,
                    "reasons": reasons,
                }
                await self._run(decided, cmd, spec, params, before, reserve)
            return
        if cmd.dry_run:
            await self.dry_run(row, spec, params, decision)
        elif decision.route == Route.REFUSED:
            assert decision.error is not None
            self._finish_row(
                row,
                status=Status.ERROR,
                error=decision.error,
                danger=danger,
                decision=decision.explain(),
            )
        elif decision.route == Route.ORACLE:
            await self.ask_oracle(row, cmd, decision)
        else:
            await self.hold(row, cmd, decision)

    def _set(self, command_id: str, frm: CS, to: CS, **fields: Any) -> bool:
        with self.agent.store.transaction(self.now) as tx:
            return repo.move(tx, command_id, (frm,), to, **fields)

    async def hold(self, row: dict[str, Any], cmd: Command, decision: Decision) -> None:
        state = {Route.QUEUE: CS.QUEUED, Route.CONFIRM: CS.CONFIRM, Route.MULTISIG: CS.MULTISIG}[
            decision.route
        ]
        self._set(cmd.command_id, CS.RECEIVED, state, decide_by=self.now + QUEUE_TTL_S)
        what = {
            CS.QUEUED: "the operator's approval",
            CS.CONFIRM: "approval and confirmation",
            CS.MULTISIG: f"{self.policy.approvals_needed} approver signatures",
        }[state]
        result = {"waiting_for": what, "decide_by": self.now + QUEUE_TTL_S, "id": cmd.command_id}
        self._finish_row(
            {**row, "state": state},
            status=Status.QUEUED,
            result=result,
            danger=decision.danger,
            decision=decision.explain(),
        )
        if self.policy.operator_pubkey:
            text = (
                f"Advisor {row['sender'][:12]}… asks {cmd.schema} {cmd.action} "
                f"{json.dumps(cmd.params, sort_keys=True)} (danger {decision.danger};"
                f" {decision.route.value}). "
                f"Reply 'approve {cmd.command_id[:12]}' or 'reject {cmd.command_id[:12]}'"
                + (" and then 'confirm …'" if state == CS.CONFIRM else "")
                + "."
            )
            with self.agent.store.transaction(self.now) as tx:
                self._dm(tx, self.policy.operator_pubkey, text)
            self.agent.wake_outbox()

    async def ask_oracle(self, row: dict[str, Any], cmd: Command, decision: Decision) -> None:
        """Ask the oracle (5 s, one retry after 2 s): approve runs, deny rejects, silence queues."""
        verdict = await oracle_verdict(self.policy.oracle_url, cmd, decision)
        if verdict == "approve":
            self._set(cmd.command_id, CS.RECEIVED, CS.READY)
        elif verdict == "deny":
            self._finish_row(
                row,
                status=Status.ERROR,
                error=Rejected("the oracle denied the command"),
                danger=decision.danger,
                decision=decision.explain(),
            )
        else:
            queued = Decision(
                Route.QUEUE,
                decision.danger,
                decision.level,
                [*decision.reasons, "no oracle answer"],
            )
            await self.hold(row, cmd, queued)

    # --- approvals -------------------------------------------------------------------------

    def apply_approvals(self) -> None:
        """Move waiting commands on as approvals arrive; expire those whose window passed."""
        store = self.agent.store
        for row in repo.commands_in(store, CS.QUEUED, CS.CONFIRM, CS.CONFIRMED, CS.MULTISIG):
            votes = repo.approvals(store, row["command_id"])
            cid, state = row["command_id"], row["state"]
            if votes["reject"] and state != CS.MULTISIG:
                self._refuse(row, Rejected("the operator rejected the command"))
            elif (
                state == CS.MULTISIG
                and len(votes["reject"]) > len(self.policy.approvers) - self.policy.approvals_needed
            ):
                self._refuse(row, Rejected("too many approvers rejected the command"))
            elif state == CS.QUEUED and votes["approve"]:
                self._set(cid, CS.QUEUED, CS.READY)
            elif state == CS.CONFIRM and votes["approve"]:
                self._set(cid, CS.CONFIRM, CS.CONFIRMED, decide_by=self.now + CONFIRM_TTL_S)
            elif state == CS.CONFIRMED and votes["confirm"]:
                self._set(cid, CS.CONFIRMED, CS.READY)
            elif state == CS.MULTISIG and len(votes["approve"]) >= self.policy.approvals_needed:
                self._set(cid, CS.MULTISIG, CS.READY)
            elif row["decide_by"] is not None and self.now >= row["decide_by"]:
                self._refuse(row, Expired("nobody approved the command in time"))

    def _refuse(self, row: dict[str, Any], error: HiveError) -> None:
        self._finish_row(
            row,
            status=Status.ERROR,
            error=error,
            danger=row["danger"] or 0,
            decision=row["reasons"] or "",
        )

    def on_approval(self, ev: Any, tx: Tx) -> None:
        """An approver's signed m-of-n vote (kind 36386)."""
        item = approval.FAMILY.parse(ev, now=self.now).payload
        if ev.pubkey not in self.policy.approvers:
            raise Unauthorized("not one of this node's approvers")
        row = repo.command_row(tx, item.command_id)
        if item.node != self.me or row is None or row["state"] != CS.MULTISIG:
            raise Restricted("no command of this node waits for approvers")
        if item.params_hash != row["params_hash"] or self.now >= item.expires_at:
            raise Restricted("the approval is for other parameters or has expired")
        step = "approve" if item.verdict == approval.Verdict.APPROVE else "reject"
        repo.add_approval(tx, item.command_id, ev.pubkey, step)

    def on_dm(self, opened: Unwrapped, tx: Tx) -> None:
        """A NIP-17 DM: the operator approving, or a credential holder's plain-text command."""
        text = opened.rumor.content.strip()
        sender = opened.sender
        words = text.split()
        if (
            sender == self.policy.operator_pubkey
            and words
            and words[0].lower() in ("approve", "reject", "confirm")
        ):
            found = resolve(tx, words[1] if len(words) > 1 else "")
            if found is None:
                self._dm(tx, sender, f"no waiting command matches {text!r}")
                return
            repo.add_approval(tx, found, sender, words[0].lower())
            self._dm(tx, sender, f"{words[0].lower()}d {found[:12]}")
            return
        grant = repo.active_granted_to(tx, sender, self.now)
        if grant is None:
            raise Unauthorized("plain-text commands need a credential")
        cmd = parse_text(text, grant, self.me, self.now)
        self.intake(tx, cmd, sender, "dm")

    # --- limits ------------------------------------------------------------------------------

    async def limit_error(
        self,
        cmd: Command,
        grant: Grant,
        spec: schemas.ActionSpec,
        params: schemas.Params,
        danger: int,
        channels: list[Any] | None = None,
    ) -> HiveError | None:
        try:
            await self.check_limits(
                cmd, grant, spec, params, danger, self.agent.store, channels=channels
            )
        except (Restricted, QuotaExceeded, RateLimited) as error:
            return error
        return None

    async def check_limits(
        self,
        cmd: Command,
        grant: Grant,
        spec: schemas.ActionSpec,
        params: schemas.Params,
        danger: int,
        db: Any,
        *,
        channels: list[Any] | None = None,
    ) -> None:
        cred, pol = grant.credential, self.policy
        preset = PRESETS[pol.preset]
        if self.payments is not None:
            self.payments.covers(db, cmd, grant.credential.advisor, danger)
        elif cmd.ticket is not None:
            raise InvalidParams("this node does not run escrow")
        for scid in schemas.channels_named(params):
            if scid in pol.protected_channels:
                raise Restricted(f"channel {scid} is protected")
        if spec.name == "set_bulk" and pol.protected_channels:
            raise Restricted("a bulk fee change would touch protected channels")
        peer = getattr(params, "peer", None)
        if peer is not None and peer in pol.forbidden_peers:
            raise Restricted(f"peer {peer[:16]}… is forbidden")
        if spec.family == "fee-policy" and spec.name != "set_bulk":
            new = getattr(params, "fee_ppm", getattr(params, "target_fee_ppm", 0))
            listing = channels if channels is not None else await self.node.channels()
            chans = {c.short_channel_id: c for c in listing}
            chan = chans.get(params.channel)  # type: ignore[attr-defined]
            if chan is not None:
                old = chan.policy.ppm
                change = abs(new - old) * 100 / max(old, 1)
                caps = {
                    "credential's": cred.constraints.max_fee_change_pct,
                    f"{pol.preset.value} preset's": preset.max_fee_change_pct,
                }
                whose, cap = min(caps.items(), key=lambda kv: kv[1])
                if change > cap:
                    raise Restricted(
                        f"a {change:.0f} % fee change exceeds the {whose} {cap} % limit"
                    )
        if spec.name == "circular":
            cap = min(cred.constraints.max_rebalance_sats, preset.max_rebalance_sats)
            if params.amount_sats > cap:  # type: ignore[attr-defined]
                raise Restricted(f"rebalances are limited to {cap:,} sat")
        n, dangerous = repo.rate(db, cmd.credential_id, self.now)
        if n >= pol.rate_per_minute or (danger >= 5 and dangerous >= pol.dangerous_rate_per_minute):
            raise RateLimited("too many commands in the last minute")
        mine = repo.usage(db, cmd.credential_id, self.now, 1)
        if mine["actions"] >= cred.constraints.max_daily_actions:
            raise QuotaExceeded(
                f"the credential's {cred.constraints.max_daily_actions} actions for today "
                "are used up"
            )
        self.check_budgets(cmd, spec, params, db)

    def check_budgets(
        self, cmd: Command, spec: schemas.ActionSpec, params: schemas.Params, db: Any
    ) -> None:
        b = self.policy.budgets
        moves, fees = spec.moves_sats(params), spec.max_fee_sats(params)
        chans = int(spec.opens_channel)
        if not (moves or fees or chans):
            return  # spends nothing a budget counts
        day, week = repo.usage(db, "node", self.now, 1), repo.usage(db, "node", self.now, 7)
        mine = repo.usage(db, cmd.credential_id, self.now, 1)
        checks = [
            (day["sats_moved"] + moves, b.sats_moved_per_day, "sats moved today"),
            (week["sats_moved"] + moves, b.sats_moved_per_week, "sats moved this week"),
            (
                mine["sats_moved"] + moves,
                b.sats_moved_per_advisor_day,
                "sats this advisor moved today",
            ),
            (day["fees_sat"] + fees, b.fees_per_day_sat, "fees today"),
            (week["fees_sat"] + fees, b.fees_per_week_sat, "fees this week"),
            (day["channels"] + chans, b.channels_per_day, "channels opened today"),
            (week["channels"] + chans, b.channels_per_week, "channels opened this week"),
        ]
        for would_be, limit, what in checks:
            if would_be > limit:
                raise QuotaExceeded(f"the budget for {what} ({limit:,}) would be exceeded")

    def budget(self, grant: Grant) -> dict[str, Any]:
        """Self-inspection for the advisor (like NWC get_info + get_budget)."""
        cred = grant.credential
        today = repo.usage(self.agent.store, cred.credential_id, self.now, 1)
        week = repo.usage(self.agent.store, cred.credential_id, self.now, 7)
        return {
            "credential_id": cred.credential_id,
            "tier": cred.tier.value,
            "allowed_schemas": cred.allowed_schemas,
            "constraints": cred.constraints.model_dump(),
            "valid_until": cred.valid_until,
            "used_today": today,
            "used_this_week": week,
            "actions_left_today": max(0, cred.constraints.max_daily_actions - today["actions"]),
            "sats_left_today": max(
                0, self.policy.budgets.sats_moved_per_advisor_day - today["sats_moved"]
            ),
            "renews_at": (self.now // DAY + 1) * DAY,
            "preset": self.policy.preset.value,
            "mode": self.policy.mode.value,
        }

    # --- execution ---------------------------------------------------------------------------

    async def dry_run(
        self,
        row: dict[str, Any],
        spec: schemas.ActionSpec,
        params: schemas.Params,
        decision: Decision,
    ) -> None:
        before = await schemas.touched_state(spec, self.node, params)
        predicted = schemas.predict(spec, before, params)
        result = {
            "danger": decision.danger,
            "route": decision.route.value,
            "reasons": decision.reasons,
            "would_run": decision.route != Route.REFUSED,
            "state_before": before,
            "predicted_diff": None if predicted is None else schemas.diff(before, predicted),
            "error": decision.error.to_dict() if decision.error else None,
        }
        self._finish_row(
            row,
            status=Status.DRY_RUN,
            result=result,
            danger=decision.danger,
            decision=decision.explain(),
            before=content_hash(before),
            after=content_hash(before),
        )

    async def execute(self, row: dict[str, Any]) -> None:
        """Run a command that became `ready` (approved, confirmed or allowed by the oracle)."""
        cmd, _grant, spec, params = self._parsed(row)
        before = await schemas.touched_state(spec, self.node, params)
        # The claim must be on disk before an action that must not run twice.  An idempotent
        # one (setting an absolute value) may run again after a power cut, so its claim rides
        # on the receipt's durable commit instead; recover() re-runs such actions anyway.
        with self.agent.store.transaction(self.now, durable=not spec.idempotent) as tx:
            reserve = self._claim(tx, cmd, spec, params, before, CS.READY)
        if reserve is not None:
            await self._run(row, cmd, spec, params, before, reserve)

    def _claim(
        self,
        tx: Tx,
        cmd: Command,
        spec: schemas.ActionSpec,
        params: schemas.Params,
        before: Any,
        frm: CS,
    ) -> dict[str, int] | None:
        """Move the command to `executing` and reserve its budget; None if already claimed."""
        reserve = {
            "sats_moved": spec.moves_sats(params),
            "fees_sat": spec.max_fee_sats(params),
            "channels": int(spec.opens_channel),
            "actions": 1,
        }
        self.check_budgets(cmd, spec, params, tx)  # re-checked where it is reserved
        saved = json.dumps({"usage": reserve, "before": before})
        if not repo.move(tx, cmd.command_id, (frm,), CS.EXECUTING, reserved=saved):
            return None  # someone else claimed it
        for scope in ("node", cmd.credential_id):
            repo.add_usage(tx, scope, **reserve)
        return reserve

    async def _run(self, row, cmd, spec, params, before, reserve) -> None:
        crash_point("command.before_execute", spec.family)
        try:
            result = await schemas.execute(spec, self.node, params, cmd.command_id)
        except HiveError as error:
            self._settle(row, cmd, spec, params, before, reserve, error=error)
        else:
            crash_point("command.after_execute", spec.family)
            await self._settle_ok(row, cmd, spec, params, before, reserve, result)
        await anyio.lowlevel.checkpoint()  # the outbox sends the receipt before this loop goes on

    async def _settle_ok(self, row, cmd, spec, params, before, reserve, result) -> None:
        after = await schemas.touched_state(spec, self.node, params)
        fee_sat = -(-int(result.get("fee_msat", 0)) // 1000)
        self._settle(
            row, cmd, spec, params, before, reserve, result=result, after=after, fee_sat=fee_sat
        )
        crash_point("command.after_receipt", spec.family)

    def _settle(
        self,
        row,
        cmd,
        spec,
        params,
        before,
        reserve,
        *,
        error=None,
        result=None,
        after=None,
        fee_sat=0,
    ):
        with self.agent.store.transaction(self.now) as tx:
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
            decision = row.get("reasons") or ""
            sealed = self._finish(
                tx,
                cmd,
                row["sender"],
                row["reply"],
                status=Status.ERROR if error else Status.OK,
                error=error,
                result=result,
                danger=row.get("danger") or spec.danger(params),
                decision=decision,
                before=content_hash(before),
                after=content_hash(after if after is not None else before),
            )
            outcome = json.dumps(sealed.error.model_dump() if sealed.error else sealed.result)
            final = CS.REFUSED if error else CS.DONE
            repo.move(tx, cmd.command_id, (CS.SETTLING,), final, outcome=outcome)
        self.agent.wake_outbox()

    async def recover(self) -> None:
        """Settle commands a crash left in `executing`, without ever running one twice."""
        for row in repo.commands_in(self.agent.store, CS.EXECUTING):
            cmd, _grant, spec, params = self._parsed(row)
            saved = json.loads(row["reserved"])
            if spec.idempotent:  # setting an absolute value again changes nothing
                result = await schemas.execute(spec, self.node, params, cmd.command_id)
                await self._settle_ok(
                    row, cmd, spec, params, saved["before"], saved["usage"], result
                )
                continue
            if spec.name == "circular":
                found = await self.node.find_rebalance(cmd.command_id)
                if found is not None:
                    await self._settle_ok(
                        row, cmd, spec, params, saved["before"], saved["usage"], found.model_dump()
                    )
                    continue
                result = await schemas.execute(
                    spec, self.node, params, cmd.command_id
                )  # never made
                await self._settle_ok(
                    row, cmd, spec, params, saved["before"], saved["usage"], result
                )
                continue
            error = Internal(
                "the node restarted during this action and cannot tell if it ran; not retried"
            )
            self._settle(row, cmd, spec, params, saved["before"], saved["usage"], error=error)

    # --- operator's view ---------------------------------------------------------------------

    def pending(self) -> list[dict[str, Any]]:
        return pending(self.agent.store)


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
        repo.add_approval(tx, found, approver, step)
    return found


def parse_text(text: str, grant: Grant, node: str, now: int) -> Command:
    """A plain-text DM command: `status`, or `<family|schema> <action> key=value …`."""
    try:
        words = shlex.split(text)
    except ValueError:
        raise InvalidParams("could not read the command text") from None
    if not words:
        raise InvalidParams("empty command")
    if words[0].lower() in ("status", "info"):
        words = ["monitor", "get_info"]
    if words[0].lower() == "budget":
        words = ["monitor", "budget"]
    if len(words) < 2:
        raise InvalidParams(
            "write: <schema> <action> key=value …  (e.g. fee-policy set_single channel=… fee_ppm=…)"
        )
    schema = words[0] if words[0].startswith("hive:") else f"hive:{words[0]}/v1"
    params: dict[str, Any] = {}
    for pair in words[2:]:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidParams(f"expected key=value, got {pair!r}")
        params[key] = (
            int(value)
            if value.isascii() and value.lstrip("-").isdigit() and len(value) < 19
            else {"true": True, "false": False}.get(value, value)
        )
    try:
        return Command(
            command_id=secrets.token_hex(16),
            node=node,
            credential_id=grant.credential.credential_id,
            schema=schema,
            action=words[1],
            params=params,
            nonce=secrets.token_hex(16),
            issued_at=now,
            expires_at=now + 300,
        )
    except Exception:  # noqa: BLE001 - any malformed text is the sender's mistake
        raise InvalidParams(f"not a command: {text[:80]!r}") from None


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


async def oracle_verdict(url: str | None, cmd: Command, decision: Decision) -> str | None:
    """'approve', 'deny' or None (no answer in 5 s, twice, 2 s apart)."""
    if not url:
        return None
    import httpx

    payload = {
        "command": cmd.model_dump(mode="json"),
        "danger": decision.danger,
        "reasons": decision.reasons,
    }
    for attempt in range(2):
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                answer = (await client.post(url, json=payload)).json()
            verdict = str(answer.get("decision", "")).lower()
            if verdict in ("approve", "deny"):
                return verdict
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        if attempt == 0:
            await anyio.sleep(2)
    return None


def _same_holder(row: dict[str, Any], cmd: Command, sender: str) -> bool:
    """True if a stored command was sent by `sender` under the same credential as `cmd`."""
    stored = Command.model_validate_json(row["command"])
    return row["sender"] == sender and stored.credential_id == cmd.credential_id
