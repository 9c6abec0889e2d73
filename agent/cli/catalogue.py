"""`hive-agent schemas [FAMILY[/ACTION]]`: the management schema catalogue an advisor can send
(agent/advisory/schemas.py): every family and action with its minimum tier, danger score and
parameters; one action with its parameter schema.  Connects to nothing."""

from __future__ import annotations

import argparse
import re
from types import SimpleNamespace
from typing import Any

from agent.advisory import schemas
from agent.advisory.schemas import ActionSpec
from agent.cli.common import Emit
from agent.cli.views import pairs, table
from agent.settings import Settings
from events.errors import InvalidParams

AMOUNT_PROBES = (1, 2**62)  # the smallest and a huge amount: the bands an action's danger spans


def danger_range(spec: ActionSpec) -> tuple[int, int]:
    """The lowest and highest danger score the action can have (amount bands included)."""
    scores = [spec.danger(SimpleNamespace(amount_sats=n)) for n in AMOUNT_PROBES]
    return min(scores), max(scores)


def _danger_text(spec: ActionSpec) -> str:
    low, high = danger_range(spec)
    return str(low) if low == high else f"{low}-{high} (by amount)"


def _param_names(spec: ActionSpec) -> str:
    fields = spec.params.model_fields
    names = [n if f.is_required() else f"[{n}]" for n, f in fields.items()]
    return " ".join(names) or "(none)"


def _summary(spec: ActionSpec) -> dict[str, Any]:
    low, high = danger_range(spec)
    fields = spec.params.model_fields
    return {
        "family": spec.family,
        "schema": spec.schema,
        "action": spec.name,
        "tier": spec.tier.value,
        "danger": {"min": low, "max": high},
        "executed": spec.run is not None or spec.self_inspection,
        "touches": spec.touches,
        "params": list(fields),
        "required": [n for n, f in fields.items() if f.is_required()],
    }


def _select(which: str | None, action: str | None) -> tuple[list[ActionSpec], bool]:
    """The catalogue entries `which` names, and whether it named one action: all, a family,
    or `family/action` (`hive:family/v1 action`, …); INVALID_PARAMS, as the node words it,
    for an unknown one."""
    if which is None:
        return list(schemas.CATALOGUE), False
    parts = which.removeprefix("hive:").split("/")
    family = parts[0]
    rest = [p for p in parts[1:] if p and not re.fullmatch(r"v[0-9]+", p)]
    name = action or (rest[0] if rest else None)
    if family not in schemas.FAMILIES:
        raise InvalidParams(f"unknown schema {which!r}; `hive-agent schemas` lists them")
    if name is not None:
        return [schemas.lookup(f"hive:{family}/v1", name)], True
    return [s for s in schemas.CATALOGUE if s.family == family], False


def _param_rows(spec: ActionSpec) -> list[list[Any]]:
    schema = spec.params.model_json_schema()
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        branch = next((b for b in prop.get("anyOf", []) if b.get("type") != "null"), prop)
        rows.append(
            [
                name,
                branch.get("type", "-"),
                "yes" if name in required else "no",
                None if name in required else prop.get("default"),
                _rule(branch),
            ]
        )
    return rows


def _rule(prop: dict[str, Any]) -> str:
    if "minimum" in prop or "maximum" in prop:
        low, high = prop.get("minimum"), prop.get("maximum")
        return f"{low if low is not None else ''}..{high if high is not None else ''}"
    if "pattern" in prop:
        return f"matches {prop['pattern']}"
    if "minLength" in prop or "maxLength" in prop:
        return f"{prop.get('minLength', 0)}..{prop.get('maxLength', '')} characters"
    return ""


def _one_text(spec: ActionSpec) -> str:
    head = pairs(
        [
            ("schema", spec.schema),
            ("action", spec.name),
            ("tier", f"{spec.tier.value} or above"),
            ("danger", _danger_text(spec)),
            (
                "executed",
                "yes" if _summary(spec)["executed"] else "no (recognised; answers NOT_IMPLEMENTED)",
            ),
            ("touches", spec.touches),
        ]
        + (
            [("note", "danger 5 or more: give every parameter")]
            if danger_range(spec)[1] >= 5
            else []
        )
    )
    params = table(["parameter", "type", "required", "default", "rule"], _param_rows(spec))
    return f"{head}\n\n{params}"


def cmd_schemas(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    specs, one = _select(args.which, args.action)
    if one:
        spec = specs[0]
        emit(_summary(spec) | {"parameters": spec.params.model_json_schema()}, _one_text(spec))
        return 0
    rows = [[f"{s.family}/{s.name}", s.tier.value, _danger_text(s), _param_names(s)] for s in specs]
    emit(
        {"schemas": [_summary(s) for s in specs]},
        table(["action", "tier", "danger", "parameters ([optional])"], rows),
    )
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("schemas", help="the schema families and actions `advise` can send")
    p.add_argument("which", nargs="?", help="a family (fee-policy) or family/action")
    p.add_argument("action", nargs="?", help="an action of the family")
    p.set_defaults(func=cmd_schemas)
