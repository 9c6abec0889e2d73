"""Typed errors with stable codes.

Every failure the project detects on purpose is a `HiveError` subclass with a stable
`code` (what a program matches, and what travels back to an advisor in a receipt) and a
sentence a person understands.  `prefix` is the NIP-01 machine-readable prefix used when the
error is reported in a relay-style `OK`/`CLOSED` message.

Codes are part of the wire format: never rename one, only add.  `tests/test_errors.py` pins
the full list.
"""

from __future__ import annotations

from typing import Any, ClassVar


class HiveError(Exception):
    """Raised for any failure the project detects on purpose; the root of the family."""

    code: ClassVar[str] = "INTERNAL"
    detail: ClassVar[str] = "an internal error occurred"
    prefix: ClassVar[str] = "error"

    def __init__(self, detail: str | None = None) -> None:
        self.message = detail or type(self).detail
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """The error as it is shown with `--json` and sent to a remote party."""
        return {"code": self.code, "message": self.message}

    def nip01(self) -> str:
        """The error as a NIP-01 `OK`/`CLOSED` reason, e.g. ``invalid: bad signature``."""
        return f"{self.prefix}: {self.message}"


# --- wire and event errors (events/) -------------------------------------------------------


class InvalidJson(HiveError):
    """Raised when bytes that should hold JSON do not."""

    code = "INVALID_JSON"
    detail = "the message is not valid JSON"
    prefix = "invalid"


class InvalidEvent(HiveError):
    """Raised when a Nostr event lacks a field or a field has the wrong type or shape."""

    code = "INVALID_EVENT"
    detail = "the event does not have the shape NIP-01 requires"
    prefix = "invalid"


class TooLarge(HiveError):
    """Raised when an event, rumor, plaintext or message exceeds its size limit."""

    code = "TOO_LARGE"
    detail = "the payload is larger than allowed"
    prefix = "invalid"


class BadEventId(HiveError):
    """Raised when an event's id is not the hash of its contents."""

    code = "BAD_ID"
    detail = "the event id does not match its contents"
    prefix = "invalid"


class BadSignature(HiveError):
    """Raised when a Schnorr signature does not verify."""

    code = "BAD_SIGNATURE"
    detail = "the signature does not verify"
    prefix = "invalid"


class WrongKind(HiveError):
    """Raised when an event of one kind is handed to the parser of another."""

    code = "WRONG_KIND"
    detail = "the event is not of the expected kind"
    prefix = "invalid"


class MissingTag(HiveError):
    """Raised when a required tag is absent."""

    code = "MISSING_TAG"
    detail = "a required tag is missing"
    prefix = "invalid"


class InvalidTag(HiveError):
    """Raised when a tag is present but its value is malformed."""

    code = "INVALID_TAG"
    detail = "a tag has an invalid value"
    prefix = "invalid"


class InvalidPayload(HiveError):
    """Raised when an event's content does not match the model of its kind."""

    code = "INVALID_PAYLOAD"
    detail = "the event content does not match its schema"
    prefix = "invalid"


class InvalidKey(HiveError):
    """Raised when a public or secret key is malformed or not on the curve."""

    code = "INVALID_KEY"
    detail = "the key is not a valid secp256k1 key"
    prefix = "invalid"


class Nip44VersionUnsupported(HiveError):
    """Raised when a NIP-44 payload announces a version other than 2."""

    code = "NIP44_VERSION"
    detail = "the encrypted payload uses an unsupported NIP-44 version"
    prefix = "invalid"


class Nip44Malformed(HiveError):
    """Raised when a NIP-44 payload is not valid base64 or has an impossible length."""

    code = "NIP44_MALFORMED"
    detail = "the encrypted payload is malformed"
    prefix = "invalid"


class DecryptionFailed(HiveError):
    """Raised when a NIP-44 payload fails its MAC or padding check."""

    code = "DECRYPT_FAILED"
    detail = "the encrypted payload could not be decrypted (wrong key or tampered data)"
    prefix = "invalid"


class PlaintextLength(HiveError):
    """Raised when a plaintext is empty or longer than NIP-44 allows."""

    code = "PLAINTEXT_LENGTH"
    detail = "NIP-44 plaintexts must be 1 to 65,535 bytes long"
    prefix = "invalid"


