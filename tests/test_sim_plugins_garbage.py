"""The simulator's plugin RPCs (agent/node/sim_plugins.py) behind its CLN RPC socket, given
wrong-typed parameters: each such call is an RPC error, and the socket goes on answering."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from agent.node.cln import CLNBackend
from agent.node.sim_api import SimLightningd
from agent.node.sim_plugins import CLBOSS, REVENUE_OPS, plugins_on
from agent.node.sim_rpc import SimRpcServer, short_socket_dir
from events.errors import HiveError
from tests.node_scenario import ring

pytestmark = pytest.mark.anyio

GARBAGE = [
    ("revenue-policy", {"action": "set", "peer_id": "02" + "11" * 32, "strategy": ["hive"]}),
    ("revenue-policy", {"action": "set", "peer_id": "02" + "11" * 32, "rebalance": {"a": 1}}),
    ("revenue-policy", {"action": ["set"], "peer_id": "02" + "11" * 32}),
    ("clboss-ignore", {"nodeid": ["02" + "11" * 32]}),
    ("plugin", {"subcommand": ["list"]}),
]


async def test_wrong_typed_plugin_parameters_never_take_the_socket_down(tmp_path: Path) -> None:
    """A revenue-policy `strategy` given as a list raised TypeError inside the emulated
    plugin, which escaped the server's request handler and ended the whole RPC server (its
    task group): every later call on the node's socket, from the plugin or anyone, failed.
    Now it is an RPC error like any other, and the socket keeps answering."""
    net, ids = ring()
    host = plugins_on(net, ids[0])
    host.loaded = {REVENUE_OPS, CLBOSS}
    path = short_socket_dir() / "lightning-rpc"
    async with SimRpcServer(SimLightningd(net, ids[0]), path):
        node = CLNBackend(str(path), timeout_s=5)
        for method, params in GARBAGE:
            with anyio.fail_after(10):
                try:
                    answer = await node.plugin_call(method, params)
                except HiveError:
                    answer = None
            assert answer is None or answer.get("status") != "success", (method, answer)
            assert (await node.info()).id == ids[0]  # still answering
        assert host.policies == {} and host.ignored == set()
