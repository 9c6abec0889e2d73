"""Which held proofs a swap or a melt spends, and what a mint's input fees (NUT-02) add.

A mint may charge a fee for every proof a swap or melt spends (`input_fee_ppk` of the proof's
keyset, thousandths of a sat, summed and rounded up: `events.escrow.fee_of`).  The spender
pays it: the inputs must be worth the amount plus the fee for spending them.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.store import Db
from agent.store import escrow as repo
from events.errors import InsufficientBalance, InvalidParams
from events.escrow import CashuProof, fee_of


def amount_split(amount: int) -> list[int]:
    """`amount` as powers of two, smallest first (how the wallet splits change)."""
    return [1 << b for b in range(amount.bit_length()) if amount >> b & 1]


Fees = Callable[[str], int]  # a keyset id → its fee per proof spent (ppk)


Coin = tuple[int, int]  # (amount, its keyset's fee per proof spent, ppk)


def select(db: Db, mint: str, amount: int, ppk: Fees | None = None) -> list[CashuProof]:
    """Proofs held at `mint` worth `amount` and the mint's fee for spending them (`ppk`:
    None, no fees).  Smallest first, which spends dust; where spending costs a fee, largest
    first, which spends the fewest proofs.  InsufficientBalance if the wallet lacks them."""
    fees = ppk or (lambda _keyset: 0)
    held = _order(repo.unspent(db, mint), fees)
    chosen = _choose([(p.amount, fees(p.id)) for p in held], amount, mint)
    return [held[i] for i in chosen]


def _order(held: list[CashuProof], fees: Fees) -> list[CashuProof]:
    """Largest first and, among equal amounts, the dearer to spend first: the order both
    `select` and `check_funds` take them in (so the check plays out what funding does)."""
    return sorted(held, key=lambda p: (p.amount, fees(p.id)), reverse=True)


def _choose(coins: list[Coin], amount: int, mint: str) -> list[int]:
    """Indexes of `coins` (largest first) that `select` spends for `amount`."""
    order = range(len(coins)) if any(c[1] for c in coins) else range(len(coins) - 1, -1, -1)
    chosen, total, ppks = [], 0, 0
    for i in order:
        if total >= amount + fee_of([ppks]):
            break
        chosen.append(i)
        total, ppks = total + coins[i][0], ppks + coins[i][1]
    if total < amount + fee_of([ppks]):
        fee = f" and {fee_of([ppks]):,} in mint fees" if ppks else ""
        raise InsufficientBalance(
            f"the wallet holds {total:,} sat at {mint}; {amount:,} needed{fee}"
            " (hive-agent escrow topup)"
        )
    return chosen


def check_funds(db: Db, mint: str, amounts: list[int], ppk: Fees, out_ppk: int) -> None:
    """InsufficientBalance unless the wallet can lock parts of `amounts` one after the
    other, each swap paying its own fee, with the change of one spent by the next: played
    out on the proofs held before anything is locked (a ticket found short half-way would
    leave its parts locked until their locktime).  The play is exact: the same order of
    proofs as `select`, and change in powers of two, as the wallet makes it (wallet.py)."""
    coins = [(p.amount, ppk(p.id)) for p in _order(repo.unspent(db, mint), ppk)]
    held, charged = sum(c[0] for c in coins), out_ppk or any(c[1] for c in coins)
    for amount in amounts:
        try:
            chosen = set(_choose(coins, amount, mint))
        except InsufficientBalance:
            fees = " and the mint's fees for locking each part" if charged else ""
            raise InsufficientBalance(
                f"the wallet holds {held:,} sat at {mint}; {sum(amounts):,} needed{fees}"
                " (hive-agent escrow topup)"
            ) from None
        spent = [coins[i] for i in chosen]
        change = sum(c[0] for c in spent) - amount - fee_of(c[1] for c in spent)
        coins = [c for i, c in enumerate(coins) if i not in chosen]
        coins = sorted(coins + [(a, out_ppk) for a in amount_split(change)], reverse=True)


def gross(amount: int, ppk: int) -> int:
    """The smallest x ≥ `amount` that pays `amount` once the fee for spending x's proofs is
    taken: new proofs of x come one per power of two (the wallet's split), each charged `ppk`
    (the active keyset's fee) when spent.  With no fee, `amount` itself."""
    most = fee_of([ppk] * 64)  # (no amount comes in more proofs: amount + most always pays)
    if most > 100_000:  # an absurd fee: not worth a search
        return amount + most
    for x in range(amount, amount + most + 1):
        if x - fee_of([ppk] * x.bit_count()) >= amount:
            return x
    return amount + most


def check_payable(amounts: list[int], ppk: int) -> None:
    """InvalidParams if a part of one of `amounts`, locked in new proofs (one per power of
    two) of a keyset charging `ppk`, would cost its whole amount to redeem or to refund."""
    for index, amount in enumerate(amounts):
        fee = fee_of([ppk] * amount.bit_count())
        if fee >= amount:
            raise InvalidParams(
                f"part {index} ({amount:,} sat) would pay nothing: the mint charges {fee:,} sat"
                " to spend its proofs; make the parts larger"
            )
