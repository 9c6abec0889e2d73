"""The usage text a node agent answers `help`, and any DM it cannot read, with — rate-limited.

Anyone can DM a node, so an answer to text that is not a command is bounded twice: per
sender (USAGE_PER_SENDER an hour) and for all senders together (USAGE_PER_HOUR), counted in
the store's rate buckets (so restarts and many processes share them).  A DM past either
bound gets no answer and is counted as RATE_LIMITED: a flood, from one key or from many fresh
ones, makes this node send at most USAGE_PER_HOUR usage DMs an hour.
"""

from __future__ import annotations

from agent.advisory import schemas
from agent.store import Tx
from agent.store import advisory as repo
from events.errors import RateLimited

USAGE_PER_SENDER = 3
USAGE_PER_HOUR = 60
HOUR = 3600
HELP_WORDS = frozenset({"help", "?", "usage", "/help"})
ALL_SENDERS = "dm-usage:*"


def usage_text() -> str:
    """What this node understands in a NIP-17 DM."""
    return "\n".join(
        [
            "Lightning Hive node agent. DM commands (from a holder of a credential this node "
            "granted):",
            "  status | budget",
            "  <schema> <action> key=value …  e.g. fee-policy set_single channel=… fee_ppm=…",
            f"  schemas: {', '.join(schemas.FAMILIES)}",
            "Operator: approve <id> | reject <id> | confirm <id>",
            "help: this text",
        ]
    )


def is_help(text: str) -> bool:
    words = text.split()
    return len(words) == 1 and words[0].lower() in HELP_WORDS


def claim_usage_reply(tx: Tx, sender: str) -> None:
    """Spend one usage reply for `sender` (RateLimited once its or everyone's budget is
    spent for the hour)."""
    since = tx.now - HOUR
    if repo.rate_since(tx, f"dm-usage:{sender}", since) >= USAGE_PER_SENDER:
        raise RateLimited("this sender already got the usage text this hour")
    if repo.rate_since(tx, ALL_SENDERS, since) >= USAGE_PER_HOUR:
        raise RateLimited("usage replies are spent for this hour")
    repo.record_rate(tx, f"dm-usage:{sender}", False)
    repo.record_rate(tx, ALL_SENDERS, False)
