"""An outbox row as the sender sees it (the table is written by `Tx`, agent/store/db.py)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class OutboxState(StrEnum):
    """Where an outbox row is (the `outbox.state` column)."""

    PENDING = "pending"  # still tried, at next_attempt_at
    DONE = "done"  # enough relays hold it (min_acks)
    SUPERSEDED = "superseded"  # every refusal said a newer version is there: final, not a failure
    FAILED = "failed"  # every target answered, too few accepted
    EXPIRED = "expired"  # not delivered before its time to live ran out


@dataclass(frozen=True)
class OutboxItem:
    event_id: str
    event_json: str
    kind: int
    targets: list[str]
    min_acks: int
    enqueued_at: int
    expires_at: int
    attempts: int
    next_attempt_at: int
    state: str
    acked: frozenset[str]
    last_error: str | None
    refused: dict[str, str]

    @classmethod
    def fresh(
        cls, event_id: str, event_json: str, kind: int, targets: list[str], min_acks: int,
        now: int, expires_at: int,
    ) -> OutboxItem:  # fmt: skip
        """An item as `Tx.enqueue` stores it: nothing tried, due at once."""
        return cls(
            event_id, event_json, kind, list(targets), min_acks, now, expires_at, 0, now,
            OutboxState.PENDING, frozenset(), None, {},
        )  # fmt: skip

    @property
    def missing(self) -> list[str]:
        """Target relays that neither hold the event nor refused it for good."""
        return [url for url in self.targets if url not in self.acked and url not in self.refused]

    @property
    def published(self) -> bool:
        return len(self.acked) >= self.min_acks
