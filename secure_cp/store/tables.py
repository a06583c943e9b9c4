"""Typed access to the store's tables: transactions, key/value settings, authorization cache, local authorization
list, device model.

Every write commits before it returns (``synchronous=FULL``), or together with the caller's own
``with db.tx():`` block when called inside one, so the engine can make several changes atomic.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Iterable

from .db import Database, StoreError, json_dumps, json_loads

__all__ = [
    "AuthCache",
    "KeyValue",
    "LocalList",
    "LocalListFull",
    "SqliteVariableBackend",
    "Transactions",
    "TxRecord",
    "VarKey",
]


# ------------------------------------------------------------------------------------------- transactions


@dataclass
class TxRecord:
    """A transaction as the station remembers it across restarts."""

    tx_key: str              # local id, unique, made by the engine (e.g. uuid4 hex)
    evse_id: int
    connector_id: int
    id_tag: str
    started_at: str          # RFC 3339 text
    meter_start_wh: int
    protocol: str            # "1.6" / "2.0.1"
    reservation_id: int | None = None
    transaction_id: str | None = None   # the CSMS's id (1.6: int as str); 2.0.1: the station's own id
    last_meter_wh: int | None = None
    last_meter_at: str | None = None
    stopped_at: str | None = None
    meter_stop_wh: int | None = None
    stop_reason: str | None = None
    stop_id_tag: str | None = None
    seq_no: int = 0          # 2.0.1 TransactionEvent seqNo counter
    extra: dict = field(default_factory=dict)


_TX_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TxRecord))
_TX_UPDATABLE = frozenset(_TX_FIELDS) - {"tx_key"}
_TX_COLUMNS = ", ".join(_TX_FIELDS)


def _tx_from_row(row: Any) -> TxRecord:
    # every SELECT of a record lists _TX_COLUMNS, i.e. the fields in order, ``extra`` (JSON) last: the record is
    # made from the row by position (keyword arguments through a dict cost as much again as the SELECT's columns)
    extra = row[-1]
    return TxRecord(*row[:-1], json_loads(extra) if extra else {})


def _tx_db_value(name: str, value: Any) -> Any:
    if name == "extra":
        if not isinstance(value, dict):
            raise TypeError(f"TxRecord.extra must be a dict, got {type(value).__name__}")
        return json_dumps(value)
    return value


class Transactions:
    """The ``transactions`` table: open and finished transactions, keyed by the engine's ``tx_key``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, rec: TxRecord) -> None:
        """Insert a new transaction; ``ValueError`` if ``tx_key`` already exists."""
        values = [_tx_db_value(name, getattr(rec, name)) for name in _TX_FIELDS]
        placeholders = ", ".join("?" for _ in _TX_FIELDS)
        try:
            with self._db.tx() as conn:
                conn.execute(f"INSERT INTO transactions ({_TX_COLUMNS}) VALUES ({placeholders})", values)
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"transaction {rec.tx_key!r} already exists or is invalid: {exc}") from exc

    def get(self, tx_key: str) -> TxRecord | None:
        rows = self._db.query(f"SELECT {_TX_COLUMNS} FROM transactions WHERE tx_key = ?", (tx_key,))
        return _tx_from_row(rows[0]) if rows else None

    def transaction_id_of(self, tx_key: str) -> str | None:
        """The CSMS's id of a transaction (None: not known yet, or no such transaction); one column, no record."""
        rows = self._db.query("SELECT transaction_id FROM transactions WHERE tx_key = ?", (tx_key,))
        return rows[0][0] if rows else None

    def by_transaction_id(self, transaction_id: str) -> TxRecord | None:
        """The transaction the CSMS knows by ``transaction_id`` (the newest, should a CSMS reuse ids)."""
        rows = self._db.query(
            f"SELECT {_TX_COLUMNS} FROM transactions WHERE transaction_id = ? ORDER BY rowid DESC LIMIT 1",
            (str(transaction_id),),
        )
        return _tx_from_row(rows[0]) if rows else None

    def update(self, tx_key: str, /, **fields: Any) -> None:
        """Change some fields of a transaction: ``ValueError`` for unknown fields, ``KeyError`` for unknown keys."""
        unknown = sorted(set(fields) - _TX_UPDATABLE)
        if unknown:
            raise ValueError(f"cannot update unknown/immutable transaction field(s): {', '.join(unknown)}")
        if "transaction_id" in fields and fields["transaction_id"] is not None:
            fields["transaction_id"] = str(fields["transaction_id"])
        if fields:
            assignments = ", ".join(f"{name} = ?" for name in fields)
            params = [_tx_db_value(name, value) for name, value in fields.items()]
            found = self._db.write(f"UPDATE transactions SET {assignments} WHERE tx_key = ?",
                                   (*params, tx_key)).rowcount > 0
        else:
            found = bool(self._db.query("SELECT 1 FROM transactions WHERE tx_key = ?", (tx_key,)))
        if not found:
            raise KeyError(f"transaction {tx_key!r} does not exist")

    def set_last_meter(self, tx_key: str, energy_wh: int, at: str) -> None:
        """The latest reading of a running transaction (a power cut ends it with this one): update()'s work in one
        fixed statement, as it is done for every sample."""
        if self._db.write("UPDATE transactions SET last_meter_wh = ?, last_meter_at = ? WHERE tx_key = ?",
                          (energy_wh, at, tx_key)).rowcount == 0:
            raise KeyError(f"transaction {tx_key!r} does not exist")

    def open(self) -> list[TxRecord]:
        """Transactions not stopped yet, oldest first (to resume them after a restart)."""
        rows = self._db.query(
            f"SELECT {_TX_COLUMNS} FROM transactions WHERE stopped_at IS NULL ORDER BY started_at, rowid"
        )
        return [_tx_from_row(row) for row in rows]

    def recent(self, limit: int = 50) -> list[TxRecord]:
        """The newest transactions first, open or finished."""
        rows = self._db.query(
            f"SELECT {_TX_COLUMNS} FROM transactions ORDER BY started_at DESC, rowid DESC LIMIT ?", (limit,)
        )
        return [_tx_from_row(row) for row in rows]

    def of_id_tag(self, id_tag: str) -> list[TxRecord]:
        """Transactions started or stopped with ``id_tag`` (ASCII case ignored: 2.0.1 IdToken is case insensitive),
        oldest first: what the station holds about one customer (2.0.1 N09 / N10)."""
        rows = self._db.query(
            f"SELECT {_TX_COLUMNS} FROM transactions WHERE id_tag = ? COLLATE NOCASE "
            "OR stop_id_tag = ? COLLATE NOCASE ORDER BY started_at, rowid", (id_tag, id_tag))
        return [_tx_from_row(row) for row in rows]

    def next_seq_no(self, tx_key: str) -> int:
        """Atomically return the current ``seq_no`` and increment it (2.0.1 TransactionEventRequest.seqNo).

        The increment is committed before the number is used, so after a power cut a number is never issued
        twice (a gap is possible and allowed; a repeat is not). Inside an open block it joins that block (one
        statement: no SAVEPOINT needed, see Database.write).
        """
        rows = self._db.write("UPDATE transactions SET seq_no = seq_no + 1 WHERE tx_key = ? RETURNING seq_no - 1",
                              (tx_key,)).rows
        if not rows:
            raise KeyError(f"transaction {tx_key!r} does not exist")
        return int(rows[0][0])


