"""`hive-agent relay` serves its NIP-11 information document on its own URL over http://, as
clients ask for it (GET, `Accept: application/nostr+json`, CORS), and websocket clients on the
same port are unaffected.  Real HTTP requests against the real relay process."""

from __future__ import annotations

import time

import anyio
import httpx
import nostr_sdk as sdk
import pytest

from agent import __version__
from agent.nostr.client import RelayClient
from events.base import parse_event, sign_event

NIP11 = {"Accept": "application/nostr+json"}
CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-headers": "*",
    "access-control-allow-methods": "GET, OPTIONS",
}


def http(url: str) -> str:
    return url.replace("ws://", "http://", 1)


def test_policy_relay_document(relays) -> None:
    relay = relays(policy=True)
    answer = httpx.get(http(relay.start()), headers=NIP11, timeout=5)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/nostr+json"
    assert {k: answer.headers[k] for k in CORS} == CORS
    assert answer.json() == {
        "name": "hive-agent relay",
        "description": "Lightning Hive agents' embedded relay (rust-nostr LocalRelay): only "
        "Lightning Hive kinds, rate-limited per client",
        "supported_nips": [1, 9, 11, 40, 77],
        "software": "https://github.com/rust-nostr/nostr (LocalRelay) via hive-agent",
        "version": __version__,
        "limitation": {
            "max_message_length": 65536,
            "max_subscriptions": 1000,
            "max_event_tags": 300,
            "auth_required": False,
            "payment_required": False,
            "restricted_writes": True,
            "created_at_lower_limit": 259200,
            "created_at_upper_limit": 600,
        },
    }


def test_open_relay_document_and_cors_preflight(relays) -> None:
    url = http(relays().start())
    doc = httpx.get(url, headers=NIP11, timeout=5).json()
    assert doc["limitation"] == {
        "max_subscriptions": 1000,
        "auth_required": False,
        "payment_required": False,
        "restricted_writes": False,
    }
    assert doc["description"] == "Lightning Hive agents' embedded relay (rust-nostr LocalRelay)"
    preflight = httpx.options(url, headers={"Origin": "https://client.example"}, timeout=5)
    assert preflight.status_code == 204
    assert {k: preflight.headers[k] for k in CORS} == CORS


@pytest.mark.anyio
async def test_websockets_still_work_beside_it(relays) -> None:
    url = relays(policy=True).start()
    keys = sdk.Keys.generate()
    event = sign_event(keys, 36380, "{}", [["d", "x"]], int(time.time()))
    async with RelayClient([url]) as sender, RelayClient([url]) as receiver:
        async with httpx.AsyncClient() as client:  # an HTTP request between websocket clients
            got = await client.get(http(url), headers=NIP11, timeout=5)
            assert got.json()["name"] == "hive-agent relay"
        assert (await sender.publish(event)).accepted
        await receiver.subscribe([{"ids": [event.id]}])
        with anyio.fail_after(5):
            assert parse_event((await receiver.inbox.receive()).raw) == event


@pytest.mark.anyio
async def test_what_the_document_claims_is_what_the_relay_does(relays) -> None:
    url = relays(policy=True).start()
    async with httpx.AsyncClient() as http_client:
        doc = (await http_client.get(http(url), headers=NIP11, timeout=5)).json()
    keys, now = sdk.Keys.generate(), int(time.time())
    kept = sign_event(keys, 36380, "{}", [["d", "kept"]], now)
    expired = sign_event(keys, 36380, "{}", [["d", "old"], ["expiration", str(now - 1)]], now - 9)
    many = sign_event(keys, 36380, "{}", [["d", "many"], *[["t", "x"]] * 300], now)
    async with RelayClient([url]) as client:
        assert (await client.publish(kept)).accepted
        # NIP-40 (in supported_nips): an expired event is refused
        assert "expired" in next(iter((await client.publish(expired)).failed.values()))
        # limitation.max_event_tags = 300
        assert len(many.tags) == doc["limitation"]["max_event_tags"] + 1
        refused = (await client.publish(many)).failed
        assert next(iter(refused.values())) == "blocked: invalid: more than 300 tags"
        # NIP-09: a deletion by the author is honoured
        deletion = sign_event(keys, 5, "", [["e", kept.id]], now + 1)
        assert (await client.publish(deletion)).accepted
    async with RelayClient([url]) as reader:
        await reader.subscribe([{"ids": [kept.id]}])
        with anyio.move_on_after(1.5):
            raw = (await reader.inbox.receive()).raw
            pytest.fail(f"a deleted event was served: {raw}")
    assert {9, 40} <= set(doc["supported_nips"])


def test_nip11_requests_leave_no_connections_open(relays) -> None:
    """Each NIP-11 answer closes both halves of its splice at once: a stranger's stream of
    cheap GETs cannot pile up sockets until the relay runs out of file descriptors."""
    import os

    relay = relays(policy=True)
    url = http(relay.start())
    pid = relay.child.pid
    assert pid is not None

    def fds() -> int:
        return len(os.listdir(f"/proc/{pid}/fd"))

    httpx.get(url, headers=NIP11, timeout=5)  # warmed up: the first request's lazy setup
    before = fds()
    for _ in range(100):
        with httpx.Client(timeout=5) as c:
            assert c.get(url, headers=NIP11).status_code == 200
    deadline = time.monotonic() + 3  # well inside LocalRelay's own handshake timeout (~10 s)
    while fds() > before + 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fds() <= before + 5, (before, fds())
