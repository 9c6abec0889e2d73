"""Fleet state gossip on the simulator, by section (run by hand; CI runs `--smoke`).

Propagation (`--propagation`): a fee change reaching every member.  50 members
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

Repair (`--repair`): one differing fact among `--facts` (10,000).  Two members (real
`FleetService`s, own stores) hold the same facts but one: member B is offline while A bans an
outsider (a real BAN, the differing fact; its queued copy for B expires, outbox_ttl_s=3); the
common rest are synthetic rows put into both stores (kind "left", which the upkeep keeps a
week whoever its subject, each carrying a copy of a real fact frame; never served, as both
hold them).  Both then run with no digest of their own accord; A sends one digest by hand,
and the section measures until both fact-set digests are equal and nothing is open or
pending (the outbox with its production backoff, 30 s: with the joins' 0.2 s a step answered
late on a busy machine went twice): negentropy round trips and bytes (the initiator's
counters), and the custom messages on the wire, by type (counted by a wrapper around the
network's `send_custommsg`).
`ratio=` the bytes of a full sync of the same set (its ids alone, 32 bytes each: a lower
bound) ÷ the reconciliation's STATE_HASH and SYNC frames on the wire, every byte both ways
(goal ≥ 10, stretch 100; round trips ≤ 3, reconciliation ≤ 2 KB).  These travel as session
frames (compact, unsigned: events/fleet/compact.py); their acknowledgements, session frames
too, are printed beside them, apart from the signed acknowledgement of the fact handed on.

Catch-up (`--catch-up`): on the propagation graph (`--members`, `--diameter`), every member
sharing one shifted clock, the last member goes offline; the admin bans an outsider (queued
for it too), three days pass (every outbox copy for it expires: outbox_ttl_s one day), ten
members change fees and every other member sends a fresh record; then it restarts, and the
section measures the wall time and the bytes until its view, record versions and fact digest
equal every other member's, nothing open or pending.  Production sync settings
(sync_interval_s 300, sync_gap_s 10).  Before each measurement the members are brought to
agree (digests to their neighbours every 5 s while they differ; see `converge`).

A section's success line is its check: propagation, every change reached every member;
repair, the fact was repaired; catch-up, the member caught up within 120 s.  The goals are
printed beside the figures, not asserted (CI runs `--smoke`: 10 members, 1,000 facts).

    .venv/bin/python bench/gossip.py [--propagation] [--repair] [--catch-up] [--members N]
        [--changes N] [--diameter D] [--gap-s S] [--facts N] [--smoke]

Sections are functions `name(args) -> bool` (True: the section's requirement held) listed in
SECTIONS; `main()` runs the ones named by flag (all of them when none is), and exits with
status 1 if any failed."""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.clock import Clock, ShiftedClock
from agent.fleet.facts import FactKind
from agent.fleet.service import FleetConfig
from agent.fleet.simfleet import SimMember
from agent.node.sim import Network
from agent.node.simnode import SimDriver
from agent.store import facts as factrows
from agent.store import gossip as gdb
from agent.store.db import Store
from bench.fleet import pct, raw_rtt
from events.fleet import MsgType, StateRecord
from events.fleet.compact import is_compact
from events.fleet.sync import fact_id

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
        member_fee_zero=0,  # (the fee changes measured are the benchmark's own)
        planner_interval_s=0,
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
    cfg: FleetConfig, clock: Clock | None = None, join_limit_s: float = 30,
) -> World:  # fmt: skip
    """Every node of the graph a member with its own store, admitted by the admin; then only
    the graph's links stay up, every member sends a fresh record, and this returns once
    everyone holds everyone's (over the graph alone)."""
    n = len(adj)
    members = [SimMember(net, ids[i], tmp / f"m{i}", clock=clock, config=cfg) for i in range(n)]
    for m in members:
        await m.start(tg)
    world = World(net, ids, members, adj)
    admin = members[0].fleet
    await admin.genesis()
    for i in range(1, n):
        ticket = await admin.invite(ids[i])
        await members[i].fleet.join(ticket["ticket"])
        joined = lambda i=i: members[i].fleet.status()["tier"] == "neophyte"  # noqa: E731
        if not await until(joined, join_limit_s):
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


