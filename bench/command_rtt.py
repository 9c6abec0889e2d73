"""Advisor command round trips: command sent → signed receipt back, three processes.

The relay (`hive-agent relay`, nostr-sdk's relay) and the node agent (`hive-agent node`, on
its simulated node, autonomous mode) run as their own processes; the advisor runs here.  Each
command is a real `fee-policy set_single` (alternating 100/110 ppm): gift-wrapped, unwrapped
and verified by the node, decided, executed on the simulator (whose state is saved to disk),
receipted in a hash chain, gift-wrapped back.  The baseline, measured in the same run on the
same relay: one signed event published here and received by another process (as the node is
one) — a gift wrap of the size a command travels in, built before the clock starts, sent and
read over bare websockets so only the relay and the network stack are timed — and, for
reference, a small kind-1 note.

A command round trip is two relay hops plus the work at both ends, so the last line is
`ratio=<p50 command RTT ÷ (2 × p50 raw gift-wrap publish→receive RTT)>`.  It also prints the CPU
time the node process and this (advisor) process spent per command, all threads counted: the
command path is CPU-bound, the baseline is not, so the ratio follows the machine's speed (which
it prints: the CPU time of `sum(range(3*10**7))`), and how much of the CPU time was the kernel's
(sockets, fsync, SQLite's file writes and locks).

    .venv/bin/python bench/command_rtt.py [--commands N] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import nostr_sdk as sdk
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent import app
from agent.node import sim_state
from agent.settings import RelaysConfig, Settings
from agent.store import advisory as repo
from events import command, nip59
from events.base import NostrEvent, sign_event
from events.command import Command
from events.receipt import Status

HIVE = str(Path(sys.executable).with_name("hive-agent"))


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    """A hive-agent process; returns it with its first line of output (it is running then)."""
    proc = subprocess.Popen(
        [HIVE, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def hive(*args: str) -> str:
    done = subprocess.run([HIVE, *args], capture_output=True, text=True, check=True, timeout=60)
    return done.stdout


async def reader(url: str, ids: list[str]) -> None:
    """The receiving end of the baseline, in its own process like the node: one line per event,
    `<id> <perf_counter>` (CLOCK_MONOTONIC, the same clock in every process).  A bare
    websocket client (no library overhead), so the baseline is the relay's own round trip."""
    async with websockets.connect(url, compression=None, max_size=2**20) as ws:
        await ws.send(json.dumps(["REQ", "bench", {"ids": ids}]))
        while not (await ws.recv()).startswith('["EOSE"'):
            pass
        print("ready", flush=True)
        async for frame in ws:
            stamp = time.perf_counter()
            if isinstance(frame, str) and frame.startswith('["EVENT"'):
                print(json.loads(frame)[2]["id"], stamp, flush=True)


