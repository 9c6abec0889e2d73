"""The kind registry: no number registered to someone else, one comment per kind."""

from __future__ import annotations

import inspect
import re

from events import kinds
from events.kinds import HIVE_ADDRESSABLE, HIVE_RUMORS, REGISTERED_ELSEWHERE, STANDARD_USES, Kind


def test_own_kinds_are_not_registered_elsewhere() -> None:
    own = [k for k in Kind if k not in STANDARD_USES]
    assert own, "the project defines kinds of its own"
    clashes = [k for k in own if k.value in REGISTERED_ELSEWHERE]
    assert clashes == []


def test_own_kinds_sit_in_their_blocks() -> None:
    for k in Kind:
        if k in STANDARD_USES:
            continue
        assert k.value in HIVE_ADDRESSABLE or k.value in HIVE_RUMORS, k
        if k.value in HIVE_ADDRESSABLE:
            assert kinds.is_addressable(k.value)


def test_standard_kinds_keep_their_nip_numbers() -> None:
    assert (Kind.SEAL, Kind.GIFT_WRAP, Kind.DIRECT_MESSAGE) == (13, 1059, 14)
    assert (Kind.CLASSIFIED_LISTING, Kind.RELAY_LIST, Kind.DM_RELAYS) == (30402, 10002, 10050)
    assert all(k.value in REGISTERED_ELSEWHERE or k.value < 100 for k in STANDARD_USES)


def test_known_collisions_are_listed() -> None:
    # DESIGN.md §4: 38383 is NIP-69, 23194–23197 NWC, 24133 NIP-46, 5000–7000 NIP-90, 39735 publsp
    for kind in (38383, 23194, 23197, 24133, 5000, 7000, 39735, 38172):
        assert kind in REGISTERED_ELSEWHERE


def test_every_kind_has_a_comment() -> None:
    source = inspect.getsource(Kind)
    for k in Kind:
        line = re.search(rf"^\s*{k.name} = {k.value}\s*#\s*\S.+$", source, re.MULTILINE)
        assert line, f"{k.name} needs a comment saying what it is"


def test_numbers_are_unique() -> None:
    assert len({k.value for k in Kind}) == len(Kind)
