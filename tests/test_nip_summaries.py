"""Reputation summaries and the handler event, as generic Nostr clients read them: a NIP-85
trusted assertion (30382) and a NIP-32 label (1985) beside every credential (36383), and the
agent's NIP-89 handler information (31990), published only when it changed.  Real agents on
the real relay; nostr-tools verifies what they signed."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import nostr_sdk as sdk
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import __version__, app
from agent.market.service import Market
from agent.settings import RelayEntry, RelaysConfig, Settings
from events import assertion, dm, handler_info, label, reputation
from events.base import parse_event
from events.errors import InvalidPayload, MissingTag
from events.listing import did
from tests.conftest import HIVE_AGENT
from tests.interop.nostr_tools import NostrTools

pytestmark = pytest.mark.anyio
DAY = 86400
FAST = {"reconnect_base_s": 0.1, "reconnect_max_s": 0.5, "publish_timeout_s": 5}
METRICS = {"revenue_delta_pct": 10.0, "actions_taken": 50, "uptime_pct": 99.0,
           "channels_managed": 25}  # fmt: skip


@asynccontextmanager
async def market(home: Path, url: str, keys: sdk.Keys | None = None) -> AsyncIterator[Market]:
    config = RelaysConfig(relays=[RelayEntry(url=url)], **FAST)
    settings = Settings(home=home, outbox_retry_base_s=0.2, outbox_retry_max_s=1)
    built = app.standalone(settings, keys or sdk.Keys.generate(), config)
    async with built.agent:
        yield built.market


def credential(issuer: str, subject: str, end: int, outcome: str = "renew"):
    return reputation.ReputationCredential(
        issuer=did(issuer),
        validFrom=reputation.iso(end),
        credentialSubject=reputation.Subject(
            id=did(subject),
            domain=reputation.Domain.ADVISOR,
            period=reputation.Period(start=reputation.iso(end - 30 * DAY), end=reputation.iso(end)),
            metrics=METRICS,
            outcome=outcome,
        ),
    )


async def fetch(m: Market, filters: list[dict]) -> list[dict]:
    return [json.loads(r) for r in await m.agent.fetch(filters)]


async def test_credential_summaries_as_nip85_and_nip32(
    tmp_path: Path, relay_url: str, nostr_tools: NostrTools
) -> None:
    subject = sdk.Keys.generate().public_key().to_hex()
    end = int(time.time()) - DAY
    async with market(tmp_path / "a", relay_url) as m:
        first = credential(m.me, subject, end)
        cred_event = await m.issue_credential(first)
        # score: mean(0.6, 0.5, 0.99, 0.5) × 1.1 = 0.71225 → 71 (recognized)
        [rank] = await fetch(m, [{"kinds": [30382], "authors": [m.me]}])
        assert (rank["tags"], rank["content"]) == (
            [["d", subject], ["rank", "71"], ["p", subject]],
            "",
        )
        [tag] = await fetch(m, [{"kinds": [1985], "authors": [m.me], "#L": ["hive.reputation"]}])
        address = f"36383:{m.me}:{first.credential_id}"
        assert tag["tags"] == [
            ["L", "hive.reputation"],
            ["l", "hive:advisor:recognized", "hive.reputation"],
            ["p", subject],
            ["a", address],
            ["e", cred_event.id],
        ]
        assert tag["content"] == (
            f"hive:advisor recognized (score 71) for {reputation.iso(end - 30 * DAY)} – "
            f"{reputation.iso(end)}, outcome renew"
        )
        for event in (rank, tag):
            assert nostr_tools.call("verify", event=event) is True
        assert assertion.parse(parse_event(json.dumps(rank))).payload.rank == 71
        assert label.parse(parse_event(json.dumps(tag))).payload.value == "hive:advisor:recognized"

        # a second, neutral credential about the same subject: the rank is the aggregate
        second = credential(m.me, subject, end - 40 * DAY, outcome="neutral")
        await m.issue_credential(second)
        [rank] = await fetch(m, [{"kinds": [30382], "authors": [m.me], "#d": [subject]}])
        # (e^-0.01 · 71.225 + e^-0.41 · 64.75) ÷ (e^-0.01 + e^-0.41) = 68.6
        assert rank["tags"][1] == ["rank", "69"]

        # revoking the first: its label is deleted, the rank is recomputed from the second
        deletion = await m.revoke_credential(first.credential_id)
        assert deletion.tags == [["a", address], ["k", "36383"], ["e", tag["id"]], ["k", "1985"]]
        [rank] = await fetch(m, [{"kinds": [30382], "authors": [m.me], "#d": [subject]}])
        assert rank["tags"][1] == ["rank", "65"]
        # revoking the last: the assertion itself is deleted too
        last = await m.revoke_credential(second.credential_id)
        assert last.tags[-2:] == [["a", f"30382:{m.me}:{subject}"], ["k", "30382"]]


async def test_handler_information_published_once_until_it_changes(
    tmp_path: Path, relay_url: str, nostr_tools: NostrTools
) -> None:
    keys = sdk.Keys.generate()
    async with market(tmp_path / "a", relay_url, keys) as m:
        event = await m.announce_handler()
        assert event is not None
        assert await m.announce_handler() is None  # unchanged: not published again
    async with market(tmp_path / "a", relay_url, keys) as m:  # a restart: still current
        assert await m.announce_handler() is None
        [got] = await fetch(m, [{"kinds": [31990], "authors": [m.me]}])
    assert got["id"] == event.id
    assert got["tags"] == [
        ["d", "hive-agent"],
        *(["k", k] for k in ("30402", "36380", "36381", "36382", "36383", "36384", "36385",
                              "36386")),
        ["alt", "Lightning Hive agent: handler information (NIP-89)"],
    ]  # fmt: skip
    assert json.loads(got["content"]) == {
        "name": "Lightning Hive agent",
        "about": "Nostr-native Lightning fleet agent: advisor and liquidity listings (NIP-99), "
        "RFPs, contracts, heartbeats, reputation credentials, gift-wrapped commands.",
        "version": __version__,
    }
    assert nostr_tools.call("verify", event=got) is True
    assert handler_info.parse(parse_event(json.dumps(got))).payload.version == __version__


def hive(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [HIVE_AGENT, "--home", str(home), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def handler_events(tmp_path: Path, relay_url: str, author: str) -> list[dict]:
    async def look() -> list[dict]:
        async with market(tmp_path / "reader", relay_url) as reader:
            return await fetch(reader, [{"kinds": [31990], "authors": [author]}])

    return anyio.run(look, backend="asyncio")


def test_run_publishes_the_handler_event_only_when_it_changed(
    tmp_path: Path, relay_url: str
) -> None:
    home = tmp_path / "agent"
    assert hive(home, "keys", "new").returncode == 0
    me = json.loads(hive(home, "--json", "keys", "show").stdout)["pubkey"]
    assert hive(home, "run", "--relay", relay_url, "--seconds", "1.5").returncode == 0
    [first] = handler_events(tmp_path, relay_url, me)
    assert first["tags"][0] == ["d", "hive-agent"] and ["k", "30402"] in first["tags"]
    time.sleep(1.1)  # a new version would have a later created_at
    assert hive(home, "run", "--relay", relay_url, "--seconds", "1.5").returncode == 0
    assert handler_events(tmp_path, relay_url, me) == [first]  # unchanged: not re-published


def test_summary_parsers_refuse_what_they_do_not_know() -> None:
    keys = sdk.Keys.generate()
    subject = sdk.Keys.generate().public_key().to_hex()
    from events.base import sign_event

    with pytest.raises(InvalidPayload):
        assertion.parse(sign_event(keys, 30382, "", [["d", subject], ["rank", "101"]], 1))
    with pytest.raises(MissingTag):
        label.parse(sign_event(keys, 1985, "", [["L", "ugc"], ["l", "x", "ugc"]], 1))


HEX64 = st.text("0123456789abcdef", min_size=64, max_size=64)
KEYS = sdk.Keys.generate()


@given(subject=HEX64, rank=st.integers(0, 100))
def test_assertion_round_trip(subject: str, rank: int) -> None:
    item = assertion.UserRank(subject=subject, rank=rank)
    assert assertion.parse(assertion.build(KEYS, item, created_at=1)).payload == item


@given(
    value=st.from_regex(r"[a-z][a-z0-9:._-]{0,20}", fullmatch=True),
    subject=HEX64,
    event=HEX64,
    d=st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True),
    note=st.text(max_size=300),
)
def test_label_round_trip(value: str, subject: str, event: str, d: str, note: str) -> None:
    item = label.Label(
        value=value, subject=subject, credential=f"36383:{subject}:{d}", credential_event=event,
        note=note,
    )  # fmt: skip
    assert label.parse(label.build(KEYS, item, created_at=1)).payload == item


@given(
    name=st.text(min_size=1, max_size=64),
    version=st.text(min_size=1, max_size=32),
    kinds=st.lists(st.integers(0, 65535), min_size=1, max_size=8, unique=True),
)
def test_handler_info_round_trip(name: str, version: str, kinds: list[int]) -> None:
    info = handler_info.HandlerInfo(name=name, version=version, kinds=tuple(sorted(kinds)))
    assert handler_info.parse(handler_info.build(KEYS, info, created_at=1)).payload == info


@given(text=st.text(max_size=500), to=HEX64, reply_to=st.none() | HEX64)
def test_dm_round_trip(text: str, to: str, reply_to: str | None) -> None:
    me = KEYS.public_key().to_hex()
    got = dm.parse(dm.rumor(me, to, text, created_at=1, reply_to=reply_to))
    assert (got.text, got.recipients, got.reply_to) == (text, (to,), reply_to)
