"""One SQLite file on disk: the durable memory of a charging station.

Why it is built this way (DESIGN.md §3, "nothing that matters lives only in memory"):

* WAL journal + ``synchronous=FULL``: a COMMIT returns only after the WAL has been fsync'ed, so whatever a
  ``with db.tx():`` block wrote survives a power cut from the moment the block exits, and a power cut at any
  earlier instruction leaves the previous committed state (SQLite's atomic commit).
* One writer: a re-entrant lock serialises every use of the single connection (the sqlite3 module's
  connection is not meant to be used by two threads at once), and ``BEGIN IMMEDIATE`` takes SQLite's write
  lock at the start of the transaction instead of at the first write, so a transaction never fails half-way
  with SQLITE_BUSY.
* An exclusive ``flock`` on ``<path>.lock`` keeps a second process (a second service instance, a CLI tool run
  by mistake) from writing the same station's memory. ``flock`` locks belong to the open file description,
  so the kernel drops the lock when the holder dies, even by SIGKILL.
* Errors become ``StoreError`` subclasses whose messages name the file, because the person reading the log
  on a charger needs to know which file is full or broken.

This module also holds the JSON codec used for every JSON column: ``decimal.Decimal`` is written as its exact
text and read back as ``Decimal`` so meter readings such as ``2935.600`` keep every digit.
"""

from __future__ import annotations

import decimal
import fcntl
import json
import logging
import os
import sqlite3
import threading
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from .. import jsontext
from ..fsutil import fsync_dir
from . import migrations

__all__ = [
    "Database",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "json_dumps",
    "json_loads",
]

log = logging.getLogger(__name__)

# Primary SQLite result codes (https://www.sqlite.org/rescode.html). Python >= 3.11 exposes the (extended)
# code as ``sqlite3.Error.sqlite_errorcode``; the primary code is its low byte.
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26


class StoreError(Exception):
    """Base class of every persistence failure; the message names the database file."""


class StoreCorrupt(StoreError):
    """The file is not a database, fails the integrity check, or was written by a newer secure-cp."""


class StoreFull(StoreError):
    """The disk (or the configured page limit) is full. The failed write was rolled back; state is intact."""


class StoreLocked(StoreError):
    """Another process holds this data directory's store."""


# --------------------------------------------------------------------------------------------------- JSON


def json_dumps(value: Any) -> str:
    """Serialise ``value`` to compact JSON text, writing ``Decimal`` values as their exact text (NaN and
    infinities are rejected: they are not JSON, and no OCPP message may carry them)."""
    return jsontext.dumps(value)


# Made once: json.loads() with an option builds a new decoder on every call.
_DECODE = jsontext.loads_with(json.JSONDecoder(parse_float=decimal.Decimal))


def json_loads(text: str) -> Any:
    """Parse JSON text written by :func:`json_dumps`; numbers with a fraction or exponent become ``Decimal``."""
    if isinstance(text, str):
        return _DECODE(text)
    return json.loads(text, parse_float=decimal.Decimal)   # bytes: json.loads finds their encoding


# ----------------------------------------------------------------------------------------------- Database


class Written(NamedTuple):
    """What one :meth:`Database.write` statement did (immutable)."""
    rowcount: int
    lastrowid: int | None
    rows: list


# Built for every write statement (several per metering round trip): tuple.__new__ directly is C code only, where
# the generated __new__ of a NamedTuple (or the __init__ of a frozen dataclass) runs Python code per call.
_new_written = partial(tuple.__new__, Written)


def _written(cur: sqlite3.Cursor) -> Written:
    rows = cur.fetchall()     # finishes the statement (a COMMIT needs that) and takes RETURNING rows
    return _new_written((cur.rowcount, cur.lastrowid, rows))


