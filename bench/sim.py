"""Simulator throughput: payments/s and custom messages/s at 100 and 1,000 nodes.

Each node opens 3 channels of 5M sat to random others (half pushed to the far side, so
liquidity flows both ways); payments go between random pairs; custom messages between random
connected peers, delivered by `pump()`.  The fleet benchmarks run on this simulator, so it has
to stay fast as the network grows: the last line is the scaling ratio
`ratio=<payments/s at 1,000 nodes ÷ payments/s at 100 nodes>`.  Only successful payments
count towards a rate (each invoice has its own label), the success rate is printed, and the
run fails below 90 %.

    .venv/bin/python bench/sim.py [--payments N] [--messages N] [--smoke]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.node.sim import Network
from events.errors import HiveError

MIN_SUCCESS = 0.9  # a rate measured mostly on failures measures failures


def build(nodes: int, seed: int = 1) -> tuple[Network, list[str], float]:
    clock = [0.0]
    started = time.perf_counter()
    net = Network(seed=seed, clock=lambda: clock[0], latency_s=(0.0, 0.0))
    ids = [net.add_node(f"n{i}", 100_000_000) for i in range(nodes)]
    rng = random.Random(seed)
    for i, node in enumerate(ids):
        for other in rng.sample([x for j, x in enumerate(ids) if j != i], 3):
            net.open_channel(node, other, 5_000_000, push_msat=2_500_000_000)
    return net, ids, time.perf_counter() - started


def payments(net: Network, ids: list[str], n: int) -> tuple[float, int, Counter[str]]:
    """Successful payments per second (failures are counted, never in the rate)."""
    rng = random.Random(2)
    ok, failed, spent = 0, Counter[str](), 0.0
    for i in range(n):
        a, b = rng.sample(ids, 2)
        bolt11 = net.invoice(b, rng.randint(1_000, 200_000) * 1000, f"bench-{i}").bolt11
        started = time.perf_counter()
        try:
            net.pay(a, bolt11)
            ok += 1
        except HiveError as exc:
            failed[exc.code] += 1
        spent += time.perf_counter() - started
    return ok / spent, ok, failed


def messages(net: Network, ids: list[str], n: int) -> float:
    rng = random.Random(3)
    pairs = [tuple(sorted(p)) for p in net.connections]
    got = [0]
    for node in ids:
        net.listeners[node].append(lambda e: got.__setitem__(0, got[0] + 1))
    net.pump()
    got[0] = 0
    started = time.perf_counter()
    for _ in range(n):
        a, b = rng.choice(pairs)
        net.send_custommsg(a, b, b"\x80\x01HIVE" + b"x" * 200)
    net.pump()
    elapsed = time.perf_counter() - started
    assert got[0] == n, (got[0], n)
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payments", type=int, default=2_000)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    n_pay, n_msg = (50, 500) if args.smoke else (args.payments, args.messages)
    rates = {}
    for size in (100, 1_000):
        net, ids, built = build(size)
        total = net.total_msat()
        pay_rate, ok, failed = payments(net, ids, n_pay)
        msg_rate = messages(net, ids, n_msg)
        assert net.total_msat() == total, "the simulator created or destroyed msat"
        rates[size] = pay_rate
        success = ok / n_pay
        print(
            f"{size:>5} nodes, {len(net.channels):>5} channels (built in {built:.2f} s): "
            f"{pay_rate:,.0f} successful payments/s, success {ok}/{n_pay} = {success:.1%}"
            f" (failed: {dict(failed) or 'none'}), {msg_rate:,.0f} custommsgs/s (all delivered)"
        )
        if success < MIN_SUCCESS:
            sys.exit(
                f"success rate {success:.1%} is below {MIN_SUCCESS:.0%}: the rate is not valid"
            )
    print(f"ratio={rates[1_000] / rates[100]:.2f}")


if __name__ == "__main__":
    main()
