"""Argument types for the command line: numbers are checked where they are read, so a bad
value is a usage error before anything connects or is sent (not an INTERNAL error after)."""

from __future__ import annotations

import argparse
import math

INT64 = 2**63


def integer(text: str) -> int:
    """A whole number that fits the store (a signed 64-bit integer)."""
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not -INT64 <= value < INT64:
        raise argparse.ArgumentTypeError(f"{text} is out of range")
    return value


def positive(text: str) -> float:
    """A finite number above zero (seconds, hours)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0 or value > 10**9:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number above 0")
    return value


def port(text: str) -> int:
    """A TCP port, 0 (pick a free one) to 65535."""
    value = integer(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (0–65535)")
    return value


def pubkey(text: str) -> str:
    """A Nostr public key — hex, `npub`, `nprofile`, with or without `nostr:` — as hex."""
    import nostr_sdk as sdk

    from events.errors import InvalidKey

    value = text.strip().removeprefix("nostr:")
    try:
        return str(sdk.PublicKey.parse(value).to_hex())
    except sdk.NostrSdkError:
        # a typed error, not a usage error: argparse passes it on (INVALID_KEY, exit 65)
        raise InvalidKey(f"{text[:80]!r} is not a public key (hex, npub or nprofile)") from None


def count(text: str) -> int:
    """A whole number from 1 to a billion (a rate, a number of days, a size)."""
    value = integer(text)
    if not 1 <= value <= 10**9:
        raise argparse.ArgumentTypeError(f"{text} must be a whole number from 1 to 1,000,000,000")
    return value


def days(text: str) -> int:
    """A number of days, 1 to 3,650."""
    value = integer(text)
    if not 1 <= value <= 3650:
        raise argparse.ArgumentTypeError(f"{text} must be a number of days from 1 to 3,650")
    return value
