"""The legal log: every signed OCMF record the station handles, byte for byte, before it is queued for the CSMS.

Eichrecht needs that no signed record is ever lost: the log is appended (``synchronous=FULL``) before the record
goes into a message, is never pruned by ClearCache, survives upgrades (schema migrations) and certificate rotation,
and is exported per transaction or time range as a transparency file (:mod:`.transparency`).

Two ways in:

* meter-signed records (the meter hands over a string): :meth:`LegalLog.append`;
* gateway-signed records: :meth:`LegalLog.sign_and_append` reserves the ``PG`` number, writes the payload, signs
  it through the key backend and appends it in ONE durable transaction (see :mod:`.pagination`).
"""
from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .ocmf import Identification, MeterIdentity, OcmfError, OcmfRecord, ReadingValue, Signer, build_payload, \
    sign_payload
from .pagination import Pagination

__all__ = ["LegalLog", "LegalRecord", "ReadOnlyStore"]


@dataclass(frozen=True)
class LegalRecord:
    """One row of the legal log."""
    id: int
    raw: str
    tx_key: str | None
    transaction_id: str | None
    evse_id: int | None
    connector_id: int | None
    context: str | None           # OCPP ReadingContext, e.g. "Transaction.Begin"
    pagination: str | None
    meter_key_id: int | None
    created_at: float
    public_key: str | None = None  # DER hex of meter_key_id, joined in by the queries

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_COLUMNS = ("l.id, l.raw, l.tx_key, l.transaction_id, l.evse_id, l.connector_id, l.context, l.pagination, "
            "l.meter_key_id, l.created_at, k.public_key")
_FROM = "FROM legal_log l LEFT JOIN meter_keys k ON k.id = l.meter_key_id"


class ReadOnlyStore:
    """A read-only view of a station's database for the CLI (export, meter-key): WAL readers need no store lock,
    so a running station keeps writing while an operator exports."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no station store at {self.path}")
        self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)

    def query(self, sql: str, params: Any = ()) -> list:
        return self._conn.execute(sql, params).fetchall()

    def has_table(self, name: str) -> bool:
        return bool(self.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ReadOnlyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LegalLog:
    """The ``legal_log`` table. ``store``: a :class:`~secure_cp.store.db.Database`; the read methods also work on a
    :class:`ReadOnlyStore`."""

    def __init__(self, store) -> None:
        self._db = store

    def append(self, raw: str, *, tx_key: str | None = None, transaction_id: str | int | None = None,
               evse_id: int | None = None, connector_id: int | None = None, context: str | None = None,
               meter_key_id: int | None = None, now: float | None = None) -> LegalRecord:
        """Append a signed record exactly as given (durable when this returns, or with the caller's ``tx()``).

        The record must parse as OCMF (OcmfError otherwise: a meter that hands over garbage is a meter error, not
        a record); its text is stored untouched, never re-serialized."""
        record = OcmfRecord.parse(raw)
        try:
            pagination = record.pg
        except OcmfError:
            pagination = None
        now = time.time() if now is None else now
        written = self._db.write(
            "INSERT INTO legal_log (raw, tx_key, transaction_id, evse_id, connector_id, context, pagination, "
            "meter_key_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (record.raw, tx_key, None if transaction_id is None else str(transaction_id), evse_id, connector_id,
             context, pagination, meter_key_id, now))
        return self.get(int(written.rows[0][0]))  # type: ignore[return-value]

    def sign_and_append(self, *, signer: Signer, identity: MeterIdentity, readings: Iterable[ReadingValue],
                        identification: Identification | None = None, pagination_context: str = "T",
                        fv: str = "1.0", ct: str | None = None, ci: str | None = None, tx_key: str | None = None,
                        transaction_id: str | int | None = None, evse_id: int | None = None,
                        connector_id: int | None = None, context: str | None = None,
                        meter_key_id: int | None = None, now: float | None = None) -> LegalRecord:
        """Gateway mode: reserve ``PG``, build the payload, sign it, append it: one durable transaction, so a
        power cut at any point leaves either nothing (the number is free again) or the logged record."""
        readings = list(readings)
        with self._db.tx():
            pg = Pagination(self._db).reserve(pagination_context)
            payload = build_payload(pagination=pg, identity=identity, readings=readings,
                                    identification=identification, fv=fv, ct=ct, ci=ci)
            record = sign_payload(payload, signer)
            return self.append(record.raw, tx_key=tx_key, transaction_id=transaction_id, evse_id=evse_id,
                               connector_id=connector_id, context=context, meter_key_id=meter_key_id, now=now)

    async def sign_and_append_async(self, **kwargs: Any) -> LegalRecord:
        """:meth:`sign_and_append` in a worker thread: the event loop keeps running while the key backend signs
        (the store's lock is held for that time, so the number and the record still commit together)."""
        return await asyncio.to_thread(lambda: self.sign_and_append(**kwargs))

    def set_transaction_id(self, tx_key: str, transaction_id: str | int) -> int:
        """Attach the CSMS's transaction id to the records of ``tx_key`` (1.6: known after StartTransaction)."""
        return self._db.write("UPDATE legal_log SET transaction_id = ? WHERE tx_key = ? AND transaction_id IS NULL",
                              (str(transaction_id), tx_key)).rowcount

    def get(self, record_id: int) -> LegalRecord | None:
        rows = self._db.query(f"SELECT {_COLUMNS} {_FROM} WHERE l.id = ?", (record_id,))
        return LegalRecord(*rows[0]) if rows else None

    def of_transaction(self, ref: str | int) -> list[LegalRecord]:
        """The records of one transaction, by the CSMS's transaction id or the station's tx_key, in log order."""
        rows = self._db.query(f"SELECT {_COLUMNS} {_FROM} WHERE l.transaction_id = ? OR l.tx_key = ? ORDER BY l.id",
                              (str(ref), str(ref)))
        return [LegalRecord(*r) for r in rows]

    def between(self, start: float, end: float) -> list[LegalRecord]:
        """The records created in [start, end) (epoch seconds), in log order."""
        rows = self._db.query(f"SELECT {_COLUMNS} {_FROM} WHERE l.created_at >= ? AND l.created_at < ? "
                              "ORDER BY l.id", (start, end))
        return [LegalRecord(*r) for r in rows]

    def last_of_connector(self, connector_id: int) -> str | None:
        """The text of the newest record of a connector's meter (None: none yet)."""
        rows = self._db.query("SELECT raw FROM legal_log WHERE connector_id = ? ORDER BY id DESC LIMIT 1",
                              (connector_id,))
        return rows[0][0] if rows else None

    def count(self) -> int:
        return int(self._db.query("SELECT count(*) FROM legal_log")[0][0])
