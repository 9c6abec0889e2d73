"""A whole simulated fleet in one process, for the settlement's SIGKILL tests
(tests/test_settlement_crash.py): `python -m tests.settle_child HOME PHASE`.

- `form`: four meshed nodes, the hive formed (member 0 founded it, the others joined); the
  network is journalled to HOME/net.jsonl after every change of a node (sim_state.Journal),
  each member's store is HOME/m<i>/fleet.sqlite.
- `settle`: the network and the stores as they were left; a grace after the week's end, so
  the first in rank proposes, and runs until every member holds the week executed (exit 0,
  a JSON line on stdout).  With HIVE_CRASH_AT set, a payer SIGKILLs itself at that point.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anyio

from agent.fleet.settlement_rules import period_bounds
from agent.fleet.simfleet import SimMember
from agent.node import sim_state
from agent.node.simnode import SimDriver
from tests.fleet_world import Fleet, mesh
from tests.settle_world import GRACE_S, PERIOD, SETTLE, ShiftedClock, make_ledgers

N = 4


async def main(home: Path, phase: str) -> int:
    if phase == "form":
        net, ids = mesh(N, extra=1)
        start = period_bounds(PERIOD)[1] + 1
        (home / "meta.json").write_text(json.dumps({"ids": ids, "formed": time.time()}))
    else:
        meta = json.loads((home / "meta.json").read_text())
        ids = meta["ids"]
        net = sim_state.load(home / "net.jsonl", time.monotonic)
        for i, a in enumerate(ids):  # (the links went down with the last run: back up)
            for b in ids[i + 1 :]:
                net.connect(a, b)
        start = period_bounds(PERIOD)[1] + GRACE_S + 2 + int(time.time() - meta["formed"])
    journal = sim_state.Journal(net, home / "net.jsonl")
    clock = ShiftedClock(start)
    ledgers = make_ledgers(ids, N)
    async with SimDriver(net), anyio.create_task_group() as tg:
        members = [
            SimMember(
                net,
                ids[i],
                home / f"m{i}",
                clock=clock,
                config=SETTLE,
                ledger=ledgers[i],
                on_change=journal.save,
            )
            for i in range(N)
        ]
        for m in members:
            await m.start(tg)
        world = Fleet(net, ids, members, tg)
        if phase == "form":
            await members[0].fleet.genesis()
            for j in range(1, N):
                await world.admit(0, j)
            await world.settle(limit_s=20)
        else:
            with anyio.fail_after(40):
                while not all(
                    m.fleet.settlement_view(PERIOD)["state"] == "executed" for m in members
                ):
                    await anyio.sleep(0.05)
        for m in members:
            await m.stop()
        journal.save()
        journal.close()
        tg.cancel_scope.cancel()
    print(json.dumps({"phase": phase, "ok": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, Path(sys.argv[1]), sys.argv[2]))
