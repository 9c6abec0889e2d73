"""Python side of the nostr-tools line protocol (tests/interop/nt.mjs)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


class NostrToolsError(Exception):
    """Raised when nostr-tools refused an operation (its message is kept)."""


class NostrTools:
    def __init__(self, node: str, script: Path) -> None:
        self.proc = subprocess.Popen(
            [node, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=script.parent,
        )

    def call(self, op: str, **args: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if not reply["ok"]:
            raise NostrToolsError(reply["error"])
        return reply["result"]

    def close(self) -> None:
        self.proc.communicate(timeout=10)  # closes stdin (node exits) and drains stdout
