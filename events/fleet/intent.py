"""The bodies of intent locks (DESIGN §7.3): before a member does something another member
might also do — open a channel to an external node, close or splice a channel, propose a
ban, a large rebalance through an outside peer — it announces an INTENT to every active
member, and acts only once the lock is committed.

An intent is named by the id of the INTENT frame that announced it (the frame is the proof:
anti-entropy hands it on verbatim).  The other frames refer to it:

- INTENT_ACK (to the owner): ok, conflict (naming the intent that blocks it, with that
  intent's owner and state, so the owner can apply the same rule), or refused with a code;
- INTENT_COMMIT (owner, to every member): the lock holds — the target is blocked fleet-wide;
- INTENT_ABORT (owner): the owner stands down (lost a race, refused, no answer in time);
- INTENT_DONE (owner): the action ran, ok or failed; the target is free again.

Only the owner of an intent may commit, abort or finish it (receivers check the signer).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from events.fleet.wire import Body, Text, Unix
from events.types import Hex32, NodeId

MIN_HOLD_S = 10
MAX_HOLD_S = 600
MAX_LIFE_S = 3_600  # an intent expires at most an hour after it is announced
MAX_AMOUNT_SAT = 21_000_000 * 100_000_000

Target = Annotated[
    str,
    StringConstraints(pattern=r"^(0[23][0-9a-f]{64}|[0-9]{1,8}x[0-9]{1,6}x[0-9]{1,5})$"),
]  # an external node (open, ban, rebalance through it) or a channel (close, splice)


class IntentKind(StrEnum):
    CHANNEL_OPEN = "channel_open"
    CHANNEL_CLOSE = "channel_close"
    SPLICE = "splice"
    BAN_PROPOSAL = "ban_proposal"
    REBALANCE_THROUGH = "rebalance_through"


class Verdict(StrEnum):
    OK = "ok"
    CONFLICT = "conflict"
    REFUSED = "refused"


KindName = Literal[
    "channel_open", "channel_close", "splice", "ban_proposal", "rebalance_through"
]  # (the wire takes the names: a strict body parses JSON strings, not enum members)
VerdictName = Literal["ok", "conflict", "refused"]


class Intent(Body):
    kind: KindName
    target: Target
    amount_sat: Annotated[int, Field(ge=0, le=MAX_AMOUNT_SAT)] = 0
    hold_s: Annotated[int, Field(ge=MIN_HOLD_S, le=MAX_HOLD_S)] = 60
    expires_at: Unix  # the lock ends here unless done before (owner's clock)


class Blocker(Body):
    """The intent that blocks another: the receiver of a conflict decides by it."""

    intent: Hex32
    owner: NodeId
    status: Literal["pending", "committed"]


class IntentAck(Body):
    intent: Hex32
    verdict: VerdictName
    code: Annotated[str, StringConstraints(pattern=r"^[A-Z_]{0,32}$")] = ""
    message: Text = ""
    blocker: Blocker | None = None


class IntentCommit(Body):
    intent: Hex32
    acks: Annotated[list[NodeId], Field(max_length=100)] = Field(default_factory=list)


class IntentAbort(Body):
    intent: Hex32
    reason: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")]
    message: Text = ""


class IntentDone(Body):
    intent: Hex32
    ok: bool
    detail: Text = ""
