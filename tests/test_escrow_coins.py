"""NUT-02 input fees in pure arithmetic: the fee for spending proofs, and how much to swap
out so that what is left after spending it is a given amount."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.escrow.coins import gross
from events.escrow import fee_of


def test_examples() -> None:
    assert gross(7, 1000) == 8  # one proof of 8, 1 sat to spend (10 was found before)
    assert gross(8, 1000) == 10 and gross(1, 1000) == 2  # 8 + 2, 2 sat; one proof of 2
    assert gross(100, 100) == 101  # 101 = 64 + 32 + 4 + 1: 0.4 sat, rounded up


def test_the_fee_is_the_sum_of_the_keysets_fees_rounded_up() -> None:
    assert fee_of([]) == 0
    assert fee_of([0, 0, 0]) == 0
    assert fee_of([100]) == 1  # a tenth of a sat is still a sat
    assert fee_of([100] * 10) == 1 and fee_of([100] * 11) == 2
    assert fee_of([1000, 1000, 1000]) == 3


@given(st.integers(1, 2_100_000_000_000_000), st.integers(0, 5_000))
def test_what_is_swapped_out_pays_the_amount_after_its_own_fee(amount: int, ppk: int) -> None:
    x = gross(amount, ppk)
    assert x >= amount
    assert x - fee_of([ppk] * x.bit_count()) >= amount  # (one proof per power of two)
    # and the least that does: one less would not pay (or is less than the amount)
    assert x == amount or x - 1 - fee_of([ppk] * (x - 1).bit_count()) < amount


@given(st.integers(1, 10**12))
def test_with_no_fee_nothing_is_added(amount: int) -> None:
    assert gross(amount, 0) == amount
