"""Fleet intent locks through three real plugin processes on the simulator's RPC socket (issue
16 §6): every fleet byte goes plugin → `sendcustommsg` → simulated peer → the peer's `custommsg`
hook, and an intent's action (a channel open) runs through each node's own governance — the
Nostr agent runs (`--hive-relays`: a real relay) in `hive-governance-mode=autonomous`, where a
small open (danger 5, below 1M sat, moderate preset) runs without the operator.  The real effect
is watched where it happens: the simulator's channels.

- two members `hive-expand` to the same outside node at the same moment: one channel appears,
  one intent ends done, the other aborted (tie-breaker or a committed conflict), on all three;
- a plugin SIGKILLs itself (`HIVE_CRASH_AT`, real SIGKILL) around its committed open:
  `intent.before_execute` (claimed, not handed to governance), `intent.after_execute` (handed
  to governance — in the plugin the executor hands over without waiting, so the open has not
  run yet), `command.after_execute` (the open ran on the node; neither governance nor the
  intent recorded it); started again on the same lightning-dir without the crash point, it
  settles the claim by asking its governance: exactly one channel, one command with one ok
  receipt, the intent done on all three.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest

from agent.advisory.local import command_id_for
from agent.cln_plugin import TEST_ENV
from agent.node.sim import Network
from agent.node.simnode import SimDriver
from agent.store import advisory as repo
from agent.store.db import Store
from tests.fleet_world import mesh
from tests.test_fleet_plugin import PluginNode, until
from tests.test_fleet_plugin_sync import TIMINGS

pytestmark = pytest.mark.anyio

LIMIT_S = 60  # each wait; usually a few seconds
AMOUNT_SAT = 200_000  # danger 5 (below 1M sat): runs without the operator when autonomous
ENDED = {"done", "failed", "aborted", "expired"}


def world() -> tuple[Network, list[str], str]:
    """Three fleet nodes meshed (channels, links) and an outside node linked to each, with no
    channel to any of them: the expansion target."""
    net, ids = mesh(3, extra=0)
    target = net.add_node("target", 20_000_000)
    for i in range(3):
        net.connect(ids[i], target)
    return net, ids, target


def channels_to(net: Network, a: str, b: str) -> list[str]:
    """The simulator's open channels between a and b: the real effect of an open."""
    return [scid for scid, ch in net.channels.items() if {ch.a, ch.b} == {a, b} and ch.open]


def governed(n: PluginNode, intent_id: str) -> tuple[str, int, str]:
    """The node's governance record of the action an intent guards (read from the plugin's
    store on disk): the command's state, how many receipts, the latest receipt's status."""
    store = Store(n.dir / "hive" / "agent.sqlite")
    cid = command_id_for(intent_id)
    row = repo.command_row(store, cid) or {}
    count = store.conn.execute("SELECT COUNT(*) FROM receipts WHERE command_id = ?", (cid,))
    latest = repo.latest_receipt(store, cid)
    return row.get("state", "none"), count.fetchone()[0], latest.status.value if latest else ""


async def intents_on(n: PluginNode, target: str) -> list[dict[str, Any]]:
    listed = await n.call("hive-intents")
    rows = listed["intents"] if isinstance(listed, dict) else listed
    return [r for r in rows if r["kind"] == "channel_open" and r["target"] == target]


async def form_hive(
    net: Network, ids: list[str], tg: Any, relay_url: str, env: dict[str, str] | None = None
) -> list[PluginNode]:
    """a, b full members and c a neophyte, agreed on all three; each plugin's fleet action
    path is up.  `env`: a's first life's extra environment (a crash point)."""
    options = {"hive-relays": relay_url, "hive-governance-mode": "autonomous"}
    nodes = [
        await PluginNode(net, ids[i], tg, options).start(env if i == 0 else None) for i in range(3)
    ]
    a, b, c = nodes
    await a.call("hive-genesis")
    ticket = await a.call("hive-invite", node_id=ids[1])
    await b.call("hive-join", ticket=ticket["ticket"])
    await until(lambda: _tier(b, "neophyte"), LIMIT_S)
    await a.call("hive-vouch", node_id=ids[1])  # (a, the lone full member, promotes b)
    await until(lambda: _tier(b, "member"), LIMIT_S)
    ticket = await a.call("hive-invite", node_id=ids[2])
    await c.call("hive-join", ticket=ticket["ticket"])
    want = {ids[0]: "member", ids[1]: "member", ids[2]: "neophyte"}

    async def formed() -> bool:
        return all([(await n.view())["members"] == want for n in nodes])

    await until(formed, LIMIT_S)
    for n in nodes:  # the fleet's action path is up (the Nostr agent runs)
        await until(lambda n=n: _actions_on(n), LIMIT_S)
    return nodes


async def _tier(n: PluginNode, tier: str) -> bool:
    return (await n.fleet())["tier"] == tier


async def _actions_on(n: PluginNode) -> bool:
    status = await n.call("hive-status")
    return not str(status["governance"]["fleet_actions"]).startswith("off")


