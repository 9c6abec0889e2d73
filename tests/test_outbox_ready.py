"""What this process commits reaches the outbox's sender in memory (`Tx.on_commit`): only
once its transaction has committed, never from a transaction or savepoint that rolled back,
and never at the cost of the stored items whose retries fall due meanwhile."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import nostr_sdk as sdk
import pytest

from agent.runtime import Agent
from agent.settings import RelaysConfig
from agent.store import Store
from events.base import sign_event
from tests.test_relay_pool import agent as pool_agent
from tests.test_relay_pool import eventually, fetch_ids


@asynccontextmanager
async def running(home: Path, relays: RelaysConfig, keys: sdk.Keys) -> AsyncIterator[Agent]:
    """An agent with `keys` (the tests sign events as it), connected to its relays; outbox
    retries within a second (tests/test_relay_pool.py's settings)."""
    async with pool_agent(home, relays, keys) as a:
        assert await a.pool.wait_connected(5)
        yield a


def test_on_commit_runs_after_the_commit_and_never_after_a_rollback(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    calls: list[str] = []
    with store.transaction(10) as tx:
        tx.set_kv("k", "1")
        tx.on_commit(lambda: calls.append(str(Store(tmp_path / "s.sqlite").kv("k"))))
        assert not calls
    assert calls == ["1"]  # called once, and another connection sees the commit by then

    with pytest.raises(RuntimeError), store.transaction(11) as tx:
        tx.on_commit(lambda: calls.append("rolled back"))
        raise RuntimeError("the transaction fails")

    with store.transaction(12) as tx:
        with pytest.raises(RuntimeError), tx.savepoint():
            tx.on_commit(lambda: calls.append("savepoint rolled back"))
            raise RuntimeError("the unit fails")
        with tx.savepoint():
            tx.on_commit(lambda: calls.append("savepoint kept"))
    assert calls == ["1", "savepoint kept"]


@pytest.mark.anyio
async def test_an_event_enqueued_in_a_rolled_back_transaction_is_never_sent(
    tmp_path: Path, relay_url: str
) -> None:
    keys = sdk.Keys.generate()
    now = int(time.time())
    lost = sign_event(keys, 1, "rolled back", [], now)
    inner = sign_event(keys, 1, "savepoint rolled back", [], now)
    kept = sign_event(keys, 1, "committed", [], now)
    async with running(tmp_path, RelaysConfig.single(relay_url), keys) as agent:
        outbox = agent.outbox
        with pytest.raises(RuntimeError), agent.store.transaction(now) as tx:
            outbox.enqueue(tx, lost)
            raise RuntimeError("the effects it belonged to failed")
        outbox.wake()
        with agent.store.transaction(now) as tx:
            with pytest.raises(RuntimeError), tx.savepoint():
                outbox.enqueue(tx, inner)
                raise RuntimeError("a handler failed")
            outbox.enqueue(tx, kept)
        outbox.wake()
        await eventually(lambda: agent.store.outbox_counts() == {"done": 1}, timeout=10)
        assert agent.store.outbox_item(lost.id) is None
        assert agent.store.outbox_item(inner.id) is None
    assert await fetch_ids(relay_url, [lost.id, inner.id, kept.id]) == {kept.id}


@pytest.mark.anyio
async def test_a_due_retry_is_not_starved_by_a_stream_of_fresh_items(
    tmp_path: Path, relay_url: str
) -> None:
    """One item waits for a configured relay that is down (retried every second); events
    for the live relay keep arriving every 50 ms and are delivered from memory.  The stored
    item's retries still happen when they fall due."""
    dead = "ws://127.0.0.1:9"  # the discard port: nothing listens
    config = RelaysConfig.from_urls([relay_url, dead], reconnect_base_s=0.1, min_acks=1)
    keys = sdk.Keys.generate()
    now = int(time.time())
    stuck = sign_event(keys, 1, "for a relay that is down", [], now)
    async with running(tmp_path, config, keys) as agent:
        outbox = agent.outbox
        with agent.store.transaction(now) as tx:
            outbox.enqueue(tx, stuck)
        outbox.wake()
        await eventually(lambda: _attempts(agent.store, stuck.id) >= 1, timeout=10)
        first = _attempts(agent.store, stuck.id)
        sent = 0
        with anyio.move_on_after(4.5):
            while True:
                with agent.store.transaction(now) as tx:
                    fresh = sign_event(keys, 1, f"fresh {sent}", [], now)
                    outbox.enqueue(tx, fresh, targets=[relay_url])
                outbox.wake()
                sent += 1
                await anyio.sleep(0.05)
        assert _attempts(agent.store, stuck.id) >= first + 2  # retried while events flowed
        await eventually(lambda: agent.store.outbox_counts().get("done") == sent, timeout=10)
        item = agent.store.outbox_item(stuck.id)
        assert item is not None and item.published and item.state == "pending"


def _attempts(store: Store, event_id: str) -> int:
    item = store.outbox_item(event_id)
    return 0 if item is None else item.attempts


@pytest.mark.anyio
async def test_another_process_row_is_sent_while_this_process_keeps_the_sender_busy(
    tmp_path: Path, relay_url: str
) -> None:
    """Rows another process commits (`note send --no-wait` beside a running agent) are looked
    for every POLL_S even when this process wakes the sender more often than that."""
    keys = sdk.Keys.generate()
    now = int(time.time())
    theirs = sign_event(keys, 1, "from another process", [], now)
    async with running(tmp_path, RelaysConfig.single(relay_url), keys) as agent:
        outbox = agent.outbox
        other = Store(tmp_path / "agent.sqlite")  # another connection: what a CLI process uses
        sent_at = None
        with anyio.fail_after(10):
            for i in range(200):
                with agent.store.transaction(now) as tx:
                    outbox.enqueue(tx, sign_event(keys, 1, f"busy {i}", [], now))
                outbox.wake()
                if i == 5:
                    with other.transaction(now) as tx:
                        tx.enqueue(theirs.id, theirs.to_json(), 1, [relay_url], 1, now + 600)
                    sent_at = anyio.current_time()
                item = agent.store.outbox_item(theirs.id)
                if item is not None and item.published:
                    break
                await anyio.sleep(0.05)  # the sender is woken 20 times a second
        assert sent_at is not None and anyio.current_time() - sent_at < 2  # POLL_S is 0.5


@pytest.mark.anyio
async def test_a_superseded_version_committed_beside_its_successor_is_never_sent(
    tmp_path: Path, relay_url: str
) -> None:
    keys = sdk.Keys.generate()
    now = int(time.time())
    old = sign_event(keys, 0, '{"name":"old"}', [], now)
    new = sign_event(keys, 0, '{"name":"new"}', [], now + 1)
    async with running(tmp_path, RelaysConfig.single(relay_url), keys) as agent:
        for event in (old, new):  # both committed before the sender looks again
            with agent.store.transaction(now) as tx:
                agent.outbox.enqueue(tx, event)
        agent.outbox.wake()
        await eventually(lambda: agent.store.outbox_counts().get("done") == 1, timeout=10)
        stale = agent.store.outbox_item(old.id)
        assert stale is not None and stale.state == "superseded" and not stale.acked
    assert await fetch_ids(relay_url, [old.id, new.id]) == {new.id}


@pytest.mark.anyio
async def test_a_large_batch_is_sent_in_passes_each_event_once(
    tmp_path: Path, relay_url: str
) -> None:
    keys = sdk.Keys.generate()
    now = int(time.time())
    events = [sign_event(keys, 1, f"batch {i}", [], now) for i in range(250)]
    async with running(tmp_path, RelaysConfig.single(relay_url), keys) as agent:
        await agent.outbox.flush(5)  # (the agent's own announcements, if any)
        state = agent.pool.states[relay_url]
        acks = state.acks
        with agent.store.transaction(now) as tx:
            for event in events:
                agent.outbox.enqueue(tx, event)
        agent.outbox.wake()
        await eventually(lambda: agent.store.outbox_counts().get("pending", 0) == 0, timeout=20)
        assert state.acks - acks == len(events)  # each one sent (and acknowledged) once
    assert await fetch_ids(relay_url, [e.id for e in events]) == {e.id for e in events}


def test_a_failing_fsync_after_the_commit_still_reports_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transaction committed; only making it durable failed (an I/O error, injected into
    the OS call): its on-commit callbacks and rides are told it committed (the outbox sends
    nothing before a sync of its own), the error reaches the caller, and the commit is known
    to be unsynced."""
    store = Store(tmp_path / "s.sqlite")
    calls: list[str] = []
    store.ride(lambda tx: tx.set_kv("ride", "1"), lambda: calls.append("ride done"))

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("os.fdatasync", failing)
    with pytest.raises(OSError), store.transaction(10, durable=True) as tx:
        tx.set_kv("k", "1")
        tx.on_commit(lambda: calls.append("committed"))
    assert calls == ["ride done", "committed"]
    assert not store.rides  # committed once: not handed to the next transaction
    assert store.unsynced
    assert Store(tmp_path / "s.sqlite").kv("ride") == "1"
