"""The `hive-*` methods as the agent answers them (plugin_shim.py checks their parameters and
hands them here): each returns a `Deferred`, run on the agent's loop, whose result is the reply.
Typed, one method per RPC; nothing is dispatched by name."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import nostr_sdk as sdk

from agent import __version__
from agent.advisory import node as node_side
from agent.advisory.credentials import new_credential
from agent.advisory.node import NodeService
from agent.fleet.service import FleetService
from agent.node.cln import CLNBackend
from agent.node.ops import node_summary
from agent.plugin_rpc import Deferred
from agent.runtime import Agent
from agent.store import advisory as repo
from events.base import NostrEvent
from events.errors import NotFound


class Parts(Protocol):
    """What the methods read of the plugin's runtime (agent/cln_plugin.py)."""

    node: CLNBackend | None
    keys: sdk.Keys | None
    binding: NostrEvent | None
    agent: Agent | None
    service: NodeService | None
    fleet: FleetService | None
    counts: Counter[str]
    relays: list[str]
    problems: list[str]
    home: Path
    policy_file: Path | None
    operator: str | None
    dashboard_port: int
    dashboard_url: str | None


class HiveMethods:
    def __init__(self, runtime: Parts) -> None:
        self.rt = runtime

    def status(self) -> Deferred:
        return Deferred(self._status)

    async def _status(self) -> dict[str, Any]:
        rt = self.rt
        assert rt.node is not None and rt.keys is not None and rt.binding is not None
        return {
            "version": __version__,
            "node": await node_summary(rt.node),
            "nostr_pubkey": rt.keys.public_key().to_hex(),
            "binding": rt.binding.model_dump(),
            "relays": rt.agent.pool.status() if rt.agent else "none configured (hive-relays)",
            "events": dict(rt.counts),
            "refused": rt.agent.store.error_counts() if rt.agent else {},
            "fleet": rt.fleet.status() if rt.fleet else None,
            "governance": {
                "mode": rt.governance.mode.value,
                "failsafe_budget_per_day": rt.governance.failsafe_budget_sats,
                "fleet_actions": "on" if rt.actions else "off: they need the Nostr agent",
                "open": len(rt.actions.open_actions()) if rt.actions else 0,
            },
            "policy": {
                "file": str(rt.policy_file or rt.home / "policy.json"),
                "operator": rt.service.policy.operator_pubkey if rt.service else rt.operator,
            },
            "problems": list(rt.problems),
        }

    # --- advisor commands (the operator's side) ------------------------------------------

    def _service(self) -> NodeService:
        if self.rt.service is None:
            if self.rt.problems:
                raise NotFound(self.rt.problems[-1])
            if self.rt.relays:
                raise NotFound("the Nostr agent is still starting; try again in a moment")
            raise NotFound(
                "advisor commands need Nostr relays: start lightningd with --hive-relays"
            )
        return self.rt.service

    def _with_service(self, op: Callable[[NodeService], Awaitable[dict[str, Any]]]) -> Deferred:
        """An operator's action on advisor commands, run on the agent loop."""

        async def run() -> dict[str, Any]:
            return await op(self._service())

        return Deferred(run)

    def pending(self) -> Deferred:
        return self._with_service(lambda service: _ready({"pending": service.pending()}))

    def vote(self, command_id: str, step: str) -> Deferred:
        return self._with_service(lambda service: _vote(service, command_id, step))

    def grant(
        self, advisor: str, tier: str, schemas: list[str], limits: dict[str, int | None]
    ) -> Deferred:
        """`limits`: days and the credential's constraints, named as `credential grant` names
        them; checked at once by the rule the CLI uses (`new_credential`), before anything runs."""
        if self.rt.keys is not None:
            me = self.rt.keys.public_key().to_hex()
            new_credential(me, advisor, tier, schemas, now=int(time.time()), **limits)
        return self._with_service(lambda service: _grant(service, advisor, tier, schemas, limits))

    def revoke(self, credential_id: str) -> Deferred:
        return self._with_service(lambda service: _revoke(service, credential_id))

    def credentials(self) -> Deferred:
        return self._with_service(
            lambda service: _ready({"credentials": repo.credentials(service.agent.store)})
        )

    # --- fleet membership ------------------------------------------------------------------

    def _fleet(self) -> FleetService:
        if self.rt.fleet is None:
            raise NotFound("the fleet service is not running")
        return self.rt.fleet

    def _with_fleet(self, op: Callable[[FleetService], Awaitable[dict[str, Any]]]) -> Deferred:
        """A fleet operation, run on the agent loop (its result is the reply)."""

        async def run() -> dict[str, Any]:
            return await op(self._fleet())

        return Deferred(run)

    def members(self) -> Deferred:
        return self._with_fleet(lambda fleet: _ready(fleet.members()))

    def genesis(self) -> Deferred:
        return self._with_fleet(lambda fleet: fleet.genesis())

    def invite(self, node_id: str, valid_hours: int, requires: list[str]) -> Deferred:
        return self._with_fleet(lambda fleet: fleet.invite(node_id, valid_hours, requires))

    def join(self, ticket: str) -> Deferred:
        return self._with_fleet(lambda fleet: fleet.join(ticket))

    def leave(self, reason: str) -> Deferred:
        return self._with_fleet(lambda fleet: fleet.leave(reason))

    def vouch(self, node_id: str) -> Deferred:
        return self._with_fleet(lambda fleet: fleet.vouch(node_id))

    def ban(self, node_id: str, reason: str, approve: bool) -> Deferred:
        return self._with_fleet(lambda fleet: fleet.ban(node_id, reason, approve))

    # --- fleet state gossip ------------------------------------------------------------------

    def dashboard(self) -> Deferred:
        return Deferred(self._dashboard)

    async def _dashboard(self) -> dict[str, Any]:
        if not self.rt.dashboard_port:
            raise NotFound("the dashboard is off: start lightningd with --hive-dashboard-port")
        if self.rt.dashboard_url is None:
            raise NotFound("the dashboard starts with the Nostr agent; try again in a moment")
        return {"url": self.rt.dashboard_url, "port": self.rt.dashboard_port}

    def topology(self) -> Deferred:
        return self._with_fleet(lambda fleet: _ready(fleet.topology()))

    def contribution(self, node_id: str | None) -> Deferred:
        return self._with_fleet(lambda fleet: _ready(fleet.contribution_view(node_id)))

    # --- intent locks and the planner --------------------------------------------------------

    def intents(self) -> Deferred:
        return self._with_fleet(
            lambda fleet: _ready({"intents": fleet.intents_list(), **fleet.intents.summary()})
        )

    def plan(self) -> Deferred:
        return self._with_fleet(lambda fleet: fleet.plan(text=True))

    def expand(self, node_id: str, amount_sat: int | None) -> Deferred:
        return self._with_fleet(lambda fleet: fleet.expand(node_id, amount_sat))

    # --- weekly settlement -------------------------------------------------------------------

    def settlement(self, period: str | None) -> Deferred:
        return self._with_fleet(lambda fleet: _ready(fleet.settlement_view(period)))

    def settlement_execute(self, period: str | None, dry_run: bool) -> Deferred:
        return self._with_fleet(lambda fleet: fleet.settlement_execute(period, dry_run))


async def _ready(value: dict[str, Any]) -> dict[str, Any]:
    return value


async def _vote(service: NodeService, command_id: str, step: str) -> dict[str, Any]:
    found = node_side.vote(service.agent.store, command_id, step, service.now)
    service.wake()
    return {"command_id": found, "recorded": step}


async def _grant(
    service: NodeService, advisor: str, tier: str, schemas: list[str], limits: dict[str, Any]
) -> dict[str, Any]:
    return service.credentials.issue(advisor, tier, schemas, **limits).credential.model_dump()


async def _revoke(service: NodeService, credential_id: str) -> dict[str, Any]:
    await service.credentials.revoke(credential_id)
    return {"revoked": credential_id}
