"""`hive-settlement` and `hive-settlement-execute` through the real plugin process on the
simulator's RPC socket (CLN's plugin JSON-RPC), and `find_payment` through CLNBackend: the
simulator's `listpays` answers as lightningd's does."""

from __future__ import annotations

import time

import pytest

from agent.node.cln import CLNBackend
from agent.node.lightningd import PluginError
from agent.node.sim_api import SimLightningd
from agent.node.sim_rpc import SimRpcServer, short_socket_dir
from agent.node.simnode import SimBackend
from tests.node_scenario import ring
from tests.test_plugin import plugin_on

pytestmark = pytest.mark.anyio


async def test_the_settlement_methods_answer_through_the_plugin() -> None:
    net, ids = ring(clock=time.monotonic)
    async with plugin_on(net, ids[0]) as plugin:
        await plugin.call("hive-genesis")
        view = await plugin.call("hive-settlement", period="2026-40")
        assert view["period"] == "2026-40" and view["state"] == "none"
        with pytest.raises(PluginError, match="INVALID_PARAMS"):
            await plugin.call("hive-settlement", period="2026-54")
        with pytest.raises(PluginError, match="NOT_FOUND"):  # no inputs held for the week
            await plugin.call("hive-settlement-execute", period="2026-40", dry_run=True)
        with pytest.raises(PluginError, match="has not ended"):
            await plugin.call("hive-settlement-execute", period="2099-01")
        status = await plugin.call("hive-status")
        assert status["fleet"]["settlement"]["periods"] == {}


async def test_find_payment_and_find_invoice_agree_on_both_backends() -> None:
    net, ids = ring()
    path = short_socket_dir() / "lightning-rpc"
    async with SimRpcServer(SimLightningd(net, ids[0]), path):
        for i, node in enumerate((SimBackend(net, ids[0]), CLNBackend(str(path), timeout_s=10))):
            label = f"hive-settle:2026-40:{i}"
            inv = net.invoice(ids[2], 1_000_000 + i, label)
            assert await node.decode_invoice(inv.bolt11) == inv  # (what a payer checks)
            assert await node.find_payment(inv.payment_hash) is None
            paid = await node.pay(inv.bolt11)
            found = await node.find_payment(inv.payment_hash)
            assert found is not None and found.preimage == paid.preimage
            assert found.amount_msat == 1_000_000 + i
        receiver = SimBackend(net, ids[2])
        held = await receiver.find_invoice("hive-settle:2026-40:0")
        assert held is not None and held.amount_msat == 1_000_000
        assert await receiver.find_invoice("nothing") is None
