"""Range-based set reconciliation: the negentropy protocol, version 1 (NIP-77's wire format).

Two parties hold sets of (timestamp, 32-byte id) items.  The initiator sends fingerprints of
16 ranges covering its whole set; the other side answers, for each range whose fingerprint
differs, with 16 finer ranges, and with plain id lists once a range holds fewer than 32 items.
After a few round trips each side knows exactly which ids the other lacks; the cost grows with
the differences, not with the set.  NIP-77 carries these messages (hex-encoded) between a
client and a relay; the fleet's anti-entropy carries the same messages over custom messages.

Wire format (docs/negentropy-protocol-v1.md of hoytech/negentropy, whose C++ and JS
implementations were read to write this one):

    Message  := 0x61 Range*
    Range    := Bound mode(Varint) (Skip | Fingerprint(16 bytes) | IdList)
    Bound    := timestamp(Varint: 0 = infinity, else 1 + delta) length(Varint) idPrefix
    IdList   := count(Varint) Id*
    Varint   := base 128, most significant digit first, high bit set on all but the last
    fingerprint(range) = SHA-256(sum of ids as little-endian 256-bit integers mod 2^256
                                 ‖ Varint(count))[:16]

Pure: no I/O, no clock.  Malformed input raises `InvalidPayload`.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from events.errors import InvalidPayload

VERSION = 0x61
INFINITY = 2**64 - 1
ID_SIZE = 32
FINGERPRINT_SIZE = 16
BUCKETS = 16
SKIP, FINGERPRINT, ID_LIST = 0, 1, 2
MOD = 2**256


def encode_varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varints are unsigned")
    digits = [n & 0x7F]
    n >>= 7
    while n:
        digits.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(digits))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise InvalidPayload("negentropy message ends prematurely")
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise InvalidPayload("negentropy message ends prematurely")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def varint(self) -> int:
        value = 0
        for _ in range(10):  # a u64 needs at most 10 digits
            digit = self.byte()
            value = (value << 7) | (digit & 0x7F)
            if not digit & 0x80:
                return value
        raise InvalidPayload("negentropy varint longer than 64 bits")

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


@dataclass(frozen=True, order=True)
class Item:
    timestamp: int
    id: bytes


def fingerprint(total: int, count: int) -> bytes:
    """The fingerprint of a range whose ids sum (mod 2^256) to `total`."""
    return hashlib.sha256(total.to_bytes(32, "little") + encode_varint(count)).digest()[:16]


class Storage:
    """A sealed, sorted set of items with prefix sums, so any range's fingerprint is O(1)."""

    def __init__(self, items: Iterable[tuple[int, bytes]]) -> None:
        unique = sorted({Item(ts, bytes(i)) for ts, i in items})
        for item in unique:
            if len(item.id) != ID_SIZE or not 0 <= item.timestamp < INFINITY:
                raise ValueError("items are (timestamp < 2^64-1, 32-byte id)")
        self.items = unique
        self.keys = [(i.timestamp, i.id) for i in unique]
        self._sums = [0]
        for item in unique:
            self._sums.append((self._sums[-1] + int.from_bytes(item.id, "little")) % MOD)

    def __len__(self) -> int:
        return len(self.items)

    def fingerprint(self, lower: int, upper: int) -> bytes:
        return fingerprint((self._sums[upper] - self._sums[lower]) % MOD, upper - lower)

    def lower_bound(self, begin: int, end: int, bound: Item) -> int:
        """The first index in [begin, end) whose item is at or above `bound`."""
        key = (bound.timestamp, bound.id)
        return bisect.bisect_left(self.keys, key, begin, end)


