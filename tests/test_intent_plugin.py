"""Fleet intent locks through three real plugin processes on the simulator's RPC socket (issue
16 §6): every fleet byte goes plugin → `sendcustommsg` → simulated peer → the peer's `custommsg`
hook, and an intent's action (a channel open) runs through each node's own governance — the
Nostr agent runs (`--hive-relays`: a real relay) in `hive-governance-mode=autonomous`, where a
small open (danger 5, below 1M sat, moderate preset) runs without the operator.  The real effect
is watched where it happens: the simulator's channels.

- two members `hive-expand` to the same outside node at the same moment: one channel appears,
  one intent ends done, the other aborted (tie-breaker or a committed conflict), on all three;
- a plugin SIGKILLs itself (`HIVE_CRASH_AT`) after the committed intent's open was claimed and
  before it ran, or after it ran and before its outcome was recorded; started again on the same
  lightning-dir it settles the claim by asking its governance: exactly one channel, done on all.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest

from agent.cln_plugin import TEST_ENV
from agent.node.sim import Network
from agent.node.simnode import SimDriver
from tests.fleet_world import mesh
from tests.test_fleet_plugin import PluginNode, until
from tests.test_fleet_plugin_sync import TIMINGS

pytestmark = pytest.mark.anyio

LIMIT_S = 60  # each wait; usually a few seconds
AMOUNT_SAT = 200_000  # danger 5 (below 1M sat): runs without the operator when autonomous
ENDED = {"done", "failed", "aborted", "expired"}


def channels_to(net: Network, a: str, b: str) -> list[str]:
    """The simulator's open channels between a and b: the real effect of an open."""
    return [
        scid
        for scid, ch in net.channels.items()
        if {ch.a, ch.b} == {a, b} and not getattr(ch, "closed", False)
    ]


async def intents_on(n: PluginNode, target: str) -> list[dict[str, Any]]:
    listed = await n.call("hive-intents")
    rows = listed["intents"] if isinstance(listed, dict) else listed
    return [r for r in rows if r["kind"] == "channel_open" and r["target"] == target]


async def form_hive(net: Network, ids: list[str], tg: Any, relay_url: str) -> list[PluginNode]:
    options = {"hive-relays": relay_url, "hive-governance-mode": "autonomous"}
    nodes = [await PluginNode(net, ids[i], tg, options).start() for i in range(3)]
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
    net, ids = mesh(3, extra=0)
    target = net.add_node("target", 20_000_000)
    for i in range(3):
        net.connect(ids[i], target)
    async with SimDriver(net), anyio.create_task_group() as tg:
        nodes: list[PluginNode] = []
        try:
            started = time.monotonic()
            nodes = await form_hive(net, ids, tg, relay_url)
            a, b, c = nodes
            replies: dict[int, Any] = {}

            async def expand(i: int) -> None:
                replies[i] = await nodes[i].call("hive-expand", node_id=target, amount_sat=AMOUNT_SAT)

            async with anyio.create_task_group() as race:  # the same moment
                race.start_soon(expand, 0)
                race.start_soon(expand, 1)
            print("replies", replies)

            views = await settled(nodes, target, 2)
            for v in views:
                statuses = sorted(r["status"] for r in v)
                assert statuses == ["aborted", "done"], v
                loser = next(r for r in v if r["status"] == "aborted")
                assert loser["reason"] in ("tie_breaker_loss", "conflict_committed"), loser
            opened = [channels_to(net, ids[i], target) for i in range(3)]
            assert sum(len(o) for o in opened) == 1, opened
            winner = next(r for r in views[0] if r["status"] == "done")
            assert opened[ids.index(winner["owner"])], (winner, opened)
            print(f"took {time.monotonic() - started:.1f} s; {views[0]}")
        finally:
            for n in nodes:
                n._stop.set()
