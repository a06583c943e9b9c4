"""The persistent, ordered queue of transaction-related CALLs.

OCPP 1.6 §3.7: transaction-related messages (StartTransaction, StopTransaction, periodic/clock-aligned
MeterValues) are delivered in chronological order; while offline they MUST be queued, and a new one waits
until the queue is empty. OCPP 1.6 §3.7.1 / OCPP 2.0.1 E14 (TransactionEvent retries): a message whose
delivery keeps failing is retried ``TransactionMessageAttempts`` times with a growing interval and then skipped.
Skipped messages are never deleted here (``give_up`` marks them ``failed``): they carry billing data, so an
operator can inspect them and re-queue them with :meth:`Outbox.retry_failed`.

The queue lives on disk: ``head()`` and ``pending_count()`` read one row / one number, never the whole queue,
so a station that was offline for days does not grow in memory.

Durability: every method commits before it returns (``synchronous=FULL``), unless it is called inside the
caller's own ``with db.tx():`` block, in which case it commits together with that block. The runtime
deletes an item only after the CSMS's CALLRESULT; a power cut between sending and ``remove()`` makes the item
be sent again, which is the OCPP "at least once" behaviour (the CSMS deduplicates on transaction id / seqNo).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from .db import Database, json_dumps, json_loads

__all__ = ["Outbox", "OutboxItem", "PENDING", "FAILED"]

PENDING = "pending"
FAILED = "failed"

_COLUMNS = "seq, action, payload, tx_key, attempts, created_at, next_attempt_at, status, last_error"


@dataclass
class OutboxItem:
    """One queued CALL. ``payload`` numbers with a fraction come back as ``decimal.Decimal``."""

    seq: int
    action: str
    payload: dict
    tx_key: str | None
    attempts: int
    created_at: float
    next_attempt_at: float | None
    status: str  # "pending" | "failed"
    last_error: str | None
    text: str | None = field(default=None, compare=False, repr=False)
    """``payload`` as the JSON text stored (the same text a frame carries: sent as it is, not encoded again)."""


def _item(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        seq=row["seq"],
        action=row["action"],
        payload=json_loads(row["payload"]),
        text=row["payload"],
        tx_key=row["tx_key"],
        attempts=row["attempts"],
        created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"],
        status=row["status"],
        last_error=row["last_error"],
    )


def entry_text(action: str, payload: dict) -> str:
    """The stored text of a CALL's payload (raises TypeError / ValueError for what cannot be queued)."""
    if not isinstance(action, str) or not action:
        raise ValueError(f"outbox action must be a non-empty string, got {action!r}")
    if not isinstance(payload, dict):
        raise TypeError(f"outbox payload must be a dict, got {type(payload).__name__}")
    return json_dumps(payload)


@lru_cache(maxsize=None)   # at most 500 texts; the same one (one deletion) for nearly every call
def _delete_in(count: int) -> str:
    """The statement deleting ``count`` seqs (remove_many)."""
    return f"DELETE FROM outbox WHERE seq IN ({','.join('?' * count)})"


