"""State gossip on the simulator: a fee change reaches every member, also those without a link
to its owner (forwarding); the version survives a restart; presence; and the attacks, each
refused with its code and the store unchanged: an old version replayed, a record signed by
another member, 201 channels, a banned member's record; late news of a member who left is
dropped without a refusal."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent.fleet.kernel import FleetComponent
from agent.fleet.simfleet import sim_keys
from agent.node.models import Channel, ChannelState
from agent.store import fleet as fdb
from agent.store import gossip as gdb
from agent.store.db import Tx
from events import fleet as wire
from events.canonical import canonical
from events.errors import InvalidPayload, TooLarge
from events.fleet import MsgType, StateRecord
from events.fleet.gossip import sign_record
from tests.fleet_world import Fleet, Rogue, fleet
from tests.test_fleet import refused

pytestmark = pytest.mark.anyio
# refusals a healthy fleet sees: a duplicate dropped, and "not yet" (a fact handed on by
# anti-entropy before the news it depends on — a join — arrived; retried, then accepted)
NOT_YET = {"REPLAYED", "NOT_MEMBER"}


async def _hive(f: Fleet) -> str:
    """Member 0 founds the hive and admits the others; records exchanged."""
    hive = str((await f.members[0].fleet.genesis())["hive_id"])
    for i in range(1, len(f.members)):
        await f.admit(0, i)
    await f.settle()
    await f.gossiped()
    await f.quiet()
    return hive


async def _fee_of(f: Fleet, i: int, owner: int, scid: str, ppm: int, limit_s: float = 10) -> None:
    """Wait until member i holds the owner's record with `scid` at `ppm`."""
    with anyio.fail_after(limit_s):
        while True:
            row = gdb.state(f.members[i].fleet.store, f.ids[owner])
            if row is not None:
                record = StateRecord.model_validate_json(row.record)
                if any(c.scid == scid and c.fee_ppm == ppm for c in record.channels):
                    return
            await anyio.sleep(0.05)


async def test_a_fee_change_reaches_members_without_a_link_to_its_owner(tmp_path: Path) -> None:
    async with fleet(tmp_path, 4, extra=0) as f:
        await _hive(f)
        ids, m = f.ids, f.members
        # a line: 0 — 1 — 2 — 3; member 0 has no link to 2 or 3 any more
        for a, b in ((0, 2), (0, 3), (1, 3)):
            f.net.disconnect(ids[a], ids[b])
        await anyio.sleep(1.1)  # past the per-peer gap of the records sent so far
        node0 = m[0].fleet.kernel.node
        scid = (await node0.channels())[0].short_channel_id
        await node0.set_fees(scid, ppm=4242)
        sent = await m[0].fleet.gossip.check()
        assert sent["sent"] and sent["why"] == ["policy"]
        for i in (1, 2, 3):
            await _fee_of(f, i, 0, scid, 4242)
        far = gdb.state(m[3].fleet.store, ids[0])
        assert far is not None and far.version == sent["version"]
        assert far.via == ids[2]  # it came the long way
        forwarded = wire.parse_frame(far.frame).body_as(wire.Gossip)
        assert (forwarded.ttl, forwarded.path) == (1, [ids[1], ids[2]])
        topo = m[3].fleet.topology()
        assert {x["owner"] for x in topo["members"]} == set(ids)
        assert all(x["active"] for x in topo["members"])
        for x in m:
            assert set(x.fleet.status()["refused"]) <= NOT_YET, x.fleet.status()["refused"]


async def test_the_version_survives_a_restart_and_the_record_is_accepted(tmp_path: Path) -> None:
    async with fleet(tmp_path, 2, extra=0) as f:
        await _hive(f)
        before = f.members[0].fleet.gossip.summary()["version"]
        await f.restart(0)
        again = await f.members[0].fleet.gossip.check(force=True)
        assert again["version"] == before + 1
        with anyio.fail_after(5):
            while f.versions(1).get(f.ids[0]) != before + 1:
                await anyio.sleep(0.05)
        row = gdb.state(f.members[1].fleet.store, f.ids[0])
        assert row is not None and row.version == before + 1 and row.via == f.ids[0]


