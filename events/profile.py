"""The agent's profile: NIP-01 user metadata (kind 0), marked as a bot (NIP-24).

Generic clients show the agent's key with a name and a line about it instead of a bare npub.
The content is a JSON object of strings (and NIP-24's `bot`); no tags.
"""

from __future__ import annotations

import json

import nostr_sdk as sdk
from pydantic import Field, ValidationError

from events.base import NostrEvent, require_kind, sign_event
from events.errors import InvalidPayload
from events.family import Payload
from events.kinds import Kind
from events.types import first_error


class Profile(Payload):
    name: str = Field(min_length=1, max_length=64)
    about: str = Field(default="", max_length=1024)
    bot: bool = True  # NIP-24: the key is run by a program


def build(keys: sdk.Keys, profile: Profile, *, created_at: int) -> NostrEvent:
    """Kind 0 with `profile` as its JSON content."""
    content = json.dumps(profile.model_dump(), separators=(",", ":"), sort_keys=True)
    return sign_event(keys, Kind.METADATA, content, [], created_at)


def parse(event: NostrEvent) -> Profile:
    """The profile in a kind-0 event the agent published (raises InvalidPayload)."""
    require_kind(event, Kind.METADATA)
    try:
        return Profile.model_validate_json(event.content)
    except ValidationError as exc:
        raise InvalidPayload(f"profile {first_error(exc)}") from None
