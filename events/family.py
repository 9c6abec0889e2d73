"""The shared machinery of event families whose content is a JSON payload.

A family is a kind, a pydantic payload model, and the tags derived from a payload (so relays
and generic clients can filter on them).  `build()` signs a public event, `rumor()` makes the
unsigned inner event of a gift wrap; `parse()` / `parse_rumor()` check kind, required tags,
NIP-40 expiry against the caller's clock, the payload schema, and that every derived tag in
the event agrees with the content.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import nostr_sdk as sdk
from pydantic import BaseModel, ConfigDict, ValidationError

from events.base import (
    NostrEvent,
    Rumor,
    Tags,
    make_rumor,
    require_kind,
    require_tags,
    require_unexpired,
    sign_event,
)
from events.errors import InvalidPayload, InvalidTag
from events.types import first_error

M = TypeVar("M", bound=BaseModel)


class Payload(BaseModel):
    """Base of every wire payload: unknown fields are refused, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Signed(Generic[M]):
    """A parsed payload with the facts of the event that carried it."""

    payload: M
    id: str
    author: str
    created_at: int
    kind: int


def _no_tags(_: BaseModel) -> Tags:
    return []


class JsonFamily(Generic[M]):
    """One event family: kind + payload model + derived tags."""

    def __init__(
        self,
        kind: int,
        model: type[M],
        *,
        alt: str,
        derived_tags: Callable[[M], Tags] = _no_tags,
    ) -> None:
        self.kind = kind
        self.model = model
        self.alt = alt
        self.derived_tags = derived_tags

    def tags(self, payload: M, expiration: int | None = None) -> Tags:
        """Every tag an event of this family carries for `payload`."""
        tags = [*self.derived_tags(payload), ["alt", self.alt]]
        if expiration is not None:
            tags.append(["expiration", str(expiration)])
        return tags

    def build(
        self, keys: sdk.Keys, payload: M, *, created_at: int, expiration: int | None = None
    ) -> NostrEvent:
        """A signed public event carrying `payload`; raises the typed error every receiver
        would refuse it with, rather than publish something nobody can read."""
        event = sign_event(
            keys, self.kind, payload.model_dump_json(), self.tags(payload, expiration), created_at
        )
        self.parse(event, now=created_at)
        return event

    def rumor(
        self, pubkey: str, payload: M, *, created_at: int, expiration: int | None = None
    ) -> Rumor:
        """An unsigned rumor carrying `payload`, to be sealed with `events.nip59.wrap`.

        (Not parsed back like `build`'s events: a rumor's payload is a validated model and
        its only tags are derived from it, so what a receiver checks holds by construction;
        rumors are on every command's path, public events are not.)"""
        return make_rumor(
            pubkey,
            self.kind,
            payload.model_dump_json(),
            self.tags(payload, expiration),
            created_at,
        )

    def parse(self, ev: Rumor, *, now: int) -> Signed[M]:
        """Check a verified event or rumor of this family and return its payload.

        Raises WrongKind, MissingTag, InvalidTag, Expired or InvalidPayload.
        """
        require_kind(ev, self.kind)
        require_tags(ev, ["alt"])
        require_unexpired(ev, now)
        payload = self.load(ev.content)
        for tag in self.derived_tags(payload):
            if tag not in ev.tags:
                raise InvalidTag(f"tag {tag[0]!r} disagrees with the event content")
        return Signed(payload, ev.id, ev.pubkey, ev.created_at, ev.kind)

    parse_rumor = parse

    def load(self, content: str) -> M:
        """Validate JSON `content` against the payload model; InvalidPayload if it fails."""
        try:
            return self.model.model_validate_json(content)
        except ValidationError as exc:
            problem = first_error(exc, "content")
            raise InvalidPayload(f"{self.model.__name__} {problem}"[:300]) from None
