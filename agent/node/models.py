"""What a node backend reports, independent of the implementation (amounts as integer msat/sat)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NodeInfo(_Model):
    id: str
    alias: str
    blockheight: int
    num_peers: int
    num_channels: int


class Peer(_Model):
    id: str
    connected: bool
    num_channels: int


class FeePolicy(_Model):
    base_msat: int = Field(ge=0)
    ppm: int = Field(ge=0)
    htlc_min_msat: int = Field(ge=0)
    htlc_max_msat: int = Field(ge=0)
    cltv_delta: int = Field(ge=0)


class ChannelState(StrEnum):
    NORMAL = "CHANNELD_NORMAL"
    PENDING = "CHANNELD_AWAITING_LOCKIN"  # funded, unconfirmed (the simulator confirms at once)
    CLOSED = "ONCHAIN"


class Channel(_Model):
    """One of our channels, seen from our side."""

    short_channel_id: str
    peer_id: str
    capacity_sat: int = Field(ge=0)
    local_msat: int = Field(ge=0)
    remote_msat: int = Field(ge=0)
    reserve_sat: int = Field(ge=0)
    state: ChannelState
    policy: FeePolicy  # what we charge to forward out through this channel

    @property
    def spendable_msat(self) -> int:
        return max(0, self.local_msat - self.reserve_sat * 1000)


class Invoice(_Model):
    bolt11: str
    payment_hash: str
    amount_msat: int
    expires_at: int | None = None  # unix time it can no longer be paid (None: not said)


class Payment(_Model):
    payment_hash: str
    preimage: str
    amount_msat: int
    fee_msat: int
    hops: int


class Funds(_Model):
    onchain_sat: int
    channels_local_msat: int


class SignedMessage(_Model):
    signature: str
    recid: int
    zbase: str


# --- streams --------------------------------------------------------------------------------


class CustomMsg(_Model):
    peer_id: str
    payload: bytes  # the whole message, 2-byte type included


class PeerConnected(_Model):
    peer_id: str


class PeerDisconnected(_Model):
    peer_id: str


class ForwardStatus(StrEnum):
    SETTLED = "settled"
    FAILED = "failed"
    LOCAL_FAILED = "local_failed"


class Forward(_Model):
    in_channel: str
    out_channel: str
    in_msat: int
    out_msat: int
    fee_msat: int
    status: ForwardStatus
    failcode: int | None = None
    received_time: float
    resolved_time: float
    payment_hash: str = ""  # (CLN's forward_event carries it; with in_htlc_id it names the HTLC)
    in_htlc_id: int | None = None


NodeEvent = CustomMsg | PeerConnected | PeerDisconnected | Forward


# --- the network graph ----------------------------------------------------------------------


class GraphChannel(_Model):
    """One direction of a public channel as the node's gossip knows it (CLN `listchannels`):
    what `source` charges to forward to `destination` over it."""

    source: str
    destination: str
    scid: str
    capacity_sat: int = Field(ge=0)
    fee_base_msat: int = Field(ge=0)
    fee_ppm: int = Field(ge=0)
    active: bool
