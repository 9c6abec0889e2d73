"""Which relay addresses from other people's events may be dialled: public ws(s) hosts only,
spelled so that every URL parser reads the same host."""

from __future__ import annotations

import pytest

from agent.nostr import dial


@pytest.mark.parametrize(
    "url",
    [
        "ws://127.0.0.1:7777",
        "ws://127.1",
        "ws://2130706433",
        "ws://0x7f000001",
        "ws://localhost:80",
        "ws://relay.local",
        "ws://intranet",
        "ws://10.1.2.3",
        "ws://192.168.1.1/admin",
        "ws://169.254.169.254/latest",
        "ws://100.64.0.1",
        "ws://[::1]",
        "ws://[fe80::1]",
        "ws://[::ffff:127.0.0.1]",
        "ws://[::ffff:0:7f00:1]",
        "ws://[64:ff9b::7f00:1]",
        "ws://[2002:7f00:1::]",
        "ws://[::127.0.0.1]",
        "ws://[2001:db8::1]",
        "ws://224.0.0.1",
        "http://relay.example.com",
        "ws://user:pw@relay.example.com",
        "ws://relay.example.com\\:x@127.0.0.1:80",
        "ws://relay.exämple.com",
        "ws://relay.example.com/\x1b[2J",
    ],
)
def test_refused(url: str) -> None:
    assert dial.spelling_refusal(url) is not None or dial.normalized(url) is None
    assert dial.usable([url], set(), allow_private=False) == []


@pytest.mark.parametrize("url", ["wss://relay.damus.io", "wss://nos.lol/", "ws://8.8.8.8:7777"])
def test_allowed(url: str) -> None:
    assert dial.spelling_refusal(url) is None
    assert dial.usable([url], set(), allow_private=False) == [dial.normalized(url)]


def test_own_relays_pass_and_lists_are_capped() -> None:
    own = {"ws://127.0.0.1:7777"}
    many = [f"wss://r{i}.example.com" for i in range(10)]
    assert dial.usable(["ws://127.0.0.1:7777", *many], own, allow_private=False) == [
        "ws://127.0.0.1:7777",
        "wss://r0.example.com",
        "wss://r1.example.com",
    ]
    assert dial.usable(["ws://10.0.0.1"], set(), allow_private=True) == ["ws://10.0.0.1"]
