"""The dashboard in a real browser (Debian's headless chromium, driven by Playwright; never a
browser Playwright downloads) against a real node agent on the simulator, an advisor and a
local relay (tests/advisory_world.py): a queued command appears live (measured), is approved
by a click and the advisor receives the signed receipt; a revoke from the page stops the next
command; without the token the server answers 401; a POST without the CSRF token is refused.
Screenshots of each page are saved under the test's temp dir."""

from __future__ import annotations

import argparse
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from agent.advisory.policy import Mode, PolicyConfig
from agent.dashboard.actions import AppOperator, HomeOperator
from agent.dashboard.command import Dashboard
from agent.keys import import_key_file
from agent.settings import Settings
from agent.store import Store
from agent.store import advisory as repo
from events import receipt
from events.receipt import Status
from tests.advisory_world import World, world
from tests.conftest import missing_component
from tests.test_market_flow import advert
from tests.test_market_flow import agent as market_agent

pytestmark = pytest.mark.anyio
LIVE_BUDGET_S = 1.0  # the bound: shown within 1 s of the node queuing it


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing_component("chromium (Debian's package)", "run ./scripts/dev setup (apt-get)")
    assert found is not None
    return found


@asynccontextmanager
async def serving(board: Dashboard) -> AsyncIterator[Dashboard]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(board.serve)
        try:
            yield board
        finally:
            board.stop()


@asynccontextmanager
async def dashboard(w: World) -> AsyncIterator[Dashboard]:
    store_file = Settings(home=w.tmp / "node").store_file
    board = Dashboard(
        store_file,
        AppOperator(w.node),
        w.node.policy,
        "127.0.0.1",
        0,
        node=w.backend,
        relays=w.node.agent.pool.status,
    )
    async with serving(board):
        yield board


@asynccontextmanager
async def browser_page() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


async def _queued(store: Store, command_id: str) -> float:
    """The moment the node has queued the command (its row waits for the operator)."""
    with anyio.fail_after(10):
        while True:
            row = repo.command_row(store, command_id)
            if row is not None and row["state"] in ("queued", "confirm"):
                return time.monotonic()
            await anyio.sleep(0.01)


async def test_a_queued_command_is_shown_live_approved_by_a_click_and_revoked(
    tmp_path: Path, relay_url: str
) -> None:
    async with world(tmp_path, relay_url, PolicyConfig(mode=Mode.OPERATOR)) as w:
        cred = w.grant()
        await w.wait_credential(cred)
        scid = (await w.channels())[0].short_channel_id
        async with dashboard(w) as board, browser_page() as page:
            await page.goto(board.url)
            assert page.url == f"{board.home}/approvals"  # the token left the address bar
            await page.wait_for_selector("#live:not(.off)")  # the event stream is open
            assert "Nothing waits for approval" in await page.content()

            cmd, _ = await w.advisor.advise(
                w.node.me,
                "hive:fee-policy/v1",
                "set_single",
                {"channel": scid, "fee_ppm": 107},
                wait=False,
            )
            queued_at = await _queued(w.node.agent.store, cmd.command_id)
            row = page.locator(f'tr[data-command="{cmd.command_id}"]')
            await row.wait_for(timeout=5000)
            shown_after = time.monotonic() - queued_at
            print(f"queued command shown in the browser {shown_after * 1000:.0f} ms after")
            assert shown_after < LIVE_BUDGET_S
            assert "set_single" in await row.inner_text()
            await page.screenshot(path=str(tmp_path / "approvals.png"), full_page=True)

            await row.locator('button[data-step="approve"]').click()
            done = await w.advisor.wait_for(cmd.command_id, 10, final=True)
            assert done is not None and done.status == Status.OK
            receipt.verify(done)  # signed by the node
            assert (await w.channels())[0].policy.ppm == 107
            await page.wait_for_selector("text=Nothing waits for approval")

            await page.goto(f"{board.home}/receipts/{cred.credential_id}")
            assert "chain intact" in await page.locator("#verdict").inner_text()
            await page.screenshot(path=str(tmp_path / "receipts.png"), full_page=True)

            await page.goto(f"{board.home}/advisors")
            await page.screenshot(path=str(tmp_path / "advisors.png"), full_page=True)
            await page.click(f'tr[data-credential="{cred.credential_id}"] a.revoke')
            await page.click("#confirm-revoke")
            state = page.locator(f'tr[data-credential="{cred.credential_id}"] td.state')
            assert await state.inner_text() == "revoked"
            _, gone = await w.advisor.advise(
                w.node.me,
                "hive:fee-policy/v1",
                "set_single",
                {"channel": scid, "fee_ppm": 108},
                timeout_s=2,
            )
            assert gone is None  # a revoked credential gets no answer, only a counted refusal
            await anyio.sleep(0.3)
            assert w.node.agent.store.error_counts()["UNAUTHORIZED"] == 1
            assert (await w.channels())[0].policy.ppm == 107
            await page.goto(f"{board.home}/node")
            assert "revoke:ok" in await page.content()
            await page.wait_for_selector("#fees-chart .uplot")  # drawn by the vendored uPlot
            bars = page.locator("tr[data-channel] meter.balance")
            assert await bars.count() == len(await w.channels())
            assert await page.locator("table.relays tr").count() == 2  # a header and our relay
            await page.screenshot(path=str(tmp_path / "node.png"), full_page=True)
            for name, heading in (("escrow", "Escrow"), ("market", "Marketplace"),
                                  ("fleet", "Fleet")):  # fmt: skip
                await page.goto(f"{board.home}/{name}")
                assert await page.locator("h1").inner_text() == heading
                await page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


