"""Ecash in and out over Lightning, tokens and seed restore, through the `cashu` package.

NUT-04 mint quotes (an invoice to pay, then proofs), NUT-05 melt quotes (pay an invoice with
proofs, NUT-08 change back), NUT-00 cashuB tokens (CBOR, V4), NUT-03 swaps of received
proofs into ours, NUT-09/NUT-13 restore of everything the wallet seed ever derived.
Functions take an open `CashuWallet`; callers hold `exclusive()` where the counter moves.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from agent.escrow.wallet import CashuWallet, _mint_error, from_cashu, to_cashu
from agent.store import escrow as repo
from events.errors import TokenInvalid
from events.escrow import CashuProof

RESTORE_BATCH = 25  # NUT-13 outputs asked per NUT-09 restore request
MAX_TOKEN_CHARS = 1_000_000  # a token of 1,000 proofs (a mint's most per swap) is ~0.3 MB


def _state(value: Any) -> str:
    return str(getattr(value, "value", value)).lower()


async def mint_quote(cw: CashuWallet, amount: int) -> tuple[str, str]:
    """(quote id, bolt11).  The library stores the quote and its NUT-20 key before returning."""
    try:
        quote = await cw.wallet.request_mint(amount)
    except Exception as exc:  # noqa: BLE001 - the library raises bare exceptions
        raise _mint_error(exc) from None
    return quote.quote, quote.request


async def mint_quote_state(cw: CashuWallet, quote: str) -> str:
    """unpaid, paid or issued."""
    try:
        return _state((await cw.wallet.get_mint_quote(quote)).state)
    except Exception as exc:  # noqa: BLE001
        raise _mint_error(exc) from None


async def claim(cw: CashuWallet, quote: str, amount: int) -> list[CashuProof]:
    """Mint the proofs of a paid quote.  Call inside `exclusive()`."""
    try:
        return [from_cashu(p) for p in await cw.wallet.mint(amount, quote)]
    except Exception as exc:  # noqa: BLE001
        raise _mint_error(exc) from None


async def melt_quote(cw: CashuWallet, bolt11: str) -> dict[str, Any]:
    try:
        q = await cw.wallet.melt_quote(bolt11)
    except Exception as exc:  # noqa: BLE001
        raise _mint_error(exc) from None
    return {"quote": q.quote, "amount": int(q.amount), "fee_reserve": int(q.fee_reserve)}


async def melt(
    cw: CashuWallet, proofs: list[CashuProof], bolt11: str, fee_reserve: int, quote: str
) -> dict[str, Any]:
    """Pay `bolt11` with `proofs`: the state and preimage.  The change is signed on outputs
    from `next_outputs()` on (take them with `restore`).  Call inside `exclusive()`."""
    try:
        reply = await cw.wallet.melt([to_cashu(p) for p in proofs], bolt11, fee_reserve, quote)
    except Exception as exc:  # noqa: BLE001
        raise _mint_error(exc) from None
    return {"state": _state(reply.state), "preimage": reply.payment_preimage}


async def melt_state(cw: CashuWallet, quote: str) -> str:
    try:
        found = await cw.wallet.get_melt_quote(quote)
    except Exception as exc:  # noqa: BLE001
        raise _mint_error(exc) from None
    return _state(found.state) if found else "unknown"


def token_of(mint: str, proofs: list[CashuProof]) -> str:
    """A cashuB (V4, CBOR) token carrying `proofs` of `mint`."""
    from cashu.core.base import TokenV3, TokenV3Token, TokenV4

    v3 = TokenV3(token=[TokenV3Token(mint=mint, proofs=[to_cashu(p) for p in proofs])])
    return str(TokenV4.from_tokenv3(v3).serialize())


def read_token(text: str) -> tuple[str, list[CashuProof]]:
    """(mint URL, proofs) of a cashuB or cashuA token; TokenInvalid otherwise."""
    from cashu.core.base import TokenV3, TokenV4

    if len(text) > MAX_TOKEN_CHARS:
        raise TokenInvalid(f"not a Cashu sat token (longer than {MAX_TOKEN_CHARS:,} characters)")
    text = text.strip()
    try:
        if text.startswith("cashuB"):
            token: Any = TokenV4.deserialize(text)
        elif text.startswith("cashuA"):
            token = TokenV3.deserialize(text)
        else:
            raise ValueError("no cashuA/cashuB prefix")
        if (token.unit or "sat") != "sat":
            raise ValueError(f"unit {token.unit}, not sat")
        mint, proofs = str(token.mint), [from_cashu(p) for p in token.proofs]
    except Exception as exc:  # noqa: BLE001 - the library raises anything on bad input
        # (only the kind of failure: a library's message may quote the token's proofs)
        ours = isinstance(exc, ValueError) and str(exc).startswith(("no cashuA", "unit "))
        why = str(exc) if ours else type(exc).__name__
        raise TokenInvalid(f"not a Cashu sat token ({why})"[:200]) from None
    if not proofs:
        raise TokenInvalid("the token carries no proofs")
    return mint, proofs


async def restore_all(cw: CashuWallet) -> list[CashuProof]:
    """NUT-09 + NUT-13: every unspent proof the seed derived at this mint, for every keyset.
    Call inside `exclusive()`."""
    from cashu.wallet.crud import get_proofs

    w = cw.wallet
    try:
        # the library's own proof table is a scratchpad here (the ledger in our store is the
        # record): emptied first, so what an earlier restore found is found again, not
        # inserted twice (its UNIQUE constraint failed a third restore)
        await repo.empty_cashu_scratch(w.db)
        with contextlib.redirect_stdout(io.StringIO()):  # the library prints its progress
            for keyset_id in list(w.keysets):
                await w.restore_tokens_for_keyset(keyset_id, to=2, batch=RESTORE_BATCH)
        held = await get_proofs(db=w.db)
    except Exception as exc:  # noqa: BLE001
        raise _mint_error(exc) from None
    return await cw.unspent(held)
