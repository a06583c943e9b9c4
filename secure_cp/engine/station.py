"""The station model: connectors, authorization, transactions, metering, availability, reset.

Pure logic under the DESIGN.md rules: every entry point takes ``now`` (seconds since the epoch, the station's
clock) and returns nothing; what must happen outside (messages to send) is appended to ``effects`` for the
protocol adapter to drain. Hardware commands go to the injected adapter and durable state to the injected
store objects; no sockets, no asyncio, no wall clock here.
"""
from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Callable, Iterable, Sequence

from ..store.tables import TxRecord   # the record type only: the engine never opens the database
from ..hal.api import EmergencyStop, EvReady, EvseReady, Fault, HalEvent, HardwareAdapter, IdTagPresented, MeterReading, Plugged
from .authorization import Authorizer, info_valid
from .model import (UNITS, AuthorizeRequest, Effect, Notice, ResetNow, SampledValue, Sample, SignedReadingWanted,
                    Status, StatusChanged, StopReason, TxMeterValues, TxSigned, TxStarted, TxStopped, TxUpdated,
                    drop_intermediate, rfc3339, sampled_value)
from .settings import EngineSettings

log = logging.getLogger("secure_cp.engine")

ENERGY = "Energy.Active.Import.Register"
BEGIN, END = "Transaction.Begin", "Transaction.End"
MAX_STOP_SAMPLES = 200      # cap of StopTxn*Data samples kept per transaction (begin and end always kept)
#: Start/stop points whose condition is "an EV is there" (no parking bay sensor: occupancy = a plugged cable).
PLUG_POINTS = frozenset({"EVConnected", "ParkingBayOccupancy"})
#: Start points that need both halves (plugged AND authorized): the power path can close only then. DataSigned is
#: treated alike (the meter signs at the start of the energy transfer).
BOTH_POINTS = frozenset({"PowerPathClosed", "EnergyTransfer", "DataSigned"})
#: Stop points ended by a de-authorization: Authorized itself, and the power path / energy transfer, which open
#: when the authorization goes (EnergyTransfer is implemented as "the power path opens": the engine cannot see a
#: pause of the EV apart from it).
AUTH_STOP_POINTS = frozenset({"Authorized", "PowerPathClosed", "EnergyTransfer"})
#: Stop points ended by unplugging.
PLUG_STOP_POINTS = frozenset({"EVConnected", "ParkingBayOccupancy", "PowerPathClosed", "EnergyTransfer"})
#: Why connectors are held Unavailable (Engine.hold): an OnIdle reset, a firmware installation waiting.
HOLD_RESET = "reset"
HOLD_FIRMWARE = "firmware"


@lru_cache(maxsize=16)
def _with_units(measurands: tuple[str, ...]) -> tuple[tuple[str, str | None], ...]:
    """(measurand, unit) pairs of a configured measurand list (a handful of lists, asked for on every reading)."""
    return tuple((m, UNITS.get(m)) for m in measurands)


@dataclass
class PendingAuth:
    """An identifier accepted for a connector that has no transaction yet (waiting for the plug)."""
    id_tag: str
    parent_id_tag: str | None
    deadline: float
    remote: bool = False


@dataclass
class Connector:
    id: int
    plugged: bool = False
    ev_ready: bool = True
    evse_ready: bool = True
    fault: Fault | None = None            # fatal fault -> Faulted
    warning: Fault | None = None          # non-fatal: reported with the status
    operative: bool = True
    scheduled: bool | None = None         # availability to apply once the transaction ends
    holds: set[str] = field(default_factory=set)   # why it is held Unavailable (Engine.hold); never stored
    tx_key: str | None = None
    auth: PendingAuth | None = None
    finishing: bool = False
    locked_for: str | None = None         # cable kept locked after a DeAuthorized stop, for this identifier
    invalid_suspended: bool = False
    invalid_at_wh: int | None = None      # MaxEnergyOnInvalidId counts from this reading (identifier invalidated)
    ev_side_disconnected: bool = False
    tx_authorized: bool = False           # the running transaction has an accepted identifier now
    tx_deadline: float | None = None      # started on Authorized without a cable: ConnectionTimeOut for the plug
    next_sample: float | None = None
    next_ended_sample: float | None = None   # the next reading kept for the end of the transaction
    last_energy: int = 0
    # status reporting (MinimumStatusDuration)
    shown: tuple | None = None            # (status, error_code, info) currently in force
    shown_since: float = 0.0
    reported: tuple | None = None         # last one emitted


@dataclass
class _AuthQuery:
    connector_id: int
    remote: bool = False


