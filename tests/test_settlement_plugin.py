"""`hive-settlement` and `hive-settlement-execute` through the real plugin process on the
simulator's RPC socket (CLN's plugin JSON-RPC), and `find_payment` through CLNBackend: the
simulator's `listpays` answers as lightningd's does."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.node.cln import CLNBackend
from agent.node.lightningd import PluginError
from agent.node.sim import Network
from agent.node.sim_api import SimLightningd
from agent.node.sim_rpc import SimRpcServer, short_socket_dir
from agent.node.simnode import SimBackend
from events.errors import InvalidParams, PaymentFailed
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


async def test_invoices_expire_as_lightningds_do_on_both_backends() -> None:
    """An invoice lasts a week (CLN's default): both backends give its expiry (CLN's `invoice`,
    `listinvoices` and `decode` answers), and once it is over a payment is refused before
    anything moves (CLN's pay error 207) — what a settlement payer checks before paying."""
    now = [1_800_000_000.0]
    net, ids = ring()
    net.wall = lambda: now[0]
    path = short_socket_dir() / "lightning-rpc"
    async with SimRpcServer(SimLightningd(net, ids[0]), path):
        for i, node in enumerate((SimBackend(net, ids[0]), CLNBackend(str(path), timeout_s=10))):
            mine = await node.invoice(5_000 + i, f"mine-{i}")
            assert mine.expires_at == 1_800_000_000 + 7 * 86400
            assert await node.find_invoice(f"mine-{i}") == mine
            theirs = net.invoice(ids[2], 7_000 + i, f"theirs-{i}")
            assert (await node.decode_invoice(theirs.bolt11)).expires_at == theirs.expires_at
            now[0] += 7 * 86400
            with pytest.raises(PaymentFailed, match=r"(?i)expired"):
                await node.pay(theirs.bolt11)
            assert await node.find_payment(theirs.payment_hash) is None
            assert not net.node(ids[2]).invoices[theirs.payment_hash][2]
            now[0] -= 7 * 86400
        old = f"lnsim1{9_000}x{ids[2]}x{'ab' * 32}"  # a simulator invoice of before 2026-12
        assert Network.decode(old) == (9_000, ids[2], "ab" * 32, None)
        assert (await CLNBackend(str(path), timeout_s=10).decode_invoice(old)).expires_at is None


@given(st.integers(1, 10**15), st.integers(0, 2**40), st.booleans())
def test_the_simulators_invoice_codec_round_trips(amount: int, expires: int, dated: bool) -> None:
    payee, payment_hash = "02" + "11" * 32, "cd" * 32
    tail = f"x{expires}" if dated else ""
    bolt11 = f"lnsim1{amount}x{payee}x{payment_hash}{tail}"
    assert Network.decode(bolt11) == (amount, payee, payment_hash, expires if dated else None)
    for broken in (bolt11 + "x1x2", bolt11.replace("lnsim1", "lnbc1"), f"lnsim1x{payee}"):
        with pytest.raises(InvalidParams):
            Network.decode(broken)