class Outbox:
    """Ordered, persistent queue of transaction-related CALLs (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # ----------------------------------------------------------------------------------------- writes

    def append(self, action: str, payload: dict, *, tx_key: str | None = None, now: float,
               text: str | None = None) -> int:
        """Queue a CALL at the tail; returns its seq. Durable on return (or with the caller's ``tx()``).
        ``text``: ``payload`` already encoded by :func:`entry_text` (it is not encoded again)."""
        text = entry_text(action, payload) if text is None else text
        done = self._db.write("INSERT INTO outbox (action, payload, tx_key, created_at) VALUES (?, ?, ?, ?)",
                              (action, text, tx_key, float(now)))
        return int(done.lastrowid)

    def append_many(self, entries: Iterable[tuple[str, dict, str | None]], *, now: float) -> list[int]:
        """Queue several CALLs ``(action, payload, tx_key)`` in one transaction (one fsync); returns their seqs."""
        rows = [(action, entry_text(action, payload), tx_key) for action, payload, tx_key in entries]
        seqs: list[int] = []
        with self._db.tx() as conn:
            for action, text, tx_key in rows:
                cur = conn.execute(
                    "INSERT INTO outbox (action, payload, tx_key, created_at) VALUES (?, ?, ?, ?)",
                    (action, text, tx_key, float(now)),
                )
                seqs.append(int(cur.lastrowid))
        return seqs

    def record_failure(self, seq: int, error: str, *, next_attempt_at: float | None) -> int:
        """Count a failed delivery attempt (attempts += 1) and when to try again; returns the new count."""
        with self._db.tx() as conn:
            row = conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                "WHERE seq = ? RETURNING attempts",
                (error, next_attempt_at, seq),
            ).fetchall()  # fetch all: the statement must be finished before COMMIT
        if not row:
            raise KeyError(f"outbox item {seq} does not exist")
        return int(row[0][0])

    def give_up(self, seq: int, error: str) -> None:
        """Stop retrying (OCPP 1.6 §3.7.1 "discard"): status = failed. The item is KEPT, never deleted."""
        with self._db.tx() as conn:
            cur = conn.execute(
                "UPDATE outbox SET status = 'failed', last_error = ?, next_attempt_at = NULL WHERE seq = ?",
                (error, seq),
            )
        if cur.rowcount == 0:
            raise KeyError(f"outbox item {seq} does not exist")

    def remove(self, seq: int) -> None:
        """Delete a delivered item. Removing an already removed seq is a no-op (idempotent after a restart)."""
        self._db.write("DELETE FROM outbox WHERE seq = ?", (seq,))

    def remove_many(self, seqs: Iterable[int]) -> None:
        """Delete several delivered items in one statement (all or none)."""
        seqs = list(map(int, seqs))
        for i in range(0, len(seqs), 500):   # SQLite's limit on bound parameters is far above this
            chunk = seqs[i:i + 500]
            self._db.write(_delete_in(len(chunk)), chunk)

    def update_payload(self, seq: int, payload: dict) -> None:
        """Replace the payload of a queued item (e.g. fill in the transactionId the CSMS assigned meanwhile)."""
        text = entry_text("update", payload)
        with self._db.tx() as conn:
            cur = conn.execute("UPDATE outbox SET payload = ? WHERE seq = ?", (text, seq))
        if cur.rowcount == 0:
            raise KeyError(f"outbox item {seq} does not exist")

    def retry_failed(self, seq: int | None = None) -> int:
        """Operator action: put failed items (all, or one) back to pending with attempts reset.

        They keep their seq, so they are delivered before anything queued after them (chronological order).
        Returns how many items were re-queued.
        """
        sql = "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = NULL WHERE status = 'failed'"
        params: tuple[Any, ...] = ()
        if seq is not None:
            sql += " AND seq = ?"
            params = (seq,)
        with self._db.tx() as conn:
            return conn.execute(sql, params).rowcount

    # ------------------------------------------------------------------------------------------ reads

    def head(self, after: int = 0) -> OutboxItem | None:
        """The oldest pending item (lowest seq, above ``after``), whether or not its next_attempt_at has come;
        failed items are skipped."""
        rows = self._db.query(
            f"SELECT {_COLUMNS} FROM outbox WHERE status = 'pending' AND seq > ? ORDER BY seq LIMIT 1", (after,)
        )
        return _item(rows[0]) if rows else None

    def get(self, seq: int) -> OutboxItem | None:
        rows = self._db.query(f"SELECT {_COLUMNS} FROM outbox WHERE seq = ?", (seq,))
        return _item(rows[0]) if rows else None

    def pending_count(self) -> int:
        return int(self._db.query("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")[0][0])

    def failed_count(self) -> int:
        return int(self._db.query("SELECT COUNT(*) FROM outbox WHERE status = 'failed'")[0][0])

    def pending(self, limit: int | None = None) -> list[OutboxItem]:
        """Pending items in delivery order; ``limit`` bounds how many are loaded."""
        sql = f"SELECT {_COLUMNS} FROM outbox WHERE status = 'pending' ORDER BY seq"
        params: tuple[Any, ...] = ()
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be >= 0, got {limit}")
            sql += " LIMIT ?"
            params = (limit,)
        return [_item(row) for row in self._db.query(sql, params)]

    def failed(self) -> list[OutboxItem]:
        """Items given up on, oldest first (for the operator / diagnostics)."""
        rows = self._db.query(f"SELECT {_COLUMNS} FROM outbox WHERE status = 'failed' ORDER BY seq")
        return [_item(row) for row in rows]

    def pending_for(self, tx_key: str) -> list[OutboxItem]:
        """Pending items of one transaction, in order (e.g. to patch in a transactionId)."""
        rows = self._db.query(
            f"SELECT {_COLUMNS} FROM outbox WHERE status = 'pending' AND tx_key = ? ORDER BY seq", (tx_key,)
        )
        return [_item(row) for row in rows]
