"""Persistence (SQLite on disk): the durable memory of a charging station.

Transactions, queued transaction messages, settings, the authorization cache and the device model survive a
power cut at any instruction: nothing lost, nothing duplicated (DESIGN.md §3).
"""

from .db import Database, StoreCorrupt, StoreError, StoreFull, StoreLocked, json_dumps, json_loads
from .migrations import MIGRATIONS
from .outbox import FAILED, PENDING, Outbox, OutboxItem
from .tables import (AuthCache, KeyValue, LocalList, LocalListFull, SqliteVariableBackend, Transactions, TxRecord,
                     VarKey)

__all__ = [
    "FAILED",
    "MIGRATIONS",
    "PENDING",
    "AuthCache",
    "Database",
    "KeyValue",
    "LocalList",
    "LocalListFull",
    "Outbox",
    "OutboxItem",
    "SqliteVariableBackend",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "Transactions",
    "TxRecord",
    "VarKey",
    "json_dumps",
    "json_loads",
]
