"""The agent inside Core Lightning's plugin process.

`plugin_shim.py` only adapts lightningd's plugin protocol; everything it hands off lands here.
The agent runs on its own event-loop thread (an anyio blocking portal), so lightningd's hooks
return at once: events are queued for the loop, never awaited on the plugin's main thread.

On start: the Nostr key is derived from the node's HSM with `makesecret` (no key file), the
node signs the Nostr public key with `signmessage`, and the resulting node binding event
(kind 36385) is published through the agent's outbox when relays are configured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import anyio
import nostr_sdk as sdk
from anyio.from_thread import BlockingPortal, start_blocking_portal

from agent import app
from agent.advisory.local import LocalActions
from agent.advisory.node import NodeService
from agent.advisory.policy import Governance, PolicyConfig
from agent.clock import SystemClock
from agent.escrow.service import Escrow
from agent.fleet import gossip_rules
from agent.fleet.service import FleetConfig, FleetService
from agent.node.cln import CLNBackend
from agent.node.models import (
    CustomMsg,
    Forward,
    ForwardStatus,
    NodeEvent,
    PeerConnected,
    PeerDisconnected,
)
from agent.plugin_methods import HiveMethods
from agent.plugin_notify import CommandNotices, Emit, watch_fleet
from agent.runtime import Agent
from agent.settings import RelaysConfig, Settings
from agent.store import fleet as fleet_rows
from agent.store.db import Store
from events import node_binding
from events.base import NostrEvent
from events.errors import HiveError, Internal, InvalidParams
from events.fleet import is_hive_frame
from events.fleet.intent import MAX_LIFE_S

log = logging.getLogger("hive.plugin")
KEY_LABEL = "hive-agent/nostr-key"


def forward_from(params: dict[str, Any]) -> Forward | None:
    """A `forward_event` notification as a Forward (None if it lacks what we need)."""
    try:
        status = ForwardStatus(params["status"])
        return Forward(
            in_channel=str(params["in_channel"]),
            out_channel=str(params.get("out_channel", "")),
            in_msat=int(params.get("in_msat", 0)),
            out_msat=int(params.get("out_msat", 0)),
            fee_msat=int(params.get("fee_msat", 0)),
            status=status,
            failcode=params.get("failcode"),
            received_time=float(params.get("received_time", 0)),
            resolved_time=float(params.get("resolved_time", 0) or 0),
            payment_hash=str(params.get("payment_hash", "") or ""),
            in_htlc_id=_int_or_none(params.get("in_htlc_id")),
        )
    except (KeyError, ValueError, TypeError):
        return None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class PluginRuntime:
    def __init__(self) -> None:
        self.portal: BlockingPortal | None = None
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self.node: CLNBackend | None = None
        self.keys: sdk.Keys | None = None
        self.binding: NostrEvent | None = None
        self.agent: Agent | None = None
        self.service: NodeService | None = None
        self.escrow: Escrow | None = None
        self.fleet: FleetService | None = None
        self.fleet_config = FleetConfig()
        self.governance = Governance()  # hive-governance-mode, hive-failsafe-budget-per-day
        self.actions: LocalActions | None = None  # fleet actions, while the Nostr agent runs
        self.store: Store | None = None
        self.counts: Counter[str] = Counter()
        self.relays: list[str] = []
        self.problems: list[str] = []  # configuration and start-up failures, for hive-status
        self.home = Path()
        self.policy_file: Path | None = None  # hive-policy-file (default: <home>/policy.json)
        self.operator: str | None = None  # hive-operator, over policy.json's operator_pubkey
        self.dashboard_port = 0  # hive-dashboard-port (0: no dashboard)
        self.dashboard_url: str | None = None  # with its token: only `hive-dashboard` tells it
        self._agent_scope: anyio.CancelScope | None = None  # the Nostr agent's, to restart it
        self._agent_done: anyio.Event | None = None
        self._restart_lock: anyio.Lock | None = None  # one restart at a time (setconfig)
        self._generation = 0  # bumped by each setconfig: only the newest restart runs
        self.log: Callable[[str, str], None] = lambda message, level: None
        self.notify: Emit = lambda topic, payload: None  # plugin.notify (agent/plugin_notify.py)
        self.methods = HiveMethods(self)  # the `hive-*` methods

    def submit(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> Future[Any]:
        """Run `fn(*args)` on the agent's loop; the future completes there."""
        if self.portal is None:
            raise Internal("the hive agent is not running")
        return self.portal.start_task_soon(fn, *args)

    def problem(self, message: str) -> None:
        """Record (for hive-status) and log a failure that switches part of the agent off."""
        self.problems.append(message[:300])
        self.log(f"hive-agent: {message}", "unusual")

    # --- lifecycle (called from the plugin's main thread) --------------------------------

    def start(
        self,
        rpc_path: str,
        lightning_dir: str,
        relays: list[str],
        fleet: FleetConfig | None = None,
        governance: Governance | None = None,
        *,
        policy_file: Path | None = None,
        operator: str | None = None,
        dashboard_port: int = 0,
    ) -> None:
        """Start the loop thread, derive the key, sign the binding, start the agent.

        Relays and policy.json are checked first: a bad one switches advisor commands off
        (fleet membership needs neither), is logged, and `hive-status` names it.
        """
        home = self.home = Path(lightning_dir) / "hive"
        self.policy_file, self.operator = policy_file, operator
        self.dashboard_port = dashboard_port
        self.fleet_config = fleet or self.fleet_config
        self.governance = governance or self.governance
        # a fleet action may wait for the operator under its lock (always in operator mode, for
        # larger actions in autonomous mode): the lock lives its longest, an hour, so a person
        # has the time; rejected or lapsed, the target is freed
        self.fleet_config = dataclasses.replace(
            self.fleet_config, intent_expiry_s=max(self.fleet_config.intent_expiry_s, MAX_LIFE_S)
        )
        config = self._config(relays)
        self._portal_cm = start_blocking_portal(backend="asyncio", name="hive-agent")
        self.portal = self._portal_cm.__enter__()
        self.relays = relays
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.portal.call(self._setup, rpc_path, home)
        self.portal.start_task_soon(self._consume_events)
        assert self.fleet is not None
        self.portal.start_task_soon(self.fleet.run)
        self.portal.start_task_soon(watch_fleet, self.fleet, self._notify)
        if config is not None:
            self.portal.start_task_soon(self._restart_agent, self._generation, config)

    def _config(self, relays: list[str]) -> tuple[RelaysConfig, PolicyConfig] | None:
        if not relays:
            return None
        try:
            return RelaysConfig.from_urls(relays), self._policy()
        except HiveError as exc:
            self.problem(f"advisor commands are off: {exc}")
            return None

    def _policy(self) -> PolicyConfig:
        policy = PolicyConfig.load(self.policy_file or self.home / "policy.json")
        if self.operator is not None:
            policy = policy.model_copy(update={"operator_pubkey": self.operator})
        return policy

    def set_relays(self, relays: list[str]) -> None:
        """`setconfig hive-relays …`: check the new set (InvalidParams/ConfigInvalid at once,
        nothing changed), then restart the Nostr agent on it in the background; an empty set
        stops it.  Fleet membership carries on throughout."""
        config = (RelaysConfig.from_urls(relays), self._policy()) if relays else None
        if self.portal is None:
            raise Internal("the hive agent is not running")
        self.relays = relays
        self.problems = [p for p in self.problems if not p.startswith("advisor commands are off")]
        self._generation += 1
        self.portal.start_task_soon(self._restart_agent, self._generation, config)

    async def _restart_agent(
        self, generation: int, config: tuple[RelaysConfig, PolicyConfig] | None
    ) -> None:
        """Stop the running Nostr agent and start one on `config`, one restart at a time;
        a restart that a newer `setconfig` superseded does nothing (the newest set wins, and
        never two agents run at once)."""
        if self._restart_lock is None:
            self._restart_lock = anyio.Lock()
        async with self._restart_lock:
            if generation != self._generation:
                return
            if self._agent_done is not None and not self._agent_done.is_set():
                if self._agent_scope is not None:
                    self._agent_scope.cancel()
                await self._agent_done.wait()
            if generation != self._generation or config is None:
                return
            # claimed before the lock goes: the next restart waits for this run to end
            self._agent_done, self._agent_scope = anyio.Event(), anyio.CancelScope()
        await self._run_agent(self.home, *config)

    def stop(self) -> None:
        """Cancel the agent's tasks and join the loop thread (lightningd is shutting down)."""
        if self._portal_cm is not None and self.portal is not None:
            with contextlib.suppress(Exception):
                self.portal.call(self.portal.stop, True)  # True: cancel the remaining tasks
            with contextlib.suppress(Exception):
                self._portal_cm.__exit__(None, None, None)
            self._portal_cm = self.portal = None

    # --- on the agent loop ---------------------------------------------------------------

    async def _setup(self, rpc_path: str, home: Path) -> None:
        self.node = CLNBackend(rpc_path, timeout_s=20)
        secret = await self.node.makesecret(KEY_LABEL)
        self.keys = sdk.Keys(sdk.SecretKey.from_bytes(secret))
        me = await self.node.info()
        pubkey = self.keys.public_key().to_hex()
        signed = await self.node.signmessage(pubkey)
        binding = node_binding.NodeBinding(node_id=me.id, nostr_pubkey=pubkey, zbase=signed.zbase)
        node_binding.verify(binding)
        self.binding = node_binding.build(self.keys, binding, created_at=SystemClock().now())
        # one store for the whole agent (fleet rows included; an older separate fleet.sqlite
        # is folded in once); fleet membership needs no relays: custom messages via lightningd
        self.store = Store(home / "agent.sqlite")
        fleet_rows.absorb_legacy(self.store, home / "fleet.sqlite", SystemClock().now())
        # the fleet's own actions go through this node's governance (agent/fleet/actions.py)
        self.fleet = await FleetService(
            self.node, self.store, self.keys, config=self.fleet_config, governed=True
        ).start()

    async def _run_agent(self, home: Path, relays: RelaysConfig, policy: PolicyConfig) -> None:
        done, scope = self._agent_done, self._agent_scope
        assert done is not None and scope is not None  # (claimed by _restart_agent)
        try:
            with scope:
                await self._agent_until_stopped(home, relays, policy)
        except Exception as exc:
            while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]  # (the task that failed, not the group around it)
            self.problem(f"the Nostr agent stopped: {type(exc).__name__}: {exc}")
            raise
        finally:
            self.agent = self.service = self.actions = None
            if self.fleet is not None:
                self.fleet.actions = None
            self._agent_scope = None
            done.set()

    async def _agent_until_stopped(
        self, home: Path, relays: RelaysConfig, policy: PolicyConfig
    ) -> None:
        assert self.keys is not None and self.binding is not None
        settings = Settings(home=home)
        assert self.store is not None
        assert self.node is not None
        built = app.node_agent(
            settings, self.keys, relays, self.node, policy, store=self.store, watch_forwards=False
        )  # forwards come from lightningd's forward_event (see _consume_events)
        async with built.agent as agent:
            self.agent = agent
            self.service, self.escrow = built.node, built.escrow
            # the fleet's actions on this node go through the same command path (issue 16 §3)
            self.actions = LocalActions(self.service, self.governance)
            CommandNotices(self.service, self._notify)
            if self.fleet is not None:
                self.fleet.actions = self.actions
            await agent.publish(self.binding, wait=False)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self.escrow.maintain)
                    tg.start_soon(built.market.announce_handler)  # NIP-89, when it changed
                    tg.start_soon(built.announce)  # relay lists and profile, if they changed
                    if self.dashboard_port:
                        tg.start_soon(self._dashboard, home, policy, agent)
                    await self.service.run()
            finally:
                self.dashboard_url = None
                await self.escrow.close()

    async def _dashboard(self, home: Path, policy: PolicyConfig, agent: Agent) -> None:
        """`hive-dashboard-port`: the dashboard on 127.0.0.1, inside this process (the fleet
        page included), for as long as the Nostr agent runs; its URL only from `hive-dashboard`
        (the token is never logged)."""
        from agent.dashboard.actions import AppOperator
        from agent.dashboard.command import Dashboard

        assert self.service is not None
        try:  # (a dashboard that cannot start — say its port is taken — stops nothing else)
            board = Dashboard(
                home / "agent.sqlite", AppOperator(self.service), policy, "127.0.0.1",
                self.dashboard_port, node=self.node, fleet=self.fleet, relays=agent.pool.status,
            )  # fmt: skip
        except OSError as exc:
            self.problem(f"the dashboard cannot listen on port {self.dashboard_port}: {exc}")
            return
        self.dashboard_url = board.url
        self.log(f"hive-agent: dashboard on {board.base} (lightning-cli hive-dashboard)", "info")
        try:
            await board.serve()
        except Exception as exc:  # noqa: BLE001 - said in hive-status; the agent goes on
            self.problem(f"the dashboard stopped: {type(exc).__name__}: {exc}")
        finally:
            self.dashboard_url = None
            board.stop()

    async def _consume_events(self) -> None:
        assert self.node is not None
        async for event in self.node.events():
            self.counts[type(event).__name__] += 1
            if self.fleet is not None:
                # custom messages, connects, disconnects; forwards for the contribution ledger
                await self.fleet.handle(event)
            if isinstance(event, Forward) and self.escrow is not None:
                try:  # performance bonuses are measured from these
                    self.escrow.bonuses.record(event)
                except Exception as exc:  # noqa: BLE001 - the one consumer of every event goes on
                    log.warning("a forward was not recorded (%s)", type(exc).__name__)
                    self.counts["ForwardNotRecorded"] += 1

    def _notify(self, topic: str, payload: dict[str, Any]) -> None:
        try:
            self.notify(topic, payload)
        except Exception:  # noqa: BLE001 - stdout gone (lightningd stopping): nobody to tell
            log.debug("notification %s not sent", topic)

    def inject(self, event: NodeEvent) -> None:
        """From a hook or notification: queue the event for the agent loop; never waits."""
        if self.portal is not None and self.node is not None:
            self.portal.start_task_soon(self._inject, event)

    async def _inject(self, event: NodeEvent) -> None:
        assert self.node is not None
        self.node.inject(event)

    # --- hooks and methods ---------------------------------------------------------------

    def on_custommsg(self, peer_id: str, payload_hex: str) -> dict[str, str]:
        """The custommsg hook: peek at the magic, hand ours to the agent, always continue."""
        try:
            payload = bytes.fromhex(payload_hex)
        except (TypeError, ValueError):
            return {"result": "continue"}
        if is_hive_frame(payload) and isinstance(peer_id, str):
            self.inject(CustomMsg(peer_id=peer_id, payload=payload))
        return {"result": "continue"}

    def on_connect(self, peer_id: str) -> None:
        self.inject(PeerConnected(peer_id=peer_id))

    def on_disconnect(self, peer_id: str) -> None:
        self.inject(PeerDisconnected(peer_id=peer_id))

    def on_forward(self, params: dict[str, Any]) -> None:
        forward = forward_from(params)
        if forward is not None:
            self.inject(forward)


