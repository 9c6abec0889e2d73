"""Which body each message type carries (each type has one model)."""

from __future__ import annotations

from events.fleet.ack import MsgAck
from events.fleet.contribution import ContributionReport, LeechNotice
from events.fleet.gossip import Gossip
from events.fleet.intent import Intent, IntentAbort, IntentAck, IntentCommit, IntentDone
from events.fleet.membership import (
    Attest,
    Ban,
    BanProposal,
    BanVote,
    Challenge,
    Hello,
    MemberJoined,
    MemberLeft,
    Promotion,
    Vouch,
    Welcome,
)
from events.fleet.settlement import (
    SettlementExecuted,
    SettlementInvoice,
    SettlementInvoiceRequest,
    SettlementPropose,
    SettlementReady,
)
from events.fleet.sync import StateHash, Sync
from events.fleet.wire import Body, MsgType

BODIES: dict[MsgType, type[Body]] = {
    MsgType.HELLO: Hello,
    MsgType.CHALLENGE: Challenge,
    MsgType.ATTEST: Attest,
    MsgType.WELCOME: Welcome,
    MsgType.GOSSIP: Gossip,
    MsgType.STATE_HASH: StateHash,
    MsgType.SYNC: Sync,
    MsgType.VOUCH: Vouch,
    MsgType.BAN: Ban,
    MsgType.PROMOTION: Promotion,
    MsgType.MEMBER_LEFT: MemberLeft,
    MsgType.BAN_PROPOSAL: BanProposal,
    MsgType.BAN_VOTE: BanVote,
    MsgType.MSG_ACK: MsgAck,
    MsgType.MEMBER_JOINED: MemberJoined,
    MsgType.INTENT: Intent,
    MsgType.INTENT_ACK: IntentAck,
    MsgType.INTENT_ABORT: IntentAbort,
    MsgType.INTENT_COMMIT: IntentCommit,
    MsgType.INTENT_DONE: IntentDone,
    MsgType.SETTLEMENT_PROPOSE: SettlementPropose,
    MsgType.SETTLEMENT_READY: SettlementReady,
    MsgType.SETTLEMENT_EXECUTED: SettlementExecuted,
    MsgType.SETTLEMENT_INVOICE_REQUEST: SettlementInvoiceRequest,
    MsgType.SETTLEMENT_INVOICE: SettlementInvoice,
    MsgType.CONTRIBUTION_REPORT: ContributionReport,
    MsgType.LEECH_NOTICE: LeechNotice,
}
