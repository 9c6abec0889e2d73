"""What the fleet kernel (agent/fleet/kernel.py) and its components share: the options, the
effects a handled frame asks for, the `Standing` port and the `FleetComponent` base."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from agent.store.db import Db, Tx
from events import fleet as wire
from events.errors import HiveError, InvalidPayload, NotFound, NotMember, Restricted
from events.fleet import Message, MsgType

if TYPE_CHECKING:
    from agent.fleet.kernel import FleetKernel
    from agent.fleet.settlement_rules import MemberInput
    from agent.node.models import Forward


@dataclass(frozen=True)
class FleetConfig:
    challenge_ttl_s: int = 300
    hello_interval_s: int = 10  # one HELLO per peer per 10 s
    max_pending_challenges: int = 1000
    retry_base_s: float = 30.0  # outbox: base·2ⁿ + up to 25 % jitter, capped
    retry_cap_s: float = 3600.0
    max_attempts: int = 20
    outbox_ttl_s: int = 86_400
    in_flight: int = 10  # frames sent to one peer per round
    max_age_s: int = 86_400 + 3_600  # a queued message may wait a day for its peer
    future_skew_s: int = 300
    refusal_burst: int = 300  # a peer refused this many times in a row (refilled at
    refusals_per_minute: int = 600  # this rate) is muted: its frames dropped unread for
    mute_s: int = 60  # this long (agent/ratelimit.py Strikes)
    ban_ttl_s: int = 7 * 86_400
    max_ticket_hours: int = 168
    handshake_retry_s: float = 30.0  # a HELLO or ATTEST unanswered this long is sent again
    handshake_tries: int = 6
    features: tuple[str, ...] = ("anchor", "onion")
    gossip_threshold_pct: int = 10  # a state record is sent when a total moves this much (1–50)
    heartbeat_s: int = 300  # … or when this long has passed (60–3600)
    gossip_gap_s: int = 10  # at most one record of an owner per peer this often
    sync_interval_s: int = 300  # a digest to one connected member this often (± 20 %)
    sync_gap_s: int = 10  # at most one digest per member this often
    sync_session_s: int = 60  # a reconciliation not over by then is dropped
    sync_join_grace_s: int = 3  # a new member's first digests wait for the news of its arrival
    intent_hold_s: int = 60  # an intent commits at the latest when this has passed (10–600)
    intent_expiry_s: int = 300  # … and its lock lapses this long after it was announced
    intent_mode: str = "default"  # or "strict": every active member must answer ok
    planner_interval_s: int = 3_600  # the fleet plan is computed this often (0: never by itself)
    bridge_interval_s: int = 60  # zero-fee routing among members is checked this often
    market_share_cap_pct: int = 20  # the planner keeps the fleet's share of a node within this
    member_fee_zero: int = 1  # 1: members route to each other at zero fee (0: left alone)
    settlement_grace_s: int = 3_600  # a week is proposed this long after it ended (reports
    # arrive meanwhile); the next proposer in rank waits one grace more
    settlement_rebroadcast_s: int = 14_400  # PROPOSE/READY sent again until executed
    settlement_check_s: int = 30  # the proposer's and the votes' checks run this often
    settlement_retry_s: float = 60.0  # a failed payment is retried: base·2ⁿ, capped
    settlement_retry_cap_s: float = 3_600.0


def short(node_id: str) -> str:
    return node_id[:12] + "…"


@dataclass
class Effects:
    """What a handled frame asks for once its transaction has committed."""

    direct: list[tuple[str, bytes]] = field(default_factory=list)  # sent now, not queued
    flush: set[str] = field(default_factory=set)  # peers whose outbox has something new
    # in-memory decisions made only once committed (a rolled-back frame changes nothing):
    # each returns more (peer, frame) to send now
    then: list[Callable[[], list[tuple[str, bytes]]]] = field(default_factory=list)


class Standing(Protocol):
    """Who may talk to us at all: the membership component answers for the kernel."""

    def check_peer(self, store: Db, peer: str) -> None:
        """Raise (Banned) if nothing from `peer` is to be handled."""

    def check_frame(self, tx: Tx, msg: Message) -> None:
        """Raise (NotMember) if `msg` is not for the hive we are in."""

    def check_relayer(self, tx: Tx, peer: str) -> None:
        """Raise (NotMember) if `peer` may not hand on another member's frames."""


