"""The fleet page in a real browser: five simulated members (tests/fleet_world.py) found a
hive and gossip their state records; the graph (vendored cytoscape.js) shows five members and
the channels between them, from member 0's `FleetService.topology()`."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from agent.advisory.policy import PolicyConfig
from agent.dashboard.actions import HomeOperator
from agent.dashboard.command import Dashboard
from agent.settings import Settings
from tests.fleet_world import fleet
from tests.test_dashboard_browser import browser_page, serving
from tests.test_gossip import _hive

pytestmark = pytest.mark.anyio
MEMBERS = 5


async def test_the_fleet_graph_shows_five_simulated_members(tmp_path: Path) -> None:
    async with fleet(tmp_path, MEMBERS, extra=0) as f:
        await _hive(f)
        first = f.members[0]
        operator = HomeOperator(Settings(home=first.home), argparse.Namespace(relay=None))
        board = Dashboard(
            first.home / "fleet.sqlite", operator, PolicyConfig(), "127.0.0.1", 0, fleet=first.fleet
        )
        async with serving(board), browser_page() as page:
            await page.goto(board.url.replace("/?", "/fleet?"))
            await page.wait_for_selector(f'#fleet-graph[data-drawn="{MEMBERS}"]')
            drawn = await page.evaluate(
                "[window.fleetGraph.nodes().length, window.fleetGraph.edges().length]"
            )
            assert drawn == [MEMBERS, MEMBERS * (MEMBERS - 1) // 2]  # every pair has a channel
            assert await page.locator("tr[data-member]").count() == MEMBERS
            await page.screenshot(path=str(tmp_path / "fleet.png"), full_page=True)
