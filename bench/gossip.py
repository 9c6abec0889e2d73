"""Fleet state gossip on the simulator, by section (run by hand; CI runs `--smoke`).

Propagation (`--propagation`, the default): a fee change reaching every member.  50 members
(each a real `FleetService` with its own SQLite store in a temp dir) on 1 ms links, over a
sparse member graph: a ring plus chords (greedy: a least-connected pair at the current
diameter first) until its diameter, computed by BFS, is `--diameter` (4: the gossip TTL of 3
reaches exactly 4 hops, so a sparser graph leaves members that only anti-entropy reaches; on
50 members that takes about 48 chords).  Only the graph's links are up while measuring.  Each
of N fee changes is made on a random member's channel, and that member's gossip check is
called at once (as its loop would on its next tick); "reached" is every other member's store
holding the owner's record with the new fee.  The baseline, measured in the same run on the
same network before the members start: a raw custom-message round trip between two other
simulated nodes through the same SimBackend path (printed again with the members running).
The last line is `ratio=<p99 propagation ÷ (diameter × p50 raw round trip)>` (goal ≤ 3); every
change must reach every member or the run fails (exit status 1).

The gossip rule "at most one record of an owner per peer every gossip_gap_s" (10 s in
production) would space changes 10 s apart; the benchmark runs with gossip_gap_s=1 (`--gap-s`;
the fleet loop then wakes every second), and never changes one owner's fees twice within
gap + 1 s, so the rule never holds a new record back.  The whole simulated fleet runs in this
one process on one event loop: every member's SQLite commits (durable, as in production) and
signatures are done one after another, so the CPU per change is printed too, with the load
average (other processes on the machine slow the figures down).

    .venv/bin/python bench/gossip.py [--propagation] [--members N] [--changes N]
        [--diameter D] [--gap-s S] [--smoke]

Sections are functions `name(args) -> bool` (True: the section's requirement held) listed in
SECTIONS; `main()` runs the ones named by flag (propagation when none is)."""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.fleet.service import FleetConfig
from agent.fleet.simfleet import SimMember
from agent.node.sim import Network
from agent.node.simnode import SimDriver
from agent.store import gossip as gdb
from bench.fleet import pct, raw_rtt
from events.fleet import StateRecord

LATENCY = (0.001, 0.001)
GAP_S = 1  # gossip_gap_s for the benchmark (production: 10 s); --gap-s changes it


def config(gap_s: int) -> FleetConfig:
    return FleetConfig(
        gossip_gap_s=gap_s,
        # the fleet loop sleeps at most half of this: one tick a gap (at least one a second)
        handshake_retry_s=2 * max(gap_s, 1),
        heartbeat_s=3600,  # no heartbeats in the middle of the measurement
        retry_base_s=0.2,  # the joins' acknowledgements (and any "not yet" answers) settle fast
        retry_cap_s=2.0,
        sync_join_grace_s=1,
    )


REACH_LIMIT_S = 10.0  # a change not everywhere by then counts as not reached


# --- the member graph ------------------------------------------------------------------------


def distances(adj: dict[int, set[int]], source: int) -> dict[int, int]:
    """Hops from `source` to every node it reaches (BFS)."""
    seen, queue = {source: 0}, deque([source])
    while queue:
        node = queue.popleft()
        for nxt in adj[node]:
            if nxt not in seen:
                seen[nxt] = seen[node] + 1
                queue.append(nxt)
    return seen


def diameter(adj: dict[int, set[int]]) -> int:
    """The longest shortest path; a disconnected graph has none (ValueError)."""
    longest = 0
    for node in adj:
        d = distances(adj, node)
        if len(d) != len(adj):
            raise ValueError("the member graph is not connected")
        longest = max(longest, max(d.values()))
    return longest


def ring_with_chords(n: int, target: int, seed: int = 7) -> tuple[dict[int, set[int]], int]:
    """A ring of n plus chords, each joining a pair at the current diameter (the least
    connected such pair first, ties at random), until the diameter is at most `target`;
    the adjacency and the number of chords."""
    rng = random.Random(seed)
    adj = {i: {(i - 1) % n, (i + 1) % n} for i in range(n)}
    chords = 0
    while True:
        far = {a: distances(adj, a) for a in adj}
        longest = max(max(d.values()) for d in far.values())
        if longest <= target:
            return adj, chords
        pairs = [
            (len(adj[a]) + len(adj[b]), rng.random(), a, b)
            for a in adj
            for b, hops in far[a].items()
            if hops == longest and a < b
        ]
        _, _, a, b = min(pairs)
        adj[a].add(b)
        adj[b].add(a)
        chords += 1


# --- a hive on that graph ----------------------------------------------------------------------


@dataclass
class World:
    net: Network
    ids: list[str]  # members, then two nodes outside the hive for the raw baseline
    members: list[SimMember]
    adj: dict[int, set[int]]

    def holds(self, i: int, owner: int) -> int:
        """The version of `owner`'s record member i holds (0: none)."""
        store = self.members[i].store
        assert store is not None
        return gdb.stored_version(store, self.ids[owner]) or 0

    def fee(self, i: int, owner: int, scid: str) -> int | None:
        store = self.members[i].store
        assert store is not None
        row = gdb.state(store, self.ids[owner])
        if row is None:
            return None
        record = StateRecord.model_validate_json(row.record)
        return next((c.fee_ppm for c in record.channels if c.scid == scid), None)