async def raw_rtts(url: str, events: list[NostrEvent], tmp: Path) -> list[float]:
    """Publish each (pre-built) event; time until another process receives it."""
    ids = tmp / "ids.txt"
    ids.write_text("\n".join(e.id for e in events))
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is timed
        [sys.executable, __file__, "--reader", url, str(ids)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    lines = proc.stdout
    assert lines.readline().strip() == "ready"
    out: list[float] = []
    try:
        async with websockets.connect(url, compression=None, max_size=2**20) as writer:
            for event in events:
                started = time.perf_counter()
                await writer.send(f'["EVENT",{event.to_json()}]')
                with anyio.fail_after(10):
                    while True:
                        got, stamp = (await anyio.to_thread.run_sync(lines.readline)).split()
                        if got == event.id:
                            break
                out.append(float(stamp) - started)
                await writer.recv()  # the relay's OK (after the clock stopped)
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    return out


def baselines(n: int) -> tuple[list[NostrEvent], list[NostrEvent]]:
    """Small kind-1 notes, and gift wraps of the size a command travels in (built up front)."""
    keys, node = sdk.Keys.generate(), sdk.Keys.generate().public_key().to_hex()
    now = int(time.time())
    notes = [sign_event(keys, 1, f"ping {i}", [], now) for i in range(n)]
    cmd = Command(
        command_id="0" * 32, node=node, credential_id="1" * 32, schema="hive:fee-policy/v1",
        action="set_single", params={"channel": "100x1x0", "fee_ppm": 110}, nonce="2" * 32,
        issued_at=now, expires_at=now + 300,
    )  # fmt: skip
    rumor = command.FAMILY.rumor(keys.public_key().to_hex(), cmd, created_at=now)
    wraps = [nip59.wrap(keys, node, rumor, now=now) for _ in range(n)]
    return notes, wraps


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU time of a process so far (Linux /proc; zeros where that is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def speed() -> float:
    """The CPU seconds of a fixed piece of pure Python: how fast the machine is today, so
    figures from different days can be compared."""
    started = time.process_time()
    sum(range(3 * 10**7))
    return time.process_time() - started


def cpu_since(pid: int, before: tuple[float, float]) -> tuple[float, float]:
    now = cpu_seconds(pid)
    return now[0] - before[0], now[1] - before[1]


async def command_rtts(
    url: str,
    node_home: Path,
    advisor_home: Path,
    n: int,
    node_pid: int,
    cpu: dict[str, tuple[float, float]],
) -> list[float]:
    node_pub = json.loads(hive("--home", str(node_home), "--json", "keys", "show"))["pubkey"]
    config = RelaysConfig.single(url, reconnect_base_s=0.1, publish_timeout_s=5)
    built = app.standalone(Settings(home=advisor_home), sdk.Keys.generate(), config)
    async with built.agent as agent:
        advisor = built.advisor
        hive(
            "--home", str(node_home), "credential", "grant", advisor.me,
            "--schema", "hive:fee-policy/*", "--max-daily-actions", str(n + 10), "--relay", url,
        )  # fmt: skip
        with anyio.fail_after(20):
            while repo.active_held(agent.store, node_pub, advisor.now) is None:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        scid = await first_channel(node_home)
        out: list[float] = []
        node_cpu, own_cpu = cpu_seconds(node_pid), cpu_seconds(os.getpid())
        for i in range(n):
            params = {"channel": scid, "fee_ppm": 110 if i % 2 == 0 else 100}
            started = time.perf_counter()
            _, got = await advisor.advise(
                node_pub, "hive:fee-policy/v1", "set_single", params, timeout_s=10
            )
            elapsed = time.perf_counter() - started
            if got is None or got.status != Status.OK:
                raise SystemExit(f"command {i} failed: {got.error if got else 'no receipt'}")
            out.append(elapsed)
        cpu["node"] = cpu_since(node_pid, node_cpu)
        cpu["advisor"] = cpu_since(os.getpid(), own_cpu)
        assert sum(advisor.verify_chain(node_pub).values()) == n
    return out


async def first_channel(node_home: Path) -> str:
    data = sim_state.read(node_home / "sim-network.json")
    me = next(n["id"] for n in data["nodes"] if n["alias"] == "node0")
    return sorted(c["scid"] for c in data["channels"] if me in (c["a"], c["b"]))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI (no ratio claims)")
    parser.add_argument("--reader", nargs=2, metavar=("URL", "IDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reader:
        url, ids_file = args.reader
        anyio.run(reader, url, Path(ids_file).read_text().split())
        return
    n = 20 if args.smoke else args.commands
    with tempfile.TemporaryDirectory() as tmp:
        relay, url = start("relay", "--port", "0", "--open")
        node_home, advisor_home = Path(tmp) / "node", Path(tmp) / "advisor"
        hive("--home", str(node_home), "keys", "new")
        (node_home / "policy.json").write_text(json.dumps({"rate_per_minute": 10 * n}))
        node, line = start("--home", str(node_home), "node", "--relay", url)
        assert "running" in line, line
        try:
            notes, wraps = baselines(n)
            raw_note = anyio.run(raw_rtts, url, notes, Path(tmp))
            raw = anyio.run(raw_rtts, url, wraps, Path(tmp))
            cpu: dict[str, tuple[float, float]] = {}
            cmd = anyio.run(command_rtts, url, node_home, advisor_home, n, node.pid, cpu)
        finally:
            for proc in (node, relay):
                proc.terminate()
                proc.communicate(timeout=20)
    raw_p50, cmd_p50 = statistics.median(raw), statistics.median(cmd)
    note_p50 = statistics.median(raw_note)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {n} round trips each")
    note_p99 = pct(raw_note, 0.99)
    print(f"raw kind-1 note      p50 {note_p50 * 1e3:7.2f} ms  p99 {note_p99 * 1e3:7.2f} ms")
    print(f"raw gift wrap        p50 {raw_p50 * 1e3:7.2f} ms  p99 {pct(raw, 0.99) * 1e3:7.2f} ms")
    print(f"command → receipt    p50 {cmd_p50 * 1e3:7.2f} ms  p99 {pct(cmd, 0.99) * 1e3:7.2f} ms")
    node_ms, advisor_ms = (sum(cpu[side]) / n * 1e3 for side in ("node", "advisor"))
    print(f"CPU per command: node {node_ms:.2f} ms, advisor {advisor_ms:.2f} ms (all threads)")
    (nu, ns), (au, as_) = (tuple(t / n * 1e3 for t in cpu[side]) for side in ("node", "advisor"))
    print(f"  of which system: node {ns:.2f} ms, advisor {as_:.2f} ms (user {nu:.2f}, {au:.2f})")
    print(f"machine speed: sum(range(3*10**7)) takes {speed():.2f} s of CPU (0.35 on a good day)")
    print(f"(against the kind-1 note instead: {cmd_p50 / (2 * note_p50):.2f})")
    print(f"ratio={cmd_p50 / (2 * raw_p50):.2f}")


if __name__ == "__main__":
    main()