# --- wire accounting ---------------------------------------------------------------------------


class Wire:
    """Custom messages counted as they leave a node, by type and by link: a wrapper around
    this network's `send_custommsg`, the one path every SimBackend sends through (agent code
    untouched).  A message counts once the network took it (connected peers only)."""

    def __init__(self, net: Network) -> None:
        self.bytes: Counter[int] = Counter()
        self.frames: Counter[int] = Counter()
        self.links: Counter[tuple[str, str]] = Counter()  # (sender, peer) → bytes
        self.session: Counter[int] = Counter()  # bytes of session frames (compact), by type
        self.session_frames: Counter[int] = Counter()
        send = net.send_custommsg

        def counted(sender: str, peer: str, payload: bytes) -> None:
            send(sender, peer, payload)
            kind = int.from_bytes(payload[:2], "big")
            self.bytes[kind] += len(payload)
            self.frames[kind] += 1
            self.links[(sender, peer)] += len(payload)
            if is_compact(payload):
                self.session[kind] += len(payload)
                self.session_frames[kind] += 1

        net.send_custommsg = counted  # type: ignore[method-assign]

    def reset(self) -> None:
        for counter in (self.bytes, self.frames, self.links, self.session, self.session_frames):
            counter.clear()

    def of(self, *kinds: MsgType) -> tuple[int, int]:
        """(frames, bytes) of these message types."""
        return sum(self.frames[k] for k in kinds), sum(self.bytes[k] for k in kinds)

    def touching(self, node: str) -> int:
        """Bytes sent to or by `node`."""
        return sum(n for (a, b), n in self.links.items() if node in (a, b))

    def breakdown(self) -> str:
        return ", ".join(
            f"{_type_name(k)} {self.frames[k]}×/{self.bytes[k]:,} B"
            for k in sorted(self.bytes, key=lambda k: -self.bytes[k])
        )


def _type_name(kind: int) -> str:
    try:
        return MsgType(kind).name
    except ValueError:
        return str(kind)


def tuesday_noon() -> int:
    """Tuesday noon (UTC) of this ISO week: the catch-up's three days never cross a week's
    end, whose contribution reports (new facts) are not what is measured."""
    monday = int(time.time()) // DAY * DAY - time.gmtime().tm_wday * DAY
    return monday + DAY + 12 * 3600


def digest(m: SimMember) -> str:
    return str(m.fleet.sync.summary()["digest"])


def at_rest(m: SimMember) -> bool:
    """No reconciliation open, nothing waiting in the outbox (cheap: the digest is not
    computed, which on 10,000 facts would load the event loop being measured)."""
    return not m.fleet.sync.sessions and not _pending(m)


# --- repair: one differing fact among many -----------------------------------------------------


@dataclass
class Repair:
    facts: int
    elapsed_s: float
    repaired: bool  # B holds the ban, both digests equal, nothing open or pending
    last: dict[str, Any]  # the initiator's summary of its reconciliation
    sent: int  # facts handed on (both sides' counters)
    wire: Wire
    frames_total: int  # bytes of every fact frame in the set (for reference)
    setup_s: float


