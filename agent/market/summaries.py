"""Reputation summaries beside each credential an agent issues, in the shapes generic clients
read: a NIP-85 trusted assertion (kind 30382, `rank` = the aggregate of this issuer's own
unrevoked credentials about the subject) and a NIP-32 label (kind 1985, `domain:tier` in the
`hive.reputation` namespace) pointing at the credential.  And the NIP-89 handler event."""

from __future__ import annotations

import nostr_sdk as sdk

from agent.market.reputation import aggregate
from agent.store import Store
from agent.store import market as repo
from events import assertion, handler_info, label, reputation
from events.base import NostrEvent
from events.kinds import Kind

HANDLER_KEY = "nip89:handler"


def label_event(
    keys: sdk.Keys, cred: reputation.ReputationCredential, event_id: str, *, created_at: int
) -> NostrEvent:
    """The NIP-32 label summarising one credential (published with it)."""
    s = cred.credentialSubject
    value = reputation.score(s)
    issuer = keys.public_key().to_hex()
    item = label.Label(
        value=f"{s.domain.value}:{reputation.tier(value)}",
        subject=s.id.removeprefix("did:nostr:"),
        credential=reputation.address(issuer, cred.credential_id),
        credential_event=event_id,
        note=(
            f"{s.domain.value} {reputation.tier(value)} (score {round(value)}) for "
            f"{s.period.start} – {s.period.end}, outcome {s.outcome.value}"
        ),
    )
    return label.build(keys, item, created_at=created_at)


def rank_event(keys: sdk.Keys, store: Store, subject: str, *, now: int) -> NostrEvent | None:
    """The NIP-85 assertion about `subject` from our unrevoked credentials (None: there are
    none left, so the assertion is to be deleted)."""
    me = keys.public_key().to_hex()
    creds = repo.credentials_issued_about(store, me, subject)
    if not creds:
        return None
    rank = round(aggregate(subject, creds, now).score)
    # strictly newer than the last one, or a relay keeps that one (same second: lower id wins)
    at = max(now, int(store.kv(rank_key(subject), 0)) + 1)
    return assertion.build(keys, assertion.UserRank(subject=subject, rank=rank), created_at=at)


def rank_key(subject: str) -> str:
    """Where the `created_at` of our last assertion about `subject` is kept."""
    return f"nip85:{subject}"


def withdrawal_tags(me: str, address: str, label_id: str | None, subject: str | None, *,
                    rank_left: bool) -> list[list[str]]:  # fmt: skip
    """NIP-09 tags deleting a credential, its label and (when no credential about the
    subject is left) our trusted assertion about it."""
    tags = [["a", address], ["k", str(int(Kind.REPUTATION))]]
    if label_id:
        tags += [["e", label_id], ["k", str(int(Kind.LABEL))]]
    if subject and not rank_left:
        tags += [["a", assertion.address(me, subject)], ["k", str(int(Kind.USER_ASSERTION))]]
    return tags


def handler_event(
    keys: sdk.Keys, store: Store, info: handler_info.HandlerInfo, *, now: int
) -> NostrEvent | None:
    """Our NIP-89 handler event, or None when the one last published is still current."""
    if store.kv(HANDLER_KEY) == handler_info.digest(info):
        return None
    return handler_info.build(keys, info, created_at=now)