OPTIONS = (  # plugin option, FleetConfig field, default, bounds
    ("hive-gossip-threshold", "gossip_threshold_pct", 10, gossip_rules.THRESHOLD_RANGE),
    ("hive-heartbeat-interval", "heartbeat_s", 300, gossip_rules.HEARTBEAT_RANGE),
    ("hive-intent-hold", "intent_hold_s", 60, (10, 600)),
    ("hive-planner-interval", "planner_interval_s", 3600, (0, 86_400)),
    ("hive-market-share-cap", "market_share_cap_pct", 20, (1, 50)),
    ("hive-settlement-grace", "settlement_grace_s", 3600, (0, 259_200)),
)
INTENT_MODES = ("default", "strict")
ZERO_MEANS_OFF = frozenset({"member_fee_zero", "planner_interval_s"})
GOVERNANCE_OPTIONS = ("hive-governance-mode", "hive-failsafe-budget-per-day")
TEST_ENV = "HIVE_TEST_FLEET"  # tests only: FleetConfig numbers as a JSON object (see below)


def fleet_options(options: dict[str, Any], env: Mapping[str, str] | None = None) -> FleetConfig:
    """The fleet's plugin options (`hive-gossip-threshold`, `hive-heartbeat-interval`) as a
    FleetConfig; InvalidParams naming the option that is not a whole number within its bounds.

    For tests only, `HIVE_TEST_FLEET` in the plugin's environment may shorten the fleet's
    timings: a JSON object of FleetConfig number fields (e.g. `{"gossip_gap_s": 1,
    "handshake_retry_s": 2}`: the fleet loop sleeps at most half the handshake retry, so a
    changed fee is noticed within about a second); anything else in it is refused."""
    values: dict[str, Any] = {}
    for name, field, default, (low, high) in OPTIONS:
        raw = options.get(name, default)
        try:
            value = int(str(raw).strip())
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise InvalidParams(
                f"{name} must be a whole number from {low} to {high}, not {str(raw)[:40]!r}"
            )
        values[field] = value
    if 0 < values["planner_interval_s"] < 300:
        raise InvalidParams("hive-planner-interval must be 0 (never) or from 300 to 86400")
    mode = str(options.get("hive-intent-mode", "default")).strip()
    if mode not in INTENT_MODES:
        raise InvalidParams(f"hive-intent-mode must be default or strict, not {mode[:40]!r}")
    values["intent_mode"] = mode
    values.update(_test_overrides((os.environ if env is None else env).get(TEST_ENV, "")))
    config = FleetConfig(**values)
    gossip_rules.check_options(config.gossip_threshold_pct, config.heartbeat_s)
    return config