def synthetic(n: int, frame: bytes, now: int, seed: int = 11) -> list[factrows.FactRow]:
    """n fact rows neither side will ever serve (both hold them): kind "left" (leaves stay in
    the set a week whoever their subject: the upkeep drops joins, promotions, bans and states
    of non-members, which these subjects are), timestamps spread over the last six days, each
    carrying a copy of a real frame so that the reference total of frame bytes is realistic."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        subject = "02" + rng.randbytes(32).hex()
        fid = fact_id(FactKind.LEFT.value, subject, i)
        ts = now - rng.randrange(60, 6 * 86_400)
        out.append(
            factrows.FactRow(
                fid, FactKind.LEFT.value, subject, ts, rng.randbytes(32).hex(),
                int(MsgType.MEMBER_LEFT), frame,
            )
        )  # fmt: skip
    return out


def put_rows(store: Store, rows: list[factrows.FactRow], now: int) -> None:
    with store.transaction(now) as tx:
        for row in rows:
            factrows.put(tx, row)


async def _repair(args: argparse.Namespace) -> Repair:
    started = time.perf_counter()
    adj = {0: {1}, 1: {0}}
    net, ids = network(adj)
    wire = Wire(net)
    cfg = replace(config(GAP_S), sync_join_grace_s=1, sync_gap_s=1)
    # then no digest of the members' own accord (the join grace never ends): the one measured
    # is sent by hand; the outbox gives up after 3 s, so B misses the ban for good; the
    # outbox's production backoff (30 s), so that a step answered late on a busy machine is
    # not sent twice, as the joins' 0.2 s would (a retry is counted on the wire all the same)
    quiet = replace(cfg, sync_join_grace_s=10**9, outbox_ttl_s=3, retry_base_s=30.0)
    outsider = ids[2]
    with tempfile.TemporaryDirectory(prefix="hive-bench-repair-") as tmp:
        async with SimDriver(net), anyio.create_task_group() as tg:
            world = await form_hive(net, ids, adj, Path(tmp), tg, cfg)
            a, b = world.members
            if not await until(lambda: digest(a) == digest(b) and at_rest(a) and at_rest(b), 30):
                raise SystemExit("the two members' fact sets did not agree after joining")
            # B away; A restarted with the quiet settings, bans an outsider (a real BAN frame,
            # in A's set); its copy for B expires
            await b.stop()
            a.config = b.config = quiet
            await a.restart(tg)
            await a.fleet.ban(outsider, "bench: the differing fact")
            if not await until(lambda: outsider in a.view()["bans"] and not _pending(a), 30):
                raise SystemExit("the ban did not take effect, or its copy for B never expired")
            assert a.store is not None
            now = a.fleet.kernel.clock.now()
            real = factrows.rows(a.store, [f for *_, f in factrows.items(a.store)])
            frame = sorted(real, key=lambda r: len(r.frame))[len(real) // 2].frame  # median
            common = synthetic(args.facts - len(real), frame, now)
            put_rows(a.store, common, now)
            b_store = Store(b.home / "fleet.sqlite")  # B's own store, B being offline
            put_rows(b_store, common, now)
            b_store.close()
            await b.start(tg)  # back: handshake and records again; no digest yet
            await anyio.sleep(1)
            if not await until(lambda: at_rest(a) and at_rest(b), 30):
                raise SystemExit("B's return did not settle")
            count = a.fleet.sync.summary()["facts"]
            if count != args.facts or b.fleet.sync.summary()["facts"] != args.facts - 1:
                raise SystemExit(
                    f"the sets hold {count} and {b.fleet.sync.summary()['facts']} facts, "
                    f"not {args.facts} and {args.facts - 1}"
                )
            frames_total = sum(
                len(r.frame)
                for r in factrows.rows(a.store, [f for *_, f in factrows.items(a.store)])
            )
            sent_before = (
                a.fleet.sync.summary()["facts_sent"] + b.fleet.sync.summary()["facts_sent"]
            )
            setup_s = time.perf_counter() - started
            wire.reset()
            t0 = time.perf_counter()
            await a.fleet.sync.send_digest(b.node_id)
            ok = await until(
                lambda: at_rest(a) and at_rest(b) and digest(a) == digest(b), 30, 0.02
            )  # (each digest of 10,000 facts is ~1.5 ms of this same event loop's CPU)
            elapsed = time.perf_counter() - t0
            repaired = ok and outsider in b.view()["bans"]
            last = dict(b.fleet.sync.summary()["last"])
            sent = a.fleet.sync.summary()["facts_sent"] + b.fleet.sync.summary()["facts_sent"]
            for m in world.members:
                await m.stop()
            tg.cancel_scope.cancel()
    return Repair(
        args.facts, elapsed, repaired, last, sent - sent_before, wire, frames_total, setup_s
    )


def repair(args: argparse.Namespace) -> bool:
    """The repair section: one fact differs among `--facts`; False if it was not repaired."""
    run = anyio.run(_repair, args)
    w = run.wire
    digests_n, digest_b = w.of(MsgType.STATE_HASH)
    sync_n, sync_b = w.of(MsgType.SYNC)
    acks_n, acks_b = w.of(MsgType.MSG_ACK)
    ack = int(MsgType.MSG_ACK)
    session_acks_n, session_acks_b = w.session_frames[ack], w.session[ack]
    fact_n, fact_b = w.of(MsgType.BAN)
    total = sum(w.bytes.values())
    recon = digest_b + sync_b
    full = run.facts * 32
    print(f"== repair: one differing fact among {run.facts:,} (two members, own stores)")
    print(
        f"setup: {run.facts - 1:,} common facts in both stores, one real BAN only A holds "
        f"(its queued copy for B expired); {run.setup_s:.1f} s"
    )
    print(
        f"success: {'1/1' if run.repaired else '0/1'} — B holds the ban, both digests equal, "
        f"nothing open or pending; {run.sent} fact(s) handed on; {run.elapsed_s * 1000:.1f} ms "
        "from A's digest"
    )
    rt = run.last.get("round_trips")
    print(
        f"negentropy: {rt} round trip(s) (goal ≤ 3), {run.last.get('neg_bytes')} bytes both "
        f"ways; have {run.last.get('have')}, need {run.last.get('need')} (B initiated)"
    )
    print(
        f"on the wire: STATE_HASH {digests_n}×/{digest_b:,} B + SYNC {sync_n}×/{sync_b:,} B = "
        f"{recon:,} B reconciliation (goal ≤ 2,048); acks {acks_n}×/{acks_b:,} B (of which "
        f"the session frames' {session_acks_n}×/{session_acks_b:,} B: reconciliation and its "
        f"acks {recon + session_acks_b:,} B); "
        f"the fact handed on {fact_n}×/{fact_b:,} B; all {total:,} B ({w.breakdown()})"
    )
    print(
        f"full sync of the same set: {full:,} B of ids at least (32 each); all fact frames "
        f"{run.frames_total:,} B"
    )
    print(
        f"ratio={full / recon:.1f}  (ids of a full sync ÷ reconciliation bytes on the wire; "
        f"goal ≥ 10, stretch 100; ÷ all bytes exchanged: {full / total:.1f})"
    )
    return run.repaired


# --- catch-up: a member back from three days offline -------------------------------------------


def snapshot(world: World, i: int) -> tuple[Any, ...]:
    m = world.members[i]
    versions = {x["owner"]: x["version"] for x in m.fleet.topology()["members"]}
    return (m.view(), versions, digest(m))


def agree(world: World, indexes: list[int], pending: bool = True) -> bool:
    """The chosen members hold the same view, record versions and fact set, no reconciliation
    open, nothing pending in their outboxes (unless `pending` is False: while a member is
    away, what is queued for it waits); the first differing member ends the comparison."""
    first = snapshot(world, indexes[0])
    ms = [world.members[i] for i in indexes]
    return all(snapshot(world, i) == first for i in indexes[1:]) and all(
        at_rest(m) if pending else not m.fleet.sync.sessions for m in ms
    )


async def converge(world: World, indexes: list[int], limit_s: float, pending: bool = True) -> bool:
    """Wait until the chosen members agree; while they do not, each sends a digest to each of
    its neighbours among them every 5 s (what the periodic digest, every 300 s, would do in the
    end: a member that joined while its neighbours' digests were early can lack a join fact
    until then)."""
    deadline = time.monotonic() + limit_s
    chosen = set(indexes)
    while not await until(lambda: agree(world, indexes, pending), 5, 0.2):
        if time.monotonic() > deadline:
            return False
        for i in indexes:
            for j in sorted(world.adj[i] & chosen):
                await world.members[i].fleet.sync.send_digest(world.ids[j])
    return True


def _differences(world: World, away: int) -> None:
    """What still differs between the member back and the others (printed on failure)."""
    x = snapshot(world, away)
    for i in range(len(world.members)):
        if i == away:
            continue
        other = snapshot(world, i)
        if other == x:
            continue
        view = {k for k in set(x[0]) | set(other[0]) if x[0].get(k) != other[0].get(k)}
        versions = {
            o[:12]: (x[1].get(o), other[1].get(o))
            for o in set(x[1]) | set(other[1])
            if x[1].get(o) != other[1].get(o)
        }
        print(f"DIFFERS from member {i}: view keys {sorted(view)}, versions {versions}")
        break
    for i in [away, *sorted(world.adj[away])]:
        m = world.members[i]
        s = m.fleet.sync.summary()
        print(
            f"member {i}: facts {s['facts']} open {s['open']} failed {s['failed']} stale "
            f"{s['stale']} busy {s['busy']} pending {_pending(m)} refused "
            f"{m.fleet.status()['refused']}"
        )


@dataclass
class CatchUp:
    members: int
    chords: int
    adj: dict[int, set[int]]
    away: int
    elapsed_s: float | None  # None: not caught up within the limit
    wire: Wire
    bytes_away: int  # sent to or by the member back
    stats: dict[str, Any]  # the member back's sync counters
    peers_stats: list[dict[str, Any]]
    changed: int
    load: tuple[float, float, float]
    cpu_s: float


CATCH_UP_LIMIT_S = 120.0


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """The sync counters' growth (the set's size as it is now)."""
    keep = {"facts", "digest", "open", "last"}
    return {
        k: v if k in keep or not isinstance(v, int) else v - int(before.get(k, 0))
        for k, v in after.items()
    }


DAY = 86_400


async def _catch_up(args: argparse.Namespace) -> CatchUp:
    load = os.getloadavg()
    adj, chords = ring_with_chords(args.members, args.diameter)
    net, ids = network(adj)
    wire = Wire(net)
    clock = ShiftedClock(tuesday_noon())
    # outbox_ttl_s one day, sync settings and the outbox's retry backoff (30 s) as in
    # production: the propagation section's 1 s backoff resends a backlog still being
    # processed (the returning member's queue is hundreds of frames) and snowballs
    cfg = replace(config(args.gap_s), retry_base_s=30.0)
    n, away = args.members, args.members - 1
    others = list(range(n - 1))
    rng = random.Random(5)
    with tempfile.TemporaryDirectory(prefix="hive-bench-catchup-") as tmp:
        async with SimDriver(net), anyio.create_task_group() as tg:
            world = await form_hive(net, ids, adj, Path(tmp), tg, cfg, clock)
            if not await converge(world, list(range(n)), 120):
                raise SystemExit("the hive did not settle after forming")
            x = world.members[away]
            x_before = x.fleet.sync.summary()
            await x.stop()
            clock.advance(600)
            # away: the admin bans an outsider (queued for x too), some members change fees
            await world.members[0].fleet.ban(ids[n], "bench: while x is away")
            if not await converge(world, others, 60, pending=False):
                raise SystemExit("the others did not agree on the ban")
            clock.advance(3 * DAY)  # … and the queued copies for x expire (outbox_ttl_s 1 day)
            changed = rng.sample(others, min(10, len(others)))
            for i in changed:
                scid = rng.choice(sorted(net.node(ids[i]).channels))
                net.set_policy(ids[i], scid, ppm=3_000 + i)
            for i in others:  # fresh records (three days passed: the heartbeat's, at once)
                await world.members[i].fleet.gossip.check(force=True)

            def others_done() -> bool:
                return agree(world, others) and not any(_pending(world.members[i]) for i in others)

            if not await until(others_done, 120, 0.2):
                raise SystemExit("the others did not agree after three days")
            neighbours = sorted(adj[away])
            peers_before = [world.members[i].fleet.sync.summary() for i in neighbours]
            wire.reset()
            cpu = time.process_time()
            t0 = time.perf_counter()
            await x.start(tg)
            ok = await until(lambda: agree(world, list(range(n))), CATCH_UP_LIMIT_S, 0.05)
            elapsed = time.perf_counter() - t0 if ok else None
            cpu = time.process_time() - cpu
            if not ok:
                _differences(world, away)
            ok = ok and ids[n] in x.view()["bans"]
            stats = _delta(x.fleet.sync.summary(), x_before)
            peers_stats = [
                _delta(world.members[i].fleet.sync.summary(), b)
                for i, b in zip(neighbours, peers_before, strict=True)
            ]
            for m in world.members:
                await m.stop()
            tg.cancel_scope.cancel()
    return CatchUp(
        n, chords, adj, away, elapsed if ok else None, wire, wire.touching(ids[away]),
        stats, peers_stats, len(changed), load, cpu,
    )  # fmt: skip


def catch_up(args: argparse.Namespace) -> bool:
    """The catch-up section: False if the member back did not catch up within the limit."""
    run = anyio.run(_catch_up, args)
    w, s = run.wire, run.stats
    degrees = sorted(len(v) for v in run.adj.values())
    print(
        f"== catch-up: member {run.away} of {run.members} back after three days offline "
        f"(shared shifted clock), real stores"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, load average {run.load[0]:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after"
    )
    print(
        f"member graph: ring + {run.chords} chords, diameter {diameter(run.adj)}, degree "
        f"{degrees[0]}–{degrees[-1]}; the member back has {len(run.adj[run.away])} links"
    )
    print(
        f"while away: a ban of an outsider, fee changes on {run.changed} members, a fresh "
        "record from every other member; everything queued for it expired (outbox_ttl_s 1 day)"
    )
    ok = run.elapsed_s is not None
    print(
        f"success: {'1/1' if ok else '0/1'} — its view, record versions and fact digest equal "
        f"the {run.members - 1} others' (limit {CATCH_UP_LIMIT_S:.0f} s)"
    )
    if ok:
        assert run.elapsed_s is not None
        print(
            f"wall time from its restart: {run.elapsed_s:.2f} s (CPU of the whole simulated "
            f"fleet meanwhile {run.cpu_s:.2f} s)"
        )
    print(
        f"bytes: {run.bytes_away:,} B to or from the member back, {sum(w.bytes.values()):,} B "
        f"in the whole network ({w.breakdown()})"
    )
    print(
        f"its reconciliations: started {s['started']}, answered {s['answered']}, completed "
        f"{s['completed']}, {s['round_trips']} round trips, {s['neg_bytes']:,} negentropy bytes, "
        f"{s['facts_wanted']} facts asked for, {s['facts']} facts in its set now; its "
        f"neighbours handed on {sum(p['facts_sent'] for p in run.peers_stats)} facts and "
        f"answered {sum(p['answered'] for p in run.peers_stats)} reconciliations "
        "(counters since its restart)"
    )
    return ok


SECTIONS: dict[str, Callable[[argparse.Namespace], bool]] = {
    "propagation": propagation,
    "repair": repair,
    "catch_up": catch_up,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in SECTIONS:
        flag = name.replace("_", "-")
        parser.add_argument(f"--{flag}", action="store_true", help=f"run the {flag} section")
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--diameter", type=int, default=4, help="of the member graph (≥ 3)")
    parser.add_argument(
        "--gap-s", type=int, default=GAP_S, help="gossip_gap_s (0: no per-peer gap at all)"
    )
    parser.add_argument("--facts", type=int, default=10_000, help="in the repair section's set")
    parser.add_argument(
        "--smoke", action="store_true", help="10 members, 5 changes, 1,000 facts: seconds"
    )
    args = parser.parse_args()
    if args.smoke:
        args.members, args.changes, args.facts = 10, 5, 1_000
    if args.diameter < 3 or args.members < 2 * args.diameter + 1:
        parser.error("the member graph needs diameter ≥ 3 and at least 2 × diameter + 1 members")
    if args.facts < 100:
        parser.error("the repair section needs at least 100 facts")
    chosen = [name for name in SECTIONS if getattr(args, name)] or list(SECTIONS)
    failed = [name for name in chosen if not SECTIONS[name](args)]
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (see each section's success line)")


if __name__ == "__main__":
    main()
