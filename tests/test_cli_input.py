"""Bad local input — files, options, the store itself — gets one typed line (or one JSON
object under --json) and a sysexits status; never INTERNAL, never a traceback, and nothing
is sent before the input has been checked."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.store import Store
from tests.conftest import HIVE_AGENT

HEX = "ab" * 32


def run(home: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None):
    return subprocess.run(
        [HIVE_AGENT, "--home", str(home), *args],
        capture_output=True, text=True, timeout=60, check=False, input=stdin,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def assert_typed(home: Path, args: list[str], code: str, status: int, **kw) -> str:
    """The error is one line on stderr, and one JSON object on stdout under --json."""
    plain = run(home, *args, **kw)
    assert plain.returncode == status, (plain.returncode, plain.stderr)
    assert plain.stderr.startswith(f"error: {code}: "), plain.stderr
    assert plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    assert "INTERNAL" not in plain.stderr
    as_json = run(home, "--json", *args, **kw)
    assert as_json.returncode == status
    assert json.loads(as_json.stdout)["error"]["code"] == code
    return plain.stderr


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    assert run(home, "keys", "new").returncode == 0
    return home


def key_is_a_directory(home: Path) -> list[str]:
    (home / "nostr.key").unlink()
    (home / "nostr.key").mkdir(mode=0o700)
    return ["keys", "show"]


def relays_is_a_directory(home: Path) -> list[str]:
    (home / "relays.json").mkdir()
    return ["run", "--seconds", "1"]


def relays_not_utf8(home: Path) -> list[str]:
    (home / "relays.json").write_bytes(b'{"relays": [{"url": "wss://\xff"}]}')
    return ["run", "--seconds", "1"]


def relays_deeply_nested(home: Path) -> list[str]:
    (home / "relays.json").write_text("[" * 100_000 + "]" * 100_000)
    return ["run", "--seconds", "1"]


def policy_is_a_directory(home: Path) -> list[str]:
    (home / "policy.json").mkdir()
    return ["run", "--relay", "ws://127.0.0.1:1", "--seconds", "1"]


def policy_wrong(home: Path) -> list[str]:
    (home / "policy.json").write_text('{"quiet_hours_utc": [25, -3]}')
    return ["run", "--relay", "ws://127.0.0.1:1", "--seconds", "1"]


def store_garbage(home: Path) -> list[str]:
    (home / "agent.sqlite").write_bytes(b"this is not a database" * 500)
    return ["status"]


def store_too_new(home: Path) -> list[str]:
    Store(home / "agent.sqlite").close()
    conn = sqlite3.connect(home / "agent.sqlite")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    return ["status"]


def receipt_row_damaged(home: Path) -> list[str]:
    store = Store(home / "agent.sqlite")
    with store.transaction(int(time.time())) as tx:
        tx.execute(
            "INSERT INTO receipts_held (receipt_id, node, credential_id, seq, command_id,"
            " status, receipt, received_at) VALUES ('r', ?, 'c', 1, 'x', 'ok', '{\"broken', 0)",
            (HEX,),
        )
        tx.execute(  # of a credential held from that node (only those chains are read)
            "INSERT INTO mgmt_credentials (credential_id, role, node, advisor, grant_json,"
            " valid_until, created_at) VALUES ('c', 'held', ?, ?, '{}', 0, 0)",
            (HEX, HEX),
        )
    return ["receipts", "list"]


CASES: dict[str, tuple[Callable[[Path], list[str]], str, int]] = {
    "key file is a directory": (key_is_a_directory, "KEY_INVALID", 65),
    "relays.json is a directory": (relays_is_a_directory, "CONFIG_INVALID", 78),
    "relays.json is not UTF-8": (relays_not_utf8, "CONFIG_INVALID", 78),
    "relays.json nested 100,000 deep": (relays_deeply_nested, "CONFIG_INVALID", 78),
    "policy.json is a directory": (policy_is_a_directory, "CONFIG_INVALID", 78),
    "policy.json out of range": (policy_wrong, "CONFIG_INVALID", 78),
    "store is not a database": (store_garbage, "STORE_CORRUPT", 65),
    "store from a newer version": (store_too_new, "STORE_TOO_NEW", 78),
    "a stored receipt is damaged": (receipt_row_damaged, "STORE_CORRUPT", 65),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_local_files(home: Path, case: str) -> None:
    make, code, status = CASES[case]
    assert_typed(home, make(home), code, status)


@pytest.mark.parametrize(
    ("args", "code", "status"),
    [
        (["note", "send", HEX, ""], "INVALID_PARAMS", 65),
        (["note", "send", HEX, "x" * 70_000], "INVALID_PARAMS", 65),
        (["note", "send", "npub1nothing", "hi"], "INVALID_KEY", 65),
        (["advise", HEX, "fee-policy", "set_single", "--timeout", "nan"], "USAGE", 64),
        (["advise", HEX, "fee-policy", "set_single", "--timeout", "inf"], "USAGE", 64),
        (["advise", HEX, "fee-policy", "set_single", "--timeout", "-1"], "USAGE", 64),
        (["relay", "--port", "99999"], "USAGE", 64),
        (["run", "--seconds", "1e999"], "USAGE", 64),
        (["rep", "show", "nothex"], "INVALID_KEY", 65),
        (
            [
                "market",
                "publish",
                "--id",
                "x",
                "--service",
                "advisor",
                "--title",
                "t",
                "--summary",
                "s",
                "--price",
                "1",
                "--frequency",
                "month",
                "--pricing-model",
                "subscription",
                "--primary",
                "fee-policy",
                "--description-file",
                "/nonexistent/d.md",
            ],
            "INPUT_MISSING",
            66,
        ),
        (
            ["rep", "issue", HEX, "--domain", "hive:advisor", "--evidence-file", "/nonexistent"],
            "INPUT_MISSING",
            66,
        ),
        (
            [
                "market",
                "publish",
                "--id",
                "x",
                "--service",
                "advisor",
                "--title",
                "t",
                "--summary",
                "s",
                "--price",
                "1",
                "--frequency",
                "month",
                "--pricing-model",
                "subscription",
                "--primary",
                "fee-policy",
                "--days",
                "100000",
            ],
            "INVALID_PARAMS",
            65,
        ),
        (
            [
                "market",
                "publish",
                "--id",
                "x",
                "--service",
                "advisor",
                "--title",
                "t",
                "--summary",
                "s",
                "--price",
                "1",
                "--frequency",
                "month",
                "--pricing-model",
                "flat",
                "--primary",
                "fee-policy",
            ],
            "INVALID_PARAMS",
            65,
        ),
        (["keys", "rotate"], "USAGE", 64),
        (["relay", "--host", "999.1.1.1", "--port", "0"], "RELAY_UNAVAILABLE", 69),
        (["relay", "--db", "/dev/null", "--port", "0"], "RELAY_UNAVAILABLE", 69),
        (["relay", "--rate", "-5"], "USAGE", 64),
        (["relay", "--host", ""], "CONFIG_INVALID", 78),
        (
            ["rep", "issue", HEX, "--domain", "hive:advisor", "--period-days", "99999999999999"],
            "USAGE",
            64,
        ),
        (
            ["rep", "issue", HEX, "--domain", "hive:advisor", "--metric", "x=y"],
            "INVALID_PARAMS",
            65,
        ),
        (["credential", "grant", HEX, "--schema", "x"], "INVALID_PARAMS", 65),
        (
            ["advise", HEX, "fee-policy", "set_single", "channel=1x1x1", "fee_ppm=²"],
            "INVALID_PARAMS",
            65,
        ),
        (["advise", HEX, "teleport", "go"], "INVALID_PARAMS", 65),
        (["market", "publish", "--id", "x", "--days", "100000000000000000000"], "USAGE", 64),
    ],
)
def test_bad_options_are_refused_before_anything_is_sent(
    home: Path, args: list[str], code: str, status: int
) -> None:
    started = time.monotonic()
    # a relay that does not answer: a check made only after connecting would take seconds
    assert_typed(home, [*args, "--relay", "ws://127.0.0.1:1"] if args[0] in (
        "note", "advise", "market", "rep", "credential") else args, code, status)  # fmt: skip
    assert time.monotonic() - started < 8  # two runs, neither waits for a connection
    assert Store(home / "agent.sqlite").outbox_counts() == {}


def test_home_where_nothing_can_be_written() -> None:
    assert_typed(Path("/proc/1"), ["keys", "new"], "CONFIG_INVALID", 78)


def test_home_that_is_a_file(tmp_path: Path) -> None:
    home = tmp_path / "file"
    home.write_text("not a directory")
    assert_typed(home, ["keys", "new"], "CONFIG_INVALID", 78)
    assert_typed(home, ["status"], "CONFIG_INVALID", 78)


def test_empty_home_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [HIVE_AGENT, "status"], capture_output=True, text=True, timeout=60, check=False,
        cwd=tmp_path, env={**os.environ, "HIVE_HOME": ""},
    )  # fmt: skip
    assert result.returncode == 78 and "HIVE_HOME is empty" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no store created in the current directory


def test_store_locked_by_another_process(home: Path) -> None:
    Store(home / "agent.sqlite").close()
    holder = sqlite3.connect(home / "agent.sqlite", isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO kv (key, value) VALUES ('held', '1')")
    try:
        result = run(home, "--json", "approvals", "approve", "abcdef")
        assert result.returncode == 75, result.stderr
        assert json.loads(result.stdout)["error"]["code"] == "STORE_BUSY"
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_store_backed_up_before_a_migration(tmp_path: Path) -> None:
    """A store from before migrations 7 and 8 (made with the first six migrations): it is
    copied aside (0600) before migrating, and its rows survive the outbox's rebuild."""
    from agent.store.database import _statements
    from agent.store.migrations import MIGRATIONS

    home = tmp_path / "old"
    home.mkdir(mode=0o700)
    conn = sqlite3.connect(home / "agent.sqlite", isolation_level=None)
    for script in MIGRATIONS[:6]:
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 6")
    conn.execute(
        "INSERT INTO outbox VALUES ('e1', '{}', 1, '[\"wss://r.example\"]', 1, 0, 9, 0, 0,"
        " 'pending', NULL)"
    )
    conn.execute("INSERT INTO outbox_acks VALUES ('e1', 'wss://r.example', 1, NULL)")
    conn.close()
    (home / "agent.sqlite").chmod(0o600)
    assert run(home, "status").returncode == 0
    backup = home / "agent.sqlite.v6.bak"
    assert backup.exists() and backup.stat().st_mode & 0o777 == 0o600
    assert sqlite3.connect(backup).execute("PRAGMA user_version").fetchone()[0] == 6
    store = Store(home / "agent.sqlite")
    assert store.schema_version == len(MIGRATIONS)
    item = store.outbox_item("e1")
    assert item is not None and item.acked == {"wss://r.example"} and item.state == "pending"


def test_a_closed_pipe_ends_quietly(home: Path) -> None:
    proc = subprocess.Popen(
        [HIVE_AGENT, "--home", str(home), "keys", "show"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before anything is written (`… | true`)
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=30) == 0
    assert err == ""


def test_revoking_a_credential_we_never_issued_is_refused(home: Path, relays) -> None:
    url = relays().start()
    refused = run(home, "--json", "rep", "revoke", "nosuch", "--relay", url)
    assert refused.returncode == 65
    assert json.loads(refused.stdout)["error"]["code"] == "NOT_FOUND"
    kinds = [k for (k,) in Store(home / "agent.sqlite").conn.execute("SELECT kind FROM outbox")]
    assert 5 not in kinds  # no deletion of nothing was published
