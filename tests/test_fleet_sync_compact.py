"""Session frames on the simulator: a reconciliation travels in compact unsigned frames (the
sender bound to the BOLT 8 peer), and the kernel's intake checks still hold for them — each
refused with its code, counted, the store unchanged: another hive, a stranger, too old, from
the future, a duplicate, a type that must be signed, a step of another member's session."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import anyio
import nostr_sdk as sdk
import pytest

from agent.fleet.component import Effects, FleetComponent
from agent.fleet.facts import items as fact_items
from agent.fleet.kernel import FleetKernel
from agent.fleet.sync import MAX_OPEN, Session
from agent.node.models import CustomMsg
from agent.node.simnode import SimBackend
from agent.store.db import Store, Tx
from events.fleet import Message, MsgAck, MsgType
from events.fleet.compact import build_compact, is_compact, parse_compact
from events.fleet.sync import StateHash, Sync, encode_data
from events.negentropy import Negentropy, Storage
from tests.fleet_world import Rogue, fleet, mesh
from tests.test_fleet import refused, state
from tests.test_fleet_sync import ATTACKS, _hive

pytestmark = pytest.mark.anyio


def _opening(member: Any) -> bytes:
    """A negentropy opening over the member's own set (a valid first step)."""
    items = fact_items(member.fleet.store, member.fleet.kernel.clock.now())
    return Negentropy(Storage(items)).initiate()


async def test_a_reconciliation_travels_in_session_frames(tmp_path: Path) -> None:
    """A member's digest, the steps and their acknowledgements are all compact; the peer's
    compact digest is accepted (no key, no signature: BOLT 8 said who sent it)."""
    async with fleet(tmp_path, 2, extra=0, config=ATTACKS) as f:
        hive = await _hive(f)
        a = f.members[0]
        rogue = Rogue(f.net, f.ids[1])  # member 1's own node, sending by hand
        inbox = rogue.backend.events()
        digest = StateHash(digest="ab" * 32, count=1)  # differs from a's
        await rogue.send(f.ids[0], rogue.session(MsgType.STATE_HASH, digest, hive=hive))
        got: list[Message] = []
        with anyio.fail_after(5):
            async for event in inbox:
                if isinstance(event, CustomMsg) and event.payload[:2] == b"\x80\x0d":
                    assert is_compact(event.payload)
                    got.append(parse_compact(event.payload, event.peer_id))
                    break
        await inbox.aclose()
        step = got[0].body_as(Sync)
        assert (step.round, got[0].hive, bool(step.data)) == (0, hive, True)
        assert a.fleet.sync.summary()["digests_received"] >= 1
        assert "BAD_SIGNATURE" not in a.fleet.store.error_counts()


async def test_session_frames_meet_every_intake_check(tmp_path: Path) -> None:
    async with fleet(tmp_path, 3, extra=1, config=ATTACKS) as f:
        hive = await _hive(f)
        ids, m = f.ids, f.members
        a = m[0]
        one, two, stranger = Rogue(f.net, ids[1]), Rogue(f.net, ids[2]), Rogue(f.net, ids[3])
        digest = StateHash(digest="cd" * 32, count=2)

        def send(rogue: Rogue, frame: bytes) -> Any:
            return lambda: rogue.send(ids[0], frame)

        # another hive; a node outside the hive; too old; from the future
        other = one.session(MsgType.STATE_HASH, digest, hive="hive_" + "f" * 16)
        await refused(a, "NOT_MEMBER", send(one, other), one)
        own = stranger.session(MsgType.STATE_HASH, digest, hive=hive)
        await refused(a, "NOT_MEMBER", send(stranger, own), stranger)
        now = int(time.time())
        old = one.session(MsgType.STATE_HASH, digest, hive=hive, ts=now - 2 * 86_400)
        await refused(a, "EXPIRED", send(one, old), one)
        ahead = one.session(MsgType.STATE_HASH, digest, hive=hive, ts=now + 3_600)
        await refused(a, "EXPIRED", send(one, ahead), one)
        # a type that must be signed, marked compact: not even parsed (no ack)
        gossip = int(MsgType.GOSSIP).to_bytes(2, "big") + b"HIVE\x01" + b"\x00" * 40
        await refused(a, "UNKNOWN_MESSAGE", send(one, gossip))

        # member 1 opens a session with a; member 2 sends a step under its id: a step of a
        # session not open with member 2 — dropped, counted stale; member 1's is untouched
        sid = secrets.token_hex(16)
        first = Sync(session=sid, round=0, data=encode_data(_opening(a)))
        await one.send(ids[0], one.session(MsgType.SYNC, first, hive=hive))
        with anyio.fail_after(5):
            while (ids[1], sid) not in a.fleet.sync.sessions:
                await anyio.sleep(0.02)
        session = a.fleet.sync.sessions[(ids[1], sid)]
        before = (session.next_round, session.steps, a.fleet.sync.summary()["stale"])
        hijack = Sync(session=sid, round=1, data=encode_data(_opening(a)), want=["00" * 32])
        await two.send(ids[0], two.session(MsgType.SYNC, hijack, hive=hive))
        with anyio.fail_after(5):
            while a.fleet.sync.summary()["stale"] == before[2]:
                await anyio.sleep(0.02)
        assert (session.next_round, session.steps) == before[:2]
        assert (ids[2], sid) not in a.fleet.sync.sessions

        # the same session frame twice: the second is a duplicate, counted, nothing changes
        stale = one.session(MsgType.SYNC, Sync(session=secrets.token_hex(16), round=5), hive=hive)
        await one.send(ids[0], stale)
        with anyio.fail_after(5):
            while a.fleet.sync.summary()["stale"] == before[2] + 1:
                await anyio.sleep(0.02)
        snapshot, counts = state(a.fleet.store), a.fleet.store.error_counts()
        await one.send(ids[0], stale)
        with anyio.fail_after(5):
            while a.fleet.store.error_counts().get("REPLAYED", 0) <= counts.get("REPLAYED", 0):
                await anyio.sleep(0.02)
        assert state(a.fleet.store) == snapshot
        assert "INTERNAL" not in a.fleet.store.error_counts()


