"""A held ticket's ecash is checked at its mint before the advisor relies on it (NUT-12 DLEQ,
NUT-07 states, the keyset's unit), against the real relay and a real Nutshell mint — behind
a proxy where the mint has to lie.  Each test names the attack; each failed before: the
advisor kept any well-formed ticket and found out what it was worth only at redemption,
after the work was done."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import nostr_sdk as sdk
import pytest

from agent.escrow import checks
from agent.escrow.planning import plan_ticket
from agent.escrow.wallet import CashuWallet
from agent.store import escrow as erepo
from events.errors import TicketInvalid
from events.escrow import TICKET, Part, PartRole, Terms, Ticket, TicketType, lock_hash
from tests.advisory_world import World, funded, until, world
from tests.test_escrow_attacks import _Lies, credential, deliver, forged_ticket, lying_mint

pytestmark = pytest.mark.anyio
__all__ = ["lying_mint"]  # the fixture, shared with test_escrow_attacks.py


def verdict(w: World, ticket_id: str) -> str | None:
    return erepo.checked(w.advisor.agent.store, ticket_id)


def refusals(w: World, code: str = "TICKET_INVALID") -> int:
    return w.advisor.agent.store.error_counts().get(code, 0)


async def test_made_up_proofs_are_found_before_any_work(
    tmp_path: Path, relay_url: str, mint_url: str
) -> None:
    """Dishonest node: a ticket of proofs the mint never signed (with a made-up DLEQ proof, on
    the mint's real keyset, or on a keyset it does not have).  The advisor's agent now checks
    every held ticket at the mint: a real one passes, these are refused (TICKET_INVALID,
    counted, the reason kept with the ticket), and `advise --ticket` will not name them."""
    async with world(tmp_path, relay_url, mint=mint_url) as w:
        assert w.advisor_escrow is not None
        real, cred = await funded(w, TicketType.SINGLE, amount_sat=40)
        await until(lambda: verdict(w, real.ticket_id) == checks.OK)
        assert all(p.dleq is not None for part in real.parts for p in part.proofs)
        await checks.require_checked(w.advisor_escrow, real.ticket_id)  # passes
        node, keyset = w.node.agent.keys, real.parts[0].proofs[0].id
        made_up = forged_ticket(node, w.advisor.me, mint_url, cred, keyset=keyset)
        elsewhere = forged_ticket(node, w.advisor.me, mint_url, cred)  # keyset 0011…
        before = refusals(w)
        deliver(w, node, [made_up, elsewhere])
        await until(
            lambda: None not in (verdict(w, made_up.ticket_id), verdict(w, elsewhere.ticket_id))
        )
        assert "was not signed by the mint (its DLEQ proof fails)" in str(
            verdict(w, made_up.ticket_id)
        )
        assert "the mint does not serve keyset 0011111111111111" in str(
            verdict(w, elsewhere.ticket_id)
        )
        assert refusals(w) == before + 2
        for fake in (made_up, elsewhere):
            with pytest.raises(TicketInvalid, match="does not pay"):
                await checks.require_checked(w.advisor_escrow, fake.ticket_id)
        from agent.dashboard import more

        shown = {t["id"]: t["ecash"] for t in more.escrow(w.advisor.agent.store)["tickets"]}
        assert shown[real.ticket_id] == checks.OK  # (the dashboard's escrow page)
        listed = {t["ticket_id"]: t["checked"] for t in erepo.tickets(w.advisor.agent.store)}
        assert listed[real.ticket_id] == checks.OK and listed[made_up.ticket_id].startswith(
            "TICKET_INVALID: "
        )


async def test_a_ticket_without_dleq_proofs_is_refused_on_arrival(
    tmp_path: Path, relay_url: str, mint_url: str
) -> None:
    """A ticket whose proofs carry no DLEQ proof cannot be checked before redemption: refused
    at intake, not stored."""
    async with world(tmp_path, relay_url, mint=mint_url) as w:
        cred, node = await credential(w), w.node.agent.keys
        bare = forged_ticket(node, w.advisor.me, mint_url, cred)
        proofs = [p.model_copy(update={"dleq": None}) for p in bare.parts[0].proofs]
        bare = bare.model_copy(
            update={"parts": [bare.parts[0].model_copy(update={"proofs": proofs})]}
        )
        before = refusals(w)
        deliver(w, node, [bare])
        assert refusals(w) == before + 1
        assert erepo.ticket(w.advisor.agent.store, bare.ticket_id) is None


async def locked_ticket(
    funder: CashuWallet, w: World, cred: str, mint: str, amount: int, spare: int = 0
) -> Ticket:
    """A ticket of real locked ecash made at the real mint (`funder` talks to it directly),
    naming `mint` (the proxy the advisor checks through); `spare` sat more are minted (for
    the fee of the lock's swap, at a mint that charges one: the rest is change)."""
    preimage, locktime = secrets.token_bytes(32), int(time.time()) + 3600
    _, proofs = await funder.topup(amount + spare)
    _, locked = await funder.lock(
        proofs, amount, hash_hex=lock_hash(preimage), payee_xonly=w.advisor.me,
        refund_xonly=w.node.me, locktime=locktime,
    )  # fmt: skip
    part = Part(index=0, role=PartRole.RELEASE, amount_sat=amount,
                lock_hash=lock_hash(preimage), locktime=locktime, proofs=locked)  # fmt: skip
    terms = Terms(schema_pattern="hive:fee-policy/*", max_danger=5, deadline=locktime)
    return Ticket(ticket_id=secrets.token_hex(16), type=TicketType.SINGLE, mint=mint,
                  node=w.node.me, advisor=w.advisor.me, credential_id=cred,
                  refund_pubkey=w.node.me, terms=terms, parts=[part],
                  created_at=int(time.time()))  # fmt: skip


async def ticket_through(w: World, tmp_path: Path, mint_url: str, url: str) -> Ticket:
    """A 16-sat ticket of real ecash locked at the mint (`mint_url`), naming `url` (the proxy
    in front of it), for a credential granted to the advisor; not delivered yet."""
    cred = await credential(w)
    async with CashuWallet(tmp_path / "funder", mint_url, w.node.agent.keys) as funder:
        return await locked_ticket(funder, w, cred, url, 16)


async def test_spent_ecash_and_a_mint_that_cannot_tell(
    tmp_path: Path, relay_url: str, mint_url: str, lying_mint: type[_Lies]
) -> None:
    """Dishonest node: real ecash it already spent elsewhere (the mint says SPENT) is refused.
    A mint that cannot tell — it answers a state check with nothing, or says PENDING (a swap
    under way) — leaves the ticket unchecked and asked again, neither refused nor passed,
    until it answers.  A keyset in another unit (msat, usd: worth something else than the
    ticket says) is refused."""
    url = lying_mint.url  # type: ignore[attr-defined]
    async with world(tmp_path, relay_url, mint=url) as w:
        assert w.advisor_escrow is not None
        cred, node = await credential(w), w.node.agent.keys
        async with CashuWallet(tmp_path / "funder", mint_url, node) as funder:
            spent = await locked_ticket(funder, w, cred, url, 24)
            later = await locked_ticket(funder, w, cred, url, 16)
            busy = await locked_ticket(funder, w, cred, url, 8)
        lying_mint.state = "SPENT"
        deliver(w, node, [spent])
        await until(lambda: verdict(w, spent.ticket_id) is not None)
        assert verdict(w, spent.ticket_id) == "TICKET_INVALID: part 0's ecash is already spent"
        lying_mint.state, lying_mint.lying = None, True
        before = refusals(w, "MINT_REFUSED")
        deliver(w, node, [later])
        await until(lambda: refusals(w, "MINT_REFUSED") > before)
        assert verdict(w, later.ticket_id) is None  # not refused: asked again
        lying_mint.lying, lying_mint.state = False, "PENDING"
        before = refusals(w, "MINT_REFUSED")
        deliver(w, node, [busy])
        await until(lambda: refusals(w, "MINT_REFUSED") >= before + 2)  # both, again
        assert verdict(w, later.ticket_id) is None and verdict(w, busy.ticket_id) is None
        lying_mint.state = None
        await until(lambda: verdict(w, later.ticket_id) == checks.OK, timeout=30)
        await until(lambda: verdict(w, busy.ticket_id) == checks.OK, timeout=30)
        lying_mint.unit = "usd"
        wallet = await w.advisor_escrow.wallet(url)
        with pytest.raises(TicketInvalid, match=r"is in usd, not sat"):
            await checks.check_ecash(later, wallet, {})  # (a fresh cache of the mint's keys)
        # a keyset the mint retires (NUT-02 final_expiry) before the part's locktime: its
        # ecash could stop being redeemable while the advisor may still redeem it
        lying_mint.unit, retired = None, later.parts[0].locktime - 60
        lying_mint.final_expiry = retired
        with pytest.raises(TicketInvalid, match=rf"retires keyset \w+ at {retired}, before"):
            await checks.check_ecash(later, wallet, {})
        lying_mint.final_expiry = later.parts[0].locktime + 60  # after it: fine
        assert await checks.check_ecash(later, wallet, {}) == 0


async def test_a_command_names_only_a_ticket_held_and_checked(
    tmp_path: Path, relay_url: str, mint_url: str
) -> None:
    """`advise(ticket=…)` (the CLI's and the demo's) first requires the ticket: one that has
    not reached the advisor cannot be checked (NOT_FOUND, after a short wait for it); a held
    one is checked now if the loop has not yet.  A part redeemed since is not asked about
    again (its ecash is spent by us, not by the funder)."""
    from events.errors import NotFound

    async with world(tmp_path, relay_url, mint=mint_url) as w:
        assert w.advisor_escrow is not None
        with pytest.raises(NotFound, match="has not reached this agent"):
            await checks.require_checked(w.advisor_escrow, "ab" * 16, timeout_s=0.3)
        ticket, _ = await funded(w, TicketType.SINGLE, amount_sat=32)
        chan = (await w.channels())[0]
        _, got = await w.advisor.advise(
            w.node.me, "hive:fee-policy/v1", "set_single",
            {"channel": chan.short_channel_id, "fee_ppm": chan.policy.ppm + 10},
            ticket=ticket.ticket_id,
        )  # fmt: skip
        assert got is not None and got.preimage is not None, got
        assert verdict(w, ticket.ticket_id) == checks.OK
        await until(lambda: sum(w.advisor_escrow.balances().values()) == 32)  # redeemed
        assert await checks.check_held(w.advisor_escrow, ticket.ticket_id, again=True) == checks.OK


def test_tickets_held_before_the_checks_are_legacy(tmp_path: Path) -> None:
    """A store of the previous release holding a ticket (its proofs without DLEQ proofs):
    migrated, the ticket is `legacy`, never refused for what it could not carry, and the
    loop does not check it."""
    import sqlite3

    from agent.store import Store

    path = tmp_path / "agent.sqlite"
    store = Store(path)
    with store.transaction(int(time.time())) as tx:
        old = forged_ticket(sdk.Keys.generate(), "cd" * 32, "http://m", "ef" * 16)
        erepo.save_ticket(tx, old, "payee")
    store.close()
    conn = sqlite3.connect(path)  # as the release before: no verdicts, slice at 0
    conn.executescript(
        "DROP INDEX escrow_tickets_unchecked; ALTER TABLE escrow_tickets DROP COLUMN checked;"
        " ALTER TABLE escrow_tickets DROP COLUMN checked_at;"
        " UPDATE schema_versions SET version = 0 WHERE slice = 'escrow';"
    )
    conn.close()
    again = Store(path)
    assert again.slice_versions()["escrow"] == 1
    assert erepo.checked(again, old.ticket_id) == checks.LEGACY
    assert erepo.unchecked_tickets(again) == []


async def test_the_planner_refuses_a_ticket_too_large_to_send(
    tmp_path: Path, relay_url: str, mint_url: str
) -> None:
    """Careless operator: 16 milestones of 1,023 sat each are 160 proofs, more than one private
    message carries: the ticket could never be sent, so its ecash would have been locked for
    nothing.  Refused (INVALID_PARAMS) before anything is locked; the placeholder the planner
    sizes a ticket with is never smaller than the real ticket the mint's proofs make."""
    from events.errors import InvalidParams

    args = dict(schema_pattern="hive:fee-policy/*", max_danger=5, bonus_sat=0, metric=None,
                params_hash=None, mint=mint_url, advisor="a" * 64, credential_id="c" * 32,
                locked_until=int(time.time()) + 3600, deadline=int(time.time()) + 3600)  # fmt: skip
    with pytest.raises(InvalidParams, match="160 proofs, too many"):
        plan_ticket(TicketType.MILESTONE, 16 * 1023, commands=16, milestones=list(range(1, 17)),
                    **args)  # fmt: skip
    async with world(tmp_path, relay_url, mint=mint_url) as w:
        real, _ = await funded(w, TicketType.SINGLE, amount_sat=255)  # 8 proofs
        size = len(TICKET.rumor(w.node.me, real, created_at=0).content)
        from agent.escrow.planning import _placeholder_proofs

        placeholder = _placeholder_proofs(255, "0" * 64, real.parts[0].locktime, "0" * 64)
        assert len(placeholder) == len(real.parts[0].proofs) == 8
        estimate = real.parts[0].model_copy(update={"proofs": placeholder})
        estimated = len(
            TICKET.rumor(
                w.node.me, real.model_copy(update={"parts": [estimate]}), created_at=0
            ).content
        )
        assert estimated >= size, (estimated, size)
        assert json.loads(real.parts[0].proofs[0].secret)[0] == "HTLC"


async def test_a_check_cut_short_leaves_nothing_open(tmp_path: Path) -> None:
    """A command's check is bounded by its time: a wallet opened against a mint that accepts
    and never answers, cancelled by that bound, is closed (its HTTP client and database
    engine), not left behind uncached."""
    import socket
    import threading

    import anyio

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    wallet = CashuWallet(tmp_path, url, sdk.Keys.generate())
    with anyio.move_on_after(0.5) as scope:
        await wallet.open()
    assert scope.cancelled_caught and wallet.w is None  # closed as it was cancelled
    for conn in (*held, server):
        conn.close()


async def test_a_mint_no_longer_ours_is_asked_again_not_refused(
    tmp_path: Path, relay_url: str, mint_url: str, lying_mint: type[_Lies]
) -> None:
    """Configuration, not the ticket: while the ticket's mint is not among the advisor's mints
    the check raises MINT_NOT_ALLOWED and stores no verdict; listed again, it passes."""
    from events.errors import MintNotAllowed

    url = lying_mint.url  # type: ignore[attr-defined]
    async with world(tmp_path, relay_url, mint=url) as w:
        assert w.advisor_escrow is not None
        escrow, node = w.advisor_escrow, w.node.agent.keys
        ticket = await ticket_through(w, tmp_path, mint_url, url)
        lying_mint.state = "PENDING"  # (the loop cannot finish its check meanwhile)
        deliver(w, node, [ticket])
        ours, escrow.mints = escrow.mints, []  # the operator took the mint out of policy.json
        with pytest.raises(MintNotAllowed):
            await checks.check_held(escrow, ticket.ticket_id)
        assert verdict(w, ticket.ticket_id) is None
        escrow.mints, lying_mint.state = ours, None
        await until(lambda: verdict(w, ticket.ticket_id) == checks.OK, timeout=30)


async def test_the_loop_and_a_command_check_a_ticket_once(
    tmp_path: Path, relay_url: str, mint_url: str, lying_mint: type[_Lies]
) -> None:
    """A command naming a ticket the loop is checking (a slow mint) waits for that check and
    takes its verdict: one state request at the mint, one refusal counted — not one each."""
    import anyio

    url = lying_mint.url  # type: ignore[attr-defined]
    async with world(tmp_path, relay_url, mint=url) as w:
        assert w.advisor_escrow is not None
        escrow, node = w.advisor_escrow, w.node.agent.keys
        ticket = await ticket_through(w, tmp_path, mint_url, url)
        lying_mint.state, lying_mint.slow_s = "SPENT", 1.0
        before = lying_mint.checks
        deliver(w, node, [ticket])
        await until(lambda: lying_mint.checks > before)  # the loop's check is at the mint
        got: list[str] = []
        async with anyio.create_task_group() as tg:
            for _ in range(2):  # two commands' checks, as the loop's is under way
                tg.start_soon(lambda: _append(got, checks.check_held(escrow, ticket.ticket_id)))
        spent = "TICKET_INVALID: part 0's ecash is already spent"
        assert got == [spent, spent] and verdict(w, ticket.ticket_id) == spent
        assert lying_mint.checks == before + 1
        assert refusals(w) == 1
        assert escrow.checking == {}


async def _append(out: list[str], verdict: Any) -> None:
    out.append(await verdict)
