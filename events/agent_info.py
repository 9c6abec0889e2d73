"""Agent info (kind 36380): an agent's public self-description.

Like NIP-47's wallet info event, it tells peers what an agent is before they talk to it: its
role, software version, the capabilities it serves and the relays where it reads.  Addressable
with `d` = ``hive-agent``, so each key has exactly one current version.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from events.family import JsonFamily, Payload
from events.kinds import Kind

Capability = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9:/_.*-]{0,63}$")]
RelayUrl = Annotated[str, StringConstraints(pattern=r"^wss?://[^\s]{1,250}$")]


class Role(StrEnum):
    OPERATOR = "operator"  # owns a Lightning node; runs the agent beside it
    ADVISOR = "advisor"  # sells management services; runs the agent standalone
    MEMBER = "member"  # fleet member (an operator inside a hive)


class AgentInfo(Payload):
    name: str = Field(min_length=1, max_length=64)
    role: Role
    version: str = Field(min_length=1, max_length=32)
    capabilities: list[Capability] = Field(default_factory=list, max_length=64)
    relays: list[RelayUrl] = Field(default_factory=list, max_length=16)
    about: str = Field(default="", max_length=4096)


def _tags(info: AgentInfo) -> list[list[str]]:
    return [["d", "hive-agent"], ["t", "hive-agent"], ["t", f"hive-{info.role.value}"]]


FAMILY = JsonFamily(
    Kind.AGENT_INFO,
    AgentInfo,
    alt="Lightning Hive agent profile (role, version, capabilities)",
    derived_tags=_tags,
)
build = FAMILY.build
parse = FAMILY.parse
