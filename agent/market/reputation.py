"""Aggregating reputation credentials about one subject into a score and a tier.

    score = Σ w·s ÷ Σ w            s = each credential's own score (events.reputation.score)
    w     = issuer weight × recency × evidence
    issuer weight  2.0 when issuer and subject are both fleet members, 1.5 when only the
                   issuer is, else 1.0
    recency        e^(−0.01 · days since the credential's period ended)
    evidence       0.3 with no verified evidence, 0.7 for 1–5 items, 1.0 for more than 5
                   (only distinct evidence that verifies counts)
    ÷ n            each of an issuer's n credentials about the subject weighs 1/n: one key
                   issuing a hundred credentials (a period each) counts as one issuer

Tiers: newcomer 0–59, recognized 60–74, trusted 75–84, senior 85–100.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from events.reputation import ReputationCredential, score, tier, unix, verified_evidence


@dataclass(frozen=True)
class Weighted:
    credential_id: str
    issuer: str
    score: float
    issuer_weight: float
    recency: float
    evidence: float
    issued: int = 1  # how many credentials its issuer has about the subject here

    @property
    def weight(self) -> float:
        return self.issuer_weight * self.recency * self.evidence / self.issued


@dataclass(frozen=True)
class Aggregate:
    subject: str
    score: float  # 0–100; 0 with no credentials
    tier: str
    parts: tuple[Weighted, ...]


def evidence_factor(verified: int) -> float:
    if verified == 0:
        return 0.3
    return 0.7 if verified <= 5 else 1.0


def issuer_weight(issuer: str, subject: str, members: set[str]) -> float:
    if issuer in members:
        return 2.0 if subject in members else 1.5
    return 1.0


def weigh(cred: ReputationCredential, now: int, members: set[str], issued: int = 1) -> Weighted:
    s = cred.credentialSubject
    issuer = cred.issuer.removeprefix("did:nostr:")
    days = max(0.0, (now - unix(s.period.end)) / 86400)
    return Weighted(
        credential_id=cred.credential_id,
        issuer=issuer,
        score=score(s),
        issuer_weight=issuer_weight(issuer, s.id.removeprefix("did:nostr:"), members),
        recency=math.exp(-0.01 * days),
        evidence=evidence_factor(verified_evidence(cred)),
        issued=issued,
    )


def aggregate(
    subject: str, credentials: list[ReputationCredential], now: int, members: set[str] = frozenset()
) -> Aggregate:
    """The aggregate score of `subject` (hex pubkey) from credentials about it."""
    issued = Counter(c.issuer for c in credentials)
    parts = tuple(weigh(c, now, set(members), issued[c.issuer]) for c in credentials)
    total_weight = sum(p.weight for p in parts)
    value = sum(p.weight * p.score for p in parts) / total_weight if total_weight else 0.0
    return Aggregate(subject, value, tier(value), parts)
