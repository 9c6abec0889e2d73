"""The plugin's own notification topics (declared in the manifest with pyln's
`add_notification_topic`, sent with `plugin.notify(topic, payload)`), so other plugins and
`lightning-cli` subscribers hear what the hive does:

    hive_command_queued   an advisor's command waits (for the operator, approvers or oracle)
    hive_approval_needed  a command needs this operator's `hive-approve` or `hive-confirm`
    hive_receipt          a receipt was sealed (every answer to a command: ok, queued, error)
    hive_member_joined    a node became an active member of this node's hive (or rejoined)
    hive_member_left      a member left or was banned

Commands and receipts are followed from the store after each step of the command loop (the
state they report is committed by then); fleet membership from the member table, each second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from agent.advisory.node import NodeService
from agent.fleet.service import FleetService
from agent.store import advisory as repo
from agent.store import fleet as fleet_rows
from events.receipt import Receipt, Status

TOPICS = (
    "hive_command_queued",
    "hive_approval_needed",
    "hive_receipt",
    "hive_member_joined",
    "hive_member_left",
)
STEP = {"queued": "approve", "confirm": "approve", "confirmed": "confirm"}  # operator's move
Emit = Callable[[str, dict[str, Any]], None]


def receipt_payload(r: Receipt) -> dict[str, Any]:
    return {
        "receipt_id": r.receipt_id,
        "command_id": r.command_id,
        "credential_id": r.credential_id,
        "advisor": r.advisor,
        "schema": r.schema_ref,
        "action": r.action,
        "status": r.status.value,
        "error": r.error.model_dump() if r.error else None,
        "danger": r.danger,
        "seq": r.seq,
        "created_at": r.created_at,
    }


class CommandNotices:
    """Follows one NodeService: receipts sealed and commands waiting for the operator."""

    def __init__(self, service: NodeService, emit: Emit) -> None:
        self.service, self.emit = service, emit
        self.cursor = repo.last_receipt_row(service.agent.store)  # only what happens from now
        self.asked = {(p["id"], p["state"]) for p in service.pending()}
        service.after_step.append(self.check)

    def check(self) -> None:
        for row, sealed in repo.receipts_after(self.service.agent.store, self.cursor):
            self.cursor = row
            body = receipt_payload(sealed)
            if sealed.status == Status.QUEUED:
                self.emit("hive_command_queued", {**body, "waiting_for": sealed.result})
            self.emit("hive_receipt", body)
        asked = set()
        for p in self.service.pending():
            asked.add((p["id"], p["state"]))
            if p["state"] in STEP and (p["id"], p["state"]) not in self.asked:
                step = STEP[p["state"]]
                keep = ("advisor", "schema", "action", "params", "danger", "decide_by")
                self.emit(
                    "hive_approval_needed",
                    {"command_id": p["id"], "state": p["state"], "step": step,
                     "method": f"hive-{step}", **{k: p[k] for k in keep}},
                )  # fmt: skip
        self.asked = asked


async def watch_fleet(fleet: FleetService, emit: Emit, every_s: float = 1.0) -> None:
    """Forever: compare the member table with the last look; joins and departures are told."""
    known = _members(fleet)
    while True:
        await anyio.sleep(every_s)
        now = _members(fleet)
        for node_id, row in now.items():
            if row["status"] == "active" and known.get(node_id, {}).get("status") != "active":
                emit("hive_member_joined", row)
            elif row["status"] != "active" and known.get(node_id, {}).get("status") == "active":
                emit("hive_member_left", row)
        known = now


def _members(fleet: FleetService) -> dict[str, dict[str, Any]]:
    hive = fleet_rows.hive(fleet.store)
    return {
        m.node_id: {
            "hive_id": hive.hive_id if hive else None,
            "node_id": m.node_id,
            "pubkey": m.pubkey,
            "tier": m.tier,
            "status": m.status,
            "joined_at": m.joined_at,
            "self": m.node_id == fleet.me,
        }
        for m in fleet_rows.members(fleet.store, status=None)
    }