async def test_attacks_are_refused_and_change_nothing(tmp_path: Path) -> None:
    async with fleet(tmp_path, 3, extra=0) as f:
        hive = await _hive(f)
        ids, m = f.ids, f.members
        target = m[2]
        # member 1's identity, sending to member 2 by hand (member 1 itself keeps running)
        rogue = Rogue(f.net, ids[1])
        old = gdb.state(m[1].fleet.store, ids[0])
        assert old is not None
        await m[0].fleet.kernel.node.set_fees(
            (await m[0].fleet.kernel.node.channels())[0].short_channel_id, ppm=777
        )
        await anyio.sleep(1.1)
        newer = await m[0].fleet.gossip.check()
        with anyio.fail_after(5):
            while f.versions(2).get(ids[0]) != newer["version"]:
                await anyio.sleep(0.05)
        await anyio.sleep(0.3)

        def forwarded(record: StateRecord, sig: str, **kw: object) -> bytes:
            body = wire.Gossip(record=record, sig=sig, ttl=2, path=[ids[1]])
            return rogue.frame(MsgType.GOSSIP, body, hive=hive, **kw)  # type: ignore[arg-type]

        # 1. member 0's older record, relayed again: REPLAYED
        old_record = StateRecord.model_validate_json(old.record)
        replay = forwarded(old_record, old.sig)
        await refused(target, "REPLAYED", lambda: rogue.send(ids[2], replay))

        # 2. a record for member 0 signed by member 1: BAD_SIGNATURE
        forged = old_record.model_copy(
            update={"version": newer["version"] + 5, "timestamp": int(time.time())}
        )
        sig = wire.sign_record(sim_keys(f.net, ids[1]), hive, forged)
        frame = forwarded(forged, sig)
        await refused(target, "BAD_SIGNATURE", lambda: rogue.send(ids[2], frame))

        # 3. 201 channels: refused before the signature is even checked
        own = StateRecord.model_validate_json(gdb.state(m[1].fleet.store, ids[1]).record)  # type: ignore[union-attr]
        full = own.model_copy(update={"channels": own.channels[:1] * 200, "version": 10**6})
        big = rogue.frame(
            MsgType.GOSSIP,
            wire.Gossip(record=full, sig=wire.sign_record(rogue.keys, hive, full), ttl=3, path=[]),
            hive=hive,
        )
        extra = canonical(own.channels[0].model_dump(mode="json"))
        over = big.replace(b'"channels":[', b'"channels":[' + extra + b",", 1)
        await refused(target, "INVALID_PAYLOAD", lambda: rogue.send(ids[2], over))
        assert gdb.state(target.fleet.store, ids[1]).version < 10**6  # type: ignore[union-attr]


async def test_a_banned_members_record_is_refused_and_its_state_dropped(tmp_path: Path) -> None:
    async with fleet(tmp_path, 3, extra=0) as f:
        hive = await _hive(f)
        ids, m = f.ids, f.members
        old = gdb.state(m[0].fleet.store, ids[1])
        assert old is not None
        await m[0].fleet.ban(ids[1], "leech")  # the lone full member: quorum 1
        await f.settle([0, 2])
        with anyio.fail_after(20):  # housekeeping forgets a banned member's record
            while gdb.state(m[2].fleet.store, ids[1]) is not None:
                await anyio.sleep(0.05)
        rogue = Rogue(f.net, ids[0])  # member 0's identity relays the banned member's record
        body = wire.Gossip(
            record=StateRecord.model_validate_json(old.record), sig=old.sig, ttl=2, path=[ids[0]]
        )
        frame = rogue.frame(MsgType.GOSSIP, body, hive=hive)
        await refused(m[2], "BANNED", lambda: rogue.send(ids[2], frame))


async def test_late_news_of_a_member_who_left_is_dropped_not_refused(tmp_path: Path) -> None:
    async with fleet(tmp_path, 3, extra=0) as f:
        hive = await _hive(f)
        ids, m = f.ids, f.members
        old = gdb.state(m[2].fleet.store, ids[1])
        assert old is not None
        await m[1].fleet.leave("moving on")
        await f.settle([0, 2])
        rogue = Rogue(f.net, ids[0])  # member 0 relays what it heard before the goodbye
        body = wire.Gossip(
            record=StateRecord.model_validate_json(old.record), sig=old.sig, ttl=2, path=[ids[0]]
        )
        counts = m[2].fleet.store.error_counts()
        await rogue.send(ids[2], rogue.frame(MsgType.GOSSIP, body, hive=hive, msg_id="5e" * 16))
        with anyio.fail_after(5):  # handled (acknowledged ok), not refused
            while fdb.seen_via(m[2].fleet.store, ids[0], "5e" * 16) is None:
                await anyio.sleep(0.05)
        assert m[2].fleet.store.error_counts() == counts
        kept = gdb.state(m[2].fleet.store, ids[1])
        assert kept is None or kept.version == old.version  # never a newer copy


class _PendingNode:
    """The node as real CLN shows it: one more channel without a short channel id yet
    (`pending:<16 hex>`), and one whose fee is beyond the wire's bound.  A stand-in for the
    node only; the gossip component and the kernel under test are the real ones."""

    def __init__(self, inner: Any, peer: str) -> None:
        self.inner, self.peer = inner, peer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def channels(self) -> list[Channel]:
        chans = await self.inner.channels()
        base = chans[0]
        pending = base.model_copy(
            update={"short_channel_id": "pending:0123456789abcdef", "peer_id": self.peer,
                    "state": ChannelState.PENDING}
        )  # fmt: skip
        greedy = base.model_copy(
            update={"short_channel_id": "999x1x0", "capacity_sat": 7_777_777,
                    "policy": base.policy.model_copy(update={"ppm": 50_000_000})}
        )  # fmt: skip
        return [*chans, pending, greedy]