class Database:
    """The station's SQLite database: one connection, one writer, durable commits.

    Use ``with db.tx() as conn:`` for every write. ``tx()`` blocks may nest (the inner block becomes a
    SAVEPOINT of the outer transaction), so the engine can make several store calls atomic together, e.g.
    "mark the transaction stopped AND queue its StopTransaction": either both survive a power cut or neither.
    Writes inside a nested block are durable only when the outermost block exits.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._depth = 0          # nesting depth of tx() blocks; touched only by the thread holding _lock
        self._aborted = False    # SQLite rolled the whole transaction back under a nested block
        self._begun = False      # BEGIN has been issued for the open outermost block (see tx(lazy=True))
        #: how many times writes were rolled back: a cache of store rows built before is suspect after a change
        self.rollbacks = 0
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._owner_pid = os.getpid()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory of database '{self.path}': {exc}") from exc
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_fd = self._acquire_file_lock()
        try:
            self._conn = self._connect()
            self._check_integrity()
            self._migrate()
            fsync_dir(self.path.parent, quiet=True)   # the new files' entries too
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------------------------------- opening

    def _acquire_file_lock(self) -> int:
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open lock file '{self._lock_path}' of database '{self.path}': {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise StoreLocked(
                f"database '{self.path}' is in use by {who} (lock file '{self._lock_path}'); "
                "only one secure-cp may use a data directory at a time"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock '{self._lock_path}' of database '{self.path}': {exc}") from exc
        try:  # the holder's pid, for the StoreLocked message of whoever comes next (diagnostic only)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        return fd

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: the sqlite3 module issues no implicit BEGIN/COMMIT; tx() owns transactions.
            conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._translate(exc, "cannot open") from exc
        conn.row_factory = sqlite3.Row
        self._conn = conn
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                # Still durable (rollback journal + synchronous=FULL), just slower; say so rather than fail.
                log.warning("database '%s': WAL journal not available (journal_mode=%s)", self.path, mode)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            # Keep the WAL file from growing without bound on small flash file systems after checkpoints.
            conn.execute("PRAGMA journal_size_limit=4194304")
        except sqlite3.Error as exc:
            raise self._translate(exc, "cannot open") from exc
        return conn

    def _check_integrity(self) -> None:
        conn = self._require_conn()
        try:
            rows = [row[0] for row in conn.execute("PRAGMA quick_check(20)").fetchall()]
        except sqlite3.Error as exc:
            raise self._translate(exc, "integrity check failed", corrupt=True) from exc
        if rows != ["ok"]:
            detail = "; ".join(str(row) for row in rows[:5])
            raise StoreCorrupt(f"database '{self.path}' failed its integrity check: {detail}")
        # the check read every page into the cache; give that memory back (a long offline queue lives on disk,
        # not in RAM)
        conn.execute("PRAGMA shrink_memory")

    def _migrate(self) -> None:
        """Bring the schema up to ``len(migrations.MIGRATIONS)``, one migration per transaction.

        ``PRAGMA user_version`` is written inside the same transaction as the migration's own statements, so a
        power cut during a migration leaves the previous version complete and the migration is simply re-run.
        """
        conn = self._require_conn()
        scripts = migrations.MIGRATIONS  # looked up at call time: later modules append to the list
        current = self.schema_version
        if current > len(scripts):
            raise StoreCorrupt(
                f"database '{self.path}' has schema version {current}, but this secure-cp knows only up to "
                f"version {len(scripts)}: it was created by a newer secure-cp; refusing to open it"
            )
        with self._lock:
            for version in range(current + 1, len(scripts) + 1):
                script = scripts[version - 1]
                try:
                    # executescript() runs the whole text; BEGIN/COMMIT are part of it so that the migration
                    # and its version number commit together (or not at all).
                    conn.executescript(
                        f"BEGIN IMMEDIATE;\n{script}\n;\nPRAGMA user_version = {version};\nCOMMIT;"
                    )
                except sqlite3.Error as exc:
                    self._rollback_quietly()
                    raise self._translate(exc, f"migration to schema version {version} failed") from exc
                log.info("database '%s': migrated to schema version %d", self.path, version)

    # ------------------------------------------------------------------------------------------ API

    @property
    def schema_version(self) -> int:
        """The schema version stored in the file (``PRAGMA user_version``)."""
        rows = self.query("PRAGMA user_version")
        return int(rows[0][0])

    def tx(self, *, lazy: bool = False) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction: BEGIN IMMEDIATE ... COMMIT, durable when the outermost block exits.

        On an exception the transaction (or, when nested, just this block's SAVEPOINT) is rolled back and the
        exception re-raised; SQLite failures are re-raised as ``StoreFull`` / ``StoreCorrupt`` /
        ``StoreError`` (``sqlite3.IntegrityError`` and programming errors pass through unchanged).

        ``lazy=True`` (outermost block only): BEGIN is issued by the first write inside it (a nested ``tx()``
        or :meth:`write`), so a block that only reads costs no transaction at all. The block itself must then
        not write through the connection it gets, only through nested blocks / :meth:`write`.
        """
        return _Block(self, lazy, False)

    def _begin(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._translate(exc, "cannot begin a transaction") from exc
        self._begun = True

    def atomic(self) -> AbstractContextManager[None]:
        """Several writes that commit together, for hot paths: outside a transaction it is a ``tx()`` of its own;
        inside an open one it joins it without a SAVEPOINT. A failure inside then cannot be undone on its own, so
        it dooms the whole outer transaction (rolled back at its end, even if the exception is caught in between):
        all or nothing, never part of this block."""
        return _Block(self, False, True)

    def write(self, sql: str, params: Any = ()) -> Written:
        """One write statement, durable like a ``tx()`` block of its own; inside an open block it joins that
        block without a SAVEPOINT (SQLite undoes a failed statement by itself, so there is nothing to roll
        back to). Rows of a ``RETURNING`` clause come back in ``Written.rows``."""
        conn = self._conn
        if conn is None:
            conn = self._require_conn()   # raises: closed
        with self._lock:
            if self._begun:
                try:
                    return _written(conn.execute(sql, params))
                except sqlite3.Error as exc:
                    if not conn.in_transaction:   # SQLite rolled the whole transaction back (e.g. SQLITE_FULL)
                        self._aborted = True
                    if _is_storage_error(exc):
                        raise self._translate(exc, "write failed and was rolled back") from exc
                    raise
            if self._depth == 0:   # no transaction open: one of its own
                with self.tx() as c:
                    return _written(c.execute(sql, params))
            # The first write of a lazy block (a metering event's first): BEGIN here rather than through a nested
            # block object, with the same outcome as _Block's _FIRST kind: if the statement fails, the (so far
            # empty) transaction is rolled back and the outer block is lazy again.
            self._begin(conn)
            try:
                return _written(conn.execute(sql, params))
            except BaseException as exc:
                self._rollback_quietly()
                self._begun = False
                if isinstance(exc, sqlite3.Error) and _is_storage_error(exc):
                    raise self._translate(exc, "write failed and was rolled back") from exc
                raise

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        """Run one statement and return all its rows (inside a ``tx()`` block it sees that block's writes)."""
        conn = self._require_conn()
        with self._lock:
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                if _is_storage_error(exc):
                    raise self._translate(exc, "query failed") from exc
                raise

    def close(self) -> None:
        """Close the connection (SQLite checkpoints the WAL) and release the lock file. Idempotent."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error as exc:  # pragma: no cover - close() of an idle connection hardly fails
                    log.warning("database '%s': error on close: %s", self.path, exc)
            fd, self._lock_fd = self._lock_fd, None
            if fd is not None:
                try:
                    # A forked child shares the parent's lock (same open file description); it must only
                    # drop its descriptor, never unlock the parent's store.
                    if os.getpid() == self._owner_pid:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r}{', closed' if self.closed else ''})"

    # -------------------------------------------------------------------------------------- helpers

    def _require_conn(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            raise StoreError(f"database '{self.path}' is closed")
        return conn

    def _rollback_quietly(self) -> None:
        self.rollbacks += 1
        conn = self._conn
        if conn is not None and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.error("database '%s': ROLLBACK failed: %s", self.path, exc)

    def _translate(self, exc: sqlite3.Error, what: str, *, corrupt: bool = False) -> StoreError:
        primary = _primary_code(exc)
        if primary == _SQLITE_FULL:
            return StoreFull(f"database '{self.path}' is full (disk or page limit): {what}: {exc}")
        if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or corrupt:
            return StoreCorrupt(f"database '{self.path}' is corrupt or not a database: {what}: {exc}")
        return StoreError(f"database '{self.path}': {what}: {exc}")


# What a _Block did on entering: began the outermost transaction (BEGIN, or nothing yet when lazy), began a lazy
# transaction with its first write (BEGIN, no SAVEPOINT), opened a SAVEPOINT (a nested tx()), or joined an open
# transaction (atomic(): nothing of its own).
_OUTER, _FIRST, _SAVEPOINT, _JOIN = range(4)


class _Block:
    """One ``with db.tx():`` / ``with db.atomic():`` block: the transaction logic of :class:`Database`.

    A class rather than a ``@contextmanager`` generator: several blocks run per metering round trip, and the
    generator machinery costs several times the Python work of a plain ``__enter__`` / ``__exit__``. The block
    holds the database lock from ``__enter__`` to ``__exit__``. ``__exit__`` never swallows the body's exception:
    it goes on unchanged unless it is a SQLite storage failure (re-raised as a ``StoreError``); the end of the
    block may fail on its own (COMMIT / RELEASE, or a transaction a nested failure doomed).
    """

    __slots__ = ("_db", "_lazy", "_join", "_conn", "_kind", "_name")

    def __init__(self, db: Database, lazy: bool, join: bool) -> None:
        self._db = db
        self._lazy = lazy      # tx(lazy=True): BEGIN with the first write inside
        self._join = join      # atomic(): join an open transaction without a SAVEPOINT; the body gets None

    def __enter__(self) -> Any:
        db = self._db
        conn = db._conn
        if conn is None:
            conn = db._require_conn()   # raises: closed
        db._lock.acquire()
        try:
            if db._depth == 0:
                if not self._lazy:
                    db._begin(conn)
                db._depth = 1
                db._aborted = False
                self._kind = _OUTER
            elif not db._begun:
                # the first write of a lazy transaction: nothing before it to keep, so no SAVEPOINT is needed; a
                # failure rolls the (so far empty) transaction back and leaves the outer block lazy again
                db._begin(conn)
                db._depth += 1
                self._kind = _FIRST
            elif self._join:
                self._kind = _JOIN
            else:
                name = f"secure_cp_sp{db._depth}"
                try:
                    conn.execute(f"SAVEPOINT {name}")
                except sqlite3.Error as exc:
                    raise db._translate(exc, "cannot begin a nested transaction") from exc
                db._depth += 1
                self._name = name
                self._kind = _SAVEPOINT
        except BaseException:
            db._lock.release()
            raise
        self._conn = conn
        return None if self._join else conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        db = self._db
        kind = self._kind
        try:
            if exc_type is not None:
                self._undo(kind, exc)
            elif kind == _OUTER:
                try:
                    if db._aborted:
                        if db._begun:
                            db._rollback_quietly()
                        raise StoreError(
                            f"database '{db.path}': SQLite rolled this transaction back after a failure inside a "
                            "nested block; nothing of it was committed"
                        )
                    if db._begun:
                        try:
                            self._conn.execute("COMMIT")
                        except sqlite3.Error as commit_exc:
                            db._rollback_quietly()
                            raise db._translate(commit_exc, "commit failed and was rolled back") from commit_exc
                finally:
                    db._depth = 0
                    db._aborted = False
                    db._begun = False
            elif kind == _FIRST:
                db._depth -= 1
            elif kind == _SAVEPOINT:
                try:
                    self._conn.execute(f"RELEASE {self._name}")
                except sqlite3.Error as release_exc:
                    db._aborted = True
                    raise db._translate(release_exc, "nested transaction failed") from release_exc
                finally:
                    db._depth -= 1
        finally:
            db._lock.release()
        return False

    def _undo(self, kind: int, exc: BaseException | None) -> None:
        """The body raised ``exc``: roll this block back (re-raises ``exc`` translated, or returns to let it go)."""
        db = self._db
        if kind == _JOIN:    # cannot be undone on its own: it dooms the whole transaction (rolled back at its end)
            db._aborted = True
            return
        try:
            if kind == _OUTER:
                if db._begun:
                    db._rollback_quietly()
            elif kind == _FIRST:
                db._rollback_quietly()
                db._begun = False
            else:
                db.rollbacks += 1
                conn = self._conn
                if conn.in_transaction:
                    try:
                        conn.execute(f"ROLLBACK TO {self._name}")
                        conn.execute(f"RELEASE {self._name}")
                    except sqlite3.Error:
                        db._aborted = True
                else:  # SQLite already rolled back the whole transaction (e.g. after SQLITE_FULL)
                    db._aborted = True
            if isinstance(exc, sqlite3.Error) and _is_storage_error(exc):
                raise db._translate(exc, "write failed and was rolled back") from exc
        finally:
            if kind == _OUTER:
                db._depth = 0
                db._aborted = False
                db._begun = False
            else:
                db._depth -= 1


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _is_storage_error(exc: sqlite3.Error) -> bool:
    """True for failures of the store itself; False for caller bugs and constraint violations, which pass on."""
    return not isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError))


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
