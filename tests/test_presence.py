"""Presence, quorums and the gossip limits on the simulator: uptime and last seen shown and
kept across a restart and clock jumps; a ban decided by the members seen within a day while a
full member is silent; an implausibly small named electorate refused; an owner minting faster
than the gap refused (RATE_LIMITED) while legit owners, heard over several paths, never are;
our record trimmed to fit a full forwarding path; paths naming non-members or banned nodes
refused; the gossip counters kept in the store.  Each attack refused with its code, the store
unchanged."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent.clock import ShiftedClock
from agent.node.models import Channel, ChannelState, FeePolicy
from agent.store import gossip as gdb
from agent.store import presence as pdb
from events import fleet as wire
from events.fleet import MsgType, StateRecord
from events.fleet.gossip import MAX_PATH, sign_record
from tests.fleet_world import Fleet, Rogue, fleet
from tests.test_fleet import refused
from tests.test_gossip import _fee_of, _hive

pytestmark = pytest.mark.anyio
HOUR = 3600


async def _until(check: Any, limit_s: float = 10) -> None:
    with anyio.fail_after(limit_s):
        while not check():
            await anyio.sleep(0.05)


# --- presence -------------------------------------------------------------------------------


async def test_uptime_and_last_seen_are_shown_and_survive_restarts_and_clock_jumps(
    tmp_path: Path,
) -> None:
    clock = ShiftedClock()
    async with fleet(tmp_path, 2, extra=0, clock=clock) as f:
        await _hive(f)
        ids, m = f.ids, f.members
        await anyio.sleep(2.5)  # a few rounds of the kernel's loop: evidence credited
        topo = {x["owner"]: x for x in m[0].fleet.topology()["members"]}
        for node in ids:
            assert topo[node]["active"] and topo[node]["last_seen"] is not None
            assert 50 <= topo[node]["uptime_pct"] <= 100, topo[node]
        gossip = m[0].fleet.status()["gossip"]
        assert gossip["active"] == 2 and set(gossip["presence"]) == set(ids)
        before = pdb.uptime(m[0].fleet.store, 0)
        assert before[ids[0]] and before[ids[1]]
        await f.restart(0)
        kept = pdb.uptime(m[0].fleet.store, 0)
        for node in ids:  # nothing lost in the restart
            assert sum(kept[node].values()) >= sum(before[node].values())
        clock.offset = -2 * HOUR  # the clock goes back two hours, then forward a day
        await anyio.sleep(1.5)
        clock.offset = 24 * HOUR
        await anyio.sleep(1.5)
        ups = pdb.uptime(m[0].fleet.store, 0)
        assert all(0 < s <= 86_400 for days in ups.values() for s in days.values())
        credited = sum(sum(days.values()) for days in ups.values())
        assert credited <= sum(sum(d.values()) for d in kept.values()) + 4 * 60  # no jump credited
        for node, p in m[0].fleet.gossip.presence().items():
            assert p["uptime_pct"] is not None, node
        assert "INTERNAL" not in m[0].fleet.status()["refused"]


async def test_a_ban_counts_the_full_members_seen_within_a_day(tmp_path: Path) -> None:
    clock = ShiftedClock()
    async with fleet(tmp_path, 4, extra=1, clock=clock) as f:
        ids, m = f.ids, f.members
        hive = str((await m[0].fleet.genesis())["hive_id"])
        for j in (1, 2, 3):
            await f.admit(0, j)
        await m[0].fleet.vouch(ids[1])
        await f.settle()
        await m[0].fleet.vouch(ids[2])
        await m[1].fleet.vouch(ids[2])
        view = await f.settle()
        assert [view["members"][n] for n in ids[:4]] == ["member", "member", "member", "neophyte"]
        await f.gossiped()  # every record exchanged
        await f.quiet()  # … and the first reconciliations over

        # an implausible electorate: member 1 alone bans the outsider, "counting" only itself
        rogue = Rogue(f.net, ids[1])
        prop = wire.BanProposal(proposal_id="ab" * 16, target=ids[4], reason="mine alone")
        raw = rogue.frame(MsgType.BAN_PROPOSAL, prop, hive=hive).hex()
        ban = wire.Ban(target=ids[4], electorate=[ids[1]], proposal=raw, votes=[])
        frame = rogue.frame(MsgType.BAN, ban, hive=hive)
        await refused(m[0], "INVALID_PAYLOAD", lambda: rogue.send(ids[0], frame))

        await m[2].stop()  # member 2 falls silent, and a day passes
        clock.offset = 25 * HOUR
        for i in (0, 1, 3):  # the others hear from each other again (their heartbeats are due)
            await _until(lambda i=i: all(
                m[i].fleet.gossip.presence()[ids[j]]["active"] for j in (0, 1, 3)
            ), limit_s=15)  # fmt: skip
        assert not m[0].fleet.gossip.presence()[ids[2]]["active"]
        first = await m[0].fleet.ban(ids[4], "silent partner")
        assert (first["yes"], first["quorum"], first["banned"]) == (1, 2, False)
        await _until(lambda: m[1].fleet.members()["ban_proposals"])
        second = await m[1].fleet.ban(ids[4])
        assert (second["yes"], second["quorum"], second["banned"]) == (2, 2, True)
        await _until(lambda: all(m[i].view()["bans"] == [ids[4]] for i in (0, 1, 3)))
        for i in (0, 1, 3):
            assert "INVALID_PAYLOAD" not in m[i].fleet.status()["refused"] or i == 0


# --- the rate of new versions ---------------------------------------------------------------


async def test_an_owner_minting_faster_than_the_gap_is_rate_limited(tmp_path: Path) -> None:
    async with fleet(tmp_path, 3, extra=0) as f:
        hive = await _hive(f)
        ids, m = f.ids, f.members
        row = gdb.state(m[2].fleet.store, ids[1])
        assert row is not None
        owner = Rogue(f.net, ids[1])  # member 1's own key: a valid record, minted too soon
        soon = StateRecord.model_validate_json(row.record).model_copy(
            update={"version": row.version + 1, "capacity_sat": 1}
        )
        body = wire.Gossip(record=soon, sig=sign_record(owner.keys, hive, soon), ttl=3, path=[])
        frame = owner.frame(MsgType.GOSSIP, body, hive=hive)
        await refused(m[2], "RATE_LIMITED", lambda: owner.send(ids[2], frame))
        assert m[2].fleet.status()["gossip"]["refused"]["RATE_LIMITED"] == 1


async def test_legit_owners_heard_over_several_paths_never_trip_the_rate_limit(
    tmp_path: Path,
) -> None:
    async with fleet(tmp_path, 4, extra=0) as f:  # a full mesh: direct and forwarded copies
        await _hive(f)
        ids, m = f.ids, f.members
        node0 = m[0].fleet.kernel.node
        scid = (await node0.channels())[0].short_channel_id
        await anyio.sleep(1.1)
        start = f.versions(0)[ids[0]]
        began = int(time.time())
        results = []
        for ppm in range(5000, 5012):  # a change every 0.2 s: faster than the 1 s gap
            await node0.set_fees(scid, ppm=ppm)
            results.append(await m[0].fleet.gossip.check())
            await anyio.sleep(0.2)
        assert any(not r["sent"] for r in results)  # coalesced, not minted
        for i in (1, 2, 3):
            await _fee_of(f, i, 0, scid, 5011)
        minted = f.versions(0)[ids[0]] - start
        assert minted <= int(time.time()) - began + 1  # one a (whole) second at most
        for x in m:
            refused_ = x.fleet.status()["refused"]
            assert "RATE_LIMITED" not in refused_, refused_


# --- our record, trimmed to travel ----------------------------------------------------------


class _HugeNode:
    """The node with 200 channels, every field at its maximum (each channel a little smaller
    than the one before).  A stand-in for the node only; the fleet under test is real."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def channels(self) -> list[Channel]:
        top = 2**63 - 1
        policy = FeePolicy(
            base_msat=top, ppm=10_000_000, htlc_min_msat=top, htlc_max_msat=top, cltv_delta=65_535
        )
        return [
            Channel(
                short_channel_id=f"{99_999_999 - i}x999999x99999",
                peer_id="03" + f"{i:064x}",
                capacity_sat=2**53 - 1 - i,
                local_msat=(2**53 - 1 - i) * 1000,
                remote_msat=0,
                reserve_sat=0,
                state=ChannelState.NORMAL,
                policy=policy,
            )
            for i in range(200)
        ]


