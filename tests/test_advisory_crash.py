"""SIGKILL at each named crash point on either side of a command: the real `hive-agent node`
and `hive-agent advise`/`run` processes are killed, restarted, and the outcome checked — the
action ran exactly once on the (persisted) simulated node, and exactly one final receipt, in
an unbroken chain, reached the advisor."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from agent.node import sim_state
from agent.procs import ChildProcess, printed_a_line
from agent.store import Store
from agent.store import advisory as repo
from events import receipt
from tests.conftest import HIVE_AGENT
from tests.test_crash import GIFT_WRAP, hive, new_agent

COMMAND_POINTS = ["command.before_execute", "command.after_execute", "command.after_receipt"]


class NodeProcess:
    def __init__(self, home: Path, url: str) -> None:
        self.home, self.url = home, url
        self.child: ChildProcess | None = None

    def start(self, crash_at: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k != "HIVE_CRASH_AT"}
        if crash_at:
            env["HIVE_CRASH_AT"] = crash_at
        self.child = ChildProcess(
            "hive-agent node",
            [HIVE_AGENT, "--home", str(self.home), "node", "--relay", self.url],
            env=env,
            stdout="lines",
            ready=printed_a_line,
            stop_timeout_s=20,
        )
        self.child.start()
        assert "running" in self.child.lines()[0]

    def wait_killed(self, timeout: float = 30) -> int:
        assert self.child is not None
        return self.child.wait(timeout)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()


def sim(home: Path) -> dict:
    return sim_state.read(home / "sim-network.json")


def my_channels(home: Path) -> tuple[list[dict], str]:
    data = sim(home)
    me = next(n["id"] for n in data["nodes"] if n["alias"] == "node0")
    return sorted(
        (c for c in data["channels"] if me in (c["a"], c["b"])), key=lambda c: c["scid"]
    ), me


@pytest.fixture
def setup(tmp_path: Path, relays):
    url = relays(db=True).start()
    node_home, advisor_home = tmp_path / "node", tmp_path / "advisor"
    node_pub, advisor_pub = new_agent(node_home), new_agent(advisor_home)
    node = NodeProcess(node_home, url)
    node.start()
    granted = hive(
        node_home,
        "--json",
        "credential",
        "grant",
        advisor_pub,
        "--tier",
        "advanced",
        "--schema",
        "hive:fee-policy/*",
        "--schema",
        "hive:rebalance/*",
        "--relay",
        url,
    )
    assert granted.returncode == 0, granted.stderr
    assert hive(advisor_home, "run", "--until-idle", "--relay", url).returncode == 0
    yield node, node_pub, advisor_home, url
    node.stop()


def final_receipts(advisor_home: Path, command_id: str) -> list[receipt.Receipt]:
    held = repo.held_for_command(Store(advisor_home / "agent.sqlite"), command_id)
    return [r for r in held if r.status.value != "queued"]


def collect(
    advisor_home: Path, url: str, command_id: str, timeout: float = 30
) -> list[receipt.Receipt]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert hive(advisor_home, "run", "--until-idle", "--relay", url).returncode == 0
        got = final_receipts(advisor_home, command_id)
        if got:
            return got
        time.sleep(0.3)
    return []


@pytest.mark.parametrize("point", COMMAND_POINTS)
@pytest.mark.parametrize("family", ["fee-policy", "rebalance"])
def test_node_killed_at(setup, point: str, family: str) -> None:
    node, node_pub, advisor_home, url = setup
    node.stop()
    node.start(crash_at=f"{point}:{family}")
    chans, me = my_channels(node.home)
    before = {c["scid"]: c for c in chans}
    if family == "fee-policy":
        args = ["fee-policy", "set_single", f"channel={chans[0]['scid']}", "fee_ppm=120"]
    else:
        args = [
            "rebalance",
            "circular",
            f"from_channel={chans[0]['scid']}",
            f"to_channel={chans[1]['scid']}",
            "amount_sats=50000",
            "max_fee_ppm=500",
        ]
    sent = hive(advisor_home, "--json", "advise", node_pub, *args, "--relay", url, "--timeout", "3")
    command_id = json.loads(sent.stdout)["command_id"]
    assert node.wait_killed() == -signal.SIGKILL
    node.start()  # restart without the crash point
    got = collect(advisor_home, url, command_id)
    assert len(got) == 1, [r.status for r in got]
    assert got[0].status.value == "ok", got[0].error
    after = {c["scid"]: c for c in my_channels(node.home)[0]}
    if family == "fee-policy":
        assert after[chans[0]["scid"]]["policy"][me]["ppm"] == 120
    else:  # moved exactly once: 50,000 sat out (plus fees), 50,000 sat in
        out_delta = before[chans[0]["scid"]]["balance"][me] - after[chans[0]["scid"]]["balance"][me]
        in_delta = after[chans[1]["scid"]]["balance"][me] - before[chans[1]["scid"]]["balance"][me]
        assert in_delta == 50_000_000
        assert out_delta == 50_000_000 + got[0].result["fee_msat"]
    store = Store(node.home / "agent.sqlite")
    assert repo.usage(store, "node", int(time.time()), 1)["actions"] == 1
    # what it changed, recorded with its receipt (the state before: as claimed before the kill)
    seq = got[0].seq
    changed = repo.state_diffs(store, got[0].credential_id, seq, seq)[seq]
    first, second = chans[0]["scid"], chans[1]["scid"]
    if family == "fee-policy":
        assert changed == {f"{first}.ppm": [before[first]["policy"][me]["ppm"], 120]}
    else:
        assert changed == {
            f"{s}.local_msat": [before[s]["balance"][me], after[s]["balance"][me]]
            for s in (first, second)
        }
    chain = repo.held_receipts(Store(advisor_home / "agent.sqlite"))
    receipt.verify_chain(chain)


@pytest.mark.parametrize("point", ["outbox.after_store", "outbox.before_send", "outbox.after_send"])
def test_advisor_killed_while_sending(setup, point: str) -> None:
    node, node_pub, advisor_home, url = setup
    chans, me = my_channels(node.home)
    killed = hive(
        advisor_home,
        "advise",
        node_pub,
        "fee-policy",
        "set_single",
        f"channel={chans[0]['scid']}",
        "fee_ppm=121",
        "--relay",
        url,
        crash_at=f"{point}:{GIFT_WRAP}",
    )
    assert killed.returncode == -signal.SIGKILL
    sent = (
        Store(advisor_home / "agent.sqlite")
        .conn.execute("SELECT command_id FROM commands_sent")
        .fetchall()
    )
    assert len(sent) == 1
    got = collect(advisor_home, url, sent[0][0])
    assert len(got) == 1 and got[0].status.value == "ok"
    assert my_channels(node.home)[0][0]["policy"][me]["ppm"] == 121
    assert (
        repo.usage(Store(node.home / "agent.sqlite"), "node", int(time.time()), 1)["actions"] == 1
    )


@pytest.mark.parametrize("point", ["inbound.after_handler", "inbound.after_commit"])
def test_advisor_killed_while_receiving(setup, point: str) -> None:
    node, node_pub, advisor_home, url = setup
    chans, me = my_channels(node.home)
    sent = hive(
        advisor_home,
        "--json",
        "advise",
        node_pub,
        "fee-policy",
        "set_single",
        f"channel={chans[0]['scid']}",
        "fee_ppm=122",
        "--relay",
        url,
        "--timeout",
        "10",
        crash_at=f"{point}:{GIFT_WRAP}",
    )
    assert sent.returncode == -signal.SIGKILL, (sent.returncode, sent.stdout, sent.stderr)
    command_id = (
        Store(advisor_home / "agent.sqlite")
        .conn.execute("SELECT command_id FROM commands_sent")
        .fetchone()[0]
    )
    got = collect(advisor_home, url, command_id)
    assert len(got) == 1 and got[0].status.value == "ok"
    assert len(repo.held_receipts(Store(advisor_home / "agent.sqlite"))) == 1
    assert my_channels(node.home)[0][0]["policy"][me]["ppm"] == 122
