"""Contracts: offer (rumor 4384) → accept (rumor 4385) → a contract both parties signed.

The terms are hashed canonically; each party signs the terms hash with its Nostr key (BIP-340),
so the finished contract — terms plus both signatures — can be checked by anyone, long after
the gift wraps that carried it are gone.  Both parties store it.
"""

from __future__ import annotations

import nostr_sdk as sdk
from pydantic import Field, model_validator

from events.canonical import content_hash
from events.crypto import schnorr_verify, sign_hash
from events.errors import BadSignature, InvalidPayload, Unauthorized
from events.family import JsonFamily, Payload
from events.kinds import Kind
from events.listing import Frequency, PricingModel, SchemaRef, ServiceType, Trial
from events.types import Did, Hex64, Hex128


class ContractTerms(Payload):
    service: ServiceType
    client: Did
    provider: Did
    listing: str | None = Field(default=None, max_length=200)  # the listing's address, if any
    schemas: list[SchemaRef] = Field(default_factory=list, max_length=32)
    price_sat: int = Field(ge=0)
    pricing_model: PricingModel
    frequency: Frequency
    capacity_sat: int | None = Field(default=None, ge=0)
    starts_at: int = Field(ge=0)
    duration_days: int = Field(ge=1, le=3650)
    trial: Trial | None = None
    heartbeat_interval_s: int = Field(default=3600, ge=60, le=86400)
    nonce: Hex64

    @model_validator(mode="after")
    def _parties(self) -> ContractTerms:
        if self.client == self.provider:
            raise ValueError("a contract needs two different parties")
        return self

    @property
    def ends_at(self) -> int:
        return self.starts_at + self.duration_days * 86400

    @property
    def hash(self) -> str:
        return content_hash(self)


class Offer(Payload):
    terms: ContractTerms
    signature: Hex128  # the offerer's BIP-340 signature over the terms hash


class Accept(Payload):
    terms_hash: Hex64
    signature: Hex128  # the acceptor's signature over the same hash


class Contract(Payload):
    terms: ContractTerms
    client_signature: Hex128
    provider_signature: Hex128

    @property
    def id(self) -> str:
        return self.terms.hash


def pubkey_of(did: str) -> str:
    return did.removeprefix("did:nostr:")


def sign_terms(keys: sdk.Keys, terms: ContractTerms) -> str:
    return sign_hash(keys, bytes.fromhex(terms.hash))


def _check(terms: ContractTerms, did: str, signature: str, role: str) -> None:
    ok = schnorr_verify(
        bytes.fromhex(pubkey_of(did)), bytes.fromhex(terms.hash), bytes.fromhex(signature)
    )
    if not ok:
        raise BadSignature(f"the {role}'s signature over the contract terms does not verify")


def verify(contract: Contract) -> None:
    """Raise BadSignature unless both parties signed these exact terms."""
    _check(contract.terms, contract.terms.client, contract.client_signature, "client")
    _check(contract.terms, contract.terms.provider, contract.provider_signature, "provider")


def check_offer(offer: Offer, sender: str) -> None:
    """The offer comes from one of its parties, who signed it (Unauthorized / BadSignature)."""
    parties = {pubkey_of(offer.terms.client), pubkey_of(offer.terms.provider)}
    if sender not in parties:
        raise Unauthorized("only a party to a contract can offer it")
    _check(offer.terms, f"did:nostr:{sender}", offer.signature, "offerer")


def assemble(offer: Offer, offerer: str, accept: Accept, acceptor: str) -> Contract:
    """The signed contract from an offer and its acceptance, every check made."""
    check_offer(offer, offerer)
    if accept.terms_hash != offer.terms.hash:
        raise InvalidPayload("the acceptance is for different terms")
    if acceptor == offerer or acceptor not in {
        pubkey_of(offer.terms.client),
        pubkey_of(offer.terms.provider),
    }:
        raise Unauthorized("only the other party can accept an offer")
    by_client = offerer == pubkey_of(offer.terms.client)
    contract = Contract(
        terms=offer.terms,
        client_signature=offer.signature if by_client else accept.signature,
        provider_signature=accept.signature if by_client else offer.signature,
    )
    verify(contract)
    return contract


OFFER = JsonFamily(Kind.CONTRACT_OFFER, Offer, alt="Lightning Hive contract offer")
ACCEPT = JsonFamily(Kind.CONTRACT_ACCEPT, Accept, alt="Lightning Hive contract acceptance")