async def test_our_record_is_trimmed_to_fit_a_full_forwarding_path(tmp_path: Path) -> None:
    async with fleet(tmp_path, 3, extra=0) as f:
        hive = await _hive(f)
        ids, m = f.ids, f.members
        f.net.disconnect(ids[0], ids[2])  # a line: 0 — 1 — 2
        version = f.versions(0)[ids[0]]
        kernel = m[0].fleet.kernel
        features = ("anchor", "onion", *(f"{i:02}" + "f" * 30 for i in range(30)))  # 32, full
        kernel.config = dataclasses.replace(kernel.config, features=features)
        kernel.node = _HugeNode(kernel.node)
        await _until(lambda: f.versions(0)[ids[0]] > version)  # the kernel's loop sends it
        row = gdb.state(m[0].fleet.store, ids[0])
        assert row is not None
        record = StateRecord.model_validate_json(row.record)
        assert 150 < len(record.channels) < 200  # the smallest cut, the largest kept
        assert [c.capacity_sat for c in record.channels] == [
            2**53 - 1 - i for i in range(len(record.channels))
        ]
        # forwarded over the longest path, it still fits
        path = ["03" + f"{i + 1:064x}" for i in range(MAX_PATH)]
        body = wire.Gossip(record=record, sig=row.sig, ttl=0, path=path)
        assert len(Rogue(f.net, ids[1]).frame(MsgType.GOSSIP, body, hive=hive)) <= 65_535
        await _until(lambda: f.versions(2).get(ids[0]) == row.version)  # via member 1
        assert "TOO_LARGE" not in m[1].fleet.status()["refused"]
        again = await m[0].fleet.gossip.check()
        assert not again["sent"]  # the trimmed record is stable: no change seen next time


