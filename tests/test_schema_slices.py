"""Schema versions per slice: each part of the agent migrates its own tables in the one store
file; files from before slices migrate in place; a newer file is refused, not damaged."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import ClassVar

import pytest

from agent.errors import StoreTooNew
from agent.store import Store
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
