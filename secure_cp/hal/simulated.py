"""Simulated hardware: N connectors, an EV per connector, a meter that integrates power over time.

It implements :class:`~secure_cp.hal.api.HardwareAdapter` exactly as a real adapter would, so the engine cannot
tell the difference. Test code and the simulator REST API drive it through the ``ev_*`` / ``present_tag`` /
``inject_fault`` methods. The energy register survives restarts through an optional state file, as a real
meter's register survives a power cut.

Each connector's meter is also a simulated *signing* meter (Eichrecht, issue #5): it has its own EC P-256 key
(kept next to the state file, or in memory) and produces real OCMF records (:meth:`signed_reading`), with its own
persistent pagination counters and the meter state / error flags set by :meth:`set_meter_state`.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Callable

from .api import (ERROR_CODES, EmergencyStop, EvReady, EvseReady, Fault, HalEvent, IdTagPresented, MeterReading, Plugged)

log = logging.getLogger("secure_cp.hal.sim")

MEASURANDS = frozenset({
    "Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Current.Offered", "Voltage",
    "SoC", "Temperature",
})


class MeterFault(RuntimeError):
    """The simulated meter was told to fail."""


_TEMPERATURE = Decimal("25.0")


# While an EV charges, power, current and voltage repeat from reading to reading: each distinct value is formatted
# and parsed once (a float's text and a Decimal parse cost several times the rest of a reading).
@lru_cache(maxsize=256)
def _tenths(value: float) -> Decimal:
    return Decimal(f"{value:.1f}")


@lru_cache(maxsize=256)
def _hundredths(value: float) -> Decimal:
    return Decimal(f"{value:.2f}")


@dataclass
class SimConnector:
    connector_id: int
    plugged: bool = False
    ev_ready: bool = True
    evse_ready: bool = True
    permitted: bool = False
    locked: bool = False
    limit_a: Decimal | None = None
    energy_wh: float = 0.0
    soc: float = 20.0
    meter_failed: bool = False
    meter_st: str = "G"           # OCMF meter state of the signing meter (Table 10)
    meter_ef: str = ""            # OCMF error flags
    last_update: float | None = None
    fault: str | None = None


class SimulatedHardware:
    """A charger with ``connectors`` outlets, each delivering ``max_power_w`` when the power path is closed."""

    def __init__(self, connectors: int = 1, *, max_power_w: float = 11000.0, voltage_v: float = 230.0,
                 phases: int = 3, clock: Callable[[], float] = time.monotonic, state_file: str | Path | None = None,
                 lock: bool = True):
        if connectors < 1:
            raise ValueError("a station needs at least one connector")
        self._clock = clock
        self.max_power_w = max_power_w
        self.voltage_v = voltage_v
        self.phases = phases
        self._lock = lock
        self._listener: Callable[[HalEvent], None] | None = None
        self._state_file = Path(state_file) if state_file else None
        self.connectors = {i: SimConnector(i) for i in range(1, connectors + 1)}
        self.resets: list[bool] = []
        self.lock_fails = False
        self._pagination: dict[int, dict[str, int]] = {i: {"T": 1, "F": 1} for i in self.connectors}
        self._meter_keys: dict[int, object] = {}
        self._last_signed: dict[int, str] = {}     # connector -> the last signed record handed out
        # signed_reading runs in a worker thread (the station fetches signed records off its event loop) while the
        # loop reads the meter: the registers, the pagination counters and the state file change under this lock
        self._meter_lock = threading.RLock()
        self._load_state()

    # --- persistence of the meter registers ------------------------------------------------------------------
    def _load_state(self) -> None:
        if not self._state_file or not self._state_file.exists():
            return
        try:
            data = json.loads(self._state_file.read_text())
            for cid, wh in data.get("energy_wh", {}).items():
                if int(cid) in self.connectors:
                    self.connectors[int(cid)].energy_wh = float(wh)
            for cid, pages in data.get("pagination", {}).items():
                if int(cid) in self.connectors:
                    self._pagination[int(cid)] = {"T": int(pages["T"]), "F": int(pages["F"])}
            for cid, raw in data.get("last_signed", {}).items():
                if int(cid) in self.connectors and isinstance(raw, str):
                    self._last_signed[int(cid)] = raw
        except (ValueError, OSError) as exc:  # a corrupt state file only loses the simulated register
            log.warning("simulated meter state %s unreadable (%s); registers start at 0", self._state_file, exc)

    def _save_state(self) -> None:
        if not self._state_file:
            return
        tmp = self._state_file.with_suffix(".tmp")
        with self._meter_lock:
            tmp.write_text(json.dumps({"energy_wh": {str(c.connector_id): c.energy_wh
                                                     for c in self.connectors.values()},
                                       "pagination": {str(k): v for k, v in self._pagination.items()},
                                       "last_signed": {str(k): v for k, v in self._last_signed.items()}}))
            os.replace(tmp, self._state_file)

    # --- HardwareAdapter ------------------------------------------------------------------------------------
    def connector_ids(self) -> list[int]:
        return sorted(self.connectors)

    def supported_measurands(self) -> set[str]:
        return set(MEASURANDS)

    def set_listener(self, listener: Callable[[HalEvent], None]) -> None:
        self._listener = listener

    def _power_w(self, c: SimConnector) -> float:
        if not (c.plugged and c.permitted and c.ev_ready and c.evse_ready) or c.fault:
            return 0.0
        power = self.max_power_w
        if c.limit_a is not None:
            power = min(power, float(c.limit_a) * self.voltage_v * self.phases)
        return max(power, 0.0)

    def _integrate(self, c: SimConnector) -> None:
        with self._meter_lock:
            now = self._clock()
            if c.last_update is not None and now > c.last_update:
                c.energy_wh += self._power_w(c) * (now - c.last_update) / 3600.0
            c.last_update = now

    def current_inputs(self) -> list[HalEvent]:
        events: list[HalEvent] = []
        for c in self.connectors.values():
            events += [Plugged(c.connector_id, c.plugged), EvReady(c.connector_id, c.ev_ready),
                       EvseReady(c.connector_id, c.evse_ready)]
            if c.fault:
                events.append(Fault(c.connector_id, c.fault))
        return events

    def read_meter(self, connector_id: int) -> MeterReading:
        c = self._get(connector_id)
        if c.meter_failed:
            raise MeterFault(f"meter of connector {connector_id} does not answer")
        self._integrate(c)
        power = self._power_w(c)
        current = power / (self.voltage_v * self.phases) if power else 0.0
        offered = float(c.limit_a) if c.limit_a is not None else self.max_power_w / (self.voltage_v * self.phases)
        self._save_state()
        energy = int(c.energy_wh)
        return MeterReading(
            energy_wh=energy,
            values={
                "Energy.Active.Import.Register": Decimal(energy),
                "Power.Active.Import": _tenths(power),
                "Current.Import": _hundredths(current),
                "Current.Offered": _tenths(offered),
                "Voltage": _tenths(self.voltage_v),
                "SoC": Decimal(int(min(100.0, c.soc + c.energy_wh / 600.0))),
                "Temperature": _TEMPERATURE,
            })

    def permit_charging(self, connector_id: int, permitted: bool) -> None:
        c = self._get(connector_id)
        self._integrate(c)
        c.permitted = permitted

    def set_limit(self, connector_id: int, amps: Decimal | None) -> None:
        c = self._get(connector_id)
        self._integrate(c)
        c.limit_a = amps

    def lock_connector(self, connector_id: int, locked: bool) -> bool:
        c = self._get(connector_id)
        if self.lock_fails:
            return False
        c.locked = locked
        return True

    def has_lock(self) -> bool:
        return self._lock

    def reset(self, hard: bool) -> None:
        self.resets.append(hard)

    # --- the simulated world: the EV, the driver, faults ---------------------------------------------------
    def _get(self, connector_id: int) -> SimConnector:
        try:
            return self.connectors[connector_id]
        except KeyError:
            raise ValueError(f"no connector {connector_id}") from None

    def _emit(self, event: HalEvent) -> None:
        if self._listener is not None:
            self._listener(event)

    def ev_plug(self, connector_id: int, plugged: bool = True) -> None:
        c = self._get(connector_id)
        self._integrate(c)
        if c.plugged != plugged:
            c.plugged = plugged
            self._emit(Plugged(connector_id, plugged))

    def ev_ready(self, connector_id: int, ready: bool) -> None:
        c = self._get(connector_id)
        self._integrate(c)
        if c.ev_ready != ready:
            c.ev_ready = ready
            self._emit(EvReady(connector_id, ready))

    def evse_ready(self, connector_id: int, ready: bool) -> None:
        c = self._get(connector_id)
        self._integrate(c)
        if c.evse_ready != ready:
            c.evse_ready = ready
            self._emit(EvseReady(connector_id, ready))

    def present_tag(self, id_tag: str, connector_id: int = 0) -> None:
        self._emit(IdTagPresented(id_tag, connector_id))

    def inject_fault(self, connector_id: int, error_code: str | None, info: str = "", fatal: bool = True) -> None:
        if error_code is not None and error_code not in ERROR_CODES:
            raise ValueError(f"unknown error code {error_code!r}")
        c = self._get(connector_id)
        self._integrate(c)
        c.fault = error_code if fatal else None
        self._emit(Fault(connector_id, error_code, info, fatal=fatal))

    def emergency_stop(self, active: bool = True) -> None:
        """Press (True) or release (False) the emergency-stop button."""
        self._emit(EmergencyStop(active))

    def fail_meter(self, connector_id: int, failed: bool = True) -> None:
        self._get(connector_id).meter_failed = failed

    def set_meter_state(self, connector_id: int, st: str = "G", ef: str = "") -> None:
        """What the signing meter reports in its next records: OCMF ST (Table 10) and EF ("E", "t")."""
        c = self._get(connector_id)
        c.meter_st, c.meter_ef = st, ef

    # --- the simulated signing meter (SignedMeterAdapter) ----------------------------------------------------
    def _meter_key(self, connector_id: int):
        """The meter's own private key: generated once, kept in ``<state file>.meter<N>.key.pem`` (0600)."""
        key = self._meter_keys.get(connector_id)
        if key is not None:
            return key
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        path = (self._state_file.with_name(f"{self._state_file.name}.meter{connector_id}.key.pem")
                if self._state_file else None)
        if path is not None and path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), None)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            if path is not None:
                pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(pem)
        self._meter_keys[connector_id] = key
        return key

    def meter_public_key(self, connector_id: int) -> bytes:
        """The meter's public key (DER SPKI). With a state file it is kept beside the private key, so a station
        that only registers the key at start (and signs nothing while idle) never loads a crypto library: a real
        meter holds its key itself, and the simulator should not make the idle station look bigger than one."""
        from ..eichrecht.ocmf import KeySigner
        self._get(connector_id)
        cached = (self._state_file.with_name(f"{self._state_file.name}.meter{connector_id}.pub.der")
                  if self._state_file else None)
        if cached is not None and connector_id not in self._meter_keys:
            try:
                if cached.with_name(cached.name.replace(".pub.der", ".key.pem")).exists():
                    return cached.read_bytes()
            except OSError:
                pass
        der = KeySigner(self._meter_key(connector_id)).public_key_der()
        if cached is not None:
            try:
                tmp = cached.with_name(cached.name + ".tmp")
                tmp.write_bytes(der)
                os.replace(tmp, cached)
            except OSError as exc:   # only a cache: the key file is the truth
                log.debug("meter %d: public key not cached: %s", connector_id, exc)
        return der

    def meter_serial(self, connector_id: int) -> str:
        return f"SIM{connector_id:04d}"

    def signed_reading(self, connector_id: int, tx_marker: str | None, *, identification=None,
                       transaction_ref: str | None = None) -> str:
        """A real OCMF record of the connector's energy register, signed with the meter's key. The meter's
        pagination counter is saved before the record is handed out (a real meter's counter survives power cuts
        too). A meter state other than usable (N/T/D/R/F) leaves the value out, as OCMF allows for error events;
        nothing is ever substituted."""
        import datetime as _dt
        from ..eichrecht.ocmf import KeySigner, MeterIdentity, ReadingValue, build_payload, \
            identification_for_token, sign_payload
        c = self._get(connector_id)
        if c.meter_failed:
            raise MeterFault(f"meter of connector {connector_id} does not answer")
        with self._meter_lock:   # one number per record, saved with it
            self._integrate(c)
            context = "F" if tx_marker is None else "T"
            number = self._pagination[connector_id][context]
            value = None if c.meter_st in "NTDRF" else Decimal(int(c.energy_wh)) / 1000
            reading = ReadingValue(_dt.datetime.now(_dt.timezone.utc), value, tx=tx_marker, decimals=3, st=c.meter_st,
                                   ef=c.meter_ef)
            identity = MeterIdentity(gi="secure-cp simulated meter", mv="secure-cp", mm="SIM-METER-1",
                                     ms=self.meter_serial(connector_id), mf="1.0")
            ident = identification if identification is not None or context == "F" else identification_for_token(None)
            payload = build_payload(pagination=f"{context}{number}", identity=identity, readings=[reading],
                                    identification=ident, ct="CBIDC" if transaction_ref else None,
                                    ci=transaction_ref)
            raw = sign_payload(payload, KeySigner(self._meter_key(connector_id))).raw
            # the counter and the record it numbered are saved together, before the record is handed out: a station
            # that loses the answer (power cut) fetches it again with last_signed_reading, so the PG has no gap
            self._pagination[connector_id][context] = number + 1
            self._last_signed[connector_id] = raw
            self._save_state()
        return raw

    def last_signed_reading(self, connector_id: int) -> str | None:
        """The last record :meth:`signed_reading` handed out (as real meters keep their last signed dataset for
        readout), None when it never signed. Survives restarts with the state file."""
        self._get(connector_id)
        return self._last_signed.get(connector_id)
