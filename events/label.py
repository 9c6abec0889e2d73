"""NIP-32 labels (kind 1985): the tier a reputation credential gives its subject, as a label
any client can filter by namespace (`#L`) or value (`#l`).

    {"kind": 1985, "content": <one line: domain, tier, score, period>,
     "tags": [["L", "hive.reputation"], ["l", "<domain>:<tier>", "hive.reputation"],
              ["p", <subject>], ["a", "36383:<issuer>:<credential id>"], ["e", <credential event>]]}

The `p` tag is what is labelled (the subject); `a` and `e` point at the signed credential
the label summarises, so a reader can check it.  Revoking the credential deletes the label
(NIP-09, by `e`).
"""

from __future__ import annotations

from typing import Annotated

import nostr_sdk as sdk
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from events.base import NostrEvent, Rumor, require_kind, sign_event, tag_value, tag_values
from events.errors import InvalidPayload, MissingTag
from events.family import Signed
from events.kinds import Kind
from events.types import Hex64, XOnly, first_error

NAMESPACE = "hive.reputation"
Value = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9:._-]{0,63}$")]


class Label(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(default=NAMESPACE, min_length=1, max_length=64)
    value: Value
    subject: XOnly
    credential: str = Field(pattern=r"^36383:[0-9a-f]{64}:[A-Za-z0-9._:-]{1,64}$")
    credential_event: Hex64
    note: str = Field(default="", max_length=300)


def tags(item: Label) -> list[list[str]]:
    return [
        ["L", item.namespace],
        ["l", item.value, item.namespace],
        ["p", item.subject],
        ["a", item.credential],
        ["e", item.credential_event],
    ]


def build(keys: sdk.Keys, item: Label, *, created_at: int) -> NostrEvent:
    """A signed kind-1985 label; its content is the one-line note."""
    return sign_event(keys, Kind.LABEL, item.note, tags(item), created_at)


def parse(ev: Rumor, namespace: str = NAMESPACE) -> Signed[Label]:
    """The label in `namespace` that a kind-1985 event carries.

    Raises WrongKind, MissingTag (no `L`/`l` of the namespace, or no target) or InvalidPayload.
    """
    require_kind(ev, Kind.LABEL)
    if namespace not in tag_values(ev.tags, "L"):
        raise MissingTag(f"no L tag for the namespace {namespace!r}")
    values = [t[1] for t in ev.tags if t[0] == "l" and len(t) >= 3 and t[2] == namespace]
    if not values:
        raise MissingTag(f"no l tag marked {namespace!r}")
    try:
        item = Label(
            namespace=namespace,
            value=values[0],
            subject=tag_value(ev.tags, "p"),
            credential=tag_value(ev.tags, "a"),
            credential_event=tag_value(ev.tags, "e"),
            note=ev.content,
        )
    except ValidationError as exc:
        raise InvalidPayload(f"label: {first_error(exc)}"[:300]) from None
    return Signed(item, ev.id, ev.pubkey, ev.created_at, ev.kind)
