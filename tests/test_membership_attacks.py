"""Membership under a hostile full member, on the simulator (real members, stores on disk):
what it can make the others store and compute by the proposals it sends."""

from __future__ import annotations

import secrets
from pathlib import Path

import anyio
import pytest

from agent.fleet.membership import MAX_OPEN_PROPOSALS
from agent.store import fleet as db
from events import fleet as wire
from events.fleet import MsgType
from tests.fleet_world import Fleet, Rogue, fleet
from tests.test_fleet import _two_member_hive

pytestmark = pytest.mark.anyio


async def test_a_member_cannot_flood_ban_proposals(tmp_path: Path) -> None:
    """A full member may propose to ban any node; each BAN_PROPOSAL, under an id of its
    choosing, was stored for good (an expired one too), and every membership frame after it
    weighed every proposal ever stored (the quorum check walks them all, with its queries):
    a few thousand proposals and each frame took seconds under the fleet's one lock.  A
    member holds at most MAX_OPEN_PROPOSALS open proposals; beyond, RATE_LIMITED."""
    async with fleet(tmp_path, 2, extra=1) as f:
        hive = await _two_member_hive(f)
        a, rogue = f.members[0], Rogue(f.net, f.ids[1])  # member 1, a full member, by hand
        sent = 3 * MAX_OPEN_PROPOSALS
        for _ in range(sent):
            body = wire.BanProposal(
                proposal_id=secrets.token_hex(16), target="02" + secrets.token_hex(32), reason="x"
            )
            await rogue.send(f.ids[0], rogue.frame(MsgType.BAN_PROPOSAL, body, hive=hive))
        store = a.fleet.store
        with anyio.fail_after(20):
            while len(db.proposals(store)) + store.error_counts().get("RATE_LIMITED", 0) < sent:
                await anyio.sleep(0.05)
        mine = [p for p in db.proposals(store) if p["proposer"] == f.ids[1]]
        assert len(mine) == MAX_OPEN_PROPOSALS
        assert store.error_counts().get("RATE_LIMITED", 0) == sent - MAX_OPEN_PROPOSALS
        assert "INTERNAL" not in store.error_counts()
        # this node's own proposal is still heard: the limit is per proposer
        own = await a.fleet.ban(f.ids[2], "probing")
        assert own["proposal_id"] is not None


async def _three_full_two_neophytes(f: Fleet) -> str:
    """Members 0, 1, 2 full; 3 and 4 neophytes (invited, never vouched for)."""
    hive = (await f.members[0].fleet.genesis())["hive_id"]
    await f.admit(0, 1)
    await f.members[0].fleet.vouch(f.ids[1])
    await f.settle([0, 1])
    await f.admit(0, 2)
    await f.settle([0, 1, 2])
    for voucher in (0, 1):
        await f.members[voucher].fleet.vouch(f.ids[2])
    await f.settle([0, 1, 2])
    for joiner in (3, 4):
        await f.admit(0, joiner)
        await f.settle(list(range(joiner + 1)))
    assert f.members[0].view()["members"] == {
        f.ids[0]: "member", f.ids[1]: "member", f.ids[2]: "member",
        f.ids[3]: "neophyte", f.ids[4]: "neophyte",
    }  # fmt: skip
    return hive


async def test_neophytes_cannot_decide_a_ban_by_naming_themselves_the_electorate(
    tmp_path: Path,
) -> None:
    """Neophytes may not propose, vote or vouch — refused RESTRICTED when they do so directly.
    But a decision (BAN, PROMOTION) was judged by the electorate it names, and an electorate
    member only had to be known here: two neophytes named themselves, signed a proposal and a
    vote against a full member, and in a fleet of three full members (two voters besides the
    target: a named electorate of two is plausible, its quorum two) every member banned it.
    The same way they promoted one of them with the other's vouch and a third's.  Now every
    node an electorate names must be a full member here (RESTRICTED otherwise: retried, in
    case its promotion is still on the way) and not banned."""
    async with fleet(tmp_path, 5, extra=0) as f:
        hive = await _three_full_two_neophytes(f)
        n3, n4 = Rogue(f.net, f.ids[3]), Rogue(f.net, f.ids[4])
        victim = f.ids[2]
        pid = secrets.token_hex(16)
        proposal = n3.frame(
            MsgType.BAN_PROPOSAL,
            wire.BanProposal(proposal_id=pid, target=victim, reason="x"),
            hive=hive,
        )
        vote = n4.frame(
            MsgType.BAN_VOTE, wire.BanVote(proposal_id=pid, target=victim, approve=True), hive=hive
        )
        ban = wire.Ban(
            target=victim, electorate=sorted([f.ids[3], f.ids[4]]), proposal=proposal.hex(),
            votes=[vote.hex()],
        )  # fmt: skip
        promotion = wire.Promotion(
            candidate=f.ids[3], electorate=sorted([f.ids[4], f.ids[1]]),
            vouches=[
                n4.frame(MsgType.VOUCH, wire.Vouch(candidate=f.ids[3]), hive=hive).hex(),
                Rogue(f.net, f.ids[1]).frame(
                    MsgType.VOUCH, wire.Vouch(candidate=f.ids[3]), hive=hive
                ).hex(),
            ],
        )  # fmt: skip
        store = f.members[0].fleet.store
        before = store.error_counts().get("RESTRICTED", 0)
        await n3.send(f.ids[0], n3.frame(MsgType.BAN, ban, hive=hive))
        await n3.send(f.ids[0], n3.frame(MsgType.PROMOTION, promotion, hive=hive))

        def handled() -> bool:  # both refused, or both taken
            view = f.members[0].view()
            taken = bool(view["bans"]) and view["members"].get(f.ids[3]) == "member"
            return taken or store.error_counts().get("RESTRICTED", 0) >= before + 2

        with anyio.fail_after(10):
            while not handled():
                await anyio.sleep(0.05)
        view = f.members[0].view()
        assert view["bans"] == [] and view["members"][victim] == "member"
        assert view["members"][f.ids[3]] == "neophyte"
