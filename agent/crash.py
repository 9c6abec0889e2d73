"""Named crash points for crash-safety tests.

With `HIVE_CRASH_AT=<name>` in its environment, the agent kills itself with SIGKILL the first
time it reaches that point — no cleanup, no flush, exactly like `kill -9` at that instant.
`<name>:<detail>` narrows it (e.g. `outbox.before_send:1059` only for gift wraps).
Tests restart it and check that nothing was lost and nothing happened twice.
"""

from __future__ import annotations

import os
import signal

POINTS = frozenset(
    {
        "outbox.after_store",  # the signed event is committed to the outbox, not yet sent
        "outbox.before_send",  # picked up for sending, nothing on the wire yet
        "outbox.after_send",  # relays have it (OK received) but the ack is not recorded
        "inbound.after_handler",  # a handler's effects are written but not committed
        "inbound.after_commit",  # effects and seen ids committed, nothing else done
        "command.before_execute",  # claimed and budget reserved, not run on the node
        "command.after_execute",  # run on the node, outcome and receipt not recorded
        "command.after_receipt",  # outcome and receipt committed, receipt not yet sent
        "intent.before_execute",  # a committed intent's action is claimed, not yet run
        "intent.after_execute",  # the action ran on the node, its outcome not yet recorded
        "settle.before_record",  # an invoice is in hand; the payment is not yet recorded
        "settle.after_record",  # the payment is recorded as attempted; the node not yet asked
        "settle.after_pay",  # the node paid; the preimage is not yet recorded
        "settle.after_preimage",  # the preimage is recorded; EXECUTED not yet queued
        "settle.after_executed",  # EXECUTED is queued (committed), not yet sent
        "escrow.after_swap",  # the mint swapped a ticket part's proofs; nothing recorded yet
        "contribution.after_report",  # a period report committed (held, queued), not yet sent
    }
)


# read once: a process is started with it (a dozen points on each command's path each looked
# it up in os.environ, ~1 % of the node's CPU)
WANTED = os.environ.get("HIVE_CRASH_AT") or None


def crash_point(name: str, detail: str = "") -> None:
    """SIGKILL this process if HIVE_CRASH_AT names this point (and detail, if it gives one)."""
    assert name in POINTS, name
    if WANTED is not None and WANTED in (name, f"{name}:{detail}"):
        os.kill(os.getpid(), signal.SIGKILL)
