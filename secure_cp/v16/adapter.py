"""OCPP 1.6-J Core on top of the station engine.

Translates engine effects into CALLs (transaction messages through the persistent outbox, the rest through a
small volatile queue), CS->CP CALLs into engine commands, and runs the registration (BootNotification) and
heartbeat logic. Sans-I/O like the engine: text in, texts out, ``now`` passed in; the runtime owns the socket.
"""
from __future__ import annotations

import collections
import logging
from decimal import Decimal
from typing import Callable

from ..adapter_base import AdapterBase, Hooks, Inflight
from ..delivery import OutboxQueue
from ..diagnostics import LogUploads
from ..firmware import FirmwareUpdates
from ..devicemodel import TooManyKeys
from ..eichrecht.legallog import LegalLog
from ..eichrecht.ocpp import BEGIN, END, ENERGY, sampled_value_16
from ..engine import (AuthorizeRequest, Engine, Sample, SampledValue, StatusChanged, TxMeterValues, TxSigned,
                      TxStarted, TxStopped, parse_rfc3339, rfc3339)
from ..engine.datatransfer import DataTransferRegistry
from ..rpc import Endpoint, ErrorKind, IncomingCall, OcppError, SchemaError, SchemaRegistry
from ..securityevents import SecurityEvents
from . import messages

log = logging.getLogger("secure_cp.v16")

# What this adapter answers as CS->CP calls; every other action with a 1.6 schema gets NotSupported.
CORE_ACTIONS = frozenset({
    "ChangeAvailability", "ChangeConfiguration", "ClearCache", "DataTransfer", "GetConfiguration",
    "RemoteStartTransaction", "RemoteStopTransaction", "Reset", "UnlockConnector",
})
#: Local Auth List Management profile (1.6 §5.10, §5.15): answered when the station offers the profile.
LOCAL_LIST_ACTIONS = frozenset({"GetLocalListVersion", "SendLocalList"})
#: Security Whitepaper edition 3 N01 (log retrieval) and the ExtendedTriggerMessage of its LogStatusNotification:
#: answered when the runtime uploads logs (diagnostics.LogUploads).
LOG_ACTIONS = frozenset({"GetLog", "ExtendedTriggerMessage"})
#: 1.6 LogStatusNotification.req has no AcceptedCanceled (UploadLogStatusEnumType of the whitepaper): a cancelled
#: upload is reported by the GetLog.conf AcceptedCanceled of the request that cancelled it only.
LOG_STATUSES_16 = frozenset({"BadMessage", "Idle", "NotSupportedOperation", "PermissionDenied", "Uploaded",
                             "UploadFailure", "Uploading"})
#: Security Whitepaper edition 3 M03-M05 (certificate management): answered when the runtime has a certificate store.
CERTIFICATE_ACTIONS = frozenset({"InstallCertificate", "DeleteCertificate", "GetInstalledCertificateIds"})
#: Security Whitepaper edition 3 L01 (secure firmware update) and the ExtendedTriggerMessage of its
#: SignedFirmwareStatusNotification: answered when the runtime installs signed firmware (firmware.FirmwareUpdates).
#: The plain UpdateFirmware.req is not among them: CALLERROR NotSupported, no update (whitepaper L01.FR.20).
FIRMWARE_ACTIONS = frozenset({"SignedUpdateFirmware", "ExtendedTriggerMessage"})
#: Security Whitepaper edition 3 A02/A03 (Charge Point certificate): CertificateSigned.req, and the
#: ExtendedTriggerMessage SignChargePointCertificate: answered when the runtime signs station certificates.
SIGNING_ACTIONS = frozenset({"CertificateSigned", "ExtendedTriggerMessage"})
TX_ACTIONS = frozenset({"StartTransaction", "StopTransaction", "MeterValues"})
VOLATILE_LIMIT = 100          # queued non-transaction messages while offline; oldest dropped first




