"""Crash safety: the real `hive-agent` process is killed with SIGKILL at each named crash
point, restarted, and the outcome checked against a relay with persistent storage — every
event delivered with the id stored before the kill, none re-signed, no effect applied twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import anyio
import pytest

from agent.crash import POINTS
from agent.nostr.client import RelayClient
from agent.store import Store
from events.base import parse_event
from events.kinds import Kind
from tests.conftest import HIVE_AGENT

GIFT_WRAP = str(int(Kind.GIFT_WRAP))


def hive(home: Path, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HIVE_CRASH_AT"}
    if crash_at:
        env["HIVE_CRASH_AT"] = crash_at
    return subprocess.run(
        [HIVE_AGENT, "--home", str(home), *args],
        capture_output=True, text=True, timeout=90, env=env, check=False,
    )  # fmt: skip


def new_agent(home: Path) -> str:
    assert hive(home, "keys", "new").returncode == 0
    return json.loads(hive(home, "--json", "keys", "show").stdout)["pubkey"]


def wraps_on_relay(url: str, recipient: str) -> list[str]:
    async def fetch() -> list[str]:
        async with RelayClient([url]) as reader:
            await reader.subscribe([{"kinds": [Kind.GIFT_WRAP], "#p": [recipient]}])
            found = []
            with anyio.move_on_after(2):
                while True:
                    found.append(parse_event((await reader.inbox.receive()).raw).id)
            return found

    return anyio.run(fetch, backend="asyncio")


@pytest.fixture
def world(tmp_path: Path, relays) -> dict:
    url = relays(db=True).start()
    a, b = tmp_path / "a", tmp_path / "b"
    return {"url": url, "a": a, "b": b, "a_pub": new_agent(a), "b_pub": new_agent(b)}


OUTBOX_POINTS = ["outbox.after_store", "outbox.before_send", "outbox.after_send"]
INBOUND_POINTS = ["inbound.after_handler", "inbound.after_commit"]


ESCROW_POINTS = ["escrow.after_swap"]  # tests/test_escrow_crash.py (a redeem's lost answer)


def test_every_point_is_covered() -> None:
    from tests.test_advisory_crash import COMMAND_POINTS
    from tests.test_intent_plugin import INTENT_POINTS  # (real plugin processes, SIGKILL)
    from tests.test_settlement_crash import SETTLE_POINTS  # (a fleet process, SIGKILL)

    covered = set(OUTBOX_POINTS) | set(INBOUND_POINTS) | set(COMMAND_POINTS) | set(ESCROW_POINTS)
    covered |= set(INTENT_POINTS) | set(SETTLE_POINTS)
    covered |= {"contribution.after_report"}  # tests/test_contribution_crash.py (SIGKILL)
    assert covered == POINTS


@pytest.mark.parametrize("point", OUTBOX_POINTS)
def test_sender_killed_at(world: dict, point: str) -> None:
    url, a, b_pub = world["url"], world["a"], world["b_pub"]
    killed = hive(
        a,
        "note",
        "send",
        b_pub,
        "survives a kill -9",
        "--relay",
        url,
        crash_at=f"{point}:{GIFT_WRAP}",
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    stored = [i for i in Store(a / "agent.sqlite").due_outbox(2**40) if i.kind == Kind.GIFT_WRAP]
    assert len(stored) == 1, "the gift wrap was committed before the kill"
    wrap_id = stored[0].event_id

    restarted = hive(a, "run", "--until-idle", "--relay", url)
    assert restarted.returncode == 0, restarted.stderr
    item = Store(a / "agent.sqlite").outbox_item(wrap_id)
    assert item is not None
    assert item.state == "done"
    assert item.acked == {url}
    assert wraps_on_relay(url, b_pub) == [wrap_id]  # exactly one wrap, with the stored id

    received = hive(world["b"], "run", "--until-idle", "--relay", url)
    assert received.returncode == 0, received.stderr
    assert [n["text"] for n in Store(world["b"] / "agent.sqlite").notes()] == ["survives a kill -9"]


@pytest.mark.parametrize("point", INBOUND_POINTS)
def test_receiver_killed_at(world: dict, point: str) -> None:
    url, b = world["url"], world["b"]
    sent = hive(world["a"], "note", "send", world["b_pub"], "apply me once", "--relay", url)
    assert sent.returncode == 0, sent.stderr

    killed = hive(b, "run", "--seconds", "20", "--relay", url, crash_at=f"{point}:{GIFT_WRAP}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    notes_at_kill = Store(b / "agent.sqlite").notes()
    assert len(notes_at_kill) == (1 if point == "inbound.after_commit" else 0)

    for _ in range(2):  # restart twice: the relay re-delivers every time
        again = hive(b, "run", "--until-idle", "--relay", url)
        assert again.returncode == 0, again.stderr
    notes = Store(b / "agent.sqlite").notes()
    assert [n["text"] for n in notes] == ["apply me once"]
