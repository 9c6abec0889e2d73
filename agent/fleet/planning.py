"""The planner and the bridge at work, a fleet component with no frames of its own: every
`planner_interval_s` it computes the plan (agent/fleet/planner.py) from the node's view of the
network graph and the members' state records, takes an intent lock for each expansion the plan
gives this member (the lock's action then goes through the node's governance), and tells
CLBOSS which nodes other members already serve (anti-overlap); every `bridge_interval_s` it
brings zero-fee routing among members in line with the member set (agent/fleet/bridge.py:
cl-revenue-ops when it is loaded, else the member channels' own fees, restored when a member
leaves or is banned).

Nothing here decides anything the pure planner or the intent rules do not; a failure of either
step is logged and counted, and the other still runs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agent.fleet.bridge import Bridge
from agent.fleet.component import FleetComponent
from agent.fleet.planner import plan
from agent.fleet.planner_model import Plan, PlannerConfig
from agent.store import fleet as db
from agent.store import gossip as gdb
from events.errors import HiveError
from events.fleet import StateRecord

log = logging.getLogger("hive.fleet.planning")
IGNORED_KV = "fleet_planner_ignored"  # nodes we told CLBOSS to leave alone

Request = Callable[..., Awaitable[dict[str, Any]]]


class Planning(FleetComponent):
    def __init__(self, request: Request, config: PlannerConfig | None = None) -> None:
        self.request = request
        self._given = config
        self.planner = config or PlannerConfig()
        self.bridge: Bridge | None = None
        self._next_plan = 0
        self._next_bridge = 0
        self.last: dict[str, Any] = {}

    def bind(self, kernel: Any) -> None:
        super().bind(kernel)
        self.bridge = Bridge(kernel.node, kernel.store, kernel.clock)
        if self._given is None:  # (the plugin's hive-market-share-cap and interval)
            cfg = kernel.config
            self.planner = PlannerConfig(
                market_share_cap=cfg.market_share_cap_pct / 100,
                interval_s=max(60, cfg.planner_interval_s),
            )
        # the first plan one interval after start: the records of the others come first
        self._next_plan = kernel.clock.now() + kernel.config.planner_interval_s

    async def tick(self) -> None:
        k = self.kernel
        now = k.clock.now()
        if db.hive(k.store) is None:
            return
        if k.config.member_fee_zero and now >= self._next_bridge:
            self._next_bridge = now + k.config.bridge_interval_s
            await self.reconcile()
        if k.config.planner_interval_s and now >= self._next_plan:
            self._next_plan = now + k.config.planner_interval_s
            await self.act()

    async def reconcile(self) -> dict[str, Any]:
        """Zero-fee treatment for the current members (idempotent)."""
        k = self.kernel
        assert self.bridge is not None
        members = {m.node_id for m in db.members(k.store)} - {k.me}
        # anti-leech: a member whose contribution kept too low is treated as a non-member here
        # (its channels' fees restored), until it recovers (agent/fleet/contribution.py)
        if k.treatment is not None:
            members -= k.treatment.withheld(k.store)
        try:
            done = await self.bridge.reconcile(members)
        except HiveError as err:
            log.info("fleet: the fee bridge could not run: %s", err)
            k.count(err.code)
            return {"error": err.to_dict()}
        return {"mode": str(done.mode), "changed": done.changed, "failed": done.failed}

    async def compute(self) -> Plan:
        """The plan as of now, from the node's graph and the stored state records."""
        k = self.kernel
        graph = await k.node.graph()
        members = [m.node_id for m in db.members(k.store)]
        records = [StateRecord.model_validate_json(r.record) for r in gdb.states(k.store)]
        return plan(graph, members, records, self.planner)

    async def act(self) -> dict[str, Any]:
        """Plan, then act on this member's share of it: intents for its expansions, CLBOSS
        told of the nodes it need not connect to.  What was done, per step."""
        k = self.kernel
        try:
            current = await self.compute()
        except HiveError as err:
            log.info("fleet: no plan this time: %s", err)
            k.count(err.code)
            return {"error": err.to_dict()}
        taken: list[dict[str, Any]] = []
        for e in current.expansions:
            if e.member != k.me:
                continue
            try:
                row = await self.request("channel_open", e.node, e.amount_sat, origin="planner")
                taken.append({"node": e.node, "intent": row["id"], "status": row["status"]})
            except HiveError as err:  # (taken by another member meanwhile, not a member, …)
                taken.append({"node": e.node, "refused": err.to_dict()})
        ignored = await self._anti_overlap(set(current.ignores_for(k.me)))
        self.last = {"at": k.clock.now(), "expansions": taken, "ignored": ignored}
        return self.last

    async def _anti_overlap(self, wanted: set[str]) -> list[str]:
        k = self.kernel
        assert self.bridge is not None
        before = set(k.store.kv(IGNORED_KV) or [])
        for node in sorted(wanted - before):
            await self._clboss(self.bridge.ignore, node)
        for node in sorted(before - wanted):
            await self._clboss(self.bridge.unignore, node)
        with k.store.transaction(k.clock.now(), durable=False) as tx:
            tx.set_kv(IGNORED_KV, sorted(wanted))
        return sorted(wanted)

    async def _clboss(self, call: Callable[[str], Awaitable[bool]], node: str) -> None:
        try:
            await call(node)
        except HiveError as err:  # (the breaker is open, CLBOSS refused: retried next plan)
            log.info("fleet: CLBOSS was not told about %s: %s", node[:12], err)

    def summary(self) -> dict[str, Any]:
        return {
            "interval_s": self.kernel.config.planner_interval_s,
            "next_plan": self._next_plan,
            "last": self.last,
            "bridge": self.bridge.status() if self.bridge is not None else None,
        }
