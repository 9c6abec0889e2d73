"""Argument types for the command line: numbers are checked where they are read, so a bad
value is a usage error before anything connects or is sent (not an INTERNAL error after)."""

from __future__ import annotations

import argparse
import math
import re
from decimal import Decimal

from events import nip19

INT64 = 2**63
MIN_PREFIX = 6  # characters of an id that name it, as `approvals approve` always took


def integer(text: str) -> int:
    """A whole number that fits the store (a signed 64-bit integer)."""
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not -INT64 <= value < INT64:
        raise argparse.ArgumentTypeError(f"{text} is out of range")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value > 10**9:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number up to 10^9")
    return value


def positive(text: str) -> float:
    """A finite number above zero (seconds, hours)."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number above 0")
    return value


def seconds(text: str) -> float:
    """A finite number of seconds, zero or more (0: do not wait)."""
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number of seconds, 0 or more")
    return value


def port(text: str) -> int:
    """A TCP port, 0 (pick a free one) to 65535."""
    value = integer(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (0–65535)")
    return value


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


# --- NIP-19: keys, events and addresses as people paste them -----------------------------------


def pubkey(text: str) -> str:
    """A Nostr public key — hex, `npub`, `nprofile`, with or without `nostr:` — as hex.

    Raises InvalidKey (exit 65): argparse passes typed errors on."""
    return nip19.pubkey_hex(text)


def event_id(text: str) -> str:
    """An event id — hex, `note`, `nevent`, with or without `nostr:` — as hex (INVALID_PARAMS)."""
    return nip19.event_id_hex(text)


def address(text: str) -> str:
    """An address — `naddr` or `<kind>:<pubkey>:<d>` (an npub accepted there too) — as
    `<kind>:<hex>:<d>` (INVALID_PARAMS)."""
    return nip19.coordinate(text)


def listing_ref(text: str) -> str:
    """A listing: an address (`naddr`, `30402:<pubkey>:<d>`) as `<kind>:<hex>:<d>`, or else
    its id (the `d` tag) as given."""
    if text.strip().removeprefix("nostr:").startswith("naddr1") or ":" in text:
        return nip19.coordinate(text)
    return text


def rfp_ref(text: str) -> str:
    """An RFP: its address (`naddr`, `36381:<pubkey>:<id>`) as `<kind>:<hex>:<id>`, or its id."""
    return listing_ref(text)


def id_prefix(text: str) -> str:
    """A stored id (contract, ticket, credential, command…) or a unique prefix of it, at least
    MIN_PREFIX characters; agent/cli/ids.py resolves it against the store."""
    value = text.strip()
    if len(value) < MIN_PREFIX:
        raise argparse.ArgumentTypeError(
            f"{text!r} is too short: give the id or at least {MIN_PREFIX} of its first characters"
        )
    return value


# --- amounts ------------------------------------------------------------------------------------

MAX_SAT = 21_000_000 * 100_000_000  # every bitcoin there will be
UNITS = {  # suffix → sats per unit ("M" is a million sats; a lower-case "m" would read as milli)
    "": Decimal(1),
    "sat": Decimal(1),
    "sats": Decimal(1),
    "k": Decimal(1000),
    "K": Decimal(1000),
    "M": Decimal(1_000_000),
    "btc": Decimal(100_000_000),
    "BTC": Decimal(100_000_000),
    "msat": Decimal("0.001"),
    "msats": Decimal("0.001"),
}
AMOUNT = re.compile(r"\s*((?:\d{1,3}(?:,\d{3})+|\d[\d_]*)(?:\.\d+)?|\.\d+)\s*([A-Za-z]*)\s*")
AMOUNT_FORMS = "e.g. 300000, 300k, 1.5M, 300000sat, 0.003btc, 300000000msat"


def sats_of(text: str) -> int:
    """An amount in whole sats from `300000`, `300k`, `1.5M`, `300000 sats`, `0.003btc` or
    `300000000msat`.  Raises ValueError (with the sentence to show) for anything else, a
    fraction of a sat included."""
    found = AMOUNT.fullmatch(text)
    unit = found.group(2) if found else ""
    if unit == "m":
        raise ValueError(f"{text!r} is ambiguous: write M for a million sats, or msat")
    per = UNITS.get(unit, UNITS.get(unit.lower()) if unit.isupper() else None)
    if found is None or per is None:
        raise ValueError(f"{text!r} is not an amount ({AMOUNT_FORMS})")
    value = Decimal(found.group(1).replace("_", "").replace(",", "")) * per
    if value != value.to_integral_value():
        what = "msat that are not whole sats" if per < 1 else "a fraction of a sat"
        raise ValueError(f"{text!r} is {what}; amounts here are whole sats")
    if value > MAX_SAT:
        raise ValueError(f"{text!r} is more than 21 million bitcoin")
    return int(value)


def sats(text: str) -> int:
    """An amount in sats (see `sats_of`); a usage error otherwise."""
    try:
        return sats_of(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def some_sats(text: str) -> int:
    """An amount in sats above zero (a payment, a token, an invoice)."""
    value = sats(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the amount must be at least 1 sat")
    return value


def msats(text: str) -> int:
    """An amount in msat: a bare number or `…msat` as it is, any other unit times 1,000."""
    found = AMOUNT.fullmatch(text)
    if found and found.group(2) in ("", "msat", "msats"):
        number = Decimal(found.group(1).replace("_", "").replace(",", ""))
        if number != number.to_integral_value():
            raise argparse.ArgumentTypeError(f"{text!r} is a fraction of a msat")
        if number > MAX_SAT * 1000:
            raise argparse.ArgumentTypeError(f"{text!r} is more than 21 million bitcoin")
        return int(number)
    return sats(text) * 1000


def format_sats(value: int, unit: str) -> str:
    """`value` sats written with `unit` (a key of UNITS), exactly: what `sats_of` reads back."""
    number = Decimal(value) / UNITS[unit]
    return f"{number.normalize():f}{unit}" if unit else str(value)
