"""M-of-n approvals (kind 36386): an approver key's signed yes or no to one dangerous command,
bound to the command id, its parameters hash and an expiry.  Addressable by approver and
command (`d` = command id), so each approver has one current answer per command."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from events.family import JsonFamily, Payload
from events.kinds import Kind
from events.types import Hex32, Hex64


class Verdict(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class Approval(Payload):
    command_id: Hex32
    node: Hex64
    params_hash: Hex64
    verdict: Verdict
    expires_at: int = Field(ge=0)


def _tags(item: Approval) -> list[list[str]]:
    return [["d", item.command_id], ["t", "hive-approval"], ["p", item.node]]


FAMILY = JsonFamily(
    Kind.APPROVAL, Approval, alt="Lightning Hive m-of-n approval", derived_tags=_tags
)
