"""Intent locks on the simulator, real members (kernel, stores on disk, custom messages): a
lock commits in one round trip and its action runs once; two members racing for the same
node — one opens, the other stands down; a member that missed an intent learns it by
anti-entropy; and the attacks, each refused with its code and the store unchanged."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from agent.fleet.intent_exec import NodeExecutor
from agent.fleet.intents import MAX_LIVE
from agent.store import intents as idb
from events.errors import IntentConflict, Replayed
from events.fleet import MsgType
from events.fleet.intent import Intent, IntentAbort, IntentAck
from tests.fleet_world import Fleet, Rogue, fleet
from tests.test_fleet import refused
from tests.test_fleet_sync import SYNCED, _hive

pytestmark = pytest.mark.anyio


def opens_to(f: Fleet, target: str) -> dict[str, int]:
    """Channels each member holds with `target`, from the simulator's own books."""
    chans = [c for c in f.net.channels.values() if c.open]
    return {m: sum(1 for c in chans if {c.a, c.b} == {m, target}) for m in f.ids[:-1]}


async def finished(f: Fleet, i: int, intent_id: str, limit_s: float = 15) -> dict:
    with anyio.fail_after(limit_s):
        while True:
            row = idb.get(f.members[i].fleet.store, intent_id)
            if row is not None and row.lock.status.value in ("done", "failed", "aborted"):
                return row.to_dict()
            await anyio.sleep(0.02)


async def test_a_lock_commits_in_one_round_trip_and_the_open_runs_once(tmp_path: Path) -> None:
    async with fleet(tmp_path, 3) as f:
        await _hive(f)
        target = f.ids[-1]
        before = opens_to(f, target)
        first = await f.members[0].fleet.intend("channel_open", target, 2_000_000)
        assert first["status"] == "pending" and set(first["waiting"]) == set(f.ids[1:3])
        done = await finished(f, 0, first["id"])
        assert done["status"] == "done", done
        assert done["acks"] == {f.ids[1]: "ok", f.ids[2]: "ok"}
        after = opens_to(f, target)
        assert after[f.ids[0]] == before[f.ids[0]] + 1
        assert {k: v for k, v in after.items() if k != f.ids[0]} == {
            k: v for k, v in before.items() if k != f.ids[0]
        }
        for i in (1, 2):  # every member saw it end
            assert (await finished(f, i, first["id"]))["status"] == "done"


async def race(f: Fleet, racers: list[int], target: str) -> list[dict]:
    """`racers` ask for the same lock at the same moment; each one's final record."""
    started: dict[int, dict] = {}

    async def ask(i: int) -> None:
        started[i] = await f.members[i].fleet.intend("channel_open", target, 1_500_000)

    async with anyio.create_task_group() as tg:
        for i in racers:
            tg.start_soon(ask, i)
    return [await finished(f, i, started[i]["id"]) for i in racers]


async def test_two_members_race_for_one_node_one_opens_the_other_stands_down(
    tmp_path: Path,
) -> None:
    async with fleet(tmp_path, 3, extra=6) as f:
        await _hive(f)
        winners = []
        for target in f.ids[3:]:
            before = opens_to(f, target)
            ends = await race(f, [0, 1], target)
            statuses = sorted(e["status"] for e in ends)
            assert statuses == ["aborted", "done"], ends
            loser = next(e for e in ends if e["status"] == "aborted")
            assert loser["reason"] in ("tie_breaker_loss", "conflict_committed"), loser
            after = opens_to(f, target)
            assert sum(after.values()) == sum(before.values()) + 1
            winners.append(next(e["owner"] for e in ends if e["status"] == "done"))
        # the rule is per target: over six targets both racers win at least once
        assert set(winners) == {f.ids[0], f.ids[1]}, winners


