"""The command line's plumbing, as a user runs it (real processes, a real relay): what is
published when, reads no relay answered, options anywhere, input checked before connecting,
closed pipes, daemon logs, shell completion."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import nostr_sdk as sdk
import pytest
from websockets.sync.client import connect

from events.base import sign_event
from tests.conftest import HIVE_AGENT

ANNOUNCED = [0, 10002, 10050]


def run(home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [HIVE_AGENT, "--home", str(home), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def query(url: str, spec: dict) -> list[dict]:
    """Every event the relay holds for `spec` (REQ until EOSE)."""
    with connect(url, open_timeout=5) as ws:
        ws.send(json.dumps(["REQ", "q", spec]))
        found = []
        while True:
            message = json.loads(ws.recv(timeout=5))
            if message[0] == "EOSE":
                return found
            if message[0] == "EVENT":
                found.append(message[2])


def dead_url() -> str:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"ws://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def home(tmp_path: Path) -> tuple[Path, str]:
    home = tmp_path / "home"
    made = run(home, "--json", "keys", "new")
    assert made.returncode == 0, made.stderr
    return home, json.loads(made.stdout)["pubkey"]


def write_relays(home: Path, url: str) -> None:
    config = {"relays": [{"url": url, "read": True, "write": True}], "dm_relays": [url]}
    (home / "relays.json").write_text(json.dumps(config))


# --- relay lists and the profile --------------------------------------------------------------


def test_a_one_off_command_publishes_no_relay_list_or_profile(home, relays) -> None:
    path, pub = home
    url = relays().start()
    browsed = run(path, "market", "browse", "--relay", url)
    assert (browsed.returncode, browsed.stdout) == (0, "no listings match\n")
    sent = run(path, "note", "send", pub, "to myself", "--relay", url)
    assert sent.returncode == 0, sent.stderr
    assert query(url, {"kinds": ANNOUNCED, "authors": [pub]}) == []


def test_run_announces_once_and_a_second_start_publishes_nothing(home, relays) -> None:
    path, pub = home
    url = relays().start()
    write_relays(path, url)
    assert run(path, "run", "--until-idle", "--timeout", "10").returncode == 0
    first = query(url, {"kinds": ANNOUNCED, "authors": [pub]})
    assert sorted(e["kind"] for e in first) == ANNOUNCED
    profile = next(e for e in first if e["kind"] == 0)
    content = json.loads(profile["content"])
    assert content["name"] == "hive-agent" and content["bot"] is True
    relay_list = next(e for e in first if e["kind"] == 10002)
    assert relay_list["tags"] == [["r", url]]
    again = run(path, "run", "--until-idle", "--timeout", "10")
    assert again.returncode == 0
    assert "event=announce kind=0 state=unchanged" in again.stderr
    assert query(url, {"kinds": ANNOUNCED, "authors": [pub]}) == first  # nothing newer


def test_node_announces_itself_as_a_node_agent(home, relays) -> None:
    path, pub = home
    url = relays().start()
    write_relays(path, url)
    ran = run(path, "node", "--seconds", "3")
    assert ran.returncode == 0, ran.stderr
    assert "event=announce kind=0 state=published" in ran.stderr
    (profile,) = query(url, {"kinds": [0], "authors": [pub]})
    assert json.loads(profile["content"]) == {
        "name": "hive-agent",
        "about": "Lightning Hive node agent: takes advisor commands for a Lightning node over Nostr",
        "bot": True,
    }


def test_a_list_the_relay_lost_is_published_again(home, relays) -> None:
    path, pub = home
    relay = relays()  # in memory: a restart forgets everything
    url = relay.start()
    write_relays(path, url)
    assert run(path, "run", "--until-idle", "--timeout", "10").returncode == 0
    relay.stop()
    relay.restart()
    assert query(url, {"kinds": ANNOUNCED, "authors": [pub]}) == []
    assert run(path, "run", "--until-idle", "--timeout", "10").returncode == 0
    assert sorted(e["kind"] for e in query(url, {"authors": [pub]})) == ANNOUNCED


def test_a_daemon_with_a_one_off_relay_announces_nothing(home, relays) -> None:
    path, pub = home
    url = relays().start()
    ran = run(path, "run", "--until-idle", "--timeout", "10", "--relay", url)
    assert ran.returncode == 0, ran.stderr
    assert query(url, {"kinds": ANNOUNCED, "authors": [pub]}) == []


def test_the_users_own_profile_and_relay_list_are_never_replaced(home, relays) -> None:
    """A key imported from the user's own Nostr identity: the profile and relay list another
    client wrote stay as they are (the agent says so); the inbox list it lacked is published."""
    path, pub = home
    url = relays().start()
    write_relays(path, url)
    keys = sdk.Keys.parse((path / "nostr.key").read_text().strip())
    now = int(time.time()) - 60
    mine = [
        sign_event(keys, 0, json.dumps({"name": "alice", "about": "me"}), [], now),
        sign_event(keys, 10002, "", [["r", "wss://alice.example"]], now),
    ]
    with connect(url, open_timeout=5) as ws:
        for ev in mine:
            ws.send(f'["EVENT",{ev.to_json()}]')
            assert json.loads(ws.recv(timeout=5))[2] is True
    ran = run(path, "run", "--until-idle", "--timeout", "10")
    assert ran.returncode == 0, ran.stderr
    held = {e["kind"]: e for e in query(url, {"kinds": ANNOUNCED, "authors": [pub]})}
    assert held[0]["id"] == mine[0].id and held[10002]["id"] == mine[1].id
    assert 10050 in held  # the DM inbox list it lacked
    assert "event=announce kind=0 state=kept" in ran.stderr
    assert "event=announce kind=10002 state=kept" in ran.stderr


# --- reads that no relay answered -------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["market", "browse"],
        ["market", "show", "nosuch"],
        ["rfp", "list"],
        ["rep", "show", "ab" * 32],
    ],
)
def test_a_read_no_relay_answered_exits_69_naming_the_relays(home, command) -> None:
    path, _ = home
    url = dead_url()
    result = run(path, *command, "--relay", url)
    assert result.returncode == 69, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        f"error: RELAY_UNAVAILABLE: no relay answered the query: {url} (connection refused)"
    )
    as_json = run(path, *command, "--relay", url, "--json")
    assert as_json.returncode == 69
    assert json.loads(as_json.stdout)["error"]["code"] == "RELAY_UNAVAILABLE"


# --- options anywhere, input checked first ----------------------------------------------------


def test_json_and_home_go_anywhere(home, relays) -> None:
    path, pub = home
    url = relays().start()
    after = subprocess.run(
        [HIVE_AGENT, "market", "browse", "--relay", url, "--json", "--home", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout) == {"listings": [], "skipped": {}}
    shown = run(path, "keys", "show", "--json")
    assert json.loads(shown.stdout)["pubkey"] == pub
    missing = run(path, "escrow", "show", "nosuch", "--json")
    assert missing.returncode == 65
    assert json.loads(missing.stdout)["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("bad", "code", "status"),
    [
        (["market", "publish", "--id", "x", "--service", "advisor", "--title", "t", "--summary",
          "s", "--price", "1", "--frequency", "month", "--pricing-model", "flat", "--primary", "p"],
         "INVALID_PARAMS", 65),  # a valid choice that does not fit the service: checked first
        (["market", "publish", "--id", "x", "--pricing-model", "fixed"], "USAGE", 64),
        (["market", "browse", "--max-price", "cheap"], "USAGE", 64),
        (["market", "browse", "--service", "plumbing"], "USAGE", 64),
        (["--log-level", "loud", "market", "browse"], "USAGE", 64),
        (["rfp", "list", "--log-level", "loud"], "USAGE", 64),
        (["rfp", "post", "--id", "r", "--service", "advisor", "--need", "fees", "--max-price",
          "-5"], "USAGE", 64),
        (["escrow", "fund", "ab" * 32, "--credential", "c0ffee", "--amount", "100", "--schema",
          "hive:fee-policy/*", "--max-danger", "5"], "MINT_NOT_ALLOWED", 65),
        (["escrow", "fund", "ab" * 32, "--credential", "c0ffee", "--amount", "100", "--schema",
          "hive:fee-policy/*", "--max-danger", "5", "--mint", "http://127.0.0.1:1"],
         "MINT_NOT_ALLOWED", 65),
    ],
)  # fmt: skip
def test_a_bad_value_fails_before_connecting(home, bad, code: str, status: int) -> None:
    """The relay listens but never answers a handshake: a command that tried to connect would
    wait out the 5 s connect timeout, and its connection would be waiting in the backlog."""
    path, _ = home
    with socket.socket() as relay:
        relay.bind(("127.0.0.1", 0))
        relay.listen(8)
        url = f"ws://127.0.0.1:{relay.getsockname()[1]}"
        started = time.monotonic()
        result = run(path, *bad, "--relay", url)
        elapsed = time.monotonic() - started
        relay.setblocking(False)
        with pytest.raises(BlockingIOError):
            relay.accept()  # nobody knocked
    assert result.returncode == status, result.stderr
    assert result.stderr.startswith(f"error: {code}: ") and result.stderr.count("\n") == 1
    # ~0.9 s on an idle machine (the interpreter's start); the knock above is the exact check,
    # this bound only has to stay clear of a busy CI machine
    assert elapsed < 8, elapsed


def test_a_bad_hive_log_is_a_usage_error(home) -> None:
    path, _ = home
    result = run(path, "status", env={"HIVE_LOG": "chatty"})
    assert result.returncode == 64
    assert (
        result.stderr
        == "error: USAGE: HIVE_LOG='chatty' is not one of debug, info, warning, error\n"
    )


# --- a reader that went away ------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["keys", "show"], ["status"], ["escrow", "list"], ["completion", "bash"]]
)
def test_a_closed_pipe_ends_quietly(home, command) -> None:
    path, _ = home
    proc = subprocess.Popen(
        [HIVE_AGENT, "--home", str(path), *command],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `… | true`: the reader is gone before anything is written
    err = proc.stderr.read()
    proc.stderr.close()
    assert (proc.wait(timeout=30), err) == (0, "")


def test_a_reader_that_stops_early_ends_quietly(home) -> None:
    path, _ = home
    pipeline = '"$0" --home "$1" completion fish | head -c 10; exit "${PIPESTATUS[0]}"'
    piped = subprocess.run(
        ["bash", "-c", pipeline, HIVE_AGENT, str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, "# fish com", "")


# --- daemon logs ------------------------------------------------------------------------------


def test_run_logs_logfmt_lines_and_the_level_is_chosen(home, relays) -> None:
    path, pub = home
    url = relays().start()
    write_relays(path, url)
    loud = run(path, "--log-level", "debug", "run", "--until-idle", "--timeout", "10")
    assert loud.returncode == 0, loud.stderr
    published = [line for line in loud.stderr.splitlines() if "event=published" in line]
    kinds = sorted(int(line.split(" kind=")[1].split()[0]) for line in published)
    assert kinds == [0, 10002, 10050, 31990]  # lists, profile and the NIP-89 handler
    assert all(" level=debug " in line for line in published)
    assert all(line.endswith(f" relay={url}") for line in published)
    ran = run(path, "run", "--until-idle", "--timeout", "10")
    assert ran.returncode == 0, ran.stderr
    lines = ran.stderr.splitlines()
    assert all(line.startswith("ts=") and " level=info " in line for line in lines), lines
    started = [line for line in lines if f"event=started pubkey={pub} " in line]
    assert len(started) == 1 and started[0].endswith(f" relays={url}")
    assert any(f"event=relay_connected relay={url}" in line for line in lines)
    quiet = run(path, "run", "--until-idle", "--timeout", "10", env={"HIVE_LOG": "error"})
    assert (quiet.returncode, quiet.stderr) == (0, "")
    secret = (path / "nostr.key").read_text().strip()
    assert secret not in loud.stderr + ran.stderr


def test_refusals_are_logged_with_their_code(home, relays) -> None:
    path, pub = home
    url = relays().start()
    junk = sign_event(sdk.Keys.generate(), 1059, "not a seal", [["p", pub]], int(time.time()))
    with connect(url, open_timeout=5) as ws:  # a gift wrap to us that does not open
        ws.send(json.dumps(["EVENT", json.loads(junk.to_json())]))
        assert json.loads(ws.recv(timeout=5))[2] is True
    ran = run(
        path, "run", "--until-idle", "--timeout", "10", "--relay", url, "--log-level", "debug"
    )
    assert ran.returncode == 0, ran.stderr
    refused = [line.split(" logger=")[1] for line in ran.stderr.splitlines() if "refused" in line]
    assert refused == [
        f"hive.inbound event=refused code=NIP44_MALFORMED relay={url}",  # debug: which relay
        "hive.agent event=refused code=NIP44_MALFORMED count=1",  # info: counts, once a second
    ]


# --- shell completion -------------------------------------------------------------------------


def test_bash_completion_is_valid_and_completes_the_tree(home, tmp_path: Path) -> None:
    path, _ = home
    made = run(path, "completion", "bash")
    assert made.returncode == 0
    script = tmp_path / "hive-agent.bash"
    script.write_text(made.stdout)
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in ("hive-agent", *words))
        probe = (
            f"source '{script}'; COMP_WORDS=({line}); COMP_CWORD={len(words)}; "
            '_hive_agent; printf "%s\\n" "${COMPREPLY[@]}"'
        )
        done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
        return done.stdout.split()

    top = complete("")
    assert {"run", "node", "market", "escrow", "rfp", "completion", "status"} <= set(top)
    assert complete("market", "") == ["browse", "publish", "refresh", "show", "update", "withdraw"]
    assert complete("market", "br") == ["browse"]
    assert "--json" in complete("market", "browse", "--") and "--relay" in complete(
        "market", "browse", "--"
    )


def test_zsh_and_fish_scripts(home) -> None:
    path, _ = home
    zsh = run(path, "completion", "zsh")
    assert zsh.returncode == 0 and zsh.stdout.startswith("#compdef hive-agent\n")
    if shutil.which("zsh"):
        assert subprocess.run(["zsh", "-n", "-c", zsh.stdout], check=False).returncode == 0
    fish = run(path, "completion", "fish").stdout
    assert (
        "complete -c hive-agent -f -n '__fish_seen_subcommand_from market; and not "
        "__fish_seen_subcommand_from browse publish refresh show update withdraw' -a browse"
    ) in fish
    assert run(path, "completion", "tcsh").returncode == 64


# --- the plugin logs through lightningd -------------------------------------------------------


@pytest.mark.anyio
async def test_the_plugin_logs_logfmt_lines_into_the_node_log(relays) -> None:
    import anyio

    from tests.node_scenario import ring
    from tests.test_plugin import plugin_on

    url = relays().start()
    net, ids = ring(clock=time.monotonic)
    async with plugin_on(net, ids[0], **{"hive-relays": url}) as plugin:

        def announced() -> list[str]:
            lines = [log.get("message", "") for log in plugin.logs]
            return [line for line in lines if "event=announce" in line]

        with anyio.fail_after(20):
            while len(announced()) < 3:
                await anyio.sleep(0.1)
    assert [line.split(" logger=")[1] for line in announced()] == [
        f"hive.transport event=announce kind={kind} state=published" for kind in (10002, 10050, 0)
    ]
    assert all(line.startswith("ts=") and " level=info " in line for line in announced())


def test_logfmt_values_from_strangers_stay_on_one_quoted_line() -> None:
    import logging

    from agent.logs import LogfmtFormatter

    record = logging.LogRecord(
        "hive.outbox", logging.WARNING, __file__, 1, "relay %s refused: %s",
        ("ws://x", 'blocked: \x1b]0;PWNED\x07\nlevel=error forged="yes"'), None,
    )  # fmt: skip
    line = LogfmtFormatter().format(record)
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line
    assert line.split(" ", 2)[1:] == [
        "level=warning",
        'logger=hive.outbox msg="relay ws://x refused: blocked: \\\\x1b]0;PWNED\\\\x07\\\\x0a'
        'level=error forged=\\"yes\\""',
    ]
