"""Who may import whom: the layering the README's architecture section describes, checked on
every module (imports inside functions included), so a shortcut fails here, not in review."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def under(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


# (modules, what they must not import, why)
RULES = [
    (
        "agent/node",
        ("agent.fleet", "agent.advisory", "agent.escrow", "agent.market", "agent.runtime",
         "agent.nostr", "agent.store", "agent.outbox", "agent.inbound"),
        "the node layer is what every service stands on; it knows none of them",
    ),
    (
        "agent/fleet",
        ("agent.runtime", "agent.market", "agent.escrow", "agent.nostr", "agent.advisory",
         "agent.outbox", "agent.inbound"),
        "fleet traffic is custommsg between peers: no relays, no marketplace, no escrow",
    ),
    (
        "events",
        ("agent",),
        "events/ is pure: wire formats only",
    ),
    (
        "agent/advisory",
        ("agent.escrow", "agent.market.service", "agent.runtime", "agent.app", "agent.fleet"),
        "the advisory side reaches escrow through its ports (agent/advisory/ports.py) only",
    ),
    (
        "agent/escrow",
        ("agent.advisory", "agent.market", "agent.runtime", "agent.app", "agent.fleet"),
        "escrow implements the advisory side's ports structurally; it imports none of it",
    ),
    (
        "agent/market",
        ("agent.advisory", "agent.escrow", "agent.runtime", "agent.app", "agent.fleet"),
        "the marketplace is one component among others",
    ),
]  # fmt: skip

# the transport and the runner know no component: kinds come from the components' wiring
TRANSPORT = ["agent/transport.py", "agent/runtime.py", "agent/component.py", "agent/inbound.py",
             "agent/handlers.py", "agent/outbox.py"]  # fmt: skip
COMPONENT_PACKAGES = ("agent.market", "agent.advisory", "agent.escrow", "agent.fleet", "agent.app")


@pytest.mark.parametrize("path", TRANSPORT)
def test_the_transport_knows_no_component(path: str) -> None:
    assert not forbidden(imports(ROOT / path), COMPONENT_PACKAGES)


PURE_CORES = [
    ROOT / "agent/fleet/rules.py",
    ROOT / "agent/fleet/gossip_rules.py",
    ROOT / "agent/fleet/topology.py",
    ROOT / "agent/fleet/intent_rules.py",
    ROOT / "agent/fleet/planner.py",
    ROOT / "agent/fleet/planner_model.py",
    ROOT / "agent/fleet/planner_view.py",
    ROOT / "agent/fleet/settlement_rules.py",
    ROOT / "agent/fleet/contribution_rules.py",
    ROOT / "events/negentropy.py",
]
PURE_FORBIDDEN = ("agent.store", "agent.node", "anyio", "asyncio", "sqlite3", "time")


def forbidden(found: set[str], banned: tuple[str, ...]) -> list[str]:
    return sorted(m for m in found if any(m == b or m.startswith(b + ".") for b in banned))


@pytest.mark.parametrize(("package", "banned", "why"), RULES, ids=[r[0] for r in RULES])
def test_layers(package: str, banned: tuple[str, ...], why: str) -> None:
    paths = under(package)
    assert paths, package
    bad = {str(p.relative_to(ROOT)): forbidden(imports(p), banned) for p in paths}
    assert not {k: v for k, v in bad.items() if v}, why


# fleet components talk through the kernel and the roster, never through each other
COMPONENTS = [
    "handshake",
    "membership",
    "gossip",
    "sync",
    "intents",
    "contribution",
    "settlement",
]
SHARED_FLEET = {
    "agent.fleet.kernel", "agent.fleet.component", "agent.fleet.facts", "agent.fleet.roster",
    "agent.fleet.rules", "agent.fleet.settlement_rules", "agent.fleet.intake",
}  # fmt: skip


@pytest.mark.parametrize("name", COMPONENTS)
def test_components_do_not_reach_into_each_other(name: str) -> None:
    found = {m for m in imports(ROOT / f"agent/fleet/{name}.py") if m.startswith("agent.fleet")}
    others = {f"agent.fleet.{o}" for o in COMPONENTS if o != name}
    assert not {m for m in found if any(m == o or m.startswith(o + ".") for o in others)}
    assert "agent.fleet.service" not in found


def _components_named(path: Path) -> set[str]:
    found = {m for m in imports(path) if m.startswith("agent.fleet.")}
    return {m for m in found if not any(m == s or m.startswith(s + ".") for s in SHARED_FLEET)}


def test_the_kernel_knows_no_component() -> None:
    assert not _components_named(ROOT / "agent/fleet/kernel.py")
    for shared in ("component", "facts"):  # what the kernel shares knows no component either
        assert not _components_named(ROOT / f"agent/fleet/{shared}.py")


@pytest.mark.parametrize("path", PURE_CORES, ids=lambda p: p.name)
def test_pure_cores(path: Path) -> None:
    """Rules (quorums, reconciliation) are functions of their inputs: no store, node or clock."""
    assert not forbidden(imports(path), PURE_FORBIDDEN)


SHARED = ("Hex16", "Hex32", "Hex64", "Hex128", "XOnly", "Sig", "NodeId", "Did", "SchemaPattern")


@pytest.mark.parametrize("path", under("events") + under("agent"), ids=lambda p: p.name)
def test_shared_types_declared_once(path: Path) -> None:
    """The constrained strings every payload shares live in events/types.py only."""
    if path == ROOT / "events/types.py":
        return
    text = path.read_text()
    for name in SHARED:
        assert not re.search(rf"^{name} = ", text, re.M), f"{path.name} declares {name}"
    assert "errors()[0]" not in text, f"{path.name} maps a ValidationError itself: first_error()"


def test_the_rules_see_modules() -> None:
    """The rules are not vacuous: each would catch a real import."""
    assert forbidden({"agent.fleet.service"}, RULES[0][1]) == ["agent.fleet.service"]
    assert "agent.node.backend" in imports(ROOT / "agent/fleet/kernel.py")
    assert "agent.fleet.kernel" in imports(ROOT / "agent/fleet/membership.py")


# --- SQL lives in the repositories ---------------------------------------------------------

EXECUTES = {"execute", "executemany", "executescript"}
OUTSIDE_STORE = [p for p in under("agent") if not p.is_relative_to(ROOT / "agent/store")] + [
    ROOT / "plugin_shim.py"
]


def _is_text(node: ast.expr) -> bool:
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


def sql_uses(tree: ast.AST) -> list[str]:
    """Each `.conn` access, and each `.execute(...)` (or executemany/executescript) whose first
    argument is SQL text, as `line: what`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "conn":
            found.append(f"{node.lineno}: .conn")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in EXECUTES
            and node.args
            and _is_text(node.args[0])
        ):
            found.append(f"{node.lineno}: .{node.func.attr}(<SQL>)")
    return found


@pytest.mark.parametrize("path", OUTSIDE_STORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_sql_outside_the_store(path: Path) -> None:
    """Only agent/store/ holds a connection or writes SQL: everything else calls a repository
    function (agent/store/<area>.py) or a `Tx`/`Store` method, passing the store or the `Tx`."""
    assert not sql_uses(ast.parse(path.read_text())), f"{path.name}: use agent/store/"


def test_the_sql_check_sees_sql() -> None:
    """The check is not vacuous: each form it forbids is caught, a non-SQL execute is not."""
    caught = sql_uses(
        ast.parse(
            "k.store.conn\n"
            "tx.execute('DELETE FROM t')\n"
            "tx.executemany(f'INSERT INTO {t} VALUES (?)', rows)\n"
            "c.executescript('CREATE TABLE t (x)')\n"
            "schemas.execute(spec, node)\n"
        )
    )
    assert caught == ["1: .conn", "2: .execute(<SQL>)", "3: .executemany(<SQL>)",
                      "4: .executescript(<SQL>)"]  # fmt: skip
    assert sql_uses(ast.parse((ROOT / "agent/store/fleet.py").read_text()))