async def test_a_channel_without_a_short_channel_id_is_left_out(tmp_path: Path) -> None:
    async with fleet(tmp_path, 2, extra=0) as f:
        await _hive(f)
        kernel = f.members[0].fleet.kernel
        before = f.versions(1)[f.ids[0]]
        kernel.node = _PendingNode(kernel.node, f.ids[1])
        with anyio.fail_after(15):  # the kernel's own loop builds and sends the next record
            while f.versions(1).get(f.ids[0], 0) <= before:
                await anyio.sleep(0.05)
        row = gdb.state(f.members[1].fleet.store, f.ids[0])
        assert row is not None
        channels = StateRecord.model_validate_json(row.record).channels
        assert all(not c.scid.startswith("pending") for c in channels)
        greedy = [c for c in channels if c.scid == "999x1x0"]
        assert greedy and greedy[0].fee_ppm == 10_000_000  # clamped to the wire's bound
        assert "INTERNAL" not in f.members[0].fleet.status()["refused"]


class _Boom(FleetComponent):
    """A component whose upkeep fails every time."""

    def __init__(self) -> None:
        self.ticks = self.upkeeps = 0

    def housekeeping(self, tx: Tx, now: int) -> None:
        self.upkeeps += 1
        raise RuntimeError("upkeep failed")

    async def tick(self) -> None:
        self.ticks += 1
        raise ValueError("tick failed")


async def test_a_failing_component_does_not_stop_the_kernel(tmp_path: Path) -> None:
    async with fleet(tmp_path, 2, extra=0) as f:
        await _hive(f)
        boom = _Boom()
        f.members[0].fleet.kernel.register(boom)
        with anyio.fail_after(40):
            while boom.ticks < 2 or boom.upkeeps < 2:
                await anyio.sleep(0.05)
        assert f.members[0].fleet.status()["refused"].get("INTERNAL", 0) >= 4
        # and the rest still works: a fee change still reaches the other member
        node0 = f.members[0].fleet.kernel.node
        scid = (await node0.channels())[0].short_channel_id
        await node0.set_fees(scid, ppm=4343)
        await _fee_of(f, 1, 0, scid, 4343, limit_s=15)


async def test_presence_by_forwarded_records_pruned_when_gone(tmp_path: Path) -> None:
    async with fleet(tmp_path, 3, extra=0) as f:
        await _hive(f)
        ids, m = f.ids, f.members
        f.net.disconnect(ids[0], ids[2])  # a line: 0 — 1 — 2
        await anyio.sleep(1.1)
        before = gdb.last_seen(m[2].fleet.store)[ids[0]]
        node0 = m[0].fleet.kernel.node
        scid = (await node0.channels())[0].short_channel_id
        await node0.set_fees(scid, ppm=4444)
        sent = await m[0].fleet.gossip.check()
        await _fee_of(f, 2, 0, scid, 4444)
        row = gdb.state(m[2].fleet.store, ids[0])
        assert row is not None and row.version == sent["version"]
        seen = gdb.last_seen(m[2].fleet.store)[ids[0]]
        assert seen >= row.ts > before  # heard of through member 1, not from member 0
        await m[1].fleet.leave("moving on")
        await f.settle([0, 2])
        assert (await m[1].fleet.gossip.check(force=True))["sent"] is False  # not a member
        with anyio.fail_after(20):  # housekeeping forgets when a former member was seen
            while ids[1] in gdb.last_seen(m[2].fleet.store):
                await anyio.sleep(0.05)


class _Sour(FleetComponent):
    """A component that refuses the next frame it hears of, after gossip applied it: the
    frame's transaction rolls back."""

    armed = False

    def heard(self, tx: Tx, peer: str) -> None:
        if self.armed:
            self.armed = False
            raise InvalidPayload("refused after gossip applied it")


async def test_a_rolled_back_record_forwards_nothing(tmp_path: Path) -> None:
    async with fleet(tmp_path, 3, extra=0) as f:
        await _hive(f)
        ids, m = f.ids, f.members
        f.net.disconnect(ids[0], ids[2])  # a line: 0 — 1 — 2
        sour = _Sour()
        m[1].fleet.kernel.register(sour)
        await anyio.sleep(1.1)
        gossip1 = m[1].fleet.gossip
        stream = (ids[2], ids[0])
        before = (gossip1.rate.last.get(stream), stream in gossip1.rate.held)
        version = f.versions(1)[ids[0]]
        node0 = m[0].fleet.kernel.node
        scid = (await node0.channels())[0].short_channel_id
        await node0.set_fees(scid, ppm=4545)
        sour.armed = True
        await refused(m[1], "INVALID_PAYLOAD", m[0].fleet.gossip.check)
        assert f.versions(1)[ids[0]] == version  # rolled back
        assert (gossip1.rate.last.get(stream), stream in gossip1.rate.held) == before


