"""Management credentials: an operator's grant to an advisor (rumor 4381, gift-wrapped) and its
public revocation (kind 36384).

The node's agent signs the credential (BIP-340 over its canonical hash) so the advisor can show
it to anyone; the node itself keeps the authoritative copy.  A revocation carries only the
SHA-256 of the credential id (`d` tag) and no `p` tag, so it reveals neither who was managed nor
by whom; the node honours its own revocations at once.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated

import nostr_sdk as sdk
from pydantic import Field, StringConstraints, model_validator

from events.canonical import content_hash
from events.crypto import schnorr_verify, sign_hash
from events.errors import BadSignature
from events.family import JsonFamily, Payload
from events.kinds import Kind
from events.types import Hex32, Hex64, Hex128, SchemaPattern

MAX_VALIDITY_S = 730 * 86400


class Tier(StrEnum):
    MONITOR = "monitor"
    STANDARD = "standard"
    ADVANCED = "advanced"
    ADMIN = "admin"


TIER_CAP = {Tier.MONITOR: 2, Tier.STANDARD: 5, Tier.ADVANCED: 7, Tier.ADMIN: 10}


class Constraints(Payload):
    max_fee_change_pct: int = Field(50, ge=0, le=1000)
    max_rebalance_sats: int = Field(1_000_000, ge=0)
    max_daily_actions: int = Field(100, ge=0, le=100_000)


class Compensation(Payload):
    model: str = Field("per-action", max_length=32)
    rate_sats: int = Field(0, ge=0)
    accepted_methods: list[str] = Field(default_factory=lambda: ["cashu"], max_length=8)
    escrow_method: str = Field("cashu", max_length=32)


class ManagementCredential(Payload):
    credential_id: Hex32
    node: Hex64  # the node agent's Nostr key (the issuer)
    node_id: Annotated[str, StringConstraints(pattern=r"^0[23][0-9a-f]{64}$")] | None = None
    advisor: Hex64
    tier: Tier
    allowed_schemas: list[SchemaPattern] = Field(min_length=1, max_length=32)
    constraints: Constraints = Field(default_factory=Constraints)
    compensation: Compensation = Field(default_factory=Compensation)
    valid_from: int = Field(ge=0)
    valid_until: int = Field(ge=0)

    @model_validator(mode="after")
    def _validity(self) -> ManagementCredential:
        if not 0 < self.valid_until - self.valid_from <= MAX_VALIDITY_S:
            raise ValueError("a credential is valid for at most 730 days, and ends after it starts")
        if self.node == self.advisor:
            raise ValueError("a node cannot grant itself a credential")
        return self

    @property
    def hash(self) -> str:
        return content_hash(self)

    def allows(self, schema: str) -> bool:
        """`hive:fee-policy/*` allows every version of fee-policy; `x/*` matches the prefix only."""
        family = schema.split("/", 1)[0]
        return any(
            pattern == schema or (pattern.endswith("/*") and pattern[:-2] == family)
            for pattern in self.allowed_schemas
        )


class Grant(Payload):
    credential: ManagementCredential
    signature: Hex128  # the node's BIP-340 signature over credential.hash


def sign(keys: sdk.Keys, cred: ManagementCredential) -> Grant:
    return Grant(credential=cred, signature=sign_hash(keys, bytes.fromhex(cred.hash)))


def verify(grant: Grant) -> None:
    """Raise BadSignature unless the node named in the credential signed it."""
    cred = grant.credential
    if not schnorr_verify(
        bytes.fromhex(cred.node), bytes.fromhex(cred.hash), bytes.fromhex(grant.signature)
    ):
        raise BadSignature("the credential is not signed by the node it names")


GRANT = JsonFamily(Kind.CREDENTIAL_GRANT, Grant, alt="Lightning Hive management credential")


class Revocation(Payload):
    credential_hash: Hex64  # SHA-256 of the credential id: who and what stay private
    revoked_at: int = Field(ge=0)


def revocation_key(credential_id: str) -> str:
    return hashlib.sha256(bytes.fromhex(credential_id)).hexdigest()


def _revocation_tags(rev: Revocation) -> list[list[str]]:
    return [["d", rev.credential_hash], ["t", "hive-revocation"]]


REVOCATION = JsonFamily(
    Kind.REVOCATION,
    Revocation,
    alt="Lightning Hive credential revocation",
    derived_tags=_revocation_tags,
)
