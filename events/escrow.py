"""Cashu escrow tickets (rumor 4387) and node releases (rumor 4388).

A ticket is real Cashu ecash locked with NUT-14 HTLC secrets: `data` is the SHA-256 of a
32-byte preimage that only the node holds, `pubkeys` is the advisor's key (so the preimage
alone is not enough), `locktime` ends the escrow window and `refund` is the operator's key
(never a ticket without one: NUT-11 lets anyone spend after the locktime if `refund` is absent).
One preimage per release: a ticket has one or more parts, each with its own lock.

    single       one part, released by the receipt of one successful command
    batch        one part, released by the receipt of the N-th successful command
    milestone    several parts, part i released when `after_commands` commands succeeded
    performance  a base part released on completion, a bonus part released by the node after
                 the measurement window only if the metric met its target (a `Release`)

The preimage travels inside the node's signed receipt (`Receipt.preimage`) or, for a bonus,
inside a node-signed `Release`.  Lock keys are Nostr x-only keys with the `02` prefix.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any, Literal

import nostr_sdk as sdk
from pydantic import Field, StringConstraints, model_validator

from events.canonical import content_hash
from events.crypto import schnorr_verify, sign_hash
from events.errors import BadSignature, InvalidPayload, TicketInvalid
from events.family import JsonFamily, Payload
from events.kinds import Kind
from events.types import Hex32, Hex64, Hex128, NodeId, SchemaPattern

KeysetId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$|^[0-9a-f]{66}$")]

HOUR = 3600
REDEMPTION_BUFFER_S = HOUR
# UPSTREAM 03: (danger: price band in sat, escrow window)
BANDS: dict[int, tuple[int, int, int]] = {
    1: (0, 5, HOUR),
    2: (0, 5, HOUR),
    3: (5, 15, 2 * HOUR),
    4: (15, 25, 6 * HOUR),
    5: (25, 50, 6 * HOUR),
    6: (50, 100, 24 * HOUR),
    7: (100, 250, 24 * HOUR),
    8: (250, 500, 72 * HOUR),
    9: (500, 750, 72 * HOUR),
    10: (750, 1000, 96 * HOUR),
}


def lock_key(xonly: str) -> str:
    """A Nostr x-only key as a Cashu lock key (compressed, even y)."""
    return "02" + xonly


def window_s(danger: int) -> int:
    """Escrow window for a command of this danger, plus the redemption buffer."""
    return BANDS[max(1, min(10, danger))][2] + REDEMPTION_BUFFER_S


def price_band(danger: int) -> tuple[int, int]:
    low, high, _ = BANDS[max(1, min(10, danger))]
    return low, high


def fee_of(ppks: Iterable[int]) -> int:
    """NUT-02: a mint's fee, in sat, for spending proofs whose keysets charge `ppks` (each a
    keyset's `input_fee_ppk`, thousandths of a sat per proof): their sum, rounded up."""
    return (sum(ppks) + 999) // 1000


def lock_hash(preimage: bytes) -> str:
    return hashlib.sha256(preimage).hexdigest()


class TicketType(StrEnum):
    SINGLE = "single"
    BATCH = "batch"
    MILESTONE = "milestone"
    PERFORMANCE = "performance"


class PartRole(StrEnum):
    RELEASE = "release"
    MILESTONE = "milestone"
    BASE = "base"
    BONUS = "bonus"


class Dleq(Payload):
    """NUT-12: the mint's proof (e, s) that it signed with its keyset's key, and the minting
    wallet's blinding factor r, so that anyone can check the signature (events.dleq)."""

    e: Hex64
    s: Hex64
    r: Hex64


class CashuProof(Payload):
    """A Cashu proof as the mint signed it (NUT-00); `amount` in the ticket's unit.  A
    ticket's proofs carry their DLEQ (NUT-12): without it the payee cannot tell real ecash
    from made-up proofs until it redeems, after the work is done."""

    id: KeysetId
    amount: int = Field(gt=0, le=2**40)
    secret: str = Field(min_length=1, max_length=2048)
    C: NodeId
    dleq: Dleq | None = None


class Part(Payload):
    index: int = Field(ge=0, le=15)
    role: PartRole
    amount_sat: int = Field(gt=0, le=10**9)
    lock_hash: Hex64
    locktime: int = Field(gt=0)
    after_commands: int = Field(1, ge=1, le=10_000)
    proofs: list[CashuProof] = Field(min_length=1, max_length=64)


class Metric(Payload):
    """What a performance bonus measures on the node, over `window_s` after the command."""

    kind: Literal["forward_fees_msat"] = "forward_fees_msat"
    channel: str | None = Field(None, pattern=r"^[0-9]{1,10}x[0-9]{1,10}x[0-9]{1,5}$")
    target: int = Field(ge=0)
    window_s: int = Field(ge=1, le=30 * 86400)


class Terms(Payload):
    schema_pattern: SchemaPattern
    params_hash: Hex64 | None = None  # bound to one command's parameters, if set
    max_danger: int = Field(ge=1, le=10)
    commands: int = Field(1, ge=1, le=10_000)
    metric: Metric | None = None
    deadline: int = Field(gt=0)

    def covers(self, schema: str) -> bool:
        if self.schema_pattern.endswith("/*"):
            return schema.startswith(self.schema_pattern[:-1])
        return schema == self.schema_pattern


