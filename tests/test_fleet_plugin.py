"""Fleet membership through three real plugin processes: every byte between members goes
plugin → simulator RPC socket (`sendcustommsg`) → simulated peer → the peer's `custommsg` hook,
as it would between three Core Lightning nodes.  One node's plugin dies by SIGKILL mid-join and
another's lightningd restarts mid-ban (links drop, the plugin exits on `shutdown`); each starts
again on the same lightning-dir and the three still agree."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from agent.cln_plugin import TEST_ENV
from agent.node.cln import CLNBackend
from agent.node.lightningd import PluginError, PluginProcess, bridge
from agent.node.sim import Network
from agent.node.sim_api import SimLightningd
from agent.node.sim_rpc import SimRpcServer, short_socket_dir
from agent.node.simnode import SimDriver
from agent.store import fleet as fleet_rows
from agent.store.db import Store
from tests.fleet_world import mesh

pytestmark = pytest.mark.anyio


class PluginNode:
    """One simulated node with the real plugin attached, restartable; each life of it runs in
    its own task so task groups nest properly."""

    def __init__(
        self,
        net: Network,
        node_id: str,
        tg: anyio.abc.TaskGroup,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.net, self.node_id, self.tg = net, node_id, tg
        self.options = options or {}  # the plugin's options (lightningd's `--hive-...`)
        self.env: dict[str, str] = {}  # added to the next life's environment (e.g. a crash)
        self.dir = short_socket_dir()
        self.plugin: PluginProcess | None = None
        self._stop = anyio.Event()
        self._done = anyio.Event()
        self._peers: list[str] = []
        self._bridge = anyio.CancelScope()

    async def _life(self, ready: anyio.Event) -> None:
        try:
            async with (
                SimRpcServer(SimLightningd(self.net, self.node_id), self.dir / "lightning-rpc"),
                PluginProcess(self.dir, env=self.env) as plugin,
                anyio.create_task_group() as tg,
            ):
                await plugin.start(self.options)
                self._bridge = anyio.CancelScope()
                tg.start_soon(self._run_bridge, plugin)
                self.plugin = plugin
                for peer in self._peers:  # lightningd is back: its links come back
                    self.net.connect(self.node_id, peer)
                ready.set()
                await self._stop.wait()
                tg.cancel_scope.cancel()
        finally:
            (self.dir / "lightning-rpc").unlink(missing_ok=True)
            self._done.set()

    async def _run_bridge(self, plugin: PluginProcess) -> None:
        with self._bridge:
            try:
                await bridge(self.net, self.node_id, plugin)
            except (PluginError, BrokenPipeError):
                # the plugin died by itself (a crash point's SIGKILL; its stdout may close a
                # moment before its exit is seen, or its stdin be gone as we write to it):
                # nothing more is fed to it
                if plugin.process is None or await plugin.process.exited(5) is None:
                    raise

    async def start(self, env: dict[str, str] | None = None) -> PluginNode:
        """A new life (same lightning-dir); `env`: added to this life's environment only."""
        self.env = dict(env or {})
        self._stop, self._done, ready = anyio.Event(), anyio.Event(), anyio.Event()
        self.tg.start_soon(self._life, ready)
        with anyio.fail_after(30):
            await ready.wait()
        return self

    async def stop(self, *, kill: bool = False) -> None:
        """lightningd goes down: links drop; the plugin leaves on `shutdown`, or (kill=True)
        dies by SIGKILL first, mid-whatever it was doing."""
        if kill:
            assert self.plugin is not None and self.plugin.process is not None
            self._bridge.cancel()  # lightningd stops feeding a plugin it is about to lose
            self.plugin.process.kill()
        self._peers = self.net.peers(self.node_id)
        for peer in self._peers:
            self.net.disconnect(self.node_id, peer)
        self._stop.set()
        with anyio.fail_after(30):
            await self._done.wait()
        assert self.plugin is not None
        assert self.plugin.exit_code == (-9 if kill else 0)

    async def call(self, method: str, **params: Any) -> Any:
        assert self.plugin is not None
        return await self.plugin.call(method, **params)

    async def fleet(self) -> dict[str, Any]:
        return (await self.call("hive-status"))["fleet"]

    async def view(self) -> dict[str, Any]:
        listed = await self.call("hive-members")
        return {
            "members": {
                m["node_id"]: m["tier"] for m in listed["members"] if m["status"] == "active"
            },
            "bans": [b["target"] for b in listed["bans"]],
        }


async def until(check: Any, limit_s: float = 20) -> Any:
    with anyio.fail_after(limit_s):
        while True:
            found = await check()
            if found:
                return found
            await anyio.sleep(0.05)


