"""Inbound pipeline throughput against raw BIP-340 verification, measured in the same run.

Raw EVENT JSON strings (10 % duplicates, 1 % bad signatures) go through `Inbound.process` —
the function the subscription consumer calls — with the real store (a temp SQLite file, WAL,
one commit per batch, not fsynced) and the real agent-profile handler.  The baseline is
the fastest raw Schnorr verification available in this venv over the same events.

    .venv/bin/python bench/events.py [--events N] [--smoke]

The last line is `ratio=<pipeline events/s ÷ raw verifications/s>`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import coincurve
import nostr_sdk as sdk
import secp256k1

from agent.clock import SystemClock
from agent.handlers import core_routes
from agent.inbound import DUPLICATE, OK, Inbound
from agent.nostr.client import Incoming
from agent.ratelimit import FloodLimiter
from agent.settings import Settings
from agent.store import Store
from events import agent_info
from events.agent_info import AgentInfo, Role


def make_stream(n: int, rng: random.Random) -> tuple[list[str], list[dict]]:
    authors = [sdk.Keys.generate() for _ in range(200)]
    now = int(time.time())
    unique = []
    for i in range(n):
        info = AgentInfo(
            name=f"agent {i}", role=Role.ADVISOR, version="1", capabilities=["fee-policy"]
        )
        unique.append(
            agent_info.build(authors[i % len(authors)], info, created_at=now - n + i).to_json()
        )
    stream = []
    for raw in unique:
        if rng.random() < 0.01:  # 1 % bad signatures
            data = json.loads(raw)
            data["sig"] = ("0" if data["sig"][0] != "0" else "1") + data["sig"][1:]
            raw = json.dumps(data)
        stream.append(raw)
        if rng.random() < 0.10:  # 10 % duplicates (the same event from another relay)
            stream.append(stream[rng.randrange(len(stream))])
    return stream, [json.loads(r) for r in unique]


def rate(fn, items) -> float:
    started = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - started)


def raw_verifiers(events: list[dict]) -> dict[str, float]:
    def with_secp256k1(ev: dict) -> None:
        key = secp256k1.PublicKey(b"\x02" + bytes.fromhex(ev["pubkey"]), raw=True)
        assert key.schnorr_verify(bytes.fromhex(ev["id"]), bytes.fromhex(ev["sig"]), None, raw=True)

    def with_coincurve(ev: dict) -> None:
        key = coincurve.PublicKeyXOnly(bytes.fromhex(ev["pubkey"]))
        assert key.verify(bytes.fromhex(ev["sig"]), bytes.fromhex(ev["id"]))

    return {"secp256k1": rate(with_secp256k1, events), "coincurve": rate(with_coincurve, events)}


def pipeline_rate(stream: list[str]) -> tuple[float, dict[str, int]]:
    settings = Settings(flood_per_minute=10**9, flood_burst=10**9)
    with tempfile.TemporaryDirectory() as tmp:
        clock = SystemClock()
        keys = sdk.Keys.generate()
        store = Store(Path(tmp) / "agent.sqlite")
        limiter = FloodLimiter(
            settings.flood_per_minute, settings.flood_burst, settings.flood_senders
        )
        inbound = Inbound(store, core_routes(keys, clock).handlers, limiter, clock)
        items = [Incoming("ws://bench", raw, "profiles") for raw in stream]
        started = time.perf_counter()
        for i in range(0, len(items), settings.batch_size):
            inbound.process(items[i : i + settings.batch_size])
        elapsed = time.perf_counter() - started
        store.close()
    return len(items) / elapsed, dict(inbound.totals)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI (no ratio claims)")
    args = parser.parse_args()
    n = 300 if args.smoke else args.events
    stream, unique = make_stream(n, random.Random(42))
    raw = raw_verifiers(unique)
    best = max(raw, key=raw.__getitem__)
    events_per_s, totals = pipeline_rate(stream)
    for outcome in (OK, DUPLICATE, "BAD_SIGNATURE"):
        assert totals.get(outcome, 0) > 0, f"the stream should contain {outcome}"
    print(f"stream: {len(stream)} raw events ({n} unique, duplicates and bad signatures mixed in)")
    print(f"outcomes: {totals}")
    for name, value in raw.items():
        print(f"raw BIP-340 verify ({name}): {value:,.0f}/s")
    stages = "parse, dedupe, verify, flood limit, handler, store"
    print(f"pipeline ({stages}): {events_per_s:,.0f} events/s")
    print(f"ratio={events_per_s / raw[best]:.2f}")


if __name__ == "__main__":
    main()
