"""A flood of 10,000 junk events from one key neither blocks other senders nor grows the
receiving agent's memory without bound (the agent is a real `hive-agent run` process)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import anyio
import nostr_sdk as sdk
import pytest

from agent.nostr.client import RelayClient
from agent.store import Store
from events.base import NostrEvent, sign_event
from events.kinds import Kind
from tests.conftest import HIVE_AGENT
from tests.test_crash import hive, new_agent

pytestmark = pytest.mark.slow
FLOOD = 10_000


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def junk(keys: sdk.Keys, recipient: str, n: int, offset: int) -> list[NostrEvent]:
    now = int(time.time())
    return [
        sign_event(keys, Kind.GIFT_WRAP, f"junk {offset + i}", [["p", recipient]], now - i)
        for i in range(n)
    ]


async def flood(url: str, events: list[NostrEvent]) -> None:
    async with RelayClient([url]) as client:
        for i in range(0, len(events), 200):
            await asyncio.gather(*[client.publish(e) for e in events[i : i + 200]])


def counts(home: Path) -> dict[str, int]:
    return Store(home / "agent.sqlite").error_counts()


async def wait_for(check, timeout: float) -> float:
    started = time.monotonic()
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.1)
    return time.monotonic() - started


def test_flood_from_one_key(tmp_path: Path, relays) -> None:
    url = relays().start()
    a, b = tmp_path / "a", tmp_path / "b"
    new_agent(a)
    b_pub = new_agent(b)
    agent = subprocess.Popen(
        [HIVE_AGENT, "--home", str(b), "run", "--relay", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    flooder = sdk.Keys.generate()
    first, second = junk(flooder, b_pub, FLOOD, 0), junk(flooder, b_pub, FLOOD, FLOOD)

    async def scenario() -> tuple[float, int, int]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(flood, url, first)
            await wait_for(lambda: counts(b).get("RATE_LIMITED", 0) > 500, 60)
            # mid-flood, someone else writes
            sent = await anyio.to_thread.run_sync(
                hive, a, "note", "send", b_pub, "still reachable", "--relay", url
            )
            assert sent.returncode == 0, sent.stderr
            latency = await wait_for(lambda: bool(Store(b / "agent.sqlite").notes()), 10)
            assert counts(b).get("RATE_LIMITED", 0) < FLOOD - 100, "the flood was still running"
        await wait_for(lambda: counts(b).get("RATE_LIMITED", 0) >= FLOOD - 200, 60)
        after_first = rss_kb(agent.pid)
        await flood(url, second)
        await wait_for(lambda: counts(b).get("RATE_LIMITED", 0) >= 2 * FLOOD - 200, 60)
        return latency, after_first, rss_kb(agent.pid)

    try:
        latency, rss_first, rss_second = anyio.run(scenario, backend="asyncio")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=20)
    assert latency < 5
    # the burst (60) was let through to the handler, where junk fails to decrypt; the rest
    # was refused before any decryption
    errors = counts(b)
    assert errors["RATE_LIMITED"] >= 2 * FLOOD - 200
    assert errors.get("DECRYPT_FAILED", 0) + errors.get("NIP44_MALFORMED", 0) <= 200
    growth_mb = (rss_second - rss_first) / 1024
    print(f"flood: note latency {latency:.2f} s, RSS {rss_first} -> {rss_second} kB")
    assert growth_mb < 16, f"memory grew {growth_mb:.1f} MB over the second 10,000 events"
