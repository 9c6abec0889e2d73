"""events/escrow.py: ticket and release codecs (hypothesis round trips), the lock checks a
ticket must pass before an advisor keeps it, ticket shapes per type, and the UPSTREAM bands."""

from __future__ import annotations

import json
import secrets

import nostr_sdk as sdk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from events import escrow
from events.errors import BadSignature, InvalidPayload, TicketInvalid
from events.escrow import (
    RELEASE,
    TICKET,
    CashuProof,
    Dleq,
    Metric,
    Part,
    PartRole,
    Terms,
    Ticket,
    TicketType,
)

NOW = 1_800_000_000
ADVISOR, OPERATOR = "a" * 64, "b" * 64


def secret(data: str, tags: list[list[str]]) -> str:
    return json.dumps(["HTLC", {"nonce": secrets.token_hex(16), "data": data, "tags": tags}])


def good_tags(locktime: int) -> list[list[str]]:
    return [["pubkeys", "02" + ADVISOR], ["locktime", str(locktime)], ["refund", "02" + OPERATOR]]


def part(index: int = 0, amounts: tuple[int, ...] = (32, 8), tags=None, **kw) -> Part:
    digest = kw.pop("lock_hash", secrets.token_hex(32))
    locktime = kw.pop("locktime", NOW + 3600)
    proofs = [
        CashuProof(
            id="00ffd48b8f5ecf80",
            amount=a,
            secret=secret(digest, tags if tags is not None else good_tags(locktime)),
            C="02" + secrets.token_hex(32),
            dleq=Dleq(e=secrets.token_hex(32), s=secrets.token_hex(32), r=secrets.token_hex(32)),
        )
        for a in amounts
    ]
    return Part(
        index=index,
        role=kw.pop("role", PartRole.RELEASE),
        amount_sat=sum(amounts),
        lock_hash=digest,
        locktime=locktime,
        proofs=proofs,
        **kw,
    )


def ticket(parts: list[Part], kind: TicketType = TicketType.SINGLE, **terms) -> Ticket:
    return Ticket(
        ticket_id=secrets.token_hex(16),
        type=kind,
        mint="http://127.0.0.1:3338",
        node=OPERATOR,
        advisor=ADVISOR,
        credential_id="c" * 32,
        refund_pubkey=OPERATOR,
        terms=Terms(
            schema_pattern="hive:fee-policy/*", max_danger=5, deadline=NOW + 86400, **terms
        ),
        parts=parts,
        created_at=NOW,
    )


@settings(max_examples=60)
@given(
    amounts=st.lists(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 1024]), min_size=1, max_size=32),
    locktime=st.integers(min_value=NOW + 1, max_value=NOW + 10**8),
)
def test_ticket_round_trip_through_a_rumor(amounts: list[int], locktime: int) -> None:
    original = ticket([part(amounts=tuple(amounts), locktime=locktime)])
    rumor = TICKET.rumor(OPERATOR, original, created_at=NOW)
    parsed = TICKET.parse(rumor, now=NOW).payload
    assert parsed == original and parsed.amount_sat == sum(amounts)
    escrow.check_locks(parsed)


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ([["pubkeys", "02" + "c" * 64], ["locktime", str(NOW + 3600)], ["refund", "02" + OPERATOR]], "advisor key"),
        ([["pubkeys", "02" + ADVISOR], ["locktime", str(NOW + 3600)]], "refund key"),
        ([["pubkeys", "02" + ADVISOR], ["locktime", str(NOW + 1)], ["refund", "02" + OPERATOR]], "locktime"),
        ([*good_tags(NOW + 3600), ["sigflag", "SIG_ALL"]], "SIG_INPUTS"),
        ([*good_tags(NOW + 3600), ["n_sigs", "2"]], "multi-signature"),
        ([*good_tags(NOW + 3600), ["refund", "02" + OPERATOR]], "repeats"),
    ],
    ids=["other payee", "no refund key", "other locktime", "SIG_ALL", "2 signatures", "repeated tag"],
)  # fmt: skip
def test_locks_must_match_the_ticket(tags: list[list[str]], message: str) -> None:
    with pytest.raises(TicketInvalid, match=message):
        escrow.check_locks(ticket([part(tags=tags)]))


