"""The fleet topology planner (agent/fleet/planner.py): worked examples computed by hand, the
properties every plan keeps (the cap, the size limits, no channel to a member or to a node
the member already has a channel with, order independence), the text and JSON `hive-plan`
shows, and the network graph it reads from the simulator and through the CLN backend."""

from __future__ import annotations

import json
import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.fleet.planner import PlannerConfig, headroom_sat, median_ppm, plan
from agent.fleet.planner_view import as_json, render
from agent.node.cln import CLNBackend
from agent.node.models import GraphChannel
from agent.node.sim import Network
from agent.node.sim_api import SimLightningd
from agent.node.sim_graph import add_external_graph, add_random_external_graph, graph
from agent.node.sim_rpc import SimRpcServer, short_socket_dir
from agent.node.simnode import SimBackend
from events.fleet.gossip import ChannelEntry, StateRecord

M = 1_000_000


def member(i: int) -> str:
    return f"02{i:064x}"


def ext(i: int) -> str:
    return f"03{i:064x}"


A, B, C, D = (member(i) for i in (1, 2, 3, 4))
X, Y, Z, W = (ext(i) for i in (10, 11, 12, 13))


def chan(a: str, b: str, scid: str, cap: int, ppm_a: int = 1, ppm_b: int = 1) -> list[GraphChannel]:
    """Both directions of a public channel."""
    return [
        GraphChannel(source=s, destination=d, scid=scid, capacity_sat=cap, fee_base_msat=0,
                     fee_ppm=ppm, active=True)
        for s, d, ppm in ((a, b, ppm_a), (b, a, ppm_b))
    ]  # fmt: skip


def entry(peer: str, scid: str, cap: int, ppm: int, state: str = "normal") -> ChannelEntry:
    return ChannelEntry(
        peer=peer, scid=scid, capacity_sat=cap, balance=10, fee_base_msat=0, fee_ppm=ppm,
        htlc_min_msat=1, htlc_max_msat=10**9, cltv_delta=34, state=state,
    )  # fmt: skip


def record(owner: str, offered: int, channels: list[ChannelEntry], version: int = 1) -> StateRecord:
    return StateRecord(
        owner=owner, version=version, timestamp=1_700_000_000,
        capacity_sat=sum(c.capacity_sat for c in channels), outbound_sat=0, channels=channels,
        offered_sat=offered, features=[], uptime_s=0,
    )  # fmt: skip


def world() -> tuple[list[GraphChannel], list[str], list[StateRecord]]:
    """Externals X, Y, Z, W; members A, B, C.

    X–Y 40M, X–Z 30M, Y–Z 10M, X–W 10M; A–X 5M (A charges 100 ppm toward X), B–X 5M (300 ppm),
    C–Y 2M (50 ppm), A–B 3M (internal). A offers 20M, B 3M, C 8M.

      node  capacity N              degree  fleet F  share      connectivity (D=5, C=90M)       score
      X     40+30+10+5+5 = 90M      5       10M      1/9        (5/5 + 90/90)/2 = 1             1 × (1 − (1/9)/(1/5)) = 4/9 ≈ 0.4444
      Y     40+10+2 = 52M           3       2M       2/52       (3/5 + 52/90)/2 = 53/90         53/90 × (1 − 10/52) = 2226/4680 ≈ 0.4756
      Z     30+10 = 40M             2       0        0          (2/5 + 40/90)/2 = 19/45         19/45 ≈ 0.4222
      W     10M                     1       0        0          below min degree 2              0
    """
    g = [
        *chan(X, Y, "1x1x0", 40 * M), *chan(X, Z, "1x2x0", 30 * M), *chan(Y, Z, "1x3x0", 10 * M),
        *chan(X, W, "1x4x0", 10 * M), *chan(A, X, "2x1x0", 5 * M, 100), *chan(B, X, "2x2x0", 5 * M, 300),
        *chan(C, Y, "2x3x0", 2 * M, 50), *chan(A, B, "2x4x0", 3 * M),
    ]  # fmt: skip
    records = [
        record(A, 20 * M, [entry(X, "2x1x0", 5 * M, 100), entry(B, "2x4x0", 3 * M, 1)]),
        record(B, 3 * M, [entry(X, "2x2x0", 5 * M, 300), entry(A, "2x4x0", 3 * M, 1)]),
        record(C, 8 * M, [entry(Y, "2x3x0", 2 * M, 50)]),
    ]
    return g, [A, B, C], records


