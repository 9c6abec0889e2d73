"""Text views of the advisor-command faces (credentials, approvals, receipts): tables with
local ISO times and keys as npub; `--json` keeps the raw rows."""

from __future__ import annotations

import json
from typing import Any

from agent.cli.dealviews import npub
from agent.cli.views import pairs, since, table, when


def _short(value: str, n: int = 12) -> str:
    return value if len(value) <= n else value[:n] + "…"


def credentials(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no credentials"
    body = []
    for r in rows:
        cred = r["grant"]["credential"]
        state = "revoked" if r["revoked_at"] else "active"
        body.append(
            [r["role"], _short(r["credential_id"], 16), cred["tier"], npub(r["advisor"]),
             _short(r["node"]), when(cred.get("valid_until")), state]
        )  # fmt: skip
    return table(["role", "credential", "tier", "advisor", "node", "valid until", "state"], body)


def granted(r: dict[str, Any]) -> str:
    return pairs([
        ("credential", r["credential_id"]), ("advisor", npub(r["advisor"])), ("tier", r["tier"]),
        ("valid until", when(r["valid_until"])),
        ("delivered", "yes" if r["delivered"] else "no (stays in the outbox)"),
    ])  # fmt: skip


def revoked(r: dict[str, Any]) -> str:
    return pairs([
        ("revoked", r["revoked"]),
        ("published", "yes" if r["published"] else "no (stays in the outbox)"),
    ])  # fmt: skip


def pending(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "nothing waits for approval"
    body = [
        [_short(r["id"]), r["state"], r["danger"], f"{r['schema']} {r['action']}",
         json.dumps(r["params"], sort_keys=True), npub(r["advisor"]), since(r.get("decide_by"))]
        for r in rows
    ]  # fmt: skip
    return table(["id", "state", "danger", "command", "params", "advisor", "decide by"], body)


def receipts(held: list[Any]) -> str:
    if not held:
        return "no receipts"
    body = [
        [r.seq, _short(r.command_id), r.status.value, f"{r.schema_ref} {r.action}",
         r.error.code if r.error else None, when(r.created_at)]
        for r in held
    ]  # fmt: skip
    return table(["seq", "command id", "status", "command", "error", "at"], body)
