"""Demo act: three simulated nodes form a hive over BOLT 1 custom messages (the real protocol:
signed frames, invite tickets, HELLO → CHALLENGE → ATTEST → WELCOME), vouch one node to full
member, and ban an outsider that misbehaved — after which every member ignores it."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from agent.demo.common import until
from agent.demo.narrator import Say
from agent.fleet.service import FleetConfig
from agent.fleet.simfleet import SimMember, sim_keys
from agent.node.sim import Network
from agent.node.simnode import SimBackend, SimDriver
from events import fleet as wire

CONFIG = FleetConfig(retry_base_s=0.5, retry_cap_s=5)


async def fleet_act(say: Say) -> dict[str, Any]:
    net = Network(seed=8, clock=time.monotonic)
    names = ["gina", "hank", "ivy", "mallory"]
    ids = [net.add_node(name, 20_000_000) for name in names]
    for i in range(4):
        for j in range(i + 1, 4):
            net.open_channel(ids[i], ids[j], 1_000_000, push_msat=200_000_000)
            net.connect(ids[i], ids[j])
    say("simulated network: gina, hank and ivy (to be the hive) and mallory, all with channels")
    with tempfile.TemporaryDirectory(prefix="hive-fleet-") as tmp:
        async with SimDriver(net), anyio.create_task_group() as tg:
            members = [
                SimMember(net, ids[i], Path(tmp) / names[i], config=CONFIG) for i in range(3)
            ]
            for m in members:
                await m.start(tg)
            gina, hank, ivy = (m.fleet for m in members)
            hive = (await gina.genesis())["hive_id"]
            say(f"gina: hive-genesis → {hive}, gina is its admin and first member")
            for joiner, name in ((hank, "hank"), (ivy, "ivy")):
                ticket = await gina.invite(joiner.me, valid_hours=24)
                say(
                    f"gina: hive-invite {name} → signed ticket {ticket['ticket'][:24]}… "
                    f"({len(ticket['ticket'])} chars, names {name}'s node id only)"
                )
                await joiner.join(ticket["ticket"])
                await until(
                    lambda j=joiner: (j.status()["joining"] or {}).get("state") == "joined", 15
                )
                say(f"{name}: HELLO → CHALLENGE → ATTEST (node binding) → WELCOME: a neophyte")
            promoted = await gina.vouch(hank.me)
            await until(
                lambda: all(m.fleet.view()["members"].get(hank.me) == "member" for m in members),
                15,
            )
            say(
                f"gina: hive-vouch hank → {promoted['vouches']}/{promoted['quorum']} vouches: "
                "hank is a full member on all three nodes"
            )

            # mallory pretends to be a member and vouches for itself
            rogue = SimBackend(net, ids[3])

            def fake(msg_id: str) -> bytes:
                return wire.build_frame(
                    sim_keys(net, ids[3]), wire.MsgType.VOUCH, wire.Vouch(candidate=ids[3]),
                    hive=hive, msg_id=msg_id, node=ids[3], ts=int(time.time()),
                )  # fmt: skip

            await rogue.sendcustommsg(ids[0], fake("f" * 32))
            await until(lambda: "NOT_MEMBER" in gina.status()["refused"], 15)
            say("mallory sends gina a VOUCH as if it were a member: refused, NOT_MEMBER")
            first = await gina.ban(ids[3], "impersonated a member")
            say(
                f"gina: hive-ban mallory → proposal {first['proposal_id'][:12]}…, "
                f"{first['yes']}/{first['quorum']}"
            )
            await until(lambda: bool(hank.members()["ban_proposals"]), 15)
            second = await hank.ban(ids[3])
            await until(lambda: all(m.fleet.view()["bans"] == [ids[3]] for m in members), 15)
            say(f"hank: hive-ban mallory → {second['yes']}/{second['quorum']}: banned fleet-wide")
            before = ivy.status()["refused"].get("BANNED", 0)
            await rogue.sendcustommsg(ids[2], fake("e" * 32))
            await until(lambda: ivy.status()["refused"].get("BANNED", 0) > before, 15)
            say("mallory tries ivy next: ignored (BANNED) — the ban list is the hive's")
            views = [m.fleet.view() for m in members]
            for m in members:
                await m.stop()
            tg.cancel_scope.cancel()
    agreed = all(v == views[0] for v in views)
    say(f"all three agree on members, tiers and bans: {agreed}")
    tiers = {names[ids.index(n)]: t for n, t in views[0]["members"].items()}
    return {
        "hive_id": hive,
        "tiers": tiers,
        "banned": [names[ids.index(n)] for n in views[0]["bans"]],
        "agreed": agreed,
    }