class Ticket(Payload):
    ticket_id: Hex32
    type: TicketType
    mint: str = Field(pattern=r"^https?://[^\s]{1,200}$")
    unit: Literal["sat"] = "sat"
    node: Hex64
    advisor: Hex64
    credential_id: Hex32
    refund_pubkey: Hex64
    terms: Terms
    parts: list[Part] = Field(min_length=1, max_length=16)
    created_at: int = Field(ge=0)

    @property
    def amount_sat(self) -> int:
        return sum(p.amount_sat for p in self.parts)

    @model_validator(mode="after")
    def _shape(self) -> Ticket:
        roles = [p.role for p in self.parts]
        n = self.terms.commands
        if [p.index for p in self.parts] != list(range(len(self.parts))):
            raise ValueError("parts are numbered 0, 1, 2, …")
        if len({p.lock_hash for p in self.parts}) != len(self.parts):
            raise ValueError("every part has its own lock (one preimage per release)")
        if self.type in (TicketType.SINGLE, TicketType.BATCH):
            if roles != [PartRole.RELEASE] or self.parts[0].after_commands != n:
                raise ValueError(f"a {self.type.value} ticket is one part released after {n}")
            if self.type == TicketType.SINGLE and n != 1:
                raise ValueError("a single ticket pays for one command")
        elif self.type == TicketType.MILESTONE:
            after = [p.after_commands for p in self.parts]
            if len(self.parts) < 2 or set(roles) != {PartRole.MILESTONE}:
                raise ValueError("a milestone ticket has two or more milestone parts")
            if after != sorted(set(after)) or after[-1] != n:
                raise ValueError("milestones rise strictly and the last one is the whole batch")
        else:
            if roles != [PartRole.BASE, PartRole.BONUS] or self.terms.metric is None:
                raise ValueError("a performance ticket is a base part, a bonus part and a metric")
        return self


def _htlc(secret: str) -> tuple[str, dict[str, list[str]]]:
    try:
        kind, body = json.loads(secret)
        tags: dict[str, list[str]] = {}
        for tag in body["tags"]:
            if not (
                isinstance(tag, list) and len(tag) >= 2 and all(isinstance(t, str) for t in tag)
            ):
                raise ValueError("bad tag")
            if tag[0] in tags:
                raise TicketInvalid(f"the secret repeats the {tag[0]!r} tag (unspendable)")
            tags[tag[0]] = tag[1:]
        if kind != "HTLC" or not isinstance(body.get("nonce"), str):
            raise ValueError("not an HTLC secret")
        return str(body["data"]), tags
    except TicketInvalid:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise TicketInvalid(f"a proof's secret is not a NUT-14 HTLC secret ({exc})") from None


def check_locks(ticket: Ticket) -> None:
    """Every proof of every part is locked as the part says: HTLC on the part's hash, the
    advisor's key, the part's locktime, the operator's refund key, default SIG_INPUTS; and
    carries the DLEQ proof its payee checks at the mint (agent/escrow/checks.py).

    Raises TicketInvalid naming the first difference.
    """
    secrets = [p.secret for part in ticket.parts for p in part.proofs]
    if len(set(secrets)) != len(secrets):
        raise TicketInvalid("the same proof appears twice in the ticket (it pays once)")
    for part in ticket.parts:
        if sum(p.amount for p in part.proofs) != part.amount_sat:
            raise TicketInvalid(f"part {part.index}'s proofs do not add up to its amount")
        for proof in part.proofs:
            if proof.dleq is None:
                raise TicketInvalid(
                    f"part {part.index} has a proof without its DLEQ proof (NUT-12): the mint's "
                    "signature could not be checked before redemption"
                )
            data, tags = _htlc(proof.secret)
            expected = {
                "hash lock": (data, part.lock_hash),
                "advisor key": (tags.get("pubkeys"), [lock_key(ticket.advisor)]),
                "locktime": (tags.get("locktime"), [str(part.locktime)]),
                "refund key": (tags.get("refund"), [lock_key(ticket.refund_pubkey)]),
            }
            for what, (got, want) in expected.items():
                if got != want:
                    raise TicketInvalid(f"part {part.index}: the {what} is {got!r}, not {want!r}")
            if tags.get("sigflag", ["SIG_INPUTS"]) != ["SIG_INPUTS"]:
                raise TicketInvalid("only SIG_INPUTS locks are accepted (Nutshell #1100)")
            if tags.get("n_sigs", ["1"]) != ["1"] or "n_sigs_refund" in tags:
                raise TicketInvalid("multi-signature locks are not part of a ticket")


class Release(Payload):
    """The node reveals a part's preimage outside a receipt (a performance bonus)."""

    ticket_id: Hex32
    part_index: int = Field(ge=0, le=15)
    lock_hash: Hex64
    preimage: Hex64
    reason: str = Field(max_length=300)
    measured: int | None = None
    node: Hex64
    created_at: int = Field(ge=0)
    signature: Hex128

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"signature"})


def sign_release(keys: sdk.Keys, body: dict[str, Any]) -> Release:
    digest = content_hash(body)
    return Release(**body, signature=sign_hash(keys, bytes.fromhex(digest)))


def verify_release(release: Release) -> None:
    """Raise InvalidPayload if the preimage does not open the lock, BadSignature if the node
    did not sign the release."""
    if lock_hash(bytes.fromhex(release.preimage)) != release.lock_hash:
        raise InvalidPayload("the preimage does not open the part's lock")
    digest = content_hash(release.body())
    if not schnorr_verify(
        bytes.fromhex(release.node), bytes.fromhex(digest), bytes.fromhex(release.signature)
    ):
        raise BadSignature("the release is not signed by the node it names")


TICKET = JsonFamily(Kind.ESCROW_TICKET, Ticket, alt="Lightning Hive escrow ticket")
RELEASE = JsonFamily(Kind.ESCROW_RELEASE, Release, alt="Lightning Hive escrow release")
