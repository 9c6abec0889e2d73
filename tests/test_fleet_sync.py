"""Anti-entropy on the simulator: a member back from a long absence — its peers' outboxes gave
up on it — catches up exactly by reconciliation (views, state records and fact sets equal);
and the attacks, each refused with its code and the store unchanged: a reconciliation message
with ranges out of order or of junk, a digest storm, a session flood, a fingerprint flood; and
what is dropped without harm: a step of a session that is not open, wants for facts outside
the reconciled set; facts handed on are judged as if their authors sent them."""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from agent.fleet.facts import items as fact_items
from events import fleet as wire
from events.fleet import MsgType
from events.fleet.sync import StateHash, Sync, encode_data
from events.negentropy import VERSION, Negentropy, Storage, encode_varint
from tests.fleet_world import FAST, Fleet, Rogue, fleet
from tests.test_fleet import refused

pytestmark = pytest.mark.anyio

SYNCED = replace(FAST, sync_interval_s=2, sync_gap_s=1, outbox_ttl_s=3)


async def _hive(f: Fleet, n: int | None = None) -> str:
    hive = str((await f.members[0].fleet.genesis())["hive_id"])
    for i in range(1, n or len(f.members)):
        await f.admit(0, i)
    await f.settle()
    await f.gossiped()
    await f.quiet()
    return hive


def digests(f: Fleet, indexes: list[int]) -> list[str]:
    return [f.members[i].fleet.sync.summary()["digest"] for i in indexes]


async def in_sync(f: Fleet, indexes: list[int], limit_s: float = 30) -> None:
    """Wait until the chosen members hold the same view, records and fact set."""
    with anyio.fail_after(limit_s):
        while True:
            views = [f.members[i].view() for i in indexes]
            versions = [f.versions(i) for i in indexes]
            same = all(v == views[0] for v in views) and all(v == versions[0] for v in versions)
            if same and len(set(digests(f, indexes))) == 1:
                return
            await anyio.sleep(0.1)


async def test_a_member_back_from_a_long_absence_catches_up_by_reconciliation(
    tmp_path: Path,
) -> None:
    async with fleet(tmp_path, 4, config=SYNCED) as f:
        await _hive(f)
        ids, m = f.ids, f.members
        await in_sync(f, [0, 1, 2, 3])
        await m[3].stop()  # away; its peers' outboxes give up on it (outbox_ttl_s=3)
        node1 = m[1].fleet.kernel.node
        scid = (await node1.channels())[0].short_channel_id
        await node1.set_fees(scid, ppm=777)
        await m[1].fleet.gossip.check(force=True)
        await m[0].fleet.vouch(ids[1])  # a promotion (one full member: its vouch suffices)
        await in_sync(f, [0, 1, 2])
        outsider = ids[4]
        await m[0].fleet.ban(outsider, "probing")  # two voters: both must approve
        await f.settle([0, 1, 2])
        await m[1].fleet.ban(outsider)
        await in_sync(f, [0, 1, 2])
        await anyio.sleep(4)  # past the outbox's TTL: what was queued for member 3 expired
        for i in (0, 1, 2):
            assert m[i].fleet.status()["outbox"].get("pending", 0) == 0
        await m[3].start(f.tg)
        await in_sync(f, [0, 1, 2, 3])
        assert outsider in m[3].view()["bans"]
        assert m[3].view()["members"][ids[1]] == "member"
        stats = [m[i].fleet.sync.summary() for i in range(4)]
        print(stats)
        # the ban, the promotion and the new records came by reconciliation
        assert sum(s["facts_sent"] for s in stats) >= 3
        assert sum(s["completed"] for s in stats) >= 1
        for x in m:
            assert "INTERNAL" not in x.fleet.status()["refused"]


ATTACKS = replace(FAST, sync_gap_s=30)  # no digest of a member answered twice in 30 s


def _step(rogue: Rogue, hive: str, session: str, rnd: int, data: bytes = b"", **kw) -> bytes:
    body = Sync(session=session, round=rnd, data=encode_data(data) if data else "", **kw)
    return rogue.frame(MsgType.SYNC, body, hive=hive)


def _flood(storage_ts: list[int], ranges: int) -> bytes:
    """A negentropy message of `ranges` fingerprint ranges, each claiming a random print."""
    out = bytearray([VERSION])
    for n in range(ranges):
        out += encode_varint(2) + encode_varint(0) + encode_varint(1) + secrets.token_bytes(16)
        if n == ranges - 1:
            break
    return bytes(out)


def _pending(member) -> int:
    return int(member.fleet.status()["outbox"].get("pending", 0))


