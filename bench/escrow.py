"""Escrow latency on a real Nutshell mint (FakeWallet): redeem and refund of a ticket.

For each run a fresh ticket part is locked (NUT-14 HTLC, the advisor's key, a locktime, the
operator's refund key); then timed: the advisor's redeem (preimage + signature, one swap at the
mint), and on other tickets whose locktime has passed, the operator's refund.  Baseline in the
same run: a plain swap of unlocked proofs of the same amount (what any Cashu wallet does), so
the ratio shows what the spending conditions cost on top of the mint's own work.  The last line
is `ratio=<median redeem ÷ median plain swap>`.

    .venv/bin/python bench/escrow.py [--runs N] [--smoke]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import nostr_sdk as sdk

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.escrow.mint import MintProcess
from agent.escrow.wallet import CashuWallet
from events.escrow import lock_hash

AMOUNT = 64


async def bench(url: str, home: Path, runs: int) -> dict[str, list[float]]:
    operator, advisor = sdk.Keys.generate(), sdk.Keys.generate()
    out: dict[str, list[float]] = {"swap": [], "redeem": [], "refund": []}
    async with (
        CashuWallet(home / "operator", url, operator) as funder,
        CashuWallet(home / "advisor", url, advisor) as payee,
    ):
        _, proofs = await funder.topup(AMOUNT * 3 * runs)

        expiring = []
        for _ in range(runs):  # tickets for the refund runs, locked first so their time passes
            preimage = secrets.token_bytes(32)
            proofs, locked = await funder.lock(
                proofs,
                AMOUNT,
                hash_hex=lock_hash(preimage),
                payee_xonly=advisor.public_key().to_hex(),
                refund_xonly=operator.public_key().to_hex(),
                locktime=int(time.time()) + 2,
            )
            expiring.append(locked)
        for _ in range(runs):
            proofs, plain = await funder.split(proofs, AMOUNT)  # same proofs as a ticket, unlocked
            started = time.perf_counter()
            fresh = await funder.refund(plain)  # no conditions: a plain swap
            out["swap"].append(time.perf_counter() - started)
            proofs = proofs + fresh
            preimage = secrets.token_bytes(32)
            proofs, locked = await funder.lock(
                proofs,
                AMOUNT,
                hash_hex=lock_hash(preimage),
                payee_xonly=advisor.public_key().to_hex(),
                refund_xonly=operator.public_key().to_hex(),
                locktime=int(time.time()) + 3600,
            )
            started = time.perf_counter()
            await payee.redeem(locked, preimage.hex())
            out["redeem"].append(time.perf_counter() - started)
        await anyio.sleep(2.5)  # the first tickets' locktime has passed by now
        for locked in expiring:
            started = time.perf_counter()
            await funder.refund(locked)
            out["refund"].append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI (no ratio claims)")
    args = parser.parse_args()
    runs = 3 if args.smoke else max(20, args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        mint = MintProcess(Path(tmp) / "mint")
        url = mint.start()
        try:
            got = anyio.run(bench, url, Path(tmp), runs)
        finally:
            mint.stop()
    print(f"{runs} runs each, {AMOUNT} sat per ticket, Nutshell mint on 127.0.0.1")
    for name, label in (("swap", "plain swap"), ("redeem", "HTLC redeem"), ("refund", "refund")):
        values = got[name]
        print(
            f"{label:<12} median {statistics.median(values) * 1e3:7.1f} ms"
            f"  p90 {sorted(values)[int(0.9 * (len(values) - 1))] * 1e3:7.1f} ms"
        )
    print(f"ratio={statistics.median(got['redeem']) / statistics.median(got['swap']):.2f}")


if __name__ == "__main__":
    main()
