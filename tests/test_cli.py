"""`hive-agent` as a user runs it: real processes, exit codes, one-line errors, key files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import anyio
import nostr_sdk as sdk
import pytest

from agent.nostr.client import RelayClient
from events.base import parse_event, sign_event
from tests.conftest import HIVE_AGENT


def run(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [HIVE_AGENT, *(["--home", str(home)] if home else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: str, exit_code: int):
    assert result.returncode == exit_code, result
    assert result.stderr.startswith(f"error: {code}: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("hive-agent ")


def test_keys_new_and_show(tmp_path: Path) -> None:
    created = run("--json", "keys", "new", home=tmp_path)
    assert created.returncode == 0, created.stderr
    info = json.loads(created.stdout)
    key_file = tmp_path / "nostr.key"
    assert info["key_file"] == str(key_file)
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert tmp_path.stat().st_mode & 0o077 == 0 or tmp_path.exists()  # pre-existing dir kept
    secret = key_file.read_text().strip()
    assert sdk.Keys.parse(secret).public_key().to_hex() == info["pubkey"]
    shown = run("keys", "show", home=tmp_path)
    assert shown.returncode == 0 and info["pubkey"] in shown.stdout
    assert secret not in shown.stdout + shown.stderr + created.stdout + created.stderr
    assert_one_line_error(run("keys", "new", home=tmp_path), "KEY_EXISTS", 73)
    assert key_file.read_text().strip() == secret  # not overwritten


def test_new_home_directory_is_private(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    assert run("keys", "new", home=home).returncode == 0
    assert home.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_readable_key_is_refused(tmp_path: Path, mode: int) -> None:
    assert run("keys", "new", home=tmp_path).returncode == 0
    os.chmod(tmp_path / "nostr.key", mode)
    result = run("keys", "show", home=tmp_path)
    assert_one_line_error(result, "KEY_INSECURE", 77)
    assert "chmod 600" in result.stderr


def test_missing_and_corrupt_keys(tmp_path: Path) -> None:
    assert_one_line_error(run("keys", "show", home=tmp_path), "KEY_MISSING", 66)
    key_file = tmp_path / "nostr.key"
    key_file.write_text("not a key\n")
    key_file.chmod(0o600)
    assert_one_line_error(run("keys", "show", home=tmp_path), "KEY_INVALID", 65)
    key_file.write_text("00" * 32 + "\n")
    assert_one_line_error(run("keys", "show", home=tmp_path), "KEY_INVALID", 65)


def test_json_errors_go_to_stdout(tmp_path: Path) -> None:
    result = run("--json", "keys", "show", home=tmp_path)
    assert result.returncode == 66
    assert json.loads(result.stdout)["error"]["code"] == "KEY_MISSING"


def test_usage_errors() -> None:
    result = run("keys", "rotate")
    assert_one_line_error(result, "USAGE", 64)
    assert "invalid choice" in result.stderr
    as_json = run("--json", "keys", "rotate")
    assert as_json.returncode == 64
    assert json.loads(as_json.stdout)["error"]["code"] == "USAGE"


@pytest.mark.anyio
async def test_relay_serves_and_stops_on_sigterm(relays) -> None:
    relay = relays()
    url = relay.start()
    keys = sdk.Keys.generate()
    event = sign_event(keys, 1, "through the standalone relay", [], 1_700_000_000)
    # two clients: nostr-sdk does not report a client's own events back to it as new
    async with RelayClient([url]) as sender, RelayClient([url]) as receiver:
        assert (await sender.publish(event)).accepted
        await receiver.subscribe([{"ids": [event.id]}])
        with anyio.fail_after(5):
            assert parse_event((await receiver.inbox.receive()).raw) == event
    assert relay.stop() == 0  # SIGTERM
    assert "stopped (SIGTERM)" in relay.child.lines()


@pytest.mark.anyio
async def test_relay_with_db_keeps_events_across_restarts(tmp_path: Path, relays) -> None:
    keys = sdk.Keys.generate()
    event = sign_event(keys, 1, "persisted", [], 1_700_000_000)
    relay = relays(db=True)
    async with RelayClient([relay.start()]) as client:
        assert (await client.publish(event)).accepted
    relay.stop()
    async with RelayClient([relay.start()]) as client:
        await client.subscribe([{"ids": [event.id]}])
        with anyio.fail_after(5):
            assert parse_event((await client.inbox.receive()).raw) == event


def test_relay_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run("relay", "--port", str(busy.getsockname()[1]))
    assert_one_line_error(result, "RELAY_UNAVAILABLE", 69)


def test_note_send_run_notes_and_status(tmp_path: Path, relay_url: str) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("keys", "new", home=a).returncode == 0
    b_pub = json.loads(run("--json", "keys", "new", home=b).stdout)["pubkey"]
    sent = run("--json", "note", "send", b_pub, "hello via the CLI", "--relay", relay_url, home=a)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["published"] is True
    assert run("run", "--until-idle", "--relay", relay_url, home=b).returncode == 0
    notes = json.loads(run("--json", "notes", home=b).stdout)["notes"]
    assert [n["text"] for n in notes] == ["hello via the CLI"]
    status = json.loads(run("--json", "status", home=b).stdout)
    assert status["agent"]["pubkey"] == b_pub
    assert [r["status"] for r in status["relays"]] == ["connected"]
    # the NIP-89 handler; no relay lists or profile: --relay is a one-off override
    assert status["outbox"] == {"done": 1}
    assert status["errors"] == {}
    human = run("status", home=b).stdout
    assert relay_url in human and "connected" in human


def test_bad_relay_configuration(tmp_path: Path) -> None:
    assert run("keys", "new", home=tmp_path).returncode == 0
    assert_one_line_error(run("run", "--until-idle", home=tmp_path), "CONFIG_INVALID", 78)
    result = run("run", "--relay", "http://not-a-relay", home=tmp_path)
    assert_one_line_error(result, "CONFIG_INVALID", 78)
    result = run("note", "send", "zz", "hi", "--relay", "ws://127.0.0.1:1", home=tmp_path)
    assert_one_line_error(result, "INVALID_KEY", 65)


def test_market_cli(tmp_path: Path, relay_url: str) -> None:
    import secrets

    seller, buyer = tmp_path / "seller", tmp_path / "buyer"
    for home in (seller, buyer):
        assert run("keys", "new", home=home).returncode == 0
    lid = f"cli-{secrets.token_hex(4)}"
    cap = f"cap{secrets.token_hex(3)}"
    published = run(
        "--json",
        "market",
        "publish",
        "--relay",
        relay_url,
        "--id",
        lid,
        "--service",
        "advisor",
        "--title",
        "CLI desk",
        "--summary",
        "from the command line",
        "--price",
        "9000",
        "--frequency",
        "month",
        "--pricing-model",
        "per-action",
        "--primary",
        cap,
        "--trial-days",
        "7",
        "--trial-price",
        "700",
        home=seller,
    )
    assert published.returncode == 0, published.stderr
    address = json.loads(published.stdout)["address"]
    browse = run(
        "--json",
        "market",
        "browse",
        "--relay",
        relay_url,
        "--need",
        cap,
        "--budget",
        "9000",
        home=buyer,
    )
    rows = json.loads(browse.stdout)["listings"]
    assert [r["address"] for r in rows] == [address]
    assert rows[0]["breakdown"]["specialisation"] == 1.0
    table = run(
        "market", "browse", "--relay", relay_url, "--need", cap, "--explain", home=buyer
    ).stdout
    assert "CLI desk" in table and "specialisation 1.00×0.15" in table
    assert run("market", "withdraw", lid, "--relay", relay_url, home=seller).returncode == 0
    gone = run("--json", "market", "browse", "--relay", relay_url, "--need", cap, home=buyer)
    assert json.loads(gone.stdout)["listings"] == []
    bad = run(
        "market",
        "publish",
        "--relay",
        relay_url,
        "--id",
        "x y",
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
        "sat-hours",
        "--primary",
        "fees",
        home=seller,
    )
    assert_one_line_error(bad, "INVALID_PARAMS", 65)


def test_log_lines_from_strangers_are_one_safe_line() -> None:
    import logging

    from agent.logs import HumanFormatter

    record = logging.LogRecord(
        "hive.outbox", logging.WARNING, __file__, 1, "relay %s refused: %s",
        ("ws://x", "blocked: \x1b]0;PWNED\x07\x1b[2J\nerrors  none"), None,
    )  # fmt: skip
    text = HumanFormatter().format(record)
    assert "\x1b" not in text and "\x07" not in text and "\n" not in text
    assert "\\x1b]0;PWNED" in text
