"""The agent's SQLite store (see db.py)."""

from agent.store.db import Db, Store, Tx
from agent.store.outbox_item import OutboxItem, OutboxState

__all__ = ["Db", "OutboxItem", "OutboxState", "Store", "Tx"]
