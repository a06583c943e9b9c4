"""OCPP 2.0.1 on top of the station engine (the same engine the OCPP 1.6 adapter drives).

Sans-I/O like ``v16.adapter``: text in, texts out, ``now`` passed in; the runtime owns the socket and wraps every
call in one store transaction. Engine effects become CALLs: TransactionEvent through the persistent outbox (with a
seqNo and the idempotency flags q_start / q_stop on the transaction record), everything else through small
in-memory queues. CSMS->station CALLs become engine commands or device-model reads and writes.

Transactions follow TxCtrlr.TxStartPoint / TxStopPoint (Part 2 E §1.1.2): the engine reads them through its
settings while 2.0.1 is the active protocol (v16.settings.Settings16.use_protocol) and reports what happens inside
a transaction as TxUpdated effects, which become TransactionEvent Updated with their triggerReason. Every valid
member list is accepted by SetVariables (the device model checks the members).

Not implemented here (answered honestly rather than faked): per-connector EVSE availability on EVSEs with several
connectors (an EVSE command applies to each of its connectors), signed meter values, reservations, smart charging,
certificates, firmware and monitoring (log retrieval, N01, is diagnostics.LogUploads). The Local
Authorization List (D01/D02) is the one the 1.6 adapter manages too (engine.locallist); of the 2.0.1-only
idTokenInfo fields only evseId (C01.FR.21) is kept on it and in the cache (language, personal message,
chargingPriority and the idToken type are not: no display).
"""
from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable

from ..adapter_base import AdapterBase, Hooks, Inflight
from ..delivery import OutboxQueue
from ..diagnostics import LogUploads
from ..devicemodel import DeviceModel
from ..engine import (AuthorizeRequest, Engine, SampledValue, Sample, Status, StatusChanged,
                      StopReason, TxMeterValues, TxSigned, TxStarted, TxStopped, parse_rfc3339, rfc3339)
from ..eichrecht.ocpp import BEGIN, END, signed_meter_value
from ..engine.customer import KEPT_IN_USE, CustomerData, Record
from ..engine.datatransfer import DataTransferRegistry
from ..engine.model import TxUpdated, drop_intermediate
from ..engine.station import HOLD_RESET
from ..jsontext import dumps
from ..rpc import Endpoint, ErrorKind, OcppError, SchemaError, SchemaRegistry
from ..firmware import FirmwareUpdates
from ..securityevents import SecurityEvents
from . import messages as m
from .devmodel import COMPONENT_CRITERIA, REPORT_BASES, base_report, custom_report, get_variables, set_variables
from .settings import Settings201

log = logging.getLogger("secure_cp.v201")

#: CSMS->station actions this adapter answers; every other action with a 2.0.1 schema gets NotSupported, an action
#: without one NotImplemented (the Endpoint's supported_actions).
CS_ACTIONS = frozenset({
    "ChangeAvailability", "ClearCache", "CustomerInformation", "DataTransfer", "GetBaseReport", "GetReport",
    "GetTransactionStatus", "GetVariables",
    "RequestStartTransaction", "RequestStopTransaction", "Reset", "SetVariables", "TriggerMessage",
    "UnlockConnector",
})
#: D. Local Authorization List Management: answered when the station has a list.
LOCAL_LIST_ACTIONS = frozenset({"GetLocalListVersion", "SendLocalList"})
#: B09: answered when the runtime manages network connection profiles (v201.netprofiles).
NETWORK_ACTIONS = frozenset({"SetNetworkProfile"})
#: N01: answered when the runtime uploads logs (diagnostics.LogUploads).
LOG_ACTIONS = frozenset({"GetLog"})
#: M03-M05: answered when the runtime has a certificate store (security.certstore).
CERTIFICATE_ACTIONS = frozenset({"InstallCertificate", "DeleteCertificate", "GetInstalledCertificateIds"})
#: A02/A03: answered when the runtime signs station certificates (security.certsigning).
SIGNING_ACTIONS = frozenset({"CertificateSigned"})
#: TriggerMessage requestedMessage -> the certificate type whose CSR it asks for (A02, F06.FR.08 when no signing).
SIGN_TRIGGERS = {"SignChargingStationCertificate": "ChargingStationCertificate", "SignV2GCertificate": "V2GCertificate"}
#: L01: answered when the runtime installs signed firmware (firmware.FirmwareUpdates).
FIRMWARE_ACTIONS = frozenset({"UpdateFirmware"})
#: Station->CSMS CALLs the ISO 15118 API sends (security.iso15118; M01/M02, M06, C07).
ISO15118_CALLS = frozenset({"Get15118EVCertificate", "GetCertificateStatus", "Authorize"})
#: TriggerMessage requestedMessage values this station can send (F06.FR.08: the rest is NotImplemented).
TRIGGERABLE = frozenset({"BootNotification", "Heartbeat", "StatusNotification", "MeterValues", "TransactionEvent",
                         "LogStatusNotification", "FirmwareStatusNotification"})
#: Triggered notifications answered Idle, without requestId, while no such job runs (F06.FR.15 LogStatusNotification,
#: F06.FR.16 / L01.FR.25 FirmwareStatusNotification). A log upload in progress is reported Uploading with its
#: requestId instead (N01.FR.13), a firmware update its last status with its requestId (L01.FR.26).
IDLE_NOTIFICATIONS = frozenset({"LogStatusNotification", "FirmwareStatusNotification"})
#: BootReasonEnumType (Part 2 §3.5).
BOOT_REASONS = frozenset({"ApplicationReset", "FirmwareUpdate", "LocalReset", "PowerUp", "RemoteReset",
                          "ScheduledReset", "Triggered", "Unknown", "Watchdog"})
#: Queued answers to a CSMS request that still go out after a reconnect (the CSMS waits for every part of them).
KEPT_ACROSS_CONNECTIONS = frozenset({"NotifyReport", "NotifyCustomerInformation"})
VOLATILE_LIMIT = 100          # queued non-transaction messages while offline; oldest dropped first
TOKEN_TYPES_KEPT = 200        # idToken types learned from RequestStartTransaction, newest kept
MARK_OFFLINE_LIMIT = 1000     # queued events looked at when the connection drops (E11.FR.07)
#: Largest TransactionEvent payload (bytes of JSON) this station sends: the Ended event with the readings of a long
#: transaction is thinned to it (J02.FR.20). The station's stated message size (DeviceDataCtrlr.BytesPerMessage).
TX_EVENT_MAX_BYTES = 65536
ENERGY = "Energy.Active.Import.Register"


@dataclass
class _Call:
    """A non-transaction CALL waiting in memory; ``on_result`` gets the response payload, or None on failure."""
    action: str
    payload: dict
    on_result: Callable[[dict | None], None] | None = None



