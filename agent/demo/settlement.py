"""Demo act: the weekly settlement on four simulated members (ada, ben, cyd, dee, each with its
own store) between two outside nodes that pay each other all week through them.

1. A simulated week of forwards: 40 payments from x0 to x1 (and back) routed through the
   members' channels — real forwards on the simulator, each member earning the fees its own
   fee policy asks.  Each member's figures for the week (fees, capacity, volume forwarded,
   uptime) come from the forwards its node reported, through the kernel's `Ledger` port (the
   port the contribution ledger fills; here a small ledger reads the forwards directly).
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

from agent.demo.common import until
from agent.demo.narrator import Say
from agent.fleet.service import FleetConfig
from agent.fleet.settlement_rules import MemberInput, period_bounds
from agent.fleet.simfleet import SimMember
from agent.node.models import Forward, ForwardStatus
from agent.node.sim import Network
from agent.node.simnode import SimDriver
from agent.store.db import Db

PERIOD = "2026-40"
NAMES = ("ada", "ben", "cyd", "dee")
PPM = (50, 400, 150, 900)  # each member's fee rate
CFG = FleetConfig(
    member_fee_zero=0, retry_base_s=0.2, retry_cap_s=2.0, gossip_gap_s=1, sync_join_grace_s=1,
    sync_gap_s=1, planner_interval_s=0, settlement_grace_s=60, settlement_check_s=0,
    settlement_retry_s=0.2, settlement_retry_cap_s=1.0,
)  # fmt: skip


class Clock:
    def __init__(self, start: int) -> None:
        self.offset = start - time.time()

    def now(self) -> int:
        return int(time.time() + self.offset)


class ForwardsLedger:
    """Each member's week, from the forwards its node reported (a `Ledger`)."""

    def __init__(self, net: Network, ids: list[str]) -> None:
        self.net, self.ids = net, ids
        self.fees_msat = dict.fromkeys(ids, 0)
        self.volume_msat = dict.fromkeys(ids, 0)
        for node in ids:
            net.listeners[node].append(lambda ev, node=node: self._heard(node, ev))

    def _heard(self, node: str, ev: object) -> None:
        if isinstance(ev, Forward) and ev.status == ForwardStatus.SETTLED:
            self.fees_msat[node] += ev.fee_msat
            self.volume_msat[node] += ev.out_msat

    def inputs(self, store: Db, period: str) -> dict[str, MemberInput]:
        out = {}
        for node in self.ids:
            cap = sum(c.capacity_sat for c in self.net.channels.values() if node in (c.a, c.b))
            out[node] = MemberInput(node, self.fees_msat[node] // 1000, 0, cap,
                                    self.volume_msat[node], 100)  # fmt: skip
        return out

    def disputes(self, store: Db, period: str) -> list[dict[str, Any]]:
        return []


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


async def settlement_act(say: Say) -> dict[str, Any]:
    net, ids, outside = world()
    ledger = ForwardsLedger(net, ids)
    name = dict(zip(ids, NAMES, strict=True))
    for k in range(40):  # the week's traffic: the cheapest member first, until it runs dry
        net.pay(outside[0], net.invoice(outside[1], 150_000_000 + 10_000_000 * (k % 5),
                                        f"w{k}").bolt11)  # fmt: skip
    with anyio.fail_after(5):
        while net.next_due() is not None:  # (the forwards reach the members' listeners)
            net.pump()
            await anyio.sleep(0.01)
    fees = {name[n]: v // 1000 for n, v in ledger.fees_msat.items()}
    say(f"a week of forwards: 40 payments from x0 to x1 through the members; fees {fees}")
    clock = Clock(period_bounds(PERIOD)[1] + 1)
    with tempfile.TemporaryDirectory(prefix="hive-demo-settle-") as tmp:
        async with SimDriver(net), anyio.create_task_group() as tg:
            members = [SimMember(net, n, Path(tmp) / name[n], clock=clock, config=CFG,
                                 ledger=ledger) for n in ids]  # fmt: skip
            for m in members:
                await m.start(tg)
            await members[0].fleet.genesis()
            for m in members[1:]:
                ticket = await members[0].fleet.invite(m.node_id)
                await m.fleet.join(ticket["ticket"])
                await until(lambda m=m: m.fleet.status()["tier"] == "neophyte", 15)
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
            clock.offset += CFG.settlement_grace_s  # a grace after the week: proposed now
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
