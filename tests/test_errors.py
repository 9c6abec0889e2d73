"""Error codes are stable wire values: pinned here, unique, and every class documented."""

from __future__ import annotations

import agent.errors  # noqa: F401 - registers the runtime families
from events.errors import HiveError, InvalidEvent, RateLimited, error_classes

PINNED = {
    # events/ (wire)
    "INVALID_JSON", "INVALID_EVENT", "TOO_LARGE", "BAD_ID", "BAD_SIGNATURE", "WRONG_KIND",
    "MISSING_TAG", "INVALID_TAG", "INVALID_PAYLOAD", "INVALID_KEY", "NIP44_VERSION",
    "NIP44_MALFORMED", "DECRYPT_FAILED", "PLAINTEXT_LENGTH", "SEAL_MISMATCH", "WRONG_RECIPIENT",
    # NWC-style, shared with advisors
    "UNAUTHORIZED", "RESTRICTED", "QUOTA_EXCEEDED", "RATE_LIMITED", "EXPIRED", "REPLAYED",
    "INVALID_PARAMS", "NOT_IMPLEMENTED", "FROM_FUTURE", "POW_TOO_LOW", "QUEUED", "REJECTED", "INTERNAL", "PAYMENT_FAILED",
    "INSUFFICIENT_BALANCE", "NOT_FOUND", "FAILSAFE_ONLY",
    # escrow
    "TICKET_INVALID", "MINT_UNSUPPORTED", "MINT_NOT_ALLOWED", "MINT_UNAVAILABLE", "MINT_REFUSED",
    "TOKEN_INVALID", "TOKEN_SPENT", "INVOICE_UNPAID",
    # fleet
    "UNKNOWN_MESSAGE", "NOT_MEMBER", "BANNED", "INTENT_CONFLICT", "INVALID_TRANSITION",
    "SETTLEMENT_CONFLICT", "SETTLEMENT_MISMATCH", "BAD_PREIMAGE",
    "REPORT_CONFLICT", "REPORT_DISPUTED",
    # agent/ (runtime)
    "AGENT_ERROR", "KEY_MISSING", "KEY_EXISTS", "KEY_INSECURE", "KEY_INVALID",
    "CONFIG_INVALID", "RELAY_UNAVAILABLE", "NODE_UNAVAILABLE", "NODE_REFUSED", "PLUGIN_UNAVAILABLE",
    "PEER_NOT_CONNECTED", "USAGE", "INPUT_MISSING", "STORE_CORRUPT", "STORE_BUSY",
    "STORE_TOO_NEW", "HOME_LOCKED", "DISK_ERROR", "COMMAND_REFUSED", "NO_RECEIPT",
    "AMBIGUOUS_ID",
}  # fmt: skip


def test_codes_are_pinned() -> None:
    """Codes may be added (then pinned here) but never renamed or removed."""
    assert set(error_classes()) >= PINNED


def test_each_code_names_one_class() -> None:
    seen: dict[str, list[str]] = {}
    stack = [HiveError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        seen.setdefault(cls.code, []).append(cls.__name__)
    duplicates = {code: names for code, names in seen.items() if len(names) > 1}
    assert duplicates == {"INTERNAL": ["HiveError", "Internal"]}


def test_every_error_says_when_it_is_raised_and_has_a_sentence() -> None:
    for cls in error_classes().values():
        assert (cls.__doc__ or "").startswith("Raised"), cls
        assert cls.detail and not cls.detail.endswith(".")


def test_rendering() -> None:
    err = InvalidEvent("event field 'kind': too big")
    assert str(err) == "INVALID_EVENT: event field 'kind': too big"
    assert err.to_dict() == {"code": "INVALID_EVENT", "message": "event field 'kind': too big"}
    assert RateLimited().nip01() == "rate-limited: too many requests; slow down"


def test_exit_statuses_of_wire_errors() -> None:
    from agent.errors import EX_UNAVAILABLE, exit_code_of
    from events.errors import InvalidKey, MintUnavailable

    assert exit_code_of(MintUnavailable()) == EX_UNAVAILABLE == 69
    assert exit_code_of(RateLimited()) == 75
    assert exit_code_of(InvalidKey()) == 65
