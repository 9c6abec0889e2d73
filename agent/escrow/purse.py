"""The wallet beyond tickets: invoices in, payments out, tokens across, restore from the seed.

Every step that could lose ecash is written down first.  A mint quote is recorded (kv
`escrow-quote:<id>`) before its invoice is shown, with where its outputs start, so a claim
whose answer was lost is restored from the mint; a melt is recorded (`escrow-melt:<id>`) with
its inputs set aside before the mint is asked, so a crash neither spends them twice nor loses
them or the change.  `settle(escrow)` finishes what an earlier run left: it claims paid
quotes and settles melts, and runs before each wallet command.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from agent.escrow import coins
from agent.escrow import lightning as ln
from agent.escrow.mint import check_mint, check_named_mint, normalize
from agent.store import escrow as repo
from events.errors import (
    HiveError,
    InvoiceUnpaid,
    MintNotAllowed,
    MintRefused,
    TokenInvalid,
    TokenSpent,
)
from events.escrow import CashuProof

if TYPE_CHECKING:
    from agent.escrow.service import Escrow

QUOTE = "escrow-quote:"
QUOTE_WATCH_S = 86_400  # unpaid quotes are looked after this long, then left (expired)
MELT = "escrow-melt:"


def _mint(escrow: Escrow, mint: str | None) -> str:
    if mint is None and not escrow.mints:
        raise MintNotAllowed("no mints configured: list them under `mints` in policy.json")
    return normalize(mint or escrow.mints[0])


# --- NUT-04: invoices in ------------------------------------------------------------------


async def invoice(escrow: Escrow, amount: int, mint: str | None = None) -> dict[str, Any]:
    """A mint quote for `amount` sat, recorded before anyone sees its invoice."""
    mint = _mint(escrow, mint)
    await check_mint(mint, escrow.mints)
    cw = await escrow.wallet(mint)
    quote, bolt11 = await ln.mint_quote(cw, amount)
    record = {
        "mint": mint, "amount": amount, "request": bolt11, "state": "unpaid",
        "issued_at": escrow.now,
    }  # fmt: skip
    with escrow.agent.store.transaction(escrow.now) as tx:
        tx.set_kv(QUOTE + quote, record)
    return {"quote": quote, **record}


async def wait_paid(
    escrow: Escrow, quote: str, timeout_s: float, tick: Callable[[float], None] | None = None
) -> str:
    """Poll the quote until paid (or issued) or `timeout_s` is over: its last state.
    A negative timeout does not ask at all (a FakeWallet mint pays whatever is asked about)."""
    if timeout_s < 0:
        return "unpaid"
    record = _quote(escrow, quote)
    cw = await escrow.wallet(record["mint"])
    waited, step = 0.0, 0.5
    while True:
        state = await ln.mint_quote_state(cw, quote)
        if state != "unpaid" or waited >= timeout_s:
            return state
        if tick is not None:
            tick(waited)
        await anyio.sleep(step)
        waited += step


def _quote(escrow: Escrow, quote: str) -> dict[str, Any]:
    record = escrow.agent.store.kv(QUOTE + quote)
    if record is None:
        raise MintRefused(f"no mint quote {quote} in this wallet")
    return dict(record)


async def claim(escrow: Escrow, quote: str) -> dict[str, Any]:
    """Mint the proofs of a paid quote (once: a second claim finds it claimed)."""
    record = _quote(escrow, quote)
    if record["state"] == "claimed":
        return {"quote": quote, **record, "minted": 0, "already_claimed": True}
    cw = await escrow.wallet(record["mint"])
    state = await ln.mint_quote_state(cw, quote)
    if state == "unpaid":
        raise InvoiceUnpaid(f"the invoice of quote {quote} is not paid yet")
    async with cw.exclusive():
        if state == "paid":
            record["start"] = await cw.next_outputs()
            with escrow.agent.store.transaction(escrow.now) as tx:
                tx.set_kv(QUOTE + quote, record)
            proofs = await ln.claim(cw, quote, record["amount"])
        elif "start" in record:  # issued, but the answer was lost: the mint signed them
            proofs = await cw.restore(record["start"])
        else:
            raise MintRefused(f"quote {quote} was issued, and not to this wallet")
    record["state"] = "claimed"
    with escrow.agent.store.transaction(escrow.now) as tx:
        repo.add_proofs(tx, record["mint"], proofs, "invoice")
        tx.set_kv(QUOTE + quote, record)
    return {"quote": quote, **record, "minted": sum(p.amount for p in proofs)}


# --- NUT-05: payments out -----------------------------------------------------------------


async def pay(escrow: Escrow, bolt11: str, mint: str | None = None) -> dict[str, Any]:
    """Melt: quote, set the inputs aside (recorded), pay, take the change."""
    mint = _mint(escrow, mint)
    await check_mint(mint, escrow.mints)
    cw = await escrow.wallet(mint)
    quote = await ln.melt_quote(cw, bolt11)
    need = quote["amount"] + quote["fee_reserve"]
    inputs, swap_fee = await _exactly(escrow, mint, need)
    async with cw.exclusive():
        record = {
            "mint": mint,
            "request": bolt11,
            "amount": quote["amount"],
            "fee_reserve": quote["fee_reserve"],
            "swap_fee": swap_fee,
            "inputs": [p.model_dump() for p in inputs],
            "start": await cw.next_outputs(),
            "state": "pending",
        }
        with escrow.agent.store.transaction(escrow.now) as tx:
            repo.spend_proofs(tx, inputs)
            tx.set_kv(MELT + quote["quote"], record)
        try:
            # blank outputs for all the inputs give beyond the amount and their fee: the
            # quote's reserve, and whatever more exact inputs could not avoid (NUT-08)
            room = sum(p.amount for p in inputs) - cw.input_fee(inputs) - quote["amount"]
            done = await ln.melt(cw, inputs, bolt11, room, quote["quote"])
        except MintRefused:
            await _settle_melt(escrow, quote["quote"], record)
            raise
        return await _finish_melt(escrow, quote["quote"], record, done["state"], done["preimage"])


async def _exactly(escrow: Escrow, mint: str, amount: int) -> tuple[list[CashuProof], int]:
    """Proofs worth exactly `amount` and the mint's fee for spending them (swapped out of
    larger ones first: a mint returns change only on as many blank outputs as the fee
    reserve needs, so more would be lost), and the fee that swap cost."""
    cw = await escrow.wallet(mint)
    inputs = coins.select(escrow.agent.store, mint, amount, cw.fee_ppk)
    if sum(p.amount for p in inputs) == amount + cw.input_fee(inputs):
        return inputs, 0
    target = coins.gross(amount, cw.output_fee_ppk())
    inputs = coins.select(escrow.agent.store, mint, target, cw.fee_ppk)
    keep, out = await cw.split(inputs, target)
    with escrow.agent.store.transaction(escrow.now) as tx:
        repo.spend_proofs(tx, inputs)
        repo.add_proofs(tx, mint, keep + out, "change")
    return out, sum(p.amount for p in inputs) - sum(p.amount for p in keep + out)


async def _finish_melt(
    escrow: Escrow, quote: str, record: dict[str, Any], state: str, preimage: str | None
) -> dict[str, Any]:
    """Record the melt's outcome; a paid melt's change comes back from its outputs."""
    cw = await escrow.wallet(record["mint"])
    change: list[CashuProof] = []
    inputs = [CashuProof.model_validate(p) for p in record["inputs"]]
    if state == "paid":
        change = await cw.restore(record["start"])
    elif state == "unpaid":
        states = await cw.states(inputs)
        inputs = [p for p, s in zip(inputs, states, strict=True) if s["state"] == "unspent"]
    record.update(state=state, preimage=preimage, change=sum(p.amount for p in change))
    with escrow.agent.store.transaction(escrow.now) as tx:
        if state == "paid":
            repo.add_proofs(tx, record["mint"], change, "change")
        elif state == "unpaid":
            repo.unspend_proofs(tx, inputs)
        tx.set_kv(MELT + quote, record)
    paid = sum(p["amount"] for p in record["inputs"]) - record["change"]
    paid += record.get("swap_fee", 0)  # (what making the exact inputs cost)
    return {"quote": quote, **{k: v for k, v in record.items() if k != "inputs"}, "paid": paid}


async def _settle_melt(escrow: Escrow, quote: str, record: dict[str, Any]) -> dict[str, Any]:
    cw = await escrow.wallet(record["mint"])
    state = await ln.melt_state(cw, quote)
    if state not in ("paid", "unpaid"):
        return record
    async with cw.exclusive():
        return await _finish_melt(escrow, quote, record, state, None)


# --- tokens -------------------------------------------------------------------------------


async def send(escrow: Escrow, amount: int, mint: str | None = None) -> dict[str, Any]:
    """Swap exactly `amount` out of the wallet and wrap it in a cashuB token."""
    mint = _mint(escrow, mint)
    cw = await escrow.wallet(mint)
    inputs = coins.select(escrow.agent.store, mint, amount, cw.fee_ppk)
    keep, out = await cw.split(inputs, amount)
    with escrow.agent.store.transaction(escrow.now) as tx:  # the ledger first, then the token
        repo.spend_proofs(tx, inputs)
        repo.add_proofs(tx, mint, keep, "change")
        repo.add_proofs(tx, mint, out, "sent")
        repo.spend_proofs(tx, out)
        tx.set_kv("escrow-sent:" + out[0].secret, [p.model_dump() for p in out])
    fee = sum(p.amount for p in inputs) - sum(p.amount for p in keep + out)
    # (the receiver pays the fee for spending the token's proofs: NUT-02)
    return {"mint": mint, "amount": amount, "fee": fee, "token": ln.token_of(mint, out)}


async def receive(escrow: Escrow, token: str, *, trust_mint: bool = False) -> dict[str, Any]:
    """Swap a token's proofs into ours at its mint (NUT-03), so the sender cannot spend them."""
    mint, proofs = ln.read_token(token)
    mint = normalize(mint)
    if mint not in escrow.mints:
        if not trust_mint:
            raise MintNotAllowed(
                f"the token is for {mint}, not one of this agent's mints (--trust-mint to accept)"
            )
        await check_named_mint(mint, allow_private=escrow.agent.settings.allow_private_relays)
    if repo.known_secrets(escrow.agent.store, [p.secret for p in proofs]):
        raise TokenSpent("this token was already received or sent by this wallet")
    cw = await escrow.wallet(mint)
    worth, fee = sum(p.amount for p in proofs), cw.input_fee(proofs)
    if fee >= worth:  # (the library's swap would fail with nothing to say)
        raise TokenInvalid(
            f"the token's {worth:,} sat would all go to the mint's fee for receiving it "
            f"({fee:,} sat, NUT-02): not received"
        )
    states = await cw.states(proofs)
    if any(s["state"] != "unspent" for s in states):
        raise TokenSpent("the token's proofs are already spent at the mint")
    async with cw.exclusive():
        try:
            fresh = await cw.refund(proofs)  # a plain swap: no witness needed
        except MintRefused as exc:
            if "spent" in str(exc).lower():
                raise TokenSpent(f"the mint says the token is spent: {exc}"[:200]) from None
            raise
    with escrow.agent.store.transaction(escrow.now) as tx:
        repo.add_proofs(tx, mint, fresh, "received")
    received = sum(p.amount for p in fresh)
    return {"mint": mint, "received": received, "fee": sum(p.amount for p in proofs) - received}


