"""Tests of secure_cp.store against real SQLite files (and real processes killed with SIGKILL).

DESIGN.md §3: transactions and queued transaction messages survive a power cut at any instruction; nothing
lost, nothing duplicated. OCPP 1.6 §3.7 / §3.7.1: transaction-related messages are queued in order, retried,
and skipped only after repeated failure. OCPP 1.6 §3.5.1: authorization cache semantics.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import tracemalloc
from decimal import Decimal
from pathlib import Path

import psutil
import pytest

from secure_cp.store import (
    MIGRATIONS,
    AuthCache,
    Database,
    KeyValue,
    Outbox,
    SqliteVariableBackend,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreLocked,
    Transactions,
    TxRecord,
    json_dumps,
    json_loads,
)
from secure_cp.store import migrations as migrations_module

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "station.db"


@pytest.fixture
def db(db_path: Path):
    database = Database(db_path)
    yield database
    database.close()


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def _tx(tx_key: str, started_at: str = "2024-05-01T10:00:00Z", protocol: str = "1.6", **kw) -> TxRecord:
    return TxRecord(
        tx_key=tx_key, evse_id=1, connector_id=1, id_tag="TAG1", started_at=started_at,
        meter_start_wh=1000, protocol=protocol, **kw,
    )


# ------------------------------------------------------------------------------------------ opening


def test_open_creates_parent_dir_and_sets_pragmas(db: Database, db_path: Path) -> None:
    assert db.path == db_path
    assert db_path.exists()
    assert db.query("PRAGMA journal_mode")[0][0] == "wal"
    assert db.query("PRAGMA synchronous")[0][0] == 2  # FULL
    assert db.query("PRAGMA foreign_keys")[0][0] == 1
    assert Path(str(db_path) + ".lock").exists()


def test_migrations_apply_once_and_record_version(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Database(db_path) as first:
        assert first.schema_version == len(MIGRATIONS) >= 1
    extra = "CREATE TABLE probe (x INTEGER);\nINSERT INTO probe (x) VALUES (1);"
    monkeypatch.setattr(migrations_module, "MIGRATIONS", [*MIGRATIONS, extra])
    with Database(db_path) as second:
        assert second.schema_version == len(MIGRATIONS) + 1
        assert second.query("SELECT COUNT(*) FROM probe")[0][0] == 1
    with Database(db_path) as third:  # already at the newest version: nothing runs again
        assert third.schema_version == len(MIGRATIONS) + 1
        assert third.query("SELECT COUNT(*) FROM probe")[0][0] == 1


def test_v7_upgrade_keeps_the_queue_and_leaves_no_index_on_pending_messages(
        db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Schema 7 drops the outbox indexes a queued message used to write (five pages per metering commit, now three):
    a store at version 6 with pending and failed items upgrades with nothing lost or reordered."""
    monkeypatch.setattr(migrations_module, "MIGRATIONS", MIGRATIONS[:6])
    with Database(db_path) as old:
        assert old.schema_version == 6
        queue = Outbox(old)
        seqs = [queue.append("MeterValues", {"n": n}, tx_key="tx-1" if n % 2 else None, now=float(n))
                for n in range(5)]
        queue.give_up(seqs[1], "refused")
    monkeypatch.setattr(migrations_module, "MIGRATIONS", MIGRATIONS)
    with Database(db_path) as db:
        assert db.schema_version == len(MIGRATIONS) >= 7
        indexes = {row[0]: row[1] for row in db.query(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox' AND sql IS NOT NULL")}
        assert list(indexes) == ["outbox_failed"] and "WHERE status = 'failed'" in indexes["outbox_failed"]
        queue = Outbox(db)
        assert [item.payload["n"] for item in queue.pending()] == [0, 2, 3, 4]
        assert [item.seq for item in queue.failed()] == [seqs[1]]
        assert queue.head().seq == seqs[0] and queue.head(after=seqs[2]).seq == seqs[3]
        assert [item.seq for item in queue.pending_for("tx-1")] == [seqs[3]]
        assert (queue.pending_count(), queue.failed_count()) == (4, 1)
        queue.remove(seqs[4])
        assert queue.append("MeterValues", {"n": 5}, now=5.0) > seqs[4]   # a removed seq is never handed out again


def test_failed_migration_is_rolled_back_completely(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Database(db_path).close()
    broken = "CREATE TABLE half_done (x INTEGER);\nINSERT INTO no_such_table VALUES (1);"
    monkeypatch.setattr(migrations_module, "MIGRATIONS", [*MIGRATIONS, broken])
    with pytest.raises(StoreError, match=f"migration to schema version {len(MIGRATIONS) + 1}") as info:
        Database(db_path)
    assert str(db_path) in str(info.value)
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert raw.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0
    finally:
        raw.close()
    monkeypatch.setattr(migrations_module, "MIGRATIONS", MIGRATIONS)
    Database(db_path).close()  # the lock was released by the failed open


def test_newer_schema_is_refused_as_corrupt(db_path: Path) -> None:
    Database(db_path).close()
    raw = sqlite3.connect(db_path)
    raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 3}")
    raw.commit()
    raw.close()
    with pytest.raises(StoreCorrupt, match="newer secure-cp") as info:
        Database(db_path)
    assert str(db_path) in str(info.value)


def test_garbage_file_is_corrupt_and_names_the_path(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is certainly not an SQLite database\n" * 200)
    with pytest.raises(StoreCorrupt) as info:
        Database(db_path)
    assert str(db_path) in str(info.value)
    db_path.unlink()
    Database(db_path).close()  # no stale lock left behind by the failed open


def test_damaged_page_fails_the_integrity_check(db_path: Path) -> None:
    with Database(db_path) as database:
        KeyValue(database, "bulk").set("rows", list(range(10)))
        with database.tx() as conn:
            conn.executemany(
                "INSERT INTO kv (namespace, key, value) VALUES ('bulk', ?, ?)",
                [(f"k{i:05d}", json_dumps("v" * 200)) for i in range(3000)],
            )
    data = bytearray(db_path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    pages = len(data) // page_size
    assert pages > 10
    middle = (pages // 2) * page_size
    data[middle : middle + page_size] = b"\xa5" * page_size
    db_path.write_bytes(bytes(data))
    with pytest.raises(StoreCorrupt) as info:
        Database(db_path)
    assert str(db_path) in str(info.value)


def test_second_database_in_another_process_is_locked(db: Database, db_path: Path) -> None:
    code = (
        "import sys\n"
        "from secure_cp.store import Database, StoreLocked\n"
        "try:\n"
        "    Database(sys.argv[1]).close()\n"
        "except StoreLocked as exc:\n"
        "    print('LOCKED', exc)\n"
        "else:\n"
        "    print('OPENED')\n"
    )
    run = [sys.executable, "-c", code, str(db_path)]
    held = subprocess.run(run, capture_output=True, text=True, timeout=60, env=_child_env())
    assert held.returncode == 0, held.stderr
    assert held.stdout.startswith("LOCKED"), held.stdout
    assert str(db_path) in held.stdout
    assert f"process {os.getpid()}" in held.stdout
    db.close()
    free = subprocess.run(run, capture_output=True, text=True, timeout=60, env=_child_env())
    assert free.stdout.strip() == "OPENED", free.stdout + free.stderr


def test_second_database_in_same_process_is_locked(db: Database, db_path: Path) -> None:
    # flock() locks belong to the open file description: a second open() of the lock file conflicts even in
    # the same process, so two Database objects can never share a file by accident.
    with pytest.raises(StoreLocked, match="in use"):
        Database(db_path)
    KeyValue(db, "ns").set("still", "usable")
    assert KeyValue(db, "ns").get("still") == "usable"


def test_closed_database_raises_store_error(db_path: Path) -> None:
    database = Database(db_path)
    database.close()
    database.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        database.query("SELECT 1")


# -------------------------------------------------------------------------------------- transactions


def test_tx_rolls_back_on_exception(db: Database) -> None:
    kv = KeyValue(db, "ns")
    kv.set("a", 1)
    with pytest.raises(RuntimeError):
        with db.tx():
            kv.set("a", 2)
            kv.set("b", 3)
            raise RuntimeError("boom")
    assert kv.items() == {"a": 1}


def test_nested_tx_makes_several_store_calls_atomic(db: Database) -> None:
    """Stopping a transaction and queueing its StopTransaction happen together or not at all."""
    transactions, outbox = Transactions(db), Outbox(db)
    transactions.create(_tx("k1"))
    with pytest.raises(RuntimeError):
        with db.tx():
            transactions.update("k1", stopped_at="2024-05-01T11:00:00Z", meter_stop_wh=2000)
            outbox.append("StopTransaction", {"meterStop": 2000}, tx_key="k1", now=1.0)
            raise RuntimeError("power cut stand-in")
    assert transactions.get("k1").stopped_at is None
    assert outbox.pending_count() == 0

    with db.tx():
        transactions.update("k1", stopped_at="2024-05-01T11:00:00Z")
        try:
            with db.tx():  # an inner failure rolls back only the inner block (SAVEPOINT)
                outbox.append("Bogus", {}, now=1.0)
                raise ValueError("inner")
        except ValueError:
            pass
        outbox.append("StopTransaction", {"meterStop": 2000}, tx_key="k1", now=1.0)
    assert transactions.get("k1").stopped_at == "2024-05-01T11:00:00Z"
    assert [item.action for item in outbox.pending()] == ["StopTransaction"]


def test_atomic_joins_without_savepoint_and_a_failure_dooms_the_whole_transaction(db: Database, db_path: Path) -> None:
    """Database.atomic(): the hot-path variant of a nested tx() (no SAVEPOINT). Alone it commits like tx(); inside
    an open transaction a failure in it cannot be undone on its own, so nothing of the outer transaction commits,
    even when the exception is caught in between."""
    transactions, outbox = Transactions(db), Outbox(db)
    transactions.create(_tx("k1"))
    with db.atomic():
        outbox.append("MeterValues", {"n": 1}, tx_key="k1", now=1.0)
    assert _committed_elsewhere(db_path, "SELECT COUNT(*) FROM outbox") == [(1,)]

    statements: list[str] = []
    db._require_conn().set_trace_callback(statements.append)
    with db.tx():
        transactions.update("k1", last_meter_wh=5)
        with db.atomic():
            outbox.append("MeterValues", {"n": 2}, tx_key="k1", now=1.0)
    db._require_conn().set_trace_callback(None)
    assert not [s for s in statements if "SAVEPOINT" in s]
    assert _committed_elsewhere(db_path, "SELECT COUNT(*) FROM outbox") == [(2,)]

    rollbacks = db.rollbacks
    with pytest.raises(StoreError, match="rolled this transaction back"):
        with db.tx():
            transactions.update("k1", last_meter_wh=9)
            try:
                with db.atomic():
                    outbox.append("MeterValues", {"n": 3}, tx_key="k1", now=1.0)
                    raise ValueError("after the first write of the block")
            except ValueError:
                pass
    assert db.rollbacks > rollbacks                  # the caches that watch rollbacks forget
    assert transactions.get("k1").last_meter_wh == 5
    assert outbox.pending_count() == 2


def _committed_elsewhere(db_path: Path, sql: str) -> list:
    """What another connection sees: only committed data."""
    other = sqlite3.connect(str(db_path))
    try:
        return other.execute(sql).fetchall()
    finally:
        other.close()


def test_lazy_tx_begins_with_the_first_write_and_commits_it(db: Database, db_path: Path) -> None:
    """The runtime's event block: reads alone open no transaction; the first write does, and the block's end
    commits every write of it together."""
    outbox, transactions = Outbox(db), Transactions(db)
    transactions.create(_tx("k1"))
    with db.tx(lazy=True) as conn:
        assert outbox.pending_count() == 0 and transactions.get("k1") is not None
        assert not conn.in_transaction                     # read-only so far: nothing begun, nothing to commit
        outbox.append("MeterValues", {"n": 1}, tx_key="k1", now=1.0)
        assert conn.in_transaction
        transactions.update("k1", meter_stop_wh=5)
        assert _committed_elsewhere(db_path, "SELECT COUNT(*) FROM outbox") == [(0,)]   # not yet committed
    assert not conn.in_transaction
    assert _committed_elsewhere(db_path, "SELECT COUNT(*) FROM outbox") == [(1,)]
    assert _committed_elsewhere(db_path, "SELECT meter_stop_wh FROM transactions") == [(5,)]


def test_lazy_tx_failing_first_block_and_outer_failure_roll_back(db: Database) -> None:
    outbox = Outbox(db)
    with db.tx(lazy=True) as conn:
        try:
            with db.tx():              # the write that begins the transaction fails: the transaction is empty again
                outbox.append("Bogus", {}, now=1.0)
                raise ValueError("inner")
        except ValueError:
            pass
        assert not conn.in_transaction and outbox.pending_count() == 0
        outbox.append("StartTransaction", {"n": 1}, now=1.0)   # the block goes on and commits what follows
    assert [i.action for i in outbox.pending()] == ["StartTransaction"]

    with pytest.raises(RuntimeError):
        with db.tx(lazy=True):
            outbox.append("MeterValues", {"n": 2}, now=2.0)
            outbox.append("StopTransaction", {"n": 3}, now=2.0)
            raise RuntimeError("an event's bug")
    assert [i.action for i in outbox.pending()] == ["StartTransaction"]


def test_write_inside_a_block_fails_alone_without_a_savepoint(db: Database) -> None:
    """Database.write joins the open block; a failing statement is undone by SQLite, the block's earlier
    writes stay and commit."""
    outbox = Outbox(db)
    with db.tx():
        seq = outbox.append("StartTransaction", {"n": 1}, now=1.0)
        with pytest.raises(sqlite3.IntegrityError):
            db.write("INSERT INTO outbox (seq, action, payload, created_at) VALUES (?, 'X', '{}', 0)", (seq,))
        outbox.append("MeterValues", {"n": 2}, now=1.0)
    assert [i.action for i in outbox.pending()] == ["StartTransaction", "MeterValues"]
    done = db.write("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ? RETURNING attempts", (seq,))
    assert done.rowcount == 1 and [tuple(r) for r in done.rows] == [(1,)]


def test_integrity_error_passes_through_and_db_stays_usable(db: Database) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        with db.tx() as conn:
            conn.execute("INSERT INTO kv (namespace, key, value) VALUES ('n', 'k', NULL)")
    KeyValue(db, "n").set("k", 1)
    assert KeyValue(db, "n").get("k") == 1


def test_concurrent_writers_from_threads_get_distinct_ordered_seqs(db: Database) -> None:
    outbox = Outbox(db)
    results: dict[int, list[int]] = {}

    def worker(n: int) -> None:
        results[n] = [outbox.append("MeterValues", {"w": n, "i": i}, now=0.0) for i in range(15)]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    all_seqs = [seq for seqs in results.values() for seq in seqs]
    assert len(set(all_seqs)) == 60
    for seqs in results.values():
        assert seqs == sorted(seqs)
    assert [item.seq for item in outbox.pending()] == sorted(all_seqs)


# -------------------------------------------------------------------------------------------- outbox


def test_outbox_fifo_order_and_remove(db: Database) -> None:
    """OCPP 1.6 §3.7: transaction-related messages are delivered in chronological order."""
    outbox = Outbox(db)
    assert outbox.head() is None and outbox.pending_count() == 0
    s1 = outbox.append("StartTransaction", {"connectorId": 1}, tx_key="k1", now=10.0)
    s2 = outbox.append("MeterValues", {"connectorId": 1}, tx_key="k1", now=11.0)
    s3 = outbox.append("StopTransaction", {"meterStop": 5}, tx_key="k1", now=12.0)
    assert s1 < s2 < s3
    head = outbox.head()
    assert head is not None
    assert (head.seq, head.action, head.payload, head.tx_key, head.attempts, head.status) == (
        s1, "StartTransaction", {"connectorId": 1}, "k1", 0, "pending",
    )
    assert head.created_at == 10.0 and head.next_attempt_at is None and head.last_error is None
    assert outbox.pending_count() == 3
    outbox.remove(s1)
    outbox.remove(s1)  # idempotent: a restart may repeat the removal of a delivered item
    assert outbox.head().seq == s2
    assert [item.seq for item in outbox.pending()] == [s2, s3]
    assert [item.seq for item in outbox.pending(limit=1)] == [s2]
    outbox.remove(s2)
    outbox.remove(s3)
    assert outbox.head() is None
    s4 = outbox.append("MeterValues", {}, now=13.0)
    assert s4 > s3  # seqs are never reused, even after the queue emptied


def test_outbox_failure_counting_and_retry_schedule(db: Database) -> None:
    """OCPP 1.6 §3.7.1: count failures to process a transaction-related message before skipping it."""
    outbox = Outbox(db)
    seq = outbox.append("StopTransaction", {"meterStop": 1}, now=0.0)
    assert outbox.record_failure(seq, "CALLERROR InternalError", next_attempt_at=60.0) == 1
    assert outbox.record_failure(seq, "timeout", next_attempt_at=180.0) == 2
    item = outbox.get(seq)
    assert (item.attempts, item.last_error, item.next_attempt_at, item.status) == (2, "timeout", 180.0, "pending")
    assert outbox.head().seq == seq  # still the head: later messages wait behind it
    with pytest.raises(KeyError):
        outbox.record_failure(seq + 100, "x", next_attempt_at=None)


def test_outbox_give_up_keeps_item_and_retry_failed_requeues(db: Database) -> None:
    outbox = Outbox(db)
    s1 = outbox.append("StartTransaction", {"a": 1}, now=0.0)
    s2 = outbox.append("MeterValues", {"a": 2}, now=0.0)
    s3 = outbox.append("StopTransaction", {"a": 3}, now=0.0)
    outbox.record_failure(s1, "e1", next_attempt_at=5.0)
    outbox.give_up(s1, "gave up after 3 attempts")
    assert outbox.head().seq == s2
    assert outbox.pending_count() == 2
    failed = outbox.failed()
    assert [(i.seq, i.status, i.last_error) for i in failed] == [(s1, "failed", "gave up after 3 attempts")]
    assert outbox.get(s1).payload == {"a": 1}  # kept, with its billing data
    outbox.give_up(s3, "e3")
    assert [i.seq for i in outbox.failed()] == [s1, s3]

    assert outbox.retry_failed(s3) == 1
    assert [i.seq for i in outbox.failed()] == [s1]
    assert outbox.retry_failed() == 1
    assert outbox.failed() == []
    again = outbox.head()
    assert (again.seq, again.attempts, again.status, again.next_attempt_at) == (s1, 0, "pending", None)
    assert [i.seq for i in outbox.pending()] == [s1, s2, s3]
    assert outbox.retry_failed() == 0
    with pytest.raises(KeyError):
        outbox.give_up(9999, "x")


def test_outbox_update_payload(db: Database) -> None:
    outbox = Outbox(db)
    seq = outbox.append("MeterValues", {"transactionId": None}, tx_key="k", now=0.0)
    outbox.update_payload(seq, {"transactionId": 42})
    assert outbox.get(seq).payload == {"transactionId": 42}
    assert [i.seq for i in outbox.pending_for("k")] == [seq]
    with pytest.raises(KeyError):
        outbox.update_payload(seq + 1, {})


def test_outbox_decimal_round_trip_is_exact(db_path: Path) -> None:
    """A meter reading "2935.600" keeps its trailing zeros (Eichrecht: readings are byte-exact)."""
    payload = {
        "meterValue": [{"sampledValue": [{"value": Decimal("2935.600")}, {"value": Decimal("1E+3")}]}],
        "tiny": Decimal("-0.000000100"),
        "float": 0.1,
        "int": 7,
        "text": "Grüße \u2603",
        "flags": [True, False, None],
    }
    with Database(db_path) as database:
        seq = Outbox(database).append("MeterValues", payload, now=0.0)
    with Database(db_path) as database:
        stored = Outbox(database).get(seq).payload
    value = stored["meterValue"][0]["sampledValue"][0]["value"]
    assert isinstance(value, Decimal) and str(value) == "2935.600"
    assert str(stored["meterValue"][0]["sampledValue"][1]["value"]) == "1E+3"
    assert str(stored["tiny"]) == "-1.00E-7" and stored["tiny"] == Decimal("-0.000000100")
    assert stored["float"] == Decimal("0.1") and stored["int"] == 7
    assert stored["text"] == "Grüße \u2603" and stored["flags"] == [True, False, None]
    assert json_dumps(payload).count("2935.600") == 1


def test_json_codec_rejects_what_json_cannot_carry() -> None:
    for bad in (math.nan, math.inf, Decimal("NaN"), Decimal("-Infinity")):
        with pytest.raises(ValueError):
            json_dumps({"v": bad})
    assert json_dumps({1: "int key"}) == '{"1":"int key"}'   # the stdlib's key coercion: still valid JSON
    with pytest.raises(TypeError):
        json_dumps({"v": object()})
    assert json_loads(json_dumps({"a": [1, "b"]})) == {"a": [1, "b"]}


def test_outbox_10000_items_head_and_count_stay_on_disk(db: Database) -> None:
    """10,000 queued items: head()/pending_count() read one row / one number, not the queue."""
    outbox = Outbox(db)
    pad = "p" * 2000
    seqs = outbox.append_many(
        (("MeterValues", {"i": i, "value": Decimal("1.000"), "pad": pad}, f"tx{i % 7}") for i in range(10_000)),
        now=0.0,
    )
    assert len(seqs) == 10_000 and seqs == sorted(seqs)
    process = psutil.Process()
    rss_before = process.memory_info().rss
    tracemalloc.start()
    try:
        for _ in range(20):
            head = outbox.head()
            count = outbox.pending_count()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = process.memory_info().rss - rss_before
    assert head.seq == seqs[0] and head.payload["i"] == 0 and str(head.payload["value"]) == "1.000"
    assert count == 10_000
    assert peak < 256 * 1024, peak               # the queue is ~20 MB of JSON; none of it was loaded
    assert rss_growth < 8 * 1024 * 1024, rss_growth
    outbox.remove(seqs[0])
    assert outbox.head().seq == seqs[1] and outbox.pending_count() == 9_999


# ---------------------------------------------------------------------------------- power cut (SIGKILL)

_APPENDER = r"""
import sys
from secure_cp.store import Database, Outbox
outbox = Outbox(Database(sys.argv[1]))
for i in range(1_000_000):
    seq = outbox.append("MeterValues", {"i": i, "value": "%d.000" % i}, tx_key="k1", now=float(i))
    print(seq, i, flush=True)
"""


def test_outbox_survives_sigkill_without_loss_or_duplicates(db_path: Path) -> None:
    """Every append() that returned before a SIGKILL is on disk, in order, exactly once."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _APPENDER, str(db_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env(),
    )
    printed: list[tuple[int, int]] = []
    try:
        while len(printed) < 150:
            line = proc.stdout.readline()
            assert line, f"appender died early: {proc.stderr.read()}"
            seq, i = line.split()
            printed.append((int(seq), int(i)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    for line in rest.splitlines(keepends=True):
        if line.endswith("\n"):  # a line cut by the kill was never fully reported
            seq, i = line.split()
            printed.append((int(seq), int(i)))

    with Database(db_path) as database:  # the kernel released the dead process's lock
        items = Outbox(database).pending()
    stored = [(item.seq, item.payload["i"]) for item in items]
    assert stored[: len(printed)] == printed                 # nothing printed is lost, order kept
    assert len(stored) - len(printed) <= 1                   # at most the one append in flight
    assert [i for _, i in stored] == list(range(len(stored)))  # no duplicates, no gaps
    assert all(item.payload["value"] == f"{item.payload['i']}.000" for item in items)


_HALF_DONE = r"""
import sys
from secure_cp.store import Database, Outbox, Transactions, TxRecord
db = Database(sys.argv[1])
transactions, outbox = Transactions(db), Outbox(db)
transactions.create(TxRecord(tx_key="k1", evse_id=1, connector_id=1, id_tag="T", started_at="2024-05-01T10:00:00Z",
                             meter_start_wh=100, protocol="1.6"))
outbox.append("StartTransaction", {"meterStart": 100}, tx_key="k1", now=1.0)
print("committed", flush=True)
with db.tx():
    transactions.update("k1", stopped_at="2024-05-01T11:00:00Z", meter_stop_wh=900)
    outbox.append("StopTransaction", {"meterStop": 900}, tx_key="k1", now=2.0)
    print("inside", flush=True)
    sys.stdin.readline()   # killed here, before COMMIT
"""


def test_sigkill_inside_tx_leaves_previous_state(db_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HALF_DONE, str(db_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env(),
    )
    try:
        assert proc.stdout.readline() == "committed\n", proc.stderr.read()
        assert proc.stdout.readline() == "inside\n", proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
    with Database(db_path) as database:
        record = Transactions(database).get("k1")
        assert record is not None and record.stopped_at is None and record.meter_stop_wh is None
        assert [item.action for item in Outbox(database).pending()] == ["StartTransaction"]
        assert [r.tx_key for r in Transactions(database).open()] == ["k1"]


# ----------------------------------------------------------------------------------------- disk full


def test_disk_full_raises_store_full_and_keeps_state(db: Database, db_path: Path) -> None:
    outbox = Outbox(db)
    kept = outbox.append_many((("MeterValues", {"i": i, "pad": "x" * 300}, None) for i in range(20)), now=0.0)
    pages = db.query("PRAGMA page_count")[0][0]
    db.query(f"PRAGMA max_page_count = {pages + 2}")  # simulate a nearly full disk (SQLITE_FULL)

    with pytest.raises(StoreFull) as info:
        outbox.append("MeterValues", {"pad": "y" * 50_000}, now=1.0)
    assert str(db_path) in str(info.value)

    with pytest.raises(StoreFull):
        with db.tx():
            outbox.append("StartTransaction", {"small": 1}, now=1.0)  # fits, but is part of the failed tx
            for _ in range(50):
                outbox.append("MeterValues", {"pad": "z" * 4000}, now=1.0)
    assert [item.seq for item in outbox.pending()] == kept
    assert [item.payload["i"] for item in outbox.pending()] == list(range(20))

    db.query("PRAGMA max_page_count = 1073741823")  # space freed: the same Database works on
    seq = outbox.append("StopTransaction", {"pad": "y" * 50_000}, now=2.0)
    assert outbox.pending()[-1].seq == seq and seq > kept[-1]
    assert outbox.pending_count() == 21


# ------------------------------------------------------------------------------------------- tables


def test_transactions_crud_and_queries(db_path: Path) -> None:
    with Database(db_path) as database:
        transactions = Transactions(database)
        rec = _tx("k1", extra={"ocmf": "OCMF|{...}|{...}", "price": Decimal("0.390")}, reservation_id=3)
        transactions.create(rec)
        assert transactions.get("k1") == rec
        with pytest.raises(ValueError, match="already exists"):
            transactions.create(_tx("k1"))
        transactions.create(_tx("k0", started_at="2024-05-01T09:00:00Z", protocol="2.0.1"))
        transactions.create(_tx("k2", started_at="2024-05-01T12:00:00Z"))
        assert transactions.get("missing") is None

        assert transactions.transaction_id_of("k1") is None and transactions.transaction_id_of("missing") is None
        transactions.update("k1", transaction_id=4711, last_meter_wh=1500, last_meter_at="2024-05-01T10:15:00Z")
        assert transactions.transaction_id_of("k1") == "4711"
        assert transactions.by_transaction_id("4711").tx_key == "k1"
        assert transactions.by_transaction_id("4712") is None
        with pytest.raises(ValueError, match="bogus"):
            transactions.update("k1", bogus=1)
        with pytest.raises(ValueError):
            transactions.update("k1", tx_key="other")
        with pytest.raises(KeyError):
            transactions.update("nope", last_meter_wh=1)
        transactions.set_last_meter("k2", 1700, "2024-05-01T12:05:00Z")      # the per-sample form of update()
        assert (transactions.get("k2").last_meter_wh, transactions.get("k2").last_meter_at) == \
            (1700, "2024-05-01T12:05:00Z")
        with pytest.raises(KeyError):
            transactions.set_last_meter("nope", 1, "2024-05-01T12:05:00Z")

        assert [r.tx_key for r in transactions.open()] == ["k0", "k1", "k2"]
        transactions.update("k0", stopped_at="2024-05-01T09:30:00Z", meter_stop_wh=1200, stop_reason="Local",
                            stop_id_tag="TAG1")
        assert [r.tx_key for r in transactions.open()] == ["k1", "k2"]
        assert [r.tx_key for r in transactions.recent()] == ["k2", "k1", "k0"]
        assert [r.tx_key for r in transactions.recent(limit=1)] == ["k2"]
    with Database(db_path) as database:  # everything persisted
        transactions = Transactions(database)
        k1 = transactions.get("k1")
        assert (k1.transaction_id, k1.last_meter_wh, k1.reservation_id) == ("4711", 1500, 3)
        assert str(k1.extra["price"]) == "0.390"
        k0 = transactions.get("k0")
        assert (k0.stop_reason, k0.meter_stop_wh, k0.protocol) == ("Local", 1200, "2.0.1")


def test_transactions_next_seq_no_is_atomic_and_durable(db_path: Path) -> None:
    with Database(db_path) as database:
        transactions = Transactions(database)
        transactions.create(_tx("k1"))
        assert [transactions.next_seq_no("k1") for _ in range(3)] == [0, 1, 2]
        with pytest.raises(KeyError):
            transactions.next_seq_no("unknown")
    with Database(db_path) as database:
        transactions = Transactions(database)
        assert transactions.get("k1").seq_no == 3
        assert transactions.next_seq_no("k1") == 3


def test_key_value_json_values_and_namespaces(db_path: Path) -> None:
    with Database(db_path) as database:
        boot, avail = KeyValue(database, "boot"), KeyValue(database, "availability")
        boot.set("registration", "Accepted")
        boot.set("interval", 300)
        boot.set("meta", {"list": [1, 2], "energy": Decimal("12.50"), "none": None})
        avail.set("1", "Inoperative")
        assert boot.get("missing") is None and boot.get("missing", "dflt") == "dflt"
        boot.set("interval", 600)  # overwrite
        boot.delete("registration")
        boot.delete("registration")  # deleting twice is fine
    with Database(db_path) as database:
        boot = KeyValue(database, "boot")
        assert boot.items() == {"interval": 600, "meta": {"list": [1, 2], "energy": Decimal("12.50"), "none": None}}
        assert str(boot.get("meta")["energy"]) == "12.50"
        assert KeyValue(database, "availability").items() == {"1": "Inoperative"}
    with pytest.raises(ValueError):
        KeyValue(database, "")


def test_auth_cache_evicts_not_valid_first_then_least_recently_used(db: Database) -> None:
    """OCPP 1.6 §3.5.1: when full, remove NOT-valid entries first, then the oldest valid ones."""
    now = _epoch("2024-05-01T12:00:00+00:00")
    cache = AuthCache(db, max_entries=3)
    cache.put("A", {"status": "Accepted"}, now)
    cache.put("B", {"status": "Blocked"}, now)
    cache.put("C", {"status": "Accepted", "parentIdTag": "P"}, now)
    assert len(cache) == 3
    assert cache.get("A") == {"status": "Accepted"}  # A is now more recently used than C
    cache.put("D", {"status": "Accepted"}, now)       # full: the NOT-valid B goes first
    assert cache.get("B") is None and len(cache) == 3
    cache.put("E", {"status": "Accepted"}, now)       # only valid ones left: least recently used (C) goes
    assert cache.get("C") is None
    assert {tag for tag in "ADE" if cache.get(tag) is not None} == {"A", "D", "E"}

    cache.put("A", {"status": "Accepted", "expiryDate": "2024-04-30T00:00:00Z"}, now)  # update, now expired
    cache.get("D")
    cache.get("E")
    cache.get("A")                                    # A is most recently used, but expired
    cache.put("F", {"status": "Accepted"}, now)
    assert "A" not in cache and "D" in cache and "E" in cache and "F" in cache
    cache.put("G", {"status": "Invalid"}, now)        # a new NOT-valid entry is kept; it needs the room
    assert "G" in cache and len(cache) == 3

    cache.clear()
    assert len(cache) == 0 and cache.get("D") is None


def test_auth_cache_marks_expired_entries_and_persists(db_path: Path) -> None:
    """OCPP 1.6 §3.5.1 / 2.0.1 C10.FR.10: an expired cache entry is changed to Expired."""
    now = _epoch("2024-05-01T12:00:00+00:00")
    with Database(db_path) as database:
        cache = AuthCache(database)
        cache.put("OLD", {"status": "Accepted", "expiryDate": "2024-05-01T11:59:59Z"}, now)
        cache.put("NEW", {"idTokenInfo": 1, "status": "Accepted", "cacheExpiryDateTime": "2024-05-02T00:00:00Z"},
                  now)
        assert cache.get("OLD")["status"] == "Accepted"  # without a time no judgement
        assert cache.get("OLD", now=now)["status"] == "Expired"
        assert cache.get("NEW", now=now)["status"] == "Accepted"
    with Database(db_path) as database:
        cache = AuthCache(database)
        assert cache.get("OLD") == {"status": "Expired", "expiryDate": "2024-05-01T11:59:59Z"}
        assert len(cache) == 2
    with pytest.raises(ValueError):
        AuthCache(database, max_entries=0)


def test_variable_backend_round_trip(db_path: Path) -> None:
    heartbeat = ("OCPPCommCtrlr", "", 0, 0, "HeartbeatInterval", "", "Actual")
    connector = ("Connector", "", 1, 2, "AvailabilityState", "", "Actual")
    offline = ("OCPPCommCtrlr", "", 0, 0, "MessageTimeout", "Default", "Target")
    with Database(db_path) as database:
        backend = SqliteVariableBackend(database)
        assert backend.load_all() == {}
        backend.put(heartbeat, "300")
        backend.put_many({connector: "Available", offline: "30", heartbeat: "600"})
        with pytest.raises(TypeError):
            backend.put(("too", "short"), "x")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            backend.put(heartbeat, 5)  # type: ignore[arg-type]
    with Database(db_path) as database:
        assert SqliteVariableBackend(database).load_all() == {
            heartbeat: "600", connector: "Available", offline: "30",
        }
