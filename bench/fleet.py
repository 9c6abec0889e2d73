"""Fleet membership latency on the simulator: how long a join takes (HELLO → WELCOME, with the
MEMBER_JOINED fan-out acknowledged) and how long a vouch takes to reach agreement (every member
sees the promotion), against a raw custom-message round trip on the same simulated links.

Each member is a real `FleetService` with its own SQLite store (durable commits included);
links have a fixed 1 ms one-way latency.  The last line is
`ratio=<p50 vouch → agreement ÷ p50 raw custom-message round trip>`.

    .venv/bin/python bench/fleet.py [--members N] [--rounds N] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.fleet.service import FleetConfig
from agent.fleet.simfleet import SimMember
from agent.node.models import CustomMsg
from agent.node.sim import Network
from agent.node.simnode import SimBackend, SimDriver

LATENCY = (0.001, 0.001)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def raw_rtt(net: Network, a: str, b: str, rounds: int) -> list[float]:
    """Ping-pong a fleet-sized custom message between two simulated nodes."""
    sa, sb = SimBackend(net, a), SimBackend(net, b)
    ina, inb = sa.events(), sb.events()
    payload = (32769).to_bytes(2, "big") + b"HIVE" + b"x" * 400
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await sa.sendcustommsg(b, payload)
        async for ev in inb:
            if isinstance(ev, CustomMsg):
                break
        await sb.sendcustommsg(a, payload)
        async for ev in ina:
            if isinstance(ev, CustomMsg):
                break
        times.append(time.perf_counter() - started)
    await ina.aclose()
    await inb.aclose()
    return times


async def until(check, limit_s: float = 30) -> None:  # type: ignore[no-untyped-def]
    with anyio.fail_after(limit_s):
        while not check():  # noqa: ASYNC110 - polls state owned by other tasks
            await anyio.sleep(0.0005)


async def run(members: int, rounds: int) -> dict[str, list[float]]:
    n = members + rounds  # the first `members` form the hive; one more joins per round
    net = Network(seed=5, clock=time.monotonic, latency_s=LATENCY)
    ids = [net.add_node(f"n{i}", 50_000_000) for i in range(n + 1)]
    for i in range(n + 1):
        for j in range(i + 1, n + 1):
            net.open_channel(ids[i], ids[j], 1_000_000, push_msat=100_000_000)
            net.connect(ids[i], ids[j])
    out: dict[str, list[float]] = {"raw": [], "join": [], "vouch": []}
    with tempfile.TemporaryDirectory(prefix="hive-bench-fleet-") as tmp:
        async with SimDriver(net), anyio.create_task_group() as tg:
            out["raw"] = await raw_rtt(net, ids[-2], ids[-1], max(20, rounds * 4))
            config = FleetConfig(retry_base_s=1.0, member_fee_zero=0, planner_interval_s=0)
            ms = [SimMember(net, ids[i], Path(tmp) / str(i), config=config) for i in range(n)]
            for m in ms:
                await m.start(tg)
            admin = ms[0].fleet
            await admin.genesis()
            for i in range(1, n):
                ticket = await admin.invite(ids[i])
                started = time.perf_counter()
                await ms[i].fleet.join(ticket["ticket"])
                await until(lambda i=i: ms[i].fleet.status()["tier"] == "neophyte")
                elapsed = time.perf_counter() - started
                await until(lambda: all(not m.fleet.status()["outbox"].get("pending") for m in ms))
                if i >= members:
                    out["join"].append(elapsed)
            # each newcomer in turn: quorum - 1 full members vouch first, then the timed,
            # deciding vouch, until every member sees the promotion
            # (the quorum is the voters' own count — active full members — so each vouch's
            # answer says whether it was the deciding one)
            full = [0]
            for i in range(members, n):
                for v in full:
                    await until(
                        lambda: all(not m.fleet.status()["outbox"].get("pending") for m in ms)
                    )
                    if ms[v].fleet.view()["members"].get(ids[i]) == "member":
                        break  # promoted already: another member's count was reached
                    started = time.perf_counter()
                    state = await ms[v].fleet.vouch(ids[i])
                    if state["tier"] == "member":
                        break
                await until(
                    lambda i=i: all(m.fleet.view()["members"][ids[i]] == "member" for m in ms)
                )
                out["vouch"].append(time.perf_counter() - started)
                full.append(i)
                await until(lambda: all(not m.fleet.status()["outbox"].get("pending") for m in ms))
            for m in ms:
                await m.stop()
            tg.cancel_scope.cancel()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    members, rounds = (3, 2) if args.smoke else (args.members, args.rounds)
    out = anyio.run(run, members, rounds)
    raw, join, vouch = out["raw"], out["join"], out["vouch"]
    print(f"{members} members + {rounds} joiners, 1 ms links, real stores")
    print(f"raw custom-message round trip: p50 {statistics.median(raw) * 1000:.2f} ms")
    print(
        f"join HELLO → WELCOME: p50 {statistics.median(join) * 1000:.1f} ms, "
        f"p90 {pct(join, 0.9) * 1000:.1f} ms"
    )
    print(
        f"deciding vouch → all {members + rounds} members agree: "
        f"p50 {statistics.median(vouch) * 1000:.1f} ms, p90 {pct(vouch, 0.9) * 1000:.1f} ms"
    )
    print(f"ratio={statistics.median(vouch) / statistics.median(raw):.2f}")


if __name__ == "__main__":
    main()