# --- restore and catching up --------------------------------------------------------------


async def restore(escrow: Escrow) -> dict[str, Any]:
    """Every configured mint: proofs the ledger still counts that the mint says are spent
    (a swap whose answer a crash lost, a token a restored home had sent) are marked spent,
    then the unspent proofs the seed derived go into the ledger."""
    found: dict[str, int] = {}
    gone: dict[str, int] = {}
    for mint in escrow.mints:
        cw = await escrow.wallet(mint)
        async with cw.exclusive():
            gone[mint] = await _reconcile(escrow, cw, mint)
            proofs = await ln.restore_all(cw)
        new = set(p.secret for p in proofs) - repo.known_secrets(
            escrow.agent.store, [p.secret for p in proofs]
        )
        with escrow.agent.store.transaction(escrow.now) as tx:
            repo.add_proofs(tx, mint, [p for p in proofs if p.secret in new], "restore")
        found[mint] = sum(p.amount for p in proofs if p.secret in new)
    return {"restored": found, "found_spent": gone, "balances": escrow.balances()}


async def _reconcile(escrow: Escrow, cw: Any, mint: str) -> int:
    """Mark spent what the ledger holds unspent at `mint` but the mint says is spent (NUT-07);
    the sum so marked."""
    held = repo.unspent(escrow.agent.store, mint)
    if not held:
        return 0
    states = await cw.states(held)
    spent = [p for p, s in zip(held, states, strict=True) if s["state"] == "spent"]
    if spent:
        with escrow.agent.store.transaction(escrow.now) as tx:
            repo.spend_proofs(tx, spent)
    return sum(p.amount for p in spent)


