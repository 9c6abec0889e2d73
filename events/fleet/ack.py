"""Acknowledgements: every frame that asks for one is answered ok, invalid or retry later."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import StringConstraints

from events.fleet.wire import Body, Text
from events.types import Hex32


class AckStatus(StrEnum):
    OK = "ok"  # handled (or a duplicate of one that was)
    INVALID = "invalid"  # refused for good: the sender stops retrying
    RETRY_LATER = "retry_later"  # we may not know enough yet: the sender tries again later


class MsgAck(Body):
    ref: Hex32
    status: Literal["ok", "invalid", "retry_later"]  # an AckStatus (bodies are strict: as text)
    code: Annotated[str, StringConstraints(max_length=40)] = ""
    message: Text = ""

    @property
    def outcome(self) -> AckStatus:
        return AckStatus(self.status)
