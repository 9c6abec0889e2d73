"""The agent's SQLite store: one file, WAL, versioned migrations, every write in a transaction.

Durability is explicit.  In WAL mode a commit reaches the disk only when the WAL is fsynced;
SQLite's `synchronous=FULL` does that after every commit, which costs ~0.2 ms each, and most
commits do not need it.  So the connection runs with `synchronous=NORMAL` (crash-consistent,
survives a killed process) and `transaction(durable=True)` — the default — fsyncs the WAL
after its commit, which also makes every earlier commit durable (the WAL is append-only).
The rule that keeps this safe: **nothing leaves the process on the strength of a commit that
is not durable**.  `durable=False` is for commits whose loss on power failure is repaired by
doing the same work again — the inbound batch (the events are fetched again from the relays;
cursors roll back with them) and bookkeeping after a publish (the same event is published
again; relays and receivers dedupe by id) — and before any effect outside this process the
caller either commits durably (claiming a command for execution, sealing a receipt) or calls
`sync()`: the outbox does so before every publish.  What this store holds (outbox, seen ids,
receipts, budgets used, escrow preimages) must not be forgotten after it was acted on —
forgetting an executed command would let it execute twice.

All writes go through `Tx` (the repository layer); reads are methods of `Store`.  The file
underneath — created private, migrated, transactions committed and synced — is `Database`
(agent/store/database.py).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Set
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agent.errors import StoreCorrupt
from agent.store.database import Database
from agent.store.outbox_item import OutboxItem, OutboxState
from agent.store.rides import Ride, Rides

M = TypeVar("M", bound=BaseModel)


def load_row(model: type[M], text: str | bytes) -> M:
    """A model stored as JSON in a row; StoreCorrupt (not a crash) if the row was damaged."""
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise StoreCorrupt(
            f"a stored {model.__name__} record is damaged ({exc.error_count()} problems); "
            "restore the store from a backup"
        ) from None


def load_json_row(text: str | bytes) -> Any:
    """JSON stored in a row; StoreCorrupt if the row was damaged."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError, RecursionError):
        raise StoreCorrupt(
            "a stored JSON value is damaged; restore the store from a backup"
        ) from None


