"""SIGKILL right after a member committed its weekly contribution report (held and queued,
nothing sent yet: `contribution.after_report`), then a restart: the report that was queued
is the one sent — every member ends holding exactly one report per member, the same bytes
everywhere, and nobody reported twice.  The members run in a child process
(tests/contribution_child.py) so the kill is a real `kill -9`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.fleet.settlement_rules import period_bounds, period_of

CHILD = Path(__file__).with_name("contribution_child.py")


def _run(
    home: Path, phase: str, now: int, crash_at: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HIVE_CRASH_AT"}
    if crash_at:
        env["HIVE_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, str(CHILD), str(home), phase, str(now)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_report_committed_then_killed_is_sent_once_after_the_restart(tmp_path: Path) -> None:
    start, end = period_bounds(period_of(int(time.time())))
    tuesday = start + 86_400 + 12 * 3600
    formed = _run(tmp_path, "form", tuesday)
    assert formed.returncode == 0, formed.stderr[-2000:]
    after = end + 3600
    killed = _run(tmp_path, "run", after, crash_at="contribution.after_report")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    done = _run(tmp_path, "run", after + 5)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    members = got["members"]
    assert len(members) == 3
    bodies = [m["reports"] for m in members.values()]
    assert all(b == bodies[0] for b in bodies)  # the same bytes everywhere
    assert set(bodies[0]) == set(members)  # one per member
    assert all(m["held"] == 3 for m in members.values())  # none held twice anywhere
    for author, text in bodies[0].items():
        assert json.loads(text)["node"] == author and json.loads(text)["period"] == got["period"]
