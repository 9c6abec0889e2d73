"""Escrow against a real Nutshell mint: who can spend a ticket, when, and what a mint must
support before any funds are locked."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import anyio
import nostr_sdk as sdk
import pytest

from agent import app
from agent.escrow.mint import check_mint, fetch_info, missing_nuts
from agent.escrow.wallet import CashuWallet, signing_key, to_cashu
from agent.settings import RelaysConfig, Settings
from events.errors import MintNotAllowed, MintRefused, MintUnsupported
from events.escrow import CashuProof, lock_hash

pytestmark = pytest.mark.anyio


def keys_with_parity(odd: bool) -> sdk.Keys:
    while True:
        keys = sdk.Keys.generate()
        secret = bytes.fromhex(keys.secret_key().to_hex())
        from coincurve import PrivateKey

        if (PrivateKey(secret).public_key.format()[0] == 3) == odd:
            return keys


@pytest.fixture
async def wallet(
    tmp_path: Path, mint_url: str
) -> AsyncIterator[Callable[..., Awaitable[CashuWallet]]]:
    """Open wallets on the test mint; all closed at teardown."""
    async with AsyncExitStack() as stack:

        async def open_(keys: sdk.Keys) -> CashuWallet:
            w = CashuWallet(tmp_path / secrets.token_hex(4), mint_url, keys)
            return await stack.enter_async_context(w)

        yield open_


async def locked_ticket(
    funder: CashuWallet, payee: sdk.Keys, refund: sdk.Keys, amount: int, locktime: int
) -> tuple[bytes, list[CashuProof]]:
    _, proofs = await funder.topup(amount)
    preimage = secrets.token_bytes(32)
    change, locked = await funder.lock(
        proofs,
        amount,
        hash_hex=lock_hash(preimage),
        payee_xonly=payee.public_key().to_hex(),
        refund_xonly=refund.public_key().to_hex(),
        locktime=locktime,
    )
    assert change == [] and sum(p.amount for p in locked) == amount
    return preimage, locked


@pytest.mark.parametrize("odd", [False, True], ids=["even-y keys", "odd-y keys"])
async def test_who_can_redeem(wallet, odd: bool, capfd: pytest.CaptureFixture[str]) -> None:
    operator, advisor, mallory = (keys_with_parity(odd) for _ in range(3))
    assert signing_key(advisor).public_key.format().hex() == "02" + advisor.public_key().to_hex()
    funder = await wallet(operator)
    payee = await wallet(advisor)
    thief = await wallet(mallory)
    preimage, locked = await locked_ticket(funder, advisor, operator, 64, int(time.time()) + 3600)

    with pytest.raises(MintRefused, match="no HTLC preimage"):
        await payee.refund(locked)  # the advisor's signature alone: no preimage
    with pytest.raises(MintRefused, match="does not match"):
        await payee.redeem(locked, secrets.token_hex(32))  # a wrong preimage
    with pytest.raises(MintRefused, match="signature"):
        await thief.redeem(locked, preimage.hex())  # a third party who learned the preimage
    with pytest.raises(MintRefused, match="signature"):
        await _swap_unsigned(payee, locked, preimage.hex())  # the preimage without a signature
    fresh = await payee.redeem(locked, preimage.hex())
    assert sum(p.amount for p in fresh) == 64
    states = await payee.states(locked)
    assert {s["state"] for s in states} == {"spent"}
    assert {s["preimage"] for s in states} == {preimage.hex()}  # NUT-07 recovers it
    with pytest.raises(MintRefused, match="spent"):
        await payee.redeem(locked, preimage.hex())  # a spent ticket cannot be spent again
    out, err = capfd.readouterr()  # the library logs keys at TRACE and proofs at ERROR: not here
    for private in (operator, advisor, mallory):
        assert private.secret_key().to_hex() not in out + err
    assert signing_key(advisor).to_hex() not in out + err
    assert locked[0].secret not in out + err


async def _swap_unsigned(w: CashuWallet, locked: list[CashuProof], preimage: str) -> None:
    """Ask the mint to swap with only the preimage as witness (the library would sign)."""
    from cashu.core.base import HTLCWitness
    from cashu.wallet.v1_api import LedgerAPI

    from agent.escrow.wallet import _mint_error

    proofs = [to_cashu(p, HTLCWitness(preimage=preimage).model_dump_json()) for p in locked]
    outputs = await w.wallet.construct_outputs([p.amount for p in locked])
    try:
        await LedgerAPI.split(w.wallet, proofs, outputs)
    except Exception as exc:  # noqa: BLE001
        raise _mint_error(exc) from None


async def test_refund_only_after_the_locktime(wallet) -> None:
    operator, advisor = sdk.Keys.generate(), sdk.Keys.generate()
    funder = await wallet(operator)
    _, locked = await locked_ticket(funder, advisor, operator, 32, int(time.time()) + 2)
    with pytest.raises(MintRefused):
        await funder.refund(locked)
    await anyio.sleep(3.2)
    back = await funder.refund(locked)
    assert sum(p.amount for p in back) == 32
    with pytest.raises(MintRefused, match="spent"):
        await funder.refund(locked)


async def test_the_mint_must_be_configured_and_capable(tmp_path: Path, mint_url: str) -> None:
    info = await check_mint(mint_url, [mint_url])
    assert missing_nuts(info) == []
    with pytest.raises(MintNotAllowed):
        await check_mint(mint_url, ["http://127.0.0.1:1"])
    trimmed = json.loads(json.dumps(await fetch_info(mint_url)))
    del trimmed["nuts"]["14"]
    trimmed["nuts"]["7"] = {"supported": False}
    assert missing_nuts(trimmed) == ["NUT-07", "NUT-14"]


class _Stub(BaseHTTPRequestHandler):
    info: ClassVar[dict] = {}
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self._reply()

    def do_POST(self) -> None:
        self._reply()

    def _reply(self) -> None:
        type(self).seen.append(f"{self.command} {self.path}")
        body = json.dumps(self.info if self.path == "/v1/info" else {}).encode()
        self.send_response(200 if self.path == "/v1/info" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub_mint(mint_url: str) -> Iterator[tuple[str, list[str]]]:
    """A server that answers only /v1/info, copied from the real mint minus NUT-14."""
    import httpx

    info = httpx.get(f"{mint_url}/v1/info").json()
    del info["nuts"]["14"]
    handler = type("Stub", (_Stub,), {"info": info, "seen": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.seen
    server.shutdown()
    server.server_close()


async def test_a_mint_without_nut14_gets_no_funding_request(
    tmp_path: Path, relay_url: str, stub_mint: tuple[str, list[str]]
) -> None:
    from agent.advisory.policy import PolicyConfig
    from agent.node.simnode import SimBackend
    from events.escrow import TicketType
    from tests.node_scenario import ring

    url, seen = stub_mint
    net, ids = ring()
    config = RelaysConfig.single(relay_url)
    built = app.node_agent(
        Settings(home=tmp_path / "node"),
        sdk.Keys.generate(),
        config,
        SimBackend(net, ids[0]),
        PolicyConfig(mints=[url]),
    )
    async with built.agent as agent:
        escrow_ = built.escrow
        with pytest.raises(MintUnsupported, match="NUT-14"):
            await escrow_.fund(
                advisor=sdk.Keys.generate().public_key().to_hex(),
                credential_id="ab" * 16,
                kind=TicketType.SINGLE,
                amount_sat=10,
                schema_pattern="hive:fee-policy/*",
                max_danger=3,
            )
        await escrow_.close()
        assert seen == ["GET /v1/info"]  # nothing else ever reached it
        assert not (tmp_path / "node" / "cashu").exists()  # the wallet library never started
        assert agent.store.conn.execute("SELECT count(*) FROM escrow_secrets").fetchone()[0] == 0
