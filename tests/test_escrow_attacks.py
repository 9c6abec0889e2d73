"""Escrow under attack: a careless operator, a dishonest node, a dishonest advisor and a lying
mint, against the real relay and a real Nutshell mint (FakeWallet).  Each test names the
attack; each failed on the code before its fix."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import anyio
import httpx
import nostr_sdk as sdk
import pytest

from agent.nostr.client import Incoming
from agent.store import escrow as erepo
from events import nip59
from events.credential import Tier
from events.errors import (
    InsufficientBalance,
    InvalidParams,
    MintRefused,
    MintUnavailable,
    NotFound,
)
from events.escrow import TICKET, CashuProof, Dleq, Part, PartRole, Terms, Ticket, TicketType
from tests.advisory_world import World, funded, parts, until, world
from tests.conftest import HIVE_AGENT

pytestmark = pytest.mark.anyio
FEE = "hive:fee-policy/v1"


async def credential(w: World) -> str:
    cred = w.grant(tier=Tier.ADVANCED, schemas=("hive:fee-policy/*",))
    await w.wait_credential(cred)
    return cred.credential_id


def drafts(w: World) -> dict[str, Any]:
    return erepo.records(w.node.agent.store, "escrow-draft:")


@pytest.mark.parametrize(
    "milestones",
    [[2, 1], [1, 1], [0, 2], list(range(1, 18))],
    ids=["falling", "repeated", "zero", "17 parts"],
)
async def test_a_ticket_that_cannot_be_sent_locks_nothing(
    tmp_path: Path, relay_url: str, mint_url: str, milestones: list[int]
) -> None:
    """Careless operator: `escrow fund --type milestone --milestones 2,1` (or 1,1, 0,2, or more
    than 16 milestones).  The ticket's shape was checked only after every part's ecash had been
    swapped into locks: the ticket was never sent, the locked ecash sat in drafts nothing ever
    refunds (or, for a part that did not validate, the inputs stayed 'unspent' in the ledger
    though the mint had spent them)."""
    async with world(tmp_path, relay_url, mint=mint_url) as w:
        assert w.node_escrow is not None
        cred = await credential(w)
        await w.node_escrow.topup(1000)
        with pytest.raises(InvalidParams):
            await w.node_escrow.fund(
                advisor=w.advisor.me,
                credential_id=cred,
                kind=TicketType.MILESTONE,
                amount_sat=170,
                schema_pattern="hive:fee-policy/*",
                max_danger=5,
                milestones=milestones,
            )
        assert w.node_escrow.balances() == {w.node_escrow.mints[0]: 1000}
        assert drafts(w) == {}
        status = await (await w.node_escrow.wallet(w.node_escrow.mints[0])).states(
            erepo.unspent(w.node.agent.store, w.node_escrow.mints[0])
        )
        assert {s["state"] for s in status} == {"unspent"}  # the ledger is the mint's truth


@pytest.mark.parametrize(
    "bad",
    [
        ["--type", "milestone", "--milestones", "2,1"],
        ["--type", "milestone", "--milestones", "1,x"],
        ["--type", "milestone", "--milestones", ",".join(str(i) for i in range(1, 18))],
        ["--locktime-s", "-60"],
        ["--locktime-s", "99999999999"],  # a typo: the ecash locked for 3,000 years
        ["--credential", "c0ffee"],  # an id that matches nothing is passed on as it is
    ],
    ids=["falling", "not numbers", "17 parts", "past locktime", "far locktime", "short credential"],
)
def test_fund_refuses_a_ticket_it_could_not_send_before_connecting(
    tmp_path: Path, bad: list[str]
) -> None:
    """The same through the CLI: refused as INVALID_PARAMS before any relay or mint is asked
    (before, `--credential c0ffee` swapped the ecash into locks and then failed to build the
    ticket; `--milestones 1,x` ended in INTERNAL)."""
    from tests.test_cli_plumbing import run

    home = tmp_path / "home"
    assert run(home, "keys", "new").returncode == 0
    (home / "policy.json").write_text(json.dumps({"mints": ["http://127.0.0.1:9"]}))
    args = {"--credential": "ab" * 16, "--type": "single"}
    for flag, value in zip(bad[::2], bad[1::2], strict=True):
        args[flag] = value
    extra = [x for kv in args.items() for x in kv]
    done = run(home, "escrow", "fund", "cd" * 32, "--amount", "170", "--schema",
               "hive:fee-policy/*", "--max-danger", "5", "--relay", "ws://127.0.0.1:9",
               *extra)  # fmt: skip
    assert done.returncode == 65, done.stderr
    assert done.stderr.startswith("error: INVALID_PARAMS: "), done.stderr


async def test_a_command_under_a_refunded_ticket_is_refused_before_it_runs(
    tmp_path: Path, relay_url: str, mint_url: str
) -> None:
    """An advisor names a ticket whose locktime has passed (its part refunded to the operator,
    or about to be): the deadline is 30 days, the locktime hours, so the node ran the command
    and released nothing — the advisor's work was done unpaid.  Now refused RESTRICTED before it
    runs: the part the command would complete must still be locked, before its locktime."""
    async with world(tmp_path, relay_url, mint=mint_url) as w:
        assert w.node_escrow is not None
        ticket, _ = await funded(w, TicketType.SINGLE, amount_sat=40, locktime_s=1)
        await until(lambda: parts(w, ticket.ticket_id, "funder") == ["refunded"])
        chan = (await w.channels())[0]
        _, got = await w.advisor.advise(
            w.node.me, FEE, "set_single",
            {"channel": chan.short_channel_id, "fee_ppm": chan.policy.ppm + 10},
            ticket=ticket.ticket_id,
        )  # fmt: skip
        assert got is not None and got.error is not None, got
        assert got.error.code == "RESTRICTED" and "locktime" in got.error.message
        assert (await w.channels())[0].policy.ppm == chan.policy.ppm  # nothing ran


async def test_refund_or_redeem_of_a_part_the_ticket_does_not_have_is_not_found(
    tmp_path: Path, relay_url: str, mint_url: str
) -> None:
    """`escrow refund ID --part 5` (or `--part -1`) on a one-part ticket: an IndexError (or a
    StopIteration turned RuntimeError; -1 even picked the last part's proofs) reported as
    INTERNAL; now NOT_FOUND, like redeem."""
    async with world(tmp_path, relay_url, mint=mint_url) as w:
        assert w.node_escrow is not None and w.advisor_escrow is not None
        ticket, _ = await funded(w, TicketType.SINGLE, amount_sat=40)
        for index in (1, 5, -1):
            with pytest.raises(NotFound):
                await w.node_escrow.refund(ticket.ticket_id, index)
            with pytest.raises(NotFound):
                await w.advisor_escrow.redeem(ticket.ticket_id, index)
        with pytest.raises(NotFound):  # the payee's copy is not the funder's
            await w.advisor_escrow.refund(ticket.ticket_id, 0)
        assert parts(w, ticket.ticket_id, "funder") == ["locked"]


async def refused(store: Any, code: str, before: int) -> None:
    await until(lambda: store.error_counts().get(code, 0) > before, timeout=10)


async def test_a_node_cannot_sell_the_same_locked_ecash_twice(
    tmp_path: Path, relay_url: str, mint_url: str
) -> None:
    """Dishonest node: it funds one ticket, then sends the advisor a second ticket (a new id)
    carrying the same locked proofs.  The advisor kept both — 80 sat 'held' for 40 locked —
    and would work for the second ticket too, whose proofs its first redemption spends.  Now
    the second is refused TICKET_INVALID: a lock already held in another ticket."""
    async with world(tmp_path, relay_url, mint=mint_url) as w:
        assert w.node_escrow is not None
        ticket, _ = await funded(w, TicketType.SINGLE, amount_sat=40)
        store = w.advisor.agent.store
        before = store.error_counts().get("TICKET_INVALID", 0)
        again = ticket.model_copy(update={"ticket_id": secrets.token_hex(16)})
        now = w.node.now
        with w.node.agent.store.transaction(now) as tx:
            rumor = TICKET.rumor(w.node.me, again, created_at=now)
            w.node.agent.enqueue_private(tx, w.advisor.me, rumor)
        w.node.agent.wake_outbox()
        await refused(store, "TICKET_INVALID", before)
        assert erepo.ticket(store, again.ticket_id) is None
        assert [t["ticket_id"] for t in erepo.tickets(store, "payee")] == [ticket.ticket_id]


class _Lies(BaseHTTPRequestHandler):
    """A proxy in front of the real mint that, while `lying`, refuses every swap and answers
    every NUT-07 state check with no states at all; with `lose_answers` > 0, that many swaps
    go through at the mint but their answers are lost (503)."""

    upstream: ClassVar[str] = ""
    lying: ClassVar[bool] = False
    state: ClassVar[str | None] = None  # every NUT-07 state check answers this state
    unit: ClassVar[str | None] = None  # every keyset it serves claims this unit
    final_expiry: ClassVar[int | None] = None  # every keyset it lists is retired then
    slow_s: ClassVar[float] = 0.0  # every NUT-07 state check waits this long
    checks: ClassVar[int] = 0  # NUT-07 state checks asked
    swaps_left: ClassVar[int] = -1  # ≥ 0: that many swaps pass, then the mint is "down"
    lose_answers: ClassVar[int] = 0

    def do_GET(self) -> None:
        self._relay(None)

    def do_POST(self) -> None:
        self._relay(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

    def _relay(self, body: bytes | None) -> None:
        if self.path == "/v1/checkstate":
            type(self).checks += 1
            time.sleep(self.slow_s)
        if self.path == "/v1/swap" and self.swaps_left == 0:
            status, out = 503, b'{"detail": "down"}'
        elif self.lying and self.path == "/v1/swap":
            status, out = 400, json.dumps({"detail": "try later", "code": 10000}).encode()
        elif self.lying and self.path == "/v1/checkstate":
            status, out = 200, json.dumps({"states": []}).encode()
        elif self.state and self.path == "/v1/checkstate":
            ys = json.loads(body or b"{}").get("Ys", [])
            states = [{"Y": y, "state": self.state, "witness": None} for y in ys]
            status, out = 200, json.dumps({"states": states}).encode()
        else:
            if self.path == "/v1/swap" and self.swaps_left > 0:
                type(self).swaps_left -= 1
            got = httpx.request(
                self.command, self.upstream + self.path, content=body, timeout=30,
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            status, out = got.status_code, got.content
            if (self.unit or self.final_expiry) and self.path.startswith("/v1/keys"):
                keys = got.json()
                for keyset in keys["keysets"] if status == 200 else []:
                    keyset["unit"] = self.unit or keyset["unit"]
                    keyset["final_expiry"] = self.final_expiry or keyset.get("final_expiry")
                out = json.dumps(keys).encode()
            if self.path == "/v1/swap" and self.lose_answers > 0:
                type(self).lose_answers -= 1
                status, out = 503, b'{"detail": "the answer was lost"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def lying_mint(mint_url: str) -> Iterator[type[_Lies]]:
    handler = type("Lies", (_Lies,), {"upstream": mint_url, "lying": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


async def test_a_mint_that_answers_no_states_does_not_end_a_part(
    tmp_path: Path, relay_url: str, lying_mint: type[_Lies]
) -> None:
    """Lying (or broken) mint: the advisor's redeem swap is refused, and the NUT-07 check that
    follows answers no states.  `all()` of nothing is true, so the part counted as swapped
    already: nothing was restored and it was marked redeemed ('already spent at the mint')
    with 0 sat — never tried again, though its proofs were unspent.  Now a state answer that
    does not cover every proof is MINT_REFUSED: the part stays released, is tried again, and
    is redeemed once the mint answers honestly."""
    url = lying_mint.url  # type: ignore[attr-defined]
    async with world(tmp_path, relay_url, mint=url) as w:
        assert w.node_escrow is not None and w.advisor_escrow is not None
        ticket, _ = await funded(w, TicketType.SINGLE, amount_sat=40)
        await until(lambda: erepo.checked(w.advisor.agent.store, ticket.ticket_id) == "ok")
        lying_mint.lying = True  # (once the ticket's ecash was checked: the mint lies later)
        before = w.advisor.agent.store.error_counts().get("MINT_REFUSED", 0)
        chan = (await w.channels())[0]
        _, got = await w.advisor.advise(
            w.node.me, FEE, "set_single",
            {"channel": chan.short_channel_id, "fee_ppm": chan.policy.ppm + 10},
            ticket=ticket.ticket_id,
        )  # fmt: skip
        assert got is not None and got.preimage is not None
        await refused(w.advisor.agent.store, "MINT_REFUSED", before)
        await anyio.sleep(0.5)
        assert parts(w, ticket.ticket_id, "payee") == ["released"]
        lying_mint.lying = False
        await until(lambda: parts(w, ticket.ticket_id, "payee") == ["redeemed"])
        assert sum(w.advisor_escrow.balances().values()) == 40


def _self_signed(where: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no one trusts, and its key."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mallory")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = where / "cert.pem", where / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def untrusted_tls_mint(tmp_path: Path, mint_url: str) -> Iterator[str]:
    """The real mint behind TLS with a certificate no one trusts (a man in the middle)."""
    import ssl

    cert, key = _self_signed(tmp_path)
    handler = type("Tls", (_Lies,), {"upstream": mint_url, "lying": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_debug_in_the_environment_does_not_turn_off_tls_to_the_mint(
    tmp_path: Path, mint_url: str, untrusted_tls_mint: str
) -> None:
    """Careless operator (or a `.env` in the directory the agent runs from, which the Cashu
    library reads and copies into the environment): DEBUG=TRUE made the library build its
    HTTP client with `verify=False` and no timeout.  `escrow receive` then swapped a token at
    a mint whose certificate nobody trusts (a man in the middle sees the fresh proofs) and a
    mint that never answers held the wallet's lock forever.  Now the wallet's client always
    verifies TLS and has finite timeouts: MINT_UNAVAILABLE."""
    from agent.escrow import lightning as ln
    from agent.escrow.wallet import CashuWallet
    from tests.test_crash import hive

    async with CashuWallet(tmp_path / "sender", mint_url, sdk.Keys.generate()) as sender:
        _, proofs = await sender.topup(16)
    token = ln.token_of(untrusted_tls_mint, proofs)
    home = tmp_path / "home"
    assert hive(home, "keys", "new").returncode == 0
    (home / "policy.json").write_text(json.dumps({"mints": [untrusted_tls_mint]}))
    env = {**os.environ, "DEBUG": "TRUE"}
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [HIVE_AGENT, "--home", str(home), "escrow", "receive", token],
            capture_output=True,
            text=True,
            timeout=90,
            env=env,
            check=False,
        )
    )
    assert done.returncode == 69, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: MINT_UNAVAILABLE: ") and "CERTIFICATE" in done.stderr


def forged_ticket(
    node: sdk.Keys, advisor: str, mint: str, credential_id: str, keyset: str = "00" + "11" * 7
) -> Ticket:
    """A well-formed ticket whose proofs the mint never signed, with a made-up DLEQ proof."""
    node_pub, digest, locktime = node.public_key().to_hex(), secrets.token_hex(32), 2**31
    tags = [["pubkeys", "02" + advisor], ["locktime", str(locktime)], ["refund", "02" + node_pub]]
    secret = json.dumps(["HTLC", {"nonce": secrets.token_hex(16), "data": digest, "tags": tags}])
    made_up = Dleq(e=secrets.token_hex(32), s=secrets.token_hex(32), r=secrets.token_hex(32))
    proof = CashuProof(id=keyset, amount=8, secret=secret, C="02" + "ab" * 32, dleq=made_up)
    part = Part(index=0, role=PartRole.RELEASE, amount_sat=8, lock_hash=digest,
                locktime=locktime, proofs=[proof])  # fmt: skip
    terms = Terms(schema_pattern="hive:fee-policy/*", max_danger=5, deadline=2**31)
    return Ticket(ticket_id=secrets.token_hex(16), type=TicketType.SINGLE, mint=mint,
                  node=node_pub, advisor=advisor, credential_id=credential_id,
                  refund_pubkey=node_pub, terms=terms, parts=[part],
                  created_at=int(time.time()))  # fmt: skip


def deliver(w: World, node: sdk.Keys, tickets: list[Ticket]) -> None:
    """Gift wraps from `node` fed through the advisor's real inbound pipeline."""
    now = int(time.time())
    raw = [
        Incoming("hostile", json.dumps(nip59.wrap(
            node, w.advisor.me, TICKET.rumor(node.public_key().to_hex(), t, created_at=now),
            now=now).model_dump()), "inbox")
        for t in tickets
    ]  # fmt: skip
    w.advisor.agent.inbound.process(raw)


async def test_ticket_floods_are_bounded_in_the_store(
    tmp_path: Path, relay_url: str, mint_url: str
) -> None:
    """Strangers (keys that granted us nothing) and a node that did: every well-formed ticket
    was stored for good — a flood from fresh keys (1,200 a minute get past the strangers'
    wrap budget) or from one node that granted us a credential (a known key: no wrap limit at
    all) grew the store without bound.  Now at most 100 tickets naming no credential we hold
    are kept in all, and 100 with a part still locked per node; beyond, RATE_LIMITED (not
    remembered: read again once there is room).  A ticket naming a credential another node
    granted us is UNAUTHORIZED."""
    async with world(tmp_path, relay_url, mint=mint_url) as w:
        cred = await credential(w)
        store, me = w.advisor.agent.store, w.advisor.me
        errors = store.error_counts
        strangers = [sdk.Keys.generate() for _ in range(5)]
        for keys in strangers:  # 105 in all, under each stranger's wrap burst
            deliver(w, keys, [forged_ticket(keys, me, mint_url, secrets.token_hex(16))
                              for _ in range(21)])  # fmt: skip
        assert erepo.count_tickets(store, "payee") == 100
        assert errors().get("RATE_LIMITED", 0) == 5
        mallory = strangers[0]
        before = errors().get("UNAUTHORIZED", 0)
        deliver(w, mallory, [forged_ticket(mallory, me, mint_url, cred)])
        assert errors()["UNAUTHORIZED"] == before + 1
        node = w.node.agent.keys  # a node we advise, sending junk under its real credential
        deliver(w, node, [forged_ticket(node, me, mint_url, cred) for _ in range(101)])
        assert erepo.count_tickets(store, "payee") == 200
        assert errors()["RATE_LIMITED"] == 6
        # once the advisor's agent has checked them at the mint (made-up proofs: refused),
        # they are kept for their reason but hold no place: new tickets are taken again
        await until(lambda: erepo.unchecked_tickets(store) == [], timeout=60)
        late = forged_ticket(strangers[1], me, mint_url, secrets.token_hex(16))
        deliver(w, strangers[1], [late])
        assert erepo.ticket(store, late.ticket_id) is not None
        assert errors()["RATE_LIMITED"] == 6


async def test_restore_works_for_a_wallet_of_more_than_a_thousand_proofs(
    tmp_path: Path, mint_url: str
) -> None:
    """Careless (or just long-lived) operator: a wallet that holds more than 1,000 proofs —
    every topup, change and redemption adds some.  `escrow restore` asked the mint about all
    of them in one NUT-07 request, which the library refuses past the mint's 1,000 (its
    request model): restore failed every time, MINT_REFUSED.  Now states are asked in
    batches."""
    from agent import app
    from agent.escrow import purse
    from agent.settings import RelaysConfig, Settings

    config = RelaysConfig.single("ws://127.0.0.1:9")
    built = app.standalone(Settings(home=tmp_path / "home"), sdk.Keys.generate(), config,
                           [mint_url])  # fmt: skip
    async with built.agent:
        escrow_ = built.escrow
        try:
            for _ in range(101):  # 1,023 sat is ten proofs (1, 2, 4, … 512)
                await escrow_.topup(1023)
            assert escrow_.balances() == {mint_url: 101 * 1023}
            done = await purse.restore(escrow_)
        finally:
            await escrow_.close()
    assert done["restored"] == {mint_url: 0} and done["found_spent"] == {mint_url: 0}
    assert done["balances"] == {mint_url: 101 * 1023}


@pytest.fixture
def recording_mint(mint_url: str) -> Iterator[tuple[str, list[str]]]:
    """The real mint behind a proxy on 127.0.0.1 that notes every request it passes on."""
    seen: list[str] = []

    class Recording(_Lies):
        upstream = mint_url

        def _relay(self, body: bytes | None) -> None:
            seen.append(f"{self.command} {self.path}")
            super()._relay(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


async def test_a_strangers_token_cannot_aim_the_wallet_into_the_operators_network(
    tmp_path: Path, mint_url: str, recording_mint: tuple[str, list[str]]
) -> None:
    """A stranger hands the operator a token ('your payment: escrow receive … --trust-mint')
    whose mint is an address inside the operator's network — 127.0.0.1, 10.x, 169.254.x, a
    `.local` name.  The wallet sent it GET /v1/keys, /v1/info, POST /v1/checkstate, /v1/swap
    (a port scanner for whoever writes tokens).  Now a mint named by a token is dialled only
    if its host is public (as for relays in others' lists; HIVE_ALLOW_PRIVATE_RELAYS for test
    networks); a mint in policy.json's `mints` is never judged."""
    from agent.escrow import lightning as ln
    from agent.escrow.wallet import CashuWallet

    url, seen = recording_mint
    async with CashuWallet(tmp_path / "sender", mint_url, sdk.Keys.generate()) as sender:
        _, proofs = await sender.topup(16)
    home = tmp_path / "home"
    assert (await anyio.to_thread.run_sync(run_hive, home, ["keys", "new"], {})).returncode == 0
    for named in (url, "http://10.1.2.3:3338", "http://169.254.169.254", "http://mint.local",
                  "ftp://mint.example", "http://user@mint.example"):  # fmt: skip
        token = ln.token_of(named, proofs)
        done = await anyio.to_thread.run_sync(
            run_hive, home, ["escrow", "receive", token, "--trust-mint"], {}
        )
        assert done.returncode == 65, (named, done.stdout, done.stderr)
        assert done.stderr.startswith("error: MINT_NOT_ALLOWED: "), done.stderr
    assert seen == []  # nothing reached it
    allowed = {"HIVE_ALLOW_PRIVATE_RELAYS": "1"}  # a test network: the operator's switch
    token = ln.token_of(url, proofs)
    done = await anyio.to_thread.run_sync(
        run_hive, home, ["escrow", "receive", token, "--trust-mint"], allowed
    )
    assert done.returncode == 0 and done.stdout == f"received 16 sat at {url}\n", done.stderr


def run_hive(home: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "HIVE_ALLOW_PRIVATE_RELAYS"}
    return subprocess.run(
        [HIVE_AGENT, "--home", str(home), *args],
        capture_output=True, text=True, timeout=90, env={**base, **env}, check=False,
    )  # fmt: skip


def test_receive_from_an_endless_stdin_ends(tmp_path: Path) -> None:
    """Careless operator: `cat /dev/zero | hive-agent escrow receive -` (or any stream that
    does not end).  stdin was read to its end: memory grew until the pipe closed or the
    machine gave out.  Now at most one character past the longest token is read (1,000,000):
    TOKEN_INVALID while the writer is still writing."""
    home = tmp_path / "home"
    assert run_hive(home, ["keys", "new"], {}).returncode == 0
    with subprocess.Popen(
        [HIVE_AGENT, "--home", str(home), "escrow", "receive", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    ) as proc:  # fmt: skip
        assert proc.stdin is not None and proc.stderr is not None
        chunk, written = b"A" * 65536, 0
        try:
            while written < 32 * 2**20:  # 32 MB, and then the pipe stays open
                proc.stdin.write(chunk)
                written += len(chunk)
        except BrokenPipeError:
            pass  # it stopped reading and ended
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"still reading stdin after {written:,} bytes")
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        err = proc.stderr.read().decode()
    assert proc.returncode == 65, err
    assert err.startswith("error: TOKEN_INVALID: ") and "1,000,000" in err
    assert written < 32 * 2**20


async def test_an_approval_after_the_locktime_does_not_run_the_command_unpaid(
    tmp_path: Path, relay_url: str, mint_url: str
) -> None:
    """A ticketed command waits for the operator's approval (it may wait a day); the ticket
    covered it when it came, but the approval comes after the part's locktime, and the
    operator's agent has refunded the part meanwhile.  The command ran on approval and the
    receipt carried nothing: the advisor's work, unpaid.  Now the cover is checked again
    where the command is claimed: RESTRICTED, nothing runs."""
    from agent.advisory.node import vote
    from agent.advisory.policy import Mode, PolicyConfig
    from events.receipt import Status

    async with world(tmp_path, relay_url, PolicyConfig(mode=Mode.OPERATOR), mint=mint_url) as w:
        assert w.node_escrow is not None
        ticket, _ = await funded(w, TicketType.SINGLE, amount_sat=40, locktime_s=4)
        chan = (await w.channels())[0]
        cmd, _ = await w.advisor.advise(
            w.node.me, FEE, "set_single",
            {"channel": chan.short_channel_id, "fee_ppm": chan.policy.ppm + 10},
            ticket=ticket.ticket_id, wait=False,
        )  # fmt: skip
        queued = await w.advisor.wait_for(cmd.command_id, 10, final=False)
        assert queued is not None and queued.status == Status.QUEUED
        await until(lambda: parts(w, ticket.ticket_id, "funder") == ["refunded"])
        vote(w.node.agent.store, cmd.command_id, "approve", int(time.time()))
        w.node.wake()
        done = await w.advisor.wait_for(cmd.command_id, 10, final=True)
        assert done is not None and done.error is not None, done
        assert done.error.code == "RESTRICTED" and "can no longer pay" in done.error.message
        assert (await w.channels())[0].policy.ppm == chan.policy.ppm  # nothing ran


async def test_funding_more_than_the_wallet_holds_locks_nothing(
    tmp_path: Path, relay_url: str, mint_url: str
) -> None:
    """Careless operator: a three-part milestone ticket of 90 sat from a wallet of 50.  The
    parts were locked one by one, each checked alone: the first 30 sat were swapped into a
    lock, the second part failed INSUFFICIENT_BALANCE, the ticket was never sent and those
    30 sat sat in a draft nothing refunds.  Now the whole amount is checked before anything is
    locked."""
    async with world(tmp_path, relay_url, mint=mint_url) as w:
        assert w.node_escrow is not None
        cred = await credential(w)
        await w.node_escrow.topup(50)
        with pytest.raises(InsufficientBalance):
            await w.node_escrow.fund(
                advisor=w.advisor.me, credential_id=cred, kind=TicketType.MILESTONE,
                amount_sat=90, milestones=[1, 2, 3], schema_pattern="hive:fee-policy/*",
                max_danger=5,
            )  # fmt: skip
        assert w.node_escrow.balances() == {w.node_escrow.mints[0]: 50}
        assert drafts(w) == {}


async def strand_first_part(w: World, lying_mint: type[_Lies]) -> None:
    """Fund a two-part milestone ticket of 60 sat from 100 while the mint takes the first
    part's lock and then goes down: the ticket fails, 30 sat stay locked in its first part."""
    assert w.node_escrow is not None
    url = lying_mint.url  # type: ignore[attr-defined]
    cred = await credential(w)
    await w.node_escrow.topup(100)
    lying_mint.swaps_left = 1  # the first part's lock, then the mint is down
    with pytest.raises((MintRefused, MintUnavailable)):
        await w.node_escrow.fund(
            advisor=w.advisor.me, credential_id=cred, kind=TicketType.MILESTONE,
            amount_sat=60, milestones=[1, 2], schema_pattern="hive:fee-policy/*",
            max_danger=5, locktime_s=2,
        )  # fmt: skip
    assert w.node_escrow.balances() == {url: 70}  # 30 sat locked in the first part


async def test_a_mint_down_between_two_parts_strands_nothing(
    tmp_path: Path, relay_url: str, lying_mint: type[_Lies]
) -> None:
    """The mint goes down while a two-part ticket is being funded: the first part is locked,
    the second part's swap fails.  The ticket is never sent, and the first part's ecash sat
    in a draft that nothing read again — locked to the advisor's key until the locktime and
    then refundable only by us, but never refunded.  Now the operator's agent refunds such a
    draft once its locktime has passed."""
    url = lying_mint.url  # type: ignore[attr-defined]
    async with world(tmp_path, relay_url, mint=url) as w:
        await strand_first_part(w, lying_mint)
        lying_mint.swaps_left = -1  # back up
        await until(lambda: w.node_escrow.balances() == {url: 100} and drafts(w) == {})


async def test_a_stranded_parts_refund_whose_answer_is_lost_is_restored(
    tmp_path: Path, relay_url: str, lying_mint: type[_Lies]
) -> None:
    """As above, but the refund of the stranded part goes through at the mint and its answer
    is lost.  The next try found the proofs spent and ended the draft with nothing: 30 sat
    gone.  Now the refund records where its outputs start before it is sent, as a ticket
    part's final swap does, and a refund found done already is restored from the mint."""
    url = lying_mint.url  # type: ignore[attr-defined]
    async with world(tmp_path, relay_url, mint=url) as w:
        await strand_first_part(w, lying_mint)
        lying_mint.swaps_left = -1
        lying_mint.lose_answers = 1  # the refund's swap happens; its answer never arrives
        await until(lambda: w.node_escrow.balances() == {url: 100} and drafts(w) == {})
        assert lying_mint.lose_answers == 0


async def test_a_receipt_that_comes_before_its_ticket_still_pays(
    tmp_path: Path, relay_url: str, mint_url: str
) -> None:
    """Gift wraps arrive in any order (NIP-59 dates them up to two days back; a relay may be
    late with one): the node's receipt carrying a part's preimage reached the advisor before
    the ticket.  The preimage opened nothing held, was dropped, and the ticket that came next
    stayed locked — while the node, which released that preimage, never refunds it: the ecash
    was stuck for good.  Now a ticket that arrives takes the preimages its node's receipts
    already brought."""
    from agent.escrow.wallet import CashuWallet
    from events import receipt
    from events.escrow import lock_hash

    async with world(tmp_path, relay_url, mint=mint_url) as w:
        assert w.advisor_escrow is not None
        cred, node = await credential(w), w.node.agent.keys
        preimage, locktime = secrets.token_bytes(32), int(time.time()) + 3600
        async with CashuWallet(tmp_path / "funder", mint_url, node) as funder:
            _, proofs = await funder.topup(32)
            _, locked = await funder.lock(
                proofs, 32, hash_hex=lock_hash(preimage), payee_xonly=w.advisor.me,
                refund_xonly=w.node.me, locktime=locktime,
            )  # fmt: skip
        part = Part(index=0, role=PartRole.RELEASE, amount_sat=32, lock_hash=lock_hash(preimage),
                    locktime=locktime, proofs=locked)  # fmt: skip
        terms = Terms(schema_pattern="hive:fee-policy/*", max_danger=5, deadline=locktime)
        ticket = Ticket(ticket_id=secrets.token_hex(16), type=TicketType.SINGLE, mint=mint_url,
                        node=w.node.me, advisor=w.advisor.me, credential_id=cred,
                        refund_pubkey=w.node.me, terms=terms, parts=[part],
                        created_at=int(time.time()))  # fmt: skip
        body = {
            "receipt_id": secrets.token_hex(16), "seq": 1, "node": w.node.me,
            "credential_id": cred, "advisor": w.advisor.me, "command_id": secrets.token_hex(16),
            "schema_ref": FEE, "action": "set_single", "params_hash": "00" * 32,
            "status": "ok", "error": None, "result": {}, "danger": 2, "decision": "auto",
            "state_hash_before": "00" * 32, "state_hash_after": "11" * 32,
            "created_at": int(time.time()), "prev_hash": "00" * 32, "preimage": preimage.hex(),
        }  # fmt: skip
        sealed = receipt.seal(node, body)
        now = int(time.time())
        first = nip59.wrap(
            node, w.advisor.me, receipt.FAMILY.rumor(w.node.me, sealed, created_at=now), now=now
        )
        w.advisor.agent.inbound.process(
            [Incoming("relay", json.dumps(first.model_dump()), "inbox")]
        )  # fmt: skip
        deliver(w, node, [ticket])  # then the ticket
        await until(lambda: parts(w, ticket.ticket_id, "payee") == ["redeemed"])
        assert sum(w.advisor_escrow.balances().values()) == 32
