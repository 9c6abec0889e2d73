"""Negentropy (range-based set reconciliation, NIP-77's wire format): both sides learn exactly
what the other lacks, whatever the sets; cost follows the differences; junk is a typed error."""

from __future__ import annotations

import hashlib
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.errors import InvalidPayload
from events.negentropy import (
    INFINITY,
    SKIP,
    VERSION,
    Negentropy,
    Storage,
    _Reader,
    encode_varint,
    fingerprint,
)


def reconcile(a_items, b_items, limit: int = 0) -> tuple[set, set, int, int]:
    a = Negentropy(Storage(a_items), frame_limit=limit)
    b = Negentropy(Storage(b_items), frame_limit=limit)
    message: bytes | None = a.initiate()
    rounds, size = 0, 0
    # capped frames: a round moves at most `limit` bytes each way, and with differences spread
    # over the whole set every id may have to be listed (the example hypothesis found: 8,802
    # and 8,811 items, 4,096-byte frames, 100 rounds for 592 KB)
    most = max(100, 4 * 32 * (len(a_items) + len(b_items)) // limit) if limit else 100
    while message is not None:
        assert not limit or len(message) <= limit
        answer = b.respond(message)
        assert not limit or len(answer) <= limit
        size += len(message) + len(answer)
        message = a.reconcile(answer)
        rounds += 1
        assert rounds < most
    return set(a.have), set(a.need), rounds, size


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_round_trip(n: int) -> None:
    encoded = encode_varint(n)
    assert _Reader(encoded).varint() == n
    assert all(b & 0x80 for b in encoded[:-1]) and not encoded[-1] & 0x80


def test_varint_examples() -> None:
    assert encode_varint(0) == b"\x00"
    assert encode_varint(127) == b"\x7f"
    assert encode_varint(128) == b"\x81\x00"
    assert encode_varint(300) == b"\x82\x2c"


def test_fingerprint_definition() -> None:
    ids = [os.urandom(32) for _ in range(5)]
    total = sum(int.from_bytes(i, "little") for i in ids) % 2**256
    expected = hashlib.sha256(total.to_bytes(32, "little") + b"\x05").digest()[:16]
    assert fingerprint(total, 5) == expected
    storage = Storage((n, i) for n, i in enumerate(ids))
    assert storage.fingerprint(0, 5) == expected


# an id names one event, so it has one timestamp: ids are unique across both sides
universe = st.dictionaries(
    st.binary(min_size=32, max_size=32), st.integers(min_value=0, max_value=50), max_size=400
)


@settings(max_examples=200)
@given(
    universe=universe,
    split=st.lists(st.sampled_from(["both", "a", "b"]), min_size=400, max_size=400),
    limit=st.sampled_from([0, 4096]),
)
def test_each_side_learns_exactly_the_difference(universe, split, limit) -> None:
    where = dict(zip(universe, split, strict=False))
    a_set = {(universe[i], i) for i in universe if where[i] in ("both", "a")}
    b_set = {(universe[i], i) for i in universe if where[i] in ("both", "b")}
    have, need, _, _ = reconcile(a_set, b_set, limit)
    a_ids, b_ids = {i for _, i in a_set}, {i for _, i in b_set}
    assert have == a_ids - b_ids
    assert need == b_ids - a_ids


def test_one_difference_among_ten_thousand_is_cheap() -> None:
    rng = random.Random(7)
    common = [(rng.randrange(1_700_000_000, 1_700_100_000), os.urandom(32)) for _ in range(10_000)]
    extra = (rng.randrange(1_700_000_000, 1_700_100_000), os.urandom(32))
    have, need, rounds, size = reconcile([*common, extra], common)
    assert have == {extra[1]} and need == set()
    assert rounds <= 3 and size <= 2_500


def test_large_differences_respect_the_frame_limit() -> None:
    rng = random.Random(3)
    a = [(rng.randrange(0, 10**6), os.urandom(32)) for _ in range(3_000)]
    b = [(rng.randrange(0, 10**6), os.urandom(32)) for _ in range(2_000)]
    have, need, rounds, _ = reconcile(a, b, limit=4096)
    assert have == {i for _, i in a} and need == {i for _, i in b}
    assert rounds > 3


def test_same_timestamps_need_id_prefix_bounds() -> None:
    same = [(1234, os.urandom(32)) for _ in range(500)]
    have, need, _, _ = reconcile(same[:450], same[50:])
    assert have == {i for _, i in same[:50]} and need == {i for _, i in same[450:]}


def test_unsupported_version_is_answered_with_ours() -> None:
    responder = Negentropy(Storage([]))
    assert responder.respond(b"\x62\x00\x00") == b"\x61"
    initiator = Negentropy(Storage([]))
    initiator.initiate()
    with pytest.raises(InvalidPayload, match="version"):
        initiator.reconcile(b"\x62")


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_junk_is_a_typed_error_or_an_answer(data: bytes) -> None:
    storage = Storage([(t, os.urandom(32)) for t in range(40)])
    try:
        answer = Negentropy(storage).respond(bytes([0x61]) + data)
    except InvalidPayload:
        return
    assert answer[0] == 0x61


def test_infinite_timestamps_are_refused_as_items() -> None:
    with pytest.raises(ValueError):
        Storage([(INFINITY, os.urandom(32))])
    with pytest.raises(ValueError):
        Storage([(1, b"short")])


@settings(max_examples=12, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=10_000),
    differences=st.integers(min_value=0, max_value=10_000),
    seed=st.integers(min_value=0, max_value=2**32),
    limit=st.sampled_from([0, 4096, 40_000]),
)
def test_large_sets_against_a_naive_difference(size, differences, seed, limit) -> None:
    """Up to 10,000 items per side and any number of differences, split either way, with
    and without a frame limit (answers cut short and resumed): exactly the naive result."""
    rng = random.Random(seed)
    items = [(rng.randrange(1_700_000_000, 1_700_000_500), rng.randbytes(32)) for _ in range(size)]
    differing = set(rng.sample(range(size), min(differences, size)))
    a_set = {x for n, x in enumerate(items) if n not in differing or rng.random() < 0.5}
    b_set = {x for n, x in enumerate(items) if n not in differing or x not in a_set}
    have, need, _, _ = reconcile(a_set, b_set, limit)
    a_ids, b_ids = {i for _, i in a_set}, {i for _, i in b_set}
    assert have == a_ids - b_ids
    assert need == b_ids - a_ids


def test_ranges_out_of_order_are_refused() -> None:
    """Each range must end above the one before it: a message that goes back (same timestamp,
    smaller id prefix) or repeats a bound is a typed error, not a silent empty range."""
    storage = Storage([(5, bytes([n]) * 32) for n in range(40)])
    bound = encode_varint(6) + encode_varint(1)  # timestamp 5, then a one-byte id prefix
    backwards = (
        bytes([VERSION])
        + bound + b"\x80" + encode_varint(SKIP)
        + encode_varint(1) + encode_varint(1) + b"\x10" + encode_varint(SKIP)
    )  # fmt: skip
    with pytest.raises(InvalidPayload, match="out of order"):
        Negentropy(storage).respond(backwards)
    repeated = bytes([VERSION]) + encode_varint(0) + encode_varint(0) + encode_varint(SKIP)
    repeated += encode_varint(0) + encode_varint(0) + encode_varint(SKIP)
    with pytest.raises(InvalidPayload, match="out of order"):
        Negentropy(storage).respond(repeated)
