"""Demo act: intent locks, the planner and the zero-fee bridge, on three simulated members (ada,
ben, cyd, each with its own store) next to a small external network (ext0 … ext9, random public
channels) and oscar, an outsider with no channels.

1. The race: ada and ben ask for the lock on a channel to oscar at the same moment; the
   conflict rule picks one, which opens, and the other stands down with its reason.  The
   simulator must then hold exactly one channel to oscar.
2. The planner under the operator's governance: cyd's fleet actions go through its node
   agent's command path (`NodeService` + `LocalActions`, the plugin's wiring; governance mode
   operator).  cyd's plan recommends an expansion (its reason is printed); the planner takes
   the intent lock, the lock commits and the open waits in the node's queue; no channel yet.
   The operator approves it (what `hive-approve` records) and the open runs, once.
3. The bridge: each member's reconcile (every `bridge_interval_s` in a running agent; called
   directly here) sets the channels among members to 0/0 — read back from the simulator — and
   the channels to outsiders keep their fees.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from agent.advisory.approvals import vote
from agent.advisory.local import LocalActions, command_id_for
from agent.advisory.node import NodeService
from agent.advisory.policy import Governance, Mode, PolicyConfig
from agent.clock import SystemClock
from agent.demo.common import until
from agent.demo.narrator import Say
from agent.fleet.planner_model import PlannerConfig
from agent.fleet.service import FleetConfig
from agent.fleet.simfleet import SimMember, sim_keys
from agent.node.sim import OPEN_FEE_SAT, Network
from agent.node.sim_graph import add_random_external_graph
from agent.node.simnode import SimBackend, SimDriver
from agent.settings import RelaysConfig, Settings
from agent.store import intents as idb
from agent.transport import Transport

CONFIG = FleetConfig(
    member_fee_zero=0,  # the bridge runs when the act says so (step 3), not at the first tick
    planner_interval_s=0,  # the plan is asked for (step 2), not computed by itself
    retry_base_s=0.2, retry_cap_s=2.0, gossip_gap_s=1, sync_gap_s=1, sync_join_grace_s=1,
)  # fmt: skip
NAMES = ["ada", "ben", "cyd", "oscar"]
RACE_SAT = 1_000_000
MESH_SAT = 1_000_000
NOWHERE = RelaysConfig.single("ws://127.0.0.1:9")  # never connected: cyd's receipts stay local
ENDED = ("done", "failed", "aborted", "expired")


def network() -> tuple[Network, list[str], list[str]]:
    """ada, ben and cyd with a channel between each pair and a live link; oscar on his own;
    ten external nodes with random public channels.  ada and ben have on-chain funds for their
    member channel and one race open only, cyd 30M sat (the planner's candidate opener)."""
    net = Network(seed=16, clock=time.monotonic)
    spare = RACE_SAT + OPEN_FEE_SAT + 200_000
    funds = [MESH_SAT + OPEN_FEE_SAT + spare] * 2 + [MESH_SAT + OPEN_FEE_SAT + 30_000_000, 0]
    ids = [net.add_node(name, sat) for name, sat in zip(NAMES, funds, strict=True)]
    for i, j in ((0, 1), (1, 2), (2, 0)):
        net.open_channel(ids[i], ids[j], MESH_SAT, push_msat=100_000_000)
        net.connect(ids[i], ids[j])
    externals = add_random_external_graph(net, 10, degree=2, seed=5)
    return net, ids, externals


def versions(member: SimMember) -> dict[str, int]:
    return {m["owner"]: m["version"] for m in member.fleet.gossip.topology()["members"]}


async def gossiped(members: list[SimMember], timeout_s: float = 15) -> None:
    """Every member's fresh state record (forced now) held by every member."""
    for m in members:
        await m.fleet.gossip.check(force=True)
    with anyio.fail_after(timeout_s):
        while True:
            latest = {m.node_id: versions(m).get(m.node_id) for m in members}
            if all(versions(m).items() >= latest.items() for m in members):
                return
            await anyio.sleep(0.05)


async def ended(member: SimMember, intent_id: str, timeout_s: float = 15) -> dict[str, Any]:
    """The owner's record of its intent once it is over (done, failed, aborted)."""
    with anyio.fail_after(timeout_s):
        while True:
            row = idb.get(member.fleet.store, intent_id)
            if row is not None and row.lock.status.value in ENDED:
                return row.to_dict()
            await anyio.sleep(0.05)


def channels_between(net: Network, a: str, b: str) -> list[str]:
    return [s for s, c in net.channels.items() if c.open and {c.a, c.b} == {a, b}]


def fee(net: Network, scid: str, node: str) -> tuple[int, int]:
    """(base msat, ppm) `node` charges on `scid`, from the simulator's own books."""
    policy = net.channels[scid].policy[node]
    return policy.base_msat, policy.ppm


async def form_hive(say: Say, members: list[SimMember]) -> None:
    ada = members[0].fleet
    hive = (await ada.genesis())["hive_id"]
    for joiner in members[1:]:
        ticket = await ada.invite(joiner.fleet.me, valid_hours=24)
        await joiner.fleet.join(ticket["ticket"])
        await until(
            lambda j=joiner: (j.fleet.status()["joining"] or {}).get("state") == "joined", 15
        )
    await gossiped(members)
    say(f"ada: hive-genesis → {hive}; ben and cyd invited and joined; state records exchanged")


async def race(say: Say, net: Network, members: list[SimMember], oscar: str) -> dict[str, Any]:
    """ada and ben ask for the same lock at the same moment: one opens, one stands down."""
    racers = members[:2]
    started: dict[str, dict[str, Any]] = {}

    async def ask(m: SimMember) -> None:
        started[m.node_id] = await m.fleet.intend("channel_open", oscar, RACE_SAT)

    async with anyio.create_task_group() as tg:
        for m in racers:
            tg.start_soon(ask, m)
    say(
        f"ada and ben, at the same moment: intend channel_open oscar {RACE_SAT:,} sat → "
        f"both pending ({', '.join(started[m.node_id]['id'][:8] + '…' for m in racers)})"
    )
    ends = [await ended(m, started[m.node_id]["id"]) for m in racers]
    name = {m.node_id: NAMES[i] for i, m in enumerate(members)}
    done = [e for e in ends if e["status"] == "done"]
    lost = [e for e in ends if e["status"] == "aborted"]
    opened = channels_between(net, racers[0].node_id, oscar)
    opened += channels_between(net, racers[1].node_id, oscar)
    if len(done) != 1 or len(lost) != 1 or len(opened) != 1:
        raise RuntimeError(f"the race did not end with one open: {ends}, channels {opened}")
    winner, loser = done[0], lost[0]
    say(f"{name[winner['owner']]} wins: its lock committed and the open ran ({winner['outcome']})")
    say(
        f"{name[loser['owner']]} stands down: aborted, reason {loser['reason']} "
        f"(the rule: the lower SHA-256(kind ‖ target ‖ owner) wins, the same on every member)"
    )
    say(f"the simulator holds exactly {len(opened)} channel to oscar: {opened[0]}")
    return {
        "target": "oscar",
        "winner": name[winner["owner"]],
        "loser": name[loser["owner"]],
        "loser_reason": loser["reason"],
        "channels_to_target": len(opened),
        "scid": opened[0],
    }


def operator_node(home: Path, net: Network, node_id: str) -> tuple[NodeService, LocalActions]:
    """cyd's node agent, as the plugin wires it: the command path (`NodeService`: danger,
    limits, approvals, receipts) and the fleet's port into it, governance mode operator.  No
    relay is needed: the fleet's receipts go to the node's own principal and stay local."""
    home.mkdir(parents=True, exist_ok=True)
    keys = sim_keys(net, node_id)
    host = Transport(Settings(home=home), keys, NOWHERE, clock=SystemClock())
    service = NodeService(host, SimBackend(net, node_id), PolicyConfig())
    return service, LocalActions(service, Governance(Mode.OPERATOR))


async def recommended(say: Say, cyd: SimMember, alias: dict[str, str]) -> dict[str, Any]:
    """cyd's `hive-plan`: the expansion it gives cyd, its reason in the members' names."""
    current = await cyd.fleet.plan()
    mine = [e for e in current["expansions"] if e["member"] == cyd.node_id]
    if not mine:
        raise RuntimeError(f"the plan gives cyd no expansion: {current['expansions']}")
    e = dict(mine[0])
    for n, a in alias.items():
        e["reason"] = str(e["reason"]).replace(n[:12] + "…", a)
    say(
        f"cyd: hive-plan → expansion cyd → {alias[e['node']]} {e['amount_sat']:,} sat "
        f"(score {e['score']:.3f}); why: {e['reason']}"
    )
    return e


async def expansion(
    say: Say, net: Network, cyd: SimMember, node: NodeService, alias: dict[str, str]
) -> dict[str, Any]:
    """cyd's plan recommends an open; the planner takes the lock, the open waits for the
    operator; approved, it runs once."""
    e = await recommended(say, cyd, alias)
    target, reason = e["node"], e["reason"]
    taken = (await cyd.fleet.planning.act())["expansions"]
    intent = next(t["intent"] for t in taken if t["node"] == target)
    command = command_id_for(intent)
    store = node.agent.store

    def waiting() -> bool:
        row = idb.get(cyd.fleet.store, intent)
        return (
            row is not None
            and row.exec == "waiting"
            and any(p["id"] == command for p in node.pending())
        )

    await until(waiting, 15)
    row = idb.get(cyd.fleet.store, intent)
    assert row is not None
    oks = sorted(alias[n] for n, v in row.lock.acks.items() if v == "ok")
    before = len(channels_between(net, cyd.node_id, target))
    say(
        f"the planner takes the intent lock {intent[:8]}… → {row.lock.status.value} "
        f"({' and '.join(oks)} answered ok); the open goes to cyd's governance, mode operator: "
        f"queued as command {command[:12]}… (hive-pending), the lock's action {row.exec}; "
        f"channels to {alias[target]} now: {before}"
    )
    vote(store, command[:12], "approve", SystemClock().now())
    say(
        f"the operator: hive-approve {command[:12]}… (its vote recorded in cyd's store) → "
        "cyd's command loop runs the open"
    )
    done = await ended(cyd, intent, 20)
    after = channels_between(net, cyd.node_id, target)
    if done["status"] != "done" or before != 0 or len(after) != 1:
        raise RuntimeError(f"the approved expansion did not open once: {done}, {after}")
    say(
        f"intent {intent[:8]}… {done['status']}: cyd opened {after[0]}, the only channel to "
        f"{alias[target]}"
    )
    return {
        "member": "cyd",
        "node": alias[target],
        "amount_sat": e["amount_sat"],
        "reason": reason,
        "governance": "operator",
        "lock_before_approval": row.lock.status.value,
        "waited_for_operator": row.exec == "waiting",
        "channels_before_approval": before,
        "approved": True,
        "status": done["status"],
        "channels_after": len(after),
        "scid": after[0],
    }


async def bridge(
    say: Say, net: Network, members: list[SimMember], outside: list[str]
) -> dict[str, Any]:
    """Each member's bridge reconcile: member channels at 0/0, outsiders' channels untouched."""
    ids = {m.node_id for m in members}
    inner = [s for s, c in net.channels.items() if c.open and {c.a, c.b} <= ids]
    kept = {s: fee(net, s, next(n for n in (c.a, c.b) if n in ids)) for s in outside
            for c in [net.channels[s]]}  # fmt: skip
    was = {s: [fee(net, s, n) for n in (net.channels[s].a, net.channels[s].b)] for s in inner}
    modes = {str((await m.fleet.planning.reconcile()).get("mode")) for m in members}
    now = {s: [fee(net, s, n) for n in (net.channels[s].a, net.channels[s].b)] for s in inner}
    zero = all(f == (0, 0) for fees in now.values() for f in fees)
    still = {s: fee(net, s, next(n for n in (c.a, c.b) if n in ids)) for s in outside
             for c in [net.channels[s]]}  # fmt: skip
    if not zero or still != kept or modes != {"own_fees"}:
        raise RuntimeError(f"bridge: member fees {now}, outsiders {kept} → {still}, {modes}")
    first = next(iter(was.values()))[0]
    say(
        f"the bridge (cl-revenue-ops not loaded: mode {modes.pop()}) on each member: the "
        f"{len(inner)} member channels go from {first[0]} msat + {first[1]} ppm to 0/0 both ways "
        "(read back from the simulator)"
    )
    say(
        "the channels to outsiders keep their fees: "
        + ", ".join(f"{s} {b} msat + {p} ppm" for s, (b, p) in still.items())
    )
    return {
        "mode": "own_fees",
        "member_channels": len(inner),
        "member_fees_zero": zero,
        "outsider_fees": {s: {"base_msat": b, "ppm": p} for s, (b, p) in still.items()},
        "outsider_fees_kept": still == kept,
    }


async def intents_act(say: Say) -> dict[str, Any]:
    net, ids, externals = network()
    alias = {n: net.node(n).alias for n in [*ids, *externals]}
    say(
        "simulated network: ada, ben and cyd (the hive to be, a channel between each pair), "
        f"{len(externals)} external nodes with public channels, and oscar (no channels yet)"
    )
    planner = PlannerConfig(max_expansions=1)
    with tempfile.TemporaryDirectory(prefix="hive-intents-") as tmp:
        async with SimDriver(net), anyio.create_task_group() as tg:
            members = [
                SimMember(net, ids[i], Path(tmp) / NAMES[i], config=CONFIG, governed=i == 2,
                          planner=planner)
                for i in range(3)
            ]  # fmt: skip
            for m in members:
                await m.start(tg)
            node, actions = operator_node(Path(tmp) / "cyd-agent", net, ids[2])
            members[2].fleet.actions = actions  # as the plugin does while its agent runs
            tg.start_soon(node.run)
            await form_hive(say, members)
            raced = await race(say, net, members, ids[3])
            await gossiped(members)
            expanded = await expansion(say, net, members[2], node, alias)
            fees = await bridge(say, net, members, [raced["scid"], expanded["scid"]])
            for m in members:
                await m.stop()
            tg.cancel_scope.cancel()
        node.agent.store.close()  # (cyd's node agent stopped with the task group)
    return {"race": raced, "expansion": expanded, "bridge": fees}
