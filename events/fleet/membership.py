"""The bodies of the membership protocol: the handshake, vouches, promotions, bans, leaving."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from events.fleet.wire import MAX_FRAME, MAX_TICKET, Body, One, Text, TierName, Unix, Zbase
from events.types import Hex32, NodeId, XOnly

# --- message bodies ----------------------------------------------------------------------


class Hello(Body):
    ticket: Annotated[str, StringConstraints(max_length=MAX_TICKET)]
    protocol_version: One = 1
    supported_versions: Annotated[list[Annotated[int, Field(ge=1, le=255)]], Field(max_length=8)]


class Challenge(Body):
    nonce: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    ticket_id: Hex32
    ttl_s: Annotated[int, Field(ge=1, le=3600)] = 300


class Manifest(Body):
    """What a joining node attests: who it is, what it runs, and the challenge it answers."""

    node_id: NodeId
    pubkey: XOnly
    version: Annotated[str, StringConstraints(max_length=64)]
    features: Annotated[
        list[Annotated[str, StringConstraints(max_length=32)]], Field(max_length=32)
    ]
    timestamp: Unix
    nonce: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Attest(Body):
    ticket: Annotated[str, StringConstraints(max_length=MAX_TICKET)]
    manifest: Manifest
    binding: Zbase  # CLN signmessage over the Nostr key: the node vouches for the key


class MemberEntry(Body):
    node_id: NodeId
    pubkey: XOnly
    binding: Zbase
    tier: TierName
    joined_at: Unix
    promoted_at: Unix | None = None


class BanEntry(Body):
    target: NodeId
    reason: Text
    decided_at: Unix


class Welcome(Body):
    tier: TierName
    admin: NodeId
    created_at: Unix
    members: Annotated[list[MemberEntry], Field(max_length=500)]
    bans: Annotated[list[BanEntry], Field(max_length=1000)]


Frame = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]+$", max_length=2 * MAX_FRAME)]


class MemberJoined(Body):
    attest: Frame  # the joiner's own signed ATTEST frame: every member re-checks it
    joined_at: Unix


class Vouch(Body):
    candidate: NodeId


Electorate = Annotated[list[NodeId], Field(min_length=1, max_length=500)]


class Promotion(Body):
    """A promotion decided by the sender: the full members it counted, and their vouches."""

    candidate: NodeId
    electorate: Electorate
    vouches: Annotated[list[Frame], Field(min_length=1, max_length=100)]


class BanProposal(Body):
    proposal_id: Hex32
    target: NodeId
    reason: Text


class BanVote(Body):
    proposal_id: Hex32
    target: NodeId
    approve: bool


class Ban(Body):
    """A ban decided by the sender: the full members it counted, the proposal and the votes."""

    target: NodeId
    electorate: Electorate
    proposal: Frame
    votes: Annotated[list[Frame], Field(max_length=100)]


class MemberLeft(Body):
    reason: Text = ""
