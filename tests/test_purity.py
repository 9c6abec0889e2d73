"""events/ is pure: it imports nothing from agent/ and does no I/O and reads no clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

EVENTS = Path(__file__).resolve().parent.parent / "events"
FORBIDDEN_MODULES = {
    "agent", "socket", "ssl", "asyncio", "anyio", "sqlite3", "subprocess", "threading",
    "multiprocessing", "time", "os", "pathlib", "io", "shutil", "tempfile",
    "urllib", "http", "httpx", "websockets", "requests", "logging", "pyln", "cashu",
}  # fmt: skip
FORBIDDEN_CALLS = {"open", "print", "input", "exec", "eval", "__import__"}
# datetime may convert timestamps the caller gives; reading the clock is caught here
FORBIDDEN_ATTRS = {"now", "time", "today", "utcnow"}  # e.g. sdk.Timestamp.now(), datetime.now()


def modules() -> list[Path]:
    return sorted(EVENTS.rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.name)
def test_no_io_imports(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{path.name} imports {name}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.name)
def test_no_io_or_clock_calls(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name):
            assert func.id not in FORBIDDEN_CALLS, f"{path.name} calls {func.id}()"
        elif isinstance(func, ast.Attribute):
            assert func.attr not in FORBIDDEN_ATTRS, f"{path.name} calls .{func.attr}()"


def test_the_checks_see_every_module() -> None:
    assert {p.name for p in modules()} >= {"base.py", "nip44.py", "nip59.py", "kinds.py"}