async def until(check: Callable[[], bool], limit_s: float, poll_s: float = 0.0005) -> bool:
    """Poll `check` until true (True) or the limit passes (False)."""
    with anyio.move_on_after(limit_s):
        while not check():  # noqa: ASYNC110 - polls state owned by other tasks
            await anyio.sleep(poll_s)
        return True
    return False


def network(adj: dict[int, set[int]]) -> tuple[Network, list[str]]:
    """Channels and links along the graph's edges; each member also has a channel to the admin
    (member 0: joining needs a channel to the inviter), whose link `form_hive` drops once the
    hive has formed if it is not an edge; two more nodes, linked, for the raw baseline."""
    n = len(adj)
    net = Network(seed=5, clock=time.monotonic, latency_s=LATENCY)
    ids = [net.add_node(f"m{i}", 50_000_000 * (n if i == 0 else 1)) for i in range(n + 2)]
    for a in adj:
        for b in adj[a]:
            if a < b:
                net.open_channel(ids[a], ids[b], 2_000_000, push_msat=1_000_000_000)
    for i in range(1, n):
        if i not in adj[0]:
            net.open_channel(ids[0], ids[i], 1_000_000, push_msat=500_000_000)
    net.connect(ids[n], ids[n + 1])
    return net, ids


async def form_hive(
    net: Network, ids: list[str], adj: dict[int, set[int]], tmp: Path, tg: anyio.abc.TaskGroup,
    cfg: FleetConfig,
) -> World:  # fmt: skip
    """Every node of the graph a member with its own store, admitted by the admin; then only
    the graph's links stay up, every member sends a fresh record, and this returns once
    everyone holds everyone's (over the graph alone)."""
    n = len(adj)
    members = [SimMember(net, ids[i], tmp / f"m{i}", config=cfg) for i in range(n)]
    for m in members:
        await m.start(tg)
    world = World(net, ids, members, adj)
    admin = members[0].fleet
    await admin.genesis()
    for i in range(1, n):
        ticket = await admin.invite(ids[i])
        await members[i].fleet.join(ticket["ticket"])
        if not await until(lambda i=i: members[i].fleet.status()["tier"] == "neophyte", 30):
            raise SystemExit(f"member {i} did not join")
    if not await until(lambda: not any(_pending(m) for m in members), 60, 0.01):
        raise SystemExit("the joins were not all acknowledged")
    for i in range(1, n):
        if i not in adj[0]:
            net.disconnect(ids[0], ids[i])
    await anyio.sleep(cfg.gossip_gap_s + 1)  # past the per-peer gap of every record sent so far
    latest = [(await m.fleet.gossip.check(force=True))["version"] for m in members]

    def everywhere() -> bool:
        return all(world.holds(i, o) >= latest[o] for i in range(n) for o in range(n) if i != o)

    if not await until(everywhere, 60, 0.01):
        raise SystemExit("the fresh records did not reach every member over the graph")
    await anyio.sleep(cfg.gossip_gap_s + 1)
    return world


def _pending(m: SimMember) -> int:
    return int(m.fleet.status()["outbox"].get("pending", 0))


# --- propagation -----------------------------------------------------------------------------


@dataclass
class Change:
    owner: int
    scid: str
    ppm: int
    elapsed_s: float | None  # None: not every member had it within REACH_LIMIT_S
    frames: int  # custom messages sent in the network meanwhile
    cpu_s: float  # this process's CPU meanwhile: the whole simulated fleet's work


async def fee_change(world: World, owner: int, ppm: int, rng: random.Random) -> Change:
    """Set a new fee on one of the owner's channels, let it check its record at once, and time
    until every other member holds the owner's record with that fee."""
    net, ids = world.net, world.ids
    scid = rng.choice(sorted(net.node(ids[owner]).channels))
    sent_before = net.stats["custommsgs_sent"]
    cpu = time.process_time()
    started = time.perf_counter()
    net.set_policy(ids[owner], scid, ppm=ppm)
    version = (await world.members[owner].fleet.gossip.check())["version"]
    waiting = set(range(len(world.members))) - {owner}

    def reached() -> bool:
        waiting.difference_update([i for i in waiting if world.holds(i, owner) >= version])
        return not waiting

    ok = await until(reached, REACH_LIMIT_S)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    others = [i for i in range(len(world.members)) if i != owner]
    ok = ok and all(world.fee(i, owner, scid) == ppm for i in others)
    frames = net.stats["custommsgs_sent"] - sent_before
    return Change(owner, scid, ppm, elapsed if ok else None, frames, cpu)


