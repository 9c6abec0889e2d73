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


def process_alive(pid: int | None, seen_at: float | None) -> bool:
    """Whether the process `pid` that wrote a snapshot at `seen_at` still runs: a process of
    that id exists, is not a zombie, and had started by then (a later one only reuses the id)."""
    if not pid or pid <= 0 or seen_at is None:
        return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except FileNotFoundError:
        return False
    except (OSError, IndexError, StopIteration, ValueError):  # no /proc: existence only
        return _exists(pid)
    started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return fields[0] != "Z" and started <= seen_at + 2  # btime and ticks: whole seconds


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
