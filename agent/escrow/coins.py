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

Fees = Callable[[str], int]  # a keyset id → its fee per proof spent (ppk)


def select(db: Db, mint: str, amount: int, ppk: Fees | None = None) -> list[CashuProof]:
    """Proofs held at `mint` worth `amount` and the mint's fee for spending them (`ppk`:
    None, no fees).  Smallest first, which spends dust; where spending costs a fee, largest
    first, which spends the fewest proofs.  InsufficientBalance if the wallet lacks them."""
    held = repo.unspent(db, mint)  # (largest first)
    charged = ppk is not None and any(ppk(p.id) for p in held)
    chosen, total, ppks = [], 0, 0
    for proof in held if charged else reversed(held):
        if total >= amount + fee_of([ppks]):
            break
        chosen.append(proof)
        total += proof.amount
        ppks += ppk(proof.id) if ppk is not None else 0
    if total < amount + fee_of([ppks]):
        fee = f" and {fee_of([ppks]):,} in mint fees" if ppks else ""
        raise InsufficientBalance(
            f"the wallet holds {total:,} sat at {mint}; {amount:,} needed{fee}"
            " (hive-agent escrow topup)"
        )
    return chosen


def gross(amount: int, ppk: int) -> int:
    """The smallest x ≥ `amount` that pays `amount` once the fee for spending x's proofs
    is taken: new proofs of x come one per power of two (the wallet's split), each charged
    `ppk` (the active keyset's fee) when spent.  With no fee, `amount` itself."""
    x = amount
    for _ in range(16):  # converges in two or three rounds: the fee is a few sat at most
        nxt = amount + fee_of([ppk] * x.bit_count())
        if nxt <= x:
            return x
        x = nxt
    return x


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
