"""The constrained strings wire payloads share, and one way to say what pydantic refused.

Every payload model takes its field types from here (a hex id is the same 32 digits in a
command, a receipt and a ticket), and every "first validation error → typed error" mapping
goes through `first_error`, so a refusal reads alike wherever it comes from.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints, ValidationError

Hex16 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
Hex32 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]  # 128-bit ids
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]  # hashes, event ids
Hex128 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{128}$")]
XOnly = Hex64  # a BIP-340 x-only public key (a Nostr pubkey)
Sig = Hex128  # a BIP-340 Schnorr signature
NodeId = Annotated[str, StringConstraints(pattern=r"^0[23][0-9a-f]{64}$")]  # compressed key
Did = Annotated[str, StringConstraints(pattern=r"^did:nostr:[0-9a-f]{64}$")]
SchemaPattern = Annotated[str, StringConstraints(pattern=r"^hive:[a-z-]{2,30}/(v[0-9]+|\*)$")]


def first_error(exc: ValidationError, whole: str = "value") -> str:
    """The first problem pydantic found, as `field.path: message` on one line (`whole` names
    the value itself when the problem is not in one field)."""
    errors = exc.errors()
    if not errors:
        return f"{whole}: invalid"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or whole
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {message}".replace("\n", " ")[:300]