# --------------------------------------------------------------------------------------------- key/value


class KeyValue:
    """Small durable settings in one namespace (connector availability, boot state, counters). JSON values."""

    def __init__(self, db: Database, namespace: str) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ValueError("KeyValue namespace must be a non-empty string")
        self._db = db
        self.namespace = namespace

    @property
    def db(self) -> Database:
        return self._db

    def get(self, key: str, default: Any = None) -> Any:
        rows = self._db.query("SELECT value FROM kv WHERE namespace = ? AND key = ?", (self.namespace, key))
        return json_loads(rows[0][0]) if rows else default

    def set(self, key: str, value: Any) -> None:
        text = json_dumps(value)
        with self._db.tx() as conn:
            conn.execute(
                "INSERT INTO kv (namespace, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
                (self.namespace, key, text),
            )

    def delete(self, key: str) -> None:
        with self._db.tx() as conn:
            conn.execute("DELETE FROM kv WHERE namespace = ? AND key = ?", (self.namespace, key))

    def items(self) -> dict:
        rows = self._db.query("SELECT key, value FROM kv WHERE namespace = ? ORDER BY key", (self.namespace,))
        return {row[0]: json_loads(row[1]) for row in rows}


# --------------------------------------------------------------------------------------- authorization cache

# idTagInfo / idTokenInfo statuses that mean "valid" (OCPP 1.6 §3.5.2: Accepted/ConcurrentTx are valid).
_VALID_STATUSES = ("Accepted", "ConcurrentTx")


