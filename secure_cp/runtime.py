"""The asyncio runtime: wires hardware, engine, protocol adapter, store and transport, and keeps time.

Everything here is I/O glue. The engine and the adapter are synchronous and sans-I/O; this module feeds them
socket input, hardware events and timer ticks, and sends what they return, in order, on the current connection.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import os
import ssl
import time
from dataclasses import dataclass
from typing import Callable


from .config import StationConfig
from .devicemodel import Config16, DeviceModel
from .eichrecht.ocpp import BEGIN, EVENT_MISSING
from .eichrecht.service import SignedReadings, resolve_mode
from .devicemodel.v201 import define_v201
from .engine import Authorizer, Engine, StopReason, rfc3339
from .engine.datatransfer import DataTransferRegistry, echo_handler
from .engine.locallist import LocalAuthList
from .hal import HardwareAdapter, load_adapter
from .hal.api import EvReady, EvseReady, Fault, IdTagPresented, Plugged
from .logsetup import add_file_log, remove_file_log
from .redact import redact_frame
from .runtime_files import StationFiles
from .runtime_security import StationSecurity
from .security.iso15118 import ISO15118_COMPONENT, REFRESH_RETRY, Iso15118Api, OcspCache
from .securityevents import SecurityEvents
from .store import (AuthCache, Database, KeyValue, LocalList, Outbox, SqliteVariableBackend, StoreError,
                    Transactions)
from .transport import Transport, TransportConfig
from .adapter_base import Hooks, StoreFailedInCall
from .v16.adapter import Ocpp16Adapter
from .v16.settings import Settings16
from .v201.messages import auth_info_16
from .v201.netprofiles import NetworkProfile, NetworkProfiles

log = logging.getLogger("secure_cp.runtime")
#: Send-queue entry that is not a frame: reconnect once everything queued before it has been sent.
_RECONNECT_MARK = "\x00reconnect"
frames_log = logging.getLogger("secure_cp.frames")
#: s between two looks at the free space of the data directory (taken when an event comes, never a wake-up of its own)
STORAGE_CHECK_S = 60.0
#: RetryBackOffWaitMinimum may be 0; the transport waits at least this long, so a dead CSMS is no busy loop.
MIN_RECONNECT_WAIT = 0.05
#: Configuration keys (1.6 names; 2.0.1 SecurityCtrlr.BasicAuthPassword arrives as AuthorizationKey) whose change is the
#: security event ReconfigurationOfSecurityParameters ("keys or the security profile used", Appendix 1 / whitepaper §8).
SECURITY_PARAMETERS = frozenset({"AuthorizationKey", "SecurityProfile", "AdditionalRootCertificateCheck", "CpoName"})


class Clock:
    """Wall-clock seconds with an offset the CSMS may correct (BootNotification/Heartbeat currentTime)."""

    def __init__(self, source: Callable[[], float] = time.time):
        self._source = source
        self.offset = 0.0

    def now(self) -> float:
        return self._source() + self.offset

    def set(self, ts: float) -> float:
        """Take ``ts`` as the current time; returns the correction applied (0: none)."""
        delta = ts - self.now()
        if abs(delta) >= 1.0:          # sub-second differences are network latency, not a wrong clock
            self.offset += delta
            log.info("clock adjusted by %+.3f s from the CSMS", delta)
            return delta
        return 0.0


@dataclass
class FrameRecord:
    at: float
    direction: str      # "tx" | "rx"
    text: str


class Station(StationSecurity, StationFiles):
    """One charging station process: ``await Station(cfg).run()`` until ``stop()``. The certificate / TLS / key
    methods are in runtime_security.StationSecurity, the log upload / firmware update ones in
    runtime_files.StationFiles."""

    boot_retry_s = 5.0    # the wait before the next boot when the store refused the last one (StoreError)

    def __init__(self, cfg: StationConfig, hal: HardwareAdapter | None = None, *, clock: Clock | None = None):
        self.cfg = cfg
        self.clock = clock or Clock()
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        if hal is None:
            options = dict(cfg.hardware_options)
            if cfg.hardware == "simulated":
                options.setdefault("connectors", cfg.connectors)
                options.setdefault("state_file", str(cfg.data_dir / "sim-meter.json"))
            hal = load_adapter(cfg.hardware, **options)
        self.hal = hal
        self.frames: collections.deque[FrameRecord] = collections.deque(maxlen=500)
        self.datatransfer = DataTransferRegistry()
        self.datatransfer.register("secure-cp", echo_handler)
        self._stopping = False
        self._wake = asyncio.Event()
        self._sendq: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        self._sending = False                        # the sender task is waiting for a queued frame to go out
        self._generation = 0
        self._sleep_until: float | None = None     # when the ticker's alarm rings (None: no alarm)
        self._sleeping = False                     # the ticker waits for its alarm or a wake-up
        self._alarm: asyncio.TimerHandle | None = None
        self._reload = False
        self._reboot = False
        self._early_inputs: list = []               # non-state hardware events before the engine booted
        self.boots = 0
        self._tls_contexts: dict = {}               # security profile (or (it, "fallback")) -> ssl.SSLContext
        self._transfer_ctx: ssl.SSLContext | None = None   # firmware / log servers (see _transfer_context)
        self._fallback_next = False                 # M05.FR.14: the next TLS attempt verifies with the fallback root
        self._fallback_used = False                 # the current / last TLS attempt used the fallback root
        self._blocking: set[asyncio.Task] = set()   # Hooks.run_blocking work in flight (kept referenced)
        self._held: list[str] | None = None         # frames held while a firmware signer's OCSP check runs
        self._cert_round_failures = 0               # failed attempts with a new station certificate (A02.FR.28)
        self._last_tls_event: str | None = None     # the TLS security event last recorded (see _record_tls_failure)
        self._ocsp_wake = asyncio.Event()            # wakes the OCSP refresher (see _ocsp_refresher)
        self._ocsp_force = False                     # M06.FR.07: a new V2G certificate: ask for every status again
        self._ocsp_waiting = False                   # the refresher has work but waits for a registered connection
        self._storage_low = False                    # MemoryExhaustion raised, free space not back yet (_check_storage)
        self._storage_next = 0.0                     # time.monotonic() of the next look at the free space
        self._file_log = add_file_log(cfg.data_dir)   # the DiagnosticsLog of GetLog (N01.FR.04)
        self._open_store()
        #: the API an ISO 15118 stack calls (security.iso15118: M01/M02, M06, C07); the same object across resets
        self.iso15118 = self.make_iso15118_api()

    # ---- building the parts -----------------------------------------------------------------------------------
    def _open_store(self) -> None:
        cfg = self.cfg
        self.db = Database(cfg.data_dir / "station.db")
        self.kv = KeyValue(self.db, "engine")
        self.outbox = Outbox(self.db)
        self.transactions = Transactions(self.db)
        self.model = DeviceModel(SqliteVariableBackend(self.db))
        overrides = dict(cfg.ocpp_config)
        # Eichrecht (issue #5): the signing mode in force; the OCA note's keys only where the station signs
        self.signed = SignedReadings(resolve_mode(cfg.eichrecht_mode, self.hal), self.db, self.hal, cfg,
                                     self.clock.now)
        self.config = Config16(self.model, number_of_connectors=len(self.hal.connector_ids()),
                               supported_measurands=set(self.hal.supported_measurands()),
                               supported_profiles=["Core", "LocalAuthListManagement"], overrides=overrides,
                               signed_meter_values=self.signed.enabled)
        if cfg.password and self.model.get("SecurityCtrlr", "BasicAuthPassword") is None:
            self.config.set_internal("AuthorizationKey", cfg.password)
        evses = self.evse_layout()
        define_v201(self.model, evses={e: n for e, n in enumerate(self._evse_sizes(), start=1)},
                    supported_measurands=set(self.hal.supported_measurands()),
                    station_info={**{k: v for k, v in self._station_info().items() if v},
                                  "signed_meter_values": self.signed.enabled})
        self.reset_backoff_defaults()
        self.certificates = self._certificate_store()
        self.cert_signing = self._cert_signing()
        self.network = NetworkProfiles(KeyValue(self.db, "netprofiles"), self.model, self._configured_profile,
                                       cfg.identity, max_security_profile=self._max_security_profile)
        self.settings = Settings16(self.config)
        self.cache = AuthCache(self.db)
        self.local_list = self._local_auth_list()
        self.engine = Engine(self.hal, self.settings, self.transactions, self.kv,
                             Authorizer(self.settings, self.cache, local_list=self.local_list.lookup),
                             protocol="1.6", evse_of={cid: evse for cid, (evse, _) in evses.items()})
        self.engine.signing = self.signed.enabled
        # OCA note Table 20: which intermediate readings are signed, from the active adapter's configuration
        self.engine.signed_updates = lambda: self.adapter.signed_policy().updated
        hooks = Hooks(set_clock=self.clock.set, config_changed=self._config_changed,
                      station_certificate_changed=self._station_certificate_changed, run_blocking=self._run_blocking,
                      v2g_certificate_changed=self._v2g_certificate_changed)
        self.security_events = SecurityEvents(self.db)
        self.logs = self._log_uploads()
        self.firmware = self._firmware_updates()
        self._record_startup()
        self.adapters: dict = {}
        for proto in cfg.protocols:   # one adapter per offered version; the negotiated one is active
            if proto == "ocpp1.6":
                self.adapters[proto] = Ocpp16Adapter(
                    engine=self.engine, config=self.config, settings=self.settings, db=self.db, outbox=self.outbox,
                    transactions=self.transactions, station_info=self._station_info(),
                    datatransfer=self.datatransfer, call_timeout=cfg.call_timeout, hooks=hooks,
                    local_list=self.local_list, logs=self.logs, certificates=self.certificates,
                    firmware=self.firmware, security_events=self.security_events,
                    cert_signing=self.cert_signing)
                if self.signed.enabled:   # OCA note §3.2.1 value form, §3.3.1 MeterPublicKey<connector>
                    self.adapters[proto].signed_form = cfg.eichrecht_value_16
                    self.adapters[proto].meter_key_evses = {cid: evse for cid, (evse, _) in evses.items()}
            elif proto == "ocpp2.0.1":
                from .v201.adapter import Ocpp201Adapter
                self.adapters[proto] = Ocpp201Adapter(
                    engine=self.engine, model=self.model, settings=self.settings, db=self.db, outbox=self.outbox,
                    transactions=self.transactions, kv=KeyValue(self.db, "v201"), station_info=self._station_info(),
                    layout=evses, datatransfer=self.datatransfer, call_timeout=cfg.call_timeout, hooks=hooks,
                    local_list=self.local_list, network=self.network, security_events=self.security_events,
                    logs=self.logs, certificates=self.certificates, firmware=self.firmware,
                    cert_signing=self.cert_signing)
        self.adapter = self.adapters[self._preferred_protocol()]
        self.engine.protocol = self.adapter.version
        self.plan = self.network.plan(self._int_variable("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", 3),
                                      self._usable_profile)   # B10.FR.04: the connection order of this boot
        self.hal.set_listener(self._on_hal)
        self.firmware.resume()     # an image installed before this boot is active now: Installed (L01.FR.28)

    def _run_blocking(self, work: Callable, done: Callable) -> None:
        """Hooks.run_blocking: ``work()`` in a worker thread (a key generation in a TPM must not stall heartbeats and
        replies, DESIGN.md rule 7), then ``done(result_or_exception, now)`` as one event; its texts are sent. A result
        that arrives after the station was rebuilt (reset, store reload) is dropped: the adapter it was for is gone."""
        adapters = self.adapters

        async def run() -> None:
            try:
                result = await asyncio.to_thread(work)
            except Exception as exc:  # noqa: BLE001 - the adapter reports it (e.g. the key backend failed)
                result = exc
            if self.adapters is not adapters or self._stopping:
                log.info("blocking work finished after the station was rebuilt: result dropped")
                return
            self._send_all(self._event(done, result, self.clock.now()))
        task = asyncio.get_running_loop().create_task(run(), name="blocking-work")
        self._blocking.add(task)
        task.add_done_callback(self._blocking.discard)

    def _station_certificate_changed(self) -> None:
        """A02.FR.08: a new station certificate is valid. The next TLS connection uses it; under security profile 3
        the station reconnects now (after the response that installed it has been sent)."""
        self._tls_contexts.clear()
        if self.transport_config().security_profile == 3:
            asyncio.get_running_loop().call_soon(self._sendq.put_nowait, (self._generation, _RECONNECT_MARK))

    def _record_startup(self) -> None:
        """Security events of this start (A04, Appendix 1, both critical): ResetOrReboot when the previous run ended
        in a reset (its boot reason is still stored), and StartupOfTheDevice always. TC_B_21 step 11, TC_G_18."""
        now = rfc3339(self.clock.now())
        reason = KeyValue(self.db, "v201").get("boot_reason") or self.kv.get("boot_reason")
        if reason and reason != "PowerUp":
            self.security_events.record("ResetOrReboot", now, f"boot reason {reason}")
        self.security_events.record("StartupOfTheDevice", now)
        self._check_storage()

    def _check_storage(self) -> None:
        """MemoryExhaustion (2.0.1 Appendix 1 / 1.6 whitepaper §8, critical: "the Flash or RAM memory of the Charging
        Station is getting full"): raised when the file system of the data directory has less than [station]
        storage_low_mb free, while there is still room to record and queue it; once per crossing (again only after
        the free space rose above 1.25 x the mark). Looked at when the station starts and then, at most every
        STORAGE_CHECK_S, when an event comes (_event): no timer of its own."""
        self._storage_next = time.monotonic() + STORAGE_CHECK_S
        limit = self.cfg.storage_low_mb
        if limit <= 0:
            return
        try:
            fs = os.statvfs(self.cfg.data_dir)
        except OSError as exc:
            log.warning("cannot read the free space of %s: %s", self.cfg.data_dir, exc)
            return
        free_mb = fs.f_bavail * fs.f_frsize / 1e6
        if free_mb >= limit:
            if self._storage_low and free_mb >= limit * 1.25:
                self._storage_low = False
                log.info("storage: %.1f MB free in %s again", free_mb, self.cfg.data_dir)
            return
        if self._storage_low:
            return
        self._storage_low = True
        text = f"{free_mb:.1f} MB free on the file system of the data directory, below storage_low_mb = {limit:g}"
        log.error("storage getting full: %s", text)
        try:
            self.security_events.record("MemoryExhaustion", rfc3339(self.clock.now()), text)
        except StoreError as exc:
            log.critical("MemoryExhaustion could not be recorded: %s", exc)

    def _local_auth_list(self) -> LocalAuthList:
        """The Local Authorization List over the shared variables: LocalAuthListEnabled = LocalAuthListCtrlr.Enabled,
        SendLocalListMaxLength = LocalAuthListCtrlr.ItemsPerMessage (keys16 mapping), LocalAuthListCtrlr.BytesPerMessage
        (2.0.1 only), and the capacity LocalAuthListMaxLength (1.6) / the maxLimit of LocalAuthListCtrlr.Entries
        (2.0.1), whichever is smaller."""
        model = self.model

        def number(component: str, variable: str, default: int) -> int:
            raw = model.get(component, variable)
            try:
                return int(raw) if raw is not None else default
            except ValueError:
                return default

        def max_entries() -> int:
            limits = [number("OCPP16Ctrlr", "LocalAuthListMaxLength", 1000)]
            entries = model.definition("LocalAuthListCtrlr", "Entries")
            if entries is not None and entries.max is not None:
                limits.append(int(entries.max))
            return min(limits)

        def entries_changed(count: int) -> None:   # LocalAuthListCtrlr.Entries: the current amount (D01.FR.12)
            if model.definition("LocalAuthListCtrlr", "Entries") is not None:
                model.set("LocalAuthListCtrlr", "Entries", str(count), force=True)

        local = LocalAuthList(
            LocalList(self.db),
            enabled=lambda: (model.get("LocalAuthListCtrlr", "Enabled") or "false").strip().lower() == "true",
            max_entries=max_entries, items_per_message=lambda: number("LocalAuthListCtrlr", "ItemsPerMessage", 100),
            bytes_per_message=lambda: number("LocalAuthListCtrlr", "BytesPerMessage", 65536),
            on_change=entries_changed)
        entries_changed(len(local))
        return local

    def _evse_sizes(self) -> list[int]:
        n = len(self.hal.connector_ids())
        sizes = list(self.cfg.evses) if sum(self.cfg.evses) == n else [1] * n   # custom adapters: 1 per EVSE
        return sizes

    def evse_layout(self) -> dict[int, tuple[int, int]]:
        """Engine connector id (1..N) -> (EVSE id, connector id on that EVSE), from the [[evse]] tables."""
        layout, flat = {}, 0
        for evse_id, count in enumerate(self._evse_sizes(), start=1):
            for local in range(1, count + 1):
                flat += 1
                layout[flat] = (evse_id, local)
        return layout

    # OCPP version of each kind of queued transaction message (1.6 MeterValues only queue inside transactions)
    _TX_ACTION_VERSION = {"StartTransaction": "ocpp1.6", "StopTransaction": "ocpp1.6", "MeterValues": "ocpp1.6",
                          "TransactionEvent": "ocpp2.0.1"}

    _SUBPROTOCOL = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}

    def _pinned_protocol(self) -> str | None:
        """A transaction begun under one version is finished in it: queued transaction messages, and open
        transactions, pin the version they were written in (None: nothing pins)."""
        head = self.outbox.head()
        if head is not None:
            pinned = self._TX_ACTION_VERSION.get(head.action)
            if pinned in self.adapters:
                return pinned
        for tx in self.transactions.open():
            pinned = self._SUBPROTOCOL.get(tx.protocol)
            if pinned in self.adapters:
                return pinned
        return None

    def _preferred_protocol(self) -> str:
        return self._pinned_protocol() or self.cfg.protocols[0]

    def offered_protocols(self) -> list[str]:
        pinned = self._pinned_protocol()
        return [pinned] if pinned else list(self.cfg.protocols)

    def _station_info(self) -> dict:
        c = self.cfg
        return {"vendor": c.vendor, "model": c.model, "serial": c.serial, "firmware_version": c.firmware_version,
                "meter_type": c.meter_type, "meter_serial": c.meter_serial}

    def _password(self) -> bytes | None:
        key = self.config.get_str("AuthorizationKey") if "AuthorizationKey" in self.config.keys() else None
        key = key or self.cfg.password
        if not key:
            return None
        if self.cfg.password_encoding == "raw":
            return bytes.fromhex(key)
        return key.encode()

    def _configured_profile(self) -> NetworkProfile:
        """The [csms] section as the network connection profile of the first slot (see v201.netprofiles)."""
        d = self.model.definition("OCPPCommCtrlr", "NetworkConfigurationPriority")
        first = int(d.values_list[0]) if d is not None and d.values_list else 1
        return NetworkProfile(slot=first, url=self.cfg.csms_url, security_profile=self.cfg.security_profile,
                              message_timeout=max(1, int(self.cfg.call_timeout)), from_config=True)

    def _int_variable(self, component: str, variable: str, default: int) -> int:
        raw = self.model.get(component, variable)
        try:
            return int(raw) if raw is not None else default
        except ValueError:
            return default

    def _usable_profile(self, profile: NetworkProfile) -> bool:
        """A profile the transport can use (e.g. security profile 1 needs a password); others are skipped."""
        try:
            self.transport_config(profile).validate()
            if profile.security_profile >= 2:
                self._tls_context(profile.security_profile)   # the [security] files load (TlsConfigError otherwise)
        except ValueError as exc:
            log.error("network profile %s cannot be used: %s", profile.describe(), exc)
            return False
        return True

    def transport_config(self, profile: NetworkProfile | None = None) -> TransportConfig:
        """The transport settings for ``profile``, by default the one the connection plan is at (B10).

        Profiles 1 and 2 send the Basic-auth password; profile 3 authenticates with the station certificate and sends
        none (A00 table 11). Profiles 2 and 3 get the TLS context of the [security] files, made when a connection
        attempt needs it: files that do not load make a failed attempt (logged, retried with back-off, the station runs
        on offline); at boot such a profile is skipped like any other unusable one (_usable_profile)."""
        profile = profile or self.plan.current
        if profile.from_config:   # the configuration may have changed since boot (simulator API)
            profile = self._configured_profile()
        ping = self.settings.websocket_ping_interval
        sp = profile.security_profile
        return TransportConfig(url=profile.url, identity=self.cfg.identity,
                               subprotocols=self.offered_protocols(), security_profile=sp,
                               password=self._password() if sp in (1, 2) else None,
                               ssl_context=(lambda: self._tls_context(sp, attempt=True)) if sp >= 2 else None,
                               ping_interval=ping or None, **self._backoff())

    def reset_backoff_defaults(self) -> None:
        """The defaults of OCPPCommCtrlr.RetryBackOffWaitMinimum / RetryBackOffRandomRange / RetryBackOffRepeatTimes
        come from the ``[csms]`` reconnect_min / reconnect_max (in whole seconds, as the variables): the minimum is
        reconnect_min, the random range reconnect_min, the repeat count the doublings from reconnect_min that stay
        within reconnect_max. A value the CSMS wrote (SetVariables, kept in the store) wins over the default. Called
        at start and when the simulator API changes the configured back-off."""
        cfg = self.cfg
        base = max(MIN_RECONNECT_WAIT, cfg.reconnect_min)
        defaults = {"RetryBackOffWaitMinimum": int(cfg.reconnect_min), "RetryBackOffRandomRange": int(cfg.reconnect_min),
                    "RetryBackOffRepeatTimes": int(math.log2(max(1.0, cfg.reconnect_max / base)))}
        for name, value in defaults.items():
            d = self.model.definition("OCPPCommCtrlr", name)
            if d is not None and d.default != str(value):
                self.model.define(dataclasses.replace(d, default=str(value)))

    def _backoff(self) -> dict:
        """The reconnect back-off of the transport (2.0.1 Part 4 §5.3, TC_B_57_CS), for both OCPP versions: always
        OCPPCommCtrlr.RetryBackOffWaitMinimum / RetryBackOffRandomRange / RetryBackOffRepeatTimes, whose defaults are
        the ``[csms]`` reconnect settings (``reset_backoff_defaults``) and which SetVariables changes. The first retry
        waits the minimum (at least MIN_RECONNECT_WAIT) plus a random part of at most the range, each further failure
        doubles the wait, at most RepeatTimes times; Part 4 sets no other cap."""
        wait = max(MIN_RECONNECT_WAIT, float(self._int_variable("OCPPCommCtrlr", "RetryBackOffWaitMinimum", 0)))
        spread = float(self._int_variable("OCPPCommCtrlr", "RetryBackOffRandomRange", 0))
        repeat = self._int_variable("OCPPCommCtrlr", "RetryBackOffRepeatTimes", 0)
        return {"reconnect_min": wait, "reconnect_max": wait * 2.0 ** min(repeat, 30) + spread,
                "reconnect_random_range": spread, "reconnect_repeat_times": repeat}

    def _apply_message_timeout(self, profile: NetworkProfile) -> None:
        """B09 / NetworkConnectionProfileType.messageTimeout: the CALL response timeout of a connection is the one
        of the profile it was made with (the [csms] section: call_timeout); OCPPCommCtrlr.MessageTimeout[Default]
        (ReadOnly, "set through the network connection profile") reports the one in use."""
        timeout = self.cfg.call_timeout if profile.from_config else float(profile.message_timeout)
        for adapter in self.adapters.values():
            adapter.endpoint.call_timeout = timeout
        if self.model.definition("OCPPCommCtrlr", "MessageTimeout", variable_instance="Default") is not None:
            self.model.set("OCPPCommCtrlr", "MessageTimeout", str(profile.message_timeout),
                           variable_instance="Default", force=True)

    # ---- callbacks from transport and hardware -----------------------------------------------------------------
    def _event(self, fn: Callable, *args) -> list[str]:
        """Run one input (frame, hardware event, timer) through engine and adapter as ONE store transaction.

        Everything an event changes (transaction record, outbox, cache, ...) becomes durable together, with one
        fsync, before anything it produced is sent. If the store refuses the write (disk full, I/O error), the
        event is rolled back and the station reloads its state from the store, so memory never runs ahead of
        what would survive a power cut.
        """
        if time.monotonic() >= self._storage_next:
            self._check_storage()
        offset = self.clock.offset
        try:
            with self.db.tx(lazy=True):     # BEGIN with the first write: a read-only event costs no commit
                out = fn(*args)
            if self.clock.offset != offset:   # a currentTime moved the clock: what the event timed on the old
                self.adapter.clock_moved(self.clock.offset - offset)   # clock (its CALL deadline) moves with it
                self._ocsp_wake.set()         # the refresher's expiry times are station-clock times too
        except StoreError as exc:
            log.critical("store write failed, event not persisted (%s); reloading state from the store", exc)
            self._reload = True
            self._wake.set()
            # a CSMS request that needed the write is answered (CALLERROR) before the reload closes the connection
            return [exc.reply] if isinstance(exc, StoreFailedInCall) else []
        except Exception:   # a bug: the event's writes were rolled back, so memory may be ahead of the store
            log.exception("internal error while handling an event; reloading state from the store")
            self._reload = True
            self._wake.set()
            return []
        transport = getattr(self, "transport", None)
        if transport is not None and not transport.connected:
            self._repin(transport)
        if self.engine.signed_requests:
            self._spawn_signed()
        if self._ocsp_waiting and self.iso15118.available():   # registered online again: the refresh can go out
            self._ocsp_wake.set()
        return out

    def _repin(self, transport) -> None:
        """Offline, a queued transaction message may pin the next connection to its OCPP version."""
        offered = self.offered_protocols()
        if transport.config.subprotocols != offered:
            transport.reconfigure(self.transport_config())

    def _send_all(self, texts: list[str]) -> None:
        self._send_all_no_wake(texts)
        deadline = self.adapter.next_deadline()
        if deadline is not None and (self._sleep_until is None or deadline < self._sleep_until):
            if self._sleeping:     # the ticker sleeps longer than the new deadline: move its alarm earlier
                self._arm(deadline)
            else:
                self._wake.set()

    def _log_frame(self, direction: str, text: str) -> None:
        red = redact_frame(text)
        self.frames.append(FrameRecord(self.clock.now(), direction, red))
        if frames_log.isEnabledFor(logging.DEBUG):
            frames_log.debug("%s %s", "->" if direction == "tx" else "<-", red)

    def _on_connect_error(self, exc: Exception) -> None:
        """A connection attempt failed: after NetworkProfileConnectionAttempts of them, the next profile (B10.FR.03)."""
        self._record_tls_failure(exc)
        self._root_fallback_after(exc)
        self._station_certificate_failed()
        if self.plan.failed():
            log.warning("no connection after %d attempts; trying network profile %s", self.plan.attempts,
                        self.plan.current.describe())
            self.transport.reconfigure(self.transport_config())

    def _on_open(self, subprotocol: str) -> None:
        self._generation += 1
        self._last_tls_event = None    # a TLS failure after this connection is news again
        self._cert_round_failures = 0
        self.certificates.set_server_certificate(self.transport.peer_certificate())   # the CSMS root in use
        if self.transport.config.security_profile >= 2:
            self._fallback_next = False   # the next connection tries the new root first again
            if not self._fallback_used and self.certificates.root_check and self.certificates.remove_fallback():
                self._tls_contexts.clear()   # M05.FR.13 (1.6 M05.FR.12): connected with the new root
        if self.transport.config.security_profile == 3:   # A02.FR.10: the new certificate works, drop the old one
            self.cert_signing.confirm_in_use(self.clock.now())
        profile = self.plan.current
        self.plan.connected()
        log.info("connected to %s (%s, network profile slot %d)", self.transport.config.url, subprotocol,
                 profile.slot)
        # B10.FR.07: the fallback when all others fail; A05.FR.06: SecurityProfile goes up to the one in use and the
        # profiles below it are removed (only on success: a fallback keeps the old ones)
        self.network.connected_at(profile)
        self._apply_message_timeout(profile)
        if self.model.definition("OCPPCommCtrlr", "ActiveNetworkProfile") is not None:
            self.model.set("OCPPCommCtrlr", "ActiveNetworkProfile", str(profile.slot), force=True)
        if subprotocol != self.adapter.subprotocol and subprotocol in self.adapters:
            log.info("OCPP version now %s (was %s)", subprotocol, self.adapter.subprotocol)
            self.adapter = self.adapters[subprotocol]
        self.engine.protocol = self.adapter.version   # recorded on the transactions that start from now on
        self._send_all(self._event(self.adapter.connected, self.clock.now()))

    def _on_message(self, text: str) -> None:
        self._log_frame("rx", text)
        self._receive(text)

    def _receive(self, text: str) -> None:
        """Hand a frame to the adapter, in order. An UpdateFirmware / SignedUpdateFirmware is held, with the frames
        after it, until the OCSP responder of its signing certificate has answered (FirmwareUpdates.check_revocation,
        in a worker thread): its response depends on that answer (RevokedCertificate) and the loop never waits."""
        if self._held is not None:
            self._held.append(text)
            return
        pem = self.firmware.revocation_check_for(text)
        if pem is None:
            self._send_all(self._event(self.adapter.received, text, self.clock.now()))
            return
        self._held = [text]
        generation, firmware = self._generation, self.firmware

        async def check() -> None:
            try:
                await firmware.check_revocation(pem)
            except Exception:  # noqa: BLE001 - request() then treats the status as unknown
                log.exception("OCSP check of the firmware signing certificate failed")
            if generation != self._generation or self._stopping:
                return                                   # the connection those frames came on is gone
            first, *rest = self._held or [text]
            self._held = None
            self._send_all(self._event(self.adapter.received, first, self.clock.now()))
            for later in rest:
                self._receive(later)
        task = asyncio.get_running_loop().create_task(check(), name="firmware-ocsp")
        self._blocking.add(task)
        task.add_done_callback(self._blocking.discard)

    def _on_close(self, reason: str) -> None:
        self._generation += 1          # anything queued for the old connection is void
        self._held = None              # and frames held for an OCSP check (_receive) go with it
        (log.info if self._stopping or getattr(self, "_reboot", False) else log.warning)(
            "connection to CSMS closed: %s", reason)
        self._event(self.adapter.disconnected, self.clock.now())   # (re-pins the offered versions too)
        self._wake.set()

    def _on_hal(self, event) -> None:
        if not self.engine.booted:
            self._hold_input(event)
            return
        self._send_all(self._event(self._hal_event, event, self.clock.now()))

    def _hold_input(self, event) -> None:
        """A hardware input before the engine booted (boot() retried after a StoreError, _run_once): the input state
        (plug, EV/EVSE ready, a latched fault) is read by boot() through current_inputs, so those are dropped; events
        that are no state (emergency stop, a non-latched fault) wait for the boot; a presented idTag is refused (a
        driver at a station that is not ready presents it again: starting a session from a stale swipe would not be
        what they expect)."""
        if isinstance(event, (Plugged, EvReady, EvseReady)) or (isinstance(event, Fault) and event.fatal):
            return
        if isinstance(event, IdTagPresented):
            log.warning("idTag presented at connector %d before the station booted: ignored", event.connector_id)
            return
        self._early_inputs.append(event)

    def trigger_meter_values(self, connector_id: int = 0) -> None:
        """Take a reading now and send it (context Trigger; a transaction message when one runs on the connector)."""
        self._send_all(self._event(self._trigger_meter, connector_id, self.clock.now()))

    def _trigger_meter(self, connector_id: int, now: float) -> list[str]:
        self.engine.trigger_meter(connector_id, now)
        return self.adapter.poll(now)

    def _hal_event(self, event, now: float) -> list[str]:
        self.engine.on_hal(event, now)
        return self.adapter.poll(now)

    def _config_changed(self, key: str, value: str) -> None:
        if key in SECURITY_PARAMETERS:      # the value itself (a password) never goes to the log
            self.security_events.record("ReconfigurationOfSecurityParameters", rfc3339(self.clock.now()),
                                        f"{key} changed")
        if key in ("WebSocketPingInterval", "AuthorizationKey", "RetryBackOff"):   # the next attempt uses them
            self.transport.reconfigure(self.transport_config())
            if key == "AuthorizationKey":   # whitepaper / A01.FR.01: reconnect with the new credentials,
                # after the answer to the CALL that changed them has been sent: the marker is queued once the
                # current input's replies are (call_soon runs after this synchronous handler returns).
                asyncio.get_running_loop().call_soon(self._sendq.put_nowait, (self._generation, _RECONNECT_MARK))

    # ---- ISO 15118 (security.iso15118) --------------------------------------------------------------------------
    def make_iso15118_api(self, **overrides) -> Iso15118Api:
        """The ISO 15118 API over this station: CALLs through the active adapter, ISO15118Ctrlr variables, the
        installed V2G / MO roots, the V2G certificate chain of A02/A03, the OCSP cache in the store, the engine's
        authorization. ``overrides`` replace parts (e.g. ``v2g_chain``)."""
        parts = dict(call=self._iso15118_call, unsupported=self._iso15118_unsupported,
                     online=lambda: self.adapter.online and self.adapter.registration == "accepted",
                     variable=lambda name: self.model.get(ISO15118_COMPONENT, name),
                     roots=lambda root_type: self.certificates.roots(root_type), v2g_chain=self._v2g_chain,
                     feed=self._contract_authorization, cache=OcspCache(lambda: KeyValue(self.db, "ocsp")),
                     clock=self.clock.now, timeout=self.cfg.call_timeout)
        parts.update(overrides)
        return Iso15118Api(**parts)

    def _iso15118_unsupported(self) -> str | None:
        if hasattr(self.adapter, "iso15118_call"):
            return None
        return f"OCPP {self.adapter.version} has no ISO 15118 messages (only OCPP 2.0.1 carries them)"

    async def _iso15118_call(self, action: str, payload: dict) -> dict | None:
        """One CALL of the ISO 15118 API: the response payload, or None (offline, CALLERROR, timeout, lost)."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()

        def done(res: dict | None) -> None:
            if not fut.done():
                fut.set_result(res)
        self._send_all(self._event(self._iso15118_send, action, payload, done, self.clock.now()))
        return await fut

    def _iso15118_send(self, action: str, payload: dict, done, now: float) -> list[str]:
        self.adapter.iso15118_call(action, payload, done)
        return self.adapter.poll(now)

    def _contract_authorization(self, emaid: str, id_token_info: dict | None, evse_id: int) -> str:
        """C07: apply the CSMS's idTokenInfo for an eMAID (None: decide offline, C07.FR.09-12) to the engine, in
        one store transaction; returns the status applied ("Accepted": the EVSE is authorized)."""
        applied: list[str] = []
        self._send_all(self._event(self._apply_contract, emaid, id_token_info, evse_id, applied, self.clock.now()))
        return applied[0] if applied else "Invalid"

    def _apply_contract(self, emaid: str, id_token_info: dict | None, evse_id: int, applied: list, now: float
                        ) -> list[str]:
        connector = next((cid for cid, (evse, _) in sorted(self.evse_layout().items()) if evse == evse_id), 0)
        if id_token_info is None:
            info, cache = self.engine.auth.decide_offline(emaid, now), False
            learn = getattr(self.adapter, "contract_token", None)
            if learn is not None:
                learn(emaid)
        else:
            info, cache = auth_info_16(id_token_info), True
        applied.append(self.engine.authorize_decided(emaid, info, connector, now, cache=cache))
        return self.adapter.poll(now)

    async def _ocsp_refresher(self) -> None:
        """M06.FR.06/07/10: keep the cached OCSP status of the V2G certificates fresh (a week at most) while the
        station can reach the CSMS; a failure is retried after REFRESH_RETRY (Iso15118Api.next_refresh).

        It wakes up only when there is work: at the earliest expiry of a cached status. Without a V2G certificate,
        or with work but no registered connection, it sleeps until woken (no polling): by a new V2G certificate
        (_v2g_certificate_changed), by the first event that finds the station registered online again (_event),
        or by a clock correction (the expiries are station-clock times)."""
        while True:
            self._ocsp_wake.clear()
            now, due = self.clock.now(), self.iso15118.next_refresh()
            available = self.iso15118.available()
            if due is not None and available and (due <= now or self._ocsp_force):
                force, self._ocsp_force = self._ocsp_force, False
                try:
                    counts = await self.iso15118.refresh(force=force)
                    log.info("OCSP status of the V2G certificates refreshed: %s", counts)
                    continue
                except Exception:   # a bug here must not stop the station, nor spin
                    log.exception("refreshing the OCSP status of the V2G certificates failed")
                    due, available = now + REFRESH_RETRY, True
            self._ocsp_waiting = due is not None and not available
            timeout = None if due is None or not available else max(due - now, 0.0)
            try:
                await asyncio.wait_for(self._ocsp_wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            finally:
                self._ocsp_waiting = False

    async def data_transfer(self, vendor_id: str, message_id: str | None = None, data: str | None = None) -> dict | None:
        """CP -> CS DataTransfer; the CSMS's answer ({"status", "data"?}) or None when offline / failed."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.adapter.data_transfer(vendor_id, message_id, data,
                                   lambda res: fut.done() or fut.set_result(res))
        self._send_all(self._event(self.adapter.poll, self.clock.now()))
        return await fut

    # ---- loops -----------------------------------------------------------------------------------------------
    async def _sender(self) -> None:
        while True:
            gen, text = await self._sendq.get()
            if text is _RECONNECT_MARK:    # everything queued before it has been sent (see _config_changed)
                self.transport.reconnect_now()
                continue
            if gen != self._generation or not self.transport.connected:
                continue
            self._log_frame("tx", text)
            self._sending = True
            try:
                await self.transport.send(text)
            finally:
                self._sending = False

    async def _ticker(self) -> None:
        while not self._stopping:
            if self._reload:
                self._reboot = True
                return
            if self.adapter.reset_requested is not None:
                await self._reset(self.adapter.reset_requested)
                return
            deadline = self.adapter.next_deadline()
            if deadline is not None and deadline <= self.clock.now():   # a timer is due: run it, plan again
                self._send_all_no_wake(self._event(self.adapter.tick, self.clock.now()))
                continue
            # Sleep until the alarm (the next timer) or until woken (stop, reset, reload). An input that brings
            # a timer forward moves the alarm (_send_all -> _arm) without waking this task: no wake-up per frame.
            self._wake.clear()
            self._arm(deadline)
            self._sleeping = True
            try:
                await self._wake.wait()
            finally:
                self._sleeping = False
                self._arm(None)

    def _arm(self, deadline: float | None) -> None:
        """Set the ticker's one alarm to ``deadline`` (station clock), or clear it (None)."""
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        self._sleep_until = deadline
        if deadline is not None:
            delay = max(0.0, deadline - self.clock.now())
            self._alarm = asyncio.get_running_loop().call_later(delay, self._wake.set)

    def _send_all_no_wake(self, texts: list[str]) -> None:
        """Send what an event produced: written at once while nothing is queued before it (no task switch per
        frame), queued for the sender otherwise (write buffer full, or frames still waiting: order is kept)."""
        for i, t in enumerate(texts):
            if self._sending or not self._sendq.empty() or not self._write_now(t):
                for rest in texts[i:]:
                    self._sendq.put_nowait((self._generation, rest))
                return

    def _write_now(self, text: str) -> bool:
        transport = getattr(self, "transport", None)
        if transport is None or not transport.send_now(text):
            return False
        self._log_frame("tx", text)
        return True

    async def _reset(self, hard: bool) -> None:
        """Reset: give queued transaction messages a moment (soft only), then reboot in place."""
        if not hard:
            for _ in range(100):
                pending = getattr(self.adapter, "pending_messages", self.outbox.pending_count)()
                if pending == 0 or not self.transport.connected:
                    break
                await asyncio.sleep(0.1)
        log.warning("%s reset: rebooting", "hard" if hard else "soft")
        self.hal.reset(hard)
        self._reboot = True

    async def run(self) -> None:
        """Boot, connect, serve until stop(); a Reset reboots in place (new boot, new BootNotification)."""
        while True:
            self._reboot = False
            await self._run_once()
            if not self._reboot or self._stopping:
                self.logs.close()
                self.cert_signing.close()
                self.firmware.close()
                remove_file_log(self._file_log)
                return
            self.db.close()
            self._open_store()
            self.boots += 1

    def _flush_delivered(self) -> list[str]:
        for adapter in self.adapters.values():
            flush = getattr(adapter, "flush_delivered", None)
            if flush is not None:
                flush()
        return []

    def _boot(self, now: float) -> list[str]:
        if self.signed.enabled:   # records the legal log got before a power cut, the transaction record did not
            found = self.signed.recover(self.engine, self.transactions)
            if found:
                log.warning("%d signed record(s) recovered from the legal log after a restart", found)
        self.engine.boot(now)
        return self.adapter.poll(now)

    # ---- Eichrecht: signed readings off the loop (eichrecht.service) ------------------------------------------------
    def _spawn_signed(self) -> None:
        """Start a task for each signed reading the engine asked for (kept referenced like Hooks.run_blocking)."""
        if not self.signed.keys_registered:
            return          # kept in the engine until register_keys knows the meters' keys (_run_once)
        requests, self.engine.signed_requests = self.engine.signed_requests, []
        for req in requests:
            task = asyncio.get_running_loop().create_task(self._fetch_signed(req, self.engine), name="signed-reading")
            self._blocking.add(task)
            task.add_done_callback(self._blocking.discard)

    async def _fetch_signed(self, req, engine: Engine) -> None:
        """One signed reading: fetched in a worker thread within [eichrecht] end_timeout and appended to the legal log
        (its own durable commit) before the engine gets it and the adapter queues the message carrying it. On a
        timeout or meter error the engine gets None (the transaction still ends, nothing is made up) and the
        security log records why."""
        tx = self.transactions.get(req.tx_key)
        if tx is None:
            return
        raw = key_hex = error = None
        timeout = self.cfg.eichrecht_end_timeout
        try:
            record = await asyncio.wait_for(self.signed.fetch(req, tx, self.adapter.online), timeout)
            raw, key_hex = record.raw, record.public_key
        except asyncio.TimeoutError:
            error = f"no signed reading within {timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - a meter error: reported, the transaction goes on without a value
            error = f"meter error: {type(exc).__name__}: {exc}"
        if self.engine is not engine or self._stopping:
            return    # the station was rebuilt or stops: the next boot recovers the record from the legal log
        if error is not None:
            log.error("transaction %s: %s: %s", req.tx_key, req.context, error)
            self.security_events.record(EVENT_MISSING, rfc3339(self.clock.now()),
                                        f"{req.tx_key} {req.context}: {error}", critical=False)
        self._send_all(self._event(self._signed_arrived, req, raw, key_hex, error, self.clock.now()))

    def _signed_arrived(self, req, raw: str | None, key_hex: str | None, error: str | None, now: float) -> list[str]:
        tx = self.transactions.get(req.tx_key)
        if raw is not None and tx is not None and tx.transaction_id:
            # 1.6: the CSMS's transactionId may have come while the meter signed (the record names it from now on)
            self.signed.legal_log.set_transaction_id(req.tx_key, tx.transaction_id)
        if req.sample is not None:      # an intermediate reading (Sample.Periodic / Sample.Clock)
            self.engine.on_signed_sample(req, raw, key_hex=key_hex, error=error)
            return self.adapter.poll(now)
        self.engine.on_signed_reading(req.tx_key, req.context, raw, now, key_hex=key_hex, error=error)
        if raw is None and req.context == BEGIN:
            self.engine.signed_begin_missing(req.tx_key, now)
        return self.adapter.poll(now)

    async def _run_once(self) -> None:
        self._reload = False
        # the engine boots before the first await: the simulator API and the hardware deliver inputs as soon as the
        # loop runs, and a transaction started on an engine that has not booted yet would be taken for one a power
        # cut interrupted (ended PowerLoss by boot() while its connector still runs it: two ends, one Stop)
        self._event(self._boot, self.clock.now())
        while self._reload and not self._stopping:   # the store refuses writes: retry until it takes them
            await asyncio.sleep(self.boot_retry_s)   # (hardware inputs meanwhile: _hold_input)
            self.db.close()
            self._open_store()
            self._reload = False
            self._event(self._boot, self.clock.now())
        early, self._early_inputs = self._early_inputs, []
        for event in early:       # what happened while the engine could not take it, in order
            self._on_hal(event)
        if self.signed.enabled:   # the meters' public keys, at every start (a meter swap shows here)
            await self.signed.register_keys({cid: evse for cid, (evse, _) in self.evse_layout().items()}, self.model)
            # the signed readings asked for meanwhile (boot()'s end readings, new begins) name the registered key
            self._spawn_signed()
        self.transport = Transport(self.transport_config(), on_open=self._on_open, on_message=self._on_message,
                                   on_close=self._on_close, on_connect_error=self._on_connect_error)
        tasks = [asyncio.create_task(self.transport.run(), name="transport"),
                 asyncio.create_task(self._sender(), name="sender"),
                 asyncio.create_task(self._ocsp_refresher(), name="ocsp")]
        ticker = asyncio.create_task(self._ticker(), name="ticker")
        self._ticker_task = ticker
        try:
            await ticker
        finally:
            await self.transport.stop()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._event(self._flush_delivered)
            if not self._reboot:
                self.engine.shutdown(self.clock.now(), StopReason.REBOOT)
                self.db.close()

    async def stop(self) -> None:
        """Clean shutdown (SIGTERM): the transport closes, open transactions end at the next boot (Reboot)."""
        self._stopping = True
        self._wake.set()
