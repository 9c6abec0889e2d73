"""The inbound pipeline against a real store: dedupe, verification, flood limits before any
decryption, exactly-once effects, and errors counted per code."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import nostr_sdk as sdk
import pytest

from agent.clock import ManualClock
from agent.handlers import core_routes
from agent.inbound import DUPLICATE, OK, Inbound
from agent.nostr.client import Incoming
from agent.ratelimit import FloodLimiter
from agent.store import Store
from events import agent_info, nip59, note
from events.agent_info import AgentInfo, Role
from events.base import sign_event
from events.kinds import Kind

NOW = 1_700_000_000
ME, ALICE = sdk.Keys.generate(), sdk.Keys.generate()
ME_PUB, ALICE_PUB = ME.public_key().to_hex(), ALICE.public_key().to_hex()


@pytest.fixture
def pipeline(tmp_path: Path) -> Inbound:
    clock = ManualClock(NOW)
    store = Store(tmp_path / "agent.sqlite")
    return Inbound(store, core_routes(ME, clock).handlers, FloodLimiter(600, 5, 1000), clock)


def wrap_note(text: str, msg_id: str | None = None, sender: sdk.Keys = ALICE) -> str:
    msg = note.Note(msg_id=msg_id or uuid.uuid4().hex, text=text)
    rumor = note.rumor(sender.public_key().to_hex(), msg, created_at=NOW)
    return nip59.wrap(sender, ME_PUB, rumor, now=NOW).to_json()


def feed(pipeline: Inbound, *raws: str) -> list[str]:
    return pipeline.process([Incoming("ws://r", raw, "inbox") for raw in raws]).outcomes


def test_note_is_applied_once_however_often_it_arrives(pipeline: Inbound) -> None:
    raw = wrap_note("hi", msg_id="ab" * 16)
    assert feed(pipeline, raw, raw) == [OK, DUPLICATE]  # two relays, same batch
    assert feed(pipeline, raw) == [DUPLICATE]  # later batch
    assert feed(pipeline, wrap_note("hi", msg_id="ab" * 16)) == [OK]  # re-wrapped, same msg id
    assert [n["text"] for n in pipeline.store.notes()] == ["hi"]
    assert pipeline.store.cursor("ws://r", "inbox") is not None


def test_every_refusal_is_counted_by_code(pipeline: Inbound) -> None:
    good = json.loads(wrap_note("x"))
    bad_sig = json.dumps({**good, "sig": "00" * 64})
    other_recipient = nip59.wrap(
        ALICE,
        ALICE_PUB,
        note.rumor(ALICE_PUB, note.Note(msg_id="cd" * 16, text="y"), created_at=NOW),
        now=NOW,
    ).to_json()
    unknown_kind = sign_event(ALICE, 7, "+", [], NOW).to_json()
    outcomes = feed(pipeline, "garbage", bad_sig, other_recipient, unknown_kind, json.dumps(good))
    assert outcomes == ["INVALID_JSON", "BAD_SIGNATURE", "WRONG_RECIPIENT", "WRONG_KIND", OK]
    assert pipeline.store.error_counts() == {
        "BAD_SIGNATURE": 1, "INVALID_JSON": 1, "WRONG_KIND": 1, "WRONG_RECIPIENT": 1
    }  # fmt: skip


def test_a_forged_copy_cannot_shadow_the_real_event(pipeline: Inbound) -> None:
    real = json.loads(wrap_note("real"))
    forged = json.dumps({**real, "sig": "11" * 64})
    assert feed(pipeline, forged) == ["BAD_SIGNATURE"]
    assert feed(pipeline, json.dumps(real)) == [OK]


def test_flood_is_limited_before_decryption(pipeline: Inbound) -> None:
    flooder = sdk.Keys.generate()
    # gift wraps all signed by one (wrap) key: the limiter sees that key, before unwrapping
    wraps = []
    for i in range(20):
        rumor = note.rumor(ALICE_PUB, note.Note(msg_id=f"{i:032x}", text=str(i)), created_at=NOW)
        wrap = nip59.wrap(ALICE, ME_PUB, rumor, now=NOW)
        data = json.loads(wrap.to_json())
        resigned = sign_event(flooder, Kind.GIFT_WRAP, data["content"], data["tags"], NOW)
        wraps.append(resigned.to_json())
    outcomes = feed(pipeline, *wraps, wrap_note("from someone else"))
    # the burst (5) reaches decryption, which fails: the content was sealed under another key
    assert outcomes[:5] == ["DECRYPT_FAILED"] * 5
    # the rest never get that far
    assert outcomes[5:20] == ["RATE_LIMITED"] * 15
    assert outcomes[20] == OK  # other senders are unaffected
    assert pipeline.store.error_counts()["RATE_LIMITED"] == 15


def test_a_failing_handler_leaves_no_trace_and_does_not_stop_the_batch(pipeline: Inbound) -> None:
    info = AgentInfo(name="a", role=Role.ADVISOR, version="1")
    expired = agent_info.build(ALICE, info, created_at=NOW - 100, expiration=NOW - 1).to_json()
    fine = agent_info.build(ALICE, info, created_at=NOW).to_json()
    assert feed(pipeline, expired, fine) == ["EXPIRED", OK]
    assert set(pipeline.store.profiles()) == {ALICE_PUB}


def test_relay_lists_keep_the_newest(pipeline: Inbound) -> None:
    from events.relay_lists import build_dm_relays

    old = build_dm_relays(ALICE, ["wss://old.example"], created_at=NOW - 10).to_json()
    new = build_dm_relays(ALICE, ["wss://new.example"], created_at=NOW).to_json()
    assert feed(pipeline, new, old) == [OK, OK]
    assert pipeline.store.relay_list(ALICE_PUB, Kind.DM_RELAYS) == [["wss://new.example", "inbox"]]


def test_a_cursor_is_written_only_when_it_moves(pipeline: Inbound) -> None:
    """A batch whose newest event is no newer than the cursor this process committed writes
    no cursor row (gift wraps are dated up to two days back: most would rewrite it); a newer
    one still moves it, and a second pipeline on the same store (a restart) starts afresh."""
    store = pipeline.store

    def changes(created_at: int) -> int:
        before = store.conn.total_changes
        raw = sign_event(ALICE, 1, uuid.uuid4().hex, [], created_at).to_json()
        assert feed(pipeline, raw) == ["WRONG_KIND"]  # seen and counted, cursor moved
        return store.conn.total_changes - before

    moved = changes(NOW - 100)
    assert store.cursor("ws://r", "inbox") == NOW - 100
    assert changes(NOW - 500) == moved - 1  # older: everything but the cursor row
    assert changes(NOW - 100) == moved - 1  # the same: nothing to move either
    assert changes(NOW - 50) == moved  # newer: written
    assert store.cursor("ws://r", "inbox") == NOW - 50
    again = Inbound(store, pipeline.handlers, FloodLimiter(600, 5, 1000), pipeline.clock)
    raw = sign_event(ALICE, 1, uuid.uuid4().hex, [], NOW - 40).to_json()
    assert again.process([Incoming("ws://r", raw, "inbox")]).outcomes == ["WRONG_KIND"]
    assert store.cursor("ws://r", "inbox") == NOW - 40


def test_cursors_never_pass_a_skipped_event(tmp_path) -> None:
    """A rate-limited event is not remembered, so the cursor stays at or before it (a `since`
    catch-up must ask for it again), even when newer events in the batch were handled."""
    import time as _time

    import nostr_sdk as _sdk

    from agent.clock import ManualClock
    from agent.handlers import core_routes
    from agent.ratelimit import FloodLimiter as Limiter
    from events.base import sign_event as sign

    now = int(_time.time())
    store = Store(tmp_path / "c.sqlite")
    clock = ManualClock(now)
    keys = _sdk.Keys.generate()
    inbound = Inbound(store, core_routes(keys, clock).handlers, Limiter(60, 1, 100), clock)
    noisy, other = _sdk.Keys.generate(), _sdk.Keys.generate()
    batch = [
        Incoming("r", sign(noisy, 1, "a", [], now - 100).to_json(), "s"),
        Incoming("r", sign(noisy, 1, "b", [], now - 90).to_json(), "s"),  # over its burst
        Incoming("r", sign(other, 1, "c", [], now - 10).to_json(), "s"),
    ]
    report = inbound.process(batch)
    assert report.outcomes == ["WRONG_KIND", "RATE_LIMITED", "WRONG_KIND"]
    assert store.cursor("r", "s") == now - 90
    inbound.freeze_cursors("r")
    inbound.process([Incoming("r", sign(other, 1, "d", [], now - 5).to_json(), "s")])
    assert store.cursor("r", "s") == now - 90  # shed events on this relay: held until it returns
