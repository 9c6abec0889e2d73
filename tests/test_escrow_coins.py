"""NUT-02 input fees in pure arithmetic: the fee for spending proofs, and how much to swap
out so that what is left after spending it is a given amount."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.escrow.coins import gross
from events.escrow import fee_of


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
    # and not more than the fee of the most proofs an amount that size can come in
    assert x - amount <= fee_of([ppk] * (x.bit_length()))


@given(st.integers(1, 10**12))
def test_with_no_fee_nothing_is_added(amount: int) -> None:
    assert gross(amount, 0) == amount
