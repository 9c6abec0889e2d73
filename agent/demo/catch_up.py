"""Demo act: anti-entropy.  Five simulated members form a hive; rita goes offline; the others
ban an outsider, and three simulated days pass (the members share a clock moved forward), so
the frames their outboxes held for rita expire; then they change fees and open a channel.
rita comes back: the ban reaches her only by reconciliation (negentropy over custom messages;
the fresh state records come that way too, and by gossip), after which all five hold the same
membership view, the same state record versions per owner and the same fact set."""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from agent.clock import ShiftedClock
from agent.demo.common import until
from agent.demo.narrator import Say
from agent.fleet import facts
from agent.fleet.service import FleetConfig
from agent.fleet.simfleet import SimMember
from agent.node.sim import Network
from agent.node.simnode import SimDriver
from agent.store import fleet as fleet_db

DAY = 86_400
CONFIG = FleetConfig(
    retry_base_s=0.2,
    retry_cap_s=2.0,
    gossip_gap_s=1,
    sync_gap_s=1,
    sync_join_grace_s=1,
    member_fee_zero=0,  # pablo's fee is what the act watches (the zero-fee bridge: act 11)
)  # outbox_ttl_s stays a day: what waits for rita longer than that is given up
NAMES = ["nina", "otto", "pablo", "quinn", "rita", "sybil"]  # sybil: the outsider
COUNTERS = ("started", "round_trips", "neg_bytes", "facts_sent", "facts_wanted")


def network() -> tuple[Network, list[str]]:
    """Six nodes: nina with a channel to each other node (a joiner's HELLO must come over a
    channel), otto, pablo, quinn and rita in a ring, but for otto and quinn (no channel yet);
    every pair of members linked."""
    net = Network(seed=15, clock=time.monotonic)
    ids = [net.add_node(name, 20_000_000) for name in NAMES]
    pairs = [(0, j) for j in range(1, 6)] + [(1, 2), (2, 3), (3, 4), (4, 1)]
    for i, j in pairs:
        net.open_channel(ids[i], ids[j], 1_000_000, push_msat=100_000_000)
    for i in range(5):
        for j in range(i + 1, 5):
            net.connect(ids[i], ids[j])
    return net, ids


def versions(member: SimMember) -> dict[str, int]:
    """The state record versions a member holds, by owner."""
    return {m["owner"]: m["version"] for m in member.fleet.gossip.topology()["members"]}


def agree(members: list[SimMember]) -> bool:
    """Same view, record versions and fact set everywhere; nothing in flight or pending."""
    for m in members:
        s = m.fleet
        h = fleet_db.hive(s.store)
        if h is None or s.kernel.clock.now() - h.joined_at <= CONFIG.sync_join_grace_s + 1:
            return False  # a new member's first digests are still to come
        if s.status()["outbox"].get("pending", 0) or s.sync.sessions:
            return False
    first = members[0]
    return all(
        m.view() == first.view()
        and versions(m) == versions(first)
        and m.fleet.sync.summary()["digest"] == first.fleet.sync.summary()["digest"]
        for m in members[1:]
    )


async def agreed(members: list[SimMember], timeout_s: float = 30) -> None:
    """Wait until `members` agree, asking each to check its own record meanwhile."""
    with anyio.fail_after(timeout_s):
        while not agree(members):
            for m in members:
                await m.fleet.gossip.check()
            await anyio.sleep(0.1)


def outbox(members: list[SimMember], state: str) -> int:
    """Frames in `members`' outboxes in `state` (pending, expired…), in all."""
    return sum(int(m.fleet.status()["outbox"].get(state, 0)) for m in members)


async def left_waiting(members: list[SimMember]) -> int:
    """Once what is bound for connected peers has been delivered: the frames still pending
    (bound for a member that is away)."""
    seen: list[int] = []
    with anyio.fail_after(15):
        while len(seen) < 5 or len(set(seen[-5:])) > 1:
            if any(m.fleet.sync.sessions for m in members):
                seen.clear()
            seen.append(outbox(members, "pending"))
            await anyio.sleep(0.1)
    return seen[-1]


