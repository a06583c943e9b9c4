"""The adapters' outbox view (secure_cp/delivery.py): what it keeps in memory must always equal the store."""
from __future__ import annotations

from pathlib import Path

import pytest

from secure_cp.delivery import KNOWN_MAX, OutboxQueue
from secure_cp.store import Database, Outbox


@pytest.fixture
def queue(tmp_path: Path):
    db = Database(tmp_path / "station.db")
    yield OutboxQueue(db, Outbox(db)), db
    db.close()


def _store_head(db: Database, after: int = 0):
    item = Outbox(db).head(after=after)
    return None if item is None else item.seq


def test_head_from_memory_follows_the_store_through_appends_and_deliveries(queue) -> None:
    q, db = queue
    queries: list[str] = []
    db._require_conn().set_trace_callback(lambda sql: queries.append(sql))
    assert q.head() is None                       # one read: the queue is empty, from now on it is known
    seqs = [q.append("MeterValues", {"n": i}, tx_key="t", now=1.0) for i in range(3)]
    for seq in seqs:
        head = q.head()
        assert head is not None and head.seq == seq and head.payload["n"] == seqs.index(seq)
        q.delivered(seq, 2.0, defer=True)
    assert q.head() is None
    reads = [s for s in queries if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 1, reads                 # the first, empty read only: the rest came from memory
    q.flush()
    assert _store_head(db) is None                # the deferred deletions reached the store in one statement
    assert sum("DELETE FROM outbox" in s for s in queries) == 1


def test_long_queue_is_not_kept_in_memory_and_still_delivered_in_order(queue) -> None:
    q, db = queue
    assert q.head() is None
    seqs = [q.append("MeterValues", {"n": i}, tx_key="t", now=1.0) for i in range(KNOWN_MAX + 3)]
    assert q._known is None                       # too long: memory stays bounded, the store answers
    got = []
    while (head := q.head()) is not None:
        got.append(head.seq)
        q.delivered(head.seq, 2.0, defer=len(got) % 2 == 0)
    assert got == seqs
    q.flush()
    assert _store_head(db) is None


def test_rollback_forgets_what_memory_knew(queue) -> None:
    q, db = queue
    assert q.head() is None
    with pytest.raises(RuntimeError):
        with db.tx():
            with db.tx():                         # nested: its rollback bumps Database.rollbacks
                q.append("MeterValues", {"n": 1}, tx_key="t", now=1.0)
                raise RuntimeError("power failure stand-in")
    assert _store_head(db) is None
    assert q.head() is None                       # not the rolled-back message
    seq = q.append("MeterValues", {"n": 2}, tx_key="t", now=1.0)
    assert q.head().seq == seq == _store_head(db)


def test_changed_and_failures_read_the_store_again(queue) -> None:
    q, db = queue
    assert q.head() is None
    first = q.append("StartTransaction", {"n": 1}, tx_key="t", now=1.0)
    second = q.append("MeterValues", {"n": 2}, tx_key="t", now=1.0)
    q.give_up(q.head(), "test")                   # kept in the store as failed, skipped by the head
    assert q.head().seq == second == _store_head(db)
    q.failed(q.head(), "CALLERROR", 3.0, attempts=5, interval=10.0)
    head = q.head()
    assert head.seq == second and head.attempts == 1 and head.next_attempt_at == pytest.approx(13.0)
    assert Outbox(db).get(first).status == "failed"


def test_items_carry_the_stored_text_from_memory_and_from_the_store(queue) -> None:
    """The text a queued message is sent with is the text in the store, whether the head comes from memory (queued
    by this process) or from a read (e.g. after a restart); an updated payload brings its new text."""
    from decimal import Decimal
    q, db = queue
    assert q.head() is None
    payload = {"connectorId": 1, "meterValue": [{"sampledValue": [{"value": Decimal("2935.600")}]}], "é": "ü"}
    seq = q.append("MeterValues", payload, tx_key="t", now=1.0)
    stored = db.query("SELECT payload FROM outbox WHERE seq = ?", (seq,))[0][0]
    assert '"value":2935.600' in stored and q.head().text == stored
    reread = OutboxQueue(db, Outbox(db)).head()
    assert reread is not None and reread.text == stored and reread.payload == payload
    Outbox(db).update_payload(seq, {**payload, "transactionId": 7})
    assert Outbox(db).head().text == db.query("SELECT payload FROM outbox WHERE seq = ?", (seq,))[0][0]
    assert '"transactionId":7' in Outbox(db).head().text