def test_other_lock_faults() -> None:
    bad_hash = part()
    wrong = bad_hash.model_copy(update={"lock_hash": "f" * 64})
    with pytest.raises(TicketInvalid, match="hash lock"):
        escrow.check_locks(ticket([wrong]))
    short = part().model_copy(update={"amount_sat": 41})
    with pytest.raises(TicketInvalid, match="add up"):
        escrow.check_locks(ticket([short]))
    p2pk = part()
    proofs = [
        p.model_copy(update={"secret": p.secret.replace('"HTLC"', '"P2PK"')}) for p in p2pk.proofs
    ]
    with pytest.raises(TicketInvalid, match="not a NUT-14 HTLC"):
        escrow.check_locks(ticket([p2pk.model_copy(update={"proofs": proofs})]))
    bare = part()  # a proof its payee could not check at the mint before redeeming it
    proofs = [bare.proofs[0].model_copy(update={"dleq": None}), *bare.proofs[1:]]
    with pytest.raises(TicketInvalid, match="without its DLEQ proof"):
        escrow.check_locks(ticket([bare.model_copy(update={"proofs": proofs})]))
    twice = part(amounts=(8,), role=PartRole.MILESTONE)  # the same proof in two parts
    other = part(1, amounts=(8,), role=PartRole.MILESTONE, after_commands=2)
    other = other.model_copy(update={"proofs": twice.proofs})
    with pytest.raises(TicketInvalid, match="appears twice"):
        escrow.check_locks(ticket([twice, other], TicketType.MILESTONE, commands=2))


def test_shapes_per_type() -> None:
    ticket([part()], TicketType.SINGLE)
    ticket([part(after_commands=3)], TicketType.BATCH, commands=3)
    ticket(
        [part(i, role=PartRole.MILESTONE, after_commands=a) for i, a in enumerate((1, 2, 4))],
        TicketType.MILESTONE,
        commands=4,
    )
    metric = Metric(target=10, window_s=60)
    ticket(
        [part(0, role=PartRole.BASE), part(1, role=PartRole.BONUS)],
        TicketType.PERFORMANCE,
        metric=metric,
    )
    for bad in (
        lambda: ticket([part(), part(1)], TicketType.SINGLE),
        lambda: ticket([part(after_commands=2)], TicketType.BATCH, commands=3),
        lambda: ticket([part(0, role=PartRole.MILESTONE, after_commands=2), part(1, role=PartRole.MILESTONE, after_commands=1)], TicketType.MILESTONE, commands=1),
        lambda: ticket([part(0, role=PartRole.BASE), part(1, role=PartRole.BONUS)], TicketType.PERFORMANCE),
        lambda: ticket([part(0, lock_hash="e" * 64), part(1, lock_hash="e" * 64, role=PartRole.MILESTONE)], TicketType.MILESTONE),
    ):  # fmt: skip
        with pytest.raises(ValidationError):
            bad()


def test_release_is_signed_and_opens_its_lock() -> None:
    keys = sdk.Keys.generate()
    preimage = secrets.token_bytes(32)
    body = {
        "ticket_id": "d" * 32,
        "part_index": 1,
        "lock_hash": escrow.lock_hash(preimage),
        "preimage": preimage.hex(),
        "reason": "forward_fees_msat 12 ≥ 10",
        "measured": 12,
        "node": keys.public_key().to_hex(),
        "created_at": NOW,
    }
    release = escrow.sign_release(keys, body)
    parsed = RELEASE.parse(RELEASE.rumor(body["node"], release, created_at=NOW), now=NOW).payload
    escrow.verify_release(parsed)
    with pytest.raises(InvalidPayload):
        escrow.verify_release(parsed.model_copy(update={"preimage": "0" * 64}))
    with pytest.raises(BadSignature):
        escrow.verify_release(parsed.model_copy(update={"measured": 13}))


def test_bands_follow_upstream() -> None:
    assert escrow.price_band(3) == (5, 15) and escrow.price_band(10) == (750, 1000)
    assert escrow.window_s(1) == 2 * 3600  # 1 h window + 1 h redemption buffer
    assert escrow.window_s(8) == 73 * 3600 and escrow.window_s(10) == 97 * 3600
    assert escrow.lock_key(ADVISOR) == "02" + ADVISOR