def counters(member: SimMember) -> dict[str, int]:
    """A member's reconciliation counters (kept in its store across restarts)."""
    stats = member.fleet.sync.summary()
    return {c: int(stats[c]) for c in COUNTERS}


def moved(before: list[dict[str, int]], members: list[SimMember]) -> dict[str, int]:
    """What rita's return cost, every reconciliation having her (the last member) on one
    side: reconciliations begun and round trips (counted by their initiators), negentropy
    bytes both ways (as she counted them), facts handed on to her and by her."""
    after = [counters(m) for m in members]
    delta = [{c: a[c] - b[c] for c in COUNTERS} for a, b in zip(after, before, strict=True)]
    return {
        "reconciliations": sum(d["started"] for d in delta),
        "round_trips": sum(d["round_trips"] for d in delta),
        "neg_bytes": delta[-1]["neg_bytes"],
        "facts_to_her": sum(d["facts_sent"] for d in delta[:-1]),
        "facts_from_her": delta[-1]["facts_sent"],
    }


def fee_of(member: SimMember, owner: str, scid: str) -> int | None:
    """The fee `owner` charges on `scid`, as `member`'s copy of owner's record says."""
    for m in member.fleet.gossip.topology()["members"]:
        for ch in m["channels"] if m["owner"] == owner else []:
            if ch["scid"] == scid:
                return int(ch["fee_ppm"])
    return None


def fact_ids(member: SimMember) -> set[bytes]:
    """The ids of the facts a member holds (its set as reconciled now)."""
    s = member.fleet
    return {fid for _, fid in facts.items(s.store, s.kernel.clock.now())}


def joined(member: SimMember) -> bool:
    return (member.fleet.status()["joining"] or {}).get("state") == "joined"


async def form_hive(say: Say, members: list[SimMember]) -> str:
    """nina founds the hive, admits the other four and vouches otto to full member."""
    nina = members[0].fleet
    hive = str((await nina.genesis())["hive_id"])
    say(f"nina: hive-genesis → {hive}, nina is its admin and first member")
    for joiner in members[1:]:
        ticket = await nina.invite(joiner.fleet.me, valid_hours=24)
        await joiner.fleet.join(ticket["ticket"])
        await until(partial(joined, joiner), 15)
    say("otto, pablo, quinn and rita: invited by nina, each joins (HELLO → … → WELCOME)")
    await nina.vouch(members[1].fleet.me)
    await agreed(members)
    say("nina vouches otto: nina and otto are full members, the other three neophytes")
    return hive


