"""Reputation credentials (kind 36383): a W3C-VC-shaped `DIDReputationCredential` in the content,
signed (as the Nostr event) by its issuer.

Generic clients see NIP-85-style `rank` and NIP-32 labels (`L` hive.reputation, `l` domain:tier)
on the event; hive agents read the full credential.  A credential is revoked by its issuer with
a NIP-09 deletion of its address.  Refused: self-issued credentials, non-finite metrics, a
period whose start is not before its end, unknown outcomes or domains, missing metrics.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator

from events.base import FUTURE_TOLERANCE_S, NostrEvent, Rumor, event_from_data, tag_values
from events.canonical import content_hash
from events.crypto import KeyLike
from events.errors import HiveError, InvalidPayload, InvalidTag
from events.family import JsonFamily, Payload, Signed
from events.kinds import Kind
from events.types import Did

CONTEXT = [
    "https://www.w3.org/ns/credentials/v2",
    "https://archon.technology/schemas/reputation/v1",
]


class Domain(StrEnum):
    ADVISOR = "hive:advisor"
    NODE = "hive:node"
    CLIENT = "hive:client"
    AGENT = "agent:general"


class Outcome(StrEnum):
    RENEW = "renew"
    NEUTRAL = "neutral"
    REVOKE = "revoke"


class EvidenceType(StrEnum):
    SIGNED_RECEIPT = "SignedReceipt"
    METRIC_SNAPSHOT = "MetricSnapshot"
    ATTESTATION = "Attestation"
    AUDIT_LOG = "AuditLog"
    ESCROW_RECEIPT = "EscrowReceipt"


# metric -> (how it maps to [0, 1]); required metrics per domain (UPSTREAM 01)
NORMALISE: dict[str, Any] = {
    "revenue_delta_pct": lambda x: (x + 50) / 100,  # -50 % -> 0, +50 % -> 1
    "actions_taken": lambda x: x / 100,
    "uptime_pct": lambda x: x / 100,
    "channels_managed": lambda x: x / 50,
    "routing_reliability": lambda x: x,
    "htlc_success_rate": lambda x: x,
    "payment_timeliness": lambda x: x,
    "sla_reasonableness": lambda x: x,
    "communication_quality": lambda x: x,
    "infrastructure_reliability": lambda x: x,
    "task_completion_rate": lambda x: x,
    "accuracy": lambda x: x,
    "response_time_ms": lambda x: 1 - x / 60_000,  # a minute or slower -> 0
    "tasks_evaluated": lambda x: x / 100,
}
REQUIRED = {
    Domain.ADVISOR: ("revenue_delta_pct", "actions_taken", "uptime_pct", "channels_managed"),
    Domain.NODE: ("routing_reliability", "uptime_pct", "htlc_success_rate"),
    Domain.CLIENT: ("payment_timeliness", "sla_reasonableness", "communication_quality",
                    "infrastructure_reliability"),
    Domain.AGENT: ("task_completion_rate", "accuracy", "response_time_ms", "tasks_evaluated"),
}  # fmt: skip
OPTIONAL = {Domain.NODE: ("avg_fee_ppm", "capacity_sats")}
OUTCOME_FACTOR = {Outcome.RENEW: 1.1, Outcome.NEUTRAL: 1.0, Outcome.REVOKE: 0.7}
TIERS = [(85, "senior"), (75, "trusted"), (60, "recognized"), (0, "newcomer")]


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def unix(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


IsoTime = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")]


class Period(Payload):
    start: IsoTime
    end: IsoTime

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if unix(self.start) >= unix(self.end):
            raise ValueError("the period must start before it ends")
        return self


class Evidence(Payload):
    type: EvidenceType
    id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    description: str = Field(default="", max_length=500)
    event: dict[str, Any] | None = None  # an embedded signed Nostr event makes it verifiable


class Subject(Payload):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: Did
    domain: Domain
    period: Period
    metrics: dict[str, float] = Field(max_length=16)
    outcome: Outcome
    evidence: list[Evidence] = Field(default_factory=list, max_length=32)

    @field_validator("metrics")
    @classmethod
    def _finite(cls, metrics: dict[str, float]) -> dict[str, float]:
        for name, value in metrics.items():
            if not math.isfinite(value):
                raise ValueError(f"metric {name} is not a finite number")
        return metrics

    @model_validator(mode="after")
    def _metrics_fit_domain(self) -> Subject:
        allowed = set(REQUIRED[self.domain]) | set(OPTIONAL.get(self.domain, ()))
        missing = set(REQUIRED[self.domain]) - set(self.metrics)
        if missing:
            raise ValueError(f"{self.domain} credentials need {', '.join(sorted(missing))}")
        unknown = set(self.metrics) - allowed
        if unknown:
            raise ValueError(f"unknown metrics for {self.domain}: {', '.join(sorted(unknown))}")
        return self


class ReputationCredential(Payload):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        serialize_by_alias=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    context: list[str] = Field(default_factory=lambda: list(CONTEXT), alias="@context")
    type: list[str] = Field(
        default_factory=lambda: ["VerifiableCredential", "DIDReputationCredential"]
    )
    issuer: Did
    validFrom: IsoTime
    credentialSubject: Subject

    @model_validator(mode="after")
    def _not_self_issued(self) -> ReputationCredential:
        if self.issuer == self.credentialSubject.id:
            raise ValueError("a credential cannot be issued by its own subject")
        if "DIDReputationCredential" not in self.type:
            raise ValueError("type must include DIDReputationCredential")
        return self

    @property
    def credential_id(self) -> str:
        s = self.credentialSubject
        return content_hash(
            {
                "issuer": self.issuer,
                "subject": s.id,
                "domain": s.domain,
                "period": s.period.model_dump(),
            }
        )[:32]


def score(subject: Subject) -> float:
    """The credential's own score, 0–100: mean of the normalised required metrics × 100,
    × the outcome factor (renew 1.1, neutral 1.0, revoke 0.7), capped at 100."""
    parts = [min(1.0, max(0.0, NORMALISE[m](subject.metrics[m]))) for m in REQUIRED[subject.domain]]
    return float(min(100.0, 100 * sum(parts) / len(parts) * OUTCOME_FACTOR[subject.outcome]))


def tier(value: float) -> str:
    return next(name for floor, name in TIERS if value >= floor)


def _tags(cred: ReputationCredential) -> list[list[str]]:
    s = cred.credentialSubject
    value = score(s)
    return [
        ["d", cred.credential_id],
        ["p", s.id.removeprefix("did:nostr:")],
        ["t", "hive-reputation"],
        ["rank", str(round(value))],  # NIP-85 style
        ["L", "hive.reputation"],  # NIP-32 namespace
        ["l", f"{s.domain.value}:{tier(value)}", "hive.reputation"],
    ]


FAMILY = JsonFamily(
    Kind.REPUTATION,
    ReputationCredential,
    alt="Lightning Hive reputation credential",
    derived_tags=_tags,
)


def build(keys: KeyLike, cred: ReputationCredential, *, created_at: int) -> NostrEvent:
    """The signed credential event; raises what every receiver would refuse it with."""
    event = FAMILY.build(keys, cred, created_at=created_at)
    parse(event, now=created_at)
    return event


def parse(ev: Rumor, *, now: int) -> Signed[ReputationCredential]:
    """A credential whose event is signed by its issuer, about a period that has ended
    (InvalidPayload otherwise: a period ending years ahead would never age, so its weight
    would never decay), tagged `p` with its subject alone (InvalidTag)."""
    signed = FAMILY.parse(ev, now=now)
    if signed.payload.issuer != f"did:nostr:{ev.pubkey}":
        raise InvalidPayload("a credential must be published by its issuer")
    subject = signed.payload.credentialSubject.id.removeprefix("did:nostr:")
    if tag_values(ev.tags, "p") != [subject]:
        # an extra `p` would file it under someone else: their subscriptions, their NIP-85 rank
        raise InvalidTag("a credential's only `p` tag is its subject")
    if unix(signed.payload.credentialSubject.period.end) > now + FUTURE_TOLERANCE_S:
        raise InvalidPayload("a credential speaks of a period that has ended, not of the future")
    return signed


def address(issuer_pubkey: str, credential_id: str) -> str:
    return f"{Kind.REPUTATION}:{issuer_pubkey}:{credential_id}"


def verified_evidence(cred: ReputationCredential) -> int:
    """How many distinct signed events, each verifying and carrying its item's id, the
    evidence embeds (one event repeated is one piece of evidence)."""
    verified: set[str] = set()
    for item in cred.credentialSubject.evidence:
        if item.event is None or item.id in verified:
            continue
        try:
            if event_from_data(item.event).id == item.id:
                verified.add(item.id)
        except HiveError:
            continue  # evidence that does not verify simply does not count
    return len(verified)
