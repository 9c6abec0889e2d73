"""One long-running agent per home directory.

Two `hive-agent run` (or `node`) processes on one home would both deliver the same outbox and
both process the same commands; the store's transactions keep that from corrupting anything,
but it doubles traffic and confuses everyone reading the logs.  The second one is refused,
naming the process that holds the home.  The lock is an advisory `flock` on `<home>/agent.lock`,
released by the kernel when the holder exits however it exits (kill -9 included), so a stale
lock file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from agent.errors import HomeLocked

_held: dict[Path, int] = {}  # locks this process holds, kept open for its lifetime


def lock_home(root: Path, what: str) -> None:
    """Hold `root`'s agent lock until this process exits; HomeLocked if another process has it."""
    path = root / "agent.lock"
    if path in _held:
        return
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise HomeLocked(f"{root} is in use by {holder}; stop it first") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"hive-agent {what} (pid {os.getpid()})\n".encode(), 0)
    _held[path] = fd


def unlock_home(root: Path) -> None:
    """Release the lock early (tests running several agents in one process)."""
    fd = _held.pop(root / "agent.lock", None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
