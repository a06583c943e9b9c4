"""The station's side of the signed-reading pipeline (issue #5): where a signed record comes from, and the legal log.

The engine asks for a signed begin / end reading (``SignedReadingWanted``); the runtime hands the request to
:meth:`SignedReadings.fetch` in a task of its own, which gets the record OFF the event loop and appends it to the
legal log (durable, its own commit) BEFORE the runtime feeds it to the engine, whose adapter then queues the message
carrying it. A power cut between the two commits leaves the record in the log; :meth:`SignedReadings.recover` puts it
back on the transaction at the next boot, so the end message still carries it.

Modes ([eichrecht] mode): ``meter`` (the hardware adapter's SignedMeterAdapter signs; its string is stored and
forwarded byte for byte), ``gateway`` (the station builds the OCMF record from the meter reading and signs it with a
key of the key backend: LegalLog.sign_and_append), ``off``; ``auto`` = meter when the adapter can sign, else off.
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import logging
from decimal import Decimal
from typing import Any

from ..hal.api import signed_meter_of
from .legallog import LegalLog, LegalRecord
from .meterkeys import MeterKeys, oca_public_key
from .ocmf import BackendSigner, MeterIdentity, OcmfRecord, ReadingValue, identification_for_token

log = logging.getLogger("secure_cp.eichrecht")

MODES = ("auto", "meter", "gateway", "off")
BEGIN, END = "Transaction.Begin", "Transaction.End"     # the OCPP ReadingContexts of the signed begin / end


def resolve_mode(configured: str, hal: object) -> str:
    """The mode in force: ``auto`` -> ``meter`` when the hardware adapter can sign, else ``off``. ``meter`` without
    a signing adapter is a configuration error (ValueError with the reason)."""
    if configured not in MODES:
        raise ValueError(f"eichrecht.mode {configured!r}: one of {', '.join(MODES)}")
    can_sign = signed_meter_of(hal) is not None
    if configured == "auto":
        return "meter" if can_sign else "off"
    if configured == "meter" and not can_sign:
        raise ValueError("eichrecht.mode 'meter': the hardware adapter has no signed readings (SignedMeterAdapter: "
                         "signed_reading, meter_public_key); use 'gateway' or 'off'")
    return configured


class SignedReadings:
    """One boot's signed-reading source. ``db``: the station store; ``hal``: the hardware adapter; ``cfg``: the
    StationConfig (mode, end_timeout, key_label, fv, identity); ``clock``: the station's clock (epoch seconds)."""

    def __init__(self, mode: str, db, hal, cfg, clock) -> None:
        self.mode = mode
        self.hal = hal
        self.meter = signed_meter_of(hal)
        self.cfg = cfg
        self.clock = clock
        self.legal_log = LegalLog(db)
        self.meter_keys = MeterKeys(db)
        self.key_ids: dict[int, int] = {}              # connector -> meter_keys.id of its current key
        self.signer: BackendSigner | None = None       # gateway mode
        self._locks: dict[int, asyncio.Lock] = {}      # one request at a time per meter: begin before end
        self.keys_registered = False                   # register_keys ran: key_ids name each meter's key

    @property
    def enabled(self) -> bool:
        return self.mode in ("meter", "gateway")

    def meter_name(self, connector_id: int) -> str:
        return f"gateway:{self.cfg.eichrecht_key_label}" if self.mode == "gateway" else f"connector{connector_id}"

    async def register_keys(self, connectors: dict[int, int], model) -> None:
        """At every start: each meter's public key into the key history (a meter swap retires the old key) and into
        FiscalMetering.PublicKey of its EVSE (1.6 MeterPublicKey<N>). ``connectors``: connector -> EVSE. A meter
        that does not answer keeps its last known key."""
        timeout = self.cfg.eichrecht_end_timeout
        if self.mode == "gateway" and self.signer is None:
            from ..security.keys.config import open_backend
            label = self.cfg.eichrecht_key_label
            self.signer = await asyncio.to_thread(lambda: BackendSigner(open_backend(self.cfg.keys), label))
        for cid, evse in sorted(connectors.items()):
            name = self.meter_name(cid)
            try:
                if self.signer is not None:
                    der = self.signer.public_key_der()
                else:
                    assert self.meter is not None
                    der = await asyncio.wait_for(asyncio.to_thread(self.meter.meter_public_key, cid), timeout)
                serial = getattr(self.hal, "meter_serial", None)
                key = self.meter_keys.register(name, der, evse_id=evse, connector_id=cid,
                                               serial=serial(cid) if callable(serial) else None,
                                               now=self.clock())
            except Exception as exc:  # noqa: BLE001 - a silent meter must not keep the station from starting
                log.error("meter of connector %d: no public key (%s); keeping the last known one", cid, exc)
                key = self.meter_keys.current(name)
            if key is None:
                continue
            self.key_ids[cid] = key.id
            model.set("FiscalMetering", "PublicKey", oca_public_key(key.der), evse_id=evse, force=True)
        self.keys_registered = True

    def recover(self, engine, transactions) -> int:
        """Before the engine boots: records that reached the legal log but not the transaction (a power cut
        between the two commits) are put on it, so the end message carries them. Returns how many."""
        found = self._recover_from_meters(transactions)
        for tx in transactions.recent(200):
            waiting = list(tx.extra.get("sig_wait", ()))
            if not waiting:
                continue
            logged = {r.context: r for r in self.legal_log.of_transaction(tx.tx_key)}
            for context in waiting:
                record = logged.get(context)
                if record is not None:
                    engine.restore_signed(tx.tx_key, context, record.raw, record.created_at,
                                          key_hex=record.public_key)
                    found += 1
        return found

    def _recover_from_meters(self, transactions) -> int:
        """Meter mode: a record the meter signed (its PG is used for good) but the power cut kept from the legal log
        is fetched again from the meter (``last_signed_reading``, an optional adapter method: real meters keep their
        last signed dataset for readout) and appended, on the transaction that still waits for its context (TX B:
        begin, E: end); without one (an intermediate record, TX C) on the connector's latest transaction, context
        unknown. So the legal log holds every record the meter numbered: no lost record, no PG gap. Returns how many
        records came back. Runs once per boot before the engine boots: the adapter must answer from memory."""
        last = getattr(self.meter, "last_signed_reading", None) if self.mode == "meter" else None
        if last is None:
            return 0
        recent = transactions.recent(200)
        back = 0
        for cid in self.hal.connector_ids():
            try:
                raw = last(cid)
                if not raw or self.legal_log.last_of_connector(cid) == raw:
                    continue
                marker = next((r.tx for r in OcmfRecord.parse(raw).readings if r.tx), None)
            except Exception as exc:  # noqa: BLE001 - a meter that cannot say keeps the station from nothing
                log.error("meter of connector %d: last signed record not readable (%s)", cid, exc)
                continue
            context = {"B": BEGIN, "E": END}.get(marker or "")
            tx = next((t for t in recent if t.connector_id == cid and context in t.extra.get("sig_wait", ())), None)
            if tx is None:
                context = None
                tx = next((t for t in recent if t.connector_id == cid), None)
            key = self.meter_keys.current(self.meter_name(cid))
            self.legal_log.append(raw, tx_key=tx and tx.tx_key, transaction_id=tx and tx.transaction_id,
                                  evse_id=tx and tx.evse_id, connector_id=cid, context=context,
                                  meter_key_id=key.id if key else None, now=self.clock())
            log.warning("meter of connector %d: signed record %s lost by a power cut, recovered from the meter",
                        cid, context or marker)
            back += 1
        return back

    async def fetch(self, req, tx, online: bool) -> LegalRecord:
        """The signed record of ``req`` (engine.SignedReadingWanted) for transaction record ``tx``, appended to the
        legal log (durable) when this returns. Raises on a meter error or a bad record; the caller applies the
        timeout."""
        lock = self._locks.setdefault(req.connector_id, asyncio.Lock())
        async with lock:
            source = "remote" if tx.extra.get("remote") else ("authorize" if online else "local")
            ident = identification_for_token(tx.id_tag or None, tx.extra.get("tt"), source=source)
            where: dict[str, Any] = dict(tx_key=tx.tx_key, transaction_id=tx.transaction_id, evse_id=tx.evse_id,
                                         connector_id=tx.connector_id, context=req.context,
                                         meter_key_id=self.key_ids.get(req.connector_id))
            if self.mode == "gateway":
                assert self.signer is not None
                reading = self.hal.read_meter(req.connector_id)
                value = ReadingValue(_dt.datetime.fromtimestamp(self.clock(), _dt.timezone.utc),
                                     Decimal(reading.energy_wh) / 1000, tx=req.marker)
                identity = MeterIdentity(gi=f"{self.cfg.vendor} {self.cfg.model}",
                                         gs=self.cfg.serial or self.cfg.identity, gv=self.cfg.firmware_version or None,
                                         ms=self.cfg.meter_serial or None)
                return await self.legal_log.sign_and_append_async(
                    signer=self.signer, identity=identity, readings=[value], identification=ident,
                    fv=self.cfg.eichrecht_fv, ct="CBIDC", ci=f"{self.cfg.identity} {req.connector_id}", **where)
            assert self.meter is not None
            raw = await asyncio.to_thread(self.meter.signed_reading, req.connector_id, req.marker,
                                          identification=ident,
                                          transaction_ref=f"{self.cfg.identity} {req.connector_id}")
            return self.legal_log.append(raw, **where)
