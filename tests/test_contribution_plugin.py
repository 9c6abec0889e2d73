"""The contribution ledger through two real plugin processes on the simulator's RPC socket: a
payment from member B to an outside node X, routed through member A, reaches A's plugin as
lightningd's `forward_event` notification and lands in A's ledger; `hive-contribution` shows
it (all members, or one), with the chain verified; `hive-status` carries the summary."""

from __future__ import annotations

import secrets
from typing import Any

import anyio
import pytest

from agent.node.sim import Network
from agent.node.simnode import SimDriver
from tests.test_fleet_plugin import PluginNode, until

pytestmark = pytest.mark.anyio


async def test_a_forward_event_reaches_the_ledger_and_hive_contribution_shows_it() -> None:
    net = Network(seed=3)
    a_id, b_id, x = (net.add_node(n, 20_000_000) for n in ("a", "b", "x"))
    net.open_channel(a_id, b_id, 2_000_000, push_msat=1_000_000_000)
    net.open_channel(a_id, x, 2_000_000, push_msat=1_000_000_000)
    async with SimDriver(net), anyio.create_task_group() as tg:
        a = await PluginNode(net, a_id, tg).start()
        b = await PluginNode(net, b_id, tg).start()
        try:
            await a.call("hive-genesis")
            ticket = await a.call("hive-invite", node_id=b_id)
            await b.call("hive-join", ticket=ticket["ticket"])

            async def joined() -> bool:
                return (await b.fleet())["tier"] == "neophyte"

            await until(joined)
            await anyio.sleep(0.5)  # a has recorded the admission
            bolt11 = net.invoice(x, 150_000_000, secrets.token_hex(4)).bolt11
            paid = net.pay(b_id, bolt11)  # b → a → x

            async def counted() -> Any:
                shown = await a.call("hive-contribution", node_id=b_id)
                row = shown["members"][0]
                return shown if row["forwards"] == 1 else None

            shown = await until(counted)
            row = shown["members"][0]
            assert row["node"] == b_id and row["out_msat"] == 0
            assert row["in_msat"] == 150_000_000 + paid.fee_msat  # what b handed a
            assert row["fees_msat"] == paid.fee_msat and row["ratio"] == 0.0
            assert row["leech"] is False and row["days"][0]["forwards"] == 1
            assert shown["chain"]["ok"] and shown["chain"]["rows"] == 1
            everyone = await a.call("hive-contribution")
            assert [m["node"] for m in everyone["members"]] == [b_id]
            summary = (await a.fleet())["contribution"]
            assert summary["forwards_30d"] == 1 and summary["leeches"] == []
            with pytest.raises(Exception, match="node id"):
                await a.call("hive-contribution", node_id="nope")
        finally:
            await b.stop()
            await a.stop()
