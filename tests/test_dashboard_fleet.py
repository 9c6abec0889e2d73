"""The fleet page in a real browser: five simulated members (tests/fleet_world.py) found a
hive and gossip their state records; the graph (vendored cytoscape.js) shows five members and
the channels between them, from member 0's `FleetService.topology()`.  Then four members
(tests/settle_world.py) route real payments between outsiders in a week's last minutes and
settle it through their contribution ledgers: member 0's page shows each member's in/out msat
(exactly what moved through the channels they share), fees, ratio, leech state, and the
settled week's state, plan and payments, each paid."""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio
import pytest

from agent.advisory.policy import PolicyConfig
from agent.dashboard.actions import HomeOperator
from agent.dashboard.command import Dashboard
from agent.fleet.settlement_rules import period_bounds
from agent.node.sim import Network
from agent.settings import Settings
from tests.fleet_world import fleet
from tests.settle_world import PERIOD, ShiftedClock, settling, until_state
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
            labels = await page.evaluate("window.fleetGraph.edges().map(e => e.data('label'))")
            assert all("sat ·" in x and x.count("ppm") == 2 for x in labels), labels[:2]
            assert await page.locator("tr[data-member]").count() == MEMBERS
            assert await page.locator("tr[data-contribution]").count() == MEMBERS  # none routed
            state = await page.locator("#settlement").get_attribute("data-state")
            assert state in ("none", "skipped")  # (nothing was forwarded: nothing to settle)
            await page.screenshot(path=str(tmp_path / "fleet.png"), full_page=True)


def side(net: Network, a: str, b: str) -> int:
    """a's msat in its channel with b."""
    chan = next(c for c in net.channels.values() if {c.a, c.b} == {a, b})
    return chan.balance[a]


async def test_the_fleet_page_shows_contribution_and_the_settled_week(tmp_path: Path) -> None:
    clock = ShiftedClock(period_bounds(PERIOD)[1] - 120)  # the week's last two minutes
    async with settling(tmp_path, 4, ledgers=[None] * 4, clock=clock) as world:
        net, ids = world.net, world.ids
        m0, m1, m2 = ids[:3]
        x1, x2, x3 = (net.add_node(f"x{k}", 20_000_000) for k in (1, 2, 3))
        for x, m in ((x1, m0), (x2, m1), (x3, m2)):  # an outsider behind each of three members
            scid = net.open_channel(x, m, 2_000_000, push_msat=1_000_000_000)
            net.set_policy(m, scid, ppm=20_000)
        before = side(net, m0, m1), side(net, m0, m2)
        for k in range(6):  # x2 → m1 → m0 → x1 and x1 → m0 → m2 → x3: forwards on both sides
            net.pay(x2, net.invoice(x1, 10_000_000 + 1_000_000 * k, f"o{k}").bolt11)
            net.pay(x1, net.invoice(x3, 5_000_000, f"i{k}").bolt11)
        in_m1, out_m2 = side(net, m0, m1) - before[0], before[1] - side(net, m0, m2)
        first = world.members[0].fleet
        with anyio.fail_after(10):  # member 0's ledger takes in its forwards
            while first.contribution_view()["own"]["forwards"] < 12:
                await anyio.sleep(0.05)
        clock.advance(125)  # the week is over: every member reports it, then it settles
        for m in world.members:
            m.fleet.kernel.wake()
        with anyio.fail_after(20):
            while any(len(m.fleet.contribution.inputs(m.fleet.store, PERIOD)) < 4
                      for m in world.members):  # fmt: skip
                await anyio.sleep(0.05)
        world.due()
        view = (await until_state(world, "executed", [0]))[0]
        assert view["payments"]

        operator = HomeOperator(
            Settings(home=world.members[0].home), argparse.Namespace(relay=None)
        )
        board = Dashboard(
            world.members[0].home / "fleet.sqlite", operator, PolicyConfig(), "127.0.0.1", 0,
            fleet=first,
        )  # fmt: skip
        async with serving(board), browser_page() as page:
            await page.goto(board.url.replace("/?", "/fleet?"))
            row1 = await page.locator(f'tr[data-contribution="{m1}"]').inner_text()
            row2 = await page.locator(f'tr[data-contribution="{m2}"]').inner_text()
            assert f"{in_m1:,}" in row1.split() and f"{out_m2:,}" in row2.split()
            assert await page.locator("tr[data-contribution]").count() == 4  # three, and us
            own = first.contribution_view()["own"]
            assert own["fees_msat"] > 0 and own["forwards"] == 12
            mine = (await page.locator(f'tr[data-contribution="{m0}"]').inner_text()).split()
            assert f"{own['fees_msat']:,}" in mine and "12" in mine
            assert await page.locator("#settlement").get_attribute("data-state") == "executed"
            assert await page.locator("tr[data-plan]").count() == 4
            payments = page.locator("tr[data-payment] td.status")
            assert await payments.count() == len(view["payments"])
            assert set(await payments.all_inner_texts()) == {"paid"}
            for p in view["payments"]:
                shown = await page.locator(
                    f'tr[data-payment="{p["payer"]}:{p["receiver"]}"]'
                ).inner_text()
                assert f"{p['amount_sat']:,}" in shown.split()
            await page.screenshot(path=str(tmp_path / "fleet-money.png"), full_page=True)
