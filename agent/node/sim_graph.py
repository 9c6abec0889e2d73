"""The simulator's public graph: every open channel once per direction (what CLN's
`listchannels` shows), and helpers that add external nodes — nodes no agent runs — with public
channels among themselves, so the fleet planner has a real network to look at.

External nodes are created with exactly the on-chain funds their own channel opens need, so
the simulator's accounting invariant (no msat created or destroyed after set-up) holds.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from agent.node.models import GraphChannel
from agent.node.sim import OPEN_FEE_SAT, Network

Edge = tuple[int, int, int]  # (opener index, other index, capacity in sat)


def graph(net: Network) -> list[GraphChannel]:
    """Every open channel of the network, once per direction, sorted by (scid, source)."""
    out = []
    for scid in sorted(net.channels):
        chan = net.channels[scid]
        if not chan.open:
            continue
        for source in sorted((chan.a, chan.b)):
            policy = chan.policy[source]
            out.append(
                GraphChannel(
                    source=source,
                    destination=chan.other(source),
                    scid=scid,
                    capacity_sat=chan.capacity_sat,
                    fee_base_msat=policy.base_msat,
                    fee_ppm=policy.ppm,
                    active=True,
                )
            )
    return out


def add_external_graph(
    net: Network, edges: Sequence[Edge], *, alias: str = "ext", ppm: Sequence[int] = ()
) -> list[str]:
    """Add nodes 0 … n−1 (n = the highest index in `edges` + 1, aliases `ext0`, `ext1`, …) and
    open each edge's channel from its first node.  `ppm`, if given, is each node's fee rate on
    all its channels (by index); otherwise the simulator's default policy.  Returns the ids."""
    count = 1 + max((max(a, b) for a, b, _ in edges), default=-1)
    need = [0] * count
    for a, b, capacity in edges:
        if a == b or capacity <= 0:
            raise ValueError(f"bad external edge {(a, b, capacity)}")
        need[a] += capacity + OPEN_FEE_SAT
    ids = [net.add_node(f"{alias}{i}", need[i]) for i in range(count)]
    for a, b, capacity in edges:
        scid = net.open_channel(ids[a], ids[b], capacity)
        for end in (a, b):
            if end < len(ppm):
                net.set_policy(ids[end], scid, ppm=ppm[end])
    return ids


def random_edges(
    count: int,
    *,
    degree: int = 2,
    capacity: tuple[int, int] = (1_000_000, 20_000_000),
    seed: int = 0,
) -> list[Edge]:
    """A connected random graph on `count` nodes with hubs: each node after the first opens to
    up to `degree` earlier nodes, picked with a chance growing with their degree (preferential
    attachment); capacities uniform in `capacity`, rounded to 100,000 sat.  Deterministic."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible test graph, not secrets
    degrees = [0] * count
    edges: list[Edge] = []
    for i in range(1, count):
        chosen: set[int] = set()
        while len(chosen) < min(degree, i):
            weights = [degrees[j] + 1 for j in range(i)]
            chosen.add(rng.choices(range(i), weights)[0])
        for j in sorted(chosen):
            size = rng.randint(*capacity) // 100_000 * 100_000 or 100_000
            edges.append((i, j, size))
            degrees[i] += 1
            degrees[j] += 1
    return edges


def add_random_external_graph(
    net: Network, count: int, *, degree: int = 2, seed: int = 0, alias: str = "ext"
) -> list[str]:
    """`count` external nodes with `random_edges` among them and fee rates of 1–1,000 ppm."""
    rng = random.Random(seed ^ 0x5EED)  # noqa: S311 - reproducible fee rates
    ppm = [rng.randint(1, 1000) for _ in range(count)]
    return add_external_graph(
        net, random_edges(count, degree=degree, seed=seed), alias=alias, ppm=ppm
    )