class Ocpp16Adapter(AdapterBase):
    version = "1.6"
    subprotocol = "ocpp1.6"
    #: [eichrecht] ocpp16_value: the SignedData value as the OCA JSON form ("oca-json") or the OCMF string ("raw")
    signed_form = "oca-json"
    #: connector -> EVSE whose FiscalMetering.PublicKey is MeterPublicKey<connector> (OCA note §3.3.1); set by the
    #: runtime when the station signs (empty: no MeterPublicKey keys)
    meter_key_evses: dict[int, int] = {}

    def __init__(self, *, engine: Engine, config, settings, db, outbox, transactions, station_info: dict,
                 registry: SchemaRegistry | None = None, datatransfer: DataTransferRegistry | None = None,
                 hooks: Hooks | None = None, call_timeout: float = 30.0, local_list=None,
                 logs: LogUploads | None = None, certificates=None, firmware: FirmwareUpdates | None = None,
                 security_events: SecurityEvents | None = None, cert_signing=None):
        self.engine = engine
        self.signing = cert_signing                     # security.certsigning.CertSigning, or None: no A02/A03
        self._now = 0.0                                 # the latest ``now`` (for answers to queued CALLs)
        self._tid_cache: dict[str, str] = {}            # tx_key -> CSMS transactionId (see _transaction_id_of)
        self._tid_rollbacks = db.rollbacks
        #: whitepaper A04: the security log and its queue of critical events, sent as SecurityEventNotification.req
        self.security = security_events if security_events is not None else SecurityEvents(db)
        self._security_retry_at = 0.0                   # after a CALLERROR / timeout (the event stays queued)
        self.firmware = firmware                        # firmware.FirmwareUpdates, or None: no SignedUpdateFirmware
        self.certificates = certificates                # security.certstore.CertificateStore, or None
        self.logs = logs                                # diagnostics.LogUploads, or None: no GetLog
        self.config = config
        self.local_list = local_list                    # engine.locallist.LocalAuthList, or None: no list
        profiles = getattr(config, "supported_profiles", ["Core"])
        actions = CORE_ACTIONS | (LOCAL_LIST_ACTIONS if local_list is not None
                                  and "LocalAuthListManagement" in profiles else frozenset()) \
            | (LOG_ACTIONS if logs is not None else frozenset()) \
            | (CERTIFICATE_ACTIONS if certificates is not None else frozenset()) \
            | (FIRMWARE_ACTIONS if firmware is not None else frozenset()) \
            | (SIGNING_ACTIONS if cert_signing is not None else frozenset())
        self.settings = settings
        self.db = db
        self.outbox = outbox
        self.transactions = transactions
        self.station_info = station_info
        self.datatransfer = datatransfer or DataTransferRegistry()
        self.hooks = hooks or Hooks()
        self.registry = registry or SchemaRegistry("1.6")
        self.supported_actions = actions
        self.endpoint = Endpoint("1.6", self.registry, call_timeout=call_timeout,
                                 supported_actions=lambda a: a in actions)
        self.registration = "none"      # none | pending | accepted | rejected
        self.next_boot_at = 0.0
        self._boot_triggered = False    # ExtendedTriggerMessage BootNotification while Accepted: send one again
        self.online = False
        self.last_sent_at = 0.0
        self.heartbeat_interval = settings.heartbeat_interval
        self._inflight: Inflight | None = None
        self._volatile: collections.deque = collections.deque()
        self._statuses: list[StatusChanged] = []         # unsent statuses, oldest first
        self._sent_status: dict[int, tuple] = {}
        self._after_reply: list[Callable[[], None]] = []
        self.reset_requested: bool | None = None          # set when the engine asks to reboot (hard?)
        self.queue = OutboxQueue(db, outbox)              # head, deferred deletions, retries


    # ---- connection -------------------------------------------------------------------------------------------
    def connected(self, now: float) -> list[str]:
        self.online = True
        self.engine.set_online(True, now)
        # a reconnect within one boot needs no new BootNotification; the statuses queued while offline (latest
        # per connector, unsent if unchanged) go out first: 1.6 §4.9 rules 1 and 3
        return self.poll(now)

    def disconnected(self, now: float) -> None:
        """The connection dropped: an outstanding CALL is not a CSMS failure and burns no attempt."""
        self.online = False
        self.endpoint.reset()
        self.flush_delivered()
        inflight, self._inflight = self._inflight, None
        if inflight and inflight.kind == "status":      # unanswered: it goes again, before anything newer
            self._statuses.insert(0, inflight.ref)
        latest = {s.connector_id: s for s in self._statuses}      # offline from now: keep the latest per connector
        self._statuses = [s for s in self._statuses if latest[s.connector_id] is s]
        if inflight and inflight.kind == "volatile" and inflight.action == "Authorize":
            self.engine.on_authorize_result(inflight.ref[1]["idTag"], None, now)
        elif inflight and inflight.kind == "volatile" and inflight.ref[2]:
            inflight.ref[2](None)
        self.engine.set_online(False, now)
        self._process_effects(now)

    # ---- effects of the engine -----------------------------------------------------------------------------
    EFFECTS = {
        StatusChanged: lambda self, e, now: self._queue_status(e),
        AuthorizeRequest: lambda self, e, now: self._queue_authorize(e.id_tag, now),
        TxStarted: lambda self, e, now: self._enqueue_start(e.tx_key, now),
        TxStopped: lambda self, e, now: self._enqueue_stop(e, now),
        TxMeterValues: lambda self, e, now: self._enqueue_meter(e, now),
        TxSigned: lambda self, e, now: self._enqueue_signed_begin(e, now),
    }

    @property
    def signed_model(self):
        return self.config.model

    def _signed_16(self, tx, contexts: tuple[str, ...], now: float) -> list[dict]:
        """meterValue entries, one per signed record: SampledValue format SignedData (OCA note §3.2.1)."""
        policy = self.signed_policy()

        def build(raw: str, context: str, der, with_key: bool, record: dict) -> dict:
            return {"timestamp": rfc3339(record["t"]),
                    "sampledValue": [sampled_value_16(raw, context, der, with_key, self.signed_form)]}
        return self._signed_items(tx, contexts, policy, build, now)

    def _enqueue_signed_begin(self, eff: TxSigned, now: float) -> None:
        """OCA note §3.1.2 / §3.3.4-§3.3.5: the signed begin record arrived (or failed: Engine.signed_begin_missing):
        the Transaction.Begin MeterValues.req that waited for it goes out now."""
        tx = self.transactions.get(eff.tx_key)
        if tx is not None and tx.extra.get("q_start") and eff.context == BEGIN:
            self._enqueue_begin_values(tx, now)

    def _start_txn_measurands(self) -> list[str]:
        """StartTxnSampledData (OCA note §3.3.4; offered by a station that signs), [] when not offered or empty."""
        return self.config.get_list("StartTxnSampledData") if "StartTxnSampledData" in self.config.keys() else []

    def _begin_signed(self) -> bool:
        """Whether the Transaction.Begin MeterValues carries the signed begin value (OCA note §3.3.5):
        SampledDataSignReadings, SampledDataSignStartedReadings and the energy register (the measurand the meter
        signs) in StartTxnSampledData."""
        policy = self.signed_policy()
        return (self.engine.signing and policy.sign_readings and policy.sign_started
                and ENERGY in self._start_txn_measurands())

    def _enqueue_begin_values(self, tx, now: float) -> None:
        """OCA note §3.3.4/§3.3.5: one MeterValues.req right after StartTransaction.req with the StartTxnSampledData
        measurands, context Transaction.Begin (the engine's reading at the start). When the begin value is signed
        it waits for the meter's record and the energy register goes as that signed value (format SignedData)
        instead of the unsigned one; a meter that failed: the unsigned values alone. Once per transaction."""
        wanted = self._start_txn_measurands()
        if not wanted or tx.extra.get("q_begin") or tx.extra.get("q_stop"):
            return
        signed_begin = self._begin_signed()
        if signed_begin and BEGIN in tx.extra.get("sig_wait", ()):
            return                      # the meter is signing: TxSigned (or signed_begin_missing) sends it
        signed = self._signed_16(tx, (BEGIN,), now) if signed_begin else []
        saved = tx.extra.get("begin")
        begin = Sample.from_json(saved) if saved else Sample(parse_rfc3339(tx.started_at), BEGIN, ())
        values = [v for v in begin.values if v.measurand in wanted and not (signed and v.measurand == ENERGY)]
        if ENERGY in wanted and not signed and not any(v.measurand == ENERGY for v in values):
            values.insert(0, SampledValue(ENERGY, Decimal(tx.meter_start_wh), "Wh"))   # meterStart: always known
        meter_value = messages.meter_values(tx.connector_id, (Sample(begin.timestamp, BEGIN, tuple(values)),))
        meter_value["meterValue"] += signed
        if meter_value["meterValue"]:
            self._append_tx_message(tx.tx_key, "MeterValues", meter_value, now, flag="q_begin", tx=tx)

    def _queue_status(self, eff: StatusChanged) -> None:
        """Online every change is reported in order; offline only the latest per connector is kept (1.6 §4.9:
        no historical statuses after a reconnect, the current one for each connector that changed)."""
        if not self.online:
            self._statuses = [s for s in self._statuses if s.connector_id != eff.connector_id]
        self._statuses.append(eff)

    def _queue_volatile(self, action: str, payload: dict, on_result: Callable | None = None) -> None:
        if len(self._volatile) >= VOLATILE_LIMIT:
            dropped = self._volatile.popleft()
            log.warning("offline queue full: dropping %s", dropped[0])
        self._volatile.append((action, payload, on_result))

    def _queue_authorize(self, id_tag: str, now: float) -> None:
        payload = {"idTag": id_tag}
        try:
            self.registry.validate_request("Authorize", payload)
        except SchemaError as exc:   # e.g. an identifier longer than CiString20: OCPP 1.6 cannot carry it
            log.warning("identifier cannot be sent in OCPP 1.6 (%s): treated as Invalid", exc.description)
            self.engine.on_authorize_result(id_tag, {"status": "Invalid"}, now)
            return
        if not self.online or self.registration != "accepted":
            self.engine.on_authorize_result(id_tag, None, now)
            return
        self._queue_volatile("Authorize", payload, None)

    def _append_tx_message(self, tx_key: str, action: str, payload: dict, now: float, *, flag: str | None = None,
                           tx=None) -> None:
        """Durably queue a transaction message; ``flag`` set on the record ``tx`` in the same store transaction
        makes re-queuing after a crash a no-op."""
        try:
            probe = payload
            if action != "StartTransaction":
                # the CSMS's transactionId, when known already, is queued with the message (which is then sent as
                # it was stored, _next_outbox); else it is filled in when the message is sent
                transaction_id = self._transaction_id_of(tx_key)
                if transaction_id is not None:
                    payload["transactionId"] = int(transaction_id)
                else:
                    probe = {**payload, "transactionId": 0}
            self.registry.validate_request(action, probe)
        except SchemaError as exc:
            log.error("refusing to queue an invalid %s for transaction %s: %s", action, tx_key, exc.description)
            return
        with self.db.atomic():
            self.queue.append(action, payload, tx_key=tx_key, now=now)
            if flag:
                tx.extra[flag] = True
                self.transactions.update(tx_key, extra=tx.extra)

    def _enqueue_start(self, tx_key: str, now: float) -> None:
        tx = self.transactions.get(tx_key)
        if tx is None or tx.extra.get("q_start"):
            return
        self._append_tx_message(tx_key, "StartTransaction", messages.start_transaction(tx), now, flag="q_start", tx=tx)
        if tx.extra.get("q_start"):
            self._enqueue_begin_values(tx, now)      # OCA note §3.3.4: right after the StartTransaction.req

    def _enqueue_stop(self, eff: TxStopped, now: float) -> None:
        tx = self.transactions.get(eff.tx_key)
        if tx is None or tx.extra.get("q_stop"):
            return
        payload = messages.stop_transaction(tx, eff.transaction_data)
        if self.signed_policy().sign_readings:
            # OCA note §3.1.4: the signed begin and end values in transactionData (also when StopTxn*Data is empty)
            signed = self._signed_16(tx, (BEGIN, END), now)
            if signed:
                payload["transactionData"] = payload.get("transactionData", []) + signed
        self._append_tx_message(eff.tx_key, "StopTransaction", payload, now, flag="q_stop", tx=tx)

    def _enqueue_meter(self, eff: TxMeterValues, now: float) -> None:
        payload = messages.meter_values(eff.connector_id, eff.samples)
        if not payload["meterValue"]:
            return
        if eff.tx_key is None:     # not transaction-related: best effort, not persisted
            self._queue_volatile("MeterValues", payload)
            return
        tx = self.transactions.get(eff.tx_key) if eff.signed_raw is not None else None
        if tx is not None:
            # OCA note §3.1.3/§3.3.6/§3.3.8: the meter's signed value (format SignedData) next to the unsigned ones
            sample = eff.samples[0]
            record = {"raw": eff.signed_raw, "t": sample.timestamp, "key": eff.signed_key}
            item = self._signed_item(tx, sample.context, record, self.signed_policy(),
                                     lambda raw, context, der, with_key, _r: sampled_value_16(
                                         raw, context, der, with_key, self.signed_form), now)
            if item is not None:
                payload["meterValue"][0]["sampledValue"].append(item)
        self._append_tx_message(eff.tx_key, "MeterValues", payload, now)

    def _queue_data_transfer(self, payload: dict, on_result: Callable[[dict | None], None]) -> None:
        self._queue_volatile("DataTransfer", payload, on_result)

    # ---- input from the CSMS -------------------------------------------------------------------------------------
    SILENT_WHILE_REJECTED = True   # §4.2: while Rejected, do not respond at all

    def _call_while_rejected(self, call: IncomingCall) -> str | None:
        log.info("ignoring %s while the registration is Rejected (1.6 §4.2)", call.action)
        return None

    # ---- CS -> CP handlers (1.6 §5) ------------------------------------------------------------------------------
    def _cs_ChangeAvailability(self, p: dict, now: float) -> dict:
        status = self.engine.change_availability(p["connectorId"], p["type"] == "Operative", now)
        return {"status": status}

    def _cs_ChangeConfiguration(self, p: dict, now: float) -> dict:
        key, value = p["key"], p["value"]
        if self._meter_key_connector(key) is not None:
            return {"status": "Rejected"}       # OCA note §3.3.1: read-only
        status = self.config.change_configuration(key, value)
        if status in ("Accepted", "RebootRequired"):
            if key == "HeartbeatInterval":
                self.heartbeat_interval = self.settings.heartbeat_interval
            if key in ("MeterValueSampleInterval", "ClockAlignedDataInterval"):
                self._after_reply.append(lambda: self.engine.settings_changed(now))
            self._after_reply.append(lambda: self.hooks.config_changed(key, value))
        return {"status": status}

    def _cs_ClearCache(self, p: dict, now: float) -> dict:
        return {"status": "Accepted" if self.engine.clear_cache() else "Rejected"}

    def _cs_DataTransfer(self, p: dict, now: float) -> dict:
        status, data = self.datatransfer.handle(p["vendorId"], p.get("messageId"), p.get("data"))
        return {"status": status, **({"data": data} if data is not None else {})}

    def _cs_GetConfiguration(self, p: dict, now: float) -> dict:
        try:
            known, unknown = self.config.get_configuration(p.get("key"))
        except TooManyKeys as exc:   # more keys than GetConfigurationMaxKeys (1.6 §5.8)
            raise OcppError(ErrorKind.OCCURRENCE_CONSTRAINT_VIOLATION, str(exc)) from None
        known, unknown = self._with_meter_keys(known, unknown, bool(p.get("key")))
        out: dict = {}
        if known:
            out["configurationKey"] = known
        if unknown:
            out["unknownKey"] = unknown
        return out

    def _meter_key_connector(self, key: str) -> int | None:
        """The connector of a ``MeterPublicKey<N>`` key this station offers, else None."""
        prefix = "meterpublickey"
        if not key.casefold().startswith(prefix) or not key[len(prefix):].isdigit():
            return None
        n = int(key[len(prefix):])
        return n if n in self.meter_key_evses else None

    def _with_meter_keys(self, known: list[dict], unknown: list[str], asked: bool) -> tuple[list[dict], list[str]]:
        """MeterPublicKey<N> (OCA note §3.3.1, RO): the FiscalMetering.PublicKey of the connector's EVSE in the
        §3.2.2 form; listed in a full GetConfiguration, answered when asked for by name."""
        wanted = ([n for n in (self._meter_key_connector(k) for k in unknown) if n is not None] if asked
                  else sorted(self.meter_key_evses))
        for n in wanted:
            value = self.config.model.get("FiscalMetering", "PublicKey", evse_id=self.meter_key_evses[n])
            known.append({"key": f"MeterPublicKey{n}", "readonly": True, **({"value": value} if value else {})})
        if asked:
            unknown = [k for k in unknown if self._meter_key_connector(k) is None]
        return known, unknown

    def _local_list_enabled(self) -> bool:
        try:
            return self.config.get_bool("LocalAuthListEnabled")
        except (KeyError, ValueError):
            return False

    def _cs_GetLocalListVersion(self, p: dict, now: float) -> dict:
        """1.6 §5.10: the list's version; 0 = the list is empty, -1 = no Local Authorization List. A disabled list
        (LocalAuthListEnabled false) is not used for authorization, so it is reported as not supported (-1)."""
        if not self._local_list_enabled():
            return {"listVersion": -1}
        return {"listVersion": self.local_list.version() if len(self.local_list) else 0}

    def _cs_SendLocalList(self, p: dict, now: float) -> dict:
        """1.6 §5.15 / §6.41: Full replaces, Differential adds/updates (with idTagInfo) and removes (without);
        NotSupported while LocalAuthListEnabled is false (§7.47); rules in engine.locallist."""
        if not self._local_list_enabled():
            return {"status": "NotSupported"}
        entries = [(e["idTag"], e.get("idTagInfo")) for e in p.get("localAuthorizationList") or []]
        return {"status": self.local_list.apply(p["updateType"], p["listVersion"], entries).status}

    def _cs_RemoteStartTransaction(self, p: dict, now: float) -> dict:
        if self.registration != "accepted":   # §4.2: not allowed while Pending
            return {"status": "Rejected"}
        connector = p.get("connectorId")
        if connector is not None and connector not in self.engine.connectors:
            return {"status": "Rejected"}
        if "chargingProfile" in p:
            log.info("RemoteStartTransaction carries a charging profile; Smart Charging is not supported yet")
        ok = self.engine.remote_start(p["idTag"], connector, now)
        return {"status": "Accepted" if ok else "Rejected"}

    def _cs_RemoteStopTransaction(self, p: dict, now: float) -> dict:
        if self.registration != "accepted":
            return {"status": "Rejected"}
        tx = self.transactions.by_transaction_id(str(p["transactionId"]))
        if tx is None or tx.stopped_at is not None:
            return {"status": "Rejected"}
        return {"status": "Accepted" if self.engine.remote_stop(tx.tx_key, now) else "Rejected"}

    def _cs_Reset(self, p: dict, now: float) -> dict:
        hard = p["type"] == "Hard"
        self._after_reply.append(lambda: self.engine.reset(hard, now))
        return {"status": "Accepted"}

    def _cs_GetLog(self, p: dict, now: float) -> dict:
        """Whitepaper N01: Accepted with the file name (N01.FR.01), the upload after the response (N01.FR.02-04);
        AcceptedCanceled when it replaces an upload in progress (N01.FR.11); Rejected when there is no such log or
        the location is no URL. Statuses come back through ``log_status`` with the requestId (N01.FR.07)."""
        answer = self.logs.request(p["logType"], p["requestId"], p["log"], p.get("retries"), p.get("retryInterval"))
        if answer.status == "Rejected":
            log.info("GetLog %s rejected: %s", p["requestId"], answer.detail)
            return {"status": "Rejected"}
        return {"status": answer.status, "filename": answer.filename}

    def log_status(self, status: str, request_id: int, now: float) -> None:
        """LogStatusNotification.req (N01.FR.07-10), queued like the other non-transaction messages (kept while
        offline, sent once Accepted). A status 1.6 cannot carry (AcceptedCanceled) is not sent."""
        if status in LOG_STATUSES_16:
            self._queue_volatile("LogStatusNotification", {"status": status, "requestId": request_id})

    def _cs_ExtendedTriggerMessage(self, p: dict, now: float) -> dict:
        """Whitepaper F06 ExtendedTriggerMessage: LogStatusNotification (Idle without requestId when no upload runs,
        else Uploading with its requestId: N01.FR.12), FirmwareStatusNotification (as SignedFirmwareStatusNotification:
        Idle after Installed or before any update, else the last status: L01.FR.28/29), Heartbeat,
        SignChargePointCertificate (A02.FR.02: a new key pair and SignCertificate.req; Rejected without CpoName),
        StatusNotification (the connector given, else every connector and 0) and MeterValues (a reading now, context
        Trigger), BootNotification (:meth:`_trigger_boot`), sent after the response; an unknown connectorId is
        Rejected."""
        what = p["requestedMessage"]
        cid = p.get("connectorId")
        if what == "BootNotification":
            self._after_reply.append(lambda: self._trigger_boot(now))
            return {"status": "Accepted"}
        if what == "SignChargePointCertificate" and self.signing is not None:
            ok = self._start_signing("ChargingStationCertificate", now, after_reply=True)
            return {"status": "Accepted" if ok else "Rejected"}
        if what in ("StatusNotification", "MeterValues"):
            if cid is not None and cid not in self.engine.connectors:
                return {"status": "Rejected"}
            cids = [cid] if cid is not None else ([0] if what == "StatusNotification" else []) + sorted(
                self.engine.connectors)
            self._after_reply.append(lambda: self._trigger(what, cids, now))
            return {"status": "Accepted"}
        if what == "FirmwareStatusNotification" and self.firmware is not None:   # whitepaper L01.FR.28/29
            status, request_id = self.firmware.trigger_status()
            payload = {"status": status} if request_id is None else {"status": status, "requestId": request_id}
            self._after_reply.append(lambda: self._queue_volatile("SignedFirmwareStatusNotification", payload))
            return {"status": "Accepted"}
        if what == "LogStatusNotification" and self.logs is not None:
            busy = self.logs.busy_request_id
            payload = {"status": "Idle"} if busy is None else {"status": "Uploading", "requestId": busy}
            self._after_reply.append(lambda: self._queue_volatile("LogStatusNotification", payload))
            return {"status": "Accepted"}
        if what == "Heartbeat":
            self._after_reply.append(lambda: self._queue_volatile(
                "Heartbeat", {}, lambda res: res and self._sync_clock(res.get("currentTime"))))
            return {"status": "Accepted"}
        return {"status": "NotImplemented"}

    def _trigger_boot(self, now: float) -> None:
        """Whitepaper MessageTriggerEnumType BootNotification ("to trigger BootNotification.req"), after the response
        (1.6 §5.17). While Pending (or before the first answer) the BootNotification goes out now instead of after
        the interval (1.6 §4.2: not earlier "unless requested to do so with a TriggerMessage"); while Accepted one
        more BootNotification is sent, and its answer is handled like any: Accepted sets HeartbeatInterval to its
        interval and the clock to currentTime, Pending / Rejected put the station in that state (:meth:`_on_boot`)."""
        if self.registration == "accepted":
            self._boot_triggered = True
        else:
            self.next_boot_at = now

    def _trigger(self, what: str, cids: list[int], now: float) -> None:
        """ExtendedTriggerMessage StatusNotification (sent even when unchanged) / MeterValues for ``cids``."""
        for cid in cids:
            if what == "StatusNotification":
                self._sent_status.pop(cid, None)
                self._queue_status(StatusChanged(cid, self.engine.status_of(cid), "NoError", "", "", now))
            else:
                self.engine.trigger_meter(cid, now)
        self._process_effects(now)

    def _queue_sign_certificate(self, cert_type: str, csr: str) -> None:
        """SignCertificate.req (whitepaper A02.FR.03): the CSR only; 1.6 signs the Charge Point certificate alone."""
        self._queue_volatile("SignCertificate", {"csr": csr},
                             lambda res: self._sign_certificate_answered(cert_type, res))

    def _cs_CertificateSigned(self, p: dict, now: float) -> dict:
        """Whitepaper A02.FR.06/07: Accepted, or Rejected + InvalidChargePointCertificate (certsigning); a chain
        longer than CertificateSignedMaxChainSize is Rejected."""
        return self._certificate_signed(p["certificateChain"], "ChargingStationCertificate", now)

    def _cs_InstallCertificate(self, p: dict, now: float) -> dict:
        """Whitepaper M05: Accepted (M05.FR.02), Rejected for an invalid / expired / non-CA certificate (M05.FR.06)
        or a full store (CertificateStoreMaxLength, M05.FR.03), Failed when it cannot be stored (M05.FR.04)."""
        return {"status": self.certificates.install(p["certificateType"], p["certificate"]).status}

    def _cs_DeleteCertificate(self, p: dict, now: float) -> dict:
        """Whitepaper M04: Accepted / NotFound / Failed (M04.FR.02-04; M04.FR.05 the Charge Point certificate,
        M04.FR.06 the CentralSystemRootCertificate in use for the current connection)."""
        return {"status": self.certificates.delete(p["certificateHashData"])}

    def _cs_GetInstalledCertificateIds(self, p: dict, now: float) -> dict:
        """Whitepaper M03: Accepted with the hash data of each certificate of the type (M03.FR.03/04), else NotFound
        (M03.FR.02)."""
        found = [e["certificateHashData"] for e in self.certificates.ids([p["certificateType"]])]
        return {"status": "Accepted", "certificateHashData": found} if found else {"status": "NotFound"}

    def _cs_SignedUpdateFirmware(self, p: dict, now: float) -> dict:
        """Whitepaper L01: Accepted, AcceptedCanceled when it replaces an update in progress (L01.FR.26),
        InvalidCertificate when the signing certificate does not chain to a manufacturer root (L01.FR.23/24). The
        statuses follow as SignedFirmwareStatusNotification.req through ``firmware_status``."""
        answer = self.firmware.request(p["requestId"], p["firmware"], p.get("retries"), p.get("retryInterval"))
        if answer.reason is not None:
            log.info("SignedUpdateFirmware %s: %s (%s)", p["requestId"], answer.status, answer.detail)
        return {"status": answer.status}

    def firmware_status(self, status: str, request_id: int, now: float,
                        on_result: Callable | None = None) -> None:
        """SignedFirmwareStatusNotification.req with the update's requestId (whitepaper L01.FR.01/10/21), queued
        like the other non-transaction messages."""
        self._queue_volatile("SignedFirmwareStatusNotification", {"status": status, "requestId": request_id},
                             on_result)

    def _cs_UnlockConnector(self, p: dict, now: float) -> dict:
        cid = p["connectorId"]
        if cid not in self.engine.connectors:
            return {"status": "NotSupported"}
        return {"status": self.engine.unlock(cid, now)}

    # ---- responses to our CALLs ----------------------------------------------------------------------------------
    def _on_own_response(self, inflight: Inflight, payload: dict, now: float) -> None:
        if inflight.kind == "status":
            eff = inflight.ref
            if eff.error_code != "LocalListConflict":   # an event, not a state: the next one is reported too
                self._sent_status[eff.connector_id] = (eff.status, eff.error_code, eff.info)
        elif inflight.kind == "volatile":
            action, req, cb = inflight.ref
            if action == "Authorize":
                self._check_list_conflict(req["idTag"], payload.get("idTagInfo"), now)
                self.engine.on_authorize_result(req["idTag"], payload.get("idTagInfo"), now)
            if cb:
                cb(payload)

    def _on_tx_delivered(self, item, payload: dict, now: float) -> None:
        if item.action == "StartTransaction":
            with self.db.tx():
                self.transactions.update(item.tx_key, transaction_id=str(payload["transactionId"]))
                self.queue.delivered(item.seq, now, defer=False)
                if self.engine.signing:   # the legal log finds the signed records by the CSMS's id from now on
                    LegalLog(self.db).set_transaction_id(item.tx_key, payload["transactionId"])
            self._check_list_conflict(item.payload.get("idTag"), payload.get("idTagInfo"), now)
            self.engine.on_tx_confirmed(item.tx_key, payload.get("idTagInfo"), now)
        elif item.action == "MeterValues":   # the frequent one: its deletion waits for the next fsync'ed write
            self.queue.delivered(item.seq, now, defer=True)
        else:
            self.queue.delivered(item.seq, now, defer=False)
            if item.action == "StopTransaction" and payload.get("idTagInfo") and item.payload.get("idTag"):
                self._check_list_conflict(item.payload["idTag"], payload["idTagInfo"], now)
                self.engine.auth.learn(item.payload["idTag"], payload["idTagInfo"], now)

    def _check_list_conflict(self, id_tag: str | None, info: dict | None, now: float) -> None:
        """1.6 §3.5.2: an idTagInfo from the Central System (Authorize, StartTransaction, StopTransaction) that
        conflicts with the Local Authorization List is reported by a StatusNotification for connector 0 with
        errorCode LocalListConflict (the station's status unchanged). The answer itself is used as it is."""
        conflict = self.engine.auth.list_conflict(id_tag, info, now) if id_tag and info else None
        if conflict is None:
            return
        log.warning("idTag %s: Local Authorization List conflict (%s)", id_tag, conflict)
        self._queue_status(StatusChanged(0, self.engine.status_of(0), "LocalListConflict", conflict[:50], "", now))

    def _on_own_failure(self, inflight: Inflight, now: float) -> None:
        if inflight.kind == "volatile" and inflight.action == "Authorize":
            self.engine.on_authorize_result(inflight.ref[1]["idTag"], None, now)
        elif inflight.kind == "volatile" and inflight.ref[2]:
            inflight.ref[2](None)

    def _tx_failed(self, item, error: str, now: float) -> None:
        self.queue.failed(item, error, now, attempts=self.settings.transaction_message_attempts,
                          interval=self.settings.transaction_message_retry_interval)

    def _on_boot(self, payload: dict, now: float) -> None:
        status = payload["status"]
        interval = payload["interval"]
        self._sync_clock(payload.get("currentTime"))
        log.info("BootNotification: %s (interval %s s)", status, interval)
        if status == "Accepted":
            registered = self.registration == "accepted"   # a triggered BootNotification: no new boot
            self.registration = "accepted"
            if interval > 0:
                self.heartbeat_interval = interval
                self.config.set_internal("HeartbeatInterval", str(interval))
            if not registered:
                self._sent_status.clear()      # after a boot every connector's status is reported (incl. 0)
                self.engine.resend_statuses(now)
        else:
            self._rejected_or_pending(status, interval, now)

    # ---- sending -------------------------------------------------------------------------------------------------
    def _next_call(self, now: float) -> str | None:
        if self.registration != "accepted" or self._boot_triggered:   # not registered yet, or a triggered boot
            if self.registration != "accepted" and now < self.next_boot_at:
                return None
            self._boot_triggered = False
            return self._send("boot", "BootNotification", self._boot_payload(), None, now)
        while self._volatile:
            action, payload, cb = self._volatile.popleft()
            text = self._send("volatile", action, payload, (action, payload, cb), now)
            if text:
                return text
        head = self.queue.head()
        if head is not None and self._statuses and head.created_at <= self._statuses[0].timestamp:
            # the transaction message happened first (e.g. StartTransaction before "Charging"): keep event order
            text = self._next_outbox(now)
            if text:
                return text
        while self._statuses:
            eff = self._statuses.pop(0)
            cid = eff.connector_id
            if self._sent_status.get(cid) == (eff.status, eff.error_code, eff.info):
                continue   # changed and changed back while offline: nothing new for the CSMS
            payload = {"connectorId": cid, "errorCode": eff.error_code, "status": eff.status.value,
                       "timestamp": rfc3339(eff.timestamp)}
            if eff.info:
                payload["info"] = eff.info[:50]
            if eff.vendor_error_code:
                payload["vendorErrorCode"] = eff.vendor_error_code[:50]
            text = self._send("status", "StatusNotification", payload, eff, now)
            if text:
                return text
        # whitepaper A04.FR.01/02: queued critical security events (e.g. StartupOfTheDevice after the statuses of
        # the boot), then the transaction messages
        text = self._next_security_event(now) or self._next_outbox(now)
        if text:
            return text
        if self.heartbeat_interval > 0 and now - self.last_sent_at >= self.heartbeat_interval:
            return self._send("heartbeat", "Heartbeat", {}, None, now)
        return None

    def _next_outbox(self, now: float) -> str | None:
        while True:
            item = self.queue.head()
            if item is None:
                return None
            if item.next_attempt_at is not None and item.next_attempt_at > now:
                return None
            if item.action not in TX_ACTIONS:
                return None   # written by the 2.0.1 adapter: it waits for a 2.0.1 connection (the runtime pins it)
            payload = dict(item.payload)
            stored = item.text     # the text as queued: sent as it is unless the transactionId is filled in now
            if item.action != "StartTransaction" and item.tx_key:
                transaction_id = self._transaction_id_of(item.tx_key)
                if transaction_id is None:
                    # ordered queue: its StartTransaction is gone (given up), so this can never be delivered
                    self.queue.give_up(item, "the transaction's StartTransaction was never confirmed")
                    continue
                current = payload.get("transactionId")
                if type(current) is not int or current != int(transaction_id):
                    payload["transactionId"] = int(transaction_id)
                    stored = None
            # checked when queued: only transactionId (an int from the CSMS) differs
            text = self._send("outbox", item.action, payload, item, now, validated=self.queue.checked(item.seq),
                              payload_text=stored)
            if text:
                return text
            self.queue.give_up(item, "payload fails the OCPP 1.6 schema")

    def _transaction_id_of(self, tx_key: str) -> str | None:
        """The CSMS's transactionId of a queued message's transaction. Once known it never changes, so it is kept
        in memory (until any store rollback, which may have taken back the write it was read from)."""
        if self._tid_rollbacks != self.db.rollbacks:
            self._tid_rollbacks = self.db.rollbacks
            self._tid_cache.clear()
        transaction_id = self._tid_cache.get(tx_key)
        if transaction_id is None:
            transaction_id = self.transactions.transaction_id_of(tx_key)
            if transaction_id is not None:
                if len(self._tid_cache) >= 16:
                    self._tid_cache.clear()
                self._tid_cache[tx_key] = transaction_id
        return transaction_id

    def _boot_payload(self) -> dict:
        i = self.station_info
        p = {"chargePointVendor": i["vendor"], "chargePointModel": i["model"]}
        if i.get("serial"):
            p["chargePointSerialNumber"] = i["serial"]
        if i.get("firmware_version"):
            p["firmwareVersion"] = i["firmware_version"]
        for key, name in (("meter_type", "meterType"), ("meter_serial", "meterSerialNumber"), ("iccid", "iccid"),
                          ("imsi", "imsi")):
            if i.get(key):
                p[name] = i[key]
        return p

    def next_deadline(self) -> float | None:
        """When poll() has something to do next (the runtime sleeps until then unless input arrives)."""
        times = [self.endpoint.next_deadline(), self.engine.next_deadline()]
        times.append(self.queue.flush_deadline())
        if self.online and not self.endpoint.busy:
            if self.registration != "accepted":
                times.append(self.next_boot_at)
            else:
                if self.heartbeat_interval > 0:
                    times.append(self.last_sent_at + self.heartbeat_interval)
                item = self.queue.head()
                if item is not None and item.action in TX_ACTIONS:   # a 2.0.1 item waits: no busy loop
                    times.append(item.next_attempt_at or 0.0)
                if self._volatile or self._statuses or self._boot_triggered:
                    times.append(0.0)
                times.append(self._security_deadline())     # A04: a queued event, or its retry after a failure
                times.append(self._signing_deadline())      # A02/A03: a certificate switch, a renewal
        times = [t for t in times if t is not None]
        return min(times) if times else None
