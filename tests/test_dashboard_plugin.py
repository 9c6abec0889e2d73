"""The dashboard inside the Core Lightning plugin (`--hive-dashboard-port`): served on
127.0.0.1 while the plugin's Nostr agent runs, its URL with the token only from
`lightning-cli hive-dashboard`, the fleet page from the plugin's own fleet; off by default."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest

from agent.node.lightningd import PluginError
from agent.nostr.local_relay import free_port
from tests.node_scenario import ring
from tests.test_plugin import agent_started, plugin_on

pytestmark = pytest.mark.anyio


async def test_the_plugin_serves_the_dashboard_and_tells_its_url_only_on_request(
    relay_url: str,
) -> None:
    net, ids = ring(clock=time.monotonic)
    port = free_port()
    options = {"hive-relays": relay_url, "hive-dashboard-port": str(port)}
    async with plugin_on(net, ids[0], **options) as plugin:
        await plugin.call("hive-genesis")
        await agent_started(plugin)
        url = ""
        for _ in range(100):  # (it starts with the Nostr agent)
            try:
                url = (await plugin.call("hive-dashboard"))["url"]
                break
            except PluginError:
                await anyio.sleep(0.05)
        status = await plugin.call("hive-status")
        assert url.startswith(f"http://127.0.0.1:{port}/"), status["problems"]
        assert "/?token=" in url, url
        base = url.split("/?")[0]  # the address and the dashboard's secret prefix
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(base + "/")).status_code == 401  # no token, no page
            assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 404
            page = await client.get(url, follow_redirects=True)
            assert page.status_code == 200 and "Approvals" in page.text
            assert "token=" not in str(page.url)  # the token left the address bar
            fleet = await client.get(base + "/fleet")
            assert fleet.status_code == 200
            assert ids[0][:12] in fleet.text  # the plugin's own fleet: this node, its founder


async def test_the_dashboard_is_off_by_default() -> None:
    net, ids = ring(clock=time.monotonic)
    async with plugin_on(net, ids[0]) as plugin:
        with pytest.raises(PluginError, match="NOT_FOUND: the dashboard is off"):
            await plugin.call("hive-dashboard")