async def catch_up_act(say: Say) -> dict[str, Any]:
    clock = ShiftedClock()
    net, ids = network()
    say("simulated network: nina, otto, pablo, quinn and rita (the hive to be) and sybil")
    with tempfile.TemporaryDirectory(prefix="hive-catchup-") as tmp:
        async with SimDriver(net), anyio.create_task_group() as tg:
            members = [
                SimMember(net, ids[i], Path(tmp) / NAMES[i], clock=clock, config=CONFIG)
                for i in range(5)
            ]
            for m in members:
                await m.start(tg)
            await form_hive(say, members)
            nina, otto, pablo, quinn, rita = members
            online = members[:4]
            digest_then = rita.fleet.sync.summary()["digest"]
            say(f"all five agree: views, state records, fact set digest {digest_then[:16]}…")

            rita_before = counters(rita)  # as her store keeps them
            rita_facts = fact_ids(rita)
            await rita.stop()
            say("rita goes offline: links down, agent stopped, store closed")
            first = await nina.fleet.ban(ids[5], "probing our channels")
            await until(lambda: bool(otto.fleet.members()["ban_proposals"]), 15)
            second = await otto.fleet.ban(ids[5])
            await until(lambda: all(m.view()["bans"] == [ids[5]] for m in online), 15)
            say(
                f"nina: hive-ban sybil → {first['yes']}/{first['quorum']}; otto: hive-ban sybil "
                f"→ {second['yes']}/{second['quorum']}: banned by the four online"
            )
            queued = await left_waiting(online)
            expired = outbox(online, "expired")
            say(f"their outboxes hold {queued} frames for rita: copies of the ban and its votes")

            clock.advance(3 * DAY)
            for m in online:  # the others' heartbeats: fresh records after the jump
                await m.fleet.gossip.check(force=True)
            await until(lambda: outbox(online, "pending") == 0, 15)
            expired = outbox(online, "expired") - expired
            say(
                f"three days pass (the shared clock jumps 72 h): {expired} frames for rita "
                "expired (outbox TTL one day): only reconciliation can bring her the ban now"
            )
            await until(
                lambda: all(
                    m.fleet.gossip.presence()[x.fleet.me]["active"] for m in online for x in online
                ),
                15,
            )

            node = pablo.fleet.kernel.node
            scid = (await node.channels())[0].short_channel_id
            await node.set_fees(scid, ppm=450)
            fees = await pablo.fleet.gossip.check(force=True)
            say(f"pablo: fee on {scid} → 450 ppm; his state record v{fees['version']} gossiped")
            new = await otto.fleet.kernel.node.open_channel(quinn.fleet.me, 2_000_000)
            opened = await otto.fleet.gossip.check(force=True)
            await quinn.fleet.gossip.check(force=True)
            say(
                f"otto: opens {new.short_channel_id}, 2,000,000 sat to quinn; "
                f"his state record v{opened['version']} lists it"
            )
            await agreed(online)
            digest_now = nina.fleet.sync.summary()["digest"]
            say(
                f"the four online agree: fact set digest {digest_now[:16]}… "
                f"(rita's, three days old: {digest_then[:16]}…)"
            )

            before = [*map(counters, online), rita_before]
            lacking = len(fact_ids(nina) - rita_facts)
            await rita.start(tg)
            say("rita comes back online: links up, the agent restarted from its own store")
            await agreed(members)
            cost = moved(before, members)
            r_view = rita.view()
            r_fee = fee_of(rita, pablo.fleet.me, scid)
            r_link = fee_of(rita, otto.fleet.me, new.short_channel_id) is not None
            say(
                f"rita: sybil banned: {ids[5] in r_view['bans']}; otto a full member: "
                f"{r_view['members'][otto.fleet.me] == 'member'}; pablo's fee {r_fee} ppm; "
                f"otto's new channel in his record: {r_link}"
            )
            say(
                f"reconciliation: {cost['reconciliations']} sessions (each pair, both ways), "
                f"{cost['round_trips']} round trips, {cost['neg_bytes']:,} bytes of negentropy "
                f"messages; {cost['facts_to_her']} facts handed on to rita ({lacking} distinct "
                f"she lacked: her four peers reconcile with her at once), "
                f"{cost['facts_from_her']} by her"
            )
            equal = agree(members)
            digest = rita.fleet.sync.summary()["digest"]
            for m in members:
                await m.stop()
            tg.cancel_scope.cancel()
    say(f"all five views equal: {'yes' if equal else 'no'} (fact set digest {digest[:16]}…)")
    if not equal or r_fee != 450 or not r_link:
        raise RuntimeError("rita was not caught up: the five views differ")
    return {
        "offline_days": 3,
        "queued_frames": queued,
        "expired_frames": expired,
        "reconciliation": cost,
        "facts_lacking": lacking,
        "banned": [NAMES[ids.index(n)] for n in r_view["bans"]],
        "tiers": {NAMES[ids.index(n)]: t for n, t in r_view["members"].items()},
        "rita_fee_ppm": r_fee,
        "views_equal": equal,
        "digest": digest,
    }