class SealMismatch(HiveError):
    """Raised when a NIP-59 seal is signed by someone other than the rumor's author."""

    code = "SEAL_MISMATCH"
    detail = "the seal signer is not the author of the message inside it"
    prefix = "invalid"


class WrongRecipient(HiveError):
    """Raised when a gift wrap is addressed to another key."""

    code = "WRONG_RECIPIENT"
    detail = "the gift wrap is addressed to someone else"
    prefix = "invalid"


# --- NWC-style codes shared with advisors (NIP-47 names where they exist) -------------------


class Unauthorized(HiveError):
    """Raised when the sender holds no valid credential for what it asks."""

    code = "UNAUTHORIZED"
    detail = "the sender is not authorized"
    prefix = "restricted"


class Restricted(HiveError):
    """Raised when a credential exists but policy forbids this action."""

    code = "RESTRICTED"
    detail = "the action is not allowed by policy"
    prefix = "restricted"


class QuotaExceeded(HiveError):
    """Raised when a budget would be exceeded."""

    code = "QUOTA_EXCEEDED"
    detail = "the budget for this period is used up"
    prefix = "blocked"


class RateLimited(HiveError):
    """Raised when a sender exceeds its rate limit."""

    code = "RATE_LIMITED"
    detail = "too many requests; slow down"
    prefix = "rate-limited"


class Expired(HiveError):
    """Raised when an event, command or ticket is past its expiry or outside the clock window."""

    code = "EXPIRED"
    detail = "the message has expired"
    prefix = "invalid"


class PowTooLow(HiveError):
    """Raised when an event carries less NIP-13 proof of work than the receiver requires."""

    code = "POW_TOO_LOW"
    detail = "the event carries too little proof of work"
    prefix = "pow"


class FromFuture(HiveError):
    """Raised when an event is dated further ahead of the local clock than allowed."""

    code = "FROM_FUTURE"
    detail = "the event is dated in the future"
    prefix = "invalid"


class Replayed(HiveError):
    """Raised when a nonce or idempotency id is reused with different content."""

    code = "REPLAYED"
    detail = "the message reuses a nonce or id that was already used"
    prefix = "duplicate"


class InvalidParams(HiveError):
    """Raised when command parameters do not match the action's schema."""

    code = "INVALID_PARAMS"
    detail = "the parameters are invalid"
    prefix = "invalid"


class NotImplementedYet(HiveError):
    """Raised when a capability is recognised but not available in this version."""

    code = "NOT_IMPLEMENTED"
    detail = "this capability is not implemented yet"
    prefix = "unsupported"


class Queued(HiveError):
    """Raised (as a status) when a command waits for a human or oracle decision."""

    code = "QUEUED"
    detail = "the command is waiting for approval"
    prefix = "pending"


class Rejected(HiveError):
    """Raised when an approver or oracle rejected a command."""

    code = "REJECTED"
    detail = "the command was rejected"
    prefix = "blocked"


class FailsafeOnly(HiveError):
    """Raised when the node's governance mode is failsafe and the action is not an emergency."""

    code = "FAILSAFE_ONLY"
    detail = "failsafe mode: only emergency actions run"
    prefix = "restricted"


class PaymentFailed(HiveError):
    """Raised when a payment or rebalance finds no route that can carry it."""

    code = "PAYMENT_FAILED"
    detail = "the payment failed"
    prefix = "error"


class InsufficientBalance(HiveError):
    """Raised when a node lacks the funds (on-chain or in a channel) an action needs."""

    code = "INSUFFICIENT_BALANCE"
    detail = "not enough funds for this action"
    prefix = "error"


class NotFound(HiveError):
    """Raised when a channel, peer, invoice or record named in a request does not exist."""

    code = "NOT_FOUND"
    detail = "no such item"
    prefix = "invalid"


# --- fleet (custom messages between members) ---------------------------------------------------


class UnknownMessage(HiveError):
    """Raised for a custom message that is not a fleet message of a type this agent knows."""

    code = "UNKNOWN_MESSAGE"
    detail = "not a fleet message this agent knows"
    prefix = "invalid"


class NotMember(HiveError):
    """Raised when a fleet message needs membership the sender (or this node) does not have."""

    code = "NOT_MEMBER"
    detail = "not a member of this hive"
    prefix = "restricted"


