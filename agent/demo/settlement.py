"""Demo act: the weekly settlement on four simulated members (ada, ben, cyd, dee, each with its
own store) between two outside nodes that pay each other all week through them.

1. A simulated week of forwards: 40 payments from x0 to x1 (and back) routed through the
   members' channels — real forwards on the simulator, each member earning the fees its own
   fee policy asks.  Each member's contribution ledger takes in its node's forwards; once the
   week is over every member reports its figures for it (fees, capacity, volume forwarded,
   uptime) to the others, and the reports held are the settlement's inputs (the kernel's
   `Ledger` port).
2. The plan, with its arithmetic: every member's net, weight, share and balance, the minimum
   payment and the payments (`hive-settlement`).
3. A grace after the week's end, the first member in rank proposes; every member recomputes
   and agrees; each payer asks its receiver for an invoice over custom messages and pays it
   over the simulated network; EXECUTED carries the preimages.  Balances before and after.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from agent.clock import ShiftedClock
from agent.demo.common import until
from agent.demo.narrator import Say
from agent.fleet.contribution_rules import period_days
from agent.fleet.service import FleetConfig
from agent.fleet.settlement_rules import period_bounds
from agent.fleet.simfleet import SimMember
from agent.node.sim import Network
from agent.node.simnode import SimDriver
from agent.store import contribution as cdb

PERIOD = "2026-40"
NAMES = ("ada", "ben", "cyd", "dee")
PPM = (50, 400, 150, 900)  # each member's fee rate
CFG = FleetConfig(
    member_fee_zero=0, retry_base_s=0.2, retry_cap_s=2.0, gossip_gap_s=1, sync_join_grace_s=1,
    sync_gap_s=1, planner_interval_s=0, settlement_grace_s=60, settlement_check_s=0,
    settlement_retry_s=0.2, settlement_retry_cap_s=1.0,
)  # fmt: skip


def world() -> tuple[Network, list[str], list[str]]:
    net = Network(seed=18, clock=time.monotonic)
    ids = [net.add_node(n, 30_000_000) for n in NAMES]
    outside = [net.add_node(f"x{i}", 30_000_000) for i in range(2)]
    for i in range(4):
        for j in range(i + 1, 4):
            net.open_channel(ids[i], ids[j], 4_000_000, push_msat=2_000_000_000)
        for x in outside:
            scid = net.open_channel(x, ids[i], 4_000_000 + 1_000_000 * i, push_msat=2_000_000_000)
            net.set_policy(ids[i], scid, ppm=PPM[i], base_msat=1_000)
    return net, ids, outside


def holdings(net: Network, node: str) -> int:
    return sum(c.balance[node] for c in net.channels.values() if node in (c.a, c.b))


def _fees_msat(m: SimMember) -> int:
    first, last = period_days(PERIOD)
    return cdb.totals(m.fleet.store, first, last).get(cdb.OWN, {}).get("fees_msat", 0)


def earned(net: Network, before: dict[str, int]) -> dict[str, int]:
    """Each member's routing fees so far (what its channels hold beyond its start), in sat."""
    return {n: (holdings(net, n) - before[n]) // 1000 for n in before}


async def settlement_act(say: Say) -> dict[str, Any]:
    net, ids, outside = world()
    name = dict(zip(ids, NAMES, strict=True))
    end = period_bounds(PERIOD)[1]
    clock = ShiftedClock(end - 120)  # Sunday 23:58 UTC: the week's last two minutes
    with tempfile.TemporaryDirectory(prefix="hive-demo-settle-") as tmp:
        async with SimDriver(net), anyio.create_task_group() as tg:
            members = [SimMember(net, n, Path(tmp) / name[n], clock=clock, config=CFG)
                       for n in ids]  # fmt: skip
            for m in members:
                await m.start(tg)
            await members[0].fleet.genesis()
            for m in members[1:]:
                ticket = await members[0].fleet.invite(m.node_id)
                await m.fleet.join(ticket["ticket"])
                await until(lambda m=m: m.fleet.status()["tier"] == "neophyte", 15)
            start = {n: holdings(net, n) for n in ids}
            for k in range(40):  # the week's traffic: the cheapest member first, until dry
                invoice = net.invoice(outside[1], 150_000_000 + 10_000_000 * (k % 5), f"w{k}")
                net.pay(outside[0], invoice.bolt11)
            fees = {name[n]: v for n, v in earned(net, start).items()}
            got = {n: holdings(net, n) - start[n] for n in ids}  # (msat)

            def ingested() -> bool:  # every member's ledger has taken in its forwards
                return all(_fees_msat(m) >= got[m.node_id] for m in members)

            await until(ingested, 15)
            say(f"a week of forwards: 40 payments from x0 to x1 through the members; fees {fees}")
            clock.advance(end + 5 - clock.now())  # the week is over: each member reports it

            def reported() -> bool:
                return all(len(m.fleet.contribution.inputs(m.fleet.store, PERIOD)) == 4
                           for m in members)  # fmt: skip

            for m in members:
                m.fleet.kernel.wake()
            await until(reported, 30)
            say("the week is over: every member reported its figures; each holds all four")
            preview = members[0].fleet.settlement_view(PERIOD)["preview"]
            for row in preview["members"]:
                say(
                    f"{name[row['node']]}: fees {row['fees_sat']} − costs"
                    f" {row['rebalance_costs_sat']} = net {row['net_sat']}; capacity"
                    f" {row['capacity_sat']:,}, forwarded {row['forwards_msat'] // 1000:,} sat,"
                    f" uptime {row['uptime_pct']} % → weight {row['weight']}, share"
                    f" {row['share_sat']}, balance {row['balance_sat']:+d}"
                )
            say(f"formula: {preview['formula']}")
            say(f"total {preview['totals']['net_sat']} sat; minimum payment"
                f" {preview['min_payment_sat']}; forgiven {preview['forgiven_sat']}")  # fmt: skip
            for p in preview["payments"]:
                say(f"plan: {name[p['payer']]} pays {name[p['receiver']]} {p['amount_sat']} sat")
            before = {n: holdings(net, n) for n in ids}
            total = net.total_msat()
            clock.advance(CFG.settlement_grace_s)  # a grace after the week: proposed now
            for m in members:
                m.fleet.kernel.wake()

            def executed() -> bool:
                return all(m.fleet.settlement_view(PERIOD)["state"] == "executed"
                           for m in members)  # fmt: skip

            await until(executed, 30)
            view = members[0].fleet.settlement_view(PERIOD)
            say(f"{name[view['proposer']]} proposed {view['plan_hash'][:12]}…; agreed by"
                f" {view['majority']['agreeing']} of {view['majority']['members']}; executed,"
                f" preimages checked by every member")  # fmt: skip
            moved = {name[n]: (holdings(net, n) - before[n]) // 1000 for n in ids}
            say(f"balances moved (sat): {moved}; money in the network unchanged:"
                f" {net.total_msat() == total}")  # fmt: skip
            for m in members:
                await m.stop()
            tg.cancel_scope.cancel()
    return {
        "period": PERIOD, "plan_hash": view["plan_hash"], "state": view["state"],
        "payments": preview["payments"], "moved_sat": moved, "conserved": net.total_msat() == total,
        "fees_sat": fees,
    }  # fmt: skip
