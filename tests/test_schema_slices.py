"""Schema versions per slice: each part of the agent migrates its own tables in the one store
file; files from before slices migrate in place; a newer file is refused, not damaged."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import ClassVar

import pytest

from agent.errors import StoreTooNew
from agent.store import Store
from agent.store import advisory as advisory_repo
from agent.store.database import _statements
from agent.store.migrations import MIGRATIONS, SLICES

GOSSIP = [
    "CREATE TABLE gossip_states (node_id TEXT PRIMARY KEY, version INTEGER NOT NULL);",
    "ALTER TABLE gossip_states ADD COLUMN seen_at INTEGER NOT NULL DEFAULT 0;",
]


class WithGossip(Store):
    """A release whose fleet grew a slice of its own (as the gossip component will)."""

    slices: ClassVar[dict[str, list[str]]] = {**SLICES, "gossip": GOSSIP}


def versions(path: Path) -> dict[str, int]:
    return dict(sqlite3.connect(path).execute("SELECT slice, version FROM schema_versions"))


def test_a_new_store_records_every_slice(tmp_path: Path) -> None:
    store = Store(tmp_path / "agent.sqlite")
    assert store.slice_versions() == {name: len(steps) for name, steps in SLICES.items()}
    assert store.schema_version == len(MIGRATIONS)  # PRAGMA user_version, read by older releases
    assert versions(tmp_path / "agent.sqlite")["base"] == len(MIGRATIONS)


def test_a_store_from_before_slices_migrates_in_place(tmp_path: Path) -> None:
    path = tmp_path / "agent.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:9]:
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 9")
    conn.execute(
        "INSERT INTO notes (msg_id, sender, text, reply_to, received_at)"
        " VALUES ('ab', 'cd', 'kept', NULL, 1)"
    )
    conn.close()
    store = Store(path)
    assert store.slice_versions()["base"] == len(MIGRATIONS)
    assert [n["text"] for n in store.notes()] == ["kept"]
    assert (tmp_path / "agent.sqlite.v9.bak").exists()  # copied aside before migrating
    assert Store(path).conn.total_changes == 0  # a current file is opened without a write


def test_a_new_slice_is_applied_alone_and_older_releases_still_open_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agent.sqlite"
    with Store(path).transaction(1) as tx:
        tx.add_note("ab" * 16, "cd" * 32, "from before", None)
    newer = WithGossip(path)
    assert newer.slice_versions()["gossip"] == 2 and newer.schema_version == len(MIGRATIONS)
    with newer.transaction(2) as tx:  # the new tables and the old ones in one transaction
        tx.execute("INSERT INTO gossip_states (node_id, version, seen_at) VALUES ('n', 1, 2)")
        tx.add_note("ef" * 16, "cd" * 32, "beside gossip", None)
    older = Store(path)  # knows no gossip slice: leaves it alone
    assert [n["text"] for n in older.notes()] == ["from before", "beside gossip"]
    assert versions(path)["gossip"] == 2


def test_a_slice_newer_than_this_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.sqlite"
    Store(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE schema_versions SET version = 7 WHERE slice = 'fleet'")
    conn.close()
    with pytest.raises(StoreTooNew, match="fleet schema version 7"):
        Store(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE schema_versions SET version = 0 WHERE slice = 'fleet'")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StoreTooNew, match="base schema version"):
        Store(path)


class BeforeWithoutRowid(Store):
    """The release before `seen`, `outbox_acks` and `nonces` were keyed by primary key alone."""

    slices: ClassVar[dict[str, list[str]]] = {
        **SLICES,
        "base": MIGRATIONS[:12],
        "advisory": SLICES["advisory"][:1],
    }


def test_the_dedupe_acks_and_nonce_tables_are_rebuilt_without_rowid_keeping_every_row(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agent.sqlite"
    old = BeforeWithoutRowid(path)
    with old.transaction(5) as tx:
        tx.mark_seen("aa" * 32, 1, "ok", 4)
        tx.enqueue("bb" * 32, "{}", 1, ["wss://r.example", "wss://s.example"], 1, 99)
        tx.record_acks("bb" * 32, ["wss://r.example"])
        tx.record_refusal("bb" * 32, "wss://s.example", "blocked: no")
        assert advisory_repo.claim_nonce(tx, "cred", "n1")
    # the old key allowed NULL (no agent wrote one); such a row is left out, not fatal
    old.conn.execute(
        "INSERT INTO seen (event_id, seen_at, kind, outcome) VALUES (NULL, 1, 1, 'ok')"
    )
    store = Store(path)
    assert store.slice_versions() == {name: len(steps) for name, steps in SLICES.items()}
    tables = dict(store.conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    for name in ("seen", "outbox_acks", "nonces"):
        assert "WITHOUT ROWID" in tables[name], name
    assert store.is_seen("aa" * 32) and not store.is_seen("cc" * 32)
    assert store.conn.execute("SELECT count(*) FROM seen").fetchone()[0] == 1
    assert store.seen_items({"kinds": [1]}) == [(4, "aa" * 32)]  # (seen_by_age is back)
    item = store.outbox_item("bb" * 32)
    assert item is not None
    assert item.acked == {"wss://r.example"} and item.refused == {"wss://s.example": "blocked: no"}
    with store.transaction(6) as tx:
        assert not advisory_repo.claim_nonce(tx, "cred", "n1")  # still used
        assert advisory_repo.claim_nonce(tx, "cred", "n2")
        tx.execute("DELETE FROM outbox WHERE event_id = ?", ("bb" * 32,))
    assert store.conn.execute("SELECT count(*) FROM outbox_acks").fetchone()[0] == 0  # cascade