class Presence(Protocol):
    """Who was heard from lately: the gossip component answers for the kernel (quorums and
    intents count active members only; no component reads another's tables)."""

    def active(self, store: Db, now: int) -> set[str]:
        """Members seen within 24 h."""

    def uptime(self, store: Db, now: int) -> dict[str, float | None]:
        """Each member's uptime % over 30 days as this node saw it (None: nothing seen)."""


class Ledger(Protocol):
    """What each member reported it earned, spent and carried in a settlement period, as this
    member holds it: the contribution component answers for the kernel (the settlement reads
    its inputs here; no component reads another's tables)."""

    def inputs(self, store: Db, period: str) -> dict[str, MemberInput]:
        """Every member's signed report for `period` that this member holds (its own
        included), as settlement inputs, by node id."""

    def disputes(self, store: Db, period: str) -> list[dict[str, Any]]:
        """Reports for `period` that disagree with what this node observed on the channels it
        shares with their author: {node, code, field, reported, observed, reason}."""


class Treatment(Protocol):
    """Which members are denied the zero-fee treatment on our channels (anti-leech): the
    contribution component answers, the bridge (agent/fleet/planning.py) leaves them out of
    the member set it zeroes fees for — the same mechanism as a member that left."""

    def withheld(self, store: Db) -> set[str]:
        """Members whose contribution ratio kept below the threshold long enough."""


class FleetComponent:
    """One fleet protocol: the frame types it owns and what they do.  Subclasses override
    what they need; the kernel calls nothing else."""

    owns: frozenset[MsgType] = frozenset()
    admits_strangers = False  # frames a node outside our hive may send (the join handshake)
    # frame types that prove facts (agent/fleet/facts.py): any member may hand them on, as
    # signed by their author, and they are handled by `apply_fact`
    facts: frozenset[MsgType] = frozenset()
    # frame types sent directly and never retried (a newer one supersedes, anti-entropy
    # repairs a lost one): not acknowledged when handled, committed without an fsync
    unacked: frozenset[MsgType] = frozenset()
    # frame types handled in a commit without an fsync: it survives a killed process, and its
    # loss on a power failure only delays (an answer waited for again, a lock held to expiry)
    light: frozenset[MsgType] = frozenset()
    # frame types sent point to point in the compact unsigned envelope (events/fleet/compact.py):
    # never facts, never handed on, nothing in them proven to a third party; the sender is the
    # BOLT 8 authenticated peer they came from (a signed copy is accepted too)
    session: frozenset[MsgType] = frozenset()
    kernel: FleetKernel

    def bind(self, kernel: FleetKernel) -> None:
        self.kernel = kernel

    async def prepare(self, peer: str, msg: Message) -> Any:
        """Node reads a frame needs, outside the lock and the transaction (default: none)."""
        return None

    def apply(self, tx: Tx, peer: str, msg: Message, prepared: Any, fx: Effects) -> None:
        """A frame's effects, in its transaction; raise a HiveError to refuse it."""
        raise InvalidPayload(f"{msg.type.name} is not expected here")

    def apply_fact(self, tx: Tx, relayer: str, msg: Message, fx: Effects) -> None:
        """A fact's frame handed on by `relayer` (anti-entropy), not by its author: by
        default judged exactly as if its author had sent it now."""
        self.apply(tx, msg.node, msg, None, fx)

    def on_ack(self, tx: Tx, peer: str, ack: wire.MsgAck) -> None:
        """A peer acknowledged (or refused) a frame we sent it."""

    def heard(self, tx: Tx, peer: str) -> None:
        """`peer` sent a frame that passed intake and was handled (any type, any owner), in
        that frame's transaction: presence."""

    @staticmethod
    def retry_later(err: HiveError) -> bool:
        """True if a refusal of one of its frames should tell the sender to try again later
        (it may know more than we do yet: a join, a promotion, a proposal on its way)."""
        return isinstance(err, NotMember | NotFound | Restricted)

    def on_refused(self, peer: str, msg: Message, err: HiveError) -> None:
        """A frame of a type this component owns was refused (after its transaction rolled
        back, if it had one): e.g. counted by the component."""

    async def prepare_forward(self, fwd: Forward) -> Any:
        """Node reads a forward needs (its channels' peers), outside any transaction."""
        return None

    def forwarded(self, tx: Tx, fwd: Forward, prepared: Any) -> None:
        """One of the node's forwards (any status), in its own transaction."""

    def housekeeping(self, tx: Tx, now: int) -> None:
        """Periodic expiry of the component's own rows (in the kernel's maintenance commit)."""

    async def tick(self) -> None:
        """Periodic work outside any transaction (after the outbox was flushed)."""
