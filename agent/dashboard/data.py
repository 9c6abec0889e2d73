"""What the pages show, read from the agent's store through the same functions the CLI views
use (agent/store/advisory.py, agent/advisory/approvals.py, events/receipt.py): no second copy
of any rule — a page is a view, never a decision."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from agent.advisory.approvals import pending
from agent.advisory.policy import PolicyConfig
from agent.store import Store, chains
from agent.store import advisory as repo
from events import nip19, receipt

RECEIPTS_PAGE = 100
CHECKS_KEPT = 256  # chains whose verified length the dashboard remembers
SHOWN = 200  # rows shown of a list strangers can grow (held credentials, RFPs, offers, tickets)


def npub(key: str) -> str:
    return nip19.npub(key) if nip19.is_hex64(key) else key


def approvals(store: Store) -> list[dict[str, Any]]:
    """What waits for the operator (the rows `hive-agent approvals list` prints)."""
    return [row | {"advisor_npub": npub(row["advisor"])} for row in pending(store)]


def _gauge(used: int, allowed: int) -> dict[str, Any]:
    pct = 100 if allowed <= 0 else min(100, round(100 * used / allowed))
    return {"used": used, "allowed": allowed, "pct": pct, "over": used >= allowed}


def credentials(store: Store, policy: PolicyConfig, now: int) -> list[dict[str, Any]]:
    """Every credential granted and the newest `SHOWN` held, with their gauges: actions today
    (the credential's own limit), sats moved today (the policy's per-advisor budget) and
    commands in the last minute (the policy's rate) — the counters the node's checks read."""
    out = []
    rows = repo.credentials(store, "granted") + repo.credentials(store, "held", SHOWN)
    for row in rows:
        cred = row["grant"]["credential"]
        cid = row["credential_id"]
        today = repo.usage(store, cid, now, 1)
        per_minute, _ = repo.rate(store, cid, now)
        cons = cred.get("constraints") or {}
        state = "revoked" if row["revoked_at"] else "expired" if cred["valid_until"] < now else ""
        out.append(
            {
                "id": cid,
                "role": row["role"],
                "advisor": row["advisor"],
                "advisor_npub": npub(row["advisor"]),
                "node": row["node"],
                "tier": cred["tier"],
                "schemas": cred["allowed_schemas"],
                "constraints": cons,
                "valid_until": cred["valid_until"],
                "state": state or "active",
                "revocable": row["role"] == "granted" and not state,
                "gauges": {
                    "actions today": _gauge(today["actions"], cons.get("max_daily_actions", 100)),
                    "sats moved today": _gauge(
                        today["sats_moved"], policy.budgets.sats_moved_per_advisor_day
                    ),
                    "commands this minute": _gauge(per_minute, policy.rate_per_minute),
                },
            }
        )
    return out


def hidden_held(store: Store) -> int:
    """Held credentials not shown: any node may grant us one, so a stranger can send many."""
    return max(0, repo.count_credentials(store, "held") - SHOWN)


class ChainChecks:
    """How far each chain viewed lately is verified (at most CHECKS_KEPT chains): a page of a
    long chain verifies only the receipts added since it was last shown (10,000 receipts took
    0.6 s of the agent's event loop at every view before)."""

    def __init__(self) -> None:
        self._done: OrderedDict[tuple[str, str], receipt.ChainCheck] = OrderedDict()
        self._lock = threading.Lock()  # views are read on worker threads

    def verdict(self, store: Store, credential_id: str, node: str | None) -> dict[str, Any]:
        with self._lock:
            return self._verdict(store, credential_id, node)

    def _verdict(self, store: Store, credential_id: str, node: str | None) -> dict[str, Any]:
        key = (node or "", credential_id)
        done = self._done.pop(key, receipt.ChainCheck())
        if done.seq and chains.count(store, credential_id, node, done.seq) != done.seq:
            done = receipt.ChainCheck()  # a receipt came inside the verified part: again
        done, problem = receipt.extend_chain(
            done, chains.after(store, credential_id, node, done.seq)
        )
        self._done[key] = done
        while len(self._done) > CHECKS_KEPT:
            self._done.popitem(last=False)
        if problem is not None:
            return {"ok": False, "text": str(problem)}  # "CODE: message"
        return {"ok": True, "text": f"{done.seq} receipts, chain intact"}


def receipts(
    store: Store, credential_id: str, page: int = 0, checks: ChainChecks | None = None
) -> dict[str, Any]:
    """One credential's receipt timeline (newest first, paged) and its chain's verification
    (events/receipt.py over the whole chain, once, then what was added: a broken chain names
    its problem)."""
    found = repo.credential(store, credential_id)
    # any node may send us receipts: only the granting node's are a chain we hold
    node = None if found is None or found[2] == "granted" else found[0].credential.node
    verdict = (checks or ChainChecks()).verdict(store, credential_id, node)
    total = chains.count(store, credential_id, node)
    page = min(page, total // RECEIPTS_PAGE + 1)  # (a page past the end is empty)
    shown = chains.page(store, credential_id, node, page * RECEIPTS_PAGE, RECEIPTS_PAGE)
    seqs = [r.seq for r in shown] or [0]
    diffs = repo.state_diffs(store, credential_id, min(seqs), max(seqs))
    rows = [
        {
            "seq": r.seq,
            "command_id": r.command_id,
            "status": r.status.value,
            "code": r.error.code if r.error else "",
            "command": f"{r.schema_ref} {r.action}",
            "danger": r.danger,
            "before": r.state_hash_before,
            "after": r.state_hash_after,
            "result": r.result,
            "at": r.created_at,
            "diff": _diff(r, diffs.get(r.seq)),
        }
        for r in shown
    ]
    return {
        "credential_id": credential_id,
        "verdict": verdict,
        "rows": rows,
        "page": page,
        "pages": max(1, -(-total // RECEIPTS_PAGE)),
        "total": total,
    }


def _diff(r: receipt.Receipt, recorded: Any) -> dict[str, Any]:
    """The node state a receipt's command changed, as `field: old → new` rows: recorded by the
    node when it ran the command, or a dry run's prediction; `kind` none when there is none."""
    if recorded is not None:
        kind, changes = "changed" if recorded else "unchanged", recorded
    elif r.status == receipt.Status.DRY_RUN and _pairs(r.result.get("predicted_diff")):
        kind, changes = "predicted", r.result["predicted_diff"]
    else:
        return {"kind": "none", "rows": []}
    rows = [{"field": k, "old": v[0], "new": v[1]} for k, v in sorted(changes.items())]
    return {"kind": kind, "rows": rows}


def _pairs(predicted: Any) -> bool:
    """A dry run's prediction as the node writes it, `{field: [old, new]}`: the node's own
    word in its receipt, so checked before it is shown."""
    return isinstance(predicted, dict) and all(
        isinstance(v, list) and len(v) == 2 for v in predicted.values()
    )


def node(store: Store) -> dict[str, Any]:
    """The agent's own health: outbox backlog and refusals counted by code."""
    return {"outbox": store.outbox_counts(), "errors": store.error_counts()}
