"""Act 7: the relay, now a separate process with persistent storage, is killed with SIGKILL;
notes written meanwhile wait in the sender's durable outbox, and after the relay restarts both
agents reconnect (backoff with jitter), the outbox delivers and each note arrives exactly once."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nostr_sdk as sdk

from agent import app
from agent.demo.common import until
from agent.demo.narrator import Say
from agent.nostr.local_relay import free_port
from agent.procs import ChildProcess, printed_a_line
from agent.settings import RelaysConfig, Settings


class _RelayProcess:
    """`hive-agent relay --db DIR` in a child process, so it can really be killed."""

    def __init__(self, db: Path, port: int) -> None:
        self.db, self.port = db, port
        cmd = [sys.executable, "-m", "agent", "relay", "--port", str(port), "--db", str(db)]
        self.child = ChildProcess("the demo relay", cmd, stdout="lines", ready=printed_a_line)

    async def start(self) -> str:
        await self.child.astart()
        return self.child.lines()[0].strip()

    async def kill(self) -> None:
        await self.child.akill()


async def relay_restart_act(say: Say, olivia: sdk.Keys, adam: sdk.Keys) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hive-demo-") as tmp:
        root = Path(tmp)
        relay = _RelayProcess(root / "relay-db", free_port())
        url = await relay.start()
        cfg = RelaysConfig.single(url, reconnect_base_s=0.2, reconnect_max_s=1.0)
        fast = {"outbox_retry_base_s": 0.2, "outbox_retry_max_s": 1.0}
        try:
            async with (
                app.standalone(Settings(home=root / "olivia", **fast), olivia, cfg).agent as o,
                app.standalone(Settings(home=root / "adam", **fast), adam, cfg).agent as a,
            ):
                say(f"relay process (LMDB storage) at {url}; both agents connected")
                await relay.kill()
                await until(lambda: not (o.pool.connected() or a.pool.connected()), 10)
                say("relay killed with SIGKILL; both agents see it disconnected")
                texts = [f"fee review, part {i}" for i in (1, 2, 3)]
                for text in texts:
                    await o.send_note(a.pubkey, text, wait=False)
                say(f"Olivia writes {len(texts)} notes: signed, stored, waiting in her outbox")
                started = time.perf_counter()
                await relay.start()
                say("relay restarted on the same port; agents reconnect with backoff + jitter")
                await until(
                    lambda: len(a.store.notes()) >= len(texts) and not o.outbox.pending(), 30
                )
                elapsed = time.perf_counter() - started
                got = sorted(n["text"] for n in a.store.notes())  # gift wraps carry random dates
                say(f"after {elapsed:.1f} s Adam has {got}: each exactly once, nothing lost")
                return {"delivered": got, "seconds": round(elapsed, 2)}
        finally:
            await relay.kill()
