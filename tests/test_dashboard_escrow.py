"""The escrow page in a real browser against a real node agent, advisor, relay and Nutshell
mint (tests/advisory_world.py): a ticket's part shows `locked` with its locktime countdown;
after the command it paid for is refused and the locktime passes, the page shows the refund
(live, without a reload) and the wallet balance per mint."""

from __future__ import annotations

from pathlib import Path

import pytest

from events.escrow import TicketType
from tests.advisory_world import world
from tests.test_dashboard_browser import browser_page, dashboard
from tests.test_escrow_flow import fee, funded, parts, until

pytestmark = pytest.mark.anyio


async def test_the_escrow_page_shows_a_refund_after_the_locktime(
    tmp_path: Path, relay_url: str, mint_url: str
) -> None:
    async with world(tmp_path, relay_url, mint=mint_url) as w:
        ticket, _ = await funded(w, TicketType.SINGLE, amount_sat=40, locktime_s=3)
        async with dashboard(w) as board, browser_page() as page:
            await page.goto(board.url.replace("/?", "/escrow?"))
            row = page.locator(f'tr[data-ticket="{ticket.ticket_id}"]')
            await row.wait_for()
            assert "locked" in await row.inner_text()
            assert await row.locator(".countdown").count() == 1
            assert mint_url in await page.locator("#escrow").inner_text()
            await page.screenshot(path=str(tmp_path / "escrow-locked.png"), full_page=True)
            refused = await fee(w, 900, ticket.ticket_id)  # an 800 % jump: refused
            assert refused.error is not None and refused.preimage is None
            await until(lambda: parts(w, ticket.ticket_id, "funder") == ["refunded"], 15)
            refunded = row.locator(".part.refunded")
            await refunded.wait_for(timeout=3000)  # pushed to the page, no reload
            assert "refunded" in await refunded.inner_text()
            await page.screenshot(path=str(tmp_path / "escrow-refunded.png"), full_page=True)