async def settled(nodes: list[PluginNode], target: str, count: int) -> list[list[dict[str, Any]]]:
    """Wait until every node knows `count` intents for an open to target, all ended, and the
    same statuses everywhere; each node's rows (by id)."""

    async def check() -> list[list[dict[str, Any]]] | None:
        views = [sorted(await intents_on(n, target), key=lambda r: r["id"]) for n in nodes]
        shapes = [[(r["id"], r["status"]) for r in v] for v in views]
        if len(shapes[0]) != count or any(s != shapes[0] for s in shapes):
            return None
        return views if all(st in ENDED for _, st in shapes[0]) else None

    return await until(check, LIMIT_S)


@pytest.mark.timeout(300)
async def test_two_members_expand_to_the_same_node_at_once_one_channel_opens(
    relay_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TEST_ENV, json.dumps(TIMINGS))
    net, ids, target = world()
    async with SimDriver(net), anyio.create_task_group() as tg:
        nodes: list[PluginNode] = []
        try:
            started = time.monotonic()
            nodes = await form_hive(net, ids, tg, relay_url)
            a, b, c = nodes
            replies: dict[int, Any] = {}

            async def expand(i: int) -> None:
                replies[i] = await nodes[i].call(
                    "hive-expand", node_id=target, amount_sat=AMOUNT_SAT
                )

            async with anyio.create_task_group() as race:  # the same moment
                race.start_soon(expand, 0)
                race.start_soon(expand, 1)

            views = await settled(nodes, target, 2)
            for v in views:
                statuses = sorted(r["status"] for r in v)
                assert statuses == ["aborted", "done"], v
                loser = next(r for r in v if r["status"] == "aborted")
                assert loser["reason"] in ("tie_breaker_loss", "conflict_committed"), loser
            opened = [channels_to(net, ids[i], target) for i in range(3)]
            assert sum(len(o) for o in opened) == 1, opened
            winner = next(r for r in views[0] if r["status"] == "done")
            loser = next(r for r in views[0] if r["status"] == "aborted")
            w, lo = nodes[ids.index(winner["owner"])], nodes[ids.index(loser["owner"])]
            assert opened[ids.index(winner["owner"])], (winner, opened)
            own = next(r for r in await intents_on(w, target) if r["id"] == winner["id"])
            assert own["exec"] == "finished", own
            # the open ran through the winner's governance, once (one command, one ok receipt)
            assert governed(w, winner["id"]) == ("done", 1, "ok")
            # the loser never handed anything to its governance
            assert governed(lo, loser["id"]) == ("none", 0, "")
            print(
                f"race: took {time.monotonic() - started:.1f} s; loser's reason "
                f"{loser['reason']}; replies {[r['status'] for r in replies.values()]}"
            )
        finally:
            for n in nodes:
                n._stop.set()


# the committed intent's open is claimed in the store, not yet handed to governance; then
# handed to governance (the command stored, idempotent by intent id), the intent's outcome not
# recorded (the plugin's executor hands over without waiting for the node's command loop, so
# the open has not run yet); then the open ran on the node (the channel exists), neither the
# command's outcome and receipt nor the intent's outcome recorded: governance finds the channel
INTENT_POINTS = ["intent.before_execute", "intent.after_execute", "command.after_execute"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("point", INTENT_POINTS)
async def test_a_plugin_killed_around_a_committed_open_opens_exactly_once(
    relay_url: str, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    monkeypatch.setenv(TEST_ENV, json.dumps(TIMINGS))
    net, ids, target = world()
    async with SimDriver(net), anyio.create_task_group() as tg:
        nodes: list[PluginNode] = []
        try:
            started = time.monotonic()
            nodes = await form_hive(net, ids, tg, relay_url, env={"HIVE_CRASH_AT": point})
            a = nodes[0]
            reply = await a.call("hive-expand", node_id=target, amount_sat=AMOUNT_SAT)
            assert reply["status"] == "pending"  # answered before the lock commits

            async def died() -> bool:
                assert a.plugin is not None and a.plugin.process is not None
                return not a.plugin.process.running

            await until(died, LIMIT_S)  # SIGKILLed itself at `point`
            at_death = channels_to(net, ids[0], target)
            await a.stop(kill=True)  # (already dead: exit code -9; lightningd notices)
            await anyio.sleep(1)
            assert channels_to(net, ids[0], target) == at_death  # nothing runs while it is down
            await a.start()  # same lightning-dir, no crash point

            views = await settled(nodes, target, 1)
            for v in views:
                brief = {k: v[0][k] for k in ("status", "exec", "outcome", "reason")}
                assert v[0]["id"] == reply["id"] and v[0]["status"] == "done", brief
            own = views[0][0]
            assert own["exec"] == "finished", own
            assert governed(a, own["id"]) == ("done", 1, "ok")  # run once, one ok receipt
            opened = [channels_to(net, ids[i], target) for i in range(3)]
            assert opened == [opened[0], [], []] and len(opened[0]) == 1, opened
            assert net.channels[opened[0][0]].capacity_sat == AMOUNT_SAT
            await anyio.sleep(3)  # a few more fleet and command loop passes: still just one
            assert channels_to(net, ids[0], target) == opened[0]
            print(
                f"{point}: took {time.monotonic() - started:.1f} s; channels at the kill: "
                f"{len(at_death)}; outcome {own['outcome']!r}"
            )
        finally:
            for n in nodes:
                n._stop.set()
