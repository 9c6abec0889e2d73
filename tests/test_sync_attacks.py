"""Anti-entropy under a hostile member, on the simulator (real members, stores on disk, session
frames on the simulated links): what a member can make another do by the reconciliations it
begins."""

from __future__ import annotations

import secrets
from pathlib import Path

import anyio
import pytest

from agent.fleet.facts import items as fact_items
from agent.fleet.simfleet import SimMember
from agent.fleet.sync import DIGEST_BURST
from events.fleet import MsgType
from events.fleet.sync import Sync, encode_data
from events.negentropy import Negentropy, Storage
from tests.fleet_world import Rogue, fleet
from tests.test_fleet_sync import ATTACKS, _hive

pytestmark = pytest.mark.anyio


async def test_a_member_cannot_have_every_fact_served_again_by_opening_sessions(
    tmp_path: Path,
) -> None:
    """A responder serves each wanted fact once per session, and a new session from the same
    peer replaces the old — but nothing bounded how often a peer began one: a member sending
    opening after opening, each asking (`want`) for the whole set, had every fact frame sent
    to it again each time (a 1 kB frame for tens of kB of state records, and the outbox
    re-filled).  Sessions a peer begins are bounded as its digests are: DIGEST_BURST per
    `sync_gap_s`, beyond that RATE_LIMITED (the way an honest member's begin: one per digest
    we sent it)."""
    async with fleet(tmp_path, 2, extra=0, config=ATTACKS) as f:
        hive = await _hive(f)
        a, one = f.members[0], Rogue(f.net, f.ids[1])  # member 1's own node, sending by hand
        items = fact_items(a.fleet.store, a.fleet.kernel.clock.now())
        want = [fid.hex() for _, fid in items]
        assert len(want) >= 3
        served, answered = a.fleet.sync.stats.facts_sent, a.fleet.sync.stats.answered
        tries = 4 * DIGEST_BURST
        for _ in range(tries):
            opening = Negentropy(Storage(items)).initiate()
            body = Sync(
                session=secrets.token_hex(16), round=0, data=encode_data(opening), want=want
            )
            await one.send(f.ids[0], one.session(MsgType.SYNC, body, hive=hive))
        with anyio.fail_after(10):
            while a.fleet.sync.stats.answered - answered + _limited(a) < tries:
                await anyio.sleep(0.05)
            while a.fleet.status()["outbox"].get("pending", 0):
                await anyio.sleep(0.05)
        await anyio.sleep(0.5)
        again = a.fleet.sync.stats.facts_sent - served
        assert again <= DIGEST_BURST * len(want), (again, len(want))
        assert _limited(a) >= tries - DIGEST_BURST


def _limited(member: SimMember) -> int:
    return member.fleet.store.error_counts().get("RATE_LIMITED", 0)