async def settle(escrow: Escrow) -> list[dict[str, Any]]:
    """Claim paid quotes and settle melts an earlier run left open; what was done."""
    done = []
    store = escrow.agent.store
    for quote, record in repo.records(store, QUOTE).items():
        if record.get("state") != "unpaid" or normalize(record["mint"]) not in escrow.mints:
            continue
        if escrow.now - int(record.get("issued_at", 0)) > QUOTE_WATCH_S:
            _mark(escrow, quote, record, "expired")  # (`escrow invoice --claim` still can)
            continue
        with contextlib.suppress(HiveError):  # the mint is down: next time
            cw = await escrow.wallet(record["mint"])
            if await ln.mint_quote_state(cw, quote) != "unpaid":
                try:
                    done.append(await claim(escrow, quote))
                except MintRefused:  # issued, and not to this wallet: never asked again
                    _mark(escrow, quote, record, "abandoned")
    for quote, record in repo.records(store, MELT).items():
        if record.get("state") == "pending":
            with contextlib.suppress(HiveError):
                done.append(await _settle_melt(escrow, quote, record))
    return done


def _mark(escrow: Escrow, quote: str, record: dict[str, Any], state: str) -> None:
    with escrow.agent.store.transaction(escrow.now) as tx:
        tx.set_kv(QUOTE + quote, {**record, "state": state})
