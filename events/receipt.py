"""Receipts (rumor 4383): the node's signed answer to every command it accepted for checking.

Each receipt names the command, the advisor, the schema, action and params hash, the status and
result or error code, the danger and decision, the hashes of the node state the schema touches
before and after, and (with escrow) the HTLC preimage.  Receipts form one hash chain per
(node, credential): `prev_hash` is the previous receipt's `receipt_hash`, `seq` counts from 1,
so an advisor can prove its chain is complete and untampered, offline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import nostr_sdk as sdk
from pydantic import Field, StringConstraints

from events.canonical import content_hash
from events.crypto import schnorr_verify, sign_hash
from events.errors import BadEventId, BadSignature, HiveError, InvalidPayload
from events.family import JsonFamily, Payload
from events.kinds import Kind
from events.types import Hex32, Hex64, Hex128

GENESIS = "0" * 64


class Status(StrEnum):
    OK = "ok"
    ERROR = "error"
    QUEUED = "queued"
    DRY_RUN = "dry-run"


class ErrorInfo(Payload):
    code: Annotated[str, StringConstraints(pattern=r"^[A-Z_]{2,40}$")]
    message: str = Field(max_length=500)


class Receipt(Payload):
    receipt_id: Hex32
    seq: int = Field(ge=1)
    node: Hex64
    credential_id: Hex32
    advisor: Hex64
    command_id: Hex32
    schema_ref: str = Field(max_length=60)
    action: str = Field(max_length=40)
    params_hash: Hex64
    status: Status
    error: ErrorInfo | None = None
    result: dict[str, Any] = Field(default_factory=dict)
    danger: int = Field(ge=0, le=10)
    decision: str = Field(max_length=300)
    state_hash_before: Hex64
    state_hash_after: Hex64
    created_at: int = Field(ge=0)
    prev_hash: Hex64
    preimage: Hex64 | None = None
    receipt_hash: Hex64
    signature: Hex128

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"receipt_hash", "signature"})


def seal(keys: sdk.Keys, body: dict[str, Any]) -> Receipt:
    """Hash and sign a receipt body (every field but `receipt_hash` and `signature`)."""
    digest = content_hash(body)
    return Receipt(**body, receipt_hash=digest, signature=sign_hash(keys, bytes.fromhex(digest)))


def verify(receipt: Receipt) -> None:
    """Raise BadEventId if the hash does not match, BadSignature if the node did not sign it."""
    if content_hash(receipt.body()) != receipt.receipt_hash:
        raise BadEventId("the receipt hash does not match its contents")
    ok = schnorr_verify(
        bytes.fromhex(receipt.node),
        bytes.fromhex(receipt.receipt_hash),
        bytes.fromhex(receipt.signature),
    )
    if not ok:
        raise BadSignature("the receipt is not signed by the node it names")


@dataclass(frozen=True)
class ChainCheck:
    """How far one chain is verified: receipts 1..`seq`, the last one's hash, whose chain."""

    seq: int = 0
    last_hash: str = GENESIS
    node: str = ""
    credential_id: str = ""


def extend_chain(
    done: ChainCheck, receipts: Iterable[Receipt]
) -> tuple[ChainCheck, HiveError | None]:
    """Verify `receipts` (in seq order) as the continuation of the chain verified in `done`:
    how far it is verified now, and the first problem (None: every one follows) — a gap, a
    fork, mixed chains or the errors of `verify`.  A long chain is checked once, then only
    what was added to it."""
    for receipt in receipts:
        try:
            verify(receipt)
        except HiveError as error:
            return done, error
        expected = done.seq + 1
        if receipt.seq != expected:
            return done, InvalidPayload(f"receipt {expected} is missing from the chain")
        if receipt.prev_hash != done.last_hash:
            return done, InvalidPayload(
                f"receipt {receipt.seq} does not follow receipt {receipt.seq - 1}"
            )
        owner = (receipt.node, receipt.credential_id)
        if done.seq and owner != (done.node, done.credential_id):
            return done, InvalidPayload("receipts of different chains are mixed")
        done = ChainCheck(receipt.seq, receipt.receipt_hash, *owner)
    return done, None


def verify_chain(receipts: list[Receipt]) -> None:
    """One credential's receipts, complete from seq 1, each verified and linked to the last.

    Raises InvalidPayload for a gap, a fork or mixed chains, and the errors of `verify`.
    """
    _, problem = extend_chain(ChainCheck(), sorted(receipts, key=lambda r: r.seq))
    if problem is not None:
        raise problem


FAMILY = JsonFamily(Kind.RECEIPT, Receipt, alt="Lightning Hive command receipt")