async def test_without_the_token_401_and_without_csrf_403(tmp_path: Path, relay_url: str) -> None:
    async with (
        world(tmp_path, relay_url, PolicyConfig(mode=Mode.OPERATOR)) as w,
        dashboard(w) as board,
    ):
        if True:
            async with httpx.AsyncClient(base_url=board.home) as stranger:
                answer = await stranger.get("/approvals")
                assert answer.status_code == 401 and "Approvals" not in answer.text
            async with browser_page() as page:
                await page.goto(board.url)
                # a POST from the logged-in browser without the CSRF field: refused, by code
                refused = await page.evaluate(
                    """async (root) => {
                        const r = await fetch(root + '/approvals/abcdef123456/approve',
                                              {method: 'POST', body: ''});
                        return [r.status, (await r.json()).error.code];
                    }""",
                    board.gate.root,
                )
                assert refused == [403, "RESTRICTED"]


async def test_the_home_dashboard_approves_through_the_clis_path(
    tmp_path: Path, relay_url: str
) -> None:
    """`hive-agent dashboard` beside a running node: the vote is recorded in the home's store
    as `hive-agent approvals approve` records it, and the node applies it within its step."""
    async with world(tmp_path, relay_url, PolicyConfig(mode=Mode.OPERATOR)) as w:
        cred = w.grant()
        await w.wait_credential(cred)
        scid = (await w.channels())[0].short_channel_id
        home = Settings(home=w.tmp / "node")
        secret = w.node.agent.keys.secret_key().to_hex()
        import_key_file(home.key_file, secret, None, force=True)  # as `keys import` would
        operator = HomeOperator(home, argparse.Namespace(relay=[relay_url], policy=None))
        board = Dashboard(home.store_file, operator, w.node.policy, "127.0.0.1", 0)
        async with serving(board), browser_page() as page:
            await page.goto(board.url)
            cmd, _ = await w.advisor.advise(
                w.node.me,
                "hive:fee-policy/v1",
                "set_single",
                {"channel": scid, "fee_ppm": 111},
                wait=False,
            )
            row = page.locator(f'tr[data-command="{cmd.command_id}"]')
            await row.wait_for(timeout=5000)
            await row.locator('button[data-step="approve"]').click()
            done = await w.advisor.wait_for(cmd.command_id, 10, final=True)
            assert done is not None and done.status == Status.OK
            receipt.verify(done)
            assert operator.counts == {"approve:ok": 1}
            # revoke as `hive-agent credential revoke` does: a standalone agent on the home's key
            await page.goto(f"{board.home}/advisors/{cred.credential_id}/revoke")
            await page.click("#confirm-revoke")
            state = page.locator(f'tr[data-credential="{cred.credential_id}"] td.state')
            assert await state.inner_text() == "revoked"
            assert operator.counts == {"approve:ok": 1, "revoke:ok": 1}
            _, gone = await w.advisor.advise(
                w.node.me,
                "hive:fee-policy/v1",
                "set_single",
                {"channel": scid, "fee_ppm": 112},
                timeout_s=2,
            )
            assert gone is None
            assert (await w.channels())[0].policy.ppm == 111
            # ranked listings, read from the relay as `market browse` reads them
            lid = f"dash-{secrets.token_hex(4)}"
            async with market_agent(w.tmp / "provider", [relay_url]) as provider:
                await provider.publish(advert(lid, int(time.time())))
            await page.goto(f"{board.home}/market")
            await page.click("#browse")
            listed = page.locator(f'tr[data-listing="{lid}"]')
            await listed.wait_for(timeout=10000)
            assert "capability" in await listed.inner_text()  # the score's breakdown
            await page.screenshot(path=str(tmp_path / "market.png"), full_page=True)
            for name in ("approvals", "advisors", "node", "escrow", "market", "fleet"):
                await page.goto(f"{board.home}/{name}")
                assert secret not in await page.content()  # keys never in pages
