"""NIP-65 relay lists (kind 10002) and NIP-17 DM inbox relays (kind 10050).

An agent publishes both so others know where to read its public events and where to deliver
its gift wraps; when it sends a private message it looks up the recipient's 10050 list first,
then the read relays of their 10002 list.
"""

from __future__ import annotations

import re

import nostr_sdk as sdk

from events.base import NostrEvent, require_kind, sign_event, tag_value
from events.errors import InvalidTag
from events.kinds import Kind
from events.nip13 import MAX_BITS

_RELAY = re.compile(r"^wss?://[^\s/]+(/[^\s]*)?$")
MAX_RELAYS = 32


def build_relay_list(
    keys: sdk.Keys, read: list[str], write: list[str], *, created_at: int
) -> NostrEvent:
    """Kind 10002: an `r` tag per relay, marked read or write (no marker = both)."""
    tags = []
    for url in dict.fromkeys([*read, *write]):
        marker = [] if url in read and url in write else ["read"] if url in read else ["write"]
        tags.append(["r", url, *marker])
    return sign_event(keys, Kind.RELAY_LIST, "", tags, created_at)


def build_dm_relays(
    keys: sdk.Keys, relays: list[str], *, created_at: int, pow_bits: int = 0
) -> NostrEvent:
    """Kind 10050: a `relay` tag per relay where this key accepts gift wraps, and the NIP-13
    work it asks of each wrap (`["pow", bits]`, only when it asks for some)."""
    tags = [["relay", url] for url in relays]
    if pow_bits > 0:
        tags.append(["pow", str(pow_bits)])
    return sign_event(keys, Kind.DM_RELAYS, "", tags, created_at)


def dm_pow(ev: NostrEvent) -> int:
    """The proof of work (bits) a kind-10050 list asks of gift wraps; 0 if none or unreadable,
    and never more than nip13.MAX_BITS (a stranger cannot make us mine for minutes)."""
    value = tag_value(ev.tags, "pow")
    if value is None or not (value.isascii() and value.isdigit() and len(value) <= 3):
        return 0
    return min(int(value), MAX_BITS)


def _url(value: str) -> str:
    # printable ASCII without `\\` or `@`: URL parsers disagree about those (one reads a host
    # where another reads user info), and a relay URL never needs them
    plain = value.isascii() and value.isprintable() and "\\" not in value and "@" not in value
    if not plain or not _RELAY.fullmatch(value) or len(value) > 256:
        raise InvalidTag(f"not a relay URL: {value!r:.60}")
    return value


def parse_relay_list(ev: NostrEvent) -> list[list[str]]:
    """[[url, marker]] from a kind 10002 event, marker '' meaning read and write."""
    require_kind(ev, Kind.RELAY_LIST)
    out = []
    for tag in ev.tags:
        if len(tag) >= 2 and tag[0] == "r":
            marker = tag[2] if len(tag) > 2 else ""
            if marker not in ("", "read", "write"):
                raise InvalidTag(f"relay marker must be read or write, got {marker!r:.20}")
            out.append([_url(tag[1]), marker])
    return out[:MAX_RELAYS]


def parse_dm_relays(ev: NostrEvent) -> list[list[str]]:
    """[[url, 'inbox']] from a kind 10050 event."""
    require_kind(ev, Kind.DM_RELAYS)
    urls = [_url(t[1]) for t in ev.tags if len(t) >= 2 and t[0] == "relay"]
    return [[u, "inbox"] for u in urls[:MAX_RELAYS]]


def inbox_relays(dm_list: list[list[str]] | None, relay_list: list[list[str]] | None) -> list[str]:
    """Where to deliver a private message: the 10050 list, else the 10002 read relays."""
    if dm_list:
        return [url for url, _ in dm_list]
    if relay_list:
        return [url for url, marker in relay_list if marker in ("", "read")]
    return []
