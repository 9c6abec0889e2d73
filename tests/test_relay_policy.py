"""`hive-agent relay` is not an open relay: outside loopback tests it stores only what agents
publish, at a rate a real client sends; `--open` is refused on a reachable address."""

from __future__ import annotations

import subprocess
import time

import nostr_sdk as sdk
import pytest

from agent.nostr.client import RelayClient
from agent.nostr.relay_policy import FUTURE_S, MAX_TAGS, host_of, judge
from events import relay_lists
from events.base import sign_event
from events.kinds import Kind
from tests.conftest import HIVE_AGENT

NOW = 1_800_000_000


@pytest.mark.parametrize(
    ("args", "refusal"),
    [
        ((Kind.GIFT_WRAP, 2_000, 1, NOW - 2 * 86400, False), None),
        ((Kind.RELAY_LIST, 500, 3, NOW - 400 * 86400, True), None),
        ((36383, 5_000, 10, NOW, True), None),
        ((1, 100, 0, NOW, False), "blocked:"),
        ((30023, 100, 0, NOW, True), "blocked:"),
        ((Kind.GIFT_WRAP, 70_000, 1, NOW, False), "invalid:"),
        ((Kind.GIFT_WRAP, 500, MAX_TAGS + 1, NOW, False), "invalid:"),
        ((Kind.GIFT_WRAP, 500, 1, NOW + FUTURE_S + 1, False), "invalid:"),
        ((Kind.GIFT_WRAP, 500, 1, NOW - 4 * 86400, False), "invalid:"),
    ],
)
def test_judge(args: tuple, refusal: str | None) -> None:
    found = judge(*args, now=NOW)
    assert found == refusal if refusal is None else found.startswith(refusal)


def test_clients_are_counted_by_address() -> None:
    assert host_of("203.0.113.7:4411") == "203.0.113.7"
    assert host_of("[2001:db8::1]:5000") == host_of("[2001:db8::ffff]:5001") == "2001:db8::/64"
    assert host_of("[::ffff:203.0.113.7]:1") == "203.0.113.7"


@pytest.mark.anyio
async def test_the_policy_on_a_real_relay(relays) -> None:
    url = relays(policy=True).start()
    keys = sdk.Keys.generate()
    now = int(time.time())
    async with RelayClient([url]) as client:
        text_note = await client.publish(sign_event(keys, 1, "spam", [], now))
        assert not text_note.accepted and text_note.failed[url].startswith("blocked:")
        listing = relay_lists.build_dm_relays(keys, ["wss://inbox.example"], created_at=now)
        assert (await client.publish(listing)).accepted
        outcomes = []
        for i in range(200):  # far beyond a burst of 120
            wrap = sign_event(keys, Kind.GIFT_WRAP, f"w{i}", [["p", "ab" * 32]], now - i)
            outcomes.append(await client.publish(wrap))
        refused = [o.failed[url] for o in outcomes if not o.accepted]
        assert refused and all("rate-limited:" in r for r in refused)
        assert 100 <= sum(1 for o in outcomes if o.accepted) <= 130


def test_open_relay_only_on_loopback() -> None:
    refused = subprocess.run(
        [HIVE_AGENT, "relay", "--host", "0.0.0.0", "--open"],  # noqa: S104 - the point
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert refused.returncode == 78 and "CONFIG_INVALID" in refused.stderr


def test_a_reachable_relay_warns_and_runs_with_the_policy() -> None:
    proc = subprocess.Popen(
        [HIVE_AGENT, "relay", "--host", "0.0.0.0", "--port", "0"],  # noqa: S104 - the point
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("ws://0.0.0.0:")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "strfry" in err and "per client" in err
