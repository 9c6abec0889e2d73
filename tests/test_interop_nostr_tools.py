"""Interop with nostr-tools (node): each side verifies, decrypts and unwraps what the other
wrote, and each refuses a tampered byte."""

from __future__ import annotations

import base64
import json
import uuid

import nostr_sdk as sdk
import pytest

from events import agent_info, nip44, nip59, note
from events.agent_info import AgentInfo, Role
from events.base import parse_event
from events.errors import HiveError
from events.kinds import Kind
from tests.interop.nostr_tools import NostrTools, NostrToolsError

pytestmark = pytest.mark.interop

NOW = 1_700_000_000
OURS = sdk.Keys.generate()
THEIR_SK = "5b36a9b7c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7"
THEIRS = nip44.keys_from_secret(THEIR_SK)  # the same key, for our side of the conversation
OUR_PUB, THEIR_PUB = OURS.public_key().to_hex(), THEIRS.public_key().to_hex()


HEX = "0123456789abcdef"
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def flip_char(text: str, index: int) -> str:
    """Change one character, keeping hex as hex and base64 as base64."""
    c = text[index]
    alphabet = HEX if c in HEX else B64 if c in B64 else "xy"
    new = alphabet[(alphabet.index(c) + 1) % len(alphabet)] if c in alphabet else "x"
    return text[:index] + new + text[index + 1 :]


def tamper_each_field(event: dict) -> list[dict]:
    out = []
    for field in ("id", "pubkey", "sig", "content"):
        out.append({**event, field: flip_char(event[field], len(event[field]) // 2)})
    out.append({**event, "created_at": event["created_at"] + 1})
    out.append({**event, "tags": [*event["tags"], ["t", "extra"]]})
    return out


def test_same_keys_on_both_sides(nostr_tools: NostrTools) -> None:
    assert nostr_tools.call("pubkey", sk=THEIR_SK) == THEIR_PUB


def test_nostr_tools_verifies_our_events_and_refuses_tampering(nostr_tools: NostrTools) -> None:
    info = AgentInfo(name="interop", role=Role.ADVISOR, version="1", capabilities=["fee-policy"])
    event = agent_info.build(OURS, info, created_at=NOW, expiration=NOW + 3600).model_dump()
    assert nostr_tools.call("verify", event=event) is True
    for bad in tamper_each_field(event):
        assert nostr_tools.call("verify", event=bad) is False


def test_we_verify_nostr_tools_events_and_refuse_tampering(nostr_tools: NostrTools) -> None:
    template = {"kind": 1, "created_at": NOW, "tags": [["t", "hive"]], "content": 'héllo 🐝\n\t"q"'}
    event = nostr_tools.call("sign", sk=THEIR_SK, template=template)
    parsed = parse_event(json.dumps(event))
    assert (parsed.pubkey, parsed.content) == (THEIR_PUB, template["content"])
    for bad in tamper_each_field(event):
        with pytest.raises(HiveError):
            parse_event(json.dumps(bad))


def test_nip44_both_ways(nostr_tools: NostrTools) -> None:
    ours = nip44.encrypt(OURS, THEIR_PUB, "from python ✓")
    assert (
        nostr_tools.call("nip44_decrypt", sk=THEIR_SK, pk=OUR_PUB, payload=ours) == "from python ✓"
    )
    theirs = nostr_tools.call("nip44_encrypt", sk=THEIR_SK, pk=OUR_PUB, plaintext="from js ✓")
    assert nip44.decrypt(OURS, THEIR_PUB, theirs) == "from js ✓"
    for i in (10, len(ours) // 2, len(ours) - 5):
        with pytest.raises(NostrToolsError):
            nostr_tools.call("nip44_decrypt", sk=THEIR_SK, pk=OUR_PUB, payload=flip_char(ours, i))
        with pytest.raises(HiveError):
            nip44.decrypt(OURS, THEIR_PUB, flip_char(theirs, i))


def test_nostr_tools_unwraps_our_gift_wraps(nostr_tools: NostrTools) -> None:
    msg = note.Note(msg_id=uuid.uuid4().hex, text="sealed by python")
    wrap = nip59.wrap(OURS, THEIR_PUB, note.rumor(OUR_PUB, msg, created_at=NOW), now=NOW)
    rumor = nostr_tools.call("unwrap", sk=THEIR_SK, wrap=wrap.model_dump())
    assert rumor["pubkey"] == OUR_PUB and rumor["kind"] == Kind.NOTE
    assert note.FAMILY.load(rumor["content"]) == msg
    raw = bytearray(base64.b64decode(wrap.content))
    raw[len(raw) // 2] ^= 1
    tampered = {**wrap.model_dump(), "content": base64.b64encode(bytes(raw)).decode()}
    with pytest.raises(NostrToolsError):
        nostr_tools.call("unwrap", sk=THEIR_SK, wrap=tampered)


def test_we_unwrap_nostr_tools_gift_wraps(nostr_tools: NostrTools) -> None:
    msg = note.Note(msg_id=uuid.uuid4().hex, text="sealed by nostr-tools")
    template = {"kind": Kind.NOTE, "created_at": NOW, "content": msg.model_dump_json(),
                "tags": note.FAMILY.tags(msg)}  # fmt: skip
    wrap = nostr_tools.call("wrap", sk=THEIR_SK, recipient=OUR_PUB, template=template)
    opened = nip59.unwrap(OURS, parse_event(json.dumps(wrap)), now=NOW)
    assert opened.sender == THEIR_PUB
    assert note.parse(opened.rumor, now=NOW).payload == msg
    for bad in tamper_each_field(wrap):
        with pytest.raises(HiveError):
            nip59.unwrap(OURS, parse_event(json.dumps(bad)), now=NOW)
