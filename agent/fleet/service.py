"""One member's side of the fleet, assembled: the kernel (frame intake, the per-peer outbox,
acknowledgements — agent/fleet/kernel.py) with its components, today the join handshake
(handshake.py), membership and governance (membership.py) and state gossip (gossip.py).

`FleetService` is what the plugin, the simulator's members, the demo and the benchmark hold:
the operator's commands (`genesis`, `invite`, `join`, `vouch`, `ban`, `leave`), the reads
(`members`, `status`, `view`) and the loops (`run`, `serve`).  A new fleet protocol is a new
`FleetComponent` registered here; see README, "Adding a fleet protocol".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import nostr_sdk as sdk

from agent.clock import Clock
from agent.fleet import topology
from agent.fleet.actions import ActionPort
from agent.fleet.contribution import Contribution
from agent.fleet.gossip import Gossip
from agent.fleet.handshake import Handshake
from agent.fleet.intent_exec import Executor, GovernedExecutor, NodeExecutor
from agent.fleet.intents import IntentPolicy, Intents
from agent.fleet.kernel import FleetConfig, FleetKernel, Ledger
from agent.fleet.membership import Membership
from agent.fleet.planner_model import PlannerConfig
from agent.fleet.planner_view import as_json, render
from agent.fleet.planning import Planning
from agent.fleet.settlement import Settlement
from agent.fleet.settlement_rules import period_of, previous_period
from agent.fleet.sync import Sync
from agent.node.backend import NodeBackend
from agent.node.models import NodeEvent
from agent.store import fleet as db
from agent.store import gossip as gdb
from agent.store.db import Store
from events.fleet import StateRecord

__all__ = ["FleetConfig", "FleetService"]
EXTRA = set(topology.RECORD_FIELDS)  # a record's fields the gossip view leaves out


class FleetService:
    def __init__(
        self,
        node: NodeBackend,
        store: Store,
        keys: sdk.Keys,
        *,
        clock: Clock | None = None,
        config: FleetConfig | None = None,
        executor: Executor | None = None,
        intent_policy: IntentPolicy | None = None,
        governed: bool = False,
        planner: PlannerConfig | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.kernel = FleetKernel(node, store, keys, clock=clock, config=config)
        self.handshake = Handshake()
        self.membership = Membership(on_leave=self.handshake.forget)
        self.gossip = Gossip()
        self.sync = Sync()
        # the node's command path for this member's own actions (agent/fleet/actions.py); the
        # plugin sets it while its Nostr agent runs (None: governed actions wait for it)
        self.actions: ActionPort | None = None
        # what runs an action under a committed lock: the node's own governance (`governed`,
        # the plugin), or the node backend directly (simulated fleets, benchmarks)
        if executor is None and governed:
            executor = GovernedExecutor(lambda: self.actions, self._propose_ban)
        self.intents = Intents(
            executor or NodeExecutor(node, propose_ban=self._propose_ban), intent_policy
        )
        self.planning = Planning(self.intend, planner)
        # weekly settlement; its inputs come from `ledger` if given, else from the kernel's
        # Ledger port (the contribution component)
        self.settlement = Settlement(ledger)
        self.contribution = Contribution()
        parts = (
            self.handshake, self.membership, self.gossip, self.sync, self.intents, self.planning,
            self.contribution, self.settlement,
        )  # fmt: skip
        for component in parts:
            self.kernel.register(component)
        self.kernel.standing = self.membership
        self.kernel.presence = self.gossip  # quorums count the members seen within 24 h
        self.kernel.ledger = self.contribution  # the settlement's inputs: members' reports
        self.kernel.treatment = self.contribution  # anti-leech: zero fees withheld

    @property
    def store(self) -> Store:
        return self.kernel.store

    @property
    def me(self) -> str:
        return self.kernel.me

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> FleetService:
        await self.kernel.start()
        return self

    async def run(self) -> None:
        await self.kernel.run()

    async def serve(self, events: AsyncIterator[NodeEvent]) -> None:
        await self.kernel.serve(events)

    async def handle(self, event: NodeEvent) -> None:
        await self.kernel.handle(event)

    async def receive(self, peer: str, payload: bytes) -> None:
        await self.kernel.receive(peer, payload)

    # --- operator commands ---------------------------------------------------------------

    async def genesis(self) -> dict[str, Any]:
        return await self.membership.genesis()

    async def invite(
        self, invitee: str, valid_hours: int = 24, requires: list[str] | None = None
    ) -> dict[str, Any]:
        return await self.handshake.invite(invitee, valid_hours, requires)

    async def join(self, text: str) -> dict[str, Any]:
        return await self.handshake.join(text)

    async def vouch(self, candidate: str) -> dict[str, Any]:
        return await self.membership.vouch(candidate)

    async def ban(self, target: str, reason: str = "", approve: bool = True) -> dict[str, Any]:
        return await self.membership.ban(target, reason, approve)

    async def leave(self, reason: str = "") -> dict[str, Any]:
        return await self.membership.leave(reason)

    async def intend(
        self, kind: str, target: str, amount_sat: int = 0, *, origin: str = "operator"
    ) -> dict[str, Any]:
        """Take an intent lock on (kind, target); the action runs once it commits."""
        return await self.intents.request(kind, target, amount_sat, origin=origin)

    async def expand(self, node: str, amount_sat: int | None = None) -> dict[str, Any]:
        """A manual expansion: an open to `node` through the same lock and governance as the
        planner's (default amount: the planner's default channel size)."""
        amount = self.planning.planner.channel_default_sat if amount_sat is None else amount_sat
        return await self.intents.request("channel_open", node, amount, origin="hive-expand")

    async def plan(self, *, text: bool = False) -> dict[str, Any]:
        """The fleet plan as of now, with each recommendation's inputs and reason."""
        current = await self.planning.compute()
        out = as_json(current, self.me)
        if text:
            out["text"] = render(current)
        return out

    def settlement_view(self, period: str | None = None) -> dict[str, Any]:
        """A period's settlement: the plan with every input and its arithmetic, the votes,
        the state and the payments (default: the latest period proposed)."""
        return self.settlement.view(period)

    async def settlement_execute(
        self, period: str | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        """Propose now (if nothing was and this node may), or pay this node's assignments
        once a majority agreed; `dry_run` shows what would be done."""
        return await self.settlement.execute(period, dry_run)

    async def _propose_ban(self, target: str) -> dict[str, Any]:
        return await self.membership.ban(target, "proposed under an intent lock")

    # --- reads ---------------------------------------------------------------------------

    def members(self) -> dict[str, Any]:
        return self.membership.members()

    def view(self) -> dict[str, Any]:
        return self.membership.view()

    def topology(self) -> dict[str, Any]:
        """Every active member with its latest state record (freshness, presence), the
        channels between members and fleet totals (agent/fleet/topology.py)."""
        store, now = self.kernel.store, self.kernel.clock.now()
        h = db.hive(store)
        tiers = {m.node_id: m.tier for m in db.members(store)} if h else {}
        records = {
            row.owner: StateRecord.model_validate_json(row.record).model_dump(include=EXTRA)
            for row in gdb.states(store)
        }
        seen = gdb.last_seen(store)
        seen[self.me] = now
        active = self.gossip.active(store, now) | {self.me}
        presence = {n: {"last_seen": at, "active": n in active} for n, at in seen.items()}
        return topology.assemble(
            hive_id=h.hive_id if h else None, me=self.me, tiers=tiers,
            entries=self.gossip.topology()["members"], records=records, presence=presence,
        )  # fmt: skip

    def contribution_view(self, node: str | None = None) -> dict[str, Any]:
        """`hive-contribution`: per member 30-day figures, ratio, leech state, daily rows;
        the ledger chain's verification (agent/fleet/contribution.py)."""
        return self.contribution.view(node)

    async def contribution_report(self, period: str | None = None) -> dict[str, Any] | None:
        """Send this member's report for `period` (default: the last ISO week) now."""
        chosen = period or previous_period(period_of(self.kernel.clock.now()))
        return await self.contribution.report(chosen)

    def intents_list(self, limit: int = 200) -> list[dict[str, Any]]:
        return self.intents.listing(self.kernel.store, limit)

    def status(self) -> dict[str, Any]:
        k = self.kernel
        return {
            "node_id": k.me,
            "nostr_pubkey": k.key,
            **self.membership.summary(),
            "joining": self.handshake.joining(),
            "gossip": self.gossip.summary(),
            "sync": self.sync.summary(),
            "intents": self.intents.summary(),
            "planner": self.planning.summary(),
            "settlement": self.settlement.summary(),
            "contribution": self.contribution.summary(),
            "outbox": db.outbox_counts(k.store),
            "refused": k.store.error_counts(),
        }
