"""The SQLite file under the store (agent/store/db.py): created private (mode 0600, directory
0700), refused if a newer hive-agent made it, copied aside before a migration and migrated one
version at a time per schema slice (agent/store/migrations.py), each atomically; write
transactions, and when their commits reach the disk.

The connection runs in WAL mode with `synchronous=NORMAL`: a commit survives a killed process
at once, and a power cut only once the WAL is fsynced — by `sync()`, which a durable
transaction calls after its commit.  db.py's docstring says when a commit may stay unsynced.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from agent.errors import ConfigInvalid, StoreBusy, StoreCorrupt, StoreTooNew
from agent.store.migrations import SLICES

BASE = "base"


def _create_private(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _statements(script: str) -> Iterator[str]:
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement in migration: {buffer.strip()[:60]}")


class Database:
    """One SQLite file (WAL), migrated to the current schema when opened."""

    slices: ClassVar[dict[str, list[str]]] = SLICES  # the schema history of each part, by name

    # With background checkpoints, the connection itself checkpoints only past this many WAL
    # pages (~40 MB), i.e. only if the background checkpoints stop keeping up.
    BACKSTOP_PAGES = 10_000

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._wal = None if str(path) == ":memory:" else f"{path}-wal"
        self._unsynced = False
        self.commits = 0  # commits so far (background checkpoints look at it)
        if str(path) != ":memory:":
            try:
                _create_private(self.path)
            except OSError as exc:
                raise ConfigInvalid(f"cannot create the store {path}: {exc}") from None
        try:
            self.conn = sqlite3.connect(str(path), isolation_level=None, timeout=10)
            for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
                self.conn.execute(f"PRAGMA {pragma}")
            self._refuse_newer()
            self._backup_before_migrating()
            self.migrate()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusy(f"the store {path} is locked by another process") from None
            raise ConfigInvalid(f"cannot open the store {path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(
                f"the store {path} is damaged ({exc}); restore it from a backup"
            ) from None

    def _refuse_newer(self) -> None:
        """A slice this release knows, at a version beyond what it knows: a newer hive-agent
        made the file (a slice it does not know at all is another part's: left alone)."""
        for name, version in self.slice_versions().items():
            known = self.slices.get(name)
            if known is not None and version > len(known):
                raise StoreTooNew(
                    f"the store {self.path} has {name} schema version {version}, this "
                    f"hive-agent knows only up to {len(known)}; upgrade hive-agent"
                )

    def _backup_before_migrating(self) -> None:
        """A copy of a store about to be migrated, next to it (mode 0600), so an upgrade that
        goes wrong can be undone by hand."""
        version = self.schema_version
        if self._wal is None or version == 0 or not self._pending():
            return
        target = self.path.with_name(f"{self.path.name}.v{version}.bak")
        _create_private(target)
        copy = sqlite3.connect(str(target))
        try:
            self.conn.backup(copy)
        finally:
            copy.close()

    @property
    def schema_version(self) -> int:
        """The base slice's version (`PRAGMA user_version`, as before slices)."""
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def slice_versions(self) -> dict[str, int]:
        """How far each slice has been applied (a file from before slices: base only)."""
        found = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_versions'"
        ).fetchone()
        versions = (
            dict(self.conn.execute("SELECT slice, version FROM schema_versions")) if found else {}
        )
        versions[BASE] = self.schema_version
        return versions

    def _pending(self) -> bool:
        versions = self.slice_versions()
        return any(versions.get(name, 0) < len(steps) for name, steps in self.slices.items())

    def migrate(self) -> None:
        """Apply every migration not applied yet, slice by slice, each atomically."""
        versions = self.slice_versions()
        for name, steps in self.slices.items():
            for version in range(versions.get(name, 0), len(steps)):
                self._apply(name, version + 1, steps[version])
            if name not in versions or versions[name] != len(steps):
                self._record(name, len(steps))  # a slice with nothing to apply yet

    def _apply(self, name: str, version: int, script: str) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            if self.slice_versions().get(name, 0) >= version:
                # another process (the daemon starting, a CLI command) applied it while we
                # waited for the lock: read outside it, the versions were already stale
                self.conn.execute("ROLLBACK")
                return
            # executescript() would COMMIT first, so statements run one by one instead
            for statement in _statements(script):
                self.conn.execute(statement)
            self._set_version(name, version)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _record(self, name: str, version: int) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            if self.slice_versions().get(name, -1) >= version:  # (recorded meanwhile)
                self.conn.execute("ROLLBACK")
                return
            self._set_version(name, version)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _set_version(self, name: str, version: int) -> None:
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions"
            " (slice TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        self.conn.execute(
            "INSERT INTO schema_versions (slice, version) VALUES (?, ?)"
            " ON CONFLICT (slice) DO UPDATE SET version = excluded.version",
            (name, version),
        )
        if name == BASE:
            self.conn.execute(f"PRAGMA user_version = {int(version)}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the connection; committed when the block ends (not synced:
        the caller calls `sync()` when it must be durable), rolled back if it raises."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        self.commits += 1
        self._unsynced = True

    @property
    def unsynced(self) -> bool:
        """True while a commit exists that a power cut could still lose."""
        return self._unsynced

    def sync(self) -> None:
        """Make every commit so far durable (fsync the WAL); nothing to do if they are."""
        if not self._unsynced or self._wal is None:
            return
        try:
            fd = os.open(self._wal, os.O_RDONLY)
        except FileNotFoundError:  # checkpointed and removed: the commits are in the database
            self._unsynced = False
            return
        try:
            os.fdatasync(fd)  # what SQLite itself uses for the WAL on Linux
        finally:
            os.close(fd)
        self._unsynced = False

    def background_checkpoints(self) -> None:
        """The caller will run `checkpoint()` off the event loop; the connection stops doing
        it inside whichever COMMIT crosses SQLite's 1,000-page mark (a stall of milliseconds
        on the agent's only thread, measured as the p99 of a command round trip)."""
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {self.BACKSTOP_PAGES}")

    def checkpoint(self) -> int:
        """Copy committed WAL frames into the database file (PASSIVE: never waits for, nor
        blocks, this store's writers); returns the frames copied.  Safe from any thread: it
        uses a connection of its own."""
        if self._wal is None:
            return 0
        conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=10)
        try:
            _busy, _frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.close()
        return max(0, int(copied))

    def close(self) -> None:
        self.conn.close()


def stored_versions(path: Path) -> dict[str, int]:
    """Each slice's schema version in the store at `path`, read without migrating or writing
    anything (`hive-agent doctor`); StoreCorrupt if it is not a SQLite database."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        raise StoreCorrupt(f"cannot open the store {path}: {exc}") from None
    try:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_versions'"
        ).fetchone()
        versions = dict(conn.execute("SELECT slice, version FROM schema_versions")) if found else {}
        versions[BASE] = int(conn.execute("PRAGMA user_version").fetchone()[0])
        return versions
    except sqlite3.DatabaseError as exc:
        raise StoreCorrupt(f"the store {path} is damaged ({exc})") from None
    finally:
        conn.close()


def code_versions() -> dict[str, int]:
    """Each slice's schema version this hive-agent knows."""
    return {name: len(steps) for name, steps in SLICES.items()}
