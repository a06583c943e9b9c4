"""OCMF pagination (``PG``) for gateway-signed records: one counter per context, persisted, never reused.

Spec ("Pagination"): T (transaction) is mandatory, F (fiscal) optional; each counter counts up by 1 per record.
The number is taken inside the same durable SQLite transaction that appends the signed record to the legal log
(:meth:`~.legallog.LegalLog.sign_and_append`): reserve, sign, append, COMMIT. A power cut before the COMMIT rolls
the reservation back together with the record, and that record was never stored nor queued, so nobody has seen
the number: the next record gets it. After the COMMIT the number is used for good. Hence no repeats and no gaps.
"""
from __future__ import annotations

from ..store.db import Database

__all__ = ["Pagination", "CONTEXTS"]

CONTEXTS = ("T", "F")


class Pagination:
    """The ``ocmf_pagination`` table (schema version 5)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def reserve(self, context: str) -> str:
        """Take the next number of ``context`` ("T" or "F") and return the ``PG`` text ("T17").

        Joins the caller's ``with db.tx():`` block: call it inside the block that also stores the record, so
        the number and the record commit together (a bare call commits the number alone, leaving a gap if the
        record is then lost)."""
        if context not in CONTEXTS:
            raise ValueError(f"pagination context {context!r}: 'T' (transaction) or 'F' (fiscal)")
        rows = self._db.write("UPDATE ocmf_pagination SET next = next + 1 WHERE context = ? RETURNING next - 1",
                              (context,)).rows
        return f"{context}{int(rows[0][0])}"

    def peek(self, context: str) -> int:
        """The number the next record of ``context`` will get (read only)."""
        rows = self._db.query("SELECT next FROM ocmf_pagination WHERE context = ?", (context,))
        if not rows:
            raise ValueError(f"pagination context {context!r}: 'T' (transaction) or 'F' (fiscal)")
        return int(rows[0][0])