@dataclass
class Negentropy:
    """One side of a reconciliation over `storage`.

    The initiator calls `initiate()`, sends the result, and feeds every answer to
    `reconcile()`, which returns the next message (None when done) and fills `have` (ids only
    the initiator holds) and `need` (ids only the other side holds).  The other side answers
    each message with `respond()`.  `frame_limit` (0 = none, else ≥ 4096 bytes) caps each
    message; a capped answer ends with a fingerprint of what is left, so the exchange simply
    takes more rounds.
    """

    storage: Storage
    frame_limit: int = 0
    initiator: bool = False
    have: set[bytes] = field(default_factory=set)
    need: set[bytes] = field(default_factory=set)
    _ts_in: int = 0
    _ts_out: int = 0

    def __post_init__(self) -> None:
        if self.frame_limit and self.frame_limit < 4096:
            raise ValueError("frame_limit must be 0 or at least 4096 bytes")

    def initiate(self) -> bytes:
        if self.initiator:
            raise ValueError("already initiated")
        self.initiator = True
        self._ts_out = 0
        return bytes([VERSION]) + self._split(0, len(self.storage), Item(INFINITY, b""))

    def reconcile(self, message: bytes) -> bytes | None:
        """(initiator) Process the other side's answer; the next message, or None if done."""
        if not self.initiator:
            raise ValueError("only the initiator reconciles")
        out = self._process(message)
        return None if len(out) == 1 else out

    def respond(self, message: bytes) -> bytes:
        """(responder) The answer to one message from the initiator."""
        if self.initiator:
            raise ValueError("the initiator does not respond")
        return self._process(message)

    # --- internals -----------------------------------------------------------------------

    def _process(self, message: bytes) -> bytes:
        """Answer one message range by range: a skipped range stays skipped, a fingerprint
        that differs from ours is split finer, an id list is compared (initiator: fills `have`
        and `need`) or answered with our ids (responder).  Past `frame_limit`, the rest of the
        answer is one fingerprint of everything not yet covered."""
        self._ts_in = self._ts_out = 0
        reader = _Reader(message)
        if not self._speaks(reader.byte()):
            return bytes([VERSION])
        out = bytearray([VERSION])
        size = len(self.storage)
        prev_bound, prev_index, skip = Item(0, b""), 0, False
        last: Item | None = None
        emitted = 0  # where the last range we wrote ends: a cut-short answer goes on from there
        while reader.left:
            chunk = b""
            bound = last = self._read_bound(reader, last)
            mode = reader.varint()
            lower = prev_index
            upper = self.storage.lower_bound(prev_index, size, bound)
            if mode == SKIP:
                skip = True
            elif mode == FINGERPRINT:
                theirs = reader.take(FINGERPRINT_SIZE)
                if theirs != self.storage.fingerprint(lower, upper):
                    chunk = self._skipped(skip, prev_bound) + self._split(lower, upper, bound)
                    skip = False
                else:
                    skip = True
            elif mode == ID_LIST:
                their_ids = _read_ids(reader)
                if self.initiator:
                    skip = True
                    self._compare(lower, upper, their_ids)
                else:
                    skipped = self._skipped(skip, prev_bound)
                    skip = False
                    listed, upper = self._list_ids(lower, upper, bound, len(out))
                    out += skipped + listed
                    emitted = upper
            else:
                raise InvalidPayload(f"unknown negentropy range mode {mode}")
            if self._full(len(out) + len(chunk)):
                # one fingerprint of everything after the last range written (the ranges
                # skipped since match on both sides; the rest is compared next round)
                rest = self.storage.fingerprint(emitted, size)
                out += self._bound(Item(INFINITY, b"")) + encode_varint(FINGERPRINT) + rest
                break
            if chunk:
                out += chunk
                emitted = upper
            prev_index, prev_bound = upper, bound
        return bytes(out)

    def _speaks(self, version: int) -> bool:
        """True for our version; False if the responder should answer a newer one with its
        own bare version byte (the initiator refuses it, as anything else not negentropy)."""
        if not 0x60 <= version <= 0x6F:
            raise InvalidPayload("not a negentropy message (bad protocol version byte)")
        if version != VERSION:
            if self.initiator:
                raise InvalidPayload(f"the other side speaks negentropy version {version - 0x60}")
            return False
        return True

    def _skipped(self, skip: bool, prev_bound: Item) -> bytes:
        """The skip range that must precede an answer after ranges we left unanswered."""
        return self._bound(prev_bound) + encode_varint(SKIP) if skip else b""

    def _compare(self, lower: int, upper: int, their_ids: set[bytes]) -> None:
        """(initiator) Our items in [lower, upper) against the other side's id list."""
        for item in self.storage.items[lower:upper]:
            if item.id in their_ids:
                their_ids.discard(item.id)
            else:
                self.have.add(item.id)
        self.need.update(their_ids)

    def _list_ids(self, lower: int, upper: int, bound: Item, used: int) -> tuple[bytes, int]:
        """(responder) Our ids in [lower, upper) as an id-list range, and where it ends: at
        `upper`, or earlier if the frame (`used` bytes so far) would overflow."""
        ids, end_bound = bytearray(), bound
        n = 0
        for index in range(lower, upper):
            if self._full(used + len(ids)):
                end_bound, upper = self.storage.items[index], index
                break
            ids += self.storage.items[index].id
            n += 1
        listed = self._bound(end_bound) + encode_varint(ID_LIST) + encode_varint(n) + ids
        return bytes(listed), upper

    def _full(self, n: int) -> bool:
        return bool(self.frame_limit) and n > self.frame_limit - 200

    def _split(self, lower: int, upper: int, upper_bound: Item) -> bytes:
        out = bytearray()
        count = upper - lower
        if count < BUCKETS * 2:
            out += self._bound(upper_bound) + encode_varint(ID_LIST) + encode_varint(count)
            for item in self.storage.items[lower:upper]:
                out += item.id
            return bytes(out)
        per, extra = divmod(count, BUCKETS)
        curr = lower
        for i in range(BUCKETS):
            size = per + (1 if i < extra else 0)
            print_ = self.storage.fingerprint(curr, curr + size)
            curr += size
            if curr == upper:
                bound = upper_bound
            else:
                bound = _minimal_bound(self.storage.items[curr - 1], self.storage.items[curr])
            out += self._bound(bound) + encode_varint(FINGERPRINT) + print_
        return bytes(out)

    def _bound(self, bound: Item) -> bytes:
        if bound.timestamp == INFINITY:
            self._ts_out = INFINITY
            stamp = encode_varint(0)
        else:
            stamp = encode_varint(bound.timestamp - self._ts_out + 1)
            self._ts_out = bound.timestamp
        return stamp + encode_varint(len(bound.id)) + bound.id

    def _read_bound(self, reader: _Reader, last: Item | None = None) -> Item:
        """The next range's upper bound; it must lie above `last` (the one before)."""
        bound = self._decode_bound(reader)
        if last is not None and bound <= last:
            raise InvalidPayload("negentropy ranges out of order (each must end above the last)")
        return bound

    def _decode_bound(self, reader: _Reader) -> Item:
        encoded = reader.varint()
        stamp = INFINITY if encoded == 0 else encoded - 1 + self._ts_in
        stamp = min(stamp, INFINITY)  # saturate, as the reference implementations do
        self._ts_in = stamp
        length = reader.varint()
        if length > ID_SIZE:
            raise InvalidPayload("negentropy bound prefix longer than an id")
        return Item(stamp, reader.take(length))


def _read_ids(reader: _Reader) -> set[bytes]:
    count = reader.varint()
    if count > reader.left // ID_SIZE:
        raise InvalidPayload("negentropy id list longer than the message")
    return {reader.take(ID_SIZE) for _ in range(count)}


def _minimal_bound(prev: Item, curr: Item) -> Item:
    """The shortest bound that separates `prev` (below) from `curr` (at or above)."""
    if curr.timestamp != prev.timestamp:
        return Item(curr.timestamp, b"")
    shared = 0
    while shared < ID_SIZE and curr.id[shared] == prev.id[shared]:
        shared += 1
    return Item(curr.timestamp, curr.id[: shared + 1])
