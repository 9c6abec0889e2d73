"""Node binding (kind 36385): a Nostr key bound to a Lightning node id.

The node signs its Nostr public key (hex) with Core Lightning's `signmessage`; the event is
signed by that Nostr key.  Anyone can check both directions: the Nostr signature (the key
claims the node) and `checkmessage` semantics on the zbase signature (the node claims the key).
After this one binding, fleet messages are signed with the Nostr key and checked with one
Schnorr verification.  Addressable with `d` = node id.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from events import lnsig
from events.base import Rumor
from events.errors import BadSignature, InvalidPayload
from events.family import JsonFamily, Payload, Signed
from events.kinds import Kind
from events.types import NodeId, XOnly


class NodeBinding(Payload):
    node_id: NodeId
    nostr_pubkey: XOnly
    zbase: Annotated[
        str, StringConstraints(pattern=r"^[ybndrfg8ejkmcpqxot1uwisza345h769]{100,110}$")
    ]


def _tags(binding: NodeBinding) -> list[list[str]]:
    return [["d", binding.node_id], ["t", "hive-node-binding"]]


FAMILY = JsonFamily(
    Kind.NODE_BINDING,
    NodeBinding,
    alt="Lightning Hive node binding: this Nostr key speaks for a Lightning node",
    derived_tags=_tags,
)
build = FAMILY.build


def verify(binding: NodeBinding) -> None:
    """Raise BadSignature unless the node's signature over the Nostr key checks out."""
    if not lnsig.check(binding.nostr_pubkey, binding.zbase, binding.node_id):
        raise BadSignature("the node's signature does not bind this Nostr key to that node id")


def parse(ev: Rumor, *, now: int) -> Signed[NodeBinding]:
    """Parse a binding and check both signatures (the event's was checked by parse_event)."""
    signed = FAMILY.parse(ev, now=now)
    if signed.payload.nostr_pubkey != ev.pubkey:
        raise InvalidPayload("a binding must be published by the Nostr key it binds")
    verify(signed.payload)
    return signed
