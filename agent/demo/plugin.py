"""Act 8: a simulated Lightning network starts; the real `plugin_shim.py` process is driven over
stdin/stdout exactly as lightningd drives it (getmanifest, init, hooks, notifications) with its
RPC calls answered by the simulator's CLN socket; it derives its Nostr key with `makesecret`,
binds it to the node id with `signmessage`, and answers `hive-status`."""

from __future__ import annotations

from typing import Any

import anyio

from agent.demo.common import ring
from agent.demo.narrator import Say
from agent.node.lightningd import PluginProcess, bridge
from agent.node.sim_api import SimLightningd
from agent.node.sim_rpc import SimRpcServer, short_socket_dir
from agent.node.simnode import SimBackend, SimDriver
from events import lnsig
from events.node_binding import NodeBinding


async def plugin_act(say: Say) -> dict[str, Any]:
    """The real plugin process, spoken to as lightningd speaks to it, on a simulated node."""
    net, ids = ring(42, ("carol", "dave", "erin", "frank"), push_msat=800_000_000)
    say(f"simulated network: {len(ids)} nodes, {len(net.channels)} channels in a ring")
    lightning_dir = short_socket_dir()
    async with (
        SimDriver(net),
        SimRpcServer(SimLightningd(net, ids[0]), lightning_dir / "lightning-rpc"),
        PluginProcess(lightning_dir) as plugin,
        anyio.create_task_group() as tg,
    ):
        manifest_s, init_s = await plugin.start()
        tg.start_soon(bridge, net, ids[0], plugin)
        say(
            f"plugin_shim.py answered getmanifest in {manifest_s * 1000:.0f} ms and init in "
            f"{init_s * 1000:.0f} ms (lightningd allows 60 s each)"
        )
        await SimBackend(net, ids[1]).sendcustommsg(ids[0], (32769).to_bytes(2, "big") + b"HIVE{}")
        await SimBackend(net, ids[3]).pay(net.invoice(ids[1], 10_000_000, "demo").bolt11)
        await anyio.sleep(0.3)
        status = await plugin.call("hive-status")
        tg.cancel_scope.cancel()
    binding = NodeBinding.model_validate_json(status["binding"]["content"])
    bound = lnsig.check(binding.nostr_pubkey, binding.zbase, binding.node_id)
    node = status["node"]
    say(
        f"hive-status: node {node['id'][:16]}… ({node['alias']}), "
        f"{len(node['channels'])} channels, {node['onchain_sat']:,} sat on chain"
    )
    say(
        f"Nostr key {status['nostr_pubkey'][:16]}… derived with makesecret; node binding "
        f"{'verifies' if bound else 'DOES NOT verify'} (checkmessage + Schnorr)"
    )
    say(f"events the agent received from lightningd: {status['events']}")
    return {"node_id": node["id"], "binding_verified": bound, "events": status["events"]}
