"""Where a gift wrap goes when its recipient published no relay list: the relays are asked
once, and their "nothing" is remembered for a while (not asked again with every message, a
relay round trip each); a lookup nobody answered is no answer and is asked again."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import nostr_sdk as sdk
import pytest
import websockets

from agent import app
from agent.nostr.local_relay import free_port
from agent.settings import RelaysConfig, Settings
from events.kinds import Kind

pytestmark = pytest.mark.anyio
LIST_KINDS = sorted([int(Kind.DM_RELAYS), int(Kind.RELAY_LIST)])


def asks_for_lists(request: list) -> bool:
    return request[0] == "REQ" and any(
        sorted(f.get("kinds", [])) == LIST_KINDS for f in request[2:] if isinstance(f, dict)
    )


async def run(tmp_path: Path, answer_lookups: bool, notes: int) -> tuple[int, int]:
    """An agent sends `notes` notes to a key without relay lists through a relay that
    answers lookups with EOSE (or never); returns (list lookups asked, notes published)."""
    asked, published = [0], [0]

    async def relay(ws: websockets.WebSocketServerProtocol) -> None:
        async for message in ws:
            request = json.loads(message)
            if asks_for_lists(request):
                asked[0] += 1
                if answer_lookups:
                    await ws.send(json.dumps(["EOSE", request[1]]))
            elif request[0] == "REQ":
                await ws.send(json.dumps(["EOSE", request[1]]))
            elif request[0] == "EVENT":
                published[0] += request[1]["kind"] == Kind.GIFT_WRAP
                await ws.send(json.dumps(["OK", request[1]["id"], True, ""]))

    port = free_port()
    async with websockets.serve(relay, "127.0.0.1", port, max_size=2**20):
        url = f"ws://127.0.0.1:{port}"
        config = RelaysConfig.single(url, reconnect_base_s=0.1, publish_timeout_s=5)
        built = app.standalone(Settings(home=tmp_path), sdk.Keys.generate(), config)
        listless = sdk.Keys.generate().public_key().to_hex()
        async with built.agent as agent:
            for i in range(notes):
                item = await agent.send_note(listless, f"note {i}")
                assert item.acked == {url}  # delivered to our own write relay
    return asked[0], published[0]


async def test_a_key_without_relay_lists_is_looked_up_once(tmp_path: Path) -> None:
    asked, published = await run(tmp_path, answer_lookups=True, notes=5)
    assert published == 5
    assert asked == 1


async def test_an_unanswered_lookup_is_not_taken_for_no_lists(tmp_path: Path) -> None:
    with anyio.fail_after(30):
        asked, published = await run(tmp_path, answer_lookups=False, notes=2)
    assert published == 2
    assert asked == 2  # asked again: silence is not "no lists"
