"""The code's shape stays readable: no module over 500 lines, no class over 30 methods, no
function over 60 lines (a demo act tells its story top to bottom and is exempt).  When this
fails, split by responsibility — the README's architecture section shows how the parts divide."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(
    [*ROOT.glob("agent/**/*.py"), *ROOT.glob("events/**/*.py"), ROOT / "plugin_shim.py"]
)
MAX_MODULE, MAX_METHODS, MAX_FUNCTION = 500, 30, 60


def is_demo_act(path: Path, node: ast.AST) -> bool:
    return "demo" in path.parts and getattr(node, "name", "").endswith("_act")


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_shape(path: Path) -> None:
    source = path.read_text()
    problems = []
    lines = len(source.splitlines())
    if lines > MAX_MODULE:
        problems.append(f"{lines} lines (at most {MAX_MODULE})")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            methods = [
                b for b in node.body if isinstance(b, ast.FunctionDef | ast.AsyncFunctionDef)
            ]
            if len(methods) > MAX_METHODS:
                problems.append(f"class {node.name}: {len(methods)} methods")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION and not is_demo_act(path, node):
                problems.append(f"{node.name}(): {length} lines")
    assert not problems, problems


def test_the_shape_check_sees_what_it_should() -> None:
    assert ROOT / "agent/app.py" in SOURCES and ROOT / "events/fleet/frame.py" in SOURCES
    assert len(SOURCES) > 100
