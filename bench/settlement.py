"""Weekly settlement, measured (issue 18 §5).

1. Plan computation: `compute_plan` over 50 members' inputs (exact fractions, largest
   remainder, greedy matching, both hashes), per call.
2. Agreement: a fleet of 50 real members on the simulator (kernel, stores on disk, signed
   custom messages, 1 ms links); member 0 proposes a week's plan (`settlement_execute`), every
   member recomputes it from the inputs its `Ledger` port holds and answers READY to every
   member; the time from the proposal until member 0 holds a READY majority (n // 2 + 1
   agreeing on the plan hash), against the baseline measured in the same run: a raw
   custom-message round trip from member 0 to every other member at once (ping all, wait for
   the last pong).  `ratio=` is p50(majority) / p50(raw fan-out round trip).  The success rate
   counts weeks agreed at every member; the run fails below 100 %.

TODO (ledger helper): the ledger-ingest half of §5 (forward events per second into the
contribution ledger against raw SQLite inserts, `ratio=`) belongs with agent/fleet/
contribution*.py; here the inputs come through the same `Ledger` port, fixed per week.

    python bench/settlement.py            # 50 members, 10 weeks
    python bench/settlement.py --smoke    # CI: 5 members, 3 weeks
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.fleet.settlement_rules import MemberInput, compute_plan, period_bounds, previous_period
from agent.node.simnode import SimDriver
from agent.store import settlement as sdb
from bench.fleet import pct
from bench.gossip import form_hive, network, ring_with_chords
from bench.intents import CFG, fan_out_rtt
from tests.settle_world import FixedLedger, ShiftedClock

LAST = "2026-40"


def inputs(ids: list[str], seed: int) -> list[MemberInput]:
    rng = random.Random(seed)
    return [
        MemberInput(
            node,
            rng.randrange(0, 20_000),
            rng.randrange(0, 3_000),
            rng.randrange(1_000_000, 50_000_000),
            rng.randrange(0, 10**10),
            rng.randrange(50, 101),
        )
        for node in ids
    ]


def weeks(count: int) -> list[str]:
    out = [LAST]
    while len(out) < count:
        out.append(previous_period(out[-1]))
    return out[::-1]


def plan_section(n: int, calls: int) -> float:
    ids = [f"02{i:064x}" for i in range(n)]
    data = inputs(ids, 1)
    started = time.perf_counter()
    for _ in range(calls):
        plan = compute_plan(LAST, data)
    took = (time.perf_counter() - started) / calls
    print(f"plan for {n} members: {took * 1e3:.2f} ms per computation"
          f" ({len(plan.payments)} payments, {plan.total_sat:,} sat)")  # fmt: skip
    return took


async def agreement(n: int, count: int) -> tuple[list[float], list[float], int]:
    """(raw fan-out round trips, times to a READY majority, weeks agreed everywhere)."""
    adj, _ = ring_with_chords(n, 4) if n > 4 else ({i: set(range(n)) - {i} for i in range(n)}, 0)
    net, ids = network(adj)
    clock = ShiftedClock(period_bounds(LAST)[1] + 1)
    periods = weeks(count)
    ledger = FixedLedger({p: inputs(ids[:n], k) for k, p in enumerate(periods)})
    with tempfile.TemporaryDirectory(prefix="hive-bench-settle-") as tmp:
        async with SimDriver(net), anyio.create_task_group() as tg:
            world = await form_hive(net, ids, adj, Path(tmp), tg, CFG, clock=clock,
                                    join_limit_s=120)  # fmt: skip
            for a in range(n):
                for b in range(a + 1, n):
                    if b not in adj[a]:
                        net.connect(ids[a], ids[b])
            for m in world.members:
                m.fleet.kernel.ledger = ledger  # (the port the contribution component fills)
            with anyio.move_on_after(60):
                await anyio.sleep(2)
                while any(m.fleet.status()["outbox"].get("pending", 0) for m in world.members):  # noqa: ASYNC110
                    await anyio.sleep(0.1)
            owner = world.members[0].fleet
            raw = await fan_out_rtt(net, ids[0], ids[1:n], 20)
            times, agreed = [], 0
            for period in periods:
                started = time.perf_counter()
                await owner.settlement_execute(period)
                while (row := sdb.period(owner.store, period)) is None or row.state == "proposed":  # noqa: ASYNC110
                    await anyio.sleep(0.0002)
                times.append(time.perf_counter() - started)
                with anyio.move_on_after(30):
                    while not all(_agreed(m, period) for m in world.members):  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                agreed += all(_agreed(m, period) for m in world.members)
                with anyio.move_on_after(30):  # (its payments and reports settle before the next)
                    while any(_busy(m) for m in world.members):  # noqa: ASYNC110
                        await anyio.sleep(0.05)
            for m in world.members:
                await m.stop()
            tg.cancel_scope.cancel()
    return raw, times, agreed


def _busy(m: object) -> bool:
    return bool(m.fleet.status()["outbox"].get("pending", 0))  # type: ignore[attr-defined]


def _agreed(m: object, period: str) -> bool:
    row = sdb.period(m.fleet.store, period)  # type: ignore[attr-defined]
    return row is not None and row.state != "proposed"


def agreement_section(n: int, count: int) -> bool:
    raw, times, agreed = anyio.run(agreement, n, count)
    r50, t50 = statistics.median(raw), statistics.median(times)
    rate = 100.0 * agreed / count
    print(
        f"{n:3d} members: READY majority p50 {t50 * 1e3:.1f} ms, p99 {pct(times, 99) * 1e3:.1f} ms;"
        f" raw fan-out round trip p50 {r50 * 1e3:.2f} ms; weeks agreed everywhere"
        f" {agreed}/{count} = {rate:.1f}% success; ratio={t50 / r50:.2f}"
    )
    return agreed == count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="a quick run for CI")
    p.add_argument("--members", type=int, default=50)
    p.add_argument("--weeks", type=int, default=10)
    args = p.parse_args()
    n, count = (5, 3) if args.smoke else (args.members, args.weeks)
    plan_section(n if args.smoke else 50, 20 if args.smoke else 200)
    ok = agreement_section(n, count)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