class Engine:
    """One charging station. ``protocol`` ("1.6" / "2.0.1") is recorded on transactions and passed on to the
    settings (``use_protocol``, when the settings object has it: the start/stop points depend on it).

    ``evse_of`` maps connector -> EVSE (default: each connector its own EVSE); one transaction per EVSE
    (2.0.1 E01.FR.14)."""

    def __init__(self, hal: HardwareAdapter, settings: EngineSettings, transactions, kv, authorizer: Authorizer,
                 *, protocol: str = "1.6", new_key: Callable[[], str] | None = None,
                 evse_of: dict[int, int] | None = None):
        self.hal = hal
        self.settings = settings
        self.transactions = transactions
        self.kv = kv
        self.auth = authorizer
        self.protocol = protocol
        self._new_key = new_key or (lambda: uuid.uuid4().hex)
        self.connectors: dict[int, Connector] = {cid: Connector(cid) for cid in hal.connector_ids()}
        self.evse_of: dict[int, int] = {cid: (evse_of or {}).get(cid, cid) for cid in self.connectors}
        self.station_operative = True
        self.station_status_reported: tuple | None = None
        self.effects: list[Effect] = []
        self.online = False
        self.emergency = False
        self._queries: dict[str, _AuthQuery] = {}
        self._next_aligned: float | None = None          # next clock-aligned reading that is sent
        self._next_aligned_ended: float | None = None    # next clock-aligned reading kept for transaction ends
        self._booted = False
        # Eichrecht (issue #5): the runtime sets ``signing`` when a signing meter (or the gateway key) is there; the
        # engine then asks for a signed begin and end reading of every transaction (``signed_requests``, fetched off
        # the loop by the runtime) and holds the transaction's end message until the end record arrived
        self.signing = False
        self.signed_requests: list[SignedReadingWanted] = []
        #: the contexts of intermediate readings sent with a signed value (the adapter's SignedPolicy.updated: OCA
        #: note Table 20, SampledDataSignUpdatedReadings / AlignedDataSignUpdatedReadings); set by the runtime
        self.signed_updates: Callable[[], frozenset[str]] = frozenset

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def boot(self, now: float) -> None:
        """Restore persisted state; end transactions a power cut or reboot interrupted (1.6 §4.10 PowerLoss/Reboot)."""
        self.station_operative = bool(self.kv.get("avail.0", True))
        for c in self.connectors.values():
            c.operative = bool(self.kv.get(f"avail.{c.id}", True))
            sched = self.kv.get(f"avail_sched.{c.id}")
            c.scheduled = None if sched is None else bool(sched)
        clean = self.kv.get("clean_shutdown")
        self.kv.delete("clean_shutdown")
        reason = StopReason(clean) if clean in {r.value for r in StopReason} else StopReason.POWER_LOSS
        for tx in self.transactions.recent(200):
            if BEGIN in tx.extra.get("sig_wait", ()):   # asked before the restart, never arrived (see END below)
                self._signed_done(tx, BEGIN, None, "no signed begin reading before the restart")
            if tx.stopped_at is None or tx.extra.get("q_stop"):
                continue
            # stopped but its StopTransaction never reached the outbox: queue it again (idempotent in the adapter)
            if not tx.extra.get("q_start"):
                self.effects.append(TxStarted(tx.tx_key))
            if END in tx.extra.get("sig_wait", ()) and not self.signing:   # signing switched off meanwhile
                self._signed_done(tx, END, None, "signing switched off before the end reading arrived")
            if END in tx.extra.get("sig_wait", ()):
                # the final signed reading was asked for before the restart and did not reach the legal log (the
                # runtime put one that did on the record: eichrecht.service.SignedReadings.recover). The power path
                # has been open since the stop, so the meter's register still holds the end: ask again
                log.warning("transaction %s: no signed end reading before the restart; asking the meter again",
                            tx.tx_key)
                self.signed_requests.append(SignedReadingWanted(tx.tx_key, tx.connector_id, END, "E"))
                continue
            self.effects.append(TxStopped(tx.tx_key, self._transaction_data(tx)))
        for tx in self.transactions.open():
            if not tx.extra.get("q_start"):
                self.effects.append(TxStarted(tx.tx_key))
            c = self.connectors.get(tx.connector_id)
            at = tx.last_meter_at or tx.started_at
            meter = tx.last_meter_wh if tx.last_meter_wh is not None else tx.meter_start_wh
            log.warning("transaction %s on connector %s was interrupted; ending it (%s, %d Wh at %s)",
                        tx.tx_key, tx.connector_id, reason.value, meter, at)
            # a signing meter still holds the register where the power cut left it: ask it for the end record
            self._finish_record(tx, meter, at, reason, None, hold=self._want_signed(tx, END))
            if c is not None:
                c.last_energy = meter
                self._apply_scheduled(c)
        # the inputs as they are now (a car may be plugged in already); no transaction starts from them alone
        current = getattr(self.hal, "current_inputs", None)
        for ev in (current() if current else []):
            c = self.connectors.get(getattr(ev, "connector_id", -1))
            if c is None:
                continue
            if isinstance(ev, Plugged):
                c.plugged = ev.plugged
            elif isinstance(ev, EvReady):
                c.ev_ready = ev.ready
            elif isinstance(ev, EvseReady):
                c.evse_ready = ev.ready
            elif isinstance(ev, Fault):
                self._on_fault(c, ev, now)
        self._booted = True
        self._plan_aligned(now)
        for c in self.connectors.values():
            self.hal.permit_charging(c.id, False)
            self._refresh(c, now, force=True)
        self._refresh_station(now)

    def shutdown(self, now: float, reason: StopReason = StopReason.REBOOT) -> None:
        """Orderly stop (SIGTERM): persist the last meter values; the transactions end at the next boot with ``reason``."""
        for c in self.connectors.values():
            if c.tx_key:
                self._read(c, now, persist=True)
        self.kv.set("clean_shutdown", reason.value)

    def set_online(self, online: bool, now: float) -> None:
        self.online = online
        if not online:
            # outstanding Authorize requests will never be answered: decide them with the offline rules
            for tag in list(self._queries):
                self.on_authorize_result(tag, None, now)

    @property
    def protocol(self) -> str:
        return self._protocol

    @protocol.setter
    def protocol(self, value: str) -> None:
        self._protocol = value
        use = getattr(self.settings, "use_protocol", None)
        if use is not None:
            use(value)

    def _start_points(self) -> set[str]:
        points = set(self.settings.tx_start_points)
        return points or {"PowerPathClosed"}   # none configured: the 1.6 transaction rather than none at all

    def _stops_on_auth_loss(self) -> bool:
        return bool(set(self.settings.tx_stop_points) & AUTH_STOP_POINTS)

    def _stops_on_unplug(self) -> bool:
        return bool(set(self.settings.tx_stop_points) & PLUG_STOP_POINTS)

    def _evse_busy(self, c: Connector) -> bool:
        """E01.FR.14: another connector of the same EVSE has a transaction."""
        evse = self.evse_of.get(c.id, c.id)
        return any(o.tx_key for o in self.connectors.values() if o.id != c.id and self.evse_of.get(o.id) == evse)

    def drain(self) -> list[Effect]:
        out, self.effects = self.effects, []
        return out

    # ---- queries --------------------------------------------------------------------------------------------
    def status_of(self, connector_id: int) -> Status:
        if connector_id == 0:
            return self._station_status()[0]
        return self._compute(self.connectors[connector_id])[0]

    def tx_on(self, connector_id: int):
        c = self.connectors.get(connector_id)
        return self.transactions.get(c.tx_key) if c and c.tx_key else None

    def find_tx(self, pred: Callable) -> Connector | None:
        for c in self.connectors.values():
            if c.tx_key:
                tx = self.transactions.get(c.tx_key)
                if tx is not None and pred(tx):
                    return c
        return None

    # ---- hardware inputs ------------------------------------------------------------------------------------
    @property
    def booted(self) -> bool:
        """boot() ran: before it the engine refuses inputs (the runtime holds them back until then)."""
        return self._booted

    def on_hal(self, ev: HalEvent, now: float) -> None:
        if not self._booted:
            # an un-booted engine has not ended the transactions a power cut interrupted: a transaction started now
            # would be taken for one of them. boot() reads the input state itself (current_inputs)
            log.warning("hardware input %s before boot: refused", type(ev).__name__)
            return
        if isinstance(ev, IdTagPresented):
            self.present_tag(ev.id_tag, ev.connector_id, now)
            return
        if isinstance(ev, EmergencyStop):
            self._on_emergency(ev.active, now)
            return
        c = self.connectors.get(ev.connector_id)
        if c is None:
            log.error("hardware reported %r for unknown connector %s; ignored", ev, ev.connector_id)
            return
        if isinstance(ev, Plugged):
            self._on_plug(c, ev.plugged, now)
        elif isinstance(ev, EvReady):
            c.ev_ready = ev.ready
        elif isinstance(ev, EvseReady):
            c.evse_ready = ev.ready
        elif isinstance(ev, Fault):
            self._on_fault(c, ev, now)
        self._refresh(c, now)

    def _on_plug(self, c: Connector, plugged: bool, now: float) -> None:
        c.plugged = plugged
        if plugged:
            c.ev_side_disconnected = False
            c.finishing = False
            if c.tx_key:   # the cable of a running transaction (started on Authorized, or back after an unplug)
                c.tx_deadline = None
                self.hal.lock_connector(c.id, True)
                if c.tx_authorized and not c.invalid_suspended:
                    self.hal.permit_charging(c.id, True)
                self.effects.append(TxUpdated(c.tx_key, "CablePluggedIn"))
                return
            self._maybe_start(c, now, "plug")
            return
        c.finishing = False
        if c.locked_for is not None and self.settings.unlock_on_ev_side_disconnect:
            # the cable kept locked for its owner after a DeAuthorized stop (1.6 §3.5.4) left the EV: there is
            # nothing left to keep, and UnlockConnectorOnEVSideDisconnect / TxCtrlr.UnlockOnEVSideDisconnect
            # unlocks on the EV-side unplug; the owner's next presentation is a new authorization (TC_C_34_CS)
            c.locked_for = None
            self.hal.lock_connector(c.id, False)
        if c.tx_key:
            # 2.0.1 E09: StopTxOnEVSideDisconnect deauthorizes the transaction, which ends it where the authorization
            # is a stop point (E06.FR.04, TC_E_17_CS); 1.6 has the same rule through its EVConnected stop point
            deauthorized = self.settings.stop_on_ev_side_disconnect and self._stops_on_auth_loss()
            if self._stops_on_unplug() or deauthorized:
                self._stop(c, StopReason.EV_DISCONNECTED, now, unlock=self.settings.unlock_on_ev_side_disconnect)
            else:  # 1.6 §4.9: keep the transaction, report SuspendedEV "EV side disconnected", keep the cable locked
                c.ev_side_disconnected = True
                self.effects.append(TxUpdated(c.tx_key, "EVCommunicationLost"))

    def _on_emergency(self, active: bool, now: float) -> None:
        """Emergency stop: every transaction ends (reason EmergencyStop), every connector Faulted until released."""
        self.emergency = active
        for c in self.connectors.values():
            if active:
                c.auth = None
                if c.tx_key:
                    self._stop(c, StopReason.EMERGENCY_STOP, now)
            self._refresh(c, now)

    def _on_fault(self, c: Connector, ev: Fault, now: float) -> None:
        if ev.error_code is None or ev.error_code == "NoError":
            c.fault = None
            c.warning = None
            return
        if ev.fatal:
            c.fault = ev
            if c.tx_key:  # a fault that prevents charging: open the power path; the transaction ends (C9)
                self._stop(c, StopReason.OTHER, now)
        else:
            c.warning = ev

    # ---- authorization ---------------------------------------------------------------------------------------
    def present_tag(self, id_tag: str, connector_id: int, now: float) -> None:
        """A driver presented an identifier (RFID): stop their transaction or authorize a new one."""
        c = self.find_tx(lambda tx: tx.id_tag == id_tag and self.connectors[tx.connector_id].tx_authorized)
        if c is not None:  # the same identifier ends its own transaction (or authorization) without asking anybody
            self._end_authorization(c, now, id_tag)
            self._refresh(c, now)
            return
        for lc in self.connectors.values():   # the owner of a cable kept locked after DeAuthorized returns
            if lc.locked_for == id_tag:
                lc.locked_for = None
                self.hal.lock_connector(lc.id, False)
                self._refresh(lc, now)
                return
        for pc in self.connectors.values():   # second presentation cancels a pending authorization (B1)
            if pc.auth and pc.auth.id_tag == id_tag and not pc.auth.remote:
                pc.auth = None
                self._refresh(pc, now)
                return
        # 2.0.1 C01.FR.03 (b): a valid identifier of the same group known locally (list or cache) ends the
        # authorization without an Authorize (1.6 §4.1 allows this: "MAY send an Authorize.req")
        info, _ = self.auth.local_info(id_tag, now)
        gc = self._group_tx(info.get("parentIdTag")) if info_valid(info, now) else None
        if gc is not None:
            self._end_authorization(gc, now, id_tag)
            self._refresh(gc, now)
            return
        self._authorize(id_tag, connector_id, now, remote=False)

    def _group_tx(self, parent: str | None) -> Connector | None:
        """The connector of an authorized transaction of group ``parent`` (parentIdTag / groupIdToken), if any."""
        if not parent:
            return None
        return self.find_tx(lambda tx: tx.extra.get("parent") == parent
                            and self.connectors[tx.connector_id].tx_authorized)

    def _authorize(self, id_tag: str, connector_id: int, now: float, *, remote: bool) -> None:
        if not self.settings.auth_enabled:   # 2.0.1 AuthCtrlr.Enabled false: no authorization, nothing cached
            self._authorized(id_tag, {"status": "Accepted"}, connector_id, now, remote)
            return
        if not self.online:
            self._authorized(id_tag, self.auth.decide_offline(id_tag, now), connector_id, now, remote)
            return
        info = self.auth.decide_online(id_tag, now)
        if info is not None:
            self._authorized(id_tag, info, connector_id, now, remote)
            return
        if id_tag not in self._queries:
            self.effects.append(AuthorizeRequest(id_tag))
        self._queries[id_tag] = _AuthQuery(connector_id, remote)

    def on_authorize_result(self, id_tag: str, info: dict | None, now: float, *, cache: bool = True) -> None:
        """The CSMS answered an Authorize (info = idTagInfo) or could not (None: timeout, error, offline).
        ``cache`` False: the answer is not put in the authorization cache (2.0.1 C02.FR.03: NoAuthorization)."""
        q = self._queries.pop(id_tag, None)
        if info is None:
            info = self.auth.decide_offline(id_tag, now)
        elif cache:
            self.auth.learn(id_tag, info, now)
        if q is not None:
            self._authorized(id_tag, info, q.connector_id, now, q.remote)

    def authorize_decided(self, id_tag: str, info: dict, connector_id: int, now: float, *,
                          cache: bool = True) -> str:
        """An authorization decided outside the engine's own Authorize (2.0.1 C07: an eMAID judged with its
        contract certificate by the CSMS, or offline by the local rules): learned like an Authorize answer
        (``cache``), then applied to the connector (0: any) as if the engine had asked. Returns the status of
        ``info`` that was applied ("Accepted" = it authorizes)."""
        if cache:
            self.auth.learn(id_tag, info, now)
        self._authorized(id_tag, info, connector_id, now, False)
        if info_valid(info, now):
            return "Accepted"
        status = str(info.get("status") or "Invalid")
        return "Expired" if status == "Accepted" else status        # past its expiry date

    def _authorized(self, id_tag: str, info: dict, connector_id: int, now: float, remote: bool) -> None:
        parent = info.get("parentIdTag")
        if info_valid(info, now) and parent:
            # 1.6 §3.5.3: an identifier of the same group (parentIdTag) may end the transaction
            c = self._group_tx(parent)
            if c is not None and not remote:
                self._end_authorization(c, now, id_tag)
                self._refresh(c, now)
                return
        if not info_valid(info, now):
            self.effects.append(Notice(connector_id, f"identifier {id_tag} not accepted ({info.get('status')})"))
            return
        # 2.0.1 C01.FR.19-21: a non-empty idTokenInfo.evseId lists the only EVSEs this identifier may charge at
        evses = frozenset(info.get("evseId") or ()) or None
        t = self._unauthorized_tx(connector_id, id_tag, evses)
        if t is not None:   # a transaction started without an identifier (EVConnected ...): it is now authorized
            self._authorize_tx(t, id_tag, parent, remote, now)
            self._refresh(t, now)
            return
        c = self._pick_connector(connector_id, evses)
        if c is None:
            self.effects.append(Notice(connector_id, "no connector available" if evses is None
                                       else f"identifier {id_tag} not allowed at this EVSE (C01.FR.21)"))
            return
        c.auth = PendingAuth(id_tag, parent, now + max(self.settings.connection_timeout, 1), remote)
        self._maybe_start(c, now, "auth")
        self._refresh(c, now)

    def _unauthorized_tx(self, connector_id: int, id_tag: str | None = None,
                         evses: frozenset[int] | None = None) -> Connector | None:
        """The connector whose running transaction waits for an identifier (the given one, or the first), at one of
        ``evses`` (None: any). With ``id_tag``: a transaction that had another identifier, which lost its
        authorization, is not taken over by a different one (2.0.1 C01.FR.23)."""
        for c in self.connectors.values():
            if not (c.tx_key and not c.tx_authorized and c.fault is None and connector_id in (0, c.id)
                    and self._at(c, evses)):
                continue
            tx = self.transactions.get(c.tx_key) if id_tag is not None else None
            if tx is not None and tx.id_tag and tx.id_tag != id_tag:
                continue
            return c
        return None

    def _at(self, c: Connector, evses: frozenset[int] | None) -> bool:
        """Whether the connector belongs to one of ``evses`` (None: no restriction)."""
        return evses is None or self.evse_of.get(c.id, c.id) in evses

    def _authorize_tx(self, c: Connector, id_tag: str, parent: str | None, remote: bool, now: float) -> None:
        tx = self.transactions.get(c.tx_key)
        tx.extra["parent"] = parent
        if remote:
            tx.extra["remote"] = True
        self.transactions.update(c.tx_key, id_tag=id_tag, extra=tx.extra)
        c.tx_authorized = True
        c.invalid_suspended = False
        c.invalid_at_wh = None
        if c.plugged:
            self.hal.permit_charging(c.id, True)
        log.info("transaction %s on connector %d authorized for %s", c.tx_key, c.id, id_tag)
        self.effects.append(TxUpdated(c.tx_key, "RemoteStart" if remote else "Authorized"))

    def _end_authorization(self, c: Connector, now: float, id_tag: str) -> None:
        """The driver (same identifier or group) ends the authorization: the transaction ends when Authorized (or
        the power path) is a stop point, else only the power path opens and the transaction goes on until a stop
        point ends it (2.0.1 E06: e.g. TxStopPoint EVConnected waits for the unplug)."""
        if self._stops_on_auth_loss():
            self._stop(c, StopReason.LOCAL, now, id_tag=id_tag)
            return
        self._deauthorize(c)

    def _deauthorize(self, c: Connector) -> None:
        c.tx_authorized = False
        self.hal.permit_charging(c.id, False)
        self.effects.append(TxUpdated(c.tx_key, "Deauthorized"))

    def _usable(self, c: Connector) -> bool:
        return (c.tx_key is None and c.fault is None and not self.emergency and c.operative
                and self.station_operative and not c.holds and not self._evse_busy(c))

    def _pick_connector(self, connector_id: int, evses: frozenset[int] | None = None) -> Connector | None:
        if connector_id:
            c = self.connectors.get(connector_id)
            return c if c is not None and self._usable(c) and c.auth is None and self._at(c, evses) else None
        free = [c for c in self.connectors.values() if self._usable(c) and c.auth is None and self._at(c, evses)]
        plugged = [c for c in free if c.plugged and not c.finishing]
        return (plugged or free or [None])[0]

    # ---- remote commands -----------------------------------------------------------------------------------
    def remote_start(self, id_tag: str, connector_id: int | None, now: float, *, authorize: bool = True) -> bool:
        """RemoteStartTransaction / RequestStartTransaction: Accepted (True) or Rejected (False). ``authorize``
        False: never an Authorize for this identifier (2.0.1 C03.FR.01 / C05.FR.01: idToken type Central)."""
        # a transaction already running without an identifier (TxStartPoint EVConnected, cable first) is
        # authorized by the remote start (2.0.1 F02: Updated with triggerReason RemoteStart)
        c = self._unauthorized_tx(connector_id or 0) or self._pick_connector(connector_id or 0)
        if c is None:
            return False
        if self.settings.authorize_remote_tx and authorize:
            self._authorize(id_tag, c.id, now, remote=True)
        else:
            self._authorized(id_tag, {"status": "Accepted"}, c.id, now, True)
        return True

    def remote_stop(self, tx_key: str, now: float) -> bool:
        c = self.find_tx(lambda tx: tx.tx_key == tx_key)
        if c is None:
            return False
        self._stop(c, StopReason.REMOTE, now)
        self._refresh(c, now)
        return True

    def on_tx_confirmed(self, tx_key: str, info: dict | None, now: float, *, cache: bool = True) -> None:
        """StartTransaction.conf: the CSMS's verdict on the identifier (1.6 §4.8, StopTransactionOnInvalidId).
        ``cache`` False: not put in the authorization cache (2.0.1 C02.FR.03: NoAuthorization)."""
        tx = self.transactions.get(tx_key)
        if tx is None or info is None or not tx.id_tag:
            return
        if cache:
            self.auth.learn(tx.id_tag, info, now)
        if info.get("status") == "Accepted" or tx.stopped_at is not None or not self.settings.auth_enabled:
            return
        c = self.connectors.get(tx.connector_id)
        if c is None or c.tx_key != tx_key or not c.tx_authorized:
            return
        if self.settings.stop_on_invalid_id and not self._stops_on_auth_loss():
            self._deauthorize(c)   # 2.0.1: the power path opens; the transaction waits for its stop point
        elif self.settings.stop_on_invalid_id:
            # 1.6 §3.5.4: keep the cable locked until the owner presents the identifier again
            self._stop(c, StopReason.DE_AUTHORIZED, now, unlock=False)
            c.locked_for = tx.id_tag
        elif self.settings.max_energy_on_invalid_id <= 0:
            c.invalid_suspended = True
            self.hal.permit_charging(c.id, False)
        else:
            # MaxEnergyOnInvalidId: charging goes on (no Deauthorized, no SuspendedEVSE: TC_C_15_CS) until that much
            # energy more has been delivered; checked at each sample, then the energy offer is suspended
            c.invalid_at_wh = self._read(c, now, persist=False).energy_wh
        self._refresh(c, now)

    def stop_transaction(self, tx_key: str, reason: StopReason, now: float) -> bool:
        c = self.find_tx(lambda tx: tx.tx_key == tx_key)
        if c is None:
            return False
        self._stop(c, reason, now)
        self._refresh(c, now)
        return True

    def change_availability(self, connector_id: int, operative: bool, now: float) -> str:
        """1.6 §5.2 / 2.0.1 G03-G04: "Accepted", "Scheduled" or "Rejected" (unknown connector)."""
        if connector_id != 0 and connector_id not in self.connectors:
            return "Rejected"
        targets = list(self.connectors.values()) if connector_id == 0 else [self.connectors[connector_id]]
        if connector_id == 0:
            self.station_operative = operative
            self.kv.set("avail.0", operative)
        result = "Accepted"
        for c in targets:
            if c.tx_key and not operative:
                c.scheduled = False
                self.kv.set(f"avail_sched.{c.id}", False)
                result = "Scheduled"
                continue
            c.scheduled = None
            self.kv.delete(f"avail_sched.{c.id}")
            c.operative = operative
            self.kv.set(f"avail.{c.id}", operative)
            if not operative:
                c.auth = None
            self._refresh(c, now)
        if connector_id == 0 and result == "Scheduled":
            # the station-wide flag follows once the last transaction has ended
            self.station_operative = True
            self.kv.set("avail.0", True)
            self.kv.set("avail_sched.0", False)
        self._refresh_station(now)
        return result

    def unlock(self, connector_id: int, now: float) -> str:
        """1.6 §5.18: stop a transaction on the connector (UnlockCommand), then unlock."""
        c = self.connectors.get(connector_id)
        if c is None or not self.hal.has_lock():
            return "NotSupported"
        if c.tx_key:
            self._stop(c, StopReason.UNLOCK_COMMAND, now, unlock=False)
        ok = self.hal.lock_connector(c.id, False)
        self._refresh(c, now)
        return "Unlocked" if ok else "UnlockFailed"

    def reset(self, hard: bool, now: float) -> None:
        """Stop every transaction with the reset's reason, then ask the runtime to reboot (1.6 §5.14)."""
        reason = StopReason.HARD_RESET if hard else StopReason.SOFT_RESET
        for c in self.connectors.values():
            if c.tx_key:
                self._stop(c, reason, now)
                self._refresh(c, now)
        self.kv.set("boot_reason", "RemoteReset")
        self.effects.append(ResetNow(hard))

    def hold(self, connector_ids: Iterable[int], reason: str, hold: bool, now: float) -> None:
        """Hold connectors Unavailable while something waits for the running transactions to end: the connectors
        without one are Unavailable (no new transaction can start; the running ones go on and their connectors
        follow when they end). ``reason``: ``HOLD_RESET`` (2.0.1 B12 step 3a, an OnIdle reset) or ``HOLD_FIRMWARE``
        (L01.FR.07, a firmware installation); a connector stays held while any reason holds it, so lifting one
        (``hold`` False: an EVSE reset that is done, a firmware update that failed) leaves the other in force.
        Kept in memory only: it is no availability set by the CSMS, so it neither survives the reboot nor changes
        what B11.FR.02 / B12.FR.06 restore."""
        for cid in connector_ids:
            c = self.connectors.get(cid)
            if c is None or (reason in c.holds) == hold:
                continue
            if hold:
                c.holds.add(reason)
                c.auth = None   # an identifier waiting for the cable would start a transaction
            else:
                c.holds.discard(reason)
            self._refresh(c, now, force=True)

    def clear_cache(self) -> bool:
        self.auth.cache.clear()
        return True

    def trigger_meter(self, connector_id: int, now: float, measurands: list[str] | None = None) -> None:
        """TriggerMessage MeterValues: one sample per connector (0 = all) with context Trigger, of ``measurands``
        (default: the sampled measurands)."""
        if not self._booted:
            return
        wanted = list(measurands) if measurands is not None else self.settings.sampled_measurands
        for c in self.connectors.values():
            if connector_id in (0, c.id):
                sample = self._sample(c, wanted, "Trigger", now)
                if sample is not None:
                    self.effects.append(TxMeterValues(c.tx_key, c.id, (sample,)))

    def resend_statuses(self, now: float) -> None:
        """After BootNotification Accepted: every connector's status, connector 0 included (1.6 §4.2)."""
        self._emit_station(now, force=True)
        for c in self.connectors.values():
            c.reported = None
            self._refresh(c, now, force=True)

    # ---- transactions ---------------------------------------------------------------------------------------
    def _start_trigger(self, c: Connector, cause: str, points: set[str]) -> str | None:
        """Whether a start point holds, and which event started the transaction (2.0.1 TriggerReason names,
        E01 S1-S6): None = no start point holds. A start that needed both halves keeps the 1.6-compatible
        "Authorized" (the identifier is what the driver did last or the plug completes an authorization)."""
        plugged, authorized = c.plugged, c.auth is not None
        if cause == "plug" and plugged and points & PLUG_POINTS:
            return "CablePluggedIn" if "EVConnected" in points else "EVDetected"
        if cause == "auth" and authorized and "Authorized" in points:
            return "Authorized"
        if plugged and authorized and points & (BOTH_POINTS | PLUG_POINTS | {"Authorized"}):
            return "Authorized"
        if plugged and points & PLUG_POINTS:
            return "CablePluggedIn" if "EVConnected" in points else "EVDetected"
        if authorized and "Authorized" in points:
            return "Authorized"
        return None

    def _maybe_start(self, c: Connector, now: float, cause: str = "") -> None:
        """Start a transaction when any start point holds (EngineSettings.tx_start_points); the power path closes
        only when the connector is plugged AND authorized."""
        if c.tx_key or c.fault is not None or self.emergency or self._evse_busy(c):
            return
        if not (c.operative and self.station_operative) or c.holds:
            return
        trigger = self._start_trigger(c, cause, self._start_points())
        if trigger is None:
            return
        auth, c.auth = c.auth, None
        reading = self._read(c, now, persist=False)
        tx_key = self._new_key()
        begin = self._stop_sample(reading, "Transaction.Begin", now)
        started = self._select(reading, self.settings.tx_started_measurands)
        rec = TxRecord(tx_key=tx_key, evse_id=self.evse_of.get(c.id, c.id), connector_id=c.id,
                       id_tag=auth.id_tag if auth else "", started_at=rfc3339(now),
                       meter_start_wh=reading.energy_wh, protocol=self.protocol, last_meter_wh=reading.energy_wh,
                       last_meter_at=rfc3339(now),
                       extra={"parent": auth.parent_id_tag if auth else None, "remote": bool(auth and auth.remote),
                              "trigger": trigger, "samples": [begin.to_json()] if begin else []})
        if started:   # the begin reading of the Started event (2.0.1 TxStartedMeasurands, E01.FR.09 / J02)
            rec.extra["begin"] = Sample(now, "Transaction.Begin", started).to_json()
        self.transactions.create(rec)
        c.tx_key = tx_key
        c.tx_authorized = auth is not None
        c.tx_deadline = None if c.plugged else now + max(self.settings.connection_timeout, 1)
        c.invalid_suspended = False
        c.finishing = False
        if c.plugged:
            self.hal.lock_connector(c.id, True)
        if c.plugged and c.tx_authorized:
            self.hal.permit_charging(c.id, True)
        c.next_sample = self._first(now, self.settings.sample_interval)
        c.next_ended_sample = self._first(now, self.settings.stop_txn_sampled_interval)
        log.info("transaction %s started on connector %d (%s) for %r at %d Wh", tx_key, c.id, trigger,
                 auth.id_tag if auth else "", reading.energy_wh)
        self.effects.append(TxStarted(tx_key))
        self._want_signed(rec, BEGIN)

    def _stop(self, c: Connector, reason: StopReason, now: float, *, id_tag: str | None = None,
              unlock: bool = True) -> None:
        tx = self.transactions.get(c.tx_key)
        self.hal.permit_charging(c.id, False)
        reading = self._read(c, now, persist=False)
        c.tx_key = None
        c.tx_authorized = False
        c.tx_deadline = None
        c.next_sample = None
        c.next_ended_sample = None
        c.invalid_suspended = False
        c.invalid_at_wh = None
        c.ev_side_disconnected = False
        if unlock:
            self.hal.lock_connector(c.id, False)
        c.finishing = c.plugged
        if tx is None:
            return
        end = self._stop_sample(reading, "Transaction.End", now)
        if end:
            tx.extra.setdefault("samples", []).append(end.to_json())
        self._finish_record(tx, reading.energy_wh, rfc3339(now), reason, id_tag, hold=self._want_signed(tx, END))
        log.info("transaction %s on connector %d stopped (%s) at %d Wh", tx.tx_key, c.id, reason.value,
                 reading.energy_wh)
        self._apply_scheduled(c)

    def _finish_record(self, tx, meter_wh: int, at: str, reason: StopReason, id_tag: str | None, *,
                       hold: bool = False) -> None:
        """Store the end of the transaction and emit TxStopped; ``hold``: not before the signed end reading arrived
        (on_signed_reading), so that StopTransaction / TransactionEvent Ended carries it (OCA note §2.3.1)."""
        meter_wh = max(meter_wh, tx.meter_start_wh)   # a register never runs backwards within one transaction
        self.transactions.update(tx.tx_key, stopped_at=at, meter_stop_wh=meter_wh, stop_reason=reason.value,
                                 stop_id_tag=id_tag, last_meter_wh=meter_wh, last_meter_at=at, extra=tx.extra)
        tx.stopped_at, tx.meter_stop_wh, tx.stop_reason, tx.stop_id_tag = at, meter_wh, reason.value, id_tag
        if not hold:
            self.effects.append(TxStopped(tx.tx_key, self._transaction_data(tx)))

    # ---- signed readings (Eichrecht, issue #5) ------------------------------------------------------------------
    def _want_signed(self, tx, context: str) -> bool:
        """Ask the runtime for a signed reading of ``context`` (marked on the record, so a restart knows it was
        asked for); False when the station does not sign."""
        if not self.signing:
            return False
        waiting = tx.extra.setdefault("sig_wait", [])
        if context not in waiting:
            waiting.append(context)
        self.transactions.update(tx.tx_key, extra=tx.extra)
        self.signed_requests.append(SignedReadingWanted(tx.tx_key, tx.connector_id, context,
                                                        "B" if context == BEGIN else "E"))
        return True

    def _signed_done(self, tx, context: str, record: dict | None, error: str | None) -> None:
        waiting = tx.extra.get("sig_wait", [])
        if context in waiting:
            waiting.remove(context)
        if record is not None:
            tx.extra.setdefault("signed", {})[context] = record
        else:
            tx.extra.setdefault("signed_errors", {})[context] = error or "no signed reading"
        self.transactions.update(tx.tx_key, extra=tx.extra)

    def restore_signed(self, tx_key: str, context: str, raw: str, at: float, *, key_hex: str | None = None) -> None:
        """Before boot: a signed record asked for before a restart reached the legal log but not the transaction
        record (the runtime found it there); put it on the record, as on_signed_reading would have. No effects:
        boot() then finishes the transaction with it."""
        tx = self.transactions.get(tx_key)
        if tx is not None and context in tx.extra.get("sig_wait", ()):
            self._signed_done(tx, context, {"raw": raw, "t": at, "key": key_hex}, None)

    def on_signed_reading(self, tx_key: str, context: str, raw: str | None, now: float, *, key_hex: str | None = None,
                          error: str | None = None) -> None:
        """The signed reading asked for by a SignedReadingWanted: ``raw`` the OCMF text exactly as the legal log
        holds it, or None (the meter failed or did not answer within [eichrecht] end_timeout: ``error`` says why;
        no value is made up). The end reading releases the held TxStopped."""
        tx = self.transactions.get(tx_key)
        if tx is None or context not in tx.extra.get("sig_wait", ()):
            return                      # answered already (a restart asked again), or unknown
        record = {"raw": raw, "t": now, "key": key_hex} if raw is not None else None
        self._signed_done(tx, context, record, error)
        if context == BEGIN and raw is not None and tx.stopped_at is None:
            # a begin record that comes after the stop goes with the end message only (its time order stays)
            c = self.connectors.get(tx.connector_id)
            if c is not None and c.tx_key == tx_key:
                # a reading now: a power cut from here on ends the transaction no earlier than this message
                self._read(c, now, persist=True)
            self.effects.append(TxSigned(tx_key, context))
        if context == END and tx.stopped_at is not None:
            self.effects.append(TxStopped(tx_key, self._transaction_data(tx)))

    # ---- signed intermediate readings and missing begin records (Eichrecht, issue #5; OCA note Table 20) -------------
    def _emit_intermediate(self, c: Connector, sample: Sample) -> None:
        """A periodic (Sample.Periodic) or clock-aligned (Sample.Clock) reading to send. In a transaction whose
        context the configuration signs (``signed_updates``) and with the energy register among its values (the
        measurand the meter signs), it waits for the meter's signed record (SignedReadingWanted with the reading,
        marker C: OCMF "charging"); :meth:`on_signed_sample` then sends both. Otherwise it goes out at once."""
        signed = (self.signing and c.tx_key is not None and sample.context in self.signed_updates()
                  and any(v.measurand == ENERGY for v in sample.values))
        if not signed:
            self.effects.append(TxMeterValues(c.tx_key, c.id, (sample,)))
            return
        self.signed_requests.append(SignedReadingWanted(c.tx_key, c.id, sample.context, "C", sample=sample))

    def on_signed_sample(self, req: SignedReadingWanted, raw: str | None, *, key_hex: str | None = None,
                         error: str | None = None) -> None:
        """The signed record of an intermediate reading (``req.sample``), already in the legal log, or None (the
        meter failed or was too slow: ``error``; the runtime logged it as a security event): the unsigned values go
        out either way, the signed one only when there is one; nothing is made up."""
        if req.sample is None:
            return
        if raw is None:
            log.warning("transaction %s: %s reading sent without a signed value (%s)", req.tx_key, req.context,
                        error or "no signed reading")
        self.effects.append(TxMeterValues(req.tx_key, req.connector_id, (req.sample,), signed_raw=raw,
                                          signed_key=key_hex if raw is not None else None))

    def signed_begin_missing(self, tx_key: str, now: float) -> None:
        """The signed begin reading failed (on_signed_reading got None): the adapter's begin messages that waited
        for it (1.6 StartTxnSampledData MeterValues, 2.0.1 Started at TxStartPoint DataSigned) go out without it."""
        tx = self.transactions.get(tx_key)
        if tx is not None and tx.stopped_at is None and BEGIN not in tx.extra.get("sig_wait", ()):
            self.effects.append(TxSigned(tx_key, BEGIN))

    def _transaction_data(self, tx) -> tuple[Sample, ...]:
        return tuple(Sample.from_json(s) for s in tx.extra.get("samples", []))

    def _apply_scheduled(self, c: Connector) -> None:
        if c.scheduled is None:
            return
        c.operative, c.scheduled = c.scheduled, None
        self.kv.set(f"avail.{c.id}", c.operative)
        self.kv.delete(f"avail_sched.{c.id}")
        if self.kv.get("avail_sched.0") is not None and not any(x.scheduled is not None for x in self.connectors.values()):
            self.station_operative = bool(self.kv.get("avail_sched.0"))
            self.kv.set("avail.0", self.station_operative)
            self.kv.delete("avail_sched.0")

    # ---- metering ----------------------------------------------------------------------------------------------
    def _read(self, c: Connector, now: float, *, persist: bool) -> MeterReading:
        try:
            reading = self.hal.read_meter(c.id)
        except Exception as exc:  # a meter fault must not stop the station; report it, keep the last value
            log.error("meter of connector %d failed: %s", c.id, exc)
            if c.warning is None or c.warning.error_code != "PowerMeterFailure":
                c.warning = Fault(c.id, "PowerMeterFailure", str(exc)[:50], fatal=False)
            return MeterReading(energy_wh=c.last_energy, values={})
        if c.warning is not None and c.warning.error_code == "PowerMeterFailure":
            c.warning = None
        c.last_energy = reading.energy_wh
        if persist and c.tx_key:
            self.transactions.set_last_meter(c.tx_key, reading.energy_wh, rfc3339(now))
        return reading

    @staticmethod
    def _select(reading: MeterReading, measurands: Sequence[str]) -> tuple[SampledValue, ...]:
        """The values of ``measurands`` the meter measured, in that order and with their units; the energy register
        is always known (the integer Wh reading, when the meter has no value of its own)."""
        values = reading.values
        if ENERGY not in values:
            values = {**values, ENERGY: Decimal(reading.energy_wh)}
        out = []
        for m, unit in _with_units(tuple(measurands)):   # (a plain loop: fewer instructions than a comprehension)
            v = values.get(m)
            if v is not None:      # leave out what the meter does not measure
                out.append(sampled_value((m, v, unit)))
        return tuple(out)

    def _sample(self, c: Connector, measurands: list[str], context: str, now: float) -> Sample | None:
        return self._sample_of(self._read(c, now, persist=True), measurands, context, now)

    def _sample_of(self, reading: MeterReading, measurands: Sequence[str], context: str, at: float) -> Sample | None:
        values = self._select(reading, measurands)
        return Sample(at, context, values) if values else None

    def _stop_sample(self, reading: MeterReading, context: str, now: float) -> Sample | None:
        measurands = list(dict.fromkeys(self.settings.stop_txn_sampled_measurands +
                                        self.settings.stop_txn_aligned_measurands))
        values = self._select(reading, measurands)
        return Sample(now, context, values) if values else None

    @staticmethod
    def _first(now: float, iv: int) -> float | None:
        """The first reading of a transaction interval (0 = none)."""
        return now + iv if iv > 0 else None

    @staticmethod
    def _following(due: float, iv: int, now: float) -> float | None:
        """The reading after one due at ``due``; a timer that slept through several intervals does not burst."""
        if iv <= 0:
            return None
        return due + iv if due + iv > now else now + iv

    def _plan_aligned(self, now: float) -> None:
        self._next_aligned = self._aligned_after(now, self.settings.aligned_interval)
        self._next_aligned_ended = self._aligned_after(now, self.settings.stop_txn_aligned_interval)

    @staticmethod
    def _aligned_after(now: float, iv: int) -> float | None:
        if iv <= 0:
            return None
        day = now - (now % 86400)      # clock-aligned intervals count from midnight UTC (1.6 §9.1.6)
        k = math.floor((now - day) / iv) + 1
        t = day + k * iv
        return t if t <= day + 86400 else day + 86400

    def _keep_stop_sample(self, c: Connector, sample: Sample | None) -> None:
        """Keep a reading for the end of the transaction, on the record (so it survives a power cut). At
        MAX_STOP_SAMPLES every second intermediate reading goes (2.0.1 J02.FR.20: intermediate ones first, so the
        readings still span the whole transaction), the first (begin) one always stays."""
        if sample is None or not c.tx_key:
            return
        tx = self.transactions.get(c.tx_key)
        samples = tx.extra.setdefault("samples", [])
        if len(samples) >= MAX_STOP_SAMPLES:
            samples[:] = drop_intermediate(samples, keep_last=False)
        samples.append(sample.to_json())
        self.transactions.update(c.tx_key, extra=tx.extra)

    def settings_changed(self, now: float) -> None:
        """Intervals changed: re-plan the timers (ChangeConfiguration / SetVariables)."""
        self._plan_aligned(now)
        for c in self.connectors.values():
            if c.tx_key:
                c.next_sample = self._first(now, self.settings.sample_interval)
                c.next_ended_sample = self._first(now, self.settings.stop_txn_sampled_interval)

    # ---- timers ------------------------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        times = [self._next_aligned, self._next_aligned_ended]
        for c in self.connectors.values():
            times.append(c.next_sample)
            times.append(c.next_ended_sample)
            times.append(c.tx_deadline)
            if c.auth:
                times.append(c.auth.deadline)
            if c.shown != c.reported and c.shown is not None:
                times.append(c.shown_since + self.settings.minimum_status_duration)
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def tick(self, now: float) -> None:
        for c in self.connectors.values():
            if c.auth and now >= c.auth.deadline:    # ConnectionTimeOut: the cable never came (B1)
                log.info("connector %d: authorization of %s timed out (ConnectionTimeOut)", c.id, c.auth.id_tag)
                c.auth = None
            if c.tx_key and c.tx_deadline is not None and now >= c.tx_deadline:   # 2.0.1 E03: EVConnectTimeout
                log.info("connector %d: transaction %s: no cable within ConnectionTimeOut", c.id, c.tx_key)
                self._stop(c, StopReason.TIMEOUT, now)
            if c.tx_key:
                self._tick_sampled(c, now)
            self._refresh(c, now)
        self._tick_aligned(now)

    def _tick_sampled(self, c: Connector, now: float) -> None:
        """Periodic readings of a transaction (context Sample.Periodic): the ones sent (1.6 MeterValueSampleInterval,
        2.0.1 TxUpdatedInterval / J02.FR.11) and the ones kept for its end (1.6 StopTxnSampledData, 2.0.1
        TxEndedInterval); one meter reading serves both when they fall due together."""
        s = self.settings
        send = c.next_sample is not None and now >= c.next_sample
        keep = c.next_ended_sample is not None and now >= c.next_ended_sample
        if not (send or keep):
            return
        reading = self._read(c, now, persist=True)
        if send:
            c.next_sample = self._following(c.next_sample, s.sample_interval, now)
            sample = self._sample_of(reading, s.sampled_measurands, "Sample.Periodic", now)
            if sample is not None:
                self._emit_intermediate(c, sample)
        if keep:
            c.next_ended_sample = self._following(c.next_ended_sample, s.stop_txn_sampled_interval, now)
            self._keep_stop_sample(c, self._sample_of(reading, s.stop_txn_sampled_measurands, "Sample.Periodic", now))
        self._check_invalid_energy(c, now)

    def _tick_aligned(self, now: float) -> None:
        """Clock-aligned readings (context Sample.Clock), identified by their interval boundary, not by when the
        timer fired (1.6 §9.1.5): the ones sent (MeterValues outside a transaction, in it 1.6 MeterValues with the
        transactionId / 2.0.1 TransactionEvent Updated MeterValueClock: J01.FR.14/22) and the ones kept for the end
        of a transaction (StopTxnAlignedData / AlignedDataCtrlr.TxEndedMeasurands every TxEndedInterval). With
        SendDuringIdle none is sent while any transaction runs (J01.FR.20: this station has the variable for the
        whole station only)."""
        s = self.settings
        send = self._next_aligned is not None and now >= self._next_aligned
        keep = self._next_aligned_ended is not None and now >= self._next_aligned_ended
        if not (send or keep):
            return
        send_at, keep_at = self._next_aligned, self._next_aligned_ended
        if send:
            self._next_aligned = self._aligned_after(now, s.aligned_interval)
            if s.aligned_send_during_idle and any(c.tx_key for c in self.connectors.values()):
                send = False
        if keep:
            self._next_aligned_ended = self._aligned_after(now, s.stop_txn_aligned_interval)
        for c in self.connectors.values():
            keep_c = keep and c.tx_key is not None and bool(s.stop_txn_aligned_measurands)
            if not ((send and s.aligned_measurands) or keep_c):
                continue
            reading = self._read(c, now, persist=True)
            if send:
                sample = self._sample_of(reading, s.aligned_measurands, "Sample.Clock", send_at)
                if sample is not None:
                    self._emit_intermediate(c, sample)
            if keep_c:
                self._keep_stop_sample(c, self._sample_of(reading, s.stop_txn_aligned_measurands, "Sample.Clock",
                                                          keep_at))

    def _check_invalid_energy(self, c: Connector, now: float) -> None:
        if c.invalid_at_wh is None or not c.tx_key:
            return
        if c.last_energy - c.invalid_at_wh >= self.settings.max_energy_on_invalid_id:
            c.invalid_suspended = True   # MaxEnergyOnInvalidId delivered: SuspendedEVSE from now on
            c.invalid_at_wh = None
            self.hal.permit_charging(c.id, False)

    # ---- status ------------------------------------------------------------------------------------------------
    def _compute(self, c: Connector) -> tuple[Status, str, str, str]:
        w = c.warning
        code, info, vendor = (w.error_code or "NoError", w.info, w.vendor_error_code) if w else ("NoError", "", "")
        if c.fault is not None:
            return Status.FAULTED, c.fault.error_code or "OtherError", c.fault.info, c.fault.vendor_error_code
        if self.emergency:
            return Status.FAULTED, "OtherError", "Emergency stop", ""
        if c.tx_key:
            if c.ev_side_disconnected:
                return Status.SUSPENDED_EV, code, info or "EV side disconnected", vendor
            if not c.plugged or not c.tx_authorized:   # a transaction waiting for its cable or identifier
                return Status.PREPARING, code, info, vendor
            if not c.evse_ready or c.invalid_suspended:
                return Status.SUSPENDED_EVSE, code, info, vendor
            if not c.ev_ready:
                return Status.SUSPENDED_EV, code, info, vendor
            return Status.CHARGING, code, info, vendor
        if not (c.operative and self.station_operative) or c.holds:
            return Status.UNAVAILABLE, code, info, vendor
        if c.finishing and c.plugged:
            return Status.FINISHING, code, info, vendor
        if c.plugged or c.auth is not None:
            return Status.PREPARING, code, info, vendor
        return Status.AVAILABLE, code, info, vendor

    def _refresh(self, c: Connector, now: float, *, force: bool = False) -> None:
        """Emit the connector's status once it has lasted MinimumStatusDuration (1.6 §4.9); ``force``: now."""
        if not self._booted:
            return
        state = self._compute(c)
        if state != c.shown:
            c.shown, c.shown_since = state, now
        if c.shown == c.reported:
            return
        if force or now - c.shown_since >= self.settings.minimum_status_duration:
            c.reported = c.shown
            status, code, info, vendor = c.shown
            self.effects.append(StatusChanged(c.id, status, code, info, vendor, now))

    def _station_status(self) -> tuple[Status, str, str, str]:
        return (Status.AVAILABLE if self.station_operative else Status.UNAVAILABLE), "NoError", "", ""

    def _refresh_station(self, now: float) -> None:
        self._emit_station(now, force=False)

    def _emit_station(self, now: float, force: bool) -> None:
        state = self._station_status()
        if force or state != self.station_status_reported:
            self.station_status_reported = state
            self.effects.append(StatusChanged(0, state[0], state[1], state[2], state[3], now))
