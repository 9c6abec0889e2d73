"""The bridge to cl-revenue-ops and CLBOSS (agent/fleet/bridge.py), driven through the
simulator's CLN RPC socket with pyln-client (CLNBackend), the plugins emulated per node by
agent/node/sim_plugins.py: effects are read from what the simulated plugins and channels hold,
never from recorded mock calls.  Faults (errors, hangs) are the plugins', not patches."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.breaker import BreakerState, CircuitBreaker
from agent.clock import ManualClock
from agent.errors import NodeRefused, PluginUnavailable
from agent.fleet.bridge import (
    Bridge,
    BridgeConfig,
    Mode,
    parse_version,
    plugin_names,
    revenue_ops_usable,
)
from agent.node.cln import CLNBackend
from agent.node.sim import Network
from agent.node.sim_api import SimLightningd
from agent.node.sim_plugins import CLBOSS, REVENUE_OPS, Fault, SimPlugins, plugins_on
from agent.node.sim_rpc import SimRpcServer, short_socket_dir
from agent.node.simnode import SimBackend
from agent.store import Store
from tests.node_scenario import ring

pytestmark = pytest.mark.anyio
TIMEOUT = 0.3  # the bridge's per-call timeout in these tests (5 s by default)


@dataclass
class World:
    net: Network
    ids: list[str]
    host: SimPlugins  # the plugins of ids[0], the node the bridge runs on
    node: CLNBackend  # pyln-client through the simulator's RPC socket
    clock: ManualClock
    db: Path

    def bridge(self) -> Bridge:
        """A bridge as after a (re)start: a fresh process's objects over the same store."""
        return Bridge(self.node, Store(self.db), self.clock, BridgeConfig(timeout_s=TIMEOUT))

    def fees(self, peer: str) -> tuple[int, int]:
        scid = next(s for s in self.net.nodes[self.ids[0]].channels if self.peer_of(s) == peer)
        pol = self.net.channels[scid].policy[self.ids[0]]
        return pol.base_msat, pol.ppm

    def peer_of(self, scid: str) -> str:
        return self.net.channels[scid].other(self.ids[0])

    def calls(self, method: str) -> int:
        return sum(1 for m, _ in self.host.calls if m == method)


@asynccontextmanager
async def world(tmp_path: Path, *plugins: str) -> AsyncIterator[World]:
    net, ids = ring()
    clock = ManualClock()
    host = plugins_on(net, ids[0])
    host.loaded = set(plugins)
    host.clock = clock.now
    path = short_socket_dir() / "lightning-rpc"
    async with SimRpcServer(SimLightningd(net, ids[0]), path):
        yield World(net, ids, host, CLNBackend(str(path), timeout_s=10), clock, tmp_path / "a.db")


# --- with cl-revenue-ops -------------------------------------------------------------------


async def test_members_get_the_hive_strategy_and_others_stay_dynamic(tmp_path: Path) -> None:
    async with world(tmp_path, REVENUE_OPS) as w:
        bridge = w.bridge()
        done = await bridge.reconcile({w.ids[1], w.ids[2]})
        assert done.mode == Mode.REVENUE_OPS and not done.failed
        for member in w.ids[1:3]:
            answer = await w.node.plugin_call(
                "revenue-policy", {"action": "get", "peer_id": member}
            )
            assert answer["policy"]["strategy"] == "hive"
            assert answer["policy"]["rebalance_mode"] == "enabled"
        assert w.host.policy(w.ids[4])["strategy"] == "dynamic"  # a channel peer, not a member
        assert w.fees(w.ids[1]) == (1000, 100)  # revenue-ops sets the fees, not the agent

        w.clock.advance(61)
        again = await bridge.reconcile({w.ids[1]})  # ids[2] was banned
        assert again.changed == [f"dynamic {w.ids[2]}"]
        assert w.host.policies[w.ids[2]]["strategy"] == "dynamic"  # set, not left as it was
        assert w.host.policy(w.ids[1])["strategy"] == "hive"

        w.clock.advance(61)
        before = w.calls("revenue-policy")
        assert (await bridge.reconcile({w.ids[1]})).changed == []  # idempotent
        assert w.calls("revenue-policy") == before
        assert bridge.status()["hive_policies"] == [w.ids[1]]


@pytest.mark.parametrize(
    ("version", "status"),
    [("1.3.9", "running"), ("0.9", "running"), ("unknown", "running"), ("2.0.0", "stopped")],
)
async def test_an_old_or_stopped_revenue_ops_counts_as_absent(
    tmp_path: Path, version: str, status: str
) -> None:
    async with world(tmp_path, REVENUE_OPS) as w:
        w.host.revenue_version, w.host.revenue_status = version, status
        done = await w.bridge().reconcile({w.ids[1]})
        assert done.mode == Mode.OWN_FEES
        assert w.fees(w.ids[1]) == (0, 0)
        assert w.calls("revenue-status") == 1 and w.calls("revenue-policy") == 0