def test_survey_of_the_worked_example() -> None:
    g, members, records = world()
    p = plan(g, members, records)
    by = {v.node: v for v in p.nodes}
    assert [v.node for v in p.nodes] == [Y, X, Z, W]  # by score
    assert (by[X].capacity_sat, by[X].degree, by[X].fleet_capacity_sat) == (90 * M, 5, 10 * M)
    assert by[X].served_by == (A, B) and by[X].score == pytest.approx(4 / 9)
    assert by[Y].share == pytest.approx(2 / 52) and by[Y].score == pytest.approx(2226 / 4680)
    assert by[Z].score == pytest.approx(19 / 45) and by[W].score == 0
    assert p.inputs.fleet_channels == 3  # A–B is internal
    assert p.inputs.fleet_capacity_sat == 12 * M and p.inputs.offered_sat == 31 * M
    assert (p.inputs.graph_channels, p.inputs.graph_nodes, p.inputs.external_nodes) == (8, 7, 4)


def test_expansions_of_the_worked_example() -> None:
    """1. Y (best score): headroom ⌊(52M/5 − 2M)/(4/5)⌋ = 10.5M; C already serves it; A could
       open the default 5M, B only its 3M: A, 5M → share (2+5)/(52+5) = 7/57.
    2. X: headroom (90M/5 − 10M)/(4/5) = 10M; A and B serve it; C opens min(5M, 8M) = 5M.
    3. Z: headroom (40M/5)/(4/5) = 10M; A (15M left) 5M, B 3M, C (3M left) 3M: A."""
    g, members, records = world()
    p = plan(g, members, records)
    got = [
        (e.member, e.node, e.amount_sat, e.bound, e.headroom_sat, e.eligible) for e in p.expansions
    ]
    assert got == [
        (A, Y, 5 * M, "default", 10_500_000, 2),
        (C, X, 5 * M, "default", 10 * M, 1),
        (A, Z, 5 * M, "default", 10 * M, 3),
    ]
    first = p.expansions[0]
    assert first.share_after == pytest.approx(7 / 57) and first.offered_sat == 20 * M
    assert p.expansions[2].offered_sat == 15 * M and p.expansions[2].member_channels == 2
    assert "Y" not in first.reason and first.reason.startswith(Y[:12])
    assert "has no channel with it" in first.reason and "default channel size" in first.reason


def test_anti_overlap_and_the_members_opening() -> None:
    """X is served by A and B: C need not connect — but C is to open to X, so no entry.
    Y is served by C: A and B need not — A opens to it, so only B."""
    g, members, records = world()
    p = plan(g, members, records)
    assert [(o.node, o.served_by, o.ignore_by) for o in p.overlaps] == [(Y, (C,), (B,))]
    assert p.ignore_pairs() == [(B, Y)] and p.ignores_for(B) == [Y] and p.ignores_for(A) == []
    quiet = plan(g, members, records, PlannerConfig(max_expansions=0))
    assert quiet.ignore_pairs() == [(A, Y), (B, Y), (C, X)]
    assert "already served by" in quiet.overlaps[0].reason


