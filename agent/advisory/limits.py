"""Limits on advisor commands, each counted in the store: escrow cover, protected channels and
forbidden peers, fee-change caps, the action's own limits (from the schema catalogue), rates,
daily actions and the node's budgets, and in failsafe mode the failsafe budget (sats per UTC
day, actions per hour; counted when an action is claimed, not refunded).  A limit that fails
decides the route (refused, or a human's approval), it does not end the command by itself."""

from __future__ import annotations

from typing import Any

from agent.advisory import schemas
from agent.advisory.context import DAY, NodeContext
from agent.advisory.policy import PRESETS, Mode
from agent.store import advisory as repo
from events.command import Command
from events.credential import Grant
from events.errors import HiveError, InvalidParams, QuotaExceeded, RateLimited, Restricted

FAILSAFE = "failsafe"  # the usage scope and rate key of actions run in failsafe mode


class Limits:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    async def error(
        self,
        cmd: Command,
        grant: Grant,
        spec: schemas.ActionSpec,
        params: schemas.Params,
        danger: int,
        channels: list[Any] | None = None,
    ) -> HiveError | None:
        """The first limit the command breaks, or None."""
        try:
            await self.check(cmd, grant, spec, params, danger, self.ctx.agent.store, channels)
        except (Restricted, QuotaExceeded, RateLimited) as error:
            return error
        return None

    async def check(
        self,
        cmd: Command,
        grant: Grant,
        spec: schemas.ActionSpec,
        params: schemas.Params,
        danger: int,
        db: Any,
        channels: list[Any] | None = None,
    ) -> None:
        self._check_cover(cmd, grant, danger, db)
        self._check_targets(spec, params, grant)
        if spec.fee_change is not None:
            await self._check_fee_change(spec.fee_change(params), grant, channels)
        self._check_rates(cmd, grant, danger, db)
        self.check_budgets(cmd, spec, params, db)

    def _check_cover(self, cmd: Command, grant: Grant, danger: int, db: Any) -> None:
        payments = self.ctx.payments
        if payments is not None:
            payments.covers(db, cmd, grant.credential.advisor, danger)
        elif cmd.ticket is not None:
            raise InvalidParams("this node does not run escrow")

    def recheck_cover(self, cmd: Command, danger: int, db: Any) -> None:
        """Where the command is claimed: the ticket it names must still pay for it — one that
        waited for an approval may run hours later, after its part's locktime (refunded)."""
        found = repo.credential(db, cmd.credential_id) if cmd.ticket is not None else None
        if found is not None and self.ctx.payments is not None:
            self.ctx.payments.covers(db, cmd, found[0].credential.advisor, danger)

    def _check_targets(
        self, spec: schemas.ActionSpec, params: schemas.Params, grant: Grant
    ) -> None:
        pol = self.ctx.policy
        for scid in schemas.channels_named(params):
            if scid in pol.protected_channels:
                raise Restricted(f"channel {scid} is protected")
        peer = getattr(params, "peer", None)
        if peer is not None and peer in pol.forbidden_peers:
            raise Restricted(f"peer {peer[:16]}… is forbidden")
        if spec.limit is not None:
            cap = min(
                grant.credential.constraints.max_rebalance_sats,
                PRESETS[pol.preset].max_rebalance_sats,
            )
            spec.limit(params, schemas.ActionLimits(cap, frozenset(pol.protected_channels)))

    async def _check_fee_change(
        self, change: tuple[str, int], grant: Grant, channels: list[Any] | None
    ) -> None:
        scid, new = change
        listing = channels if channels is not None else await self.ctx.node.channels()
        chan = {c.short_channel_id: c for c in listing}.get(scid)
        if chan is None:
            return  # refused later, naming the channel (touched_state)
        old = chan.policy.ppm
        pct = abs(new - old) * 100 / max(old, 1)
        pol = self.ctx.policy
        caps = {
            "credential's": grant.credential.constraints.max_fee_change_pct,
            f"{pol.preset.value} preset's": PRESETS[pol.preset].max_fee_change_pct,
        }
        whose, cap = min(caps.items(), key=lambda kv: kv[1])
        if pct > cap:
            raise Restricted(f"a {pct:.0f} % fee change exceeds the {whose} {cap} % limit")

    def _check_rates(self, cmd: Command, grant: Grant, danger: int, db: Any) -> None:
        pol, cred = self.ctx.policy, grant.credential
        n, dangerous = repo.rate(db, cmd.credential_id, self.ctx.now)
        if n >= pol.rate_per_minute or (danger >= 5 and dangerous >= pol.dangerous_rate_per_minute):
            raise RateLimited("too many commands in the last minute")
        mine = repo.usage(db, cmd.credential_id, self.ctx.now, 1)
        if mine["actions"] >= cred.constraints.max_daily_actions:
            raise QuotaExceeded(
                f"the credential's {cred.constraints.max_daily_actions} actions for today "
                "are used up"
            )

    def check_budgets(
        self, cmd: Command, spec: schemas.ActionSpec, params: schemas.Params, db: Any
    ) -> None:
        if self.ctx.mode_of(db, cmd) == Mode.FAILSAFE:
            self._check_failsafe(spec, params, db)
        b, now = self.ctx.policy.budgets, self.ctx.now
        moves, fees = spec.moves_sats(params), spec.max_fee_sats(params)
        chans = int(spec.opens_channel)
        if not (moves or fees or chans):
            return  # spends nothing a budget counts
        day, week = repo.usage(db, "node", now, 1), repo.usage(db, "node", now, 7)
        mine = repo.usage(db, cmd.credential_id, now, 1)
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

    def _check_failsafe(self, spec: schemas.ActionSpec, params: schemas.Params, db: Any) -> None:
        gov, now = self.ctx.governance, self.ctx.now
        if repo.rate_since(db, FAILSAFE, now - 3600) >= gov.failsafe_per_hour:
            raise RateLimited(f"failsafe mode runs at most {gov.failsafe_per_hour} actions an hour")
        used = repo.usage(db, FAILSAFE, now, 1)["sats_moved"]
        if used + spec.moves_sats(params) > gov.failsafe_budget_sats:
            raise QuotaExceeded(
                f"the failsafe budget of {gov.failsafe_budget_sats:,} sat for today would be "
                f"exceeded ({used:,} used)"
            )

    def budget(self, grant: Grant) -> dict[str, Any]:
        """Self-inspection for the advisor (like NWC get_info + get_budget)."""
        cred, store, now, pol = (
            grant.credential,
            self.ctx.agent.store,
            self.ctx.now,
            self.ctx.policy,
        )
        today = repo.usage(store, cred.credential_id, now, 1)
        week = repo.usage(store, cred.credential_id, now, 7)
        return {
            "credential_id": cred.credential_id,
            "tier": cred.tier.value,
            "allowed_schemas": cred.allowed_schemas,
            "constraints": cred.constraints.model_dump(),
            "valid_until": cred.valid_until,
            "used_today": today,
            "used_this_week": week,
            "actions_left_today": max(0, cred.constraints.max_daily_actions - today["actions"]),
            "sats_left_today": max(0, pol.budgets.sats_moved_per_advisor_day - today["sats_moved"]),
            "renews_at": (now // DAY + 1) * DAY,
            "preset": pol.preset.value,
            "mode": pol.mode.value,
        }
