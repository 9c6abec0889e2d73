"""A relay that lies: forged, malformed, oversized and future-dated events, junk frames and
answers that make no sense.  Every bad event reaches the inbound pipeline and is counted by
its code (nothing dropped unseen inside a client library), the good one is handled, and the
agent keeps running."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import anyio
import nostr_sdk as sdk
import pytest
import websockets

from agent import app
from agent.nostr.local_relay import free_port
from agent.runtime import Agent
from agent.settings import RelaysConfig, Settings
from events import agent_info

pytestmark = pytest.mark.anyio


def profile(keys: sdk.Keys, name: str, created_at: int) -> dict:
    info = agent_info.AgentInfo(name=name, role="advisor", version="1")
    return json.loads(agent_info.FAMILY.build(keys, info, created_at=created_at).to_json())


def bad_events() -> tuple[list[str], dict]:
    keys = sdk.Keys.generate()
    now = int(time.time())
    good = profile(keys, "honest", now - 10)
    forged = profile(sdk.Keys.generate(), "forged", now - 9) | {"sig": "00" * 64}
    wrong_id = profile(sdk.Keys.generate(), "wrong id", now - 8) | {"content": "{}"}
    future = profile(sdk.Keys.generate(), "future", now + 86400)
    # our own signer refuses to make an event this big; nostr-sdk's does not
    builder = sdk.EventBuilder(sdk.Kind(36380), "x" * 70_000).tags(
        [sdk.Tag.parse(["d", "h"]), sdk.Tag.parse(["t", "hive-agent"])]
    )
    huge = json.loads(builder.finalize(keys).as_json())
    frames = [
        ["EVENT", "SUB", good],
        ["EVENT", "SUB", forged],
        ["EVENT", "SUB", wrong_id],
        ["EVENT", "SUB", {"id": "zz", "kind": "x"}],
        ["EVENT", "SUB", future],
        ["EVENT", "SUB", huge],
    ]
    # compact frames, frames with spaces, and one with a space before "EVENT"
    raw = [
        json.dumps(f, separators=(",", ":")) if i % 2 else json.dumps(f)
        for i, f in enumerate(frames)
    ]
    raw[0] = " " + raw[0].replace("[", "[ ", 1)
    raw.append('["EVENT","SUB",{"id": oops not json}]')
    raw += ['{"not": "a list"}', '["OK"]', '["NOTICE"]', "[]", '["EOSE", 5]', "\x00garbage"]
    return raw, good


async def test_every_lie_is_counted_and_the_truth_gets_through(tmp_path: Path) -> None:
    frames, good = bad_events()
    port = free_port()

    async def relay(ws: websockets.WebSocketServerProtocol) -> None:
        async for message in ws:
            request = json.loads(message)
            if request[0] == "REQ" and request[1].startswith("profiles."):
                for frame in frames:
                    await ws.send(frame.replace('"SUB"', json.dumps(request[1])))
                await ws.send(b"\x01binary frame")
                await ws.send(json.dumps(["EOSE", request[1]]))
            elif request[0] == "EVENT":
                await ws.send(json.dumps(["OK", request[1]["id"], True, ""]))

    async with websockets.serve(relay, "127.0.0.1", port, max_size=2**20):
        url = f"ws://127.0.0.1:{port}"
        config = RelaysConfig.single(url, reconnect_base_s=0.1, publish_timeout_s=2)
        built = app.standalone(Settings(home=tmp_path), sdk.Keys.generate(), config)
        async with built.agent as agent:
            with anyio.fail_after(10):
                while good["pubkey"] not in agent.store.profiles():
                    await anyio.sleep(0.05)
                await anyio.sleep(0.3)
            counts = agent.store.error_counts()
            assert agent.pool.states[url].status == "connected"
    assert counts.get("BAD_SIGNATURE") == 1
    assert counts.get("BAD_ID") == 1
    assert counts.get("FROM_FUTURE") == 1
    assert counts.get("TOO_LARGE") == 1
    # the unparseable event, the frame that is not JSON at all and the binary frame
    assert counts.get("INVALID_JSON") == 3
    # the event without its fields, and five messages no relay should send
    assert counts.get("INVALID_EVENT") == 1 + 5


async def serve_and_run(tmp_path: Path, handler, seconds: float = 1.5, **settings) -> Agent:
    """Run an agent against a fake relay `handler` for a while; returns it (closed)."""
    port = free_port()
    async with websockets.serve(handler, "127.0.0.1", port, max_size=2**20):
        url = f"ws://127.0.0.1:{port}"
        config = RelaysConfig.single(url, reconnect_base_s=0.1, publish_timeout_s=2)
        built = app.standalone(Settings(home=tmp_path, **settings), sdk.Keys.generate(), config)
        async with built.agent as a:
            await anyio.sleep(seconds)
            a._write_status()  # what `hive-agent status` reads: must not fail on their text
            assert a.pool.states[url].status == "connected"
            return a


async def test_unencodable_text_and_endless_challenges_do_not_stop_the_agent(tmp_path: Path):
    signed: list[str] = []

    async def relay(ws: websockets.WebSocketServerProtocol) -> None:
        await ws.send('["NOTICE","\\ud800 lone surrogate"]')
        await ws.send('["CLOSED","x","\\udfff"]')
        await ws.send('["AUTH","\\ud800"]')  # the first challenge: cannot be signed, refused
        for i in range(50):
            await ws.send(json.dumps(["AUTH", f"challenge {i}"]))
        async for message in ws:
            request = json.loads(message)
            if request[0] == "AUTH":
                signed.append(request[1]["id"])
                await ws.send(json.dumps(["OK", request[1]["id"], True, ""]))
            elif request[0] == "EVENT":
                await ws.send(f'["OK","{request[1]["id"]}",false,"error: \\ud800 no"]')

    agent = await serve_and_run(tmp_path, relay)
    assert len(signed) <= 1  # at most one challenge per connection is ever answered
    rows = agent.store.relay_status()
    assert rows  # written, though their texts could not be encoded as sent


async def test_a_reconciliation_that_never_ends_is_cut_short(tmp_path: Path) -> None:
    """A relay answering every NEG-MSG with fresh ids and a fingerprint that never matches:
    the sync stops after a bounded number of rounds, memory stays bounded, the agent lives."""
    rounds = [0]

    async def relay(ws: websockets.WebSocketServerProtocol) -> None:
        async for message in ws:
            request = json.loads(message)
            if request[0] in ("NEG-OPEN", "NEG-MSG"):
                rounds[0] += 1
                ids = os.urandom(32 * 100)
                body = b"\x61" + b"\x01\x00" + b"\x02" + bytes([100]) + ids  # IdList up to ts 0
                body += b"\x00\x00" + b"\x01" + os.urandom(16)  # [.., ∞): a wrong fingerprint
                await ws.send(json.dumps(["NEG-MSG", request[1], body.hex()]))
            elif request[0] == "REQ":
                await ws.send(json.dumps(["EOSE", request[1]]))

    agent = await serve_and_run(tmp_path, relay, seconds=3)
    assert 0 < rounds[0] <= 51  # then the relay counts as one without NIP-77
    assert "does not end" in (agent.pool.states[next(iter(agent.pool.states))].last_error or "")