class _Signed(FleetComponent):
    """Owns SYNC but does not declare it a session type: it must come signed."""

    owns = frozenset({MsgType.SYNC})

    def __init__(self) -> None:
        self.applied: list[Message] = []

    def apply(self, tx: Tx, peer: str, msg: Message, prepared: Any, fx: Effects) -> None:
        self.applied.append(msg)


class _Session(_Signed):
    session = frozenset({MsgType.SYNC})


def _kernel(tmp_path: Path, component: FleetComponent) -> tuple[FleetKernel, list[str]]:
    net, ids = mesh(2, extra=0)
    kernel = FleetKernel(SimBackend(net, ids[0]), Store(tmp_path / "k.sqlite"), sdk.Keys.generate())
    kernel.register(component)
    return kernel, ids


async def test_only_declared_session_types_travel_unsigned(tmp_path: Path) -> None:
    step = Sync(session="ab" * 16, round=0)
    frame = build_compact(MsgType.SYNC, step, hive="hive_" + "0" * 16, msg_id="cd" * 16,
                          ts=int(time.time()))  # fmt: skip
    signed = _Signed()
    kernel, ids = _kernel(tmp_path / "a", signed)
    await kernel.receive(ids[1], frame)
    assert kernel.store.error_counts() == {"UNAUTHORIZED": 1}
    assert signed.applied == []
    declared = _Session()
    kernel, ids = _kernel(tmp_path / "b", declared)
    await kernel.receive(ids[1], frame)
    assert [(x.node, x.signed, x.body) for x in declared.applied] == [(ids[1], False, step)]


def _declared(owns: set[MsgType], session: set[MsgType], facts: set[MsgType]) -> FleetComponent:
    attrs = {"owns": frozenset(owns), "session": frozenset(session), "facts": frozenset(facts)}
    return type("Declared", (FleetComponent,), attrs)()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "component",
    [
        _declared(set(), {MsgType.SYNC}, set()),  # not its own
        _declared({MsgType.GOSSIP}, {MsgType.GOSSIP}, {MsgType.GOSSIP}),  # a fact
        _declared({MsgType.VOUCH}, {MsgType.VOUCH}, set()),  # no compact layout
    ],
)
def test_a_session_type_is_owned_never_a_fact_and_has_a_layout(
    tmp_path: Path, component: FleetComponent
) -> None:
    net, ids = mesh(1, extra=0)
    kernel = FleetKernel(SimBackend(net, ids[0]), Store(tmp_path / "k.sqlite"), sdk.Keys.generate())
    with pytest.raises(ValueError, match="session frames"):
        kernel.register(component)


async def test_an_answer_never_waits_for_slots_our_own_reconciliations_hold(
    tmp_path: Path,
) -> None:
    """MAX_OPEN counts each way apart: with every slot held by reconciliations this member
    began (each waiting on another member's answer), it still answers one begun by a peer —
    otherwise members all reconciling at once could each hold every slot waiting on the
    others (seen under load: ten members stuck with eight sessions each until they expired).
    Answers beyond MAX_OPEN are still RATE_LIMITED."""
    async with fleet(tmp_path, 2, extra=0, config=ATTACKS) as f:
        hive = await _hive(f)
        a, one = f.members[0], Rogue(f.net, f.ids[1])
        now = a.fleet.kernel.clock.now()

        def hold(initiator: bool) -> None:
            for n in range(MAX_OPEN):
                peer, sid = f"03{n:064x}", secrets.token_hex(16)
                neg = Negentropy(Storage([]))
                a.fleet.sync.sessions[(peer, sid)] = Session(
                    peer, sid, initiator, neg, frozenset(), now
                )

        hold(initiator=True)
        inbox = one.backend.events()
        opening = Sync(session=secrets.token_hex(16), round=0, data=encode_data(_opening(a)))
        await one.send(f.ids[0], one.session(MsgType.SYNC, opening, hive=hive))
        with anyio.fail_after(5):
            async for event in inbox:
                payload = event.payload if isinstance(event, CustomMsg) else b""
                if payload[:2] == int(MsgType.SYNC).to_bytes(2, "big"):
                    answer = parse_compact(payload, f.ids[0])
                    assert answer.body_as(Sync).round == 1
                    break
        await inbox.aclose()
        assert "RATE_LIMITED" not in a.fleet.store.error_counts()
        # acknowledged in a session frame too: the answer leaves a's outbox
        ack = MsgAck(ref=answer.id, status="ok")
        await one.send(f.ids[0], one.session(MsgType.MSG_ACK, ack, hive=hive))
        with anyio.fail_after(5):
            while a.fleet.status()["outbox"].get("pending", 0):
                await anyio.sleep(0.02)

        a.fleet.sync.sessions.clear()
        hold(initiator=False)
        again = Sync(session=secrets.token_hex(16), round=0, data=encode_data(_opening(a)))
        frame = one.session(MsgType.SYNC, again, hive=hive)
        await refused(a, "RATE_LIMITED", lambda: one.send(f.ids[0], frame), one)
