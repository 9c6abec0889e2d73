"""Intent locks, the pure core (no store, clock or node imports): the conflict rule, the states
and their legal moves, how a member answers an intent, how an owner reads the answers, and when
its lock commits.  The component (agent/fleet/intents.py) persists what this decides; the race
tests drive this same core through thousands of races on a lossy, reordering network.

**The conflict rule.**  Two live intents of the same kind on the same target conflict.  A
committed intent beats a pending one; between two pending ones the lower
SHA-256(kind ‖ target ‖ owner node id) wins — every member computes it alike, and since the
target is in the hash, which member wins changes from target to target (upstream's "lowest
key wins" made one member win every race).  The loser aborts and says so.

**Answering (every member).**  An incoming intent that some live intent we know beats is
answered `conflict`, naming the strongest such intent (its owner and state, so the owner can
apply the rule itself).  Otherwise it is answered `ok`, and our own pending intents it beats
are aborted: we stand down.  An `ok` speaks only for the member that gives it; owners of other
pending intents answer for themselves.

**Committing (the owner).**  An intent commits as soon as every member it waits for (the
active members when it was announced) has answered `ok` — one round trip — or a conflict it
wins.  When the hold ends, members it cannot reach (not connected) count as consenting: a
partitioned member cannot be asked.  A member that is connected but silent is waited for until
the intent expires, when it is aborted: silence from a member that could answer is never
consent, so lost messages delay a lock but never let two members take it.  `strict` mode waits
for every member and aborts when the hold ends without all of them.

Safety, in one line: two owners of conflicting intents can only both commit if each received
the other's `ok`; a member answers `ok` only when it holds no live intent that beats the
incoming one, and from then on that incoming intent blocks its own — so one of them always
hears the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from events.crypto import sha256
from events.errors import InvalidTransition
from events.fleet.intent import Blocker, IntentAck

HOLD_S = 60
EXPIRY_S = 300
MODES = ("default", "strict")


class Status(StrEnum):
    PENDING = "pending"
    COMMITTED = "committed"
    ABORTED = "aborted"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"


# a finished open keeps its target for the rest of its life: a racer whose messages were
# delayed past the open does not open a second channel (a failed one frees the target)
LIVE = frozenset({Status.PENDING, Status.COMMITTED, Status.DONE})
HELD = frozenset({Status.COMMITTED, Status.DONE})
MOVES: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.COMMITTED, Status.ABORTED, Status.EXPIRED}),
    Status.COMMITTED: frozenset({Status.DONE, Status.FAILED, Status.EXPIRED}),
    # an outcome learnt after the lock lapsed is still recorded
    Status.EXPIRED: frozenset({Status.DONE, Status.FAILED}),
    Status.ABORTED: frozenset(),
    Status.DONE: frozenset(),
    Status.FAILED: frozenset(),
}


@dataclass(frozen=True)
class Lock:
    """One intent as a member knows it (its own, or another member's)."""

    id: str
    owner: str
    kind: str
    target: str
    amount_sat: int
    hold_s: int
    created: int
    expires_at: int
    status: Status = Status.PENDING
    mine: bool = False
    waiting: frozenset[str] = frozenset()  # (own) members whose answer it waits for
    acks: dict[str, str] = field(default_factory=dict)  # (own) member → ok/conflict/refused
    reason: str = ""

    def live(self, now: int) -> bool:
        return self.status in LIVE and now < self.expires_at

    def same_lock(self, other: Lock) -> bool:
        return (self.kind, self.target) == (other.kind, other.target)


def rank(kind: str, target: str, owner: str) -> bytes:
    """The rule's key: lower wins among pending intents."""
    return sha256(f"{kind}\x00{target}\x00{owner}".encode())


def beats(a: Lock, b: Lock) -> bool:
    """True if `a` takes precedence over `b` (same kind and target)."""
    a_held, b_held = a.status in HELD, b.status in HELD
    if a_held != b_held:
        return a_held
    ka, kb = rank(a.kind, a.target, a.owner), rank(b.kind, b.target, b.owner)
    return (ka, a.created, a.id) < (kb, b.created, b.id)


def move(lock: Lock, to: Status, reason: str = "") -> Lock:
    """`lock` in state `to`, or InvalidTransition."""
    if to not in MOVES[lock.status]:
        raise InvalidTransition(f"intent {lock.id[:8]} cannot go from {lock.status} to {to}")
    return replace(lock, status=to, reason=reason or lock.reason)


def blockers(lock: Lock, known: Iterable[Lock], now: int) -> list[Lock]:
    """Live intents on the same kind and target as `lock`, strongest first."""
    found = [k for k in known if k.id != lock.id and k.same_lock(lock) and k.live(now)]
    ordered: list[Lock] = []
    for k in found:  # (few: an insertion sort by precedence keeps `beats` the only order)
        i = 0
        while i < len(ordered) and beats(ordered[i], k):
            i += 1
        ordered.insert(i, k)
    return ordered


@dataclass(frozen=True)
class Answer:
    ack: IntentAck
    stand_down: list[Lock]  # our own pending intents the incoming one beats: abort them


def answer(incoming: Lock, known: Iterable[Lock], me: str, now: int) -> Answer:
    """How a member answers `incoming` (another member's pending intent)."""
    live = blockers(incoming, known, now)
    stronger = [k for k in live if beats(k, incoming)]
    if stronger:
        top = stronger[0]
        status = "committed" if top.status in HELD else "pending"
        ack = IntentAck(
            intent=incoming.id,
            verdict="conflict",
            blocker=Blocker(intent=top.id, owner=top.owner, status=status),
            message=f"{top.kind} to {top.target[:12]}… is {status} by {top.owner[:12]}…",
        )
        return Answer(ack, [])
    mine = [k for k in live if k.mine and k.owner == me and k.status == Status.PENDING]
    return Answer(IntentAck(intent=incoming.id, verdict="ok"), mine)


def yield_to(held: Lock, known: Iterable[Lock], me: str) -> list[Lock]:
    """Our own pending intents that a lock committed elsewhere beats: abort them."""
    return [
        k for k in known
        if k.mine and k.owner == me and k.status == Status.PENDING and k.same_lock(held)
        and k.id != held.id
    ]  # fmt: skip


def read_answer(lock: Lock, member: str, ack: IntentAck) -> Lock:
    """The owner's view after `member` answered: acks updated, or aborted (lost, refused)."""
    if lock.status != Status.PENDING:
        return lock
    acks = dict(lock.acks)
    if ack.verdict == "ok":
        acks[member] = "ok"
        return replace(lock, acks=acks)
    if ack.verdict == "refused":
        acks[member] = f"refused:{ack.code or 'REFUSED'}"
        return move(replace(lock, acks=acks), Status.ABORTED, "refused")
    b = ack.blocker
    acks[member] = "conflict"
    if b is None or b.intent == lock.id:
        return replace(lock, acks=acks)  # (names nothing, or us: nothing to lose to)
    other = Lock(
        b.intent, b.owner, lock.kind, lock.target, 0, 0, 0, lock.expires_at,
        Status.COMMITTED if b.status == "committed" else Status.PENDING,
    )  # fmt: skip
    if beats(other, lock):
        reason = "conflict_committed" if other.status == Status.COMMITTED else "tie_breaker_loss"
        return move(replace(lock, acks=acks), Status.ABORTED, reason)
    acks[member] = "ok"  # we win the rule: the other owner stands down
    return replace(lock, acks=acks)


def refused(lock: Lock, member: str, code: str) -> Lock:
    """`member` refused the INTENT frame itself (not a member, banned target, …)."""
    return read_answer(lock, member, IntentAck(intent=lock.id, verdict="refused", code=code))


def missing(lock: Lock) -> set[str]:
    return {m for m in lock.waiting if lock.acks.get(m) != "ok"}


def due(lock: Lock, now: int, reachable: set[str], mode: str = "default") -> Status | None:
    """What an own pending intent should do now: COMMITTED, ABORTED, or None (wait)."""
    if lock.status != Status.PENDING:
        return None
    if now >= lock.expires_at:
        return Status.ABORTED
    silent = missing(lock)
    if not silent:
        return Status.COMMITTED
    if now < lock.created + lock.hold_s:
        return None
    if mode == "strict":
        return Status.ABORTED
    if not silent & reachable:
        return Status.COMMITTED  # only members we cannot reach are silent
    return None
