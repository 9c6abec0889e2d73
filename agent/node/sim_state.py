"""Saving and restoring a simulated network, so a node process can be killed and restarted
(crash tests, `hive-agent node --sim-state FILE`) and find its channels, balances, invoices and
labelled rebalances as it left them.

The file is a journal, one JSON line each: a whole-state snapshot, or (for a fee change, the
commonest change and the one an advisor's command makes) the one channel policy that changed.
A change appends one line with a single write() to a descriptor kept open (no open/rename per
change, which cost ~0.3 ms here); reading takes the last snapshot and the complete policy lines
after it, so a killed process leaves the previous state or the new one, never half of each (a
torn last line is ignored).  Past `COMPACT_BYTES` the journal is rewritten as one line
(temp file, rename).  Writes are not fsynced: the simulator stands in for lightningd in tests,
the demo and benchmarks, which kill processes but never cut the power, and its cost would be
charged to the agent in bench/command_rtt.py."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.node.models import FeePolicy, Payment
from agent.node.sim import Network, SimChannel, SimNode


def _rng_state(net: Network) -> list[Any]:
    # the Mersenne Twister's 625 words as one hex string: a tenth of the cost of 625 JSON ints
    version, words, gauss = net.rng.getstate()
    return [version, struct.pack(f"<{len(words)}I", *words).hex(), gauss]


def dump(net: Network) -> dict[str, Any]:
    return {
        "seed": net.seed,
        "rng": _rng_state(net),
        "nodes": [
            {
                "id": n.id,
                "secret": n.secret.hex(),
                "alias": n.alias,
                "onchain_sat": n.onchain_sat,
                "channels": sorted(n.channels),
                "invoices": {h: list(v) for h, v in n.invoices.items()},
                "labels": n.labels,
                "expiry": n.expiry,
                "rebalances": {k: p.model_dump() for k, p in n.rebalances.items()},
                "payments": {k: p.model_dump() for k, p in n.payments.items()},
            }
            for n in net.nodes.values()
        ],
        "channels": [
            {
                "scid": c.scid,
                "a": c.a,
                "b": c.b,
                "capacity_sat": c.capacity_sat,
                "balance": c.balance,
                "policy": {k: p.model_dump() for k, p in c.policy.items()},
                "open": c.open,
            }
            for c in net.channels.values()
        ],
        "connections": sorted(sorted(p) for p in net.connections),  # sets iterate in any order
        "counters": {
            "chain_fees_sat": net.chain_fees_sat,
            "external_sat": net.external_sat,
            "dust_msat": net.dust_msat,
            "blockheight": net.blockheight,
            "txindex": net._txindex,
        },
    }


def restore(data: dict[str, Any], clock: Callable[[], float]) -> Network:
    net = Network(seed=data["seed"], clock=clock)
    version, state, gauss = data["rng"]
    if isinstance(state, str):
        raw = bytes.fromhex(state)
        state = struct.unpack(f"<{len(raw) // 4}I", raw)
    net.rng.setstate((version, tuple(state), gauss))  # a list of ints in files of before 2026-12
    for n in data["nodes"]:
        node = SimNode(
            n["id"], bytes.fromhex(n["secret"]), n["alias"], n["onchain_sat"], set(n["channels"])
        )
        node.invoices = {h: (v[0], v[1], v[2]) for h, v in n["invoices"].items()}
        node.labels = dict(n["labels"])
        node.expiry = {h: int(t) for h, t in n.get("expiry", {}).items()}  # (none before 2026-12)
        node.rebalances = {k: Payment.model_validate(p) for k, p in n["rebalances"].items()}
        node.payments = {k: Payment.model_validate(p) for k, p in n.get("payments", {}).items()}
        net.nodes[node.id] = node
    for c in data["channels"]:
        policy = {k: FeePolicy.model_validate(p) for k, p in c["policy"].items()}
        net.channels[c["scid"]] = SimChannel(
            c["scid"], c["a"], c["b"], c["capacity_sat"], dict(c["balance"]), policy, c["open"]
        )
    net.connections = {frozenset(p) for p in data["connections"]}
    counters = data["counters"]
    net.chain_fees_sat, net.external_sat, net.dust_msat = (
        counters["chain_fees_sat"],
        counters["external_sat"],
        counters["dust_msat"],
    )
    net.blockheight, net._txindex = counters["blockheight"], counters["txindex"]
    return net


COMPACT_BYTES = 1 << 20


def save(net: Network, path: Path) -> None:
    """Write `net` as the only snapshot in `path` (atomically)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dump(net)) + "\n")  # dumps: the C encoder
    os.replace(tmp, path)


class Journal:
    """Appends a snapshot of `net` to `path` on every `save()`, and one channel policy on
    every `policy()` (~150 bytes and ~0.02 ms, where a snapshot of a five-node ring is 11 KB
    and 0.13 ms)."""

    def __init__(self, net: Network, path: Path) -> None:
        self.net, self.path = net, path
        save(net, path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    def save(self) -> None:
        self._append(json.dumps(dump(self.net)))

    def policy(self, node_id: str, scid: str) -> None:
        """Only `node_id`'s policy on channel `scid` changed since the last line."""
        policy = self.net.channels[scid].policy[node_id].model_dump()
        self._append(json.dumps({"policy": [scid, node_id, policy]}))

    def _append(self, text: str) -> None:
        line = (text + "\n").encode()
        if os.fstat(self._fd).st_size + len(line) > COMPACT_BYTES:
            os.close(self._fd)
            save(self.net, self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            return
        os.write(self._fd, line)

    def close(self) -> None:
        os.close(self._fd)


def read(path: Path) -> dict[str, Any]:
    """The state the journal in `path` holds: its last complete snapshot, and the policy
    changes after it (a torn last line, from a killed process, is ignored)."""
    text = path.read_text()
    end = text.rfind("\n")
    if end == -1:  # a single snapshot without its newline
        return json.loads(text)
    start = text.rfind('\n{"seed"', 0, end) + 1  # a snapshot's first key (dump's order)
    first, *changes = text[start:end].split("\n")
    data: dict[str, Any] = json.loads(first)
    if changes:
        channels = {c["scid"]: c for c in data["channels"]}
        for line in changes:
            scid, node_id, policy = json.loads(line)["policy"]
            channels[scid]["policy"][node_id] = policy
    return data


def load(path: Path, clock: Callable[[], float]) -> Network:
    return restore(read(path), clock)
