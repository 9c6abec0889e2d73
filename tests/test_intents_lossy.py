"""Intent races among ten real members (kernel, stores on disk, signed custom messages on the
simulator) while the network loses a quarter of all messages and reorders a fifth: on every
target at most one member opens, every intent ends (done or aborted), and the opens the
simulator shows are exactly the intents done.  (Ten thousand races on the same rules:
tests/test_intent_races.py.)"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from agent.store import intents as idb
from events.errors import IntentConflict
from tests.fleet_world import FAST, Fleet, fleet

pytestmark = pytest.mark.anyio

LOSSY = replace(FAST, intent_hold_s=10, intent_expiry_s=60, sync_interval_s=5)
MEMBERS, TARGETS, BATCHES = 10, 8, 10
AMOUNT = 200_000


def channels_to(f: Fleet, target: str) -> int:
    return sum(1 for c in f.net.channels.values() if c.open and target in (c.a, c.b))


async def formed(f: Fleet) -> None:
    """The hive of every member (as tests/test_fleet_sync.py `_hive`, with room for a busy CI)."""
    await f.members[0].fleet.genesis()
    for i in range(1, len(f.members)):
        ticket = await f.members[0].fleet.invite(f.ids[i])
        await f.members[i].fleet.join(ticket["ticket"])
        assert (await f.joined(i, limit_s=60))["state"] == "joined"
    await f.settle(limit_s=90)
    await f.gossiped(limit_s=90)
    await f.quiet(limit_s=90)


async def ended(f: Fleet, owner: int, intent_id: str, limit_s: float) -> str:
    """The intent's end at its owner (a done one once its action is recorded)."""
    row = None
    with anyio.move_on_after(limit_s):
        while True:
            row = idb.get(f.members[owner].fleet.store, intent_id)
            status = row.lock.status.value if row is not None else ""
            if (
                row is not None
                and status in ("failed", "aborted", "done")
                and (status != "done" or row.exec == "finished")
            ):
                return status
            await anyio.sleep(0.05)
    raise AssertionError(f"intent {intent_id[:8]} of member {owner} did not end: {row}")


async def one_batch(f: Fleet, rng: random.Random, targets: list[str]) -> dict[str, list[str]]:
    """Every target raced for by two or three members at once; each racer's end by target."""
    asked: list[tuple[int, str, str]] = []
    ends: dict[str, list[str]] = {t: [] for t in targets}

    async def ask(i: int, target: str) -> None:
        try:
            row = await f.members[i].fleet.intend("channel_open", target, AMOUNT)
        except IntentConflict:  # (it knew of a lock on the target already: stood down)
            ends[target].append("refused")
            return
        asked.append((i, target, row["id"]))

    async with anyio.create_task_group() as tg:
        for target in targets:
            for i in rng.sample(range(MEMBERS), rng.randint(2, 3)):
                tg.start_soon(ask, i, target)
    for i, target, intent_id in asked:
        ends[target].append(await ended(f, i, intent_id, limit_s=120))
    return ends


@pytest.mark.timeout(900)
async def test_ten_members_race_on_a_lossy_network_without_a_duplicate_open(
    tmp_path: Path,
) -> None:
    rng = random.Random(16)
    async with fleet(tmp_path, MEMBERS, config=LOSSY) as f:
        await formed(f)
        f.net.loss, f.net.reorder = 0.25, 0.2
        wins = 0
        for b in range(BATCHES):  # fresh external nodes each batch
            targets = [f.net.add_node(f"ext{b}-{k}", 1_000_000) for k in range(TARGETS)]
            before = {t: channels_to(f, t) for t in targets}
            ends = await one_batch(f, rng, targets)
            for t in targets:
                opened = channels_to(f, t) - before[t]
                assert opened == ends[t].count("done") <= 1, (t[:8], opened, ends[t])
                wins += opened
        assert wins >= BATCHES * TARGETS // 2, wins  # most races are won by someone
        for m in f.members:  # nothing left pending at any owner
            assert [r for r in idb.own_open(m.fleet.store) if r.lock.status == "pending"] == []
