"""The agent's SQLite store (see db.py)."""

from agent.store.db import OutboxItem, Store, Tx

__all__ = ["OutboxItem", "Store", "Tx"]
