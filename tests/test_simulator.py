"""The simulator's invariants (property tests), routing, forwards and custom-message delivery."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import PeerNotConnected
from agent.node.models import CustomMsg, Forward, ForwardStatus, PeerConnected, PeerDisconnected
from agent.node.sim import Network
from events.errors import HiveError
from tests.node_scenario import ring

operations = st.lists(
    st.tuples(
        st.sampled_from(["pay", "rebalance", "open", "close", "fees", "withdraw"]),
        st.integers(0, 4),
        st.integers(0, 4),
        st.integers(1, 3_000_000_000),
    ),
    max_size=30,
)


@settings(max_examples=150)
@given(ops=operations)
def test_no_msat_is_created_or_destroyed_and_reserves_hold(ops) -> None:
    net, ids = ring()
    total = net.total_msat()
    for op, i, j, amount in ops:
        before = {(s, n): b for s, c in net.channels.items() for n, b in c.balance.items()}
        with contextlib.suppress(HiveError):  # refused operations must leave no trace either
            run(net, ids, op, i, j, amount)
        assert net.total_msat() == total
        for scid, chan in net.channels.items():
            for node, balance in chan.balance.items():
                assert balance >= 0
                if chan.open and balance < before.get((scid, node), 0):
                    assert balance >= chan.reserve_msat, "a payment took a side below its reserve"


def run(net: Network, ids: list[str], op: str, i: int, j: int, amount: int) -> None:
    a, b = ids[i], ids[j]
    mine = sorted(net.nodes[a].channels)
    if op == "pay" and a != b:
        net.pay(a, net.invoice(b, amount, "p").bolt11)
    elif op == "rebalance" and len(mine) >= 2:
        net.rebalance(a, mine[0], mine[-1], amount, 10_000)
    elif op == "open" and a != b:
        net.open_channel(a, b, amount // 1000 + 1)
    elif op == "close" and mine:
        net.close_channel(mine[0], a)
    elif op == "fees" and mine:
        net.set_policy(a, mine[0], ppm=amount % 5000, base_msat=amount % 2000)
    elif op == "withdraw":
        net.withdraw(a, amount // 1000 + 1)


def test_fees_go_to_forwarders_and_forward_events_are_emitted() -> None:
    net, ids = ring()
    seen: dict[str, list] = {n: [] for n in ids}
    for n in ids:
        net.listeners[n].append(seen[n].append)
    before = {n: sum(net.channels[s].balance[n] for s in net.nodes[n].channels) for n in ids}
    paid = net.pay(ids[0], net.invoice(ids[3], 10_000_000, "x").bolt11)
    net.pump()
    assert paid.hops == 2  # 0 -> 4 -> 3 is cheaper than 0 -> 1 -> 2 -> 3
    forwards = [e for e in seen[ids[4]] if isinstance(e, Forward)]
    assert len(forwards) == 1
    fwd = forwards[0]
    assert fwd.status == ForwardStatus.SETTLED
    assert fwd.fee_msat == paid.fee_msat == 1000 + 10_000_000 * 100 // 1_000_000
    after = {n: sum(net.channels[s].balance[n] for s in net.nodes[n].channels) for n in ids}
    assert after[ids[4]] - before[ids[4]] == paid.fee_msat
    assert before[ids[0]] - after[ids[0]] == 10_000_000 + paid.fee_msat


def test_htlc_failure_reports_local_failed_and_routes_around() -> None:
    net, ids = ring()
    chan_43 = next(
        s for s in net.nodes[ids[4]].channels if ids[3] in (net.channels[s].a, net.channels[s].b)
    )
    net.set_policy(ids[4], chan_43, htlc_max_msat=1_000)  # node 4 refuses to forward this much
    seen: list = []
    net.listeners[ids[4]].append(seen.append)
    paid = net.pay(ids[0], net.invoice(ids[3], 10_000_000, "x").bolt11)
    net.pump()
    assert paid.hops == 3  # retried the long way round
    failed = [e for e in seen if isinstance(e, Forward)]
    assert [f.status for f in failed] == [ForwardStatus.LOCAL_FAILED]
    assert failed[0].failcode == 0x1007


def test_custommsg_only_between_connected_peers_with_latency() -> None:
    now = [0.0]
    net = Network(seed=3, clock=lambda: now[0], latency_s=(0.01, 0.02))
    a, b, c = (net.add_node(x) for x in "abc")
    got: list = []
    net.listeners[b].append(got.append)
    with pytest.raises(PeerNotConnected):
        net.send_custommsg(a, b, b"\x80\x01HIVE{}")
    net.connect(a, b)
    net.pump()
    assert [type(e) for e in got] == [PeerConnected]
    net.send_custommsg(a, b, b"\x80\x01HIVE{}")
    assert net.pump() == 0  # still in flight
    now[0] = 0.05
    assert net.pump() == 1
    assert got[-1] == CustomMsg(peer_id=a, payload=b"\x80\x01HIVE{}")
    with pytest.raises(PeerNotConnected):
        net.send_custommsg(a, c, b"x")


def test_partitions_cut_links_and_drop_messages_in_flight() -> None:
    now = [0.0]
    net = Network(seed=4, clock=lambda: now[0], latency_s=(0.01, 0.01))
    a, b = net.add_node("a"), net.add_node("b")
    net.connect(a, b)
    got: list = []
    net.listeners[b].append(got.append)
    net.send_custommsg(a, b, b"in flight")
    net.partition({a}, {b})
    now[0] = 1.0
    net.pump()
    assert not any(isinstance(e, CustomMsg) for e in got)
    assert isinstance(got[-1], PeerDisconnected)
    with pytest.raises(PeerNotConnected):
        net.send_custommsg(a, b, b"x")
    net.heal()
    net.send_custommsg(a, b, b"after healing")
    now[0] = 2.0
    net.pump()
    assert got[-1] == CustomMsg(peer_id=a, payload=b"after healing")


def test_loss_and_reordering_are_deterministic_from_the_seed() -> None:
    def delivered(seed: int) -> list[bytes]:
        now = [0.0]
        net = Network(seed=seed, clock=lambda: now[0], loss=0.2, reorder=0.3)
        a, b = net.add_node("a"), net.add_node("b")
        net.connect(a, b)
        out: list[bytes] = []
        net.listeners[b].append(
            lambda e: out.append(e.payload) if isinstance(e, CustomMsg) else None
        )
        for i in range(200):
            net.send_custommsg(a, b, str(i).encode())
        now[0] = 10.0
        net.pump()
        return out

    first = delivered(11)
    assert first == delivered(11)
    assert 100 < len(first) < 200  # some were lost
    assert first != sorted(first, key=int)  # some arrived out of order
    assert first != delivered(12)
