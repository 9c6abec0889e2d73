"""Attacks on the weekly settlement's votes and proposals (issue 18), on the simulator with real
members: a member gone rogue signs, with its own bound key, READYs and PROPOSEs the honest code
never sends, and the test checks the real effect — the state each member holds, the fact sets,
the refusals counted by code."""

from __future__ import annotations

import base64
import secrets
from dataclasses import replace

import anyio
import pytest

from agent.fleet.settlement_rules import compute_plan
from events.errors import InvalidPayload
from events.fleet import MsgType
from events.fleet.settlement import SettlementReady
from events.fleet.ticket import decode_ticket
from tests.fleet_world import Rogue
from tests.settle_world import PERIOD, SETTLE, inflated_week, settling, until_state, week
from tests.test_settlement_attacks import propose_body, refused
from tests.test_settlement_attacks_more import send

pytestmark = pytest.mark.anyio


async def test_votes_for_weeks_that_cannot_be_settled_are_refused(tmp_path) -> None:
    """A READY waits for its proposal (it may have overtaken it) — but not one for a week long
    gone, one that does not exist or one not over: those are refused at once (EXPIRED,
    INVALID_PAYLOAD), not kept in memory and looked at again on every pass of the loop."""
    async with settling(tmp_path, 3) as world:
        rogue = Rogue(world.net, world.ids[2])
        for period, code, n in (
            ("2020-01", "EXPIRED", 1), ("2026-54", "INVALID_PAYLOAD", 1),
            ("2099-01", "INVALID_PAYLOAD", 2), ("0000-00", "INVALID_PAYLOAD", 3),
        ):  # fmt: skip
            vote = SettlementReady(period=period, plan_hash=secrets.token_hex(32), agree=True)
            await send(world, rogue, 0, MsgType.SETTLEMENT_READY, vote)
            await refused(world, 0, code, n)
        assert world.members[0].fleet.settlement.counts.get("refused:NOT_FOUND", 0) == 0


async def test_a_vote_flood_does_not_push_out_an_honest_early_vote(tmp_path) -> None:
    """B's agreeing READY reaches A before A's proposal does (B then goes offline).  C floods A
    with 1,000 READYs for the same week, each under a new id and another plan hash (none is
    ever proposed).  A's proposal then finds B's vote still waiting: with its own it is a
    majority of three (C disputes the week here) — C's flood took one place, not B's.  (Run
    unmuted: the kernel would mute C after 300 refusals, and every READY must reach the vote
    buffer under test.)"""
    unmuted = replace(SETTLE, refusal_burst=1_000_000)
    async with settling(tmp_path, 3, config=unmuted) as world:
        ids = world.ids
        world.ledgers[2].disputed[PERIOD] = [{"node": ids[0]}]  # type: ignore[union-attr]
        plan = compute_plan(PERIOD, week(ids[:3]))
        b, c = Rogue(world.net, ids[1]), Rogue(world.net, ids[2])
        yes = SettlementReady(period=PERIOD, plan_hash=plan.plan_hash, agree=True)
        await send(world, b, 0, MsgType.SETTLEMENT_READY, yes)
        await refused(world, 0, "NOT_FOUND")
        await world.members[1].stop()
        for n in range(1, 1_001):
            other = SettlementReady(period=PERIOD, plan_hash=secrets.token_hex(32), agree=True)
            await send(world, c, 0, MsgType.SETTLEMENT_READY, other)
            if n % 200 == 0:
                await refused(world, 0, "NOT_FOUND", n + 1)
        await world.members[0].fleet.settlement_execute(PERIOD)  # A proposes now
        with anyio.fail_after(10):
            while True:
                v = world.members[0].fleet.settlement_view(PERIOD)
                if v["majority"]["agreeing"] >= 2:
                    break
                await anyio.sleep(0.05)
        assert v["state"] in ("agreed", "executed") and v["plan_hash"] == plan.plan_hash
        assert {x["voter"] for x in v["votes"] if x["agree"]} == {ids[0], ids[1]}


@pytest.mark.parametrize("depth", [5_000, 30_000])
async def test_a_deeply_nested_frame_is_refused_as_bad_json(tmp_path, depth: int) -> None:
    """A stranger's SETTLEMENT_READY whose JSON nests arrays `depth` deep (60 KB, under the
    frame limit) is refused INVALID_JSON, counted and answered like any bad frame — not a
    RecursionError escaping the kernel's intake (counted INTERNAL, logged with a traceback per
    frame, no acknowledgement).  The same holds for an invite ticket."""
    async with settling(tmp_path, 3) as world:
        stranger = Rogue(world.net, world.ids[3])  # (the mesh's outsider)
        nested = b"[" * depth + b"]" * depth
        frame = int(MsgType.SETTLEMENT_READY).to_bytes(2, "big") + b"HIVE" + nested
        await stranger.send(world.ids[0], frame)
        a = world.members[0].fleet
        with anyio.fail_after(10):
            while a.status()["refused"].get("INVALID_JSON", 0) < 1:
                assert a.status()["refused"].get("INTERNAL", 0) == 0
                await anyio.sleep(0.02)
        with pytest.raises(InvalidPayload):
            deep = b"[" * 3_000 + b"]" * 3_000  # (a ticket is at most 10,240 characters)
            decode_ticket("hive1" + base64.urlsafe_b64encode(deep).decode())


async def test_a_proposal_that_gave_way_leaves_no_fact_the_others_refuse(tmp_path) -> None:
    """D proposes a self-consistent plan of its own making to A and B only, before the first
    in rank; the honest plan replaces it there and the week is executed.  The plan that gave
    way is no fact any more (a period's proposal is one fact): A and B kept offering it to C
    and D by anti-entropy, who refused it (SETTLEMENT_CONFLICT) at every reconciliation, for
    five weeks, and the members' fact sets never agreed again."""
    config = replace(SETTLE, sync_interval_s=2)
    async with settling(tmp_path, 4, config=config) as world:
        ids = world.ids
        inflated = inflated_week(ids, ids[3])
        for i in (0, 1):
            await send(world, Rogue(world.net, ids[3]), i, MsgType.SETTLEMENT_PROPOSE,
                       propose_body(PERIOD, inflated))  # fmt: skip
        await until_state(world, "proposed", [0, 1])
        world.due(4)
        await until_state(world, "executed")  # (20 s: a loaded machine)
        await world.quiet(limit_s=20)
        for m in world.members:
            assert m.fleet.settlement.counts.get("refused:SETTLEMENT_CONFLICT", 0) <= 1
