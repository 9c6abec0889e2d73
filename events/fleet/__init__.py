"""The fleet wire (a package: wire.py basics, ticket.py, membership.py bodies, gossip.py
state records, ack.py, registry.py, frame.py): signed messages between members over BOLT 1
custom messages.

A frame is a BOLT custom message: a 2-byte odd type (32769 upwards, one per message kind),
the 4 bytes `HIVE`, then compact JSON, at most 65,535 bytes in all:

    {"v":1,"id":"<16 random bytes hex>","hive":"hive_…","from":"<Nostr x-only key>",
     "node":"<sender's node id>","ts":<unix seconds>,"body":{…},"sig":"<BIP-340 hex>"}

The signature is by the sender's Nostr key over a domain-separated digest of
(tag, type, hive id, message id, timestamp, sender key, sender node, body), so a signature
can never be replayed as another type, into another hive, or as another event kind.
`parse_frame()` checks size → type → magic → JSON → envelope → body model → signature, and
raises a typed error at the first failure.  Freshness, replay and membership are the
receiver's business (agent/fleet): this module does no I/O and reads no clock.

Invite tickets are signed the same way under their own tag and travel as `hive1…` text.
"""

from __future__ import annotations

from events.fleet.ack import AckStatus, MsgAck
from events.fleet.frame import Envelope, Message, build_frame, is_hive_frame, parse_frame
from events.fleet.gossip import (
    ChannelEntry,
    ChannelStatus,
    Gossip,
    StateRecord,
    record_verifies,
    sign_record,
)
from events.fleet.membership import (
    Attest,
    Ban,
    BanEntry,
    BanProposal,
    BanVote,
    Challenge,
    Electorate,
    Frame,
    Hello,
    Manifest,
    MemberEntry,
    MemberJoined,
    MemberLeft,
    Promotion,
    Vouch,
    Welcome,
)
from events.fleet.registry import BODIES
from events.fleet.ticket import (
    Ticket,
    TicketBody,
    decode_ticket,
    encode_ticket,
    sign_ticket,
    verify_ticket,
)
from events.fleet.wire import (
    FRAME_TAG,
    MAGIC,
    MAX_FRAME,
    MAX_TICKET,
    NODE_ID,
    REQUIREMENT_BITS,
    STRICT,
    TICKET_TAG,
    VERSION,
    Body,
    HiveId,
    MsgType,
    One,
    Text,
    TierName,
    Unix,
    Zbase,
    is_node_id,
    requirement_bits,
    requirement_names,
)

__all__ = [
    "BODIES",
    "FRAME_TAG",
    "MAGIC",
    "MAX_FRAME",
    "MAX_TICKET",
    "NODE_ID",
    "REQUIREMENT_BITS",
    "STRICT",
    "TICKET_TAG",
    "VERSION",
    "AckStatus",
    "Attest",
    "Ban",
    "BanEntry",
    "BanProposal",
    "BanVote",
    "Body",
    "Challenge",
    "ChannelEntry",
    "ChannelStatus",
    "Electorate",
    "Envelope",
    "Frame",
    "Gossip",
    "Hello",
    "HiveId",
    "Manifest",
    "MemberEntry",
    "MemberJoined",
    "MemberLeft",
    "Message",
    "MsgAck",
    "MsgType",
    "One",
    "Promotion",
    "StateRecord",
    "Text",
    "Ticket",
    "TicketBody",
    "TierName",
    "Unix",
    "Vouch",
    "Welcome",
    "Zbase",
    "build_frame",
    "decode_ticket",
    "encode_ticket",
    "is_hive_frame",
    "is_node_id",
    "parse_frame",
    "record_verifies",
    "requirement_bits",
    "requirement_names",
    "sign_record",
    "sign_ticket",
    "verify_ticket",
]
