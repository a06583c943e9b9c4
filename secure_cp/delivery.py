"""The adapters' view of the outbox: which queued transaction message goes next, and what has been delivered.

Both OCPP adapters deliver the store's ordered outbox the same way, and ask for its head on every frame and
timer, so this keeps that bookkeeping in one place and off the disk where it can:

* the head is cached and re-read only after something changed it (or after any rollback of the store, which
  may have taken back a row the cache was built from);
* a message appended to an empty queue is its head at once, no read back; an append to a non-empty queue
  leaves the head as it is;
* a message queued (and schema-checked) by this process is not checked a second time when it is sent;
* the deletion of a delivered *frequent* message (1.6 MeterValues, 2.0.1 TransactionEvent Updated) waits
  for the next write that is fsync'ed anyway, or ``flush_after`` seconds: a deletion alone would cost a full
  fsync per message, and losing it in a power cut only means one more delivery of a message the CSMS already
  has, which OCPP's at-least-once delivery allows (the CSMS deduplicates).

Delivered-but-not-yet-deleted messages are always the oldest pending ones (the head is always sent first), so
the head is simply the first pending message after the newest of them. While the queue is short and everything
in it was queued by this process after it was last seen empty, the queue is known in full (``_known``): the
next head then comes from memory instead of a read (online, a queue holds one message at a time, so this is
the common case). Anything else that changes the queue forgets that knowledge.
"""
from __future__ import annotations

import logging

from .store import Database, Outbox
from .store.outbox import PENDING, OutboxItem, entry_text

log = logging.getLogger("secure_cp.adapter")

#: seconds a delivered message may wait for a durable write to carry its deletion
FLUSH_AFTER = 2.0
#: the longest queue kept in memory in full (longer ones, e.g. after offline time, stay on disk only)
KNOWN_MAX = 8


class OutboxQueue:
    def __init__(self, db: Database, outbox: Outbox, *, flush_after: float = FLUSH_AFTER):
        self.db = db
        self.outbox = outbox
        self.flush_after = flush_after
        self._head: OutboxItem | None = None
        self._stale = True
        self._rollbacks = db.rollbacks
        self._delivered: list[int] = []          # delivered, deletion deferred (oldest first)
        self._delivered_since: float | None = None
        self._checked: set[int] = set()          # queued and schema-checked by this process, not sent yet
        self._known: list[OutboxItem] | None = None   # the whole undelivered queue, oldest first, if known

    # ---- reading ---------------------------------------------------------------------------------------------
    def head(self) -> OutboxItem | None:
        """The oldest pending message not delivered yet (whatever its next_attempt_at)."""
        if self._rollbacks != self.db.rollbacks:   # a rollback may have taken back rows we know of
            self._rollbacks = self.db.rollbacks
            self._forget()
        if self._stale:
            if self._known is not None:
                self._head = self._known[0] if self._known else None
            else:
                self._head = self.outbox.head(after=max(self._delivered, default=0))
                if self._head is None:
                    self._known = []                 # empty: from now on every append is known
            self._stale = False
        return self._head

    def _forget(self) -> None:
        self._stale = True
        self._known = None

    def changed(self) -> None:
        """Something (a failure count, a give-up, a payload update) changed the queue: read the head again."""
        self._forget()

    def pending_count(self) -> int:
        """Messages still to deliver."""
        return self.outbox.pending_count() - len(self._delivered)

    def pending_for(self, tx_key: str) -> list[OutboxItem]:
        """Messages of one transaction still to deliver."""
        done = set(self._delivered)
        return [i for i in self.outbox.pending_for(tx_key) if i.seq not in done]

    def checked(self, seq: int) -> bool:
        """Whether ``seq`` was schema-checked when this process queued it (asked once, when it is sent)."""
        if seq in self._checked:
            self._checked.discard(seq)
            return True
        return False

    # ---- writing ---------------------------------------------------------------------------------------------
    def append(self, action: str, payload: dict, *, tx_key: str | None, now: float) -> int:
        """Queue a schema-checked message (inside the caller's store transaction); deletions that were waiting
        ride on this write."""
        self.flush()
        text = entry_text(action, payload)     # encoded once: stored, and sent as it is
        seq = self.outbox.append(action, payload, tx_key=tx_key, now=now, text=text)
        self._checked.add(seq)
        item = OutboxItem(seq, action, payload, tx_key, 0, now, None, PENDING, None, text)
        if not self._stale and self._head is None:       # the queue was empty: this is its head
            self._head = item
        if self._known is not None:
            if len(self._known) < KNOWN_MAX:
                self._known.append(item)
            else:
                self._known = None
        return seq

    def delivered(self, seq: int, now: float, *, defer: bool) -> None:
        """The CSMS confirmed ``seq``: delete it now, or (``defer``) with the next durable write."""
        self._stale = True
        self._checked.discard(seq)
        if self._known and self._known[0].seq == seq:
            del self._known[0]
        else:
            self._known = None
        if defer:
            self._delivered.append(seq)
            if self._delivered_since is None:
                self._delivered_since = now
        else:
            self.outbox.remove(seq)

    def flush(self) -> None:
        """Delete the delivered messages now (inside a durable write, on the timer, at shutdown)."""
        if self._delivered:
            self.outbox.remove_many(self._delivered)      # one statement: atomic without a SAVEPOINT
            self._delivered.clear()
            self._delivered_since = None      # (the head is unchanged: it never was one of them)

    def flush_deadline(self) -> float | None:
        """When the deferred deletions are due (for the adapter's next_deadline)."""
        return None if self._delivered_since is None else self._delivered_since + self.flush_after

    def poll(self, now: float) -> None:
        """Run the deferred deletions if they are due (flush_deadline(), inline: asked on every frame)."""
        since = self._delivered_since
        if since is not None and now >= since + self.flush_after:
            self.flush()

    def failed(self, item: OutboxItem, error: str, now: float, *, attempts: int, interval: float) -> None:
        """A connected CSMS answered ``item`` with a CALLERROR or not at all: the only thing that burns delivery
        attempts (1.6 §4.8.1/§9.1 TransactionMessageAttempts/RetryInterval, 2.0.1 E13.FR.02-04 MessageAttempts/
        MessageAttemptInterval). It waits ``interval`` x the attempts so far, and after ``attempts`` it is
        skipped: kept in the store as failed, never deleted."""
        self._forget()
        done = item.attempts + 1
        if done >= max(1, attempts):
            self.outbox.record_failure(item.seq, error, next_attempt_at=None)
            self.outbox.give_up(item.seq, error)
            log.error("%s (outbox #%d) given up after %d attempts: %s; kept in the store", item.action, item.seq,
                      done, error)
        else:
            self.outbox.record_failure(item.seq, error, next_attempt_at=now + interval * done)

    def give_up(self, item: OutboxItem, reason: str) -> None:
        """Skip ``item`` for good (it can never be delivered); kept in the store as failed."""
        self.outbox.give_up(item.seq, reason)
        self._forget()
