"""Zero-fee routing among members, through cl-revenue-ops when it runs, else by setting the
member channels' fees ourselves; and CLBOSS told which nodes to leave alone (anti-overlap).

Detection: `plugin list`, then, if cl-revenue-ops is listed, `revenue-status` — it counts only
when its status is "running" and its version at least 1.4.0.  With it, each member gets
`revenue-policy set <peer> strategy=hive rebalance=enabled` and a peer we had set to hive that
is no longer a member (left, banned) goes back to `strategy=dynamic`; peers we never touched
keep whatever the operator gave them.  Without it, the fees of channels with members are set
to 0/0 through the node, the previous base and ppm recorded first (so a crash never loses
them), and restored when the member leaves or is banned — unless the fee was changed since,
which then stays the operator's.

Every call into another plugin goes through that plugin's circuit breaker (agent/breaker.py:
3 failures within 60 s open it, refused with PLUGIN_UNAVAILABLE, half-open after 60 s, 3
successes close it, 5 s per call), and per-peer calls (policies, CLBOSS) are made at most once
a minute per peer, the time of each kept in the store.  What was applied and what is wanted
live in the store too, so `reconcile` after a restart finishes what was left and repeats
nothing that was done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agent.breaker import CircuitBreaker
from agent.clock import Clock
from agent.errors import NodeRefused, PluginUnavailable
from agent.node.backend import NodeBackend
from agent.node.models import Channel, ChannelState
from agent.store import Store
from events.errors import HiveError

REVENUE_OPS, CLBOSS = "cl-revenue-ops", "clboss"
MIN_REVENUE_VERSION = (1, 4, 0)
KV_MODE = "fleet-bridge:mode"  # {"mode", "clboss", "revenue_version"}
KV_FEES = "fleet-bridge:fees"  # scid -> {"peer", "base_msat", "ppm"}: what was there before 0/0
KV_POLICIES = "fleet-bridge:policies"  # peer -> the strategy revenue-ops last accepted from us
KV_CLBOSS = "fleet-bridge:clboss"  # peer -> {"want": bool, "applied": bool}
KV_CALLS = "fleet-bridge:calls"  # "<plugin>:<peer>" -> when the last per-peer call was made
KV_NO_IGNORE = "fleet-bridge:clboss-no-ignore"  # {"at": when CLBOSS said it has no clboss-ignore}
RETRY_UNSUPPORTED_S = 86_400  # asked again a day later (CLBOSS may have been upgraded)


class Mode(StrEnum):
    UNKNOWN = "unknown"  # never detected (nothing is changed)
    REVENUE_OPS = "revenue_ops"  # cl-revenue-ops ≥ 1.4.0 runs: policies through it
    OWN_FEES = "own_fees"  # it does not: member channels' fees set by the agent


@dataclass(frozen=True)
class BridgeConfig:
    timeout_s: float = 5.0  # per call into a plugin
    failures: int = 3  # within window_s: the breaker opens
    window_s: int = 60
    cooldown_s: int = 60  # open for this long, then half-open
    successes: int = 3  # probes in a row that close it again
    per_peer_s: int = 60  # at most one per-peer call per peer in this time


@dataclass
class Reconciled:
    """What one `reconcile` did: changes made, peers waiting for their per-minute slot, and
    failures by peer or channel (the error code)."""

    mode: Mode
    changed: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def parse_version(text: object) -> tuple[int, int, int] | None:
    """(major, minor, patch) of "1.4.0", "v2.10", "1.4.0-rc1"; None if it is not a version."""
    if not isinstance(text, str):
        return None
    found = re.fullmatch(r"v?(\d{1,6})(?:\.(\d{1,6}))?(?:\.(\d{1,6}))?(?:[-+ ].*)?", text.strip())
    if found is None:
        return None
    major, minor, patch = (int(part or 0) for part in found.groups())
    return major, minor, patch


def plugin_names(listing: dict[str, Any]) -> set[str]:
    """The active plugins of a `plugin list` answer, by file name without extension, with
    underscores as dashes ("/opt/x/cl_revenue_ops.py" → "cl-revenue-ops")."""
    names = set()
    for entry in listing.get("plugins", []):
        if isinstance(entry, dict) and entry.get("active", True) and entry.get("name"):
            base = str(entry["name"]).replace("\\", "/").rsplit("/", 1)[-1]
            names.add(base.split(".", 1)[0].replace("_", "-").lower())
    return names


def revenue_ops_usable(status: dict[str, Any]) -> bool:
    """A `revenue-status` answer of a cl-revenue-ops that is running, version ≥ 1.4.0."""
    version = parse_version(status.get("version"))
    return (
        status.get("status") == "running"
        and version is not None
        and (version >= MIN_REVENUE_VERSION)
    )


class Bridge:
    """The fee treatment of members and CLBOSS's view of them, kept in line with the hive."""

    def __init__(
        self, node: NodeBackend, store: Store, clock: Clock, config: BridgeConfig | None = None
    ) -> None:
        self.node, self.store, self.clock = node, store, clock
        self.config = cfg = config or BridgeConfig()
        self.breakers = {
            name: CircuitBreaker(
                cfg.failures, cfg.cooldown_s, clock.now, window_s=cfg.window_s,
                successes=cfg.successes, name=name, error=PluginUnavailable,
            )
            for name in (REVENUE_OPS, CLBOSS)
        }  # fmt: skip

    # --- calls into plugins ------------------------------------------------------------

    async def _call(self, plugin: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One call behind `plugin`'s breaker; a revenue-ops answer without status "success"
        (where it has one) is a refusal and counts as a failure."""

        async def attempt() -> dict[str, Any]:
            answer = await self.node.plugin_call(method, params)
            if method == "revenue-policy" and answer.get("status") != "success":
                why = answer.get("error") or answer.get("message") or answer.get("status")
                raise NodeRefused(f"{method}: {str(why)[:200]}")
            return answer

        breaker = self.breakers[plugin]
        return await breaker.run(attempt, timeout_s=self.config.timeout_s, what=method)

    def _slot_free(self, plugin: str, peer: str) -> bool:
        last = self._kv(KV_CALLS).get(f"{plugin}:{peer}")
        return last is None or self.clock.now() - int(last) >= self.config.per_peer_s

    def _take_slot(self, plugin: str, peer: str) -> None:
        """Recorded before the call: a crash right after it still counts it."""
        now = self.clock.now()
        calls = {
            k: t for k, t in self._kv(KV_CALLS).items() if now - int(t) < self.config.per_peer_s
        }
        calls[f"{plugin}:{peer}"] = now
        self._save(KV_CALLS, calls)

    # --- detection -----------------------------------------------------------------------

    async def detect(self) -> Mode:
        """Which way zero fees are applied now, and whether CLBOSS is loaded.  When the
        plugins cannot be asked (a breaker open, a timeout) the last answer stands; with
        none, the error is raised."""
        try:
            listed = plugin_names(await self._call(REVENUE_OPS, "plugin", {"subcommand": "list"}))
            found: dict[str, Any] = {"clboss": CLBOSS in listed, "revenue_version": None}
            mode = Mode.OWN_FEES
            if REVENUE_OPS in listed or "revenue-ops" in listed:
                status = await self._call(REVENUE_OPS, "revenue-status", {})
                found["revenue_version"] = str(status.get("version"))[:40]
                mode = Mode.REVENUE_OPS if revenue_ops_usable(status) else Mode.OWN_FEES
        except HiveError:
            if self.mode == Mode.UNKNOWN:
                raise
            return self.mode
        self._save(KV_MODE, {"mode": mode.value, **found})
        return mode

    @property
    def mode(self) -> Mode:
        return Mode(self._kv(KV_MODE).get("mode", Mode.UNKNOWN.value))

    @property
    def clboss_loaded(self) -> bool:
        """CLBOSS was listed, and has not said lately that it lacks `clboss-ignore`."""
        refused_at = self._kv(KV_NO_IGNORE).get("at")
        lacks = refused_at is not None and self.clock.now() - refused_at < RETRY_UNSUPPORTED_S
        return bool(self._kv(KV_MODE).get("clboss")) and not lacks

    # --- reconciliation ------------------------------------------------------------------

    async def reconcile(self, members: set[str]) -> Reconciled:
        """Bring fee treatment and CLBOSS in line with `members` (the hive's members other
        than this node; banned nodes and those who left are simply not in it).  Idempotent:
        what is already so is not asked again.  Raises only if the plugins were never
        detected and cannot be asked now."""
        report = Reconciled(await self.detect())
        if report.mode == Mode.REVENUE_OPS:
            if self._kv(KV_FEES):  # fees we zeroed before revenue-ops ran: give them back
                await self._own_fees(set(), report)
            await self._policies(members, report)
        else:
            await self._own_fees(members, report)
        for peer in sorted(self._kv(KV_CLBOSS)):
            await self._settle_clboss(peer, report)
        return report

    async def _policies(self, members: set[str], report: Reconciled) -> None:
        applied: dict[str, str] = self._kv(KV_POLICIES)
        wanted = {p: "hive" for p in members}
        wanted |= {p: "dynamic" for p, s in applied.items() if s == "hive" and p not in members}
        for peer, strategy in sorted(wanted.items()):
            if applied.get(peer) != strategy:
                await self._set_policy(peer, strategy, report)

    async def _set_policy(self, peer: str, strategy: str, report: Reconciled) -> None:
        if not self._slot_free(REVENUE_OPS, peer):
            report.deferred.append(peer)
            return
        params = {"action": "set", "peer_id": peer, "strategy": strategy}
        if strategy == "hive":
            params["rebalance"] = "enabled"
        try:
            self.breakers[REVENUE_OPS].check()  # refused while open: no slot spent
            self._take_slot(REVENUE_OPS, peer)
            await self._call(REVENUE_OPS, "revenue-policy", params)
        except HiveError as exc:
            report.failed[peer] = exc.code
            return
        applied = self._kv(KV_POLICIES)
        if strategy == "hive":
            applied[peer] = strategy
        else:
            applied.pop(peer, None)  # dynamic is revenue-ops's own default: nothing to undo
        self._save(KV_POLICIES, applied)
        report.changed.append(f"{strategy} {peer}")

    async def _own_fees(self, members: set[str], report: Reconciled) -> None:
        try:
            channels = [c for c in await self.node.channels() if c.state == ChannelState.NORMAL]
        except HiveError as exc:
            report.failed["channels"] = exc.code
            return
        for chan in channels:
            try:
                await self._fee_step(chan, members, report)
            except HiveError as exc:
                report.failed[chan.short_channel_id] = exc.code
        saved = self._kv(KV_FEES)
        open_now = {c.short_channel_id for c in channels}
        if any(scid not in open_now for scid in saved):  # closed channels: nothing to restore
            self._save(KV_FEES, {s: r for s, r in saved.items() if s in open_now})

    async def _fee_step(self, chan: Channel, members: set[str], report: Reconciled) -> None:
        scid, now = chan.short_channel_id, (chan.policy.base_msat, chan.policy.ppm)
        saved = self._kv(KV_FEES)
        before = saved.get(scid)
        if chan.peer_id in members:
            if before is None:  # recorded before the change, never overwritten
                before = {"peer": chan.peer_id, "base_msat": now[0], "ppm": now[1]}
                saved[scid] = before
                self._save(KV_FEES, saved)
            if before.get("zeroed"):
                return  # zeroed once: a fee the operator set since is theirs (not fought)
            if now != (0, 0):
                await self.node.set_fees(scid, base_msat=0, ppm=0)
                report.changed.append(f"zero {scid}")
            saved[scid] = {**before, "zeroed": True}
            self._save(KV_FEES, saved)
        elif before is not None:
            if now == (0, 0) and (before["base_msat"], before["ppm"]) != (0, 0):
                await self.node.set_fees(scid, base_msat=before["base_msat"], ppm=before["ppm"])
                report.changed.append(f"restore {scid}")
            saved.pop(scid)  # restored, or changed by someone else since: theirs now
            self._save(KV_FEES, saved)

    # --- CLBOSS --------------------------------------------------------------------------

    async def ignore(self, node: str) -> bool:
        """Ask CLBOSS to leave `node` alone (another member serves it).  True once CLBOSS has
        it; False if deferred (CLBOSS not loaded, or this node's per-minute call already made:
        `reconcile` finishes it).  PLUGIN_UNAVAILABLE or NODE_REFUSED if the call failed (the
        wish is kept and retried by `reconcile`)."""
        return await self._want_clboss(node, True)

    async def unignore(self, node: str) -> bool:
        """Let CLBOSS manage `node` again; the same answers as `ignore`."""
        return await self._want_clboss(node, False)

    async def _want_clboss(self, node: str, ignore: bool) -> bool:
        wishes = self._kv(KV_CLBOSS)
        applied = bool(wishes.get(node, {}).get("applied"))
        if applied or ignore:
            wishes[node] = {"want": ignore, "applied": applied}
        else:
            wishes.pop(node, None)  # never ignored: nothing to undo
        self._save(KV_CLBOSS, wishes)
        report = Reconciled(self.mode)
        error = await self._settle_clboss(node, report)
        if error is not None:
            raise error
        return node not in report.deferred

    async def _settle_clboss(self, node: str, report: Reconciled) -> HiveError | None:
        """Tell CLBOSS what is wanted of `node`, if it differs from what it was told; the
        error of a failed call (also in `report.failed`)."""
        wish = self._kv(KV_CLBOSS).get(node)
        if wish is None or wish["want"] == wish["applied"]:
            return None
        if not self.clboss_loaded or not self._slot_free(CLBOSS, node):
            report.deferred.append(node)
            return None
        method = "clboss-ignore" if wish["want"] else "clboss-unignore"
        try:
            self.breakers[CLBOSS].check()  # refused while open: no slot spent
            self._take_slot(CLBOSS, node)
            await self._call(CLBOSS, method, {"nodeid": node})
        except HiveError as exc:
            report.failed[node] = exc.code
            if "unknown command" in exc.message.lower():  # released CLBOSS (0.15) lacks it
                self._save(KV_NO_IGNORE, {"at": self.clock.now()})
            return exc
        wishes = self._kv(KV_CLBOSS)
        if wish["want"]:
            wishes[node] = {"want": True, "applied": True}
        else:
            wishes.pop(node, None)
        self._save(KV_CLBOSS, wishes)
        report.changed.append(f"{method} {node}")
        return None

    # --- status and the store ------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """For `hive-status`: the mode, each breaker, what is applied."""
        detected = self._kv(KV_MODE)
        return {
            "mode": self.mode.value,
            "revenue_ops_version": detected.get("revenue_version"),
            "clboss": bool(detected.get("clboss")),
            "breakers": {name: b.report() for name, b in self.breakers.items()},
            "zero_fee_channels": sorted(self._kv(KV_FEES)),
            "hive_policies": sorted(self._kv(KV_POLICIES)),
            "clboss_ignored": sorted(p for p, w in self._kv(KV_CLBOSS).items() if w.get("applied")),
        }

    def _kv(self, key: str) -> dict[str, Any]:
        value = self.store.kv(key)
        return value if isinstance(value, dict) else {}

    def _save(self, key: str, value: dict[str, Any]) -> None:
        with self.store.transaction(self.clock.now()) as tx:
            tx.set_kv(key, value)
