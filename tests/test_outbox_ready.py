"""What this process commits reaches the outbox's sender in memory (`Tx.on_commit`): only
once its transaction has committed, never from a transaction or savepoint that rolled back,
and never at the cost of the stored items whose retries fall due meanwhile."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import nostr_sdk as sdk
import pytest

from agent import app
from agent.settings import RelaysConfig, Settings
from agent.store import Store
from events.base import sign_event
from tests.test_relay_pool import eventually, fetch_ids


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
    built = app.standalone(Settings(home=tmp_path), keys, RelaysConfig.single(relay_url))
    now = int(time.time())
    lost = sign_event(keys, 1, "rolled back", [], now)
    inner = sign_event(keys, 1, "savepoint rolled back", [], now)
    kept = sign_event(keys, 1, "committed", [], now)
    async with built.agent as agent:
        assert await agent.pool.wait_connected(5)
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
    settings = Settings(home=tmp_path, outbox_retry_base_s=0.5, outbox_retry_max_s=1)
    keys = sdk.Keys.generate()
    built = app.standalone(settings, keys, config)
    now = int(time.time())
    stuck = sign_event(keys, 1, "for a relay that is down", [], now)
    async with built.agent as agent:
        assert await agent.pool.wait_connected(5)
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