class Ocpp201Adapter(AdapterBase):
    version = "2.0.1"
    subprotocol = "ocpp2.0.1"

    def __init__(self, *, engine: Engine, model: DeviceModel, settings, db, outbox, transactions, kv,
                 station_info: dict, layout: dict[int, tuple[int, int]], registry: SchemaRegistry | None = None,
                 datatransfer: DataTransferRegistry | None = None, hooks: Hooks | None = None,
                 call_timeout: float = 30.0, local_list=None, network=None,
                 security_events: SecurityEvents | None = None, logs: LogUploads | None = None,
                 certificates=None, firmware: FirmwareUpdates | None = None, cert_signing=None):
        self.engine = engine
        self.signing = cert_signing               # security.certsigning.CertSigning, or None: no A02/A03
        self.firmware = firmware                  # firmware.FirmwareUpdates, or None: no UpdateFirmware (L01)
        self.certificates = certificates          # security.certstore.CertificateStore, or None: no M03-M05
        self.logs = logs                          # diagnostics.LogUploads, or None: no GetLog (N01)
        #: A04: the security log and its queue of critical events, sent as SecurityEventNotification
        self.security = security_events if security_events is not None else SecurityEvents(db)
        self._security_retry_at = 0.0                      # after a CALLERROR / timeout (the event stays queued)
        self.network = network                    # v201.netprofiles.NetworkProfiles, or None: no SetNetworkProfile
        self.local_list = local_list              # engine.locallist.LocalAuthList, or None: no list
        self.model = model
        self.settings = settings                  # the engine's settings (shared variables)
        self.s201 = Settings201(model)            # the 2.0.1-only variables
        self.db = db
        self.outbox = outbox
        self.transactions = transactions
        self.kv = kv
        self.station_info = station_info
        self.layout = dict(layout) or {cid: (cid, 1) for cid in engine.connectors}
        for cid in engine.connectors:             # a connector the layout forgot is an EVSE of its own
            self.layout.setdefault(cid, (max(e for e, _ in self.layout.values()) + 1, 1))
        self._by_location = {loc: cid for cid, loc in self.layout.items()}
        self.datatransfer = datatransfer or DataTransferRegistry()
        self.hooks = hooks or Hooks()
        self.registry = registry or SchemaRegistry("2.0.1")
        actions = (CS_ACTIONS | (LOCAL_LIST_ACTIONS if local_list is not None else frozenset())
                   | (NETWORK_ACTIONS if network is not None else frozenset())
                   | (LOG_ACTIONS if logs is not None else frozenset())
                   | (CERTIFICATE_ACTIONS if certificates is not None else frozenset())
                   | (FIRMWARE_ACTIONS if firmware is not None else frozenset())
                   | (SIGNING_ACTIONS if cert_signing is not None else frozenset()))
        self.endpoint = Endpoint("2.0.1", self.registry, call_timeout=call_timeout,
                                 supported_actions=lambda a: a in actions)
        self.registration = "none"      # none | pending | accepted | rejected
        self.next_boot_at = 0.0
        self._boot_now = False          # TriggerMessage(BootNotification) while not Accepted
        self.online = False
        self.last_sent_at = 0.0
        self.heartbeat_interval = self.s201.heartbeat_interval
        self.reset_requested: bool | None = None          # set when the engine asks to reboot (hard?)
        self._inflight: Inflight | None = None
        self._volatile: collections.deque[_Call] = collections.deque()   # sent once Accepted
        self._priority: collections.deque[_Call] = collections.deque()   # also while Pending (B02.FR.02)
        self._statuses: list[tuple[int, str, float]] = []    # unsent (connector, connectorStatus, time), oldest first
        self._sent_status: dict[int, str] = {}
        self._after_reply: list[Callable[[], None]] = []
        self._reset_scheduled: set[int] = set()            # OnIdle resets waiting: 0 = station, else EVSE id
        self._transmitted: set[int] = set()                # outbox seqs sent at least once on some connection
        self._offline_since: float | None = None
        self._msg_size: int | None = None
        self._now = 0.0                                    # the latest ``now``, for callbacks of queued CALLs
        self.queue = OutboxQueue(db, outbox)              # head, deferred deletions, retries
        self._token_types: dict[str, str] = dict(kv.get("token_types", {}))
        self._remote_ids: dict[str, int] = dict(kv.get("remote_starts", {}))
        #: N09 / N10: what the station holds about a customer (this adapter's learned token types included)
        self.customers = CustomerData(db, transactions, engine.auth.cache, outbox=outbox, engine=engine,
                                      local_list=local_list.store if local_list is not None else None,
                                      sources=[self])

    # ---- small helpers ------------------------------------------------------------------------------------------
    def _connectors_of(self, evse_id: int) -> list[int]:
        return sorted(cid for cid, (e, _) in self.layout.items() if e == evse_id)

    def _token_type(self, id_tag: str) -> str:
        return self._token_types.get(id_tag) or m.token_type_guess(id_tag)

    def _learn_token_type(self, id_tag: str, token_type: str) -> None:
        self._token_types.pop(id_tag, None)
        self._token_types[id_tag] = token_type
        while len(self._token_types) > TOKEN_TYPES_KEPT:
            self._token_types.pop(next(iter(self._token_types)))
        self.kv.set("token_types", self._token_types)

    def _set_state(self, component: str, evse_id: int, connector_id: int, value: str) -> None:
        """Keep an AvailabilityState variable current (ReadOnly, not persistent: Part 2 §2.13.2)."""
        if self.model.get(component, "AvailabilityState", evse_id=evse_id, connector_id=connector_id) == value:
            return
        self.model.set(component, "AvailabilityState", value, evse_id=evse_id, connector_id=connector_id,
                       force=True)

    # ---- connection -------------------------------------------------------------------------------------------
    def connected(self, now: float) -> list[str]:
        self._now = now
        self.online = True
        self.engine.set_online(True, now)
        if (self.registration == "accepted" and self._offline_since is not None
                and now - self._offline_since > self.s201.offline_threshold):
            # B04.FR.01: offline longer than OfflineThreshold -> the status of every connector (B04.FR.02 otherwise:
            # only the changed ones, which the queue of statuses holds)
            self._sent_status.clear()
            for cid in sorted(self.layout):
                self._queue_status(cid, self._connector_status(cid, self.engine.status_of(cid)), now)
        self._offline_since = None
        return self.poll(now)

    def disconnected(self, now: float) -> None:
        """The connection dropped: an outstanding CALL is not a CSMS failure and burns no attempt (E13)."""
        self._now = now
        self.online = False
        self._offline_since = now
        self.endpoint.reset()
        self.queue.flush()
        inflight, self._inflight = self._inflight, None
        if inflight is not None and inflight.kind == "status":   # unanswered: it goes again, before anything newer
            self._statuses.insert(0, inflight.ref)
        latest = {entry[0]: entry for entry in self._statuses}   # offline from now: the latest per connector
        self._statuses = [entry for entry in self._statuses if latest[entry[0]] is entry]
        if inflight is not None and inflight.kind == "call" and inflight.ref.on_result:
            inflight.ref.on_result(None)
        # F06.FR.09: triggered messages give current information, so they are not kept for the next connection
        for call in [c for c in self._priority if c.action not in KEPT_ACROSS_CONNECTIONS]:
            self._priority.remove(call)
            if call.on_result:
                call.on_result(None)
        self._mark_offline()
        self.engine.set_online(False, now)
        self._process_effects(now)

    def _mark_offline(self) -> None:
        """E11.FR.07: every TransactionEvent still queued when the connection goes offline is sent with offline
        true. Only events never transmitted are changed: a retry must repeat its first transmission exactly."""
        for item in self.outbox.pending(limit=MARK_OFFLINE_LIMIT):
            if (item.action != "TransactionEvent" or item.seq in self._transmitted
                    or item.payload.get("offline")):
                continue
            self.outbox.update_payload(item.seq, {**item.payload, "offline": True})
            self.queue.changed()

    # ---- effects of the engine --------------------------------------------------------------------------------
    EFFECTS = {
        StatusChanged: lambda self, e, now: self._on_status(e, now),
        AuthorizeRequest: lambda self, e, now: self._queue_authorize(e.id_tag, now),
        TxStarted: lambda self, e, now: self._enqueue_started(e.tx_key, now),
        TxUpdated: lambda self, e, now: self._enqueue_updated(e, now),
        TxStopped: lambda self, e, now: self._enqueue_ended(e, now),
        TxMeterValues: lambda self, e, now: self._enqueue_meter(e, now),
        TxSigned: lambda self, e, now: self._enqueue_signed_begin(e, now),
    }

    def _signed_201(self, tx, contexts: tuple[str, ...], now: float) -> list[dict]:
        """meterValue entries, one per signed record: the energy register with its signedMeterValue (OCA note
        §4.2.1); the value is the station's unsigned reading of the same moment (meterStart / meterStop)."""
        policy = self.signed_policy()

        def build(raw: str, context: str, der, with_key: bool, record: dict) -> dict:
            wh = tx.meter_start_wh if context == BEGIN else tx.meter_stop_wh
            sv = {"value": wh if wh is not None else 0, "context": context, "measurand": ENERGY,
                  "unitOfMeasure": {"unit": "Wh"}, "signedMeterValue": signed_meter_value(raw, der, with_key)}
            return {"timestamp": rfc3339(record["t"]), "sampledValue": [sv]}
        return self._signed_items(tx, contexts, policy, build, now)

    def _enqueue_signed_begin(self, eff: TxSigned, now: float) -> None:
        """OCA note §4.1.1 / §4.3.6: the signed begin value, when SampledDataCtrlr.SignReadings and
        SignStartedReadings are true, in TransactionEvent Updated with triggerReason SignedDataReceived (the
        Started event went out at the start of the transaction; the meter signs after that)."""
        tx = self.transactions.get(eff.tx_key)
        policy = self.signed_policy()
        if tx is not None and not tx.extra.get("q_start") and eff.context == BEGIN:
            self._enqueue_started(tx.tx_key, now)   # TxStartPoint DataSigned: Started carries the signed value
            return
        if tx is None or not tx.extra.get("q_start") or tx.extra.get("q_stop") or not policy.sign_started:
            return
        if not (tx.extra.get("signed") or {}).get(BEGIN) or tx.extra.get("q_signed_begin"):
            return                                  # none (the meter failed), or sent already
        values = self._signed_201(tx, (eff.context,), now)
        if values:
            payload = m.transaction_event("Updated", rfc3339(now), "SignedDataReceived", tx.tx_key,
                                          offline=not self.online, meter_values=values)
            self._append_event(tx, payload, {"q_signed_begin": True}, now)

    def _connector_status(self, cid: int, status: Status) -> str:
        """ConnectorStatusEnumType. The engine's Preparing also means "authorized, waiting for the cable"; in 2.0.1
        a connector is Occupied only once something is plugged in (G01.FR.03)."""
        c = self.engine.connectors.get(cid)
        if status == Status.PREPARING and c is not None and not c.plugged:
            return "Available"
        return m.CONNECTOR_STATUS[status]

    def _on_status(self, eff: StatusChanged, now: float) -> None:
        if eff.connector_id == 0:
            # G01 / Part 2 G note 2: StatusNotification reports connectors only; the station's state is in the
            # device model
            self._set_state("ChargingStation", 0, 0,
                            "Available" if eff.status == Status.AVAILABLE else "Unavailable")
            return
        loc = self.layout.get(eff.connector_id)
        if loc is None:
            log.error("status of connector %d, which has no EVSE in the layout; not reported", eff.connector_id)
            return
        status = self._connector_status(eff.connector_id, eff.status)
        self._set_state("Connector", loc[0], loc[1], status)
        states = {self.model.get("Connector", "AvailabilityState", evse_id=loc[0], connector_id=k)
                  for e, k in self.layout.values() if e == loc[0]}
        for candidate in ("Occupied", "Reserved", "Available", "Faulted", "Unavailable"):
            if candidate in states:
                self._set_state("EVSE", loc[0], 0, candidate)
                break
        self._queue_status(eff.connector_id, status, eff.timestamp or now)
        self._charging_state_changed(eff, now)

    def _queue_status(self, cid: int, status: str, timestamp: float) -> None:
        """Online every change is reported in order (G01); offline only the latest per connector is kept (B04: the
        current status of each connector that changed). Engine changes that map to the same connectorStatus (e.g.
        Preparing -> Charging, both Occupied) are no change in 2.0.1 terms. Before the BootNotification is
        Accepted nothing goes out (B01.FR.08), and the Accepted brings the current status of each (B01.FR.05)."""
        queued = [entry for entry in self._statuses if entry[0] == cid]
        if queued and queued[-1][1] == status:
            return
        if not self.online or self.registration != "accepted":
            self._statuses = [entry for entry in self._statuses if entry[0] != cid]
        self._statuses.append((cid, status, timestamp))

    def _charging_state_changed(self, eff: StatusChanged, now: float) -> None:
        """E02.FR.13 / E01.FR.18: a change of charging state during a transaction is a TransactionEvent Updated
        with triggerReason ChargingStateChanged (e.g. SuspendedEVSE after an invalid idToken, E05.FR.02)."""
        cs = self._charging_state(eff.connector_id, eff.status)
        tx = self.engine.tx_on(eff.connector_id)
        if cs is not None and tx is not None:
            self._report_charging_state(tx, cs, eff.timestamp or now, now)

    def _report_charging_state(self, tx, cs: str, at: float, now: float) -> None:
        """Updated ChargingStateChanged when ``cs`` differs from the chargingState last reported for ``tx``."""
        if not tx.extra.get("q_start") or tx.extra.get("q_stop") or tx.extra.get("cs") == cs:
            return
        payload = m.transaction_event("Updated", rfc3339(at), "ChargingStateChanged", tx.tx_key,
                                      offline=not self.online, charging_state=cs)
        self._append_event(tx, payload, {"cs": cs}, now)

    def _queue_call(self, queue: collections.deque, call: _Call) -> None:
        if queue is self._volatile and len(queue) >= VOLATILE_LIMIT:
            dropped = queue.popleft()
            log.warning("offline queue full: dropping %s", dropped.action)
            if dropped.on_result:
                dropped.on_result(None)
        queue.append(call)

    def _queue_authorize(self, id_tag: str, now: float) -> None:
        """C01: Authorize with the identifier and its type; the engine gets a 1.6-style idTagInfo back."""
        payload = {"idToken": m.id_token(id_tag, self._token_type(id_tag))}
        try:
            self.registry.validate_request("Authorize", payload)
        except SchemaError as exc:   # e.g. longer than IdTokenType.idToken string[36]
            log.warning("identifier cannot be sent in OCPP 2.0.1 (%s): treated as Invalid", exc.description)
            self.engine.on_authorize_result(id_tag, {"status": "Invalid"}, now)
            return
        if not self.online or self.registration != "accepted":
            self.engine.on_authorize_result(id_tag, None, now)
            return

        cache = m.cacheable(self._token_type(id_tag))   # C02.FR.03 / C03.FR.02: never cached

        def done(res: dict | None, tag: str = id_tag) -> None:
            info = res.get("idTokenInfo") if res else None
            self.engine.on_authorize_result(tag, m.auth_info_16(info) if info else None, self._now, cache=cache)
        self._queue_call(self._volatile, _Call("Authorize", payload, done))

    # ---- transaction events -----------------------------------------------------------------------------------
    def _append_event(self, tx, payload: dict, extra: dict, now: float, **fields) -> bool:
        """Durably queue a TransactionEvent with the next seqNo of its transaction, in one store transaction with
        the record's flags: after a power cut either both exist or neither (no seqNo repeated, none skipped)."""
        try:
            self.registry.validate_request("TransactionEvent", payload)
        except SchemaError as exc:
            log.error("refusing to queue an invalid TransactionEvent %s for transaction %s: %s",
                      payload.get("eventType"), tx.tx_key, exc.description)
            return False
        with self.db.atomic():
            payload["seqNo"] = self.transactions.next_seq_no(tx.tx_key)
            self.queue.append("TransactionEvent", payload, tx_key=tx.tx_key, now=now)
            changed = any(tx.extra.get(k) != v for k, v in extra.items())
            tx.extra.update(extra)
            if changed or fields:   # a periodic Updated changes no flag: no second row write
                self.transactions.update(tx.tx_key, extra=tx.extra, **fields)
        return True

    def _charging_state(self, cid: int, status: Status) -> str | None:
        """ChargingStateEnumType of a connector in a transaction: Idle without a cable (a transaction started on
        Authorized, or after an unplug that is no stop point), else from the engine's status."""
        c = self.engine.connectors.get(cid)
        if c is not None and c.tx_key and not c.plugged:
            return "Idle"
        return m.CHARGING_STATE.get(status)

    def _current_charging_state(self, tx) -> str:
        c = self.engine.connectors.get(tx.connector_id)
        if c is not None and c.tx_key == tx.tx_key:
            return self._charging_state(c.id, self.engine.status_of(c.id)) or "Charging"
        return "Charging"

    def _begin_values(self, tx) -> list[dict]:
        """meterValue of Started: TxStartedMeasurands with context Transaction.Begin (E01.FR.09). The engine keeps a
        begin reading of the measurands it was asked for; the energy register is always known (meterStart)."""
        wanted = self.s201.tx_started_measurands
        if not wanted:
            return []
        started = parse_rfc3339(tx.started_at)
        # the engine's reading of TxStartedMeasurands; a record without one: the begin reading kept for the Ended
        saved = tx.extra.get("begin") or next(
            (s for s in tx.extra.get("samples", []) if s.get("c") == "Transaction.Begin"), None)
        begin = Sample.from_json(saved) if saved else Sample(started, "Transaction.Begin", ())
        values = [v for v in begin.values if v.measurand in wanted]
        if ENERGY in wanted and not any(v.measurand == ENERGY for v in values):
            values.insert(0, SampledValue(ENERGY, Decimal(tx.meter_start_wh), "Wh"))
        mv = m.meter_value(Sample(started, "Transaction.Begin", tuple(values)))
        return [mv] if mv else []

    def _starts_on_signed_data(self, tx) -> bool:
        """TxStartPoint DataSigned (Part 2 §2.6.6.1 / E01 S4, TC_E_11_CS): the transaction starts "when the signed
        meter value is received from the fiscal meter", with triggerReason SignedDataReceived and that value
        (context Transaction.Begin) in Started. Only when DataSigned is the one configured start point: another
        one happens first (the engine starts the transaction when plugged AND authorized, which is also when the
        meter is asked to sign). Decided once per transaction, on the record (a restart keeps the decision)."""
        decided = tx.extra.get("start_on_signed")
        if decided is None:
            decided = bool(self.engine.signing and set(self.engine.settings.tx_start_points) == {"DataSigned"}
                           and BEGIN in tx.extra.get("sig_wait", ()))
            tx.extra["start_on_signed"] = decided
            self.transactions.update(tx.tx_key, extra=tx.extra)
        return decided

    def _enqueue_started(self, tx_key: str, now: float, *, force: bool = False) -> None:
        """TransactionEvent Started. At TxStartPoint DataSigned it waits for the signed begin reading (TxSigned, also
        when the meter failed: then without it, and with the trigger that started the transaction in the engine),
        unless ``force``: the transaction ends before (the Ended needs its Started)."""
        tx = self.transactions.get(tx_key)
        if tx is None or tx.extra.get("q_start"):
            return
        on_signed = self._starts_on_signed_data(tx)
        if on_signed and not force and tx.stopped_at is None and BEGIN in tx.extra.get("sig_wait", ()):
            return
        if on_signed:
            self._enqueue_started_signed(tx, now)
            return
        token_type = self._token_type(tx.id_tag) if tx.id_tag else None
        remote_id = self._remote_ids.get(tx.id_tag) if tx.extra.get("remote") else None
        # F02.FR.21: RemoteStart; else what started it (E01 S1-S6, E02.FR.01, E03): CablePluggedIn / EVDetected
        # (EVConnected / ParkingBayOccupancy, no identifier yet) or Authorized
        trigger = "RemoteStart" if tx.extra.get("remote") else tx.extra.get("trigger") or "Authorized"
        cs = self._current_charging_state(tx)
        payload = m.transaction_event(
            "Started", tx.started_at, trigger, tx_key, offline=not self.online, charging_state=cs,
            remote_start_id=remote_id, evse=self.layout.get(tx.connector_id, (tx.evse_id, 1)),
            token=m.id_token(tx.id_tag, token_type) if token_type else None, meter_values=self._begin_values(tx))
        if self._append_event(tx, payload, {"q_start": True, "cs": cs, "tt": token_type}, now, transaction_id=tx_key):
            if remote_id is not None:
                del self._remote_ids[tx.id_tag]
                self.kv.set("remote_starts", self._remote_ids)

    def _enqueue_started_signed(self, tx, now: float) -> None:
        """Started at TxStartPoint DataSigned: triggerReason SignedDataReceived, timestamp the moment the signed
        begin record arrived, meterValue the TxStartedMeasurands plus the signed begin value (SampledDataCtrlr /
        AlignedDataCtrlr.SignReadings). Without a record (meter failure, or the transaction ended first) it is the
        start the engine recorded, and nothing signed is made up."""
        record = (tx.extra.get("signed") or {}).get(BEGIN)
        signed = self._signed_201(tx, (BEGIN,), now) if record and self.signed_policy().sign_readings else []
        token_type = self._token_type(tx.id_tag) if tx.id_tag else None
        remote_id = self._remote_ids.get(tx.id_tag) if tx.extra.get("remote") else None
        if record:
            trigger, at = "SignedDataReceived", rfc3339(record["t"])
        else:
            trigger, at = ("RemoteStart" if tx.extra.get("remote") else tx.extra.get("trigger") or "Authorized",
                           tx.started_at)
        cs = self._current_charging_state(tx)
        payload = m.transaction_event(
            "Started", at, trigger, tx.tx_key, offline=not self.online, charging_state=cs,
            remote_start_id=remote_id, evse=self.layout.get(tx.connector_id, (tx.evse_id, 1)),
            token=m.id_token(tx.id_tag, token_type) if token_type else None,
            meter_values=self._begin_values(tx) + signed)
        if self._append_event(tx, payload, {"q_start": True, "cs": cs, "tt": token_type}, now,
                              transaction_id=tx.tx_key) and remote_id is not None:
            del self._remote_ids[tx.id_tag]
            self.kv.set("remote_starts", self._remote_ids)

    def _enqueue_updated(self, eff: TxUpdated, now: float) -> None:
        """E02/E03/E06/E09: what changed inside the transaction, as Updated with its triggerReason, the current
        chargingState and, when an identifier authorized the transaction, its idToken (E02.FR.09, F02.FR.21 with
        remoteStartId). The chargingState is recorded so the status change that follows adds no second event."""
        tx = self.transactions.get(eff.tx_key)
        if tx is None or tx.stopped_at is not None or tx.extra.get("q_stop"):
            return
        if not tx.extra.get("q_start"):
            self._enqueue_started(tx.tx_key, now)   # contains the change already
            return
        # the cable of a running transaction is (back) in: EV and EVSE are connected; the energy that follows is a
        # change of charging state of its own (TC_E_26_CS steps 5 and 7, reusable state EnergyTransferStarted)
        cs = "EVConnected" if eff.trigger == "CablePluggedIn" else self._current_charging_state(tx)
        token, extra, remote_id = None, {"cs": cs}, None
        if eff.trigger in ("Authorized", "RemoteStart") and tx.id_tag:
            token_type = self._token_type(tx.id_tag)
            token, extra["tt"] = m.id_token(tx.id_tag, token_type), token_type
            if eff.trigger == "RemoteStart":
                remote_id = self._remote_ids.get(tx.id_tag)
        payload = m.transaction_event("Updated", rfc3339(now), eff.trigger, tx.tx_key, offline=not self.online,
                                      charging_state=cs if tx.extra.get("cs") != cs else None,
                                      remote_start_id=remote_id, token=token)
        if not self._append_event(tx, payload, extra, now):
            return
        if remote_id is not None:
            del self._remote_ids[tx.id_tag]
            self.kv.set("remote_starts", self._remote_ids)
        if eff.trigger == "CablePluggedIn":   # what the EVSE and the EV do now that the cable is in
            self._report_charging_state(tx, self._current_charging_state(tx), now, now)

    def _enqueue_ended(self, eff: TxStopped, now: float) -> None:
        tx = self.transactions.get(eff.tx_key)
        if tx is None or tx.extra.get("q_stop"):
            return
        if not tx.extra.get("q_start"):
            self._enqueue_started(tx.tx_key, now, force=True)
            tx = self.transactions.get(eff.tx_key)
        try:
            reason = StopReason(tx.stop_reason)
        except ValueError:
            reason = StopReason.OTHER
        trigger, stopped = m.STOP_REASONS[reason]
        token = None
        if tx.stop_id_tag:   # E07.FR.02: the idToken that ended the authorization
            same = tx.stop_id_tag == tx.id_tag and tx.extra.get("tt")
            token = m.id_token(tx.stop_id_tag, same or self._token_type(tx.stop_id_tag))
        c = self.engine.connectors.get(tx.connector_id)
        cs = "EVConnected" if c is not None and c.plugged else "Idle"
        # E06.FR.11, J02 / J01 (TC_J_03_CS, TC_J_10_CS): the readings the engine kept on the record: the begin and
        # end reading of the TxEndedMeasurands (Transaction.Begin / Transaction.End), every SampledDataCtrlr
        # TxEndedInterval one (Sample.Periodic) and every AlignedDataCtrlr.TxEndedInterval one (Sample.Clock)
        values = [mv for s in eff.transaction_data for mv in [m.meter_value(s)] if mv]
        # OCA note §4.1.2: the signed begin and end values, each in its own sampledValue (context Transaction.Begin /
        # Transaction.End); kept when the readings are thinned (they are appended after the thinning below)
        signed = self._signed_201(tx, (BEGIN, END), now) if self.signed_policy().sign_readings else []

        def ended(values: list[dict]) -> dict:
            return m.transaction_event(
                "Ended", tx.stopped_at or rfc3339(now), trigger, tx.tx_key, offline=not self.online,
                charging_state=cs if tx.extra.get("cs") != cs else None, stopped_reason=stopped, token=token,
                meter_values=values + signed)
        payload = ended(values)
        while len(values) > 2 and len(dumps(payload).encode()) > TX_EVENT_MAX_BYTES:
            values = drop_intermediate(values)   # J02.FR.20: too much for one message: intermediate ones first
            payload = ended(values)
        self._append_event(tx, payload, {"q_stop": True, "cs": cs}, now)

    def _enqueue_meter(self, eff: TxMeterValues, now: float, trigger: str | None = None) -> None:
        values = [mv for s in eff.samples for mv in [m.meter_value(s)] if mv]
        loc = self.layout.get(eff.connector_id, (0, 0))
        if eff.tx_key is None:     # J01: not transaction-related, best effort, not persisted
            if values:
                self._queue_call(self._volatile, _Call("MeterValues", {"evseId": loc[0], "meterValue": values}))
            return
        tx = self.transactions.get(eff.tx_key)
        if tx is None or not tx.extra.get("q_start") or tx.extra.get("q_stop"):
            return
        if not values and trigger is None:
            return
        if eff.signed_raw is not None and values:
            self._attach_signed(tx, eff, values[0], now)
        reason = trigger or m.METER_TRIGGERS.get(eff.samples[0].context, "MeterValuePeriodic")
        cs = self._current_charging_state(tx) if reason == "Trigger" else None   # F06.FR.07: chargingState
        payload = m.transaction_event("Updated", rfc3339(eff.samples[0].timestamp if eff.samples else now), reason,
                                      tx.tx_key, offline=not self.online, charging_state=cs, meter_values=values)
        self._append_event(tx, payload, {"cs": cs} if cs else {}, now)

    def _attach_signed(self, tx, eff: TxMeterValues, meter_value: dict, now: float) -> None:
        """OCA note §4.1.1/§4.3.4/§4.3.7: the meter's signed record of an intermediate reading as the
        signedMeterValue of its energy register sampledValue (the unsigned value stays beside it)."""
        sample = eff.samples[0]
        record = {"raw": eff.signed_raw, "t": sample.timestamp, "key": eff.signed_key}
        signed = self._signed_item(tx, sample.context, record, self.signed_policy(),
                                   lambda raw, _c, der, with_key, _r: signed_meter_value(raw, der, with_key), now)
        if signed is None:
            return
        for sv in meter_value["sampledValue"]:
            if sv.get("measurand", ENERGY) == ENERGY and "phase" not in sv:
                sv["signedMeterValue"] = signed
                return

    def _queue_data_transfer(self, payload: dict, on_result: Callable[[dict | None], None]) -> None:
        self._queue_call(self._volatile, _Call("DataTransfer", payload, on_result))

    # ---- ISO 15118 (security.iso15118: the API the ISO 15118 stack calls) --------------------------------------
    def iso15118_call(self, action: str, payload: dict, on_result: Callable[[dict | None], None]) -> None:
        """M01/M02 Get15118EVCertificate, M06 GetCertificateStatus, C07 Authorize with contract certificate data:
        sent before the other queued messages (the EV waits: ISO 15118 timeouts are seconds), failed at once
        (None) when offline or not registered, and on a lost connection (never kept for a later one: the EV's
        session is over by then). A payload that fails its schema is not sent (None)."""
        if action not in ISO15118_CALLS:
            raise ValueError(f"{action} is not an ISO 15118 CALL")
        try:
            self.registry.validate_request(action, payload)
        except SchemaError as exc:
            log.error("not sending invalid %s from the ISO 15118 stack: %s", action, exc.description)
            on_result(None)
            return
        if not self.online or self.registration != "accepted":
            on_result(None)
            return
        if action == "Authorize":   # the eMAID's TransactionEvents carry its type (eMAID)
            self._learn_token_type(payload["idToken"]["idToken"], payload["idToken"]["type"])
        self._queue_call(self._priority, _Call(action, payload, on_result))

    def contract_token(self, id_token: str) -> None:
        """An eMAID authorized offline through its contract certificate (C07.FR.08): its type is eMAID."""
        self._learn_token_type(id_token, "eMAID")

    # ---- input from the CSMS ----------------------------------------------------------------------------------
    def _note_received(self, text: str) -> None:
        self._msg_size = len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else len(text)

    # ---- CSMS -> station handlers (Part 2) ------------------------------------------------------------------------
    def _cs_GetVariables(self, p: dict, now: float) -> dict:
        self._refresh_date_time(now)
        return get_variables(self.model, p, message_size=self._msg_size)   # B06

    def _refresh_date_time(self, now: float) -> None:
        """ClockCtrlr.DateTime (RO, not persistent) is the station's current time, including the CSMS's correction
        from BootNotification / Heartbeat currentTime (B01.FR.06): set before it is read or reported."""
        if self.model.definition("ClockCtrlr", "DateTime") is not None:
            self.model.set("ClockCtrlr", "DateTime", rfc3339(now), force=True)

    def _cs_SetVariables(self, p: dict, now: float) -> dict:
        result, changed = set_variables(self.model, p, message_size=self._msg_size)   # B05
        for d in changed:
            self._after_reply.append(lambda d=d: self._variable_changed(d, now))
        return result

    def _variable_changed(self, d, now: float) -> None:
        name = (d.component.casefold(), d.variable.casefold())
        value = self.model.get(d.component, d.variable, variable_instance=d.variable_instance,
                               evse_id=d.evse_id, connector_id=d.connector_id)
        if name == ("ocppcommctrlr", "heartbeatinterval"):
            self.heartbeat_interval = self.s201.heartbeat_interval
        elif name in (("sampleddatactrlr", "txupdatedinterval"), ("aligneddatactrlr", "interval"),
                      ("sampleddatactrlr", "txendedinterval"), ("aligneddatactrlr", "txendedinterval")):
            self.engine.settings_changed(now)
        elif name == ("ocppcommctrlr", "websocketpinginterval"):
            self.hooks.config_changed("WebSocketPingInterval", value or "")
        elif name[0] == "ocppcommctrlr" and name[1].startswith("retrybackoff"):   # Part 4 §5.3: the next reconnect
            self.hooks.config_changed("RetryBackOff", value or "")
        elif name == ("securityctrlr", "basicauthpassword"):
            self.hooks.config_changed("AuthorizationKey", value or "")   # A01: reconnect with the new password

    def _cs_SetNetworkProfile(self, p: dict, now: float) -> dict:
        """B09: validate, store, Accepted (B09.FR.01); Rejected with a reasonCode for content this station cannot use
        (B09.FR.02), a lower securityProfile than SecurityCtrlr.SecurityProfile (B09.FR.04) or a slot outside the
        valuesList of NetworkConfigurationPriority (B09.FR.05). The profile is used after a reboot (B09 remark, B10).
        A store failure is not answered Failed (B09.FR.03): it rolls the whole event back and reloads the station,
        like every other store failure, so the CSMS never sees a status for a profile that was not kept."""
        if self.network is None:   # pragma: no cover - the action is not offered then
            raise OcppError(ErrorKind.NOT_SUPPORTED, "SetNetworkProfile is not supported")
        slot, data = p["configurationSlot"], p["connectionData"]
        reason = self.network.validate(slot, data)
        if reason is not None:
            log.info("SetNetworkProfile for slot %s rejected: %s", slot, reason)   # never the profile's content
            return {"status": "Rejected", "statusInfo": {"reasonCode": reason}}
        self.network.store(slot, data)
        log.info("network profile stored in slot %d (%s); used after the next reboot", slot, data["ocppCsmsUrl"])
        return {"status": "Accepted"}

    def _cs_GetBaseReport(self, p: dict, now: float) -> dict:
        """B07: Accepted, then the report as NotifyReport CALLs after the response (they may be sent while Pending,
        B02.FR.02); NotSupported for an unknown base (B07.FR.02), Rejected when it cannot be built (B07.FR.13)."""
        if p["reportBase"] not in REPORT_BASES:
            return {"status": "NotSupported"}
        self._refresh_date_time(now)
        try:
            parts = base_report(self.model, p["requestId"], p["reportBase"], generated_at=rfc3339(now),
                                items_per_message=self.s201.report_items_per_message,
                                bytes_per_message=self.s201.report_bytes_per_message)
        except ValueError as exc:
            log.error("GetBaseReport %s cannot be built: %s", p["reportBase"], exc)
            return {"status": "Rejected"}
        return self._send_report(parts)

    def _send_report(self, parts: list[dict]) -> dict:
        """The answer to GetBaseReport / GetReport whose NotifyReport payloads are ``parts``: EmptyResultSet and
        nothing sent when no part has reportData (B08.FR.15), else Accepted and the parts queued after the
        response (B07.FR.03, B08.FR.03)."""
        if not any(part.get("reportData") for part in parts):
            return {"status": "EmptyResultSet"}

        def queue() -> None:
            for part in parts:
                self._queue_call(self._priority, _Call("NotifyReport", part))
        self._after_reply.append(queue)
        return {"status": "Accepted"}

    def _cs_GetReport(self, p: dict, now: float) -> dict:
        """B08: NotSupported for a criterion this station does not evaluate (B08.FR.02; the schema's enum holds only
        supported ones), CALLERROR above ItemsPerMessage / BytesPerMessage [GetReport] (B08.FR.17/18), Rejected
        when the report cannot be built (B08.FR.16), EmptyResultSet when nothing matches (B08.FR.15), else
        Accepted and the NotifyReport parts (B08.FR.01/03-05/07-14/20-25)."""
        if any(c not in COMPONENT_CRITERIA for c in p.get("componentCriteria", [])):
            return {"status": "NotSupported"}
        self._refresh_date_time(now)
        try:
            parts = custom_report(self.model, p, generated_at=rfc3339(now), message_size=self._msg_size,
                                  items_per_message=self.s201.report_items_per_message,
                                  bytes_per_message=self.s201.report_bytes_per_message)
        except ValueError as exc:
            log.error("GetReport %s cannot be built: %s", p["requestId"], exc)
            return {"status": "Rejected"}
        return self._send_report(parts)

    def _cs_RequestStartTransaction(self, p: dict, now: float) -> dict:
        if self.registration != "accepted":   # B02.FR.05
            return {"status": "Rejected"}
        token = p["idToken"]
        tag, token_type = token["idToken"], token["type"]
        if "chargingProfile" in p:   # F01.FR.12: a station without smart charging ignores it
            log.info("RequestStartTransaction carries a charging profile; Smart Charging is not supported")
        if "evseId" in p:
            candidates = self._connectors_of(p["evseId"])
            busy = [cid for cid in candidates if self.engine.connectors[cid].tx_key]
            if not candidates or any(self.engine.connectors[cid].tx_authorized for cid in busy):
                return {"status": "Rejected"}   # F01.FR.24, E01.FR.14: one transaction per EVSE
            if busy:   # F02: a transaction waiting for its identifier (TxStartPoint EVConnected): authorize it
                candidates = busy
            # a plugged connector of the EVSE first (F01: cable plugged in first)
            candidates.sort(key=lambda cid: not self.engine.connectors[cid].plugged)
        else:
            candidates = [None]   # F01.FR.20: the engine picks the EVSE
        # remembered before the engine acts: the transaction may start within remote_start (AuthorizeRemoteStart
        # false and the cable already in), and its Started event needs both
        self._learn_token_type(tag, token_type)
        self._remote_ids[tag] = p["remoteStartId"]
        self.kv.set("remote_starts", self._remote_ids)
        for cid in candidates:
            # C03.FR.01 / C05.FR.01: a Central idToken (made by the CSMS) is never sent in an AuthorizeRequest
            if self.engine.remote_start(tag, cid, now, authorize=token_type != "Central"):
                return {"status": "Accepted"}
        del self._remote_ids[tag]
        self.kv.set("remote_starts", self._remote_ids)
        return {"status": "Rejected"}   # F01.FR.23/24: unavailable, faulted or busy

    def _find_tx(self, transaction_id: str):
        return self.transactions.get(transaction_id) or self.transactions.by_transaction_id(transaction_id)

    def _cs_RequestStopTransaction(self, p: dict, now: float) -> dict:
        if self.registration != "accepted":   # B02.FR.05
            return {"status": "Rejected"}
        tx = self._find_tx(p["transactionId"])
        if tx is None or tx.stopped_at is not None:   # F03.FR.08
            return {"status": "Rejected"}
        return {"status": "Accepted" if self.engine.remote_stop(tx.tx_key, now) else "Rejected"}   # F03.FR.07

    def _cs_Reset(self, p: dict, now: float) -> dict:
        """B11/B12. Immediate: the transactions end (ImmediateReset) and the station reboots, or for an EVSE only its
        transaction ends. OnIdle with a transaction: Scheduled, done when the last one has ended (B12.FR.01/03/07);
        meanwhile the connectors of the station (or of the EVSE) without a transaction are Unavailable, with a
        StatusNotification, so that no new transaction delays the reset (B12 step 3a)."""
        evse = p.get("evseId")
        if evse is not None and evse != 0:
            cids = self._connectors_of(evse)
            if not cids:
                return {"status": "Rejected"}
        else:
            evse, cids = 0, sorted(self.layout)
        busy = [cid for cid in cids if self.engine.connectors[cid].tx_key]
        if p["type"] == "OnIdle" and busy:
            self._reset_scheduled.add(evse)
            self._after_reply.append(lambda: self.engine.hold(cids, HOLD_RESET, True, now))
            return {"status": "Scheduled"}
        if evse == 0:
            # soft, so the runtime lets the queued Ended events go out before it reboots (B12.FR.04/05)
            self._after_reply.append(lambda: self.engine.reset(False, now))
        else:
            def stop() -> None:
                for cid in busy:
                    tx_key = self.engine.connectors[cid].tx_key
                    if tx_key:
                        self.engine.stop_transaction(tx_key, StopReason.SOFT_RESET, now)
                log.info("EVSE %d reset", evse)
            self._after_reply.append(stop)
        return {"status": "Accepted"}

    def _run_scheduled_resets(self, now: float) -> None:
        for evse in sorted(self._reset_scheduled):
            cids = self._connectors_of(evse) if evse else sorted(self.layout)
            if any(self.engine.connectors[cid].tx_key for cid in cids):
                continue
            self._reset_scheduled.discard(evse)
            if evse == 0:
                log.info("scheduled reset: the last transaction has ended, rebooting")
                self.engine.reset(False, now)
            elif 0 not in self._reset_scheduled:
                # the EVSE is reset: it returns to the availability it had (B12.FR.06), unless a station reset
                # still waits for other EVSEs
                log.info("scheduled reset of EVSE %d: its transaction has ended", evse)
                self.engine.hold(cids, HOLD_RESET, False, now)
            else:
                log.info("scheduled reset of EVSE %d: its transaction has ended; a station reset still waits", evse)

    def _cs_ChangeAvailability(self, p: dict, now: float) -> dict:
        """G03/G04: the station (no evse), an EVSE (each of its connectors) or one connector; Scheduled while a
        transaction runs (G03.FR.05, G04.FR.06); the state persists (the engine stores it)."""
        operative = p["operationalStatus"] == "Operative"
        evse = p.get("evse")
        if evse is None or evse["id"] == 0:
            return {"status": self.engine.change_availability(0, operative, now)}
        if "connectorId" in evse:
            cid = self._by_location.get((evse["id"], evse["connectorId"]))
            cids = [cid] if cid is not None else []
        else:
            cids = self._connectors_of(evse["id"])
        if not cids:
            return {"status": "Rejected"}
        results = [self.engine.change_availability(cid, operative, now) for cid in cids]
        if "Rejected" in results:
            return {"status": "Rejected"}
        return {"status": "Scheduled" if "Scheduled" in results else "Accepted"}

    def _cs_UnlockConnector(self, p: dict, now: float) -> dict:
        cid = self._by_location.get((p["evseId"], p["connectorId"]))
        if cid is None:
            return {"status": "UnknownConnector"}   # F05.FR.03
        c = self.engine.connectors[cid]
        if c.tx_key and not c.invalid_suspended:
            return {"status": "OngoingAuthorizedTransaction"}   # F05.FR.02: neither unlock nor stop
        result = self.engine.unlock(cid, now)   # F05.FR.06: tried even without a cable
        return {"status": "Unlocked" if result == "Unlocked" else "UnlockFailed"}

    def _cs_TriggerMessage(self, p: dict, now: float) -> dict:
        """F06: the response first (F06.FR.04), then the message; NotImplemented for what this station cannot
        send (F06.FR.08)."""
        what, evse = p["requestedMessage"], p.get("evse")
        if what in SIGN_TRIGGERS and self.signing is not None:
            return self._trigger_signing(SIGN_TRIGGERS[what], now)
        if what not in TRIGGERABLE:
            return {"status": "NotImplemented"}
        if what == "BootNotification":
            if self.registration == "accepted":   # F06.FR.17
                return {"status": "Rejected"}

            def boot() -> None:
                self._boot_now = True
            self._after_reply.append(boot)
            return {"status": "Accepted"}
        if what == "Heartbeat":
            self._after_reply.append(lambda: self._queue_call(self._priority, _Call(
                "Heartbeat", {}, lambda res: res and self._sync_clock(res.get("currentTime")))))
            return {"status": "Accepted"}
        if what in IDLE_NOTIFICATIONS:   # F06.FR.03: an evse given with it is not relevant and ignored
            payload = {"status": "Idle"}
            busy = self.logs.busy_request_id if self.logs is not None and what == "LogStatusNotification" else None
            if busy is not None:         # N01.FR.13: the upload in progress, with its requestId
                payload = {"status": "Uploading", "requestId": busy}
            if what == "FirmwareStatusNotification" and self.firmware is not None:   # L01.FR.25/26
                status, request_id = self.firmware.trigger_status()
                payload = {"status": status} if request_id is None else {"status": status, "requestId": request_id}
            self._after_reply.append(lambda: self._queue_call(self._priority, _Call(what, payload)))
            return {"status": "Accepted"}
        if evse is not None and evse["id"] != 0:
            cids = self._connectors_of(evse["id"])
            if "connectorId" in evse:
                cids = [c for c in cids if self.layout[c][1] == evse["connectorId"]]
            if not cids:
                return {"status": "Rejected"}
        else:
            cids = sorted(self.layout)
        if what == "StatusNotification":
            if evse is None or "connectorId" not in evse:   # F06.FR.12
                return {"status": "Rejected"}
            cid = cids[0]
            self._after_reply.append(lambda: self._trigger_status(cid, now))
            return {"status": "Accepted"}
        if what == "MeterValues":
            if not [x for x in self.settings.sampled_measurands if x in m.MEASURANDS_201]:
                return {"status": "Rejected"}   # nothing to measure: an empty MeterValues cannot be sent
            self._after_reply.append(lambda: self._trigger_meter("MeterValues", cids, now))
            return {"status": "Accepted"}
        # TransactionEvent (F06.FR.07): only for running transactions whose Started is queued, once Accepted
        if self.registration != "accepted" or not any(self._running_tx(cid) for cid in cids):
            return {"status": "Rejected"}
        self._after_reply.append(lambda: self._trigger_meter("TransactionEvent", cids, now))
        return {"status": "Accepted"}

    def _trigger_signing(self, cert_type: str, now: float) -> dict:
        """A02: SignChargingStationCertificate / SignV2GCertificate. The response first, then the new key pair and
        the SignCertificateRequest (A02.FR.02/03); Rejected when no CSR can be made (OrganizationName unset, or
        for V2G no ISO15118Ctrlr.SeccId). A trigger restarts a request that stopped (A02.FR.19/20). The evse of a
        SignV2GCertificate is not used: this station has one SECC at most."""
        return {"status": "Accepted" if self._start_signing(cert_type, now, after_reply=True) else "Rejected"}

    def _queue_sign_certificate(self, cert_type: str, csr: str) -> None:
        """A02.FR.13 / A03.FR.13: certificateType names the certificate the CSR is for."""
        self._queue_call(self._priority, _Call("SignCertificate", {"csr": csr, "certificateType": cert_type},
                                               lambda res: self._sign_certificate_answered(cert_type, res)))

    def _sign_retry_policy(self) -> tuple[float, int]:
        def number(variable: str, default: int) -> int:
            raw = self.model.get("SecurityCtrlr", variable)
            try:
                return int(raw) if raw is not None else default
            except ValueError:
                return default
        return float(number("CertSigningWaitMinimum", 60)), number("CertSigningRepeatTimes", 3)

    def _cs_CertificateSigned(self, p: dict, now: float) -> dict:
        """A02/A03: the signed chain for the pending CSR; certificateType defaults to ChargingStationCertificate.
        Rejected with statusInfo for an invalid chain (A02.FR.07, A02.FR.16), see certsigning."""
        answer = self._certificate_signed(p["certificateChain"], p.get("certificateType",
                                                                          "ChargingStationCertificate"), now)
        if answer["status"] != "Accepted":
            answer["statusInfo"] = {"reasonCode": "InvalidCertificate"}
        return answer

    def _running_tx(self, cid: int):
        tx = self.engine.tx_on(cid)
        return tx if tx is not None and tx.extra.get("q_start") and not tx.extra.get("q_stop") else None

    def _trigger_status(self, cid: int, now: float) -> None:
        status = self._connector_status(cid, self.engine.status_of(cid))
        evse_id, connector_id = self.layout[cid]

        def sent(res: dict | None) -> None:
            if res is not None:
                self._sent_status[cid] = status
        self._queue_call(self._priority, _Call("StatusNotification",
                                               m.status_notification(evse_id, connector_id, status, now), sent))

    def _trigger_meter(self, mode: str, cids: list[int], now: float) -> None:
        """A reading now (context Trigger): MeterValues per EVSE (F06.FR.06), or an Updated event with
        triggerReason Trigger for each running transaction (F06.FR.07)."""
        self._process_effects(now)
        covered: set[str] = set()
        for cid in cids:
            self.engine.trigger_meter(cid, now)
            for eff in self.engine.drain():
                if not (isinstance(eff, TxMeterValues) and eff.samples and eff.samples[0].context == "Trigger"):
                    self._effect(eff, now)
                    continue
                if mode == "MeterValues":
                    values = [mv for s in eff.samples for mv in [m.meter_value(s)] if mv]
                    if values:
                        self._queue_call(self._priority, _Call("MeterValues", {
                            "evseId": self.layout[eff.connector_id][0], "meterValue": values}))
                elif eff.tx_key and self._running_tx(eff.connector_id):
                    self._enqueue_meter(eff, now, trigger="Trigger")
                    covered.add(eff.tx_key)
        if mode == "TransactionEvent":   # F06.FR.10: accepted means sent, with or without a reading
            for cid in cids:
                tx = self._running_tx(cid)
                if tx is not None and tx.tx_key not in covered:
                    self._enqueue_meter(TxMeterValues(tx.tx_key, cid, ()), now, trigger="Trigger")

    def _cs_DataTransfer(self, p: dict, now: float) -> dict:
        status, data = self.datatransfer.handle(p["vendorId"], p.get("messageId"), p.get("data"))   # P01
        return {"status": status, **({"data": data} if data is not None else {})}

    def _cs_ClearCache(self, p: dict, now: float) -> dict:
        if not self.s201.auth_cache_enabled:   # C11.FR.04
            return {"status": "Rejected"}
        return {"status": "Accepted" if self.engine.clear_cache() else "Rejected"}

    def _local_list_enabled(self) -> bool:
        return self.local_list is not None and self.local_list.enabled()

    def _cs_GetLocalListVersion(self, p: dict, now: float) -> dict:
        """D02: the version of the list (D02.FR.01); 0 before any SendLocalList (D02.FR.02) and while
        LocalAuthListCtrlr.Enabled is not true (D02.FR.03)."""
        return {"versionNumber": self.local_list.version() if self._local_list_enabled() else 0}

    def _cs_SendLocalList(self, p: dict, now: float) -> dict:
        """D01: Full replaces (D01.FR.04/15), Differential adds/updates entries with idTokenInfo (D01.FR.16) and
        removes those without (D01.FR.17); VersionMismatch per D01.FR.19. Entries are kept as 1.6-style idTagInfo
        keyed by the idToken value. A disabled list is the D01 prerequisite failing: Failed (2.0.1 has no
        NotSupported status)."""
        if not self._local_list_enabled():
            return {"status": "Failed", "statusInfo": {"reasonCode": "Disabled",
                                                       "additionalInfo": "LocalAuthListCtrlr.Enabled is false"}}
        entries = [(e["idToken"]["idToken"], m.auth_info_16(e["idTokenInfo"]) if "idTokenInfo" in e else None)
                   for e in p.get("localAuthorizationList") or []]
        # D01.FR.11: ItemsPerMessage / BytesPerMessage (the frame as received), D01.FR.12 Entries: Failed with reason
        result = self.local_list.apply(p["updateType"], p["versionNumber"], entries, message_bytes=self._msg_size)
        if result.reason is None:
            return {"status": result.status}
        return {"status": result.status,
                "statusInfo": {"reasonCode": result.reason, "additionalInfo": result.detail[:512]}}

    def _cs_CustomerInformation(self, p: dict, now: float) -> dict:
        """N09 / N10. Exactly one reference to the customer, or Invalid (N09.FR.09); report and clear both false:
        Rejected (N09.FR.07 / N10.FR.07). Otherwise Accepted (N09.FR.02 / N10.FR.01): a clear removes the customer's
        data except the local list (N10.FR.03 / N10.FR.06, engine.customer) in this handler's store transaction,
        and after the response the report follows as NotifyCustomerInformation parts: the data found (N09.FR.05,
        with a clear: what was cleared and what was kept, N10.FR.03), one part with empty data when nothing was found
        (N09.FR.06 / N10.FR.04; the Part 6 "data empty" of TC_N_62), or without report one part saying the data was
        cleared (N10.FR.06). The station keeps no customerIdentifier and no customer certificates (no ISO 15118), so
        for those there is never data."""
        refs = [key for key in ("idToken", "customerCertificate", "customerIdentifier") if key in p]
        if len(refs) != 1:
            return {"status": "Invalid", "statusInfo": {
                "reasonCode": "InvalidValue" if refs else "MissingParam",
                "additionalInfo": "exactly one of idToken, customerCertificate, customerIdentifier is required"}}
        if not p["report"] and not p["clear"]:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "InvalidValue",
                                                         "additionalInfo": "neither report nor clear is set"}}
        records: list[Record] = []
        if refs[0] == "idToken":
            token = p["idToken"]["idToken"]
            records = self.customers.clear(token) if p["clear"] else self.customers.find(token)
            log.info("CustomerInformation %s: %d record(s)%s", p["requestId"], len(records),
                     " cleared" if p["clear"] else "")
        if p["report"]:
            lines = [r.line(clearing=p["clear"]) for r in records]
        else:
            lines = ["customer information cleared"]
        parts = m.customer_information(p["requestId"], lines, rfc3339(now))

        def queue() -> None:
            for part in parts:
                self._queue_call(self._priority, _Call("NotifyCustomerInformation", part))
        self._after_reply.append(queue)
        return {"status": "Accepted"}

    def customer_records(self, id_token: str) -> list[Record]:
        """engine.customer.CustomerSource: the idToken type learned from the CSMS (RequestStartTransaction) and a
        remote start waiting for its transaction."""
        same = id_token.casefold()
        found = [Record(f"idToken type {kind} (from the CSMS)")
                 for tag, kind in self._token_types.items() if tag.casefold() == same]
        found += [Record(f"remote start {rid} waiting for its transaction", KEPT_IN_USE)
                  for tag, rid in self._remote_ids.items() if tag.casefold() == same]
        return found

    def forget_customer(self, id_token: str) -> None:
        same = id_token.casefold()
        known = [tag for tag in self._token_types if tag.casefold() == same]
        if known:
            for tag in known:
                del self._token_types[tag]
            self.kv.set("token_types", self._token_types)

    def _cs_GetLog(self, p: dict, now: float) -> dict:
        """N01: Accepted with the file name (N01.FR.01) and the upload starts after the response (N01.FR.02-04), or
        AcceptedCanceled when it replaces an upload in progress (N01.FR.12, which reports AcceptedCanceled with its
        own requestId, N01.FR.20); Rejected when there is no such log (N01.FR.05) or remoteLocation is no URL
        (reasonCode InvalidURL). The statuses come back through ``log_status``."""
        answer = self.logs.request(p["logType"], p["requestId"], p["log"], p.get("retries"), p.get("retryInterval"))
        if answer.status == "Rejected":
            return {"status": "Rejected", "statusInfo": {"reasonCode": answer.reason or "Unspecified",
                                                         "additionalInfo": answer.detail[:512]}}
        return {"status": answer.status, "filename": answer.filename}

    def log_status(self, status: str, request_id: int, now: float) -> None:
        """A LogStatusNotification for a GetLog upload (N01.FR.07-10, N01.FR.20). Queued like the other non-transaction
        messages: kept while offline (up to VOLATILE_LIMIT) and sent once connected and Accepted, so the CSMS learns
        how the upload it asked for ended."""
        self._queue_call(self._volatile, _Call("LogStatusNotification", {"status": status, "requestId": request_id}))

    def _cs_InstallCertificate(self, p: dict, now: float) -> dict:
        """M05: Accepted (M05.FR.02), Rejected with a reasonCode for an invalid, expired or non-CA certificate
        (M05.FR.07) or a full store (M05.FR.06), Failed when it cannot be stored (M05.FR.03); rules in certstore."""
        result = self.certificates.install(p["certificateType"], p["certificate"])
        if result.status == "Accepted":
            return {"status": "Accepted"}
        return {"status": result.status, "statusInfo": {"reasonCode": result.reason,
                                                        "additionalInfo": result.detail[:512]}}

    def _cs_DeleteCertificate(self, p: dict, now: float) -> dict:
        """M04: Accepted / NotFound / Failed (M04.FR.02-04, M04.FR.06 the station certificate)."""
        return {"status": self.certificates.delete(p["certificateHashData"])}

    def _cs_GetInstalledCertificateIds(self, p: dict, now: float) -> dict:
        """M03: the hash data of every installed certificate of the requested types, all types when certificateType
        is omitted (M03.FR.03/04); NotFound without certificateHashDataChain when there is none (M03.FR.02)."""
        chain = self.certificates.ids(p.get("certificateType"))
        return {"status": "Accepted", "certificateHashDataChain": chain} if chain else {"status": "NotFound"}

    def _cs_UpdateFirmware(self, p: dict, now: float) -> dict:
        """L01: Accepted, or AcceptedCanceled when it replaces an update in progress (L01.FR.24); InvalidCertificate
        when the signing certificate does not chain to a manufacturer root (L01.FR.21/22); Rejected without a
        signing certificate (TC_L_18_CS). The statuses follow through ``firmware_status``."""
        answer = self.firmware.request(p["requestId"], p["firmware"], p.get("retries"), p.get("retryInterval"))
        if answer.reason is None:
            return {"status": answer.status}
        return {"status": answer.status, "statusInfo": {"reasonCode": answer.reason,
                                                        "additionalInfo": answer.detail[:512]}}

    def firmware_status(self, status: str, request_id: int, now: float,
                        on_result: Callable[[dict | None], None] | None = None) -> None:
        """A FirmwareStatusNotification with the update's requestId (L01.FR.01/10/20), queued like the other
        non-transaction messages (kept while offline, sent once Accepted)."""
        self._queue_call(self._volatile, _Call("FirmwareStatusNotification",
                                               {"status": status, "requestId": request_id}, on_result))

    def _cs_GetTransactionStatus(self, p: dict, now: float) -> dict:
        """E14: whether the transaction runs and whether transaction messages wait in the queue (for it, or at all
        when no transactionId is given: E14.FR.06-08)."""
        if "transactionId" not in p:
            return {"messagesInQueue": self.queue.pending_count() > 0}
        tx = self._find_tx(p["transactionId"])
        if tx is None:   # E14.FR.01
            return {"ongoingIndicator": False, "messagesInQueue": False}
        return {"ongoingIndicator": tx.stopped_at is None,
                "messagesInQueue": bool(self.queue.pending_for(tx.tx_key))}

    # ---- responses to our CALLs -------------------------------------------------------------------------------
    def _on_own_response(self, inflight: Inflight, payload: dict, now: float) -> None:
        if inflight.kind == "status":
            cid, status, _ = inflight.ref
            self._sent_status[cid] = status
        elif inflight.kind == "call":
            if inflight.ref.on_result:
                inflight.ref.on_result(payload)

    def _on_tx_delivered(self, item, payload: dict, now: float) -> None:
        # the frequent Updated events: their deletion waits for the next fsync'ed write (see delivery.py)
        self.queue.delivered(item.seq, now, defer=item.payload.get("eventType") == "Updated")
        self._transmitted.discard(item.seq)
        info, token = payload.get("idTokenInfo"), item.payload.get("idToken")
        if not info or not token or not m.cacheable(token.get("type", "")):   # C02.FR.03 / C03.FR.02
            return
        info16 = m.auth_info_16(info)
        tx = self.transactions.get(item.tx_key) if item.tx_key else None
        if tx is not None and item.payload.get("eventType") != "Ended" and token.get("idToken") == tx.id_tag:
            # E05: not Accepted -> StopTxOnInvalidId / MaxEnergyOnInvalidId apply (the engine decides)
            self.engine.on_tx_confirmed(tx.tx_key, info16, now)
        else:
            self.engine.auth.learn(token["idToken"], info16, now)

    def _on_own_failure(self, inflight: Inflight, now: float) -> None:
        if inflight.kind == "call" and inflight.ref.on_result:
            inflight.ref.on_result(None)

    def _tx_failed(self, item, error: str, now: float) -> None:
        """E13.FR.02-04: retry MessageAttempts[TransactionEvent] times, waiting MessageAttemptInterval times the
        number of transmissions so far; then skip it (kept in the store as failed, never deleted)."""
        self.queue.failed(item, error, now, attempts=self.s201.message_attempts,
                          interval=self.s201.message_attempt_interval)

    def _on_boot(self, payload: dict, now: float) -> None:
        status, interval = payload["status"], payload["interval"]
        self._sync_clock(payload.get("currentTime"))
        log.info("BootNotification: %s (interval %s s)", status, interval)
        if status == "Accepted":
            self.registration = "accepted"
            if interval > 0:   # B01.FR.04
                self.heartbeat_interval = interval
                if self.model.set("OCPPCommCtrlr", "HeartbeatInterval", str(interval)) not in ("Accepted",
                                                                                              "RebootRequired"):
                    log.warning("heartbeat interval %s from the CSMS not stored", interval)
            self.kv.delete("boot_reason")
            self.engine.kv.delete("boot_reason")
            self._sent_status.clear()      # B01.FR.05: the current status of every connector after the boot
            self._statuses.clear()
            self.engine.resend_statuses(now)
        else:   # B02.FR.07/08, B03.FR.05/06
            self._rejected_or_pending(status, interval, now)

    # ---- sending ----------------------------------------------------------------------------------------------
    def _before_next_call(self, now: float) -> None:
        if self._reset_scheduled:
            self._run_scheduled_resets(now)
            self._process_effects(now)

    def _boot_reason(self) -> str:
        if self._boot_now:
            return "Triggered"
        reason = self.kv.get("boot_reason") or self.engine.kv.get("boot_reason") or "PowerUp"
        return reason if reason in BOOT_REASONS else "Unknown"

    def _send_queued(self, queue: collections.deque, now: float) -> str | None:
        while queue:
            call = queue.popleft()
            text = self._send("call", call.action, call.payload, call, now)
            if text:
                return text
            if call.on_result:
                call.on_result(None)
        return None

    def _next_call(self, now: float) -> str | None:
        if self.registration != "accepted":
            # B01.FR.08 / B02.FR.02 / B03.FR.02: nothing but BootNotification, and while Pending what the CSMS asked
            # for (TriggerMessage, GetBaseReport)
            if self._boot_now or now >= self.next_boot_at:
                text = self._send("boot", "BootNotification",
                                  m.boot_notification(self.station_info, self._boot_reason()), None, now)
                self._boot_now = False
                return text
            if self.registration == "pending":
                return self._send_queued(self._priority, now)
            return None
        # what the CSMS asked for first; then statuses and transaction events in the order they happened (a status
        # change that happened before an Authorize goes before it: E02 plug-in first, G01.FR.03)
        text = self._send_queued(self._priority, now)
        if text:
            return text
        head = self._tx_head()
        if head is not None and self._statuses and head.created_at <= self._statuses[0][2]:
            # the transaction event happened first: keep the order of events
            text = self._next_outbox(now)
            if text:
                return text
        while self._statuses:
            cid, status, ts = self._statuses.pop(0)
            if self._sent_status.get(cid) == status:
                continue   # changed and changed back (or Preparing -> Charging): nothing new in 2.0.1 terms
            evse_id, connector_id = self.layout[cid]
            text = self._send("status", "StatusNotification",
                              m.status_notification(evse_id, connector_id, status, ts), (cid, status, ts), now)
            if text:
                return text
        text = (self._next_security_event(now) or self._send_queued(self._volatile, now)
                or self._next_outbox(now))
        if text:
            return text
        if self.heartbeat_interval > 0 and now - self.last_sent_at >= self.heartbeat_interval:
            return self._send("heartbeat", "Heartbeat", {}, None, now)
        return None

    def _time_report_threshold(self) -> float:
        """ClockCtrlr.TimeAdjustmentReportingThreshold: a clock change beyond it is SettingSystemTime (Appendix 1)."""
        return float(self.s201.time_adjustment_reporting_threshold)

    def _tx_head(self):
        """The outbox head if it is ours; a 1.6 message waits for a 1.6 connection (the runtime pins the version)."""
        item = self.queue.head()
        return item if item is not None and item.action == "TransactionEvent" else None

    def _next_outbox(self, now: float) -> str | None:
        while True:
            item = self._tx_head()
            if item is None or (item.next_attempt_at is not None and item.next_attempt_at > now):
                return None
            text = self._send("outbox", item.action, dict(item.payload), item, now,   # seqNo from the store
                              validated=self.queue.checked(item.seq), payload_text=item.text)   # as queued
            if text:
                self._transmitted.add(item.seq)
                return text
            self.queue.give_up(item, "payload fails the OCPP 2.0.1 schema")

    def next_deadline(self) -> float | None:
        """When poll() has something to do next (the runtime sleeps until then unless input arrives)."""
        times = [self.endpoint.next_deadline(), self.engine.next_deadline(), self.queue.flush_deadline()]
        if self.online and not self.endpoint.busy:
            if self.registration != "accepted":
                times.append(0.0 if self._boot_now else self.next_boot_at)
                if self.registration == "pending" and self._priority:
                    times.append(0.0)
            else:
                if self.heartbeat_interval > 0:
                    times.append(self.last_sent_at + self.heartbeat_interval)
                item = self._tx_head()
                if item is not None:
                    times.append(item.next_attempt_at or 0.0)
                if self._priority or self._volatile or self._statuses:
                    times.append(0.0)
                times.append(self._security_deadline())     # A04: a queued event, or its retry after a failure
                times.append(self._signing_deadline())      # A02/A03: a resend, a certificate switch, a renewal
        times = [t for t in times if t is not None]
        return min(times) if times else None
