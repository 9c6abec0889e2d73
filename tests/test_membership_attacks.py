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
from tests.fleet_world import Rogue, fleet
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