async def measure_propagation(
    world: World, changes: int, gap_s: int, seed: int = 3
) -> list[Change]:
    """`changes` fee changes, each by a random member whose fees did not change within the last
    gap_s + 1 s (so the per-peer gap never holds its new record back), one after the other."""
    rng = random.Random(seed)
    last: dict[int, float] = {}
    out: list[Change] = []
    while len(out) < changes:
        now = time.monotonic()
        free = [i for i in range(len(world.members)) if now - last.get(i, -1e9) > gap_s + 1]
        if not free:
            await anyio.sleep(gap_s + 1 - (now - min(last.values())) + 0.01)
            continue
        owner = rng.choice(free)
        out.append(await fee_change(world, owner, 2_000 + len(out), rng))
        last[owner] = time.monotonic()
    return out


@dataclass
class Propagation:
    changes: list[Change]
    raw: list[float]  # round trips on the bare network, before the members start
    raw_busy: list[float]  # the same with every member running (idle)
    chords: int
    adj: dict[int, set[int]]
    load: tuple[float, float, float]  # the machine's load average when it started


async def _propagation(args: argparse.Namespace) -> Propagation:
    load = os.getloadavg()
    adj, chords = ring_with_chords(args.members, args.diameter)
    net, ids = network(adj)
    with tempfile.TemporaryDirectory(prefix="hive-bench-gossip-") as tmp:
        async with SimDriver(net), anyio.create_task_group() as tg:
            raw = await raw_rtt(net, ids[-2], ids[-1], 200)
            world = await form_hive(net, ids, adj, Path(tmp), tg, config(args.gap_s))
            raw_busy = await raw_rtt(net, ids[-2], ids[-1], 200)
            changes = await measure_propagation(world, args.changes, args.gap_s)
            for m in world.members:
                await m.stop()
            tg.cancel_scope.cancel()
    return Propagation(changes, raw, raw_busy, chords, adj, load)


def propagation(args: argparse.Namespace) -> bool:
    """The propagation section: prints its figures; False if some change missed a member."""
    run = anyio.run(_propagation, args)
    changes, diam = run.changes, diameter(run.adj)
    degrees = sorted(len(v) for v in run.adj.values())
    times = [c.elapsed_s for c in changes if c.elapsed_s is not None]
    rtt = statistics.median(run.raw)
    print(f"== propagation: {args.members} members, 1 ms links (latency_s={LATENCY}), real stores")
    print(
        f"machine: {os.cpu_count()} CPUs, load average {run.load[0]:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after (other processes share these CPUs)"
    )
    print(
        f"member graph: ring + {run.chords} chords, diameter {diam} (BFS), degree "
        f"{degrees[0]}–{degrees[-1]} (mean {statistics.mean(degrees):.1f}); "
        "the gossip TTL (3) reaches 4 hops"
    )
    print(
        f"config: gossip_gap_s={args.gap_s} (production 10 s), fleet loop ≤ "
        f"{max(args.gap_s, 1)} s, heartbeat 3600 s; one owner's fees change at most every "
        f"{args.gap_s + 1} s"
    )
    print(
        f"raw custom-message round trip: p50 {rtt * 1000:.2f} ms (p99 "
        f"{pct(run.raw, 0.99) * 1000:.2f}) on the bare network; p50 "
        f"{statistics.median(run.raw_busy) * 1000:.2f} ms with the members running"
    )
    ok = len(times) == len(changes)
    print(
        f"success: {len(times)}/{len(changes)} fee changes reached all "
        f"{args.members - 1} other members"
    )
    if times:
        frames = statistics.mean(c.frames for c in changes)
        print(
            f"fee change → every member holds it: p50 {statistics.median(times) * 1000:.1f} ms, "
            f"p90 {pct(times, 0.9) * 1000:.1f} ms, p99 {pct(times, 0.99) * 1000:.1f} ms, "
            f"max {max(times) * 1000:.1f} ms; {frames:.0f} custom messages per change "
            "(acknowledgements included)"
        )
        cpu = statistics.median(c.cpu_s for c in changes)
        print(f"CPU of the whole simulated fleet per change (one process): p50 {cpu * 1000:.1f} ms")
        print(f"ratio={pct(times, 0.99) / (diam * rtt):.2f}  (p99 ÷ (diameter × raw p50))")
    for c in changes:
        if c.elapsed_s is None:
            print(f"NOT REACHED: member {c.owner}'s fee {c.ppm} on {c.scid}")
    return ok


SECTIONS: dict[str, Callable[[argparse.Namespace], bool]] = {"propagation": propagation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in SECTIONS:
        parser.add_argument(f"--{name}", action="store_true", help=f"run the {name} section")
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--diameter", type=int, default=4, help="of the member graph (≥ 3)")
    parser.add_argument(
        "--gap-s", type=int, default=GAP_S, help="gossip_gap_s (0: no per-peer gap at all)"
    )
    parser.add_argument("--smoke", action="store_true", help="10 members, 5 changes: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.members, args.changes = 10, 5
    if args.diameter < 3 or args.members < 2 * args.diameter + 1:
        parser.error("the member graph needs diameter ≥ 3 and at least 2 × diameter + 1 members")
    chosen = [name for name in SECTIONS if getattr(args, name)] or ["propagation"]
    failed = [name for name in chosen if not SECTIONS[name](args)]
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (not every change reached every member)")


if __name__ == "__main__":
    main()
