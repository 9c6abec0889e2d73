"""The two NodeBackend implementations give the same results for the same scenario: the
simulator called directly, and CLNBackend (pyln-client LightningRpc) through the simulator's
CLN RPC socket."""

from __future__ import annotations

import time

import anyio
import pytest

from agent.errors import NodeUnavailable, PeerNotConnected
from agent.node.backend import resize_channel
from agent.node.cln import CircuitBreaker, CLNBackend
from agent.node.sim_api import SimLightningd
from agent.node.sim_rpc import SimRpcServer, short_socket_dir
from agent.node.simnode import SimBackend
from events.errors import HiveError, InsufficientBalance, NotFound, PaymentFailed
from tests.node_scenario import ring, scenario

pytestmark = pytest.mark.anyio


async def test_same_scenario_direct_and_through_the_rpc_socket() -> None:
    net_a, ids_a = ring()
    direct = await scenario(
        SimBackend(net_a, ids_a[0]), net_a.invoice(ids_a[2], 25_000_000, "x").bolt11
    )

    net_b, ids_b = ring()
    assert ids_a == ids_b  # deterministic from the seed
    path = short_socket_dir() / "lightning-rpc"
    async with SimRpcServer(SimLightningd(net_b, ids_b[0]), path) as server:
        cln = CLNBackend(str(path), timeout_s=10)
        via_rpc = await scenario(cln, net_b.invoice(ids_b[2], 25_000_000, "x").bolt11)
        assert server.calls > 10
    assert via_rpc == direct
    assert direct["verified"] is True
    assert direct["rebalance_fee_msat"] > 0


async def test_errors_map_to_the_same_typed_errors() -> None:
    net, ids = ring()
    stranger = net.add_node("stranger", 0)
    path = short_socket_dir() / "lightning-rpc"
    async with SimRpcServer(SimLightningd(net, ids[0]), path):
        for i, node in enumerate((SimBackend(net, ids[0]), CLNBackend(str(path), timeout_s=10))):
            with pytest.raises(NotFound):
                await node.set_fees("1x1x1", ppm=5)
            with pytest.raises(InsufficientBalance):
                await node.open_channel(ids[3], 10**12)
            with pytest.raises(PaymentFailed):
                await node.pay(net.invoice(ids[3], 10**13, f"too big {i}").bolt11)
            with pytest.raises(PeerNotConnected):
                await node.sendcustommsg(stranger, b"\x80\x01HIVE{}")


async def test_circuit_breaker_opens_and_recovers() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=3, reset_s=30, clock=lambda: now[0])
    node = CLNBackend(str(short_socket_dir() / "nobody-listens"), timeout_s=2, breaker=breaker)
    for _ in range(3):
        with pytest.raises(NodeUnavailable, match="cannot reach"):
            await node.info()
    started = time.monotonic()
    with pytest.raises(NodeUnavailable, match="retrying in 30 s"):
        await node.info()  # fails fast: no connection attempted
    assert time.monotonic() - started < 0.05
    now[0] = 31.0
    assert breaker.state == "half_open"
    with pytest.raises(NodeUnavailable, match="cannot reach"):
        await node.info()
    assert breaker.state == "open"


async def test_timeout_when_lightningd_hangs() -> None:
    path = short_socket_dir() / "lightning-rpc"
    listener = await anyio.create_unix_listener(path)  # accepts, never answers
    async with listener, anyio.create_task_group() as tg:

        async def swallow(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                await anyio.sleep(5)

        tg.start_soon(listener.serve, swallow)
        node = CLNBackend(str(path), timeout_s=0.5)
        with pytest.raises(NodeUnavailable, match="no answer within"):
            await node.info()
        tg.cancel_scope.cancel()


async def test_splice_less_resize() -> None:
    net, ids = ring()
    node = SimBackend(net, ids[0])
    old = (await node.channels())[0]
    total = net.total_msat()
    new = await resize_channel(node, old.short_channel_id, 3_000_000)
    assert new.peer_id == old.peer_id
    assert new.capacity_sat == 3_000_000
    assert old.short_channel_id not in [c.short_channel_id for c in await node.channels()]
    assert net.total_msat() == total


def test_socket_paths_over_107_bytes_are_refused(tmp_path) -> None:
    long_path = tmp_path / ("x" * 120) / "lightning-rpc"
    net, ids = ring()
    with pytest.raises(ValueError, match="107"):
        SimRpcServer(SimLightningd(net, ids[0]), long_path)


async def test_a_failed_connect_is_an_error_reply_and_the_node_keeps_answering() -> None:
    """`connect` is answered asynchronously (after the peer_connected hooks); its failures —
    an unknown node, this node itself, a peer behind a partition — come back as RPC errors,
    and the simulated lightningd keeps serving."""
    net, ids = ring()
    net.partition({ids[0]}, set(ids[1:]))
    path = short_socket_dir() / "lightning-rpc"
    async with SimRpcServer(SimLightningd(net, ids[0]), path):
        cln = CLNBackend(str(path), timeout_s=10)
        for target in ("02" + "ab" * 32, ids[0], ids[2]):
            with pytest.raises(HiveError) as refused:
                await cln.connect(target)
            assert refused.value.code != "INTERNAL" and refused.value.message, refused.value
        assert (await cln.info()).id == ids[0]
        net.heal()
        await cln.connect(ids[2])
        assert net.connected(ids[0], ids[2])
