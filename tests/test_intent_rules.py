"""The pure core of intent locks (agent/fleet/intent_rules.py): the conflict rule is one
order every member computes alike and each member wins some races; the states move only as
MOVES allows; answers, reading answers, hold and expiry with an injected clock (plain ints)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.fleet import intent_rules as rules
from agent.fleet.intent_rules import Lock, Status
from events.errors import InvalidTransition
from events.fleet.intent import Blocker, IntentAck

A, B, C = ("02" + c * 64 for c in "abc")
T = "03" + "7" * 64
nodes = st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: "02" + h)


def lock(owner: str, status: Status = Status.PENDING, **kw: object) -> Lock:
    base = Lock(f"{owner[2:6]}{'0' * 28}", owner, "channel_open", T, 1_000_000, 60, 1_000, 1_300)
    return replace(base, status=status, **kw)  # type: ignore[arg-type]


@given(a=nodes, b=nodes, target=nodes)
def test_the_rule_is_a_strict_order_every_member_computes_alike(
    a: str, b: str, target: str
) -> None:
    if a == b:
        return
    la = replace(lock(a), id="1" * 32, target=target)
    lb = replace(lock(b), id="2" * 32, target=target)
    assert rules.beats(la, lb) != rules.beats(lb, la)  # exactly one wins, whoever asks
    # committed beats pending, whatever the hashes say
    assert rules.beats(replace(lb, status=Status.COMMITTED), la)
    assert rules.beats(replace(la, status=Status.DONE), lb)


def test_each_member_wins_some_races() -> None:
    wins = {A: 0, B: 0, C: 0}
    for k in range(300):
        target = f"03{k:064x}"
        racers = [replace(lock(o), target=target, id=f"{i}" * 32) for i, o in enumerate(wins)]
        best = min(racers, key=lambda r: rules.rank(r.kind, r.target, r.owner))
        assert all(rules.beats(best, r) for r in racers if r is not best)
        wins[best.owner] += 1
    assert min(wins.values()) > 60, wins  # (upstream's lowest key: one member won all 300)


@pytest.mark.parametrize(
    ("frm", "to", "legal"),
    [(Status.PENDING, Status.COMMITTED, True), (Status.PENDING, Status.ABORTED, True),
     (Status.PENDING, Status.DONE, False), (Status.COMMITTED, Status.DONE, True),
     (Status.COMMITTED, Status.ABORTED, False), (Status.ABORTED, Status.COMMITTED, False),
     (Status.DONE, Status.FAILED, False), (Status.EXPIRED, Status.DONE, True),
     (Status.FAILED, Status.PENDING, False)],
)  # fmt: skip
def test_states_move_only_as_allowed(frm: Status, to: Status, legal: bool) -> None:
    if legal:
        assert rules.move(lock(A, frm), to).status == to
    else:
        with pytest.raises(InvalidTransition):
            rules.move(lock(A, frm), to)


def test_answers() -> None:
    incoming = lock(B)
    # nothing known: ok
    assert rules.answer(incoming, [], A, 1_010).ack.verdict == "ok"
    # a committed lock on the target: conflict naming it
    held = lock(C, Status.COMMITTED)
    ans = rules.answer(incoming, [held], A, 1_010)
    assert ans.ack.verdict == "conflict" and ans.ack.blocker == Blocker(
        intent=held.id, owner=C, status="committed"
    )
    # our own pending one: whoever the rule prefers
    mine = replace(lock(A), mine=True)
    ans = rules.answer(incoming, [mine], A, 1_010)
    if rules.beats(mine, incoming):
        assert ans.ack.verdict == "conflict" and ans.stand_down == []
    else:
        assert ans.ack.verdict == "ok" and ans.stand_down == [mine]
    # an expired lock blocks nothing
    assert rules.answer(incoming, [held], A, 1_300).ack.verdict == "ok"


def test_reading_answers() -> None:
    mine = replace(lock(A), mine=True, waiting=frozenset({B, C}))
    ok = IntentAck(intent=mine.id, verdict="ok")
    after = rules.read_answer(mine, B, ok)
    assert after.acks == {B: "ok"} and rules.missing(after) == {C}
    refused = rules.read_answer(
        after, C, IntentAck(intent=mine.id, verdict="refused", code="BANNED")
    )
    assert (refused.status, refused.reason, refused.acks[C]) == (
        Status.ABORTED, "refused", "refused:BANNED",
    )  # fmt: skip
    committed_elsewhere = IntentAck(
        intent=mine.id, verdict="conflict",
        blocker=Blocker(intent="9" * 32, owner=C, status="committed"),
    )  # fmt: skip
    lost = rules.read_answer(after, C, committed_elsewhere)
    assert (lost.status, lost.reason) == (Status.ABORTED, "conflict_committed")


def test_hold_and_expiry_with_an_injected_clock() -> None:
    mine = replace(lock(A), mine=True, waiting=frozenset({B, C}), acks={B: "ok"})
    # (created 1000, hold 60, expires 1300) C silent
    assert rules.due(mine, 1_030, reachable={B, C}) is None  # within the hold: wait
    assert rules.due(mine, 1_061, reachable={B, C}) is None  # C reachable and silent: wait
    assert rules.due(mine, 1_061, reachable={B}) == Status.COMMITTED  # C unreachable: consent
    assert rules.due(mine, 1_061, reachable={B}, mode="strict") == Status.ABORTED
    assert rules.due(mine, 1_300, reachable={B, C}) == Status.ABORTED  # expired
    everyone = replace(mine, acks={B: "ok", C: "ok"})
    assert rules.due(everyone, 1_001, reachable={B, C}) == Status.COMMITTED  # one round trip
