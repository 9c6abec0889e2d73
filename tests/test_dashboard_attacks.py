"""Attacks on the dashboard over real HTTP (uvicorn on a real socket, httpx as the client) against
real agents on a local relay (tests/advisory_world.py): what a stranger's content does to the
pages, what the buttons really do, what an oversize body costs."""

from __future__ import annotations

import argparse
import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import nostr_sdk as sdk
import pytest

from agent.advisory.policy import PolicyConfig, Preset
from agent.dashboard.actions import HomeOperator
from agent.dashboard.command import Dashboard
from agent.dashboard.security import COOKIE
from agent.settings import Settings
from agent.store import Store
from agent.store import advisory as repo
from agent.store import escrow as escrow_repo
from agent.store import market as market_repo
from events import contract, credential, listing, receipt, rfp
from events.credential import ManagementCredential, Tier
from events.listing import ServiceType
from events.receipt import Status
from events.rfp import Rfp
from tests.advisory_world import world
from tests.test_dashboard_browser import browser_page, dashboard
from tests.test_dashboard_security import dump
from tests.test_escrow_events import part as escrow_part
from tests.test_escrow_events import ticket as escrow_ticket
from tests.test_market_events import terms as contract_terms

pytestmark = pytest.mark.anyio
SHOWN = 200  # rows a list strangers can grow shows (agent/dashboard/data.py)


@asynccontextmanager
async def served(home: Path, policy: PolicyConfig) -> AsyncIterator[httpx.AsyncClient]:
    """`hive-agent dashboard` for an agent home, and a client holding its session."""
    async with serving(home, policy) as (client, _):
        yield client


