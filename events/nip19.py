"""NIP-19: the bech32 forms people paste (`npub`, `nprofile`, `note`, `nevent`, `naddr`,
`nsec`, each with or without `nostr:`), read into the hex the agent works in, and written
back beside it.  Pure: nostr-sdk does the bech32."""

from __future__ import annotations

import re

import nostr_sdk as sdk

from events.errors import InvalidKey, InvalidParams

HEX64 = re.compile(r"[0-9a-f]{64}")


def _clean(text: str) -> str:
    return text.strip().removeprefix("nostr:")


def _shown(text: str) -> str:
    """What a refusal may quote of the input: never a secret someone pasted by mistake."""
    if _clean(text).lower().startswith(("nsec1", "ncryptsec1")):
        return "a secret key (not shown; never paste it where a public key is asked)"
    return repr(text[:80])


def pubkey_hex(text: str) -> str:
    """The hex of a public key given as hex, `npub1…` or `nprofile1…`.  Raises InvalidKey."""
    try:
        return str(sdk.PublicKey.parse(_clean(text)).to_hex())
    except sdk.NostrSdkError:
        raise InvalidKey(
            f"not a public key: expected hex, npub1… or nprofile1…, got {_shown(text)}"
        ) from None


def secret_hex(text: str) -> str:
    """The hex of a secret key given as hex or `nsec1…`.  Raises InvalidKey (never echoing it)."""
    try:
        return str(sdk.SecretKey.parse(_clean(text)).to_hex())
    except sdk.NostrSdkError:
        raise InvalidKey("not a secret key: expected 64 hex digits or nsec1…") from None


def event_id_hex(text: str) -> str:
    """The hex of an event id given as hex, `note1…` or `nevent1…`.  Raises InvalidParams."""
    try:
        return str(sdk.EventId.parse(_clean(text)).to_hex())
    except sdk.NostrSdkError:
        raise InvalidParams(
            f"not an event id: expected hex, note1… or nevent1…, got {_shown(text)}"
        ) from None


def coordinate(text: str) -> str:
    """An address (`<kind>:<hex pubkey>:<d>`, the pubkey as hex or npub) given as one or as
    `naddr1…`.  Raises InvalidParams."""
    value = _clean(text)
    try:
        if value.startswith("naddr1"):
            found = sdk.Coordinate.parse(value)
            kind, author, d = found.kind().as_u16(), found.public_key().to_hex(), found.identifier()
        else:  # by hand: a `d` may hold colons, which nostr-sdk's parser drops
            kind_text, author_text, d = value.split(":", 2)
            kind, author = int(kind_text), sdk.PublicKey.parse(author_text).to_hex()
            if not (kind_text.isdigit() and 0 <= kind <= 65535):
                raise ValueError(kind_text)
    except (sdk.NostrSdkError, ValueError):
        raise InvalidParams(
            f"not an address: expected naddr1… or <kind>:<pubkey>:<d>, got {_shown(text)}"
        ) from None
    return f"{kind}:{author}:{d}"


def is_hex64(text: object) -> bool:
    """True for 64 lowercase hex digits (a key or an event id as the agent stores them)."""
    return isinstance(text, str) and HEX64.fullmatch(text) is not None


def npub(pubkey: str) -> str:
    """`npub1…` of a hex public key."""
    return str(sdk.PublicKey.parse(pubkey).to_bech32())


def nevent(event_id: str, author: str | None = None) -> str:
    """`nevent1…` of a hex event id (with its author when known)."""
    who = sdk.PublicKey.parse(author) if author else None
    return str(sdk.Nip19Event(sdk.EventId.parse(event_id), who, None, []).to_bech32())


def naddr(address: str) -> str:
    """`naddr1…` of an address `<kind>:<hex pubkey>:<d>`."""
    kind, author, d = address.split(":", 2)
    found = sdk.Coordinate(sdk.Kind(int(kind)), sdk.PublicKey.parse(author), d)
    return str(sdk.Nip19Coordinate(found, []).to_bech32())
