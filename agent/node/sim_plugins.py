"""Other plugins on a simulated node: lightningd's `plugin list`, cl-revenue-ops
(`revenue-status`, `revenue-policy`) and CLBOSS (`clboss-ignore`, `clboss-unignore`,
`clboss-status`), answered with the shapes those plugins document, so the fleet's bridge is
tested against their RPCs rather than against mocks.

Per node (`plugins_on(network, node_id)`) a test chooses which plugins are loaded, the version
and status cl-revenue-ops reports, and a fault per method: `ok`, `fail` (an RPC error), `hang`
(never answers) or `slow` (answers after `slow_s`).  What the plugins were told is kept
(`policies`, `ignored`, `calls`) so a test observes the effect, not the call.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import anyio

from agent.node.sim import Network

REVENUE_OPS = "cl-revenue-ops"
CLBOSS = "clboss"
PATHS = {
    REVENUE_OPS: "/opt/lightning/plugins/cl-revenue-ops/cl-revenue-ops.py",
    CLBOSS: "/usr/local/bin/clboss",
}
BUILTIN = ["/usr/libexec/c-lightning/plugins/pay", "/usr/libexec/c-lightning/plugins/bcli"]
REVENUE_METHODS = frozenset({"revenue-status", "revenue-policy"})
CLBOSS_METHODS = frozenset({"clboss-ignore", "clboss-unignore", "clboss-status"})
IGNORE_METHODS = frozenset({"clboss-ignore", "clboss-unignore"})
STRATEGIES = frozenset({"dynamic", "static", "hive", "passive"})
REBALANCE = frozenset({"enabled", "disabled", "source_only", "sink_only"})
METHOD_NOT_FOUND, INVALID_PARAMS, PLUGIN_ERROR = -32601, -32602, -32600


class Fault(StrEnum):
    OK = "ok"
    FAIL = "fail"  # the plugin answers with an RPC error
    HANG = "hang"  # the plugin never answers
    SLOW = "slow"  # the plugin answers after `slow_s`


class PluginFailure(Exception):
    """Raised by a simulated plugin to answer with a JSON-RPC error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class SimPlugins:
    """The plugins of one simulated node, and what they were told."""

    network: Network
    node_id: str
    loaded: set[str] = field(default_factory=set)
    revenue_version: str = "2.2.1"
    revenue_status: str = "running"
    clboss_ignore: bool = True  # False: a CLBOSS without clboss-ignore/unignore (as 0.15.1)
    faults: dict[str, Fault] = field(default_factory=dict)  # method -> fault ("*": every one)
    slow_s: float = 0.5
    clock: Callable[[], float] = time.time
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)  # revenue-ops, by peer
    ignored: set[str] = field(default_factory=set)  # CLBOSS
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def answers(self, method: str) -> bool:
        """True if `method` is lightningd's `plugin` or a method of a loaded plugin."""
        return (
            method == "plugin"
            or (method in REVENUE_METHODS and REVENUE_OPS in self.loaded)
            or (
                method in CLBOSS_METHODS
                and CLBOSS in self.loaded
                and (self.clboss_ignore or method not in IGNORE_METHODS)
            )
        )

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Answer `method` as the plugin would, after its fault; PluginFailure for an error."""
        if not self.answers(method):
            raise PluginFailure(METHOD_NOT_FOUND, f"Unknown command '{method}'")
        self.calls.append((method, dict(params)))
        fault = self.faults.get(method, self.faults.get("*", Fault.OK))
        if fault == Fault.HANG:
            await anyio.sleep_forever()
        if fault == Fault.SLOW:
            await anyio.sleep(self.slow_s)
        if fault == Fault.FAIL:
            raise PluginFailure(PLUGIN_ERROR, f"Error while processing {method}: plugin crashed")
        return self._answer(method, params)

    def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "plugin":
            return self._plugin(params)
        if method == "revenue-status":
            return self._revenue_status()
        if method == "revenue-policy":
            return self._revenue_policy(params)
        if method == "clboss-status":
            return {"info": {"version": "0.15.1"}, "ignored": sorted(self.ignored)}
        node = _node_id(params, "nodeid")
        if method == "clboss-ignore":
            self.ignored.add(node)
        else:
            self.ignored.discard(node)
        return {}

    def _plugin(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("subcommand") != "list":
            raise PluginFailure(INVALID_PARAMS, "this simulator answers `plugin list` only")
        names = [*BUILTIN, *(PATHS[p] for p in sorted(self.loaded))]
        return {
            "command": "list",
            "plugins": [{"name": n, "active": True, "dynamic": n not in BUILTIN} for n in names],
        }

    def _revenue_status(self) -> dict[str, Any]:
        channels = self.network.node(self.node_id).channels
        return {
            "status": self.revenue_status,
            "version": self.revenue_version,
            "config": {
                "target_flow_sats": 100_000,
                "fee_range_ppm": [50, 2500],
                "rebalance_min_profit_sats": 10,
                "dry_run": False,
            },
            "channel_states": [
                {
                    "channel_id": scid,
                    "peer_id": self.network.channels[scid].other(self.node_id),
                    "state": "balanced",
                }
                for scid in sorted(channels)
            ],
            "recent_fee_changes": [],
            "recent_rebalances": [],
        }

    def policy(self, peer: str) -> dict[str, Any]:
        """The policy revenue-ops applies to `peer` (dynamic unless told otherwise)."""
        return self.policies.get(peer) or {
            "peer_id": peer, "strategy": "dynamic", "rebalance_mode": "enabled",
            "fee_ppm_target": None, "tags": [], "updated_at": 0, "expires_at": None,
        }  # fmt: skip

    def _revenue_policy(self, p: dict[str, Any]) -> dict[str, Any]:
        action = p.get("action", "list")
        if action == "list":
            listed = [self.policies[k] for k in sorted(self.policies)]
            return {"status": "success", "policies": listed, "count": len(listed)}
        try:
            peer = _node_id(p, "peer_id")
        except PluginFailure as exc:
            return {"status": "error", "error": exc.message}
        if action == "get":
            return {"status": "success", "policy": self.policy(peer)}
        if action == "delete":
            self.policies.pop(peer, None)
            return {"status": "success", "message": f"policy for {peer} deleted"}
        if action != "set":
            return {"status": "error", "error": f"unknown action {action!r}"}
        return self._set_policy(peer, p)

    def _set_policy(self, peer: str, p: dict[str, Any]) -> dict[str, Any]:
        policy = dict(self.policy(peer))
        strategy, rebalance = p.get("strategy"), p.get("rebalance")
        if strategy is not None and strategy not in STRATEGIES:
            return {"status": "error", "error": f"unknown strategy {strategy!r}"}
        if rebalance is not None and rebalance not in REBALANCE:
            return {"status": "error", "error": f"unknown rebalance mode {rebalance!r}"}
        policy["strategy"] = strategy or policy["strategy"]
        policy["rebalance_mode"] = rebalance or policy["rebalance_mode"]
        policy["updated_at"] = int(self.clock())
        self.policies[peer] = policy
        return {"status": "success", "message": f"policy for {peer} updated", "policy": policy}


def _node_id(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or len(value) != 66 or value[:2] not in ("02", "03"):
        raise PluginFailure(INVALID_PARAMS, f"{name} must be a 33-byte node id in hex")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise PluginFailure(INVALID_PARAMS, f"{name} must be a 33-byte node id in hex") from None
    return value


_HOSTS: weakref.WeakKeyDictionary[Network, dict[str, SimPlugins]] = weakref.WeakKeyDictionary()


def plugins_on(network: Network, node_id: str) -> SimPlugins:
    """The plugins of `node_id` (none loaded until a test or the demo loads some)."""
    hosts = _HOSTS.setdefault(network, {})
    if node_id not in hosts:
        hosts[node_id] = SimPlugins(network, node_id)
    return hosts[node_id]