# --- forwarding paths -----------------------------------------------------------------------


async def test_a_path_naming_a_non_member_or_a_banned_node_is_refused(tmp_path: Path) -> None:
    async with fleet(tmp_path, 3, extra=2) as f:
        hive = await _hive(f)
        ids, m = f.ids, f.members
        await m[0].fleet.ban(ids[4], "hostile")  # the lone full member: quorum 1
        await f.settle()
        row = gdb.state(m[2].fleet.store, ids[1])
        assert row is not None
        rogue = Rogue(f.net, ids[0])  # member 0 relays member 1's record by a made-up path
        record = StateRecord.model_validate_json(row.record)

        def via(*path: str) -> bytes:
            body = wire.Gossip(record=record, sig=row.sig, ttl=1, path=list(path))
            return rogue.frame(MsgType.GOSSIP, body, hive=hive)

        stranger, banned = via(ids[3], ids[0]), via(ids[4], ids[0])
        await refused(m[2], "NOT_MEMBER", lambda: rogue.send(ids[2], stranger))
        await refused(m[2], "BANNED", lambda: rogue.send(ids[2], banned))
        assert m[2].fleet.status()["gossip"]["refused"] == {"NOT_MEMBER": 1, "BANNED": 1}


# --- counters -------------------------------------------------------------------------------


async def test_gossip_counters_are_kept_in_the_store(tmp_path: Path) -> None:
    async with fleet(tmp_path, 3, extra=0) as f:
        hive = await _hive(f)
        ids, m = f.ids, f.members
        f.net.disconnect(ids[0], ids[2])  # a line: 0 — 1 — 2
        old = gdb.state(m[2].fleet.store, ids[0])
        assert old is not None
        await anyio.sleep(1.1)
        before = [x.fleet.status()["gossip"] for x in m]
        node0 = m[0].fleet.kernel.node
        scid = (await node0.channels())[0].short_channel_id
        await node0.set_fees(scid, ppm=4747)
        await m[0].fleet.gossip.check()
        await _fee_of(f, 2, 0, scid, 4747)
        g = await _settled_counts(f, before)
        assert g[0]["sent"] > before[0]["sent"]
        assert g[1]["received"] > before[1]["received"]
        assert g[1]["forwarded"] > before[1]["forwarded"]
        assert g[2]["received"] > before[2]["received"]
        rogue = Rogue(f.net, ids[1])  # member 0's older record relayed again
        body = wire.Gossip(
            record=StateRecord.model_validate_json(old.record), sig=old.sig, ttl=1, path=[ids[1]]
        )
        frame = rogue.frame(MsgType.GOSSIP, body, hive=hive)
        await refused(m[2], "REPLAYED", lambda: rogue.send(ids[2], frame))
        replayed = m[2].fleet.status()["gossip"]["refused"]["REPLAYED"]
        assert replayed >= 1
        kept = m[1].fleet.status()["gossip"]
        await f.restart(1)
        await f.restart(2)
        assert m[1].fleet.status()["gossip"]["forwarded"] >= kept["forwarded"]
        assert m[2].fleet.status()["gossip"]["refused"]["REPLAYED"] >= replayed


async def _settled_counts(f: Fleet, before: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The members' gossip counters once member 1's forward was counted."""
    await _until(
        lambda: f.members[1].fleet.status()["gossip"]["forwarded"] > before[1]["forwarded"]
    )
    return [x.fleet.status()["gossip"] for x in f.members]
