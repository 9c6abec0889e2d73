"""The SQLite store: pragmas, migrations, file mode, transactions, pruning."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ConfigInvalid
from agent.store import Store
from agent.store.migrations import MIGRATIONS


def test_pragmas_and_mode(tmp_path: Path) -> None:
    store = Store(tmp_path / "home" / "agent.sqlite")
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: see below
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert (tmp_path / "home" / "agent.sqlite").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "home").stat().st_mode & 0o777 == 0o700
    assert store.schema_version == len(MIGRATIONS)


def test_durable_commits_sync_the_wal_and_others_wait_for_the_next_sync(tmp_path: Path) -> None:
    store = Store(tmp_path / "agent.sqlite")
    with store.transaction(1, durable=False) as tx:
        tx.add_note("ab" * 16, "cd" * 32, "not yet on disk", None)
    assert store.unsynced
    wal = tmp_path / "agent.sqlite-wal"
    assert wal.stat().st_mode & 0o777 == 0o600  # SQLite gives the WAL the database's mode
    store.sync()
    assert not store.unsynced
    with store.transaction(2, durable=False) as tx:
        tx.add_note("ef" * 16, "cd" * 32, "also pending", None)
    with store.transaction(3) as tx:  # a durable commit makes every earlier one durable
        tx.add_note("01" * 16, "cd" * 32, "durable", None)
    assert not store.unsynced
    assert [n["text"] for n in Store(tmp_path / "agent.sqlite").notes()] == [
        "not yet on disk",
        "also pending",
        "durable",
    ]


def test_reopening_does_not_migrate_twice(tmp_path: Path) -> None:
    path = tmp_path / "agent.sqlite"
    with Store(path).transaction(1) as tx:
        tx.add_note("ab" * 16, "cd" * 32, "kept", None)
    again = Store(path)
    assert again.schema_version == len(MIGRATIONS)
    assert [n["text"] for n in again.notes()] == ["kept"]


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.sqlite")
    with pytest.raises(RuntimeError), store.transaction(1) as tx:
        tx.add_note("ab" * 16, "cd" * 32, "lost", None)
        raise RuntimeError("boom")
    assert store.notes() == []


def test_savepoint_undoes_only_its_unit(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.sqlite")
    with store.transaction(1) as tx:
        tx.add_note("01" * 16, "cd" * 32, "kept", None)
        with pytest.raises(ValueError), tx.savepoint():
            tx.add_note("02" * 16, "cd" * 32, "undone", None)
            raise ValueError("refused")
    assert [n["text"] for n in store.notes()] == ["kept"]


def test_outbox_is_insert_once_and_tracks_acks(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.sqlite")
    with store.transaction(10) as tx:
        assert tx.enqueue("e" * 64, '{"x":1}', 1, ["ws://a", "ws://b"], 1, 1000)
        assert not tx.enqueue("e" * 64, '{"x":2}', 1, ["ws://c"], 1, 1000)
        tx.record_acks("e" * 64, ["ws://a", "ws://a"])
    item = store.outbox_item("e" * 64)
    assert item is not None
    assert item.event_json == '{"x":1}'  # the first stored event is the one sent, forever
    assert item.published and item.missing == ["ws://b"]
    assert [i.event_id for i in store.due_outbox(10)] == ["e" * 64]


def test_prune_forgets_old_ids_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.sqlite")
    with store.transaction(100) as tx:
        tx.mark_seen("a" * 64, 1, "ok")
        tx.claim_msg_id("cd" * 32, "01" * 16)
    with store.transaction(900) as tx:
        tx.mark_seen("b" * 64, 1, "ok")
        assert tx.prune(seen_before=500, done_before=500) == 2
    assert not store.is_seen("a" * 64)
    assert store.is_seen("b" * 64)


def test_status_reader_works_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    writer = Store(tmp_path / "a.sqlite")
    reader = Store(tmp_path / "a.sqlite")
    with writer.transaction(1) as tx:
        tx.count_errors({"BAD_SIGNATURE": 2})
        assert reader.error_counts() == {}  # WAL: readers see the last commit, never block
    assert reader.error_counts() == {"BAD_SIGNATURE": 2}


def test_unopenable_store_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(ConfigInvalid):
        Store(tmp_path / "dir.sqlite")


def test_command_rates_are_a_sliding_minute_counted_per_second(tmp_path: Path) -> None:
    from agent.store import advisory as repo

    store = Store(tmp_path / "s.sqlite")
    t0 = 1_800_000_000
    for at, dangerous in [(t0, False), (t0, True), (t0, False), (t0 + 30, True), (t0 + 59, False)]:
        with store.transaction(at, durable=False) as tx:
            repo.record_rate(tx, "cred", dangerous)
    with store.transaction(t0, durable=False) as tx:
        repo.record_rate(tx, "other", True)  # another credential's commands do not count
    assert repo.rate(store, "cred", t0 + 59) == (5, 2)  # all within (now - 60, now]
    assert repo.rate(store, "cred", t0 + 60) == (2, 1)  # the first second has left the window
    assert repo.rate(store, "cred", t0 + 119) == (0, 0)
    assert store.conn.execute("SELECT count(*) FROM rate_buckets").fetchone()[0] == 4
    with store.transaction(t0 + 3661, durable=False) as tx:  # rows older than an hour go
        repo.record_rate(tx, "cred", False)
    assert store.conn.execute("SELECT count(*) FROM rate_buckets").fetchone()[0] == 1


def test_background_checkpoints_copy_the_wal_without_stopping_writers(tmp_path: Path) -> None:
    import threading

    store = Store(tmp_path / "agent.sqlite")
    store.background_checkpoints()
    assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == Store.BACKSTOP_PAGES
    for i in range(300):  # at least one WAL frame each
        with store.transaction(i, durable=False) as tx:
            tx.add_note(f"{i:032x}", "cd" * 32, "x" * 2000, None)
    copied: list[int] = []
    worker = threading.Thread(target=lambda: copied.append(store.checkpoint()))
    worker.start()
    for i in range(300, 320):  # the writer goes on while the checkpoint runs
        with store.transaction(i) as tx:
            tx.add_note(f"{i:032x}", "cd" * 32, "y", None)
    worker.join()
    assert copied and copied[0] >= 300
    assert store.commits >= 320
    assert len(Store(tmp_path / "agent.sqlite").notes()) == 320
    assert Store(":memory:").checkpoint() == 0


def _open_when_told(path: str, go: Any, out: Any) -> None:
    go.wait()
    try:
        Store(path).close()
        out.put("ok")
    except Exception as exc:  # noqa: BLE001 - the test reports what each process met
        out.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_store_at_once_migrate_it_once(tmp_path: Path) -> None:
    """`hive-agent run` starting for the first time while `hive-agent status` (or a test, or
    the plugin and a CLI) opens the same new store: each read the versions, then applied the
    same migrations — the second failed ("duplicate column name: pow", "table … already
    exists", CONFIG_INVALID: cannot open the store).  A migration is re-checked inside its
    write lock, so exactly one process applies each; a process that finds the new file being
    set up (WAL mode is switched on under an exclusive lock) may still be told STORE_BUSY, a
    typed refusal to retry — never a half-migrated store."""
    ctx = multiprocessing.get_context("fork")  # (cheap: CI runs this beside timing tests)
    for round_ in range(3):
        path = str(tmp_path / f"s{round_}.sqlite")
        go, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_open_when_told, args=(path, go, out)) for _ in range(3)]
        for p in procs:
            p.start()
        time.sleep(0.2)
        go.set()
        results = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert "ok" in results, results
        assert all(r == "ok" or r.startswith("StoreBusy: STORE_BUSY") for r in results), results
        store = Store(path)
        assert not store._pending() and store.schema_version == len(MIGRATIONS)
