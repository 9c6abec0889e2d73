"""Private note (rumor kind 4380): free text between agents, only ever inside a gift wrap.

Used by the demo and for operator notices.  Every private message carries an idempotency id
(`msg_id`) so a note delivered twice over several relays is acted on once.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from events.base import MAX_RUMOR_BYTES
from events.family import JsonFamily, Payload
from events.kinds import Kind

MsgId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


class Note(Payload):
    msg_id: MsgId
    text: str = Field(min_length=1, max_length=MAX_RUMOR_BYTES)
    reply_to: MsgId | None = None


FAMILY = JsonFamily(Kind.NOTE, Note, alt="Lightning Hive private note")
rumor = FAMILY.rumor
parse = FAMILY.parse_rumor
