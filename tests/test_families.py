"""Round trips parse(build(x)) == x for every event family, up to the size limits."""

from __future__ import annotations

import nostr_sdk as sdk
import pytest
from hypothesis import given
from hypothesis import strategies as st

from events import agent_info, nip59, note
from events.agent_info import AgentInfo, Role
from events.base import MAX_RUMOR_BYTES, parse_event, sign_event
from events.errors import Expired, InvalidPayload, InvalidTag, MissingTag, TooLarge, WrongKind
from events.kinds import Kind

KEYS = sdk.Keys.generate()
PUB = KEYS.public_key().to_hex()
NOW = 1_700_000_000
words = st.from_regex(r"[a-z0-9][a-z0-9:/_.*-]{0,63}", fullmatch=True)
relays = st.from_regex(r"wss?://[a-z0-9.-]{1,60}(:[0-9]{2,5})?", fullmatch=True)

infos = st.builds(
    AgentInfo,
    name=st.text(min_size=1, max_size=64),
    role=st.sampled_from(Role),
    version=st.text(min_size=1, max_size=32),
    capabilities=st.lists(words, max_size=64),
    relays=st.lists(relays, max_size=16),
    about=st.text(max_size=4096),
)
notes = st.builds(
    note.Note,
    msg_id=st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    text=st.text(min_size=1, max_size=MAX_RUMOR_BYTES) | st.just("x" * (MAX_RUMOR_BYTES - 400)),
    reply_to=st.none() | st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
)


@given(info=infos, expires_in=st.none() | st.integers(1, 10**8))
def test_agent_info_round_trip(info: AgentInfo, expires_in: int | None) -> None:
    expires = None if expires_in is None else NOW + expires_in
    event = agent_info.build(KEYS, info, created_at=NOW, expiration=expires)
    parsed = agent_info.parse(parse_event(event.to_json()), now=NOW)
    assert parsed.payload == info and parsed.author == PUB and parsed.kind == Kind.AGENT_INFO


@given(msg=notes)
def test_note_round_trip_through_gift_wrap(msg: note.Note) -> None:
    try:
        rumor = note.rumor(PUB, msg, created_at=NOW, expiration=NOW + 60)
    except TooLarge:
        assert len(msg.model_dump_json().encode()) > MAX_RUMOR_BYTES - 300
        return
    other = sdk.Keys.generate()
    wrap = nip59.wrap(KEYS, other.public_key().to_hex(), rumor, now=NOW)
    opened = nip59.unwrap(other, parse_event(wrap.to_json()), now=NOW)
    assert note.parse(opened.rumor, now=NOW).payload == msg


def test_refusals() -> None:
    info = AgentInfo(name="a", role=Role.ADVISOR, version="1")
    good = agent_info.build(KEYS, info, created_at=NOW, expiration=NOW + 10)
    with pytest.raises(Expired):
        agent_info.parse(good, now=NOW + 10)
    with pytest.raises(WrongKind):
        agent_info.parse(sign_event(KEYS, 1, good.content, good.tags, NOW), now=NOW)
    no_alt = [t for t in good.tags if t[0] != "alt"]
    with pytest.raises(MissingTag):
        agent_info.parse(sign_event(KEYS, Kind.AGENT_INFO, good.content, no_alt, NOW), now=NOW)
    wrong_role = [["t", "hive-operator"] if t == ["t", "hive-advisor"] else t for t in good.tags]
    with pytest.raises(InvalidTag):
        agent_info.parse(sign_event(KEYS, Kind.AGENT_INFO, good.content, wrong_role, NOW), now=NOW)
    for content in ['{"name": "a"}', '{"name":"a","role":"king","version":"1"}', "[]", "nope",
                    good.content.replace('"about":""', '"about":"","extra":1')]:  # fmt: skip
        with pytest.raises(InvalidPayload):
            agent_info.parse(sign_event(KEYS, Kind.AGENT_INFO, content, good.tags, NOW), now=NOW)
