"""NIP-77 catch-up: with a relay that speaks negentropy the agent asks only for what it lacks
(a restart no longer downloads two days of gift wraps again, and a wrap dated before the
subscription's cursor is still found); with one that does not, it falls back to `since`."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import nostr_sdk as sdk
import pytest

from agent import app
from agent.nostr.client import RelayClient
from agent.runtime import Agent
from agent.settings import RelaysConfig, Settings
from events import nip59, note

pytestmark = pytest.mark.anyio
FAST = {"reconnect_base_s": 0.1, "reconnect_max_s": 0.5, "publish_timeout_s": 5}


def wraps_to(recipient: str, n: int, *, sender: sdk.Keys, offset: int = 0) -> list:
    now = int(time.time())
    out = []
    for i in range(n):
        msg = note.Note(msg_id=f"{offset + i:032x}", text=f"note {offset + i}")
        rumor = note.rumor(sender.public_key().to_hex(), msg, created_at=now)
        out.append(nip59.wrap(sender, recipient, rumor, now=now))
    return out


async def publish(url: str, events: list) -> None:
    async with RelayClient([url]) as client:
        for event in events:
            assert (await client.publish(event)).accepted


async def run_agent(home: Path, keys: sdk.Keys, url: str, until: int) -> Agent:
    # one sender's 65 notes at once is beyond a stranger's burst (30): allow them here
    settings = Settings(home=home, per_stranger_per_minute=1000, strangers_per_minute=1000)
    async with app.standalone(settings, keys, RelaysConfig.single(url, **FAST)).agent as agent:
        with anyio.fail_after(20):
            while len(agent.store.notes()) < until:
                await anyio.sleep(0.05)
        await anyio.sleep(0.5)  # a catch-up still running would show in `received`
        return agent


async def test_restart_fetches_only_what_is_missing(tmp_path: Path, relays) -> None:
    url = relays(db=True).start()
    keys, sender = sdk.Keys.generate(), sdk.Keys.generate()
    me = keys.public_key().to_hex()
    await publish(url, wraps_to(me, 60, sender=sender))
    first = await run_agent(tmp_path / "b", keys, url, 60)
    assert first.pool.states[url].received >= 60
    # five more while the agent is down, dated (as NIP-59 does) up to two days back: most of
    # them before the inbox cursor, so `since` alone would miss them
    await publish(url, wraps_to(me, 5, sender=sender, offset=100))
    second = await run_agent(tmp_path / "b", keys, url, 65)
    received = second.pool.states[url].received
    assert received < 5 + 10, f"{received} events downloaded again after a restart"
    assert {n["text"] for n in second.store.notes()} >= {f"note {i}" for i in range(100, 105)}


async def test_relay_without_nip77_falls_back_to_since(tmp_path: Path, nostr_relay_url: str):
    keys, sender = sdk.Keys.generate(), sdk.Keys.generate()
    me = keys.public_key().to_hex()
    await publish(nostr_relay_url, wraps_to(me, 10, sender=sender))
    agent = await run_agent(tmp_path / "b", keys, nostr_relay_url, 10)
    conn_state = agent.pool.states[nostr_relay_url]
    assert conn_state.received >= 10
