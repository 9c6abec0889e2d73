"""NIP-17 chat messages (rumor kind 14): plain text any DM client shows, only ever inside a
gift wrap.

    {"kind": 14, "content": <text>, "tags": [["p", <recipient>], ["e", <rumor replied to>]]}

A reply names the kind-14 rumor it answers in an `e` tag, as NIP-17 threads them.  The
sender also wraps a copy to itself (NIP-17), so its other clients see the conversation.
"""

from __future__ import annotations

from dataclasses import dataclass

from events.base import Rumor, make_rumor, require_kind, tag_value, tag_values
from events.errors import InvalidPayload
from events.kinds import Kind


@dataclass(frozen=True)
class Message:
    text: str
    recipients: tuple[str, ...]
    reply_to: str | None


def rumor(me: str, to: str, text: str, *, created_at: int, reply_to: str | None = None) -> Rumor:
    """A kind-14 rumor from `me` to `to` (TooLarge above the rumor limit)."""
    tags = [["p", to], *([["e", reply_to]] if reply_to else [])]
    return make_rumor(me, Kind.DIRECT_MESSAGE, text, tags, created_at)


def parse(ev: Rumor) -> Message:
    """The message in a kind-14 rumor; WrongKind, or InvalidPayload without a recipient."""
    require_kind(ev, Kind.DIRECT_MESSAGE)
    recipients = tuple(tag_values(ev.tags, "p"))
    if not recipients:
        raise InvalidPayload("a NIP-17 message names its recipients in p tags")
    return Message(ev.content, recipients, tag_value(ev.tags, "e"))
