"""The agent's SQLite store (see db.py)."""

from agent.store.db import Db, OutboxItem, Store, Tx

__all__ = ["Db", "OutboxItem", "Store", "Tx"]