async def test_three_plugins_form_a_hive_vouch_and_ban() -> None:
    net, ids = mesh(3, extra=1)
    outsider = ids[3]
    async with SimDriver(net), anyio.create_task_group() as tg:
        nodes = [await PluginNode(net, ids[i], tg).start() for i in range(3)]
        try:
            a, b, c = nodes
            genesis = await a.call("hive-genesis")
            assert genesis["hive_id"].startswith("hive_")

            ticket = await a.call("hive-invite", node_id=ids[1], valid_hours=2, requires="anchor")
            assert ticket["requires"] == ["anchor"]
            assert (await b.call("hive-join", ticket=ticket["ticket"]))["state"] == "hello_sent"

            async def b_joined() -> bool:
                return (await b.fleet())["tier"] == "neophyte"

            await until(b_joined)
            # the same ticket again, from the node it names, after it was used
            with pytest.raises(PluginError, match="already in a hive"):
                await b.call("hive-join", ticket=ticket["ticket"])
            vouched = await a.call("hive-vouch", node_id=ids[1])
            assert vouched["tier"] == "member"

            async def b_promoted() -> bool:
                return (await b.fleet())["tier"] == "member"

            await until(b_promoted)

            ticket_c = await b.call("hive-invite", node_id=ids[2])  # b is a full member now
            await c.call("hive-join", ticket=ticket_c["ticket"])
            await a.stop(kill=True)  # SIGKILL while c's admission is being told to a
            await a.start()

            async def c_joined() -> bool:
                return (await c.fleet())["tier"] == "neophyte"

            await until(c_joined)

            # b's lightningd restarts while a ban is proposed
            await b.stop()
            proposal = await a.call("hive-ban", node_id=outsider, reason="dust attack")
            assert (proposal["yes"], proposal["quorum"], proposal["banned"]) == (1, 2, False)
            await b.start()

            async def b_sees_proposal() -> bool:
                return bool((await b.call("hive-members"))["ban_proposals"])

            await until(b_sees_proposal)
            assert (await b.call("hive-ban", node_id=outsider))["banned"] is True

            async def agreed() -> dict[str, Any] | None:
                views = [await n.view() for n in nodes]
                return views[0] if all(v == views[0] for v in views) and views[0]["bans"] else None

            view = await until(agreed)
            assert view == {
                "members": {ids[0]: "member", ids[1]: "member", ids[2]: "neophyte"},
                "bans": [outsider],
            }
            for n in nodes:
                fleet = await n.fleet()
                assert fleet["hive_id"] == genesis["hive_id"]
                # only dropped duplicates and "not yet" answers (retried later): a kill and a
                # restart let a vote or a join overtake what it depends on
                not_yet = {"REPLAYED", "NOT_MEMBER", "NOT_FOUND", "RESTRICTED"}
                assert set(fleet["refused"]) <= not_yet, fleet["refused"]
                assert "failed" not in fleet["outbox"], fleet["outbox"]
        finally:
            for n in nodes:
                n._stop.set()


async def test_join_connects_through_the_plugins_own_peer_connected_hook() -> None:
    """`hive-join` makes lightningd `connect`, which (as lightningd does) answers only after this
    node's `peer_connected` hook chain — a hook of this very plugin — has answered.  A plugin
    whose method held pyln's stdin thread would never see that hook: a stall until `connect`
    gives up.  Both finish promptly, and the plugin answers other calls meanwhile."""
    net, ids = mesh(2, extra=0)
    net.disconnect(ids[0], ids[1])
    async with SimDriver(net), anyio.create_task_group() as tg:
        a, b = [await PluginNode(net, ids[i], tg).start() for i in range(2)]
        try:
            await a.call("hive-genesis")
            ticket = await a.call("hive-invite", node_id=ids[1])
            hooked = net.hooks_answered[(ids[1], ids[0])]
            with anyio.fail_after(10):
                async with anyio.create_task_group() as calls:
                    joined: dict[str, Any] = {}

                    async def join() -> None:
                        joined.update(await b.call("hive-join", ticket=ticket["ticket"]))

                    calls.start_soon(join)
                    status = await b.call("hive-status")  # answered while the join runs
                    assert status["node"]["id"] == ids[1]
            assert joined["state"] == "hello_sent"
            assert net.connected(ids[1], ids[0])
            assert net.hooks_answered[(ids[1], ids[0])] == hooked + 1

            async def b_joined() -> bool:
                return (await b.fleet())["tier"] == "neophyte"

            await until(b_joined)
        finally:
            for n in (a, b):
                n._stop.set()