async def test_version_1_4_0_is_enough(tmp_path: Path) -> None:
    async with world(tmp_path, REVENUE_OPS) as w:
        w.host.revenue_version = "1.4.0"
        assert (await w.bridge().reconcile({w.ids[1]})).mode == Mode.REVENUE_OPS
        assert w.host.policy(w.ids[1])["strategy"] == "hive"


# --- without it: the agent sets the fees ---------------------------------------------------


async def test_member_channels_go_to_zero_and_come_back_across_a_restart(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        member_scid = next(s for s in w.net.nodes[w.ids[0]].channels if w.peer_of(s) == w.ids[1])
        await w.node.set_fees(member_scid, base_msat=1500, ppm=250)
        done = await w.bridge().reconcile({w.ids[1]})
        assert done.mode == Mode.OWN_FEES and done.changed == [f"zero {member_scid}"]
        assert w.fees(w.ids[1]) == (0, 0)
        assert w.fees(w.ids[4]) == (1000, 100)  # not a member: untouched

        restarted = w.bridge()  # a new process: the saved policy comes from the store
        assert (await restarted.reconcile({w.ids[1]})).changed == []  # nothing set twice
        assert restarted.status()["zero_fee_channels"] == [member_scid]

        w.clock.advance(3600)
        left = await w.bridge().reconcile(set())  # the member left (or was banned)
        assert left.changed == [f"restore {member_scid}"]
        assert w.fees(w.ids[1]) == (1500, 250)
        assert w.bridge().status()["zero_fee_channels"] == []


async def test_a_fee_changed_by_the_operator_meanwhile_is_left_alone(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        bridge = w.bridge()
        await bridge.reconcile({w.ids[1], w.ids[4]})
        assert w.fees(w.ids[1]) == w.fees(w.ids[4]) == (0, 0)
        scid = next(s for s in w.net.nodes[w.ids[0]].channels if w.peer_of(s) == w.ids[4])
        await w.node.set_fees(scid, base_msat=7, ppm=77)  # the operator's own choice
        # while still a member: zeroed once, the operator's later fee is not fought
        assert (await bridge.reconcile({w.ids[1], w.ids[4]})).changed == []
        assert w.fees(w.ids[4]) == (7, 77)
        done = await bridge.reconcile(set())
        assert w.fees(w.ids[4]) == (7, 77) and w.fees(w.ids[1]) == (1000, 100)
        assert len(done.changed) == 1


async def test_fees_zeroed_before_revenue_ops_arrived_are_given_back(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        bridge = w.bridge()
        await bridge.reconcile({w.ids[1]})
        assert w.fees(w.ids[1]) == (0, 0)
        w.host.loaded.add(REVENUE_OPS)
        done = await bridge.reconcile({w.ids[1]})
        assert done.mode == Mode.REVENUE_OPS
        assert w.fees(w.ids[1]) == (1000, 100)  # restored: revenue-ops's hive strategy rules
        assert w.host.policy(w.ids[1])["strategy"] == "hive"


# --- the circuit breaker -------------------------------------------------------------------


async def test_failing_revenue_ops_opens_the_breaker_then_recovers(tmp_path: Path) -> None:
    async with world(tmp_path, REVENUE_OPS) as w:
        bridge = w.bridge()
        await bridge.reconcile(set())  # detected while healthy
        w.host.faults["revenue-policy"] = Fault.FAIL
        members = set(w.ids[1:4])
        done = await bridge.reconcile(members)
        assert list(done.failed.values()) == ["NODE_REFUSED"] * 3
        assert bridge.status()["breakers"][REVENUE_OPS]["state"] == "open"
        assert "plugin crashed" in bridge.status()["breakers"][REVENUE_OPS]["last_error"]

        calls, started = len(w.host.calls), time.monotonic()
        refused = await bridge.reconcile(members | {w.ids[4]})  # the last detection stands
        assert refused.mode == Mode.REVENUE_OPS
        assert refused.failed == {w.ids[4]: "PLUGIN_UNAVAILABLE"}
        assert refused.deferred == sorted(members)  # their call this minute was made
        assert len(w.host.calls) == calls  # nothing reached the plugin
        assert time.monotonic() - started < 0.5
        with pytest.raises(PluginUnavailable, match="retrying in 60 s"):
            await bridge.breakers[REVENUE_OPS].run(
                lambda: w.node.plugin_call("revenue-status", {}), timeout_s=1, what="probe"
            )

        w.clock.advance(61)  # half-open: probes go through; one failure opens it again
        probed = await bridge.reconcile(members)
        assert sorted(probed.failed.values()) == ["NODE_REFUSED"] + ["PLUGIN_UNAVAILABLE"] * 2
        assert bridge.breakers[REVENUE_OPS].state == BreakerState.OPEN

        w.host.faults.clear()  # revenue-ops comes back
        w.clock.advance(61)
        back = await bridge.reconcile(members)
        assert not back.failed and len(back.changed) == 3
        assert bridge.breakers[REVENUE_OPS].state == BreakerState.CLOSED
        assert all(w.host.policy(m)["strategy"] == "hive" for m in members)


async def test_a_hanging_revenue_ops_times_out_and_never_blocks(tmp_path: Path) -> None:
    async with world(tmp_path, REVENUE_OPS) as w:
        bridge = w.bridge()
        await bridge.reconcile(set())
        w.host.faults["revenue-policy"] = Fault.HANG
        members = set(w.ids[1:4])
        started = time.monotonic()
        done = await bridge.reconcile(members)
        elapsed = time.monotonic() - started
        assert list(done.failed.values()) == ["PLUGIN_UNAVAILABLE"] * 3
        assert 3 * TIMEOUT <= elapsed < 3 * TIMEOUT + 1.0  # each call cut at the timeout
        assert "no answer within 0.3 s" in bridge.status()["breakers"][REVENUE_OPS]["last_error"]
        assert bridge.breakers[REVENUE_OPS].state == BreakerState.OPEN

        started = time.monotonic()
        await bridge.reconcile(members)  # open: refused at once
        assert time.monotonic() - started < TIMEOUT

        w.host.faults["revenue-policy"] = Fault.SLOW  # answers, within the timeout
        w.host.slow_s = TIMEOUT / 3
        w.clock.advance(61)
        back = await bridge.reconcile(members)
        assert not back.failed and bridge.breakers[REVENUE_OPS].state == BreakerState.CLOSED


async def test_the_once_a_minute_limit_per_peer_survives_a_restart(tmp_path: Path) -> None:
    async with world(tmp_path, REVENUE_OPS) as w:
        await w.bridge().reconcile({w.ids[1]})
        assert w.host.policy(w.ids[1])["strategy"] == "hive"
        w.clock.advance(20)
        restarted = w.bridge()
        done = await restarted.reconcile(set())  # ids[1] left 20 s after its last call
        assert done.deferred == [w.ids[1]] and w.calls("revenue-policy") == 1
        w.clock.advance(20)
        assert (await w.bridge().reconcile(set())).deferred == [w.ids[1]]
        w.clock.advance(21)
        done = await w.bridge().reconcile(set())
        assert done.changed == [f"dynamic {w.ids[1]}"]
        assert w.host.policy(w.ids[1])["strategy"] == "dynamic"


# --- CLBOSS ----------------------------------------------------------------------------------


async def test_clboss_is_told_to_ignore_and_unignore(tmp_path: Path) -> None:
    async with world(tmp_path, CLBOSS) as w:
        bridge = w.bridge()
        assert (await bridge.reconcile(set())).mode == Mode.OWN_FEES
        assert await bridge.ignore(w.ids[2]) is True
        assert w.host.ignored == {w.ids[2]}
        assert await bridge.ignore(w.ids[2]) is True  # already so: not asked again
        assert w.calls("clboss-ignore") == 1
        assert await bridge.unignore(w.ids[2]) is False  # its call this minute is spent
        assert w.host.ignored == {w.ids[2]}
        w.clock.advance(60)
        assert (await w.bridge().reconcile(set())).changed == [f"clboss-unignore {w.ids[2]}"]
        assert w.host.ignored == set()
        assert w.bridge().status()["clboss_ignored"] == []


async def test_clboss_wishes_wait_until_clboss_is_loaded(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        bridge = w.bridge()
        await bridge.reconcile(set())
        assert await bridge.ignore(w.ids[3]) is False
        assert w.calls("clboss-ignore") == 0
        w.host.loaded.add(CLBOSS)
        await w.bridge().reconcile(set())
        assert w.host.ignored == {w.ids[3]}
        assert w.bridge().status()["clboss_ignored"] == [w.ids[3]]


async def test_a_clboss_without_clboss_ignore_is_asked_once_a_day(tmp_path: Path) -> None:
    async with world(tmp_path, CLBOSS) as w:
        w.host.clboss_ignore = False  # released CLBOSS has clboss-unmanage, not clboss-ignore
        bridge = w.bridge()
        await bridge.reconcile(set())
        with pytest.raises(NodeRefused, match="Unknown command"):
            await bridge.ignore(w.ids[2])
        assert await bridge.ignore(w.ids[3]) is False  # not asked again today
        assert (await bridge.reconcile(set())).deferred == sorted(w.ids[2:4])
        assert bridge.breakers[CLBOSS].report()["failures"] == 1  # asked once, still closed
        assert bridge.breakers[CLBOSS].state == BreakerState.CLOSED
        w.host.clboss_ignore = True  # upgraded
        w.clock.advance(86_400)
        await bridge.reconcile(set())
        assert w.host.ignored == set(w.ids[2:4])


async def test_a_failing_clboss_raises_and_does_not_touch_revenue_ops(tmp_path: Path) -> None:
    async with world(tmp_path, REVENUE_OPS, CLBOSS) as w:
        bridge = w.bridge()
        await bridge.reconcile(set())
        w.host.faults["clboss-ignore"] = Fault.FAIL
        for i in range(1, 4):
            with pytest.raises(NodeRefused):
                await bridge.ignore(w.ids[i])
        with pytest.raises(PluginUnavailable):
            await bridge.ignore(w.ids[4])
        assert bridge.breakers[CLBOSS].state == BreakerState.OPEN
        assert bridge.breakers[REVENUE_OPS].state == BreakerState.CLOSED
        assert not (await bridge.reconcile({w.ids[1]})).failed.keys() - set(w.ids[1:5])
        assert w.host.policy(w.ids[1])["strategy"] == "hive"


# --- the simulated plugins answer alike, directly and through the socket ---------------------


async def test_plugin_call_direct_and_through_the_socket(tmp_path: Path) -> None:
    async with world(tmp_path, REVENUE_OPS) as w:
        direct = SimBackend(w.net, w.ids[0])
        for node in (direct, w.node):
            status = await node.plugin_call("revenue-status", {})
            assert status["status"] == "running" and revenue_ops_usable(status)
            assert len(status["channel_states"]) == 2
            listed = await node.plugin_call("plugin", {"subcommand": "list"})
            assert REVENUE_OPS in plugin_names(listed) and CLBOSS not in plugin_names(listed)
            with pytest.raises(NodeRefused, match="Unknown command"):
                await node.plugin_call("clboss-ignore", {"nodeid": w.ids[1]})


# --- pure parts ------------------------------------------------------------------------------

versions = st.tuples(*[st.integers(0, 999_999)] * 3)


@given(versions, st.sampled_from(["", "v"]), st.sampled_from(["", "-rc1", "+git"]))
def test_versions_parse_and_order_as_numbers(v: tuple[int, int, int], pre: str, suf: str) -> None:
    assert parse_version(f"{pre}{v[0]}.{v[1]}.{v[2]}{suf}") == v
    assert revenue_ops_usable({"status": "running", "version": ".".join(map(str, v))}) == (
        v >= (1, 4, 0)
    )


@given(st.text(max_size=30) | st.integers() | st.none())
def test_version_parsing_never_raises(text: object) -> None:
    parsed = parse_version(text)
    assert parsed is None or len(parsed) == 3


@given(st.lists(st.from_regex(r"[a-z_\-]{1,12}", fullmatch=True), max_size=5))
def test_plugin_names_are_file_names(names: list[str]) -> None:
    listing = {"plugins": [{"name": f"/opt/p/{n}.py", "active": True} for n in names]}
    listing["plugins"].append({"name": "/opt/p/off", "active": False})
    assert plugin_names(listing) == {n.replace("_", "-") for n in names}


def test_the_breaker_counts_failures_within_its_window() -> None:
    clock = ManualClock()
    b = CircuitBreaker(3, 60, clock.now, window_s=60, successes=3, error=PluginUnavailable)
    b.failure("a")
    b.failure("b")
    clock.advance(61)
    b.failure("c")  # the first two are too old
    assert b.state == BreakerState.CLOSED and b.report()["failures"] == 1
    b.success()  # a success clears the count
    assert b.failures == 0
    for _ in range(3):
        b.failure("d")
    assert b.report() == {"state": "open", "failures": 3, "last_error": "d"}
    clock.advance(60)
    for i in range(3):
        assert b.state == BreakerState.HALF_OPEN, i
        b.check()
        b.success()
    assert b.state == BreakerState.CLOSED


def test_the_defaults_are_the_designs() -> None:
    """3 failures within 60 s, 60 s open, 3 successes, 5 s a call, one call a peer a minute."""
    assert BridgeConfig() == BridgeConfig(
        timeout_s=5.0, failures=3, window_s=60, cooldown_s=60, successes=3, per_peer_s=60
    )