def _expiry_epoch(info: dict) -> float | None:
    """``expiryDate`` (1.6 idTagInfo) or ``cacheExpiryDateTime`` (2.0.1 idTokenInfo) as epoch seconds."""
    text = info.get("cacheExpiryDateTime") or info.get("expiryDate")
    if not isinstance(text, str):
        return None
    try:
        moment = _dt.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if moment.tzinfo is None:  # OCPP times are UTC; be lenient with a missing offset
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.timestamp()


class AuthCache:
    """OCPP authorization cache: idTag -> idTagInfo (1.6 §3.5.1) / idToken -> idTokenInfo (2.0.1 C10).

    Persisted across reboots and power outages as 1.6 §3.5.1 recommends. When a new entry does not fit,
    NOT-valid entries (status other than Accepted/ConcurrentTx, or past their expiry) are removed first and
    then the least recently used valid ones (1.6 §3.5.1: "remove any NOT-valid entries, and then, if
    necessary, the oldest valid entries"); only as many as needed, so rejections stay cached where possible.
    """

    def __init__(self, db: Database, max_entries: int = 1000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self._db = db
        self.max_entries = max_entries

    def get(self, id_tag: str, *, now: float | None = None, lifetime: float | None = None) -> dict | None:
        """The cached info, or None. Marks the entry as recently used.

        With ``now`` (epoch seconds), an Accepted entry past its expiry is changed to ``Expired`` in the cache
        and returned so (1.6 §3.5.1 "When the validity of a Cache entry expires, it SHALL be changed to
        expired"; 2.0.1 C10.FR.10, C10.FR.13).

        With ``now`` and ``lifetime`` (2.0.1 AuthCacheCtrlr.LifeTime, s), an entry without an expiry of its own that
        was neither updated nor used for ``lifetime`` seconds is no longer in the cache: it is removed and None is
        returned (C10.FR.08 "how long it takes until a token expires in the Authorization Cache since it is last
        used", C10.FR.10 "removed"). A lookup with ``now`` is a use: ``updated_at`` holds the time of the last
        update or use, so the lifetime counts from the later of the two.
        """
        rows = self._db.query("SELECT info, status, expires_at, updated_at FROM auth_cache WHERE id_tag = ?",
                              (id_tag,))
        if not rows:
            return None
        info = json_loads(rows[0]["info"])
        expires_at = rows[0]["expires_at"]
        if (now is not None and lifetime is not None and expires_at is None
                and rows[0]["updated_at"] + lifetime <= now):
            try:
                self.delete(id_tag)
            except StoreError:
                pass   # still treated as gone; the next lookup tries again
            return None
        expired = (
            now is not None
            and expires_at is not None
            and expires_at <= now
            and rows[0]["status"] in _VALID_STATUSES
        )
        if expired:
            info["status"] = "Expired"
        try:
            with self._db.tx() as conn:
                if expired:
                    conn.execute(
                        "UPDATE auth_cache SET info = ?, status = 'Expired' WHERE id_tag = ?",
                        (json_dumps(info), id_tag),
                    )
                conn.execute(
                    "UPDATE auth_cache SET last_used = (SELECT COALESCE(MAX(last_used), 0) + 1 FROM auth_cache) "
                    "WHERE id_tag = ?",
                    (id_tag,),
                )
                if now is not None:
                    conn.execute("UPDATE auth_cache SET updated_at = ? WHERE id_tag = ?", (float(now), id_tag))
        except StoreError:
            # Recency bookkeeping must not turn a successful lookup into a failed authorization
            # (e.g. on a full disk); the answer read above is still correct.
            pass
        return info

    def put(self, id_tag: str, info: dict, now: float) -> None:
        """Insert or update an entry (1.6 §3.5.1 "SHALL be updated"), evicting others if over ``max_entries``."""
        if not isinstance(info, dict):
            raise TypeError(f"auth cache info must be a dict, got {type(info).__name__}")
        text = json_dumps(info)
        status = info.get("status") if isinstance(info.get("status"), str) else None
        expires_at = _expiry_epoch(info)
        with self._db.tx() as conn:
            conn.execute(
                "INSERT INTO auth_cache (id_tag, info, status, expires_at, updated_at, last_used) "
                "VALUES (?, ?, ?, ?, ?, (SELECT COALESCE(MAX(last_used), 0) + 1 FROM auth_cache)) "
                "ON CONFLICT (id_tag) DO UPDATE SET info = excluded.info, status = excluded.status, "
                "expires_at = excluded.expires_at, updated_at = excluded.updated_at, "
                "last_used = excluded.last_used",
                (id_tag, text, status, expires_at, float(now)),
            )
            excess = conn.execute("SELECT COUNT(*) FROM auth_cache").fetchone()[0] - self.max_entries
            if excess > 0:
                conn.execute(
                    "DELETE FROM auth_cache WHERE id_tag IN ("
                    "  SELECT id_tag FROM auth_cache WHERE id_tag != ? ORDER BY"
                    "    CASE WHEN status IN (?, ?) AND (expires_at IS NULL OR expires_at > ?) THEN 1 ELSE 0 END,"
                    "    last_used"
                    "  LIMIT ?)",
                    (id_tag, *_VALID_STATUSES, float(now), excess),
                )

    def delete(self, id_tag: str) -> None:
        with self._db.tx() as conn:
            conn.execute("DELETE FROM auth_cache WHERE id_tag = ?", (id_tag,))

    def matching(self, id_tag: str) -> dict[str, dict]:
        """The entries whose idTag equals ``id_tag`` with ASCII case ignored (2.0.1 IdToken is case insensitive), as
        stored: a read that is no use of the entries (no recency or expiry bookkeeping; 2.0.1 N09 reports)."""
        rows = self._db.query("SELECT id_tag, info FROM auth_cache WHERE id_tag = ? COLLATE NOCASE", (id_tag,))
        return {row[0]: json_loads(row[1]) for row in rows}

    def clear(self) -> None:
        """Empty the cache (1.6 ClearCache, 2.0.1 C11 ClearCacheRequest)."""
        with self._db.tx() as conn:
            conn.execute("DELETE FROM auth_cache")

    def __len__(self) -> int:
        return int(self._db.query("SELECT COUNT(*) FROM auth_cache")[0][0])

    def __contains__(self, id_tag: object) -> bool:
        return bool(self._db.query("SELECT 1 FROM auth_cache WHERE id_tag = ?", (id_tag,)))


# ------------------------------------------------------------------------------------ local authorization list


class LocalListFull(ValueError):
    """The update would leave more entries than the station can hold; nothing was changed."""


class LocalList:
    """The Local Authorization List (OCPP 1.6 §3.5.2, 2.0.1 D01): idTag -> 1.6-style idTagInfo, plus its version.

    Kept apart from the authorization cache (1.6 §3.5.3: distinct data structures) and changed only by
    ``replace`` / ``update`` (1.6 §3.5.2, D01.FR.09: only through SendLocalList). Each change, version included,
    is one store transaction: after a power cut the list is either the old one or the new one (D01 failure
    postcondition "stays as it was"; D01.FR.10 persisted across reboots).
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, id_tag: str) -> dict | None:
        rows = self._db.query("SELECT info FROM local_list WHERE id_tag = ?", (id_tag,))
        return json_loads(rows[0][0]) if rows else None

    def version(self) -> int:
        """The version of the list: 0 until a SendLocalList was applied (2.0.1 D02.FR.02)."""
        rows = self._db.query("SELECT version FROM local_list_version WHERE id = 0")
        return int(rows[0][0]) if rows else 0

    def __len__(self) -> int:
        return int(self._db.query("SELECT COUNT(*) FROM local_list")[0][0])

    def __contains__(self, id_tag: object) -> bool:
        return bool(self._db.query("SELECT 1 FROM local_list WHERE id_tag = ?", (id_tag,)))

    def items(self) -> dict[str, dict]:
        return {row[0]: json_loads(row[1]) for row in self._db.query("SELECT id_tag, info FROM local_list")}

    def matching(self, id_tag: str) -> dict[str, dict]:
        """The entries whose idTag equals ``id_tag`` with ASCII case ignored (2.0.1 IdToken is case insensitive)."""
        rows = self._db.query("SELECT id_tag, info FROM local_list WHERE id_tag = ? COLLATE NOCASE", (id_tag,))
        return {row[0]: json_loads(row[1]) for row in rows}

    @staticmethod
    def _set_version(conn: sqlite3.Connection, version: int) -> None:
        conn.execute("INSERT INTO local_list_version (id, version) VALUES (0, ?) "
                     "ON CONFLICT (id) DO UPDATE SET version = excluded.version", (int(version),))

    @staticmethod
    def _check_size(conn: sqlite3.Connection, max_entries: int | None) -> None:
        if max_entries is not None:
            count = conn.execute("SELECT COUNT(*) FROM local_list").fetchone()[0]
            if count > max_entries:
                raise LocalListFull(f"the local list would hold {count} entries, at most {max_entries} fit")

    @staticmethod
    def _upsert(conn: sqlite3.Connection, entries: dict[str, dict]) -> None:
        rows = []
        for id_tag, info in entries.items():
            if not isinstance(info, dict):
                raise TypeError(f"local list info must be a dict, got {type(info).__name__}")
            rows.append((id_tag, json_dumps(info)))
        conn.executemany("INSERT INTO local_list (id_tag, info) VALUES (?, ?) "
                         "ON CONFLICT (id_tag) DO UPDATE SET info = excluded.info", rows)

    def replace(self, version: int, entries: dict[str, dict], *, max_entries: int | None = None) -> None:
        """Full update: the list becomes ``entries`` with ``version``; ``LocalListFull`` (nothing changed) if too many."""
        with self._db.tx() as conn:
            conn.execute("DELETE FROM local_list")
            self._upsert(conn, entries)
            self._check_size(conn, max_entries)
            self._set_version(conn, version)

    def update(self, version: int, upserts: dict[str, dict], deletes: Iterable[str] = (), *,
               max_entries: int | None = None) -> None:
        """Differential update: add/replace ``upserts``, remove ``deletes``, set ``version``; atomic."""
        with self._db.tx() as conn:
            conn.executemany("DELETE FROM local_list WHERE id_tag = ?", [(t,) for t in deletes])
            self._upsert(conn, upserts)
            self._check_size(conn, max_entries)
            self._set_version(conn, version)

    def clear(self) -> None:
        """Empty the list and forget its version (back to "no list", version 0)."""
        with self._db.tx() as conn:
            conn.execute("DELETE FROM local_list")
            self._set_version(conn, 0)


# ------------------------------------------------------------------------------------------- device model

VarKey = tuple[str, str, int, int, str, str, str]
"""(component, component_instance, evse_id, connector_id, variable, variable_instance, attribute_type);
"" for no instance, 0 for no evse/connector, attribute_type e.g. "Actual"."""

_VAR_COLUMNS = (
    "component, component_instance, evse_id, connector_id, variable, variable_instance, attribute_type"
)


def _check_var_key(key: VarKey) -> VarKey:
    if not isinstance(key, tuple) or len(key) != 7:
        raise TypeError(f"variable key must be a 7-tuple {_VAR_COLUMNS}, got {key!r}")
    component, component_instance, evse_id, connector_id, variable, variable_instance, attribute_type = key
    for name, value in (
        ("component", component), ("component_instance", component_instance), ("variable", variable),
        ("variable_instance", variable_instance), ("attribute_type", attribute_type),
    ):
        if not isinstance(value, str):
            raise TypeError(f"variable key field {name} must be str, got {value!r} in {key!r}")
    for name, value in (("evse_id", evse_id), ("connector_id", connector_id)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"variable key field {name} must be int, got {value!r} in {key!r}")
    return key


class SqliteVariableBackend:
    """Persistence for the device model: one row per (component, variable, attribute) value."""

    _UPSERT = (
        f"INSERT INTO variables ({_VAR_COLUMNS}, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT ({_VAR_COLUMNS}) DO UPDATE SET value = excluded.value"
    )

    def __init__(self, db: Database) -> None:
        self._db = db

    def load_all(self) -> dict[VarKey, str]:
        rows = self._db.query(f"SELECT {_VAR_COLUMNS}, value FROM variables")
        return {tuple(row[:7]): row[7] for row in rows}  # type: ignore[misc]

    def put(self, key: VarKey, value: str) -> None:
        """Store one value; durable on return."""
        self.put_many({key: value})

    def put_many(self, items: dict[VarKey, str]) -> None:
        """Store several values atomically (one transaction, one fsync)."""
        rows = []
        for key, value in items.items():
            if not isinstance(value, str):
                raise TypeError(f"variable value must be str, got {type(value).__name__} for {key!r}")
            rows.append((*_check_var_key(key), value))
        if not rows:
            return
        with self._db.tx() as conn:
            conn.executemany(self._UPSERT, rows)

    def delete(self, key: VarKey) -> None:
        with self._db.tx() as conn:
            conn.execute(
                f"DELETE FROM variables WHERE ({_VAR_COLUMNS}) = (?, ?, ?, ?, ?, ?, ?)", _check_var_key(key)
            )
