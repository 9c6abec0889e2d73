"""NIP-89 handler information (kind 31990): which event kinds a Lightning Hive agent handles,
so a client that meets one of those kinds can name the software behind it.

    {"kind": 31990, "content": <kind-0 style JSON: name, about, version>,
     "tags": [["d", "hive-agent"], ["k", "30402"], ["k", "36380"], …, ["alt", …]]}

One per key (`d` = ``hive-agent``); `run` and `node` publish it only when it changed.
"""

from __future__ import annotations

import json

import nostr_sdk as sdk
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from events.base import NostrEvent, Rumor, require_kind, sign_event, tag_value, tag_values
from events.errors import InvalidPayload, InvalidTag
from events.family import Signed
from events.kinds import Kind

IDENTIFIER = "hive-agent"
# the public kinds an agent reads and acts on (rumors travel only inside gift wraps)
HANDLED_KINDS: tuple[int, ...] = (
    Kind.CLASSIFIED_LISTING,
    Kind.AGENT_INFO,
    Kind.RFP,
    Kind.HEARTBEAT,
    Kind.REPUTATION,
    Kind.REVOCATION,
    Kind.NODE_BINDING,
    Kind.APPROVAL,
)


class HandlerInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    about: str = Field(default="", max_length=1000)
    version: str = Field(min_length=1, max_length=32)
    kinds: tuple[int, ...] = Field(default=HANDLED_KINDS, min_length=1, max_length=64)


def content(info: HandlerInfo) -> str:
    """The kind-0 style metadata NIP-89 puts in the content (keys sorted, stable)."""
    return json.dumps(
        {"name": info.name, "about": info.about, "version": info.version}, sort_keys=True
    )


def tags(info: HandlerInfo) -> list[list[str]]:
    return [
        ["d", IDENTIFIER],
        *(["k", str(int(k))] for k in sorted(set(info.kinds))),
        ["alt", f"{info.name}: handler information (NIP-89)"],
    ]


def build(keys: sdk.Keys, info: HandlerInfo, *, created_at: int) -> NostrEvent:
    return sign_event(keys, Kind.HANDLER_INFO, content(info), tags(info), created_at)


def parse(ev: Rumor) -> Signed[HandlerInfo]:
    """The handler a kind-31990 event describes; WrongKind, InvalidTag or InvalidPayload."""
    require_kind(ev, Kind.HANDLER_INFO)
    kinds = tag_values(ev.tags, "k")
    if tag_value(ev.tags, "d") is None or not kinds:
        raise InvalidTag("a handler names itself in d and its kinds in k tags")
    try:
        meta = json.loads(ev.content)
        item = HandlerInfo(
            name=meta.get("name", ""),
            about=meta.get("about", ""),
            version=meta.get("version", ""),
            kinds=tuple(int(k) for k in kinds),
        )
    except (ValueError, AttributeError, ValidationError):
        raise InvalidPayload("the handler's content is not its metadata") from None
    return Signed(item, ev.id, ev.pubkey, ev.created_at, ev.kind)


def digest(info: HandlerInfo) -> str:
    """What decides whether a published handler event is still current."""
    return json.dumps([content(info), tags(info)], sort_keys=True)
