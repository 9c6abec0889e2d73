"""Writes that ride on the next transaction (agent/store/rides.py): the outbox's record that
relays hold an event is committed with whatever the process writes next, or on its own within
RIDE_S — never lost to a rolled-back host, never spoiling one, and never holding up a caller
that waits for the delivery."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import nostr_sdk as sdk
import pytest

from agent import app
from agent.outbox import RIDE_S
from agent.settings import RelaysConfig, Settings
from agent.store import Store, Tx


def put(key: str, value: str):  # a write as a ride: one kv row
    return lambda tx: tx.set_kv(key, value)


def test_a_ride_is_committed_by_the_next_transaction_then_done(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    done: list[str] = []
    store.ride(put("ride", "1"), lambda: done.append("ride"))
    assert store.kv("ride") is None and not done  # waiting
    commits = store.commits
    with store.transaction(10, durable=False) as tx:
        tx.set_kv("host", "2")
        assert not done  # not before its host commits
    assert done == ["ride"] and store.commits == commits + 1  # one commit carried both
    other = Store(tmp_path / "s.sqlite")  # another connection sees both
    assert (other.kv("ride"), other.kv("host")) == ("1", "2")
    assert not store.rides


def test_a_ride_waits_again_when_its_host_rolls_back(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    done: list[str] = []
    store.ride(put("ride", "1"), lambda: done.append("ride"))
    with pytest.raises(RuntimeError), store.transaction(10) as tx:
        tx.set_kv("host", "x")
        raise RuntimeError("the host fails")
    assert store.kv("ride") is None and store.kv("host") is None and not done
    store.flush_rides(11)  # the next transaction carries it
    assert store.kv("ride") == "1" and done == ["ride"]


def test_a_ride_that_fails_is_dropped_and_its_host_commits(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    done: list[str] = []

    def broken(tx: Tx) -> None:
        tx.set_kv("half", "written")
        tx.execute("INSERT INTO no_such_table VALUES (1)")

    store.ride(broken, lambda: done.append("broken"))
    store.ride(put("good", "1"), lambda: done.append("good"))
    with store.transaction(10) as tx:
        tx.set_kv("host", "2")
    assert store.kv("host") == "2" and store.kv("good") == "1"
    assert store.kv("half") is None  # the failed ride left nothing behind
    assert done == ["broken", "good"] and not store.rides  # never tried again


def test_flush_without_rides_writes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    commits = store.commits
    store.flush_rides(10)
    assert store.commits == commits


@pytest.mark.anyio
async def test_delivery_records_ride_on_the_next_write_and_are_never_lost(
    tmp_path: Path, relay_url: str
) -> None:
    """Notes sent one after another without waiting: each one's delivery record rides on the
    next note's commit (about one commit per note, not two); the last one is committed on its
    own within RIDE_S; every row ends `done`; and a caller that waits (publish) sees its
    event published at once, not RIDE_S later."""
    config = RelaysConfig.single(relay_url, reconnect_base_s=0.1)
    built = app.standalone(Settings(home=tmp_path), sdk.Keys.generate(), config)
    friend = sdk.Keys.generate().public_key().to_hex()
    n = 12
    async with built.agent as agent:
        store = agent.store
        assert await agent.pool.wait_connected(5)
        commits = store.commits
        for i in range(n):
            await agent.send_note(friend, f"note {i}", wait=False)
            await anyio.sleep(0.05)  # delivered by now (a loopback relay answers in ~1 ms)
        with anyio.fail_after(RIDE_S * 10 + 5):
            while store.outbox_counts().get("pending", 0):
                await anyio.sleep(0.02)
        assert store.outbox_counts() == {"done": n}
        assert not agent.outbox.mine  # delivered: not remembered (a long-running node grew it)
        # two per note without rides; one with them, plus the status writer's (once a second:
        # under load the loop above takes seconds, so n + 3 failed in a CI run)
        assert store.commits - commits < 2 * n
        started = anyio.current_time()
        item = await agent.send_note(friend, "waited for", wait=True)
        assert item.published and anyio.current_time() - started < RIDE_S
    # the agent stopped: nothing was left waiting to ride
    conn = sqlite3.connect(tmp_path / "agent.sqlite")
    states = dict(conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
    assert states == {"done": n + 1}


def test_items_whose_record_waits_to_ride_are_neither_due_nor_waited_for(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    with store.transaction(100) as tx:
        for event_id, at in (("a", 100), ("b", 100), ("c", 100)):
            tx.enqueue(event_id, "{}", 1, ["wss://r.example"], 1, 9999, created_at=at)
        tx.reschedule("b", 150, None)
        tx.reschedule("c", 200, None)
    assert store.next_outbox_time() == 100
    assert store.next_outbox_time(skip={"a"}) == 150
    assert store.next_outbox_time(skip={"a", "b"}) == 200
    assert store.next_outbox_time(skip={"a", "b", "c"}) is None
    assert [i.event_id for i in store.due_outbox(300)] == ["a", "b", "c"]
    assert [i.event_id for i in store.due_outbox(300, skip={"b"})] == ["a", "c"]
    assert [i.event_id for i in store.due_outbox(300, limit=1, skip={"a"})] == ["b"]


@pytest.mark.anyio
async def test_a_delivery_record_whose_ride_fails_is_written_alone_not_sent_again(
    tmp_path: Path, relay_url: str
) -> None:
    """The ride carrying a delivery record fails once (a real SQLite error raised by a trigger
    on the store): the store drops it and logs, the outbox writes the record in a
    transaction of its own at its next pass, and the event is published once — not again
    every RIDE_S while the record is missing."""
    config = RelaysConfig.single(relay_url, reconnect_base_s=0.1)
    built = app.standalone(Settings(home=tmp_path), sdk.Keys.generate(), config)
    friend = sdk.Keys.generate().public_key().to_hex()
    async with built.agent as agent:
        store = agent.store
        assert await agent.pool.wait_connected(5)
        failures = [1]

        def fail_once() -> int:
            if failures[0]:
                failures[0] -= 1
                return 1
            return 0

        store.conn.create_function("fail_once", 0, fail_once)
        store.conn.execute(
            "CREATE TEMP TRIGGER ride_fails BEFORE UPDATE OF state ON outbox"
            " WHEN NEW.state = 'done' AND fail_once()"
            " BEGIN SELECT RAISE(ABORT, 'disk I/O error (test)'); END"
        )
        acks = agent.pool.states[relay_url].acks
        item = await agent.send_note(friend, "once", wait=False)
        with anyio.fail_after(RIDE_S * 10 + 5):
            while store.outbox_item(item.event_id).state != "done":
                await anyio.sleep(0.02)
        assert failures == [0]  # the ride did fail
        await anyio.sleep(RIDE_S * 3)  # time for any re-send
        assert agent.pool.states[relay_url].acks == acks + 1  # published once
        assert store.outbox_counts() == {"done": 1} and not store.rides
