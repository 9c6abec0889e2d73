"""A payment is never made twice (issue 18 §2): a process running the whole simulated fleet
(tests/settle_child.py; the network journalled to disk after every change of a node, each
member's store on disk) is SIGKILLed at each named settlement crash point — really: the
process kills itself with SIGKILL there — and started again on the same files without it.
Checked where the money is, not in the agent's own records: the simulator's balances, the
receivers' paid invoices and the payers' payments made."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.node import sim_state
from tests.settle_world import PERIOD, week

SETTLE_POINTS = [
    "settle.before_record",
    "settle.after_record",
    "settle.after_pay",
    "settle.after_preimage",
    "settle.after_executed",
]
ROOT = Path(__file__).resolve().parent.parent


def child(home: Path, phase: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HIVE_CRASH_AT"}
    if crash_at:
        env["HIVE_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "tests.settle_child", str(home), phase],
        capture_output=True, text=True, timeout=90, env=env, cwd=ROOT, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def formed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("formed")
    done = child(home, "form")
    assert done.returncode == 0, done.stderr[-3000:]
    return home


def money(home: Path) -> dict:
    data = sim_state.read(home / "net.jsonl")
    nodes = {n["id"]: n for n in data["nodes"]}
    held = {
        n: sum(c["balance"][n] for c in data["channels"] if n in (c["a"], c["b"]))
        + nodes[n]["onchain_sat"] * 1000
        for n in nodes
    }
    counters = data["counters"]
    outside = (counters["chain_fees_sat"] + counters["external_sat"]) * 1000
    return {"nodes": nodes, "held": held, "total": sum(held.values()) + outside
            + counters["dust_msat"]}  # fmt: skip


@pytest.mark.parametrize("point", SETTLE_POINTS)
def test_killed_at_each_payment_point_every_assignment_is_paid_exactly_once(
    formed: Path, tmp_path: Path, point: str
) -> None:
    home = tmp_path / "fleet"
    shutil.copytree(formed, home)
    ids = json.loads((home / "meta.json").read_text())["ids"]
    before = money(home)

    killed = child(home, "settle", crash_at=point)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-3000:])
    resumed = child(home, "settle")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    after = money(home)
    assert after["total"] == before["total"]  # no msat created or lost
    from agent.fleet.settlement_rules import compute_plan

    plan = compute_plan(PERIOD, week(ids[:4]))
    expected = {n: 0 for n in ids}
    for t in plan.payments:
        expected[t.payer] -= t.amount_sat * 1000
        expected[t.receiver] += t.amount_sat * 1000
        # exactly one paid invoice for this assignment on the receiver's node …
        receiver = after["nodes"][t.receiver]
        label = f"hive-settle:{PERIOD}:{t.payer}"
        assert receiver["invoices"][receiver["labels"][label]][2] is True
        assert len([k for k in receiver["labels"] if k.startswith("hive-settle:")]) == len(
            plan.owed_to(t.receiver)
        )
        # … and exactly one payment made by the payer's node
        assert len(after["nodes"][t.payer]["payments"]) == len(plan.owed_by(t.payer))
    moved = {n: after["held"][n] - before["held"][n] for n in ids}
    assert moved == expected
