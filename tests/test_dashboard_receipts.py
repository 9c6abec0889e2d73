"""Each receipt's diff on the receipts page: a fee-policy command run through the node agent
(tests/advisory_world.py, a real relay) records what it changed of the node state in its
receipt's transaction; the served dashboard shows `channel.ppm: 100 → 120` on that receipt, a
dry run's predicted diff marked as predicted, the same change again as run without changing
anything; a read and a refused command say that no diff was recorded."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from agent.store import advisory as repo
from events.receipt import Status
from tests.advisory_world import world
from tests.test_dashboard_browser import dashboard

pytestmark = pytest.mark.anyio


def cell(page: str, command_id: str) -> str:
    """The 'what changed' cell of the receipt row(s) for `command_id` (the last one's)."""
    rows = re.findall(r"<tr class=\"[a-z-]+\">(.*?)</tr>", page, re.S)
    found = [r for r in rows if f'title="{command_id}"' in r]
    assert found, f"no receipt row for {command_id}"
    match = re.search(r'<td class="diff[^"]*" data-diff="([a-z]+)">(.*?)</td>', found[0], re.S)
    assert match is not None
    return f"{match.group(1)}: {' '.join(re.sub(r'<[^>]+>', ' ', match.group(2)).split())}"


async def test_a_fee_change_shows_its_field_with_old_and_new_value(
    tmp_path: Path, relay_url: str
) -> None:
    async with world(tmp_path, relay_url) as w:
        cred = w.grant()
        await w.wait_credential(cred)
        scid = (await w.channels())[0].short_channel_id
        params = {"channel": scid, "fee_ppm": 120}
        fee = "hive:fee-policy/v1"
        dry, _ = await w.advisor.advise(w.node.me, fee, "set_single", params, dry_run=True)
        cmd, got = await w.advisor.advise(w.node.me, fee, "set_single", params)
        assert got is not None and got.status == Status.OK, got
        assert (await w.channels())[0].policy.ppm == 120
        same, again = await w.advisor.advise(w.node.me, fee, "set_single", params)
        assert again is not None and again.status == Status.OK  # ran; set what was there
        ask, _ = await w.advisor.advise(w.node.me, "hive:monitor/v1", "budget", {})
        bad = {"channel": scid, "fee_ppm": 500}  # +316 %: over the preset's step
        no, refused = await w.advisor.advise(w.node.me, fee, "set_single", bad)
        assert refused is not None and refused.status == Status.ERROR

        recorded = repo.state_diffs(w.node.agent.store, cred.credential_id, 1, 10)
        assert recorded[got.seq] == {f"{scid}.ppm": [100, 120]}  # in the receipt's row
        async with dashboard(w) as board, httpx.AsyncClient(base_url=board.home) as client:
            await client.get(board.url, follow_redirects=True)  # the token: a session cookie
            page = await client.get(f"/receipts/{cred.credential_id}")
        assert page.status_code == 200 and "chain intact" in page.text
        assert cell(page.text, cmd.command_id) == f"changed: {scid}.ppm : 100 → 120"
        predicted = cell(page.text, dry.command_id)
        assert predicted == f"predicted: predicted (dry run): {scid}.ppm : 100 → 120"
        assert cell(page.text, same.command_id) == "unchanged: ran; nothing changed"
        for other in (ask, no):  # a read answered from the node's figures, a refusal
            assert cell(page.text, other.command_id) == "none: no state diff recorded"
