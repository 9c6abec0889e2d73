"""A child process for tests/test_contribution_crash.py: three simulated members (a network
rebuilt alike from its seed every time, stores on disk under HOME) at a given time.

    python tests/contribution_child.py HOME form NOW   # found the hive, route payments, stop
    python tests/contribution_child.py HOME run NOW    # start again at NOW, run until every
                                                       # member holds every report of the
                                                       # last week, print them as JSON, stop

With HIVE_CRASH_AT=contribution.after_report in its environment, `run` is SIGKILLed right
after the first member commits its report (held and queued) and before it is sent."""

from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path

import anyio

from agent.clock import ShiftedClock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.fleet.settlement_rules import period_of, previous_period
from agent.fleet.simfleet import SimMember
from agent.node.sim import Network
from agent.node.simnode import SimDriver
from agent.store import contribution as cdb
from agent.store import contribution_reports as rdb
from tests.fleet_world import FAST, Fleet


def network() -> tuple[Network, list[str], str]:
    net = Network(seed=21, clock=time.monotonic)
    ids = [net.add_node(f"n{i}", 50_000_000) for i in range(3)]
    x = net.add_node("x", 50_000_000)
    y = net.add_node("y", 50_000_000)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        net.open_channel(ids[a], ids[b], 5_000_000, push_msat=2_500_000_000)
    net.open_channel(ids[0], x, 5_000_000, push_msat=2_500_000_000)
    net.open_channel(ids[1], y, 5_000_000, push_msat=2_500_000_000)
    return net, ids, x + " " + y


async def main(home: Path, phase: str, start: int) -> None:
    net, ids, outsiders = network()
    x, y = outsiders.split()
    clock = ShiftedClock(start)
    async with SimDriver(net), anyio.create_task_group() as tg:
        members = [
            SimMember(net, ids[i], home / f"m{i}", clock=clock, config=FAST) for i in range(3)
        ]
        for m in members:
            await m.start(tg)
        f = Fleet(net, ids, members, tg)
        if phase == "form":
            await members[0].fleet.genesis()
            await f.admit(0, 1)
            await f.admit(0, 2)
            await f.settle()
            for payer, payee, sats in ((x, y, 100_000), (y, x, 70_000)):
                bolt11 = net.invoice(payee, sats * 1000, secrets.token_hex(4)).bolt11
                net.pay(payer, bolt11)
            with anyio.fail_after(10):
                while members[1].fleet.contribution_view()["own"]["forwards"] < 2:
                    await anyio.sleep(0.02)
        else:
            period = previous_period(period_of(clock.now()))
            with anyio.fail_after(30):
                while any(len(rdb.reports(m.fleet.store, period)) < 3 for m in members):
                    await anyio.sleep(0.05)
            await anyio.sleep(0.5)  # (late duplicates would land now)
            out = {
                m.node_id: {
                    "reports": rdb.reports(m.fleet.store, period),
                    "held": cdb.counts(m.fleet.store).get("reports_held", 0),
                }
                for m in members
            }
            print(json.dumps({"period": period, "members": out}), flush=True)
        for m in members:
            await m.stop()
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