async def test_an_older_separate_fleet_store_is_folded_into_the_one_store() -> None:
    """Until 2026-12 the plugin kept its fleet rows in hive/fleet.sqlite beside agent.sqlite.
    Started over such a lightning-dir, it folds them into agent.sqlite once (the old file is
    kept as fleet.sqlite.absorbed) and carries on in the same hive."""
    net, ids = mesh(1, extra=0)
    async with SimDriver(net), anyio.create_task_group() as tg:
        node = PluginNode(net, ids[0], tg)
        home = node.dir / "hive"
        home.mkdir(mode=0o700)
        legacy = Store(home / "fleet.sqlite")
        with legacy.transaction(1_700_000_000) as tx:
            fleet_rows.set_hive(tx, fleet_rows.Hive("hive_00112233aabbccdd", ids[0], 1, 1))
            fleet_rows.add_member(tx, ids[0], "ab" * 32, "zbase", "member", 1, promoted_at=1)
            tx.set_kv("fleet_binding", {"key": "ab" * 32, "zbase": "zbase"})
        legacy.close()
        await node.start()
        try:
            fleet = await node.fleet()
            assert (fleet["hive_id"], fleet["tier"]) == ("hive_00112233aabbccdd", "member")
            assert not (home / "fleet.sqlite").exists()
            assert (home / "fleet.sqlite.absorbed").exists()
            one = Store(home / "agent.sqlite")
            assert fleet_rows.hive(one) is not None and one.kv("fleet_binding")["zbase"]
            one.close()
        finally:
            await node.stop()


# (member fees left alone: the fees this test watches are its own; the bridge has its tests)
FAST_GOSSIP = '{"gossip_gap_s": 1, "handshake_retry_s": 2, "member_fee_zero": 0}'  # TEST_ENV


async def test_a_fee_change_reaches_the_other_plugins_through_state_gossip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Genesis and two joins over three plugin processes, then an operator's `setchannel` on
    one node (through the simulator's RPC socket, as `lightning-cli setchannel`): the new fee
    reaches the other two members, seen in their `hive-topology` over the plugin protocol.
    The plugins run with a 1 s gossip gap (HIVE_TEST_FLEET, tests only), so this takes
    seconds instead of the 10–15 s a real node's loop would wait."""
    monkeypatch.setenv(TEST_ENV, FAST_GOSSIP)
    net, ids = mesh(3, extra=0)
    async with SimDriver(net), anyio.create_task_group() as tg:
        nodes = [await PluginNode(net, ids[i], tg).start() for i in range(3)]
        try:
            a, b, c = nodes
            hive = (await a.call("hive-genesis"))["hive_id"]
            for joiner, node_id in ((b, ids[1]), (c, ids[2])):
                ticket = await a.call("hive-invite", node_id=node_id)
                await joiner.call("hive-join", ticket=ticket["ticket"])

            async def everyone_holds_every_record() -> bool:
                for n in nodes:
                    topo = await n.call("hive-topology")
                    versions = [m["version"] for m in topo["members"]]
                    if len(versions) != 3 or None in versions:
                        return False
                return True

            await until(everyone_holds_every_record)
            scid = next(ch.scid for ch in net.channels.values() if {ch.a, ch.b} == {ids[0], ids[2]})
            started = time.monotonic()
            await CLNBackend(str(c.dir / "lightning-rpc")).set_fees(scid, ppm=4321)

            async def fee_seen_by_a_and_b() -> list[dict[str, Any]] | None:
                views = [await n.call("hive-topology") for n in (a, b)]
                for topo in views:
                    owner = next(m for m in topo["members"] if m["owner"] == ids[2])
                    if [ch["fee_ppm"] for ch in owner["channels"] if ch["scid"] == scid] != [4321]:
                        return None
                return views

            views = await until(fee_seen_by_a_and_b)
            assert time.monotonic() - started < 10
            for topo in views:
                assert topo["hive_id"] == hive
                assert topo["totals"]["members"] == topo["totals"]["active"] == 3
                # three channels between members, each seen from both of its sides
                links = {link["scid"]: link for link in topo["member_channels"]}
                assert len(links) == 3 and all(len(x["sides"]) == 2 for x in links.values())
                assert links[scid]["nodes"] == sorted((ids[0], ids[2]))
                assert links[scid]["sides"][ids[2]]["fee_ppm"] == 4321
                assert links[scid]["sides"][ids[0]]["fee_ppm"] == 100  # a's side unchanged
            status = await b.fleet()
            assert status["gossip"]["states"] == 3  # hive-status passes the gossip block on
            assert set(status["refused"]) <= {"REPLAYED"}, status["refused"]
        finally:
            for n in nodes:
                n._stop.set()