class Banned(HiveError):
    """Raised for anything from a node the hive has banned."""

    code = "BANNED"
    detail = "this node is banned from the hive"
    prefix = "blocked"


class IntentConflict(HiveError):
    """Raised when another intent holds the lock on the same kind and target."""

    code = "INTENT_CONFLICT"
    detail = "another member's intent holds this target"
    prefix = "blocked"


class InvalidTransition(HiveError):
    """Raised when an intent is asked to move to a state it cannot reach from where it is."""

    code = "INVALID_TRANSITION"
    detail = "the intent cannot move to that state"
    prefix = "invalid"


class SettlementConflict(HiveError):
    """Raised when a second, different settlement proposal arrives for a period that has one."""

    code = "SETTLEMENT_CONFLICT"
    detail = "this period has another settlement proposal already"
    prefix = "blocked"


class SettlementMismatch(HiveError):
    """Raised when a settlement frame does not match the plan it names: a plan hash that its
    own inputs do not give, a vote for another period or an unknown plan, a payment the plan
    does not assign."""

    code = "SETTLEMENT_MISMATCH"
    detail = "the settlement frame does not match the plan"
    prefix = "invalid"


class BadPreimage(HiveError):
    """Raised when a settlement payment's preimage does not hash to the invoice's payment
    hash (no proof of payment)."""

    code = "BAD_PREIMAGE"
    detail = "the preimage does not match the payment hash"


class ReportConflict(HiveError):
    """Raised for a third, different contribution report a member signed for a period (the
    second is kept as the proof of its equivocation, and counted under this code)."""

    code = "REPORT_CONFLICT"
    detail = "the member already reported other figures for this period"
    prefix = "invalid"


class ReportDisputed(HiveError):
    """Raised (and counted) when a member's contribution report disagrees with what this node
    observed on the channels it shares with the member: flagged, never averaged."""

    code = "REPORT_DISPUTED"
    detail = "the report disagrees with what this node observed"
    prefix = "invalid"


# --- escrow (Cashu) ---------------------------------------------------------------------------


class TicketInvalid(HiveError):
    """Raised when an escrow ticket's proofs are not locked the way the ticket says."""

    code = "TICKET_INVALID"
    detail = "the escrow ticket is not locked as it claims"
    prefix = "invalid"


class MintUnsupported(HiveError):
    """Raised when a mint's NUT-06 info lacks a NUT that escrow needs (07, 10, 11, 14)."""

    code = "MINT_UNSUPPORTED"
    detail = "the mint does not support what escrow needs"
    prefix = "restricted"


class MintNotAllowed(HiveError):
    """Raised when a mint is not one the operator configured (policy.json `mints`)."""

    code = "MINT_NOT_ALLOWED"
    detail = "the operator did not configure this mint"
    prefix = "restricted"


class MintUnavailable(HiveError):
    """Raised when a mint cannot be reached or answers with something that is not Cashu."""

    code = "MINT_UNAVAILABLE"
    detail = "the mint cannot be reached"
    prefix = "error"


class MintRefused(HiveError):
    """Raised when a mint refuses an operation (wrong preimage, missing signature, spent)."""

    code = "MINT_REFUSED"
    detail = "the mint refused the operation"
    prefix = "error"


class TokenInvalid(HiveError):
    """Raised when a Cashu token cannot be read (not a cashuA/cashuB token, or no proofs)."""

    code = "TOKEN_INVALID"
    detail = "not a Cashu token"
    prefix = "invalid"


class TokenSpent(HiveError):
    """Raised when a received token's proofs were already received or spent."""

    code = "TOKEN_SPENT"
    detail = "the token was already spent or received"
    prefix = "error"


class InvoiceUnpaid(HiveError):
    """Raised when a mint quote's invoice is still unpaid when the wait for it ends."""

    code = "INVOICE_UNPAID"
    detail = "the invoice is not paid yet"
    prefix = "error"


class Internal(HiveError):
    """Raised when an unexpected failure is caught at a boundary."""

    code = "INTERNAL"
    detail = "an internal error occurred"
    prefix = "error"


def error_classes() -> dict[str, type[HiveError]]:
    """Every concrete error class by code, including those defined outside this module."""
    found: dict[str, type[HiveError]] = {}
    stack: list[type[HiveError]] = [HiveError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls is not HiveError:
            found.setdefault(cls.code, cls)
    return found