async def test_sync_attacks_are_refused_with_their_codes(tmp_path: Path) -> None:
    async with fleet(tmp_path, 3, extra=0, config=ATTACKS) as f:
        hive = await _hive(f)
        ids, m = f.ids, f.members
        await f.settle()
        a = m[0]
        rogue = Rogue(f.net, ids[1])  # member 1's own node and key, sending what it likes

        # a digest storm: beyond three per member per 30 s, each refused
        for n in range(3):
            digest = StateHash(digest=f"{n}" * 64, count=1)
            await rogue.send(ids[0], rogue.frame(MsgType.STATE_HASH, digest, hive=hive))
        await anyio.sleep(0.3)
        with anyio.fail_after(10):  # the reconciliation one of them began is over
            while a.fleet.sync.summary()["open"] or _pending(a):
                await anyio.sleep(0.05)
        storm = [
            rogue.frame(MsgType.STATE_HASH, StateHash(digest="f" * 64, count=n), hive=hive)
            for n in range(20)
        ]
        before = a.fleet.store.error_counts().get("RATE_LIMITED", 0)

        async def send_storm() -> None:
            for frame in storm:
                await rogue.send(ids[0], frame)

        await refused(a, "RATE_LIMITED", send_storm)
        with anyio.fail_after(5):
            while a.fleet.store.error_counts().get("RATE_LIMITED", 0) < before + 20:
                await anyio.sleep(0.02)

        # junk where a negentropy message belongs; ranges out of order; a session not open
        junk = _step(rogue, hive, secrets.token_hex(16), 0, b"\x00\x01\x02")
        await refused(a, "INVALID_PAYLOAD", lambda: rogue.send(ids[0], junk))
        bound = encode_varint(6) + encode_varint(1)
        backwards = (
            bytes([VERSION])
            + bound
            + b"\x80"
            + encode_varint(0)
            + encode_varint(1)
            + encode_varint(1)
            + b"\x10"
            + encode_varint(0)
        )
        bad = _step(rogue, hive, secrets.token_hex(16), 0, backwards)
        await refused(a, "INVALID_PAYLOAD", lambda: rogue.send(ids[0], bad))
        # a step of a session not open here (over, or from before a restart): dropped,
        # counted, nothing served
        stale, sent = a.fleet.sync.summary()["stale"], a.fleet.sync.summary()["facts_sent"]
        late = _step(rogue, hive, secrets.token_hex(16), 3, want=["ab" * 32])
        await rogue.send(ids[0], late)
        with anyio.fail_after(5):
            while a.fleet.sync.summary()["stale"] == stale:
                await anyio.sleep(0.02)
        assert a.fleet.sync.summary()["facts_sent"] == sent

        items = fact_items(a.fleet.store, a.fleet.kernel.clock.now())
        opening = Negentropy(Storage(items)).initiate()
        sid = secrets.token_hex(16)
        await rogue.send(ids[0], _step(rogue, hive, sid, 0, opening))
        with anyio.fail_after(5):
            while a.fleet.sync.summary()["open"] == 0 or _pending(a):
                await anyio.sleep(0.02)  # open, and its answer delivered (and refused there)
        # a session flood: each new one replaces the member's older one (and beyond
        # DIGEST_BURST begun in `sync_gap_s`, RATE_LIMITED: tests/test_sync_attacks.py)
        for _ in range(5):
            await rogue.send(ids[0], _step(rogue, hive, secrets.token_hex(16), 0, opening))
        await anyio.sleep(0.3)
        assert a.fleet.sync.summary()["open"] == 1
        sid = next(iter(a.fleet.sync.sessions))[1]

        # wants outside the reconciled set are served nothing
        sent = a.fleet.sync.summary()["facts_sent"]
        await rogue.send(
            ids[0], _step(rogue, hive, sid, 2, want=[secrets.token_hex(32) for _ in range(50)])
        )
        await anyio.sleep(0.3)
        assert a.fleet.sync.summary()["facts_sent"] == sent

        # a fingerprint flood: every answer within the frame limit, the session ended after
        # MAX_ROUNDS messages with a typed error (from member 2: member 1 began its share of
        # reconciliations for a while)
        rogue = Rogue(f.net, ids[2])
        flood = _flood([], 2_000)
        sid = secrets.token_hex(16)
        m[2].fleet.sync.sessions.clear()
        with anyio.fail_after(20):
            while a.fleet.sync.summary()["open"]:
                await anyio.sleep(0.1)  # the want-only session above times out… or is closed
                a.fleet.sync._expire(a.fleet.kernel.clock.now() + 3_600)
        codes = a.fleet.store.error_counts()
        for rnd in range(0, 40, 2):
            await rogue.send(ids[0], _step(rogue, hive, sid, rnd, flood))
            await anyio.sleep(0.05)
            if a.fleet.store.error_counts().get("INVALID_PAYLOAD", 0) > codes.get(
                "INVALID_PAYLOAD", 0
            ):
                break
        else:
            raise AssertionError("the flood was never cut off")
        assert a.fleet.sync.summary()["open"] == 0
        assert "INTERNAL" not in a.fleet.store.error_counts()


async def test_relayed_facts_are_judged_as_their_author_sent_them(tmp_path: Path) -> None:
    async with fleet(tmp_path, 3, extra=0, config=ATTACKS) as f:
        hive = await _hive(f)
        ids, m = f.ids, f.members
        a = m[0]
        author = Rogue(f.net, ids[1])
        relayer = Rogue(f.net, ids[2])
        # a frame type that proves no fact cannot be handed on
        vouch = author.frame(MsgType.VOUCH, wire.Vouch(candidate=ids[2]), hive=hive)
        await refused(a, "UNAUTHORIZED", lambda: relayer.send(ids[0], vouch))
        # a leave signed before the member joined (a replay across a rejoin) is refused,
        # handed on or sent live
        joined = next(x for x in a.fleet.members()["members"] if x["node_id"] == ids[1])[
            "joined_at"
        ]
        old = author.frame(
            MsgType.MEMBER_LEFT, wire.MemberLeft(reason=""), hive=hive, ts=joined - 3_600
        )
        await refused(a, "REPLAYED", lambda: relayer.send(ids[0], old))
        await refused(a, "REPLAYED", lambda: author.send(ids[0], old))
        assert a.view()["members"][ids[1]] == "neophyte"


async def test_an_idle_fleet_sleeps(tmp_path: Path) -> None:
    """With members connected and nothing to do, the fleet loop waits instead of spinning
    (it once woke itself through its own flushes: a core per node while any peer was up)."""
    import resource

    async with fleet(tmp_path, 2, extra=0) as f:
        await _hive(f)
        before = resource.getrusage(resource.RUSAGE_SELF)
        await anyio.sleep(2)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        assert cpu < 0.5, f"{cpu:.2f} s of CPU in 2 s of idling"