def relay_urls(value: Any) -> list[str]:
    """`hive-relays` as lightningd sends it: a list (a multi option, one relay per
    `--hive-relays=`) or one string; either way a comma-separated entry still counts as several
    relays (the older form).  Order kept, duplicates dropped."""
    items = value if isinstance(value, list) else [] if value is None else [value]
    urls = [u.strip() for item in items for u in str(item).split(",")]
    return list(dict.fromkeys(u for u in urls if u))


def dashboard_option(value: Any) -> int:
    """`hive-dashboard-port`: 0 (off) or a TCP port; InvalidParams otherwise."""
    try:
        port = int(str(0 if value is None else value).strip())
    except ValueError:
        port = -1
    if not 0 <= port <= 65_535:
        raise InvalidParams(
            "hive-dashboard-port must be 0 (off) or a port from 1 to 65535, "
            f"not {str(value)[:40]!r}"
        )
    return port


def operator_option(value: Any) -> str | None:
    """`hive-operator` (hex, npub or nprofile) as hex; None when not set; InvalidParams if it
    is not a Nostr public key."""
    if value is None or not str(value).strip():
        return None
    try:
        text = str(value).strip().removeprefix("nostr:")
        return str(sdk.PublicKey.parse(text).to_hex())
    except sdk.NostrSdkError:
        raise InvalidParams(
            f"hive-operator must be a Nostr public key (hex or npub), not {str(value)[:40]!r}"
        ) from None


