"""The relay pool, outbox and agent against real relays: nostr-sdk's relay out of process
(with persistent storage) and PyPI nostr-relay, killed with SIGKILL and restarted."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import nostr_sdk as sdk
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import app
from agent.clock import ManualClock
from agent.nostr.client import RelayClient
from agent.nostr.pool import RelayPool, Subscription, split_event_frame
from agent.runtime import Agent
from agent.settings import RelayEntry, RelaysConfig, Settings
from events.base import NostrEvent, parse_event, sign_event
from events.profile import Profile

pytestmark = pytest.mark.anyio
FAST = {"reconnect_base_s": 0.1, "reconnect_max_s": 0.5, "publish_timeout_s": 3}


def settings(home: Path) -> Settings:
    return Settings(
        home=home, outbox_retry_base_s=0.2, outbox_retry_max_s=1, allow_private_relays=True
    )


@asynccontextmanager
async def agent(
    home: Path, relays: RelaysConfig, keys: sdk.Keys | None = None
) -> AsyncIterator[Agent]:
    async with app.standalone(settings(home), keys or sdk.Keys.generate(), relays).agent as a:
        yield a


async def eventually(check: Callable[[], bool], timeout: float = 15, what: str = "condition"):
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.05)


async def fetch_ids(url: str, ids: list[str]) -> set[str]:
    """What the relay holds, asked by a separate client."""
    async with RelayClient([url]) as reader:
        await reader.subscribe([{"ids": ids}])
        found: set[str] = set()
        with anyio.move_on_after(3):
            while len(found) < len(ids):
                found.add(parse_event((await reader.inbox.receive()).raw).id)
    return found


def notes_for(keys: sdk.Keys, n: int, tag: str) -> list[NostrEvent]:
    return [sign_event(keys, 1, f"{tag} {i}", [["t", tag]], int(time.time()) + i) for i in range(n)]


@pytest.mark.parametrize("implementation", ["nostr-sdk", "nostr-relay"])
async def test_relay_killed_mid_publish_gets_every_event_once_back(
    tmp_path: Path, relays, implementation: str
) -> None:
    relay = relays(db=True, kind=implementation)
    url = relay.start()
    async with agent(tmp_path / "a", RelaysConfig.single(url, **FAST)) as a:
        events = notes_for(a.keys, 30, "killed")
        stored = [a.outbox.submit(ev).event_id for ev in events[:10]]
        await eventually(lambda: a.outbox.pending() <= 8, what="some acks")
        relay.kill()
        stored += [a.outbox.submit(ev).event_id for ev in events[10:]]
        await eventually(lambda: a.pool.states[url].status != "connected")
        assert a.outbox.pending() >= 20
        relay.restart()
        await eventually(lambda: a.outbox.pending() == 0, timeout=30, what="outbox drained")
        assert stored == [ev.id for ev in events]  # the ids committed before the kill
        for ev in events:
            item = a.store.outbox_item(ev.id)
            assert item is not None
            assert item.event_json == ev.to_json()  # sent as stored, never re-signed
            assert item.acked == {url}
    assert await fetch_ids(url, stored) == set(stored)


async def test_two_of_three_relays_down(tmp_path: Path, relays, nostr_relay_url: str) -> None:
    r1, r2 = relays(), relays()
    urls = [r1.start(), r2.start(), nostr_relay_url]
    config = RelaysConfig(relays=[RelayEntry(url=u) for u in urls], min_acks=1, **FAST)
    async with agent(tmp_path / "a", config) as a, agent(tmp_path / "b", config) as b:
        await eventually(lambda: len(a.pool.connected()) == 3 and len(b.pool.connected()) == 3)
        r1.kill()
        r2.kill()
        await eventually(lambda: len(a.pool.connected()) == 1 and len(b.pool.connected()) == 1)
        item = await a.send_note(b.pubkey, "still here")
        assert item.published and item.acked == {nostr_relay_url}
        await eventually(lambda: [n["text"] for n in b.store.notes()] == ["still here"])
        # the next reconnect attempt is refused, and says so
        await eventually(lambda: "refused" in (a.pool.states[urls[0]].last_error or ""))
        a._write_status()
        status = {r["url"]: r for r in a.store.relay_status()}
        assert status[urls[0]]["status"] == status[urls[1]]["status"] == "disconnected"
        assert status[nostr_relay_url]["status"] == "connected"
        assert "refused" in (status[urls[0]]["last_error"] or "")


async def test_subscriptions_catch_up_after_a_reconnect(tmp_path: Path, relays) -> None:
    relay = relays(db=True)
    url = relay.start()
    slow = RelaysConfig.single(url, reconnect_base_s=3, reconnect_max_s=3, publish_timeout_s=3)
    async with (
        agent(tmp_path / "a", RelaysConfig.single(url, **FAST)) as a,
        agent(tmp_path / "b", slow) as b,
    ):
        await eventually(lambda: bool(b.pool.connected()))
        relay.kill()
        await eventually(lambda: not a.pool.connected() and not b.pool.connected())
        relay.restart()
        await eventually(lambda: bool(a.pool.connected()), timeout=5)
        assert not b.pool.connected()  # b is still waiting out its backoff
        await a.send_note(b.pubkey, "sent while you were away")
        await eventually(lambda: bool(b.store.notes()), timeout=15)
    assert b.store.notes()[0]["text"] == "sent while you were away"


def test_resubscription_filters_use_cursor_and_lookback() -> None:
    clock = ManualClock(1_000_000)
    pool = RelayPool(
        RelaysConfig.single("ws://127.0.0.1:1"),
        sdk.Keys.generate(),
        clock,
        cursor=lambda relay, sub: {"profiles": 999_000}.get(sub),
        catchup_margin_s=600,
    )
    profiles = pool._filters_for("ws://127.0.0.1:1", Subscription("profiles", [{"kinds": [1]}]))
    assert profiles[0]["since"] == 998400
    wraps = Subscription("inbox", [{"kinds": [1059]}], lookback_s=2 * 86400 + 3600)
    assert pool._filters_for("x", wraps)[0]["since"] == 1_000_000 - 2 * 86400 - 3600


async def test_nip42_auth_relay(tmp_path: Path, relays) -> None:
    relay = relays(auth=True)
    url = relay.start()
    async with RelayClient([url]) as anonymous:
        refused = await anonymous.publish(sign_event(sdk.Keys.generate(), 1, "x", [], 1))
        assert not refused.accepted
        assert "auth-required" in next(iter(refused.failed.values()))
    config = RelaysConfig.single(url, **FAST)
    async with agent(tmp_path / "a", config) as a, agent(tmp_path / "b", config) as b:
        item = await a.send_note(b.pubkey, "authenticated")
        assert item.published
        await eventually(lambda: bool(b.store.notes()))


async def test_private_messages_go_to_the_recipients_inbox_relays(tmp_path: Path, relays) -> None:
    shared, inbox = relays(), relays()
    shared_url, inbox_url = shared.start(), inbox.start()
    b_config = RelaysConfig(
        relays=[RelayEntry(url=shared_url), RelayEntry(url=inbox_url, write=False)],
        dm_relays=[inbox_url],
        **FAST,
    )
    async with agent(tmp_path / "b", b_config) as b:
        assert await b.announce(Profile(name="b")) == [10002, 10050, 0]  # as `run` does
        await eventually(lambda: b.outbox.pending() == 0)  # 10002 and 10050 published
        async with agent(tmp_path / "a", RelaysConfig.single(shared_url, **FAST)) as a:
            item = await a.send_note(b.pubkey, "to your inbox")
            assert item.targets == [inbox_url]
            await eventually(lambda: bool(b.store.notes()))
    assert await fetch_ids(inbox_url, [item.event_id]) == {item.event_id}
    assert await fetch_ids(shared_url, [item.event_id]) == set()


async def test_agents_talk_through_pypi_nostr_relay(tmp_path: Path, nostr_relay_url: str) -> None:
    config = RelaysConfig.single(nostr_relay_url, **FAST)
    async with agent(tmp_path / "a", config) as a, agent(tmp_path / "b", config) as b:
        await a.send_note(b.pubkey, "through another relay implementation")
        await eventually(lambda: bool(b.store.notes()))
        assert b.store.error_counts() == {}


@given(
    sub=st.text(max_size=40),
    event=st.dictionaries(st.text(max_size=8), st.text(max_size=20) | st.integers(), max_size=6),
    spaced=st.booleans(),
)
def test_event_frames_split_into_sub_and_raw_event(sub: str, event: dict, spaced: bool) -> None:
    separators = (", ", ": ") if spaced else (",", ":")
    frame = json.dumps(["EVENT", sub, event], separators=separators)
    found = split_event_frame(frame)
    assert found is not None
    assert found[0] == sub and json.loads(found[1]) == event


@pytest.mark.parametrize("frame", ['["EVENT"]', '["EVENT",', '["EVENT",5,{}]', '["EVENT","s"]'])
def test_malformed_event_frames(frame: str) -> None:
    assert split_event_frame(frame) is None