class Tx:
    """One open transaction; every write the agent makes is a method here."""

    def __init__(self, conn: sqlite3.Connection, now: int) -> None:
        self.conn = conn
        self.now = now
        self.committed: list[Callable[[], None]] = []  # run once the transaction commits

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Call `fn` once this transaction has committed; never if the transaction, or the
        savepoint `fn` was registered in, rolls back.  It runs before a durable transaction's
        fsync: nothing may leave the process from it (the outbox syncs before it sends)."""
        self.committed.append(fn)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested unit: rolled back alone if the body raises (the exception propagates)."""
        self.conn.execute("SAVEPOINT unit")
        mark = len(self.committed)
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK TO unit")
            self.conn.execute("RELEASE unit")
            del self.committed[mark:]
            raise
        self.conn.execute("RELEASE unit")

    # --- outbox ------------------------------------------------------------------------

    def enqueue(
        self, event_id: str, event_json: str, kind: int, targets: list[str], min_acks: int,
        expires_at: int, *, address: str | None = None, created_at: int = 0,
    ) -> bool:  # fmt: skip
        """Store a signed event for delivery; False if it was already there (never re-signed).

        A replaceable event (`address` = kind:pubkey:d) supersedes older versions of itself
        still waiting: relays would refuse them as older anyway, and they would wait for days.
        """
        cur = self.execute(
            "INSERT OR IGNORE INTO outbox (event_id, event_json, kind, targets, min_acks,"
            " enqueued_at, expires_at, next_attempt_at, state, address, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            (
                event_id,
                event_json,
                kind,
                json.dumps(targets),
                min_acks,
                self.now,
                expires_at,
                self.now,
                address,
                created_at,
            ),
        )
        if address is not None and cur.rowcount == 1:
            self.execute(
                "UPDATE outbox SET state = 'superseded', last_error = ? WHERE address = ?"
                " AND state = 'pending' AND event_id != ? AND created_at <= ?",
                (f"superseded by {event_id}", address, event_id, created_at),
            )
        return cur.rowcount == 1

    def record_acks(self, event_id: str, relays: list[str]) -> None:
        for relay in relays:
            self.execute(
                "INSERT OR REPLACE INTO outbox_acks (event_id, relay, acked_at) VALUES (?, ?, ?)",
                (event_id, relay, self.now),
            )

    def record_refusal(self, event_id: str, relay: str, reason: str) -> None:
        """The relay refused the event for good (e.g. `invalid:`): stop sending it there."""
        self.execute(
            "INSERT OR IGNORE INTO outbox_acks (event_id, relay, acked_at, refusal)"
            " VALUES (?, ?, ?, ?)",
            (event_id, relay, self.now, reason[:200]),
        )

    def reschedule(self, event_id: str, next_attempt_at: int, error: str | None) -> None:
        self.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
            " WHERE event_id = ?",
            (next_attempt_at, error, event_id),
        )

    def retry_for_relay(self, relay: str, at: int) -> None:
        """Every waiting item `relay` has not acknowledged is due again at `at`."""
        self.execute(
            "UPDATE outbox SET next_attempt_at = ? WHERE state = 'pending'"
            " AND event_id NOT IN (SELECT event_id FROM outbox_acks WHERE relay = ?)",
            (at, relay),
        )

    def finish(self, event_id: str, state: OutboxState) -> None:
        self.execute("UPDATE outbox SET state = ? WHERE event_id = ?", (state, event_id))

    # --- inbound -----------------------------------------------------------------------

    def mark_seen(self, event_id: str, kind: int, outcome: str, created_at: int = 0) -> None:
        self.execute(
            "INSERT OR IGNORE INTO seen (event_id, seen_at, kind, outcome, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (event_id, self.now, kind, outcome, created_at),
        )

    def claim_msg_id(self, sender: str, msg_id: str) -> bool:
        """Record a private message's idempotency id; False if it was already handled."""
        cur = self.execute(
            "INSERT OR IGNORE INTO msg_ids (msg_id, sender, seen_at) VALUES (?, ?, ?)",
            (msg_id, sender, self.now),
        )
        return cur.rowcount == 1

    def count_errors(self, counts: dict[str, int]) -> None:
        for code, n in counts.items():
            self.execute(
                "INSERT INTO error_counts (code, count) VALUES (?, ?)"
                " ON CONFLICT (code) DO UPDATE SET count = count + excluded.count",
                (code, n),
            )

    def advance_cursor(self, relay: str, sub: str, created_at: int) -> None:
        self.execute(
            "INSERT INTO cursors (relay, sub, last_created_at) VALUES (?, ?, ?)"
            " ON CONFLICT (relay, sub) DO UPDATE SET last_created_at ="
            " max(last_created_at, excluded.last_created_at)",
            (relay, sub, created_at),
        )

    # --- state written by handlers -------------------------------------------------------

    def save_relay_list(
        self, pubkey: str, kind: int, created_at: int, relays: list[list[str]], pow_bits: int = 0
    ) -> None:
        """Keep the newest NIP-65 / NIP-17 relay list of `pubkey` (replaceable semantics)."""
        self.execute(
            "INSERT INTO relay_lists (pubkey, kind, created_at, relays, pow) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (pubkey, kind) DO UPDATE SET created_at = excluded.created_at,"
            " relays = excluded.relays, pow = excluded.pow"
            " WHERE excluded.created_at > relay_lists.created_at",
            (pubkey, kind, created_at, json.dumps(relays), pow_bits),
        )

    def save_profile(self, pubkey: str, created_at: int, event_id: str, payload: str) -> None:
        self.execute(
            "INSERT INTO profiles (pubkey, created_at, event_id, payload) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (pubkey) DO UPDATE SET created_at = excluded.created_at,"
            " event_id = excluded.event_id, payload = excluded.payload"
            " WHERE excluded.created_at > profiles.created_at",
            (pubkey, created_at, event_id, payload),
        )

    def notes_since(self, since: int, sender: str | None = None) -> int:
        """Notes received since `since`, from `sender` or from anyone (each by its index)."""
        args: tuple[object, ...] = (since,)
        sql = "SELECT count(*) FROM notes WHERE received_at >= ?"
        if sender is not None:
            sql, args = sql + " AND sender = ?", (since, sender)
        return int(self.execute(sql, args).fetchone()[0])

    def add_note(self, msg_id: str, sender: str, text: str, reply_to: str | None) -> None:
        self.execute(
            "INSERT INTO notes (msg_id, sender, text, reply_to, received_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (msg_id, sender, text, reply_to, self.now),
        )

    # --- status ------------------------------------------------------------------------

    def replace_relay_status(self, rows: list[dict[str, Any]]) -> None:
        """The pool's relays as they are now: relays dropped from the pool go too."""
        self.execute("DELETE FROM relay_status")
        for row in rows:
            self.save_relay_status(row)

    def save_relay_status(self, row: dict[str, Any]) -> None:
        self.execute(
            "INSERT OR REPLACE INTO relay_status (url, status, read, write, since, attempts, acks,"
            " rejections, received, last_error) VALUES (:url, :status, :read, :write, :since,"
            " :attempts, :acks, :rejections, :received, :last_error)",
            row,  # type: ignore[arg-type]
        )

    def set_kv(self, key: str, value: Any) -> None:
        self.execute(
            "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, json.dumps(value))
        )

    def prune(self, seen_before: int, done_before: int) -> int:
        """Forget seen ids and idempotency ids older than the window, and finished outbox rows."""
        removed = self.execute("DELETE FROM seen WHERE seen_at < ?", (seen_before,)).rowcount
        removed += self.execute("DELETE FROM msg_ids WHERE seen_at < ?", (seen_before,)).rowcount
        removed += self.execute(
            "DELETE FROM outbox WHERE state != 'pending' AND enqueued_at < ?", (done_before,)
        ).rowcount
        return removed