def governance_options(options: dict[str, Any]) -> Governance:
    """`hive-governance-mode` (autonomous | operator | failsafe; default operator) and
    `hive-failsafe-budget-per-day` (sats, default 10,000,000); InvalidParams naming the option."""
    defaults = Governance()
    return Governance.from_options(
        options.get(GOVERNANCE_OPTIONS[0], defaults.mode.value),
        options.get(GOVERNANCE_OPTIONS[1], defaults.failsafe_budget_sats),
    )


def _test_overrides(text: str) -> dict[str, Any]:
    """HIVE_TEST_FLEET's fields: positive numbers for FleetConfig's number fields only (0 also
    where it switches something off)
    (whole numbers where the field is one)."""
    if not text.strip():
        return {}
    try:
        found = json.loads(text)
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise InvalidParams(f"{TEST_ENV} must be a JSON object of FleetConfig number fields")
    kinds = {f.name: str(f.type) for f in dataclasses.fields(FleetConfig)}
    for name, value in found.items():
        kind = kinds.get(name)
        allowed = (int,) if kind == "int" else (int, float) if kind == "float" else ()
        floor = 0 if name in ZERO_MEANS_OFF else 1e-9
        if isinstance(value, bool) or not isinstance(value, allowed) or value < floor:
            raise InvalidParams(f"{TEST_ENV}: {str(name)[:40]!r} must name a FleetConfig number")
    return found
