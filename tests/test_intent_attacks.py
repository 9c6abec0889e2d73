"""Intent locks under a hostile member, on the simulator (real members, stores on disk, custom
messages): what a member could make the others store, hand on or do by choosing the fields of
its own frames."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from agent.fleet.intents import MAX_RECENT
from agent.store import intents as idb
from events.fleet import MsgType
from events.fleet.intent import Intent
from tests.fleet_world import Rogue, fleet
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