class Store(Database):
    """One SQLite file per agent (mode 0600): its write transactions and its reads."""

    def __init__(self, path: Path | str) -> None:
        self.rides = Rides()  # writes waiting for the next transaction (agent/store/rides.py)
        super().__init__(path)

    @contextmanager
    def transaction(self, now: int, *, durable: bool = True) -> Iterator[Tx]:
        """A write transaction; committed when the block ends, rolled back if it raises.

        Durable (the default): on disk when the block ends.  `durable=False`: see the module
        docstring for when that is allowed.  Writes waiting to ride (`ride`) go first.
        """
        rides = self.rides.take()
        try:
            with self._write() as conn:
                tx = Tx(conn, now)
                if rides:
                    Rides.carry(tx, rides)
                yield tx
        except BaseException:
            self.rides.put_back(rides)
            raise
        try:  # committed (rides too: Rides.carry): told so even if the sync then fails
            for fn in tx.committed:
                fn()
        finally:
            if durable:
                self.sync()

    def ride(self, write: Callable[[Tx], None], done: Callable[[], None], key: str = "") -> None:
        """`write` may wait for the next transaction this process opens (see rides.py)."""
        self.rides.add(Ride(write, done, key))

    def flush_rides(self, now: int) -> None:
        """Commit the writes still waiting to ride, in a transaction of their own."""
        if self.rides:
            with self.transaction(now, durable=False):
                pass

    # --- reads ---------------------------------------------------------------------------

    def is_seen(self, event_id: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM seen WHERE event_id = ?", (event_id,)).fetchone()
        return row is not None

    def outbox_item(self, event_id: str) -> OutboxItem | None:
        row = self.conn.execute("SELECT * FROM outbox WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else self._item(row)

    def due_outbox(
        self, now: int, limit: int = 100, skip: Set[str] = frozenset()
    ) -> list[OutboxItem]:
        """Waiting items due by `now`, oldest first; `skip`: ids settled but not yet written."""
        rows = self.conn.execute(  # (whether it has acks: most have none, a query saved)
            "SELECT *, EXISTS (SELECT 1 FROM outbox_acks a WHERE a.event_id = outbox.event_id)"
            " FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at LIMIT ?",
            (now, limit + len(skip)),
        ).fetchall()
        return [self._item(r, bool(r[-1])) for r in rows if r[0] not in skip][:limit]

    def next_outbox_time(self, skip: Set[str] = frozenset()) -> int | None:
        rows = self.conn.execute(
            "SELECT event_id, next_attempt_at FROM outbox WHERE state = 'pending'"
            " ORDER BY next_attempt_at LIMIT ?",
            (len(skip) + 1,),
        ).fetchall()
        return next((int(at) for event_id, at in rows if event_id not in skip), None)

    def seen_items(self, spec: dict[str, Any]) -> list[tuple[int, str]]:
        """(created_at, id) of the events seen that a NIP-01 filter's kinds and `since` cover
        (a superset of what the filter matches: the rest only tells a relay we hold more)."""
        kinds = [int(k) for k in spec.get("kinds", []) if isinstance(k, int)][:20]
        if not kinds:
            return []
        marks = ",".join("?" * len(kinds))
        since = int(spec.get("since", 0))
        until = int(spec.get("until", 2**62))
        # an event is seen after it was made: `seen_at >= since` narrows through the index
        sql = (
            "SELECT created_at, event_id FROM seen WHERE seen_at >= ?"  # noqa: S608 - only ?s
            f" AND kind IN ({marks}) AND created_at >= ? AND created_at <= ?"
        )
        rows = self.conn.execute(sql, (since, *kinds, since, until)).fetchall()
        return [(int(ts), str(i)) for ts, i in rows]

    def pending_targets(self) -> set[str]:
        """Every relay some waiting outbox item is still addressed to."""
        rows = self.conn.execute(
            "SELECT DISTINCT targets FROM outbox WHERE state = 'pending'"
        ).fetchall()
        return {url for (targets,) in rows for url in load_json_row(targets)}

    def data_version(self) -> int:
        """Changes whenever another connection (another process) commits to this store."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def outbox_counts(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall()
        return {state: n for state, n in rows}

    def _item(self, row: tuple[Any, ...], any_acks: bool = True) -> OutboxItem:
        (event_id, event_json, kind, targets, min_acks, enqueued_at, expires_at, attempts,
         next_attempt_at, state, last_error) = row[:11]  # fmt: skip
        sql = "SELECT relay, refusal FROM outbox_acks WHERE event_id = ?"
        rows = self.conn.execute(sql, (event_id,)).fetchall() if any_acks else []
        acked = frozenset(relay for relay, refusal in rows if refusal is None)
        refused = {relay: refusal for relay, refusal in rows if refusal is not None}
        return OutboxItem(
            event_id, event_json, kind, load_json_row(targets), min_acks, enqueued_at, expires_at,
            attempts, next_attempt_at, state, acked, last_error, refused,
        )  # fmt: skip

    def error_counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT code, count FROM error_counts ORDER BY code"))

    def cursor(self, relay: str, sub: str) -> int | None:
        row = self.conn.execute(
            "SELECT last_created_at FROM cursors WHERE relay = ? AND sub = ?", (relay, sub)
        ).fetchone()
        return None if row is None else int(row[0])

    def relay_list(self, pubkey: str, kind: int) -> list[list[str]] | None:
        row = self.conn.execute(
            "SELECT relays FROM relay_lists WHERE pubkey = ? AND kind = ?", (pubkey, kind)
        ).fetchone()
        return None if row is None else load_json_row(row[0])

    def inbox_lists(
        self, pubkey: str
    ) -> tuple[list[list[str]] | None, list[list[str]] | None, int]:
        """`pubkey`'s NIP-17 inbox list, its NIP-65 list, and the proof of work its inbox
        list asks for — one query (every private message we send needs all three)."""
        rows = self.conn.execute(
            "SELECT kind, relays, pow FROM relay_lists WHERE pubkey = ? AND kind IN (10050, 10002)",
            (pubkey,),
        ).fetchall()
        found = {int(kind): (load_json_row(relays), int(bits)) for kind, relays, bits in rows}
        dm, listed = found.get(10050), found.get(10002)
        return (
            None if dm is None else dm[0],
            None if listed is None else listed[0],
            0 if dm is None else dm[1],
        )

    def inbox_pow(self, pubkey: str) -> int:
        """The NIP-13 bits `pubkey`'s inbox list asks of gift wraps (0 if none)."""
        row = self.conn.execute(
            "SELECT pow FROM relay_lists WHERE pubkey = ? AND kind = 10050", (pubkey,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def standing(self, pubkey: str) -> int:
        """What `pubkey` is to this agent (indexed lookups: it runs for every gift wrap from a
        key not seen lately): 2 trusted — an advisor it granted a credential, a node it sent
        commands to, a contract party (relationships this agent chose); 1 known — a node that
        granted it a credential, an offer's party (anyone can become one with one message);
        0 a stranger."""
        row = self.conn.execute(
            "SELECT max(s) FROM ("
            "SELECT 2 AS s FROM mgmt_credentials WHERE advisor = ?1 AND role = 'granted'"
            " UNION ALL SELECT 2 FROM commands_sent WHERE node = ?1"
            " UNION ALL SELECT 2 FROM contracts WHERE counterparty = ?1"
            " UNION ALL SELECT 1 FROM mgmt_credentials WHERE node = ?1"
            " UNION ALL SELECT 1 FROM offers WHERE offerer = ?1"
            " UNION ALL SELECT 1 FROM offers WHERE counterparty = ?1)",
            (pubkey,),
        ).fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    def relay_status(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT * FROM relay_status ORDER BY url")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]

    def notes(self) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT msg_id, sender, text, reply_to, received_at FROM notes ORDER BY id"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]

    def profiles(self) -> dict[str, dict[str, Any]]:
        rows = self.conn.execute("SELECT pubkey, payload FROM profiles").fetchall()
        return {pubkey: load_json_row(payload) for pubkey, payload in rows}

    def kv(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return default if row is None else load_json_row(row[0])

    def table_counts(self) -> dict[str, int]:
        tables = [
            r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        return {t: self.conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}  # noqa: S608

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table (attack tests compare the whole state before and after)."""
        tables = [
            r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        return {
            t: sorted(self.conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)  # noqa: S608
            for t in sorted(tables)
        }


Db = Store | Tx  # what a repository read takes: the store, or the open transaction it runs in
