"""The agent's SQLite store (see db.py)."""

from agent.store.db import Db, OutboxItem, OutboxState, Store, Tx

__all__ = ["Db", "OutboxItem", "OutboxState", "Store", "Tx"]
