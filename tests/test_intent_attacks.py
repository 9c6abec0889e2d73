"""Intent locks under a hostile member, on the simulator (real members, stores on disk, custom
messages): what a member could make the others store, hand on or do by choosing the fields of
its own frames."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from agent.fleet.intents import MAX_RECENT
from agent.store import fleet as db
from agent.store import intents as idb
from events.fleet import MsgType, parse_frame
from events.fleet.intent import Intent, IntentCommit, IntentDone
from tests.fleet_world import Rogue, fleet
from tests.test_fleet import refused
from tests.test_fleet_sync import _hive

pytestmark = pytest.mark.anyio


def _node(k: int) -> str:
    return "02" + f"{k:064x}"


def _owned(store: object, owner: str) -> int:
    return sum(1 for r in idb.listing(store, 100_000) if r.lock.owner == owner)  # type: ignore[arg-type]


async def test_intents_already_expired_on_arrival_are_rate_limited_like_live_ones(
    tmp_path: Path,
) -> None:
    """A member dating its INTENTs half an hour back, each expired on arrival, skipped the
    per-member limit: every one was stored, made a fact every member holds and hands on for
    an hour — an unbounded flood.  Past intents count toward the same MAX_RECENT a 10 minutes
    as live ones (by the time their owner announced them)."""
    async with fleet(tmp_path, 3, extra=1) as f:
        hive = await _hive(f)
        ids, a = f.ids, f.members[0]
        m2 = Rogue(f.net, ids[2])  # member 2's own node and key: a member gone rogue
        ts = int(time.time()) - 1_800
        sent = MAX_RECENT * 3
        for k in range(sent):
            body = Intent(kind="channel_open", target=_node(k), hold_s=10, expires_at=ts + 60)
            await m2.send(ids[0], m2.frame(MsgType.INTENT, body, hive=hive, ts=ts))
        with anyio.fail_after(20):
            while sum(a.fleet.store.error_counts().values()) + _owned(a.fleet.store, ids[2]) < sent:
                await anyio.sleep(0.05)
        assert _owned(a.fleet.store, ids[2]) == MAX_RECENT
        assert a.fleet.store.error_counts().get("RATE_LIMITED", 0) >= sent - MAX_RECENT
        assert "INTERNAL" not in a.fleet.store.error_counts()


async def test_an_intent_id_another_member_announced_is_refused_replayed(tmp_path: Path) -> None:
    """Intents are named by their INTENT frame's id, and the seen ids are per sender: a member
    announcing an intent under another member's id (on a target of its choosing) was taken
    silently (acknowledged ok, nothing said) — and where it came first, the owner's own
    INTENT was then silently ignored, so the owner waited for an answer until its lock
    expired, with nobody to blame.  An id another member holds is refused REPLAYED (counted;
    the owner is told, and aborts at once)."""
    async with fleet(tmp_path, 3, extra=2) as f:
        hive = await _hive(f)
        ids, a = f.ids, f.members[0]
        m1, m2 = Rogue(f.net, ids[1]), Rogue(f.net, ids[2])  # members 1 and 2, by hand
        expires = int(time.time()) + 300
        first = Intent(kind="channel_open", target=ids[3], expires_at=expires)
        frame = m1.frame(MsgType.INTENT, first, hive=hive)
        await m1.send(ids[0], frame)
        with anyio.fail_after(5):
            while (row := idb.get(a.fleet.store, wire_id(frame))) is None:
                await anyio.sleep(0.02)
        assert row.lock.owner == ids[1]
        # member 2 reuses member 1's intent id, on a target of its own choosing
        copy = Intent(kind="channel_open", target=ids[4], expires_at=expires)
        forged = m2.frame(MsgType.INTENT, copy, hive=hive, msg_id=wire_id(frame))
        await refused(a, "REPLAYED", lambda: m2.send(ids[0], forged), m2)
        got = idb.get(a.fleet.store, wire_id(frame))
        assert got is not None and (got.lock.owner, got.lock.target) == (ids[1], ids[3])
        assert "INTERNAL" not in a.fleet.store.error_counts()


def wire_id(frame: bytes) -> str:
    return parse_frame(frame).id


async def test_a_commit_overtaken_by_its_intents_end_is_news_not_an_illegal_move(
    tmp_path: Path,
) -> None:
    """An owner's COMMIT and DONE travel apart (a retry, a lossy link, anti-entropy hands
    facts on in any order): a DONE first ends the intent (its COMMIT taken as on its way), and
    the COMMIT arriving after it was refused INVALID_TRANSITION — an honest owner's frame
    counted as a refusal, its outbox told it failed.  It is news overtaken by events: taken,
    nothing changed."""
    async with fleet(tmp_path, 3, extra=1) as f:
        hive = await _hive(f)
        ids, a = f.ids, f.members[0]
        m1 = Rogue(f.net, ids[1])  # member 1's own node and key: its frames out of order
        body = Intent(kind="channel_open", target=ids[3], expires_at=int(time.time()) + 300)
        frame = m1.frame(MsgType.INTENT, body, hive=hive)
        intent = wire_id(frame)
        await m1.send(ids[0], frame)
        done = m1.frame(MsgType.INTENT_DONE, IntentDone(intent=intent, ok=True), hive=hive)
        commit = m1.frame(MsgType.INTENT_COMMIT, IntentCommit(intent=intent), hive=hive)
        await m1.send(ids[0], done)
        with anyio.fail_after(5):
            while (row := idb.get(a.fleet.store, intent)) is None or row.lock.status != "done":
                await anyio.sleep(0.02)
        before = dict(a.fleet.store.error_counts())
        await m1.send(ids[0], commit)
        with anyio.fail_after(5):
            while db.seen_via(a.fleet.store, ids[1], wire_id(commit)) is None:
                await anyio.sleep(0.02)
                assert a.fleet.store.error_counts() == before
        got = idb.get(a.fleet.store, intent)
        assert got is not None and got.lock.status == "done"
