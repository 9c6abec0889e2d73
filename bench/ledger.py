"""Contribution ledger ingest (run by hand; CI runs `--smoke`).

A member (a real `FleetService` with its SQLite store in a temp dir, in a hive with two other
members on the simulator) is handed N settled forwards as the node reports them (`handle`:
the kernel's Forward path, the component's channel → peer lookup, the forward key, the hash
chain row, the day totals — one transaction per forward, as in production), alternating over
its channels with members and with an outsider.  The baseline, in the same run: the same rows
(key, canonical body) inserted into a plain table of a store of the same kind, one
transaction per row with the same durability.  Then each forward is delivered again (a
replay: counted once), and the chain is verified.

The last line is `ratio=<ledger forwards/s ÷ raw inserts/s>` (goal ≥ 0.5).

    .venv/bin/python bench/ledger.py [--forwards N] [--smoke]

The forwards alternate over member 0's three channels (to B, to C, to the outsider), so each
of B and C is touched by two thirds of them; up to 15,000 forwards every one is a chain row.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.fleet.service import FleetConfig
from agent.fleet.simfleet import SimMember
from agent.node.models import Forward, ForwardStatus
from agent.node.sim import Network
from agent.node.simnode import SimDriver
from agent.store import contribution as cdb
from agent.store.db import Store
from events.canonical import canonical

FAST = FleetConfig(member_fee_zero=0, retry_base_s=0.2, retry_cap_s=2.0, gossip_gap_s=1)


async def _admit(members: list[SimMember], ids: list[str], joiner: int) -> None:
    ticket = await members[0].fleet.invite(ids[joiner])
    await members[joiner].fleet.join(ticket["ticket"])
    with anyio.fail_after(20):
        while (members[joiner].fleet.status()["joining"] or {}).get("state") != "joined":  # noqa: ASYNC110
            await anyio.sleep(0.02)


def _forwards(n: int, scids: list[str]) -> list[Forward]:
    out = []
    for i in range(n):
        a, b = scids[i % len(scids)], scids[(i + 1) % len(scids)]
        amount = 10_000 + i
        out.append(Forward(
            in_channel=a, out_channel=b, in_msat=amount + 11, out_msat=amount, fee_msat=11,
            status=ForwardStatus.SETTLED, received_time=float(i), resolved_time=float(i),
            payment_hash=secrets.token_hex(32),
        ))  # fmt: skip
    return out


def _raw(tmp: Path, forwards: list[Forward]) -> float:
    store = Store(tmp / "raw.sqlite")
    with store.transaction(0, durable=False) as tx:
        tx.execute("CREATE TABLE raw (key TEXT PRIMARY KEY, body TEXT NOT NULL)")
    start = time.perf_counter()
    for f in forwards:
        with store.transaction(0, durable=False) as tx:
            tx.execute(
                "INSERT INTO raw (key, body) VALUES (?, ?)",
                (f.payment_hash, canonical(f.model_dump()).decode()),
            )
    took = time.perf_counter() - start
    store.close()
    return len(forwards) / took


async def run(n: int) -> bool:
    net = Network(seed=1)
    ids = [net.add_node(f"n{i}", 50_000_000) for i in range(3)]
    outsider = net.add_node("x", 50_000_000)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        net.open_channel(ids[a], ids[b], 5_000_000, push_msat=2_500_000_000)
    net.open_channel(ids[0], outsider, 5_000_000, push_msat=2_500_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        async with SimDriver(net), anyio.create_task_group() as tg:
            members = [SimMember(net, ids[i], Path(tmp) / f"m{i}", config=FAST) for i in range(3)]
            for m in members:
                await m.start(tg)
            await members[0].fleet.genesis()
            await _admit(members, ids, 1)
            await _admit(members, ids, 2)
            svc = members[0].fleet
            scids = sorted(c.short_channel_id for c in await svc.kernel.node.channels())
            forwards = _forwards(n, scids)
            raw_rate = _raw(Path(tmp), forwards)
            start = time.perf_counter()
            for fwd in forwards:
                await svc.handle(fwd)
            rate = n / (time.perf_counter() - start)
            for fwd in forwards[: n // 10]:
                await svc.handle(fwd)  # replayed: counted once
            t0 = time.perf_counter()
            checked = cdb.verify(svc.store)
            verify_s = time.perf_counter() - t0
            counts = cdb.counts(svc.store)
            own_forwards = svc.contribution_view()["own"]["forwards"]
            for m in members:
                await m.stop()
            tg.cancel_scope.cancel()
    ok = checked["ok"] and own_forwards == n
    ok = ok and counts.get("forwards_duplicate", 0) == n // 10
    print(f"forwards={n} ledger={rate:,.0f}/s raw_inserts={raw_rate:,.0f}/s")
    print(f"replays counted once: {counts.get('forwards_duplicate', 0)} of {n // 10}")
    print(f"chain verified: {checked['ok']} ({checked['rows']} rows in {verify_s:.2f} s)")
    print(f"past the per-day bound (summed into the rollup): {counts.get('forwards_rolled', 0)}")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    print(f"ratio={rate / raw_rate:.2f} (goal >= 0.5)")
    return ok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # (9,000: every member stays under the 10,000 rows a day of its own, so each forward is a
    # chain row; past that, forwards are summed into the day's rollup and cost less)
    p.add_argument("--forwards", type=int, default=9_000)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    n = 300 if args.smoke else args.forwards
    sys.exit(0 if anyio.run(run, n) else 1)


if __name__ == "__main__":
    main()