async def test_attacks_are_refused_by_code_and_change_nothing(tmp_path: Path) -> None:
    async with fleet(tmp_path, 3, extra=3) as f:
        hive = await _hive(f)
        ids, a = f.ids, f.members[0]
        t1, t2 = ids[3], ids[4]
        body = Intent(kind="channel_open", target=t1, amount_sat=1_000_000, expires_at=_soon())

        # an intent from a node outside the hive
        stranger = Rogue(f.net, ids[5])
        frame = stranger.frame(MsgType.INTENT, body, hive=hive)
        await refused(a, "NOT_MEMBER", lambda: stranger.send(ids[0], frame), stranger)

        # an answer to an intent member 0 never announced
        m2 = Rogue(f.net, ids[2])  # (member 2's own node and key: a member gone rogue)
        ack = IntentAck(intent="ab" * 16, verdict="ok")
        frame = m2.frame(MsgType.INTENT_ACK, ack, hive=hive)
        await refused(a, "INVALID_PAYLOAD", lambda: m2.send(ids[0], frame), m2)

        # an abort forged for someone else's intent: member 1's, sent by member 2
        mine = await f.members[1].fleet.intend("channel_open", t2, 1_000_000)
        await finished(f, 0, mine["id"])
        forged = m2.frame(
            MsgType.INTENT_ABORT, IntentAbort(intent=mine["id"], reason="operator"), hive=hive
        )
        await refused(a, "UNAUTHORIZED", lambda: m2.send(ids[0], forged), m2)

        # an illegal move: member 1 "aborting" its own intent after it was done
        m1 = Rogue(f.net, ids[1])
        late = m1.frame(
            MsgType.INTENT_ABORT, IntentAbort(intent=mine["id"], reason="operator"), hive=hive
        )
        await refused(a, "INVALID_TRANSITION", lambda: m1.send(ids[0], late), m1)

        # a flood of intents from one member: beyond MAX_LIVE live ones, RATE_LIMITED
        for k in range(MAX_LIVE):
            flood = body.model_copy(update={"target": _node(k)})
            await m2.send(ids[0], m2.frame(MsgType.INTENT, flood, hive=hive))
        with anyio.fail_after(10):
            while idb.live_count(a.fleet.store, ids[2], a.fleet.kernel.clock.now()) < MAX_LIVE:
                await anyio.sleep(0.02)
            while a.fleet.status()["outbox"].get("pending", 0):  # (the answers, delivered)
                await anyio.sleep(0.02)
        await anyio.sleep(0.3)
        one_more = m2.frame(
            MsgType.INTENT, body.model_copy(update={"target": _node(99)}), hive=hive
        )
        await refused(a, "RATE_LIMITED", lambda: m2.send(ids[0], one_more), m2)
        assert "INTERNAL" not in a.fleet.store.error_counts()


async def test_an_intent_on_a_banned_node_is_refused_and_the_owner_stands_down(
    tmp_path: Path,
) -> None:
    async with fleet(tmp_path, 3, extra=2) as f:
        await _hive(f)
        outsider = f.ids[4]
        for i in (0, 1, 2):  # (three full… the genesis member alone bans in a young hive)
            if (await f.members[i].fleet.ban(outsider, "probing"))["banned"]:
                break
        await f.settle()
        row = await f.members[1].fleet.intend("channel_open", outsider, 1_000_000)
        end = await finished(f, 1, row["id"])
        assert (end["status"], end["reason"]) == ("aborted", "refused"), end
        assert any(v == "refused:BANNED" for v in end["acks"].values()), end


async def test_a_member_that_missed_an_intent_learns_it_by_anti_entropy(tmp_path: Path) -> None:
    async with fleet(
        tmp_path, 3, config=replace(SYNCED, intent_hold_s=10, intent_expiry_s=600)
    ) as f:
        await _hive(f)
        ids, target = f.ids, f.ids[3]
        f.net.disconnect(ids[0], ids[2])  # member 2 cannot hear member 0
        row = await f.members[0].fleet.intend("channel_open", target, 1_000_000, origin="planner")
        done = await finished(f, 0, row["id"], limit_s=30)  # (2 unreachable: not waited for)
        assert done["status"] == "done" and done["acks"] == {ids[1]: "ok"}, done
        # member 2 learns of the lock (and its end) from member 1's fact set
        with anyio.fail_after(30):
            while (got := idb.get(f.members[2].fleet.store, row["id"])) is None or (
                got.lock.status.value != "done"
            ):
                await anyio.sleep(0.1)
        # and so it refuses to race for that node while the finished lock lives
        with pytest.raises(IntentConflict):
            await f.members[2].fleet.intend("channel_open", target, 1_000_000)


def _soon() -> int:
    return int(time.time()) + 300


def _node(k: int) -> str:
    return "02" + f"{k:02x}" * 32


async def test_a_ban_proposal_under_a_lock_is_made_once_and_settles_ok_after_a_crash(
    tmp_path: Path,
) -> None:
    """The recovery path after a crash asks the executor to settle a claimed ban proposal
    again: what this node already did stands, so the intent ends ok, not failed ("interrupted
    by a restart" before), and no second proposal appears."""
    async with fleet(tmp_path, 3) as f:
        await _hive(f)
        target = f.ids[2]
        asked = await f.members[0].fleet.intend("ban_proposal", target)
        done = await finished(f, 0, asked["id"])
        assert done["status"] == "done", done
        proposals = f.members[0].fleet.members()["ban_proposals"]
        assert [p["target"] for p in proposals] == [target], proposals
        row = idb.get(f.members[0].fleet.store, asked["id"])
        assert row is not None
        again = await f.members[0].fleet.intents.executor.settle(row)
        assert again.state == "ok", again
        assert f.members[0].fleet.members()["ban_proposals"] == proposals


async def test_a_ban_this_node_already_proposed_is_ok_not_failed() -> None:
    """Membership refuses a second proposal or vote from the same node (REPLAYED): for the
    intent that asked for it, the proposal stands — ok."""

    async def already(target: str) -> None:
        raise Replayed(f"this node already voted on the proposal against {target[:12]}…")

    outcome = await NodeExecutor.ban(already, "02" + "ab" * 32)
    assert (outcome.state, outcome.detail) == ("ok", "ban already proposed by this node")
