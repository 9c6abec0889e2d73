"""NIP-19 beside hex in what the CLI prints: `--json` answers keep every hex field and gain
`npub` / `nevent` / `naddr` ones next to it; text views write `hex (npub1…)` with `beside`."""

from __future__ import annotations

import re
from typing import Any

import nostr_sdk as sdk

from events import nip19

# fields whose value is a hex public key; `pubkey` gains `npub`, the others `<field>_npub`
PUBKEY_FIELDS = frozenset(
    {
        "pubkey",
        "agent",
        "provider",
        "advisor",
        "node",
        "author",
        "subject",
        "sender",
        "issuer",
        "counterparty",
        "offerer",
        "offered_to",
        "rfp_author",
        "bidder",
        "client",
    }
)
ADDRESS_FIELDS = frozenset({"address", "rfp", "revealed"})
COORDINATE = re.compile(r"[0-9]{1,5}:[0-9a-f]{64}:.*", re.DOTALL)


def _added(key: str, value: Any) -> tuple[str, str] | None:
    """The NIP-19 field to add beside `key`, if its value is a key, an event id or an address."""
    if not isinstance(value, str):
        return None
    value = value.removeprefix("did:nostr:")  # credentials and contracts name keys as DIDs
    if key in PUBKEY_FIELDS and nip19.is_hex64(value):
        return ("npub" if key == "pubkey" else f"{key}_npub"), nip19.npub(value)
    if key == "event_id" and nip19.is_hex64(value):
        return "nevent", nip19.nevent(value)
    if key in ADDRESS_FIELDS and COORDINATE.fullmatch(value):
        return ("naddr" if key == "address" else f"{key}_naddr"), nip19.naddr(value)
    return None


def enrich(data: Any) -> Any:
    """`data` with a NIP-19 field beside each hex key, event id and address (recursively);
    fields already there are kept as they are."""
    if isinstance(data, list):
        return [enrich(item) for item in data]
    if not isinstance(data, dict):
        return data
    out: dict[str, Any] = {}
    for key, value in data.items():
        out[key] = enrich(value)
        try:
            extra = _added(key, value)
        except (sdk.NostrSdkError, ValueError, OverflowError):  # not encodable: hex stays alone
            extra = None
        if extra is not None and extra[0] not in data:
            out[extra[0]] = extra[1]
    return out


def beside(value: str, what: str = "key") -> str:
    """A hex key (`what` "key"), event id ("event") or address for a text view, with its
    NIP-19 form after it: `ab12… (npub1…)`.  Anything else is returned as it is."""
    try:
        if nip19.is_hex64(value):
            return f"{value} ({nip19.nevent(value) if what == 'event' else nip19.npub(value)})"
        if COORDINATE.fullmatch(value):
            return f"{value} ({nip19.naddr(value)})"
    except (sdk.NostrSdkError, ValueError, OverflowError):
        pass  # not encodable: shown as it is
    return value
