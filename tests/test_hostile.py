"""What a stranger, a dead relay or a careless operator can do to a running agent, tried
against real `hive-agent` processes and real relays: no crash (never a segfault), no hang, no
port scan, no poisoned cursor, no raw terminal escapes — every refusal typed and counted."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import anyio
import nostr_sdk as sdk
import pytest

from agent.keys import load_key_file
from agent.nostr.client import RelayClient
from agent.store import Store
from events import agent_info, nip59, note, relay_lists
from events.base import NostrEvent
from events.kinds import Kind
from tests.conftest import HIVE_AGENT
from tests.test_crash import new_agent, wraps_on_relay


def hive(home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 90):
    return subprocess.run(
        [HIVE_AGENT, "--home", str(home), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def publish(url: str, *events: NostrEvent) -> None:
    async def go() -> None:
        async with RelayClient([url]) as client:
            for event in events:
                result = await client.publish(event)
                assert result.accepted, result

    anyio.run(go, backend="asyncio")


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"ws://127.0.0.1:{s.getsockname()[1]}"


def outbox_states(home: Path) -> dict[int, list[str]]:
    rows = Store(home / "agent.sqlite").conn.execute("SELECT kind, state FROM outbox").fetchall()
    out: dict[int, list[str]] = {}
    for kind, state in rows:
        out.setdefault(kind, []).append(state)
    return out


# --- crashes and hangs -----------------------------------------------------------------------


def test_pending_item_for_a_relay_no_longer_configured_starts_cleanly(tmp_path: Path, relays):
    """The operator replaced a dead relay while a note waited for it: every later start used
    to die ("dictionary changed size during iteration", then SIGSEGV)."""
    live = relays().start()
    a, b = tmp_path / "a", tmp_path / "b"
    new_agent(a)
    b_pub = new_agent(b)
    sent = hive(a, "note", "send", b_pub, "for a relay that is gone", "--relay", dead_url(),
                "--no-wait")  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    for _ in range(2):
        started = time.monotonic()
        ran = hive(a, "run", "--relay", live, "--until-idle", "--timeout", "20")
        assert ran.returncode == 0, (ran.returncode, ran.stderr)
        assert "INTERNAL" not in ran.stderr
        assert time.monotonic() - started < 15


def test_a_strangers_inbox_list_of_dead_relays_cannot_break_the_sender(tmp_path: Path, relays):
    """Bob lists 32 dead inbox relays (on loopback, allowed here as a test network would be):
    Alice's note goes to at most three of them, and every start of Alice's agent is clean."""
    live = relays().start()
    a, b = tmp_path / "a", tmp_path / "b"
    new_agent(a)
    b_pub = new_agent(b)
    bob = load_key_file(b / "nostr.key")
    dead = [dead_url() for _ in range(32)]
    publish(live, relay_lists.build_dm_relays(bob, dead, created_at=int(time.time())))
    env = {"HIVE_ALLOW_PRIVATE_RELAYS": "1"}
    sent = hive(a, "note", "send", b_pub, "hello", "--relay", live, "--no-wait", env=env)
    assert sent.returncode == 0, sent.stderr
    targets = (
        Store(a / "agent.sqlite")
        .conn.execute("SELECT targets FROM outbox WHERE kind = ?", (Kind.GIFT_WRAP,))
        .fetchone()[0]
    )
    assert len(json.loads(targets)) == 3 and set(json.loads(targets)) <= set(dead)
    ran = hive(a, "run", "--relay", live, "--until-idle", "--timeout", "30", env=env)
    assert ran.returncode == 0, (ran.returncode, ran.stderr)


def test_commands_never_wait_for_unrelated_rows(tmp_path: Path, relays):
    """A row for a dead relay (pending for 7 days) must not hold up `run --until-idle`,
    `credential grant` or `advise`; `advise --timeout` bounds the whole command."""
    live = relays().start()
    a, b = tmp_path / "a", tmp_path / "b"
    new_agent(a)
    b_pub = new_agent(b)
    assert (
        hive(a, "note", "send", b_pub, "stuck", "--relay", dead_url(), "--no-wait").returncode == 0
    )
    started = time.monotonic()
    ran = hive(a, "run", "--relay", live, "--until-idle")
    assert ran.returncode == 0, ran.stderr
    granted = hive(a, "--json", "credential", "grant", b_pub, "--schema", "hive:fee-policy/*",
                   "--relay", live)  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    assert json.loads(granted.stdout)["delivered"] is True
    assert time.monotonic() - started < 25
    started = time.monotonic()
    advised = hive(b, "advise", json.loads(hive(a, "--json", "keys", "show").stdout)["pubkey"],
                   "fee-policy", "set_single", "channel=1x1x1", "fee_ppm=5", "--relay", live,
                   "--timeout", "3")  # fmt: skip
    assert time.monotonic() - started < 3 + 10  # connect (≤ 5 s) + the timeout, no more
    assert "INTERNAL" not in advised.stderr


def test_a_relay_refusing_a_superseded_relay_list_ends_its_retries(tmp_path: Path, relays):
    """The relay already holds a newer kind 10002 of ours (published by another device): it
    answers `OK false`, and the outbox stops instead of retrying for 7 days."""
    url = relays().start()
    a = tmp_path / "a"
    new_agent(a)
    keys = load_key_file(a / "nostr.key")
    newer = int(time.time()) + 120
    other = [url, "wss://other-device.example"]  # the other device's lists differ from ours
    publish(
        url,
        relay_lists.build_relay_list(keys, other, other, created_at=newer),
        relay_lists.build_dm_relays(keys, other, created_at=newer),
    )
    # our older lists, queued as a daemon whose announce raced the other device would queue them
    now = int(time.time())
    ours = [
        relay_lists.build_relay_list(keys, [url], [url], created_at=now),
        relay_lists.build_dm_relays(keys, [url], created_at=now),
    ]
    with Store(a / "agent.sqlite").transaction(now) as tx:
        for ev in ours:
            tx.enqueue(ev.id, ev.to_json(), ev.kind, [url], 1, now + 7 * 86400)
    started = time.monotonic()
    ran = hive(a, "run", "--relay", url, "--until-idle", "--timeout", "30")
    assert ran.returncode == 0, ran.stderr
    assert time.monotonic() - started < 15
    states = outbox_states(a)
    assert states[Kind.RELAY_LIST] == ["superseded"]
    assert states[Kind.DM_RELAYS] == ["superseded"]


def test_the_running_agent_delivers_what_other_processes_queue(tmp_path: Path, relays):
    """Rows another process commits to the outbox (`note send --no-wait` exits before it
    sends) are delivered by the running agent within a second, not after an hour's sleep."""
    url = relays().start()
    a, b = tmp_path / "a", tmp_path / "b"
    new_agent(a)
    b_pub = new_agent(b)
    runner = subprocess.Popen(
        [HIVE_AGENT, "--home", str(a), "run", "--relay", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert runner.stdout is not None and "running" in runner.stdout.readline()
        time.sleep(1.5)  # the runner has delivered its own rows and sleeps
        keys, store = load_key_file(a / "nostr.key"), Store(a / "agent.sqlite")
        now = int(time.time())
        wraps = []
        for i in range(5):  # exactly what another process's outbox would commit
            msg = note.Note(msg_id=os.urandom(16).hex(), text=f"note {i}")
            rumor = note.rumor(keys.public_key().to_hex(), msg, created_at=now)
            wraps.append(nip59.wrap(keys, b_pub, rumor, now=now))
        with store.transaction(now) as tx:
            for wrap in wraps:
                tx.enqueue(wrap.id, wrap.to_json(), wrap.kind, [url], 1, now + 3600)
        started = time.monotonic()
        while any(store.outbox_item(w.id).state == "pending" for w in wraps):
            assert time.monotonic() - started < 3, "the running agent did not notice the rows"
            time.sleep(0.05)
        assert time.monotonic() - started < 1.5
        assert {w.id for w in wraps} <= set(wraps_on_relay(url, b_pub))
    finally:
        runner.terminate()
        runner.communicate(timeout=20)


def test_second_agent_on_one_home_is_refused(tmp_path: Path, relays):
    url = relays().start()
    a = tmp_path / "a"
    new_agent(a)
    first = subprocess.Popen(
        [HIVE_AGENT, "--home", str(a), "run", "--relay", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert first.stdout is not None and "running" in first.stdout.readline()
        second = hive(a, "--json", "run", "--relay", url, "--seconds", "1")
        assert second.returncode == 75
        error = json.loads(second.stdout)["error"]
        assert error["code"] == "HOME_LOCKED" and f"pid {first.pid}" in error["message"]
        node = hive(a, "node", "--relay", url, "--seconds", "1")
        assert node.returncode == 75 and "HOME_LOCKED" in node.stderr
    finally:
        first.terminate()
        first.communicate(timeout=20)
    # the lock goes with the process, even a killed one
    again = hive(a, "run", "--relay", url, "--seconds", "0.5")
    assert again.returncode == 0, again.stderr


# --- hostile input ---------------------------------------------------------------------------


def profile(keys: sdk.Keys, name: str, created_at: int) -> NostrEvent:
    info = agent_info.AgentInfo(name=name, role="advisor", version="1")
    return agent_info.FAMILY.build(keys, info, created_at=created_at)


def test_a_future_dated_event_cannot_silence_a_subscription(tmp_path: Path, relays):
    url = relays(db=True).start()
    a = tmp_path / "a"
    new_agent(a)
    stranger, honest = sdk.Keys.generate(), sdk.Keys.generate()
    ten_years = int(time.time()) + 10 * 365 * 86400
    publish(url, profile(stranger, "from the future", ten_years))
    ran = hive(a, "run", "--relay", url, "--seconds", "2")
    assert ran.returncode == 0, ran.stderr
    store = Store(a / "agent.sqlite")
    assert store.error_counts().get("FROM_FUTURE") == 1
    cursors = store.conn.execute("SELECT max(last_created_at) FROM cursors").fetchone()[0]
    assert cursors is None or cursors <= time.time()
    # an honest profile published while the agent is down is found by the next start's
    # catch-up (a cursor ten years ahead would have hidden it)
    publish(url, profile(honest, "honest", int(time.time()) - 5))
    assert hive(a, "run", "--relay", url, "--seconds", "2").returncode == 0
    assert honest.public_key().to_hex() in Store(a / "agent.sqlite").profiles()


class Listener:
    """A TCP port that records whether anything connected (what a port scan would hit)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join()
        self.sock.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.1", "10.0.0.7"])
def test_a_strangers_inbox_list_cannot_make_us_dial_local_addresses(
    tmp_path: Path, relays, host: str
) -> None:
    live = relays().start()
    a, b = tmp_path / "a", tmp_path / "b"
    new_agent(a)
    b_pub = new_agent(b)
    listener = Listener()
    try:
        port = listener.port if host != "10.0.0.7" else 9
        inbox = [f"ws://{host}:{port}", f"ws://{host}:{port}/admin"]
        publish(live, relay_lists.build_dm_relays(
            load_key_file(b / "nostr.key"), inbox, created_at=int(time.time())
        ))  # fmt: skip
        sent = hive(a, "--json", "note", "send", b_pub, "hi", "--relay", live)
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout)["acked_by"] == [live]  # our own relay instead
        ran = hive(a, "run", "--relay", live, "--seconds", "1.5")
        assert ran.returncode == 0, ran.stderr
        assert listener.hits == 0
        relays_seen = [r["url"] for r in Store(a / "agent.sqlite").relay_status()]
        assert relays_seen == [live]
    finally:
        listener.close()


def test_strangers_text_never_reaches_the_terminal_raw(tmp_path: Path, relays):
    url = relays().start()
    a, b = tmp_path / "a", tmp_path / "b"
    new_agent(a)
    b_pub = new_agent(b)
    evil = "hi\x1b]0;owned\x07\x1b[2J\x1b[1;1H\u202eeman\x9b31m\x08"
    assert hive(a, "note", "send", b_pub, evil, "--relay", url).returncode == 0
    assert hive(b, "run", "--relay", url, "--seconds", "2").returncode == 0
    shown = hive(b, "notes")
    assert shown.returncode == 0 and "hi" in shown.stdout
    for raw in ("\x1b", "\x07", "\x9b", "\u202e", "\x08"):
        assert raw not in shown.stdout
    assert "\\x1b]0;owned" in shown.stdout  # shown, escaped
    as_json = json.loads(hive(b, "--json", "notes").stdout)
    assert as_json["notes"][0]["text"] == evil  # the data itself is untouched


def test_a_credential_granted_by_another_process_is_known_at_once(tmp_path: Path) -> None:
    """The strangers' limits must not meet an advisor whose credential `hive-agent credential
    grant` (another process) committed a moment ago: its 31st command in a burst would be
    refused, waiting for the next catch-up."""
    import secrets as _secrets

    from agent.settings import RelaysConfig, Settings
    from agent.transport import Transport

    agent = Transport(
        Settings(home=tmp_path), sdk.Keys.generate(), RelaysConfig.single("ws://r.example")
    )
    advisor = sdk.Keys.generate().public_key().to_hex()
    assert not agent.is_known(advisor)
    other = Store(tmp_path / "agent.sqlite")  # another process's connection
    with other.transaction(int(time.time())) as tx:
        tx.execute(
            "INSERT INTO mgmt_credentials (credential_id, role, node, advisor, grant_json,"
            " valid_until, created_at) VALUES (?, 'granted', ?, ?, '{}', ?, ?)",
            (_secrets.token_hex(16), agent.pubkey, advisor, int(time.time()) + 86400, 0),
        )
    assert agent.is_known(advisor)  # at once: no cached "no" outlives the grant
    # and the same within this process: the first message of a key is not known, the one
    # right after the credential it carried is (a node's grant, then its receipts)
    node = sdk.Keys.generate().public_key().to_hex()
    assert not agent.is_known(node)
    with agent.store.transaction(int(time.time())) as tx:
        tx.execute(
            "INSERT INTO mgmt_credentials (credential_id, role, node, advisor, grant_json,"
            " valid_until, created_at) VALUES (?, 'held', ?, ?, '{}', ?, ?)",
            (_secrets.token_hex(16), node, agent.pubkey, int(time.time()) + 86400, 0),
        )
    assert agent.is_known(node)