def test_fee_hints_median() -> None:
    """X: A 100 ppm, B 300 ppm → median of an even count ⌊(100 + 300)/2⌋ = 200; A undercuts.
    With D at 500 and A's second channel at 40 ppm (a member's rate is its lowest):
    40, 300, 500 → 300; A undercuts."""
    g, members, records = world()
    [hint] = plan(g, members, records).fee_hints
    assert (hint.node, hint.ppm_by_member, hint.hint_ppm, hint.below) == (
        X,
        {A: 100, B: 300},
        200,
        (A,),
    )
    assert "raise to 200 ppm" in hint.reason
    g += [*chan(D, X, "3x1x0", 2 * M, 500), *chan(A, X, "3x2x0", 1 * M, 40)]
    [hint] = plan(g, [*members, D], records).fee_hints  # D has no record: its rate from the graph
    assert (hint.ppm_by_member, hint.hint_ppm, hint.below) == ({A: 40, B: 300, D: 500}, 300, (A,))
    assert median_ppm([7]) == 7 and median_ppm([1, 2, 4, 9]) == 3


@pytest.mark.parametrize(
    ("fleet", "capacity", "funds", "amount", "bound"),
    [
        (2 * M, 20 * M, 9 * M, 2_500_000, "cap"),  # (4M − 2M)/(4/5) = 2.5M → 4.5/22.5 = 1/5 exactly
        (1 * M, 10 * M, 9 * M, 1_250_000, "cap"),  # (2M − 1M)/(4/5) = 1.25M
        (0, 100 * M, 3 * M, 3 * M, "funds"),  # headroom 25M, default 5M, funds 3M
        (0, 100 * M, 90 * M, 5 * M, "default"),
        (1 * M, 8 * M, 9 * M, None, None),  # (1.6M − 1M)/(4/5) = 0.75M < min 1M: nothing
        (0, 100 * M, 999_999, None, None),  # funds below min: nothing
        (5 * M, 20 * M, 9 * M, None, None),  # share 25 % ≥ cap: not a candidate
    ],
)
def test_amounts_clamped_by_cap_funds_and_min(fleet, capacity, funds, amount, bound) -> None:
    """One external node N with two external peers (so it is well connected); member B serves
    it with `fleet` sat (if any); A, with `funds` offered, is the only one who may open."""
    rest = capacity - fleet
    g = [*chan(X, Y, "1x1x0", rest // 2), *chan(X, Z, "1x2x0", rest - rest // 2)]
    recs = [record(A, funds, [])]
    if fleet:
        g += chan(B, X, "2x1x0", fleet)
        recs.append(record(B, 0, [entry(X, "2x1x0", fleet, 1)]))
    p = plan(g, [A, B], recs, PlannerConfig(max_expansions=1))
    made = [(e.node, e.amount_sat, e.bound) for e in p.expansions if e.node == X]
    assert made == ([] if amount is None else [(X, amount, bound)])
    assert headroom_sat(2 * M, 20 * M, Fraction(1, 5)) == 2_500_000
    if amount is None and fleet < capacity // 5:
        assert any(X[:12] in n for n in p.notes)


def test_position_then_node_id_break_ties() -> None:
    """A and B can both open the default to X; A has two channels, B one: B.  With equal
    channels the lower node id (A) wins."""
    g = [*chan(X, Y, "1x1x0", 40 * M), *chan(X, Z, "1x2x0", 40 * M), *chan(Y, Z, "1x3x0", 40 * M)]
    v = ext(14)  # X, Y and Z score alike (degree 2, 80M, unserved): X has the lowest id
    g += [*chan(A, W, "2x1x0", 2 * M), *chan(A, v, "2x2x0", 2 * M), *chan(B, W, "2x3x0", 2 * M)]
    recs = [
        record(A, 50 * M, [entry(W, "2x1x0", 2 * M, 1), entry(v, "2x2x0", 2 * M, 1)]),
        record(B, 6 * M, [entry(W, "2x3x0", 2 * M, 1)]),
    ]
    first = plan(g, [A, B], recs, PlannerConfig(max_expansions=1)).expansions[0]
    assert (first.node, first.member, first.member_channels) == (X, B, 1)
    recs[1] = record(B, 6 * M, [entry(W, "2x3x0", 2 * M, 1), entry(v, "2x4x0", 2 * M, 1)])
    first = plan(g, [A, B], recs, PlannerConfig(max_expansions=1)).expansions[0]
    assert (first.node, first.member) == (X, A)


def test_records_feerate_and_pending_channels() -> None:
    g, members, records = world()
    stale = record(C, 99 * M, [], version=0 + 1)
    newer = record(
        C, 8 * M, [entry(Y, "2x3x0", 2 * M, 50), entry(Z, "9x9x0", 1 * M, 1, "pending")], 2
    )
    outsider = record(D, 99 * M, [])  # not a member: ignored
    p = plan(g, members, [stale, *records[:2], newer, outsider])
    by = {v.node: v for v in p.nodes}
    assert by[Z].fleet_capacity_sat == 1 * M and by[Z].capacity_sat == 41 * M  # the pending one
    assert p.inputs.with_record == (A, B, C) and p.inputs.offered_sat == 31 * M
    closing = record(
        C, 8 * M, [entry(Y, "2x3x0", 2 * M, 50), entry(Z, "9x9x0", 1 * M, 1, "closing")], 3
    )
    assert {v.node: v for v in plan(g, members, [*records[:2], closing]).nodes}[
        Z
    ].fleet_capacity_sat == 0
    held = plan(g, members, records, feerate_perkb=6000)
    assert held.expansions == () and "6,000 sat/kB" in held.notes[0]
    assert plan(g, members, records, feerate_perkb=5000).expansions
    no_record = plan(g, [*members, D], records)
    assert "without a state record" in no_record.notes[0]


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="min ≤ default ≤ max"):
        PlannerConfig(channel_min_sat=6 * M)
    with pytest.raises(ValueError):
        PlannerConfig(market_share_cap=1.0)
    assert PlannerConfig().cap == Fraction(1, 5)


def test_render_and_json() -> None:
    g, members, records = world()
    p = plan(g, members, records)
    text = render(p)
    for part in ("Fleet plan", "Expansions (3)", "why:", "Anti-overlap", "Fee hints (1)",
                 "Top external nodes (4 of 4)", "cap 20%", "31,000,000 sat offered"):  # fmt: skip
        assert part in text, part
    assert "Expansions (3)\n  1." in text and "… and 2 more" in render(p, limit=1)
    data = as_json(p, me=B)
    assert json.loads(json.dumps(data)) == data
    assert data["ignore"] == [Y] and "ignore" not in as_json(p)
    assert data["expansions"][0]["amount_sat"] == 5 * M
    assert data["inputs"]["config"]["market_share_cap"] == 0.2
    empty = render(plan([], [A], []))
    assert "Expansions: none" in empty and "Top external nodes: none" in empty


# --- properties -----------------------------------------------------------------------------


@st.composite
def worlds(draw: st.DrawFn):
    n_ext, n_mem = draw(st.integers(2, 7)), draw(st.integers(1, 4))
    exts, mems = [ext(i) for i in range(n_ext)], [member(i) for i in range(n_mem)]
    caps = st.integers(1, 60).map(lambda k: k * 500_000)
    g: list[GraphChannel] = []
    scid = iter(range(1, 10_000))
    for i, j in draw(
        st.lists(
            st.tuples(st.integers(0, n_ext - 1), st.integers(0, n_ext - 1)), min_size=3, max_size=16
        )
    ):
        if i != j:
            g += chan(exts[i], exts[j], f"1x{next(scid)}x0", draw(caps), draw(st.integers(0, 900)))
    chans: dict[str, list[ChannelEntry]] = {m: [] for m in mems}
    for m, e, public in draw(
        st.lists(st.tuples(st.sampled_from(mems), st.sampled_from(exts), st.booleans()), max_size=8)
    ):
        s, cap, ppm = f"2x{next(scid)}x0", draw(caps), draw(st.integers(0, 900))
        chans[m].append(entry(e, s, cap, ppm))
        if public:
            g += chan(m, e, s, cap, ppm)
    recs = [
        record(m, draw(st.integers(0, 60)) * 500_000, chans[m])
        for m in mems
        if draw(st.integers(0, 3))
    ]
    cap = draw(st.integers(5, 50)) / 100
    lo = draw(st.sampled_from([500_000, 1 * M, 2 * M]))
    default = lo + draw(st.integers(0, 8)) * 500_000
    config = PlannerConfig(market_share_cap=cap, channel_min_sat=lo, channel_default_sat=default,
                           channel_max_sat=default + draw(st.integers(0, 4)) * M,
                           max_expansions=draw(st.integers(0, 5)), min_degree=draw(st.integers(1, 2)))  # fmt: skip
    return g, mems, recs, config


def reference(g, mems, recs, node):
    """N and F for `node` by the definition: distinct channels (active graph ones and the
    members' own), the fleet's being the members' non-closing channels with it."""
    chans = {e.scid: (e.source, e.destination, e.capacity_sat) for e in g if e.active}
    mine = {
        c.scid: (r.owner, c.peer, c.capacity_sat)
        for r in recs
        for c in r.channels
        if c.state != "closing"
    }
    chans.update(mine)
    n = sum(cap for a, b, cap in chans.values() if node in (a, b))
    f = sum(
        cap for a, b, cap in chans.values() if node in (a, b) and ({a, b} - {node}) <= set(mems)
    )
    return n, f


@given(worlds())
def test_plans_keep_the_cap_the_sizes_and_the_members_apart(w) -> None:
    g, mems, recs, config = w
    p = plan(g, mems, recs, config)
    offered = {r.owner: r.offered_sat for r in recs}
    held = {(r.owner, c.peer) for r in recs for c in r.channels} | {
        (e.source, e.destination) for e in g
    }
    assert len(p.expansions) <= config.max_expansions
    assert len({e.node for e in p.expansions}) == len(p.expansions)
    for e in p.expansions:
        n, f = reference(g, mems, recs, e.node)
        assert (n, f) == (e.node_capacity_sat, e.fleet_capacity_sat)
        assert (f + e.amount_sat) <= config.cap * (n + e.amount_sat)  # exact: share after ≤ cap
        assert (
            config.channel_min_sat
            <= e.amount_sat
            <= min(config.channel_default_sat, config.channel_max_sat)
        )
        assert e.member in mems and e.node not in mems
        assert (e.member, e.node) not in held
        offered[e.member] -= e.amount_sat
        assert offered[e.member] >= 0
    for o in p.overlaps:
        assert not set(o.ignore_by) & set(o.served_by) and o.node not in mems
    for h in p.fee_hints:
        assert min(h.ppm_by_member.values()) <= h.hint_ppm <= max(h.ppm_by_member.values())


@given(st.integers(0, 10**10), st.integers(1, 10**10), st.integers(1, 99))
def test_headroom_is_the_largest_amount_within_the_cap(fleet, capacity, pct) -> None:
    cap = Fraction(pct, 100)
    room = headroom_sat(fleet, capacity, cap)
    if room >= 0:
        assert fleet + room <= cap * (capacity + room)
        assert fleet + room + 1 > cap * (capacity + room + 1)
    else:
        assert Fraction(fleet, capacity) > cap


@given(worlds(), st.randoms(use_true_random=False))
def test_plans_do_not_depend_on_input_order(w, rnd: random.Random) -> None:
    g, mems, recs, config = w
    before = as_json(plan(g, mems, recs, config))
    g2, mems2, recs2 = g[:], mems[:], recs[:]
    for seq in (g2, mems2, recs2):
        rnd.shuffle(seq)
    assert as_json(plan(g2, mems2, recs2, config)) == before
    assert as_json(plan(g, mems, recs, config)) == before  # and again: deterministic


# --- the graph from the simulator and through the CLN backend -------------------------------


def sim_world() -> tuple[Network, list[str], list[str]]:
    net = Network(seed=11, clock=lambda: 0.0)
    members = [net.add_node(f"member{i}", 40 * M) for i in range(2)]
    externals = add_random_external_graph(net, 12, degree=2, seed=5)
    net.open_channel(members[0], externals[0], 3 * M)
    return net, members, externals


async def entries_of(node: SimBackend) -> list[ChannelEntry]:
    return [
        entry(c.peer_id, c.short_channel_id, c.capacity_sat, c.policy.ppm)
        for c in await node.channels()
    ]


@pytest.mark.anyio
async def test_the_simulators_graph_and_the_cln_backend_agree() -> None:
    net, members, externals = sim_world()
    total = net.total_msat()
    g = await SimBackend(net, members[1]).graph()
    assert len(g) == 2 * len(net.channels) == 2 * (11 * 2 - 1 + 1)  # 12 nodes, degree 2, + 1
    assert g == sorted(g, key=lambda e: (e.scid, e.source))
    ends = {frozenset((e.source, e.destination)) for e in g}
    assert frozenset((members[0], externals[0])) in ends
    assert {e.source for e in g} == {*externals, members[0]}
    assert len({e.fee_ppm for e in g}) > 3  # the random graph's fee rates
    path = short_socket_dir() / "lightning-rpc"
    async with SimRpcServer(SimLightningd(net, members[1]), path):
        assert await CLNBackend(str(path), timeout_s=10).graph() == g
    api = SimLightningd(net, members[1])
    halves = api.dispatch("listchannels", {"source": members[0]})["channels"]
    assert [(h["source"], h["destination"]) for h in halves] == [(members[0], externals[0])]
    into = api.dispatch("listchannels", {"destination": externals[0]})["channels"]
    assert len(into) == sum(e.destination == externals[0] for e in g) >= 2
    net.close_channel(g[0].scid, g[0].source)
    assert len(graph(net)) == len(g) - 2
    assert net.total_msat() == total


@pytest.mark.anyio
async def test_explicit_external_graph_and_a_plan_carried_out() -> None:
    """Plan on the simulator's graph, open what it recommends, plan again: the fleet's share of
    each node it opened to stays within the cap, and it is not recommended twice."""
    net = Network(seed=12, clock=lambda: 0.0)
    a, b = net.add_node("a", 30 * M), net.add_node("b", 30 * M)
    hub, *rest = add_external_graph(
        net, [(0, 1, 20 * M), (0, 2, 20 * M), (1, 2, 10 * M), (2, 3, 5 * M)], ppm=[10, 20, 30, 40]
    )
    assert len(rest) == 3 and net.nodes[hub].onchain_sat == 0  # funded exactly for its opens
    net.open_channel(a, rest[0], 2 * M)
    nodes = {a: SimBackend(net, a), b: SimBackend(net, b)}

    async def records() -> list[StateRecord]:
        return [record(m, 20 * M, await entries_of(n)) for m, n in nodes.items()]

    first = plan(await nodes[a].graph(), [a, b], await records())
    # ext2: 3 peers, 35M → (3/3 + 35/40)/2 = 0.9375, above ext0 (2 peers, 40M: 0.8333) and
    # ext1 (3 peers, 32M, 2M of it a's: (1 + 0.8)/2 × (1 − (2/32)/(1/5)) = 0.61875)
    assert [v.node for v in first.nodes[:3]] == [rest[1], hub, rest[0]]
    assert first.expansions[0].node == rest[1]
    for e in first.expansions:
        await nodes[e.member].open_channel(e.node, e.amount_sat)
    again = plan(await nodes[a].graph(), [a, b], await records())
    by = {v.node: v for v in again.nodes}
    for e in first.expansions:
        assert by[e.node].share <= 0.2 + 1e-12
        assert (e.member, e.node) not in {(x.member, x.node) for x in again.expansions}