@asynccontextmanager
async def serving(
    home: Path, policy: PolicyConfig
) -> AsyncIterator[tuple[httpx.AsyncClient, Dashboard]]:
    settings = Settings(home=home)
    operator = HomeOperator(settings, argparse.Namespace(relay=None, policy=None))
    board = Dashboard(settings.store_file, operator, policy, "127.0.0.1", 0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(board.serve)
        try:
            async with httpx.AsyncClient(base_url=board.home) as client:
                assert (
                    await client.get(board.url, follow_redirects=True)
                ).status_code == 200  # the token's visit
                yield client, board
        finally:
            board.stop()


def buttons(page: str, command_id: str) -> list[tuple[str, str]]:
    """The (action, csrf) of each form in the command's row, as a browser would submit them."""
    row = re.search(rf'<tr class="pending" data-command="{command_id}">(.*?)</tr>', page, re.S)
    assert row is not None, "the command is not shown"
    return re.findall(
        r'<form method="post" action="([^"]+)">\s*<input type="hidden" name="csrf" value="([^"]+)"',
        row.group(1),
    )


async def state_of(store, command_id: str, *wanted: str) -> str:
    with anyio.fail_after(10):
        while (row := repo.command_row(store, command_id)) is None or row["state"] not in wanted:
            await anyio.sleep(0.05)
    return row["state"]


async def test_a_command_that_needs_a_confirmation_is_approved_then_confirmed_by_its_buttons(
    tmp_path: Path, relay_url: str
) -> None:
    """Attack: none needed — a CONFIRM-routed command (high danger) offered `confirm` before
    it was approved, so the dashboard could never run it, and the early confirm vote made a
    later approval (CLI, DM) skip the confirmation step.  The first button must be approve."""
    policy = PolicyConfig(preset=Preset.CONSERVATIVE)  # danger ≥ 5 → CONFIRM
    async with world(tmp_path, relay_url, policy) as w:
        await w.wait_credential(w.grant(tier=Tier.ADVANCED))
        cmd, _ = await w.advisor.advise(
            w.node.me,
            "hive:fee-policy/v1",
            "set_bulk",
            {"fee_ppm": 113, "base_msat": 1000},
            wait=False,
        )
        store = w.node.agent.store
        assert await state_of(store, cmd.command_id, "confirm") == "confirm"
        async with served(tmp_path / "node", policy) as client:

            async def press_first(shown: list[str]) -> None:
                """Check the command's buttons, then press the first, as a browser would."""
                forms = buttons((await client.get("/approvals")).text, cmd.command_id)
                assert [a.rsplit("/", 1)[1] for a, _ in forms] == shown
                action, csrf = forms[0]
                answer = await client.post(client.base_url.join(action), data={"csrf": csrf})
                assert answer.status_code == 303
                w.node.wake()

            await press_first(["approve", "reject"])
            assert await state_of(store, cmd.command_id, "confirmed") == "confirmed"
            await press_first(["confirm", "reject"])
            done = await w.advisor.wait_for(cmd.command_id, 10, final=True)
            assert done is not None and done.status == Status.OK
        assert {c.policy.ppm for c in await w.channels()} == {113}


async def test_a_strangers_far_future_credential_does_not_take_the_advisors_page_down(
    tmp_path: Path, relay_url: str
) -> None:
    """Attack: any node may send an advisor a signed credential grant; one valid from the year
    146 billion (2**62 s: a valid credential, 1 hour long) made every render of Advisors a 500
    (the date formatter's OverflowError), for as long as the row stayed."""
    async with world(tmp_path, relay_url) as w:
        stranger = w.operator  # an agent with its own key, no business with the advisor
        far = 2**62
        cred = ManagementCredential(
            credential_id="ab" * 16,
            node=stranger.keys.public_key().to_hex(),
            advisor=w.advisor.me,
            tier=Tier.STANDARD,
            allowed_schemas=["hive:fee-policy/*"],
            valid_from=far,
            valid_until=far + 3600,
        )
        grant = credential.sign(stranger.keys, cred)
        rumor = credential.GRANT.rumor(cred.node, grant, created_at=int(time.time()))
        await stranger.send_private(w.advisor.me, rumor)
        await w.wait_credential(cred)  # stored as a held credential, as any grant is
        async with served(tmp_path / "advisor", PolicyConfig()) as client:
            for path in ("/advisors/live", f"/receipts/{cred.credential_id}"):
                assert (await client.get(path)).status_code == 200, path
            advisors = await client.get("/advisors")
            assert advisors.status_code == 200
            row = f'<tr data-credential="{cred.credential_id}" class="active">'
            assert row in advisors.text  # shown, its date as the number it is
            assert f'data-deadline="{far + 3600}">{far + 3600}</span>' in advisors.text


def exchange(port: int, head: bytes, body: bytes, wait_s: float = 3.0) -> bytes:
    """Send a request's head and the first part of its body, then wait for the answer (the
    rest of the body never comes): what a server that buffers whole bodies never gives."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head + body)
        sock.settimeout(wait_s)
        try:  # until the whole answer (its head and Content-Length bytes), a close or the time
            while chunk := sock.recv(65536):
                answer += chunk
                head_, _, rest = answer.partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: (\d+)", head_)
                if length is not None and len(rest) >= int(length.group(1)):
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    return answer


async def test_an_oversize_post_is_refused_before_its_body_is_read(tmp_path: Path) -> None:
    """Attack: a page on another port of this host is same-site (cookies know no ports), so
    the browser sends the session cookie with its POSTs; the dashboard buffered a POST's whole
    body before looking at its size (1 GB declared: held in memory, the answer after the last
    byte).  It now answers 413 TOO_LARGE at once, changing nothing."""
    settings = Settings(home=tmp_path / "home")
    settings.root.mkdir(parents=True)
    Store(settings.store_file).close()
    before = dump(settings.store_file)
    async with serving(settings.home, PolicyConfig()) as (client, board):
        cookie = f"{COOKIE}={client.cookies[COOKIE]}"
        host = f"127.0.0.1:{board.port}"
        for framing in (b"Content-Length: 1000000000", b"Transfer-Encoding: chunked"):
            head = (
                b"POST " + board.gate.root.encode() + b"/approvals/abcdef123456/approve"
                + b" HTTP/1.1\r\nHost: " + host.encode()
                + b"\r\nCookie: " + cookie.encode() + b"\r\n" + framing + b"\r\n\r\n"
            )  # fmt: skip
            part = b"a" * 65536
            body = part if b"Length" in framing else b"%x\r\n%s\r\n" % (len(part), part)
            answer = await anyio.to_thread.run_sync(exchange, board.port, head, body)
            assert answer.startswith(b"HTTP/1.1 413"), (framing, answer[:80])
            assert b'"TOO_LARGE"' in answer
        assert board.context.operator.counts == {}  # no action ran
        assert (await client.get("/approvals")).status_code == 200  # the session still works
    assert dump(settings.store_file) == before


async def test_what_strangers_can_pile_up_is_shown_newest_first_in_a_bounded_page(
    tmp_path: Path,
) -> None:
    """Attack: any node may grant an advisor a credential, offer it a contract or send it an
    escrow ticket, and anyone may publish an RFP;
    under the stranger budgets (1,200 a minute) that is over a million rows a day, and the
    Advisors, Market and Escrow pages rendered every one — on the event loop the agent shares in the
    plugin, again at every store change for /advisors/live.  Now the newest SHOWN of them
    (each stored as their handlers store them), all of ours, and how many are not shown."""
    settings = Settings(home=tmp_path / "home")
    settings.root.mkdir(parents=True)
    store = Store(settings.store_file)
    me, now, flood = sdk.Keys.generate(), int(time.time()), SHOWN * 3
    ours = ManagementCredential(
        credential_id="cd" * 16, node=me.public_key().to_hex(), advisor="ef" * 32,
        tier=Tier.STANDARD, allowed_schemas=["hive:fee-policy/*"],
        valid_from=now - 60, valid_until=now + 86400,
    )  # fmt: skip
    with store.transaction(now - 10) as tx:  # granted first: the flood is newer
        repo.save_credential(tx, credential.sign(me, ours), "granted")
    for i in range(flood):
        stranger = sdk.Keys.generate()
        cred = ours.model_copy(
            update={"credential_id": f"{i:032x}", "node": stranger.public_key().to_hex(),
                    "advisor": me.public_key().to_hex()}
        )  # fmt: skip
        item = Rfp(
            rfp_id=f"flood-{i}", service=ServiceType.ADVISOR, need="fee-policy",
            max_price_sat=1, duration_days=1, posted_at=now, bid_deadline=now + 60,
            award_by=now + 120,
        )  # fmt: skip
        author = stranger.public_key().to_hex()
        terms = contract_terms(client=listing.did(author), nonce=f"{i:064x}")
        offer = contract.Offer(terms=terms, signature=contract.sign_terms(stranger, terms))
        paid = escrow_ticket([escrow_part()]).model_copy(update={"ticket_id": f"{i:032x}"})
        with store.transaction(now + i) as tx:
            repo.save_credential(tx, credential.sign(stranger, cred), "held")
            market_repo.save_offer(tx, offer, author, author, "in")
            escrow_repo.save_ticket(tx, paid, "payee")
            market_repo.save_rfp(
                tx, rfp.address(author, item.rfp_id), author, item, "00" * 32, now + i
            )
    store.close()
    async with serving(settings.home, PolicyConfig()) as (client, board):
        advisors = (await client.get("/advisors")).text
        assert advisors.count("<tr data-credential=") == SHOWN + 1
        assert f'<tr data-credential="{ours.credential_id}" class="active">' in advisors
        revoke = f'href="{board.gate.root}/advisors/{ours.credential_id}/revoke"'
        assert revoke in advisors  # ours, revocable
        assert f'data-credential="{flood - 1:032x}"' in advisors  # the newest held
        assert f'data-credential="{0:032x}"' not in advisors  # the oldest held: not shown
        assert f"{flood - SHOWN:,} older held credentials not shown" in advisors
        market = (await client.get("/market")).text
        assert market.count("<tr><td><code>36381:") == SHOWN
        assert market.count(f"The newest {SHOWN} of {flood:,}.") == 2  # RFPs, offers
        assert market.count("</code></td><td>open</td><td>in</td>") == SHOWN
        escrow = (await client.get("/escrow")).text
        assert escrow.count("<tr data-ticket=") == SHOWN
        assert f'data-ticket="{flood - 1:032x}"' in escrow
        assert f"{flood - SHOWN:,} older tickets paid to us not shown" in escrow
    from agent.dashboard import data

    assert data.SHOWN == SHOWN


async def test_a_strangers_receipts_never_join_the_chain_of_a_credential_we_hold(
    tmp_path: Path, relay_url: str
) -> None:
    """Attack: any node may send an advisor receipts; one naming the credential the advisor
    holds from another node, signed by itself and linked to that chain's last receipt, was
    read into that credential's timeline — a forged command shown as done, and the real
    chain shown red ("different chains are mixed").  The held chain is the granting node's."""
    async with world(tmp_path, relay_url) as w:
        cred = w.grant()
        await w.wait_credential(cred)
        scid = (await w.channels())[0].short_channel_id
        _, real = await w.advisor.advise(
            w.node.me, "hive:fee-policy/v1", "set_single", {"channel": scid, "fee_ppm": 109}
        )
        assert real is not None and real.status == Status.OK and real.seq == 1
        stranger = w.operator
        body = real.body() | {
            "receipt_id": "12" * 16, "seq": 2, "node": stranger.keys.public_key().to_hex(),
            "command_id": "34" * 16, "result": {"forged": True}, "prev_hash": real.receipt_hash,
        }  # fmt: skip
        forged = receipt.seal(stranger.keys, body)
        rumor = receipt.FAMILY.rumor(body["node"], forged, created_at=int(time.time()))
        await stranger.send_private(w.advisor.me, rumor)
        advisor_store = w.advisor.agent.store
        with anyio.fail_after(10):  # refused at intake: the credential is another node's
            while advisor_store.error_counts().get("UNAUTHORIZED", 0) < 1:
                await anyio.sleep(0.05)
        async with served(tmp_path / "advisor", PolicyConfig()) as client:
            page = (await client.get(f"/receipts/{cred.credential_id}")).text
        assert "1 receipts, chain intact" in page
        assert forged.command_id not in page and "forged" not in page
        assert real.command_id in page


async def test_a_double_click_on_approve_never_confirms(tmp_path: Path, relay_url: str) -> None:
    """Attack (on the operator's hands): a CONFIRM command's approve button, double-clicked in
    a real browser; the page reloads after the first click with the command awaiting its
    confirmation — the second click must not land on `confirm`."""
    policy = PolicyConfig(preset=Preset.CONSERVATIVE)  # danger ≥ 5 → CONFIRM
    async with world(tmp_path, relay_url, policy) as w:
        await w.wait_credential(w.grant(tier=Tier.ADVANCED))
        cmd, _ = await w.advisor.advise(
            w.node.me, "hive:fee-policy/v1", "set_bulk", {"fee_ppm": 114, "base_msat": 1000},
            wait=False,
        )  # fmt: skip
        store = w.node.agent.store
        await state_of(store, cmd.command_id, "confirm")
        async with dashboard(w) as board, browser_page() as page:
            await page.goto(board.url)
            row = page.locator(f'tr[data-command="{cmd.command_id}"]')
            await row.locator('button[data-step="approve"]').dblclick()
            await state_of(store, cmd.command_id, "confirmed", "ready", "executing", "done")
            await anyio.sleep(1.0)
            votes = repo.approvals(store, cmd.command_id)
            assert votes["confirm"] == set(), votes
            assert repo.command_row(store, cmd.command_id)["state"] == "confirmed"


async def test_a_nodes_malformed_predicted_diff_does_not_take_the_receipts_page_down(
    tmp_path: Path, relay_url: str
) -> None:
    """Attack: the node an advisor works for writes its receipts' `result`; a dry run's
    `predicted_diff` that is not `{field: [old, new]}` (here `{"fee_ppm": 1}`) made the
    advisor's receipt timeline for that credential a 500 (IndexError/TypeError), for good."""
    async with world(tmp_path, relay_url) as w:
        node = w.operator  # a node of its own: grants the advisor a credential, then lies
        now = int(time.time())
        cred = ManagementCredential(
            credential_id="56" * 16, node=node.keys.public_key().to_hex(), advisor=w.advisor.me,
            tier=Tier.STANDARD, allowed_schemas=["hive:fee-policy/*"],
            valid_from=now - 60, valid_until=now + 3600,
        )  # fmt: skip
        grant = credential.sign(node.keys, cred)
        await node.send_private(
            w.advisor.me, credential.GRANT.rumor(cred.node, grant, created_at=now)
        )
        await w.wait_credential(cred)
        shapes = [{"fee_ppm": 1}, {"fee_ppm": []}, {"fee_ppm": "x"}, {"fee_ppm": [1, 2, 3]}]
        previous = receipt.GENESIS
        for seq, predicted in enumerate(shapes, start=1):
            body = {
                "receipt_id": f"{seq:032x}", "seq": seq, "node": cred.node,
                "credential_id": cred.credential_id, "advisor": w.advisor.me,
                "command_id": f"{seq + 100:032x}", "schema_ref": "hive:fee-policy/v1",
                "action": "set_single", "params_hash": "00" * 32, "status": "dry-run",
                "error": None, "result": {"predicted_diff": predicted}, "danger": 2,
                "decision": "auto", "state_hash_before": "11" * 32,
                "state_hash_after": "11" * 32, "created_at": now, "prev_hash": previous,
                "preimage": None,
            }  # fmt: skip
            sealed = receipt.seal(node.keys, body)
            previous = sealed.receipt_hash
            await node.send_private(
                w.advisor.me, receipt.FAMILY.rumor(cred.node, sealed, created_at=now)
            )
        with anyio.fail_after(10):
            while len(repo.held_receipts(w.advisor.agent.store, None, cred.credential_id)) < 4:
                await anyio.sleep(0.05)
        async with served(tmp_path / "advisor", PolicyConfig()) as client:
            page = await client.get(f"/receipts/{cred.credential_id}")
        assert page.status_code == 200
        assert "4 receipts, chain intact" in page.text
        assert page.text.count('data-diff="none"') == 4  # no diff it could show


async def test_another_server_on_this_host_never_receives_the_session_cookie(
    tmp_path: Path,
) -> None:
    """Attack: cookies know no ports — a server on another port of 127.0.0.1 (another user's
    process, a dev server logging headers) received the session cookie when the operator's
    browser visited it, and with it could read the pages and their CSRF token and act as the
    operator.  The cookie is now scoped to the dashboard's secret path prefix."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[tuple[str, str]] = []

    class Listener(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.append((self.path, self.headers.get("Cookie") or ""))
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html><body>elsewhere</body></html>")

        def log_message(self, *args: object) -> None:
            pass

    settings = Settings(home=tmp_path / "home")
    settings.root.mkdir(parents=True)
    Store(settings.store_file).close()
    other = HTTPServer(("127.0.0.1", 0), Listener)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        async with serving(settings.home, PolicyConfig()) as (_, board), browser_page() as page:
            await page.goto(board.url)
            assert "Approvals" in await page.content()  # the session is open in this browser
            jar = await page.context.cookies()
            assert [(c["name"], c["path"]) for c in jar] == [(COOKIE, board.gate.root)]
            elsewhere = f"http://127.0.0.1:{other.server_port}"
            for path in ("/", "/approvals", "/static/app.js", f"{board.gate.root}x/"):
                await page.goto(elsewhere + path)
            paths = {path for path, _ in received}  # (and the browser's own /favicon.ico)
            assert {"/", "/approvals", "/static/app.js", f"{board.gate.root}x/"} <= paths
            assert not any(COOKIE in cookie for _, cookie in received), received
    finally:
        other.shutdown()
        other.server_close()
