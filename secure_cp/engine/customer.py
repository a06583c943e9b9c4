"""Customer information: what the station holds about one customer, and forgetting it (OCPP 2.0.1 N09 / N10).

Version-neutral: it reads and changes the shared store (authorization cache, local list, transactions) and the
engine's state; the 2.0.1 adapter turns the records into NotifyCustomerInformation text. A customer is named by an
identifier (idToken value, matched with ASCII case ignored: 2.0.1 IdToken is case insensitive). What the station
holds about an identifier, and what a clear does with it:

* its authorization cache entry (C10): reported, deleted;
* its Local Authorization List entry (D01): reported, kept: only the CSMS changes the list (N10.FR.02/03);
* transactions started or stopped with it: reported; a finished transaction whose messages have all reached the
  CSMS loses the identifier (the metering record itself stays: it is the station's billing and calibration-law
  record and names nobody any more); a running transaction, or one with transaction messages still queued (or
  given up and kept for the operator), is kept whole until it is over and delivered: the CSMS is owed those messages
  (E13 / 1.6 §3.7), and they carry the identifier;
* an authorization waiting for a cable, or a cable kept locked for it: reported, kept (it is in use right now);
* whatever else a ``CustomerSource`` (an adapter) remembers, e.g. the idToken type learned from the CSMS.

``clear`` changes the store in one transaction: after a power cut either everything listed as cleared is gone,
or nothing is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol

#: Why a record outlives a clear (the ``kept`` field of a Record).
KEPT_LOCAL_LIST = "only the CSMS changes the local list (N10.FR.02)"
KEPT_RUNNING = "transaction in progress"
KEPT_UNDELIVERED = "transaction messages not delivered to the CSMS yet"
KEPT_IN_USE = "in use"


@dataclass(frozen=True)
class Record:
    """One piece of customer data, human readable; ``kept`` says why a clear leaves it (None: a clear removes it)."""
    text: str
    kept: str | None = None

    def line(self, *, clearing: bool) -> str:
        return f"{self.text} (kept: {self.kept})" if clearing and self.kept else self.text


class CustomerSource(Protocol):
    """More customer data, held by someone else (e.g. a protocol adapter): records and how to forget them. ``forget``
    runs inside the store transaction of ``CustomerData.clear``."""
    def customer_records(self, id_token: str) -> list[Record]: ...
    def forget_customer(self, id_token: str) -> None: ...


def _info_text(info: dict) -> str:
    """An idTagInfo (1.6-style, as the cache and the list keep it) in a few words."""
    parts = [str(info.get("status", "?"))]
    if info.get("expiryDate"):
        parts.append(f"expires {info['expiryDate']}")
    if info.get("parentIdTag"):
        parts.append(f"group {info['parentIdTag']}")
    return ", ".join(parts)


class CustomerData:
    """Customer data in the store and the engine. ``local_list`` is the store's LocalList (None: no list),
    ``outbox`` the queue of transaction messages, ``engine`` the station engine (its connectors' authorizations)."""

    def __init__(self, db, transactions, cache, *, local_list=None, outbox=None, engine=None,
                 sources: Iterable[CustomerSource] = ()):
        self.db = db
        self.transactions = transactions
        self.cache = cache
        self.local_list = local_list
        self.outbox = outbox
        self.engine = engine
        self.sources = list(sources)

    def _undelivered(self, tx_key: str) -> bool:
        if self.outbox is None:
            return False
        return bool(self.outbox.pending_for(tx_key)) or any(item.tx_key == tx_key for item in self.outbox.failed())

    def _tx_record(self, tx) -> Record:
        text = (f"transaction {tx.transaction_id or tx.tx_key} on EVSE {tx.evse_id} connector {tx.connector_id}, "
                f"started {tx.started_at} ({tx.meter_start_wh} Wh)")
        if tx.stopped_at:
            text += f", stopped {tx.stopped_at} ({tx.meter_stop_wh} Wh, {tx.stop_reason})"
        kept = KEPT_RUNNING if tx.stopped_at is None else KEPT_UNDELIVERED if self._undelivered(tx.tx_key) else None
        return Record(text, kept)

    def _engine_records(self, id_token: str) -> list[Record]:
        if self.engine is None:
            return []
        same = id_token.casefold()
        found = []
        for cid, c in sorted(self.engine.connectors.items()):
            if c.auth is not None and c.auth.id_tag.casefold() == same:
                found.append(Record(f"authorized at connector {cid}, waiting for the cable", KEPT_IN_USE))
            if c.locked_for is not None and c.locked_for.casefold() == same:
                found.append(Record(f"cable at connector {cid} locked until it presents again", KEPT_IN_USE))
        return found

    def find(self, id_token: str) -> list[Record]:
        """Everything the station holds about ``id_token`` (2.0.1 N09.FR.05); empty: nothing (N09.FR.06)."""
        found = [Record(f"authorization cache: {_info_text(info)}") for info in self.cache.matching(id_token).values()]
        if self.local_list is not None:
            found += [Record(f"local authorization list: {_info_text(info)}", KEPT_LOCAL_LIST)
                      for info in self.local_list.matching(id_token).values()]
        found += [self._tx_record(tx) for tx in self.transactions.of_id_tag(id_token)]
        found += self._engine_records(id_token)
        for source in self.sources:
            found += source.customer_records(id_token)
        return found

    def clear(self, id_token: str) -> list[Record]:
        """Remove what may be removed about ``id_token`` (2.0.1 N10.FR.03 / N10.FR.06), in one store transaction;
        returns the records as they were before (``kept`` marks what stays)."""
        found = self.find(id_token)
        same = id_token.casefold()
        with self.db.tx():
            for tag in self.cache.matching(id_token):
                self.cache.delete(tag)
            for tx in self.transactions.of_id_tag(id_token):
                if tx.stopped_at is None or self._undelivered(tx.tx_key):
                    continue
                fields: dict = {}
                if tx.id_tag.casefold() == same:
                    fields["id_tag"] = ""
                if tx.stop_id_tag is not None and tx.stop_id_tag.casefold() == same:
                    fields["stop_id_tag"] = None
                self.transactions.update(tx.tx_key, **fields)
            for source in self.sources:
                source.forget_customer(id_token)
        return found