async def test_a_forwarder_cutting_the_ttl_does_not_stop_the_spread(tmp_path: Path) -> None:
    async with fleet(tmp_path, 4, extra=0) as f:
        hive = await _hive(f)
        ids, m = f.ids, f.members
        await m[3].stop()  # member 3's identity now sends hand-made frames, to member 1 only
        f.net.connect(ids[3], ids[1])
        f.net.disconnect(ids[0], ids[2])  # member 2 hears of member 0 only through member 1
        f.net.disconnect(ids[0], ids[1])  # for now: member 0's news reaches nobody
        await anyio.sleep(1.1)
        node0 = m[0].fleet.kernel.node
        scid = (await node0.channels())[0].short_channel_id
        await node0.set_fees(scid, ppm=4646)
        version = (await m[0].fleet.gossip.check())["version"]
        row = gdb.state(m[0].fleet.store, ids[0])
        assert row is not None and row.version == version
        rogue = Rogue(f.net, ids[3])  # first with the news, and with no TTL left
        cut = wire.Gossip(
            record=StateRecord.model_validate_json(row.record), sig=row.sig, ttl=0, path=[ids[3]]
        )
        await rogue.send(ids[1], rogue.frame(MsgType.GOSSIP, cut, hive=hive))
        with anyio.fail_after(5):
            while f.versions(1).get(ids[0]) != version:
                await anyio.sleep(0.05)
        f.net.connect(ids[0], ids[1])  # the honest copy, full TTL, comes second
        await anyio.sleep(0.2)
        await m[0].fleet.gossip.check()
        await _fee_of(f, 2, 0, scid, 4646)


async def test_a_record_too_large_to_forward_is_still_kept(tmp_path: Path) -> None:
    async with fleet(tmp_path, 3, extra=0) as f:
        hive = await _hive(f)
        ids, m = f.ids, f.members
        # dated 2 s ahead: past the minting gap (1 s here) after member 1's own last record
        owner = Rogue(f.net, ids[1])  # member 1's own key: a record that only just fits
        entry = wire.ChannelEntry(
            peer=ids[2], scid="12345678x123456x12345", capacity_sat=2**53 - 1, balance=20,
            fee_base_msat=2**63 - 1, fee_ppm=10_000_000, htlc_min_msat=2**63 - 1,
            htlc_max_msat=2**63 - 1, cltv_delta=65_535, state="pending",
        )  # fmt: skip
        version = f.versions(0)[ids[1]] + 1
        frame = b""
        for n in range(32, 0, -1):  # the most features with which the frame fits at the origin
            record = StateRecord(
                owner=ids[1], version=version, timestamp=int(time.time()) + 2, capacity_sat=1,
                outbound_sat=1, channels=[entry] * 200, offered_sat=1, features=["f" * 32] * n,
                uptime_s=1,
            )  # fmt: skip
            body = wire.Gossip(record=record, sig=sign_record(owner.keys, hive, record), ttl=3,
                               path=[])  # fmt: skip
            try:
                frame = owner.frame(MsgType.GOSSIP, body, hive=hive)
                break
            except TooLarge:
                continue
        assert 65_535 - 60 < len(frame) <= 65_535  # a longer path would not fit
        await owner.send(ids[0], frame)
        with anyio.fail_after(5):
            while f.versions(0).get(ids[1]) != version:
                await anyio.sleep(0.05)
        assert m[0].fleet.status()["refused"].get("TOO_LARGE", 0) >= 1  # not forwarded: counted


async def test_a_stale_copy_is_refused_by_its_version_before_any_signature_check(
    tmp_path: Path,
) -> None:
    async with fleet(tmp_path, 3, extra=0) as f:
        hive = await _hive(f)
        ids, m = f.ids, f.members
        row = gdb.state(m[2].fleet.store, ids[1])
        assert row is not None
        stale = StateRecord.model_validate_json(row.record).model_copy(
            update={"version": row.version - 1 if row.version > 1 else row.version}
        )
        rogue = Rogue(f.net, ids[0])  # member 0 relays a stale copy with a signature of nothing
        body = wire.Gossip(record=stale, sig="00" * 64, ttl=2, path=[ids[0]])
        frame = rogue.frame(MsgType.GOSSIP, body, hive=hive)
        await refused(m[2], "REPLAYED", lambda: rogue.send(ids[2], frame))
