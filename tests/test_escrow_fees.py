"""Escrow at a mint that charges input fees (NUT-02 `input_fee_ppk`), against the real relay
and a real Nutshell mint charging 1 sat for every proof spent.

Many public mints charge such fees.  Before, funding a ticket there failed with the mint's
"Amounts do not sum to -9" (the inputs covered the amount, not the fee), paying an invoice
or sending a token did too, and the advisor's check had no idea what redeeming would cost.
Now the spender pays the fee for what it spends, as in every Cashu wallet: the funder for
the ecash it locks, the advisor for the locked proofs it redeems — which its check states,
refusing a part the fee would eat whole."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import nostr_sdk as sdk
import pytest

from agent.escrow import checks
from agent.escrow.mint import MintProcess
from agent.escrow.wallet import CashuWallet
from agent.store import Store
from agent.store import escrow as erepo
from agent.store.advisory import Db, _rows
from events.errors import InsufficientBalance, InvalidParams, TicketInvalid
from events.escrow import TicketType
from events.receipt import Status
from tests.advisory_world import funded, parts, until, world
from tests.test_escrow_attacks import credential, deliver
from tests.test_escrow_checks import locked_ticket
from tests.test_escrow_flow import advisor_balance, fee
from tests.test_escrow_wallet import agent, balance, external_invoice, failed, hive, ok

pytestmark = pytest.mark.anyio
PPK = 1000  # 1 sat per proof spent: every fee is plain to see


@pytest.fixture(scope="module")
def fee_mint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    mint = MintProcess(tmp_path_factory.mktemp("fee-mint"), input_fee_ppk=PPK)
    yield mint.start()
    mint.stop()


def melt_inputs(home: Path, quote: str) -> list[int]:
    """The amounts of the proofs a payment's melt spent (its record in the agent's store)."""
    store = Store(home / "agent.sqlite")
    try:
        return [p["amount"] for p in store.kv(f"escrow-melt:{quote}")["inputs"]]
    finally:
        store.close()


def spent(db: Db, mint: str) -> int:
    """How many of the wallet's proofs at `mint` were spent (each cost the mint's 1 sat)."""
    return len(_rows(db, "SELECT 1 FROM wallet_proofs WHERE mint = ? AND state = 'spent'", (mint,)))


async def test_a_ticket_pays_its_face_less_the_fee_for_redeeming_it(
    tmp_path: Path, relay_url: str, fee_mint: str
) -> None:
    async with world(tmp_path, relay_url, mint=fee_mint) as w:
        assert w.node_escrow is not None and w.advisor_escrow is not None
        ticket, _ = await funded(w, TicketType.SINGLE, amount_sat=50)
        # the funder paid 1 sat for each proof its lock spent, out of its own change
        lock_fee = spent(w.node.agent.store, fee_mint)
        assert lock_fee > 0 and w.node_escrow.balances() == {fee_mint: 1000 - 50 - lock_fee}
        # the advisor's check says what redeeming will cost: one sat per locked proof
        redeem_fee = len(ticket.parts[0].proofs)
        await until(lambda: erepo.checked(w.advisor.agent.store, ticket.ticket_id) is not None)
        verdict = erepo.checked(w.advisor.agent.store, ticket.ticket_id)
        assert verdict == f"ok: {redeem_fee} sat of mint fees to redeem"
        assert checks.passed(verdict) and checks.label("payee", verdict, short=True) == "ok"
        # it holds its place in the bounds on tickets held (it escaped them: 'ok' only counted)
        assert erepo.live_tickets_from(w.advisor.agent.store, w.node.me) == 1
        assert checks.label("payee", verdict).endswith(f"; {redeem_fee} sat of mint fees to redeem")
        done = await fee(w, 110, ticket.ticket_id)
        assert done.status == Status.OK and done.preimage is not None
        await until(lambda: parts(w, ticket.ticket_id, "payee") == ["redeemed"])
        assert advisor_balance(w) == 50 - redeem_fee


async def test_a_part_the_fee_would_eat_is_refused_before_any_work(
    tmp_path: Path, relay_url: str, fee_mint: str
) -> None:
    """A 1-sat part in one proof redeems for nothing at a mint charging 1 sat a proof.  The
    funder's agent will not lock one (it would strand the sat: a refund costs the fee too);
    a dishonest funder who locks one anyway finds the advisor refusing it on arrival, and a
    command naming it."""
    async with world(tmp_path, relay_url, mint=fee_mint) as w:
        with pytest.raises(InvalidParams, match=r"part 0 \(1 sat\) would pay nothing"):
            await funded(w, TicketType.SINGLE, amount_sat=1)
        assert w.node_escrow is not None and w.node_escrow.balances() == {fee_mint: 1000}
        cred, node = await credential(w), w.node.agent.keys
        other = sdk.Keys.generate()  # (another seed: the node's wallet has used its outputs)
        async with CashuWallet(tmp_path / "funder", fee_mint, other) as funder:
            tiny = await locked_ticket(funder, w, cred, fee_mint, 1, spare=20)
        deliver(w, node, [tiny])
        await until(lambda: erepo.checked(w.advisor.agent.store, tiny.ticket_id) is not None)
        assert erepo.checked(w.advisor.agent.store, tiny.ticket_id) == (
            "TICKET_INVALID: part 0 pays nothing: redeeming its 1 sat costs 1 sat in mint fees"
        )
        assert w.advisor.agent.store.error_counts().get("TICKET_INVALID") == 1
        with pytest.raises(TicketInvalid, match="pays nothing"):
            await fee(w, 110, tiny.ticket_id)


def test_the_wallet_pays_and_sends_at_a_mint_with_fees(tmp_path: Path, fee_mint: str) -> None:
    """Invoices paid and a token sent at a mint that charges fees: the inputs cover the fees,
    every fee is said, nothing is left with the mint (every sat the inputs gave beyond the
    amount and the fees comes back as change: some was kept, as blank outputs were made for
    the quote's fee reserve only), and the balance is what was minted less what was said."""
    alice, bob = agent(tmp_path / "alice", fee_mint), agent(tmp_path / "bob", fee_mint)
    ok(hive(alice, "--json", "escrow", "topup", "--amount", "200"))
    paid = ok(hive(alice, "--json", "escrow", "pay", external_invoice(40)))
    assert paid["state"] == "paid" and paid["swap_fee"] > 0
    assert balance(alice) == {fee_mint: 200 - paid["paid"]}
    for amount in (3, 56):  # (amounts where exact inputs overshoot: 3 + 2 → 6, 56 + 3 → 60)
        before = balance(alice)[fee_mint]
        done = ok(hive(alice, "--json", "escrow", "pay", external_invoice(amount)))
        inputs = melt_inputs(alice, done["quote"])
        # everything the inputs gave beyond the amount, their fee (1 sat each) and the
        # Lightning fee (FakeWallet's: 1 sat) came back as change: nothing left with the mint
        assert sum(inputs) - len(inputs) - amount - 1 == done["change"], (inputs, done)
        assert done["paid"] == amount + 1 + len(inputs) + done["swap_fee"]
        assert balance(alice) == {fee_mint: before - done["paid"]}
    said = hive(alice, "escrow", "pay", external_invoice(5))
    assert said.returncode == 0, said.stderr
    assert re.fullmatch(
        r"paid 5 sat \(fee reserve \d+ sat, \d+ sat back as change"
        r"(, \d+ sat of mint fees)?; \d+ sat spent\)\n",
        said.stdout,
    ), said.stdout
    before = balance(alice)[fee_mint]
    sent = ok(hive(alice, "--json", "escrow", "send", "10"))
    assert sent["amount"] == 10 and sent["fee"] > 0
    assert balance(alice) == {fee_mint: before - 10 - sent["fee"]}
    got = hive(bob, "escrow", "receive", sent["token"])
    assert got.returncode == 0, got.stderr
    # the token's 10 sat come in two proofs (8 + 2): the receiver pays 1 sat for each
    assert got.stdout == f"received 8 sat at {fee_mint} (2 sat of mint fees)\n"
    assert balance(bob) == {fee_mint: 8}
    # a token worth no more than the fee for receiving it: said so (it was the library's
    # "not enough values to unpack (expected 2, got 0)", MINT_REFUSED)
    dust = ok(hive(alice, "--json", "escrow", "send", "1"))
    refused = hive(bob, "--json", "escrow", "receive", dust["token"])
    assert failed(refused, "TOKEN_INVALID", 65) == (
        "the token's 1 sat would all go to the mint's fee for receiving it (1 sat, NUT-02): "
        "not received"
    )
    assert balance(bob) == {fee_mint: 8}


async def test_a_ticket_the_fees_would_leave_short_half_way_locks_nothing(
    tmp_path: Path, relay_url: str, fee_mint: str
) -> None:
    """Each part of a ticket is its own swap with its own fee, paid out of the change of the
    part before.  A ticket the wallet could lock only some parts of is refused before any is
    locked (990 sat in three parts from 1,000: it failed at a later part, leaving the parts
    before locked until their locktime)."""
    async with world(tmp_path, relay_url, mint=fee_mint) as w:
        assert w.node_escrow is not None
        with pytest.raises(InsufficientBalance, match="needed and the mint's fees"):
            await funded(w, TicketType.MILESTONE, amount_sat=990, milestones=[1, 2, 3])
        assert w.node_escrow.balances() == {fee_mint: 1000}
        assert erepo.records(w.node.agent.store, "escrow-draft:") == {}
        ticket = await w.node_escrow.fund(
            advisor=w.advisor.me, credential_id=(await credential(w)), kind=TicketType.MILESTONE,
            amount_sat=900, milestones=[1, 2, 3], schema_pattern="hive:fee-policy/*",
            max_danger=5,
        )  # fmt: skip
        assert sum(p.amount_sat for p in ticket.parts) == 900
        assert 0 < w.node_escrow.balances()[fee_mint] < 100  # (the change, less the fees)


async def test_wallets_at_two_mints_keep_their_own_keysets(
    tmp_path: Path, mint_url: str, fee_mint: str
) -> None:
    """An agent whose policy lists two mints opens a wallet at each in one process.  The
    Cashu library kept every wallet's keysets in one shared dict, so the second wallet could
    swap with the first mint's keyset ("keyset id unknown") — found when these tests first
    ran beside the others."""
    keys = sdk.Keys.generate()
    async with (
        CashuWallet(tmp_path / "a", fee_mint, keys) as at_fees,
        CashuWallet(tmp_path / "b", mint_url, keys) as plain,
    ):
        assert not set(at_fees.wallet.keysets) & set(plain.wallet.keysets)
        assert plain.output_fee_ppk() == 0 and at_fees.output_fee_ppk() == PPK
        _, proofs = await plain.topup(8)
        change, sent = await plain.split(proofs, 5)
        assert sum(p.amount for p in change + sent) == 8  # (no fee at this mint)
        _, proofs = await at_fees.topup(16)
        change, sent = await at_fees.split(proofs, 5)
        assert sum(p.amount for p in sent) == 5
        assert sum(p.amount for p in change) == 16 - 5 - at_fees.input_fee(proofs)
