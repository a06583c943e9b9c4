"""The hardware-adapter protocol: the one boundary a charger manufacturer programs against.

Inputs flow up as :class:`HalEvent` values pushed to the listener the runtime installs; meter readings are
pulled with :meth:`HardwareAdapter.read_meter` (a real meter is read on its own schedule; the adapter returns
the latest reading it has, it must not block). Outputs flow down as plain method calls.

Everything here is synchronous and must return quickly: a driver that talks to slow hardware (Modbus, CAN)
does that in its own thread or task and reports through events.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable, Protocol, runtime_checkable

# OCPP 1.6 ChargePointErrorCode values (StatusNotification.errorCode); 2.0.1 reports faults via the device model
ERROR_CODES = frozenset({
    "ConnectorLockFailure", "EVCommunicationError", "GroundFailure", "HighTemperature", "InternalError",
    "LocalListConflict", "NoError", "OtherError", "OverCurrentFailure", "OverVoltage", "PowerMeterFailure",
    "PowerSwitchFailure", "ReaderFailure", "ResetFailure", "UnderVoltage", "WeakSignal",
})


@dataclass(frozen=True)
class Plugged:
    """The EV cable was connected (True) or disconnected (False) at this connector."""
    connector_id: int
    plugged: bool


@dataclass(frozen=True)
class EvReady:
    """The EV requests energy (True) or has paused (False): Charging vs SuspendedEV."""
    connector_id: int
    ready: bool


@dataclass(frozen=True)
class EvseReady:
    """The EVSE can deliver energy (True) or withholds it (False): Charging vs SuspendedEVSE."""
    connector_id: int
    ready: bool


@dataclass(frozen=True)
class Fault:
    """A fault at the connector (error_code from ERROR_CODES) or its clearing (error_code None).

    ``fatal`` faults make the connector Faulted; non-fatal ones are only reported alongside the status.
    """
    connector_id: int
    error_code: str | None
    info: str = ""
    vendor_error_code: str = ""
    fatal: bool = True


@dataclass(frozen=True)
class IdTagPresented:
    """An identifier was read (RFID card UID, PnC contract, key switch ...). connector_id 0 = not yet chosen."""
    id_tag: str
    connector_id: int = 0


@dataclass(frozen=True)
class EmergencyStop:
    """The station's emergency-stop button was pressed (True) or released (False): affects every connector."""
    active: bool
    connector_id: int = 0


HalEvent = Plugged | EvReady | EvseReady | Fault | IdTagPresented | EmergencyStop


@dataclass(frozen=True)
class MeterReading:
    """One reading of a connector's meter.

    ``values`` maps OCPP measurand names (e.g. "Energy.Active.Import.Register", "Power.Active.Import",
    "Current.Import", "Voltage", "SoC", "Temperature") to Decimal values in the measurand's default unit
    (Wh, W, A, V, Percent, Celsius). ``energy_wh`` is the import register in Wh (integer: what OCPP meterStart
    and meterStop carry).
    """
    energy_wh: int
    values: dict[str, Decimal] = field(default_factory=dict)


@runtime_checkable
class HardwareAdapter(Protocol):
    """Implemented once per charger model (relays, pilot/proximity, RFID reader, meter), and by the simulator."""

    def connector_ids(self) -> list[int]:
        """Connector ids, 1..N."""
        ...

    def supported_measurands(self) -> set[str]:
        """The OCPP measurands :meth:`read_meter` provides; configuration is validated against them."""
        ...

    def set_listener(self, listener: Callable[[HalEvent], None]) -> None:
        """Install the callback that receives every input event (called from the event loop's thread)."""
        ...

    def current_inputs(self) -> list[HalEvent]:
        """The present state of every input, as events (Plugged, EvReady, EvseReady, Fault per connector). Read at
        every (re)start, so a car that is already plugged in is known without waiting for a change."""
        ...

    def read_meter(self, connector_id: int) -> MeterReading:
        """The latest reading; raises on a meter fault (the engine then reports PowerMeterFailure)."""
        ...

    def permit_charging(self, connector_id: int, permitted: bool) -> None:
        """Close (True) or open (False) the power path of the connector."""
        ...

    def set_limit(self, connector_id: int, amps: Decimal | None) -> None:
        """Current limit for the connector (None = no limit beyond the hardware's own)."""
        ...

    def lock_connector(self, connector_id: int, locked: bool) -> bool:
        """Lock or unlock the cable; returns whether it succeeded."""
        ...

    def has_lock(self) -> bool:
        """Whether the connectors have a cable lock at all (UnlockConnector -> NotSupported otherwise)."""
        ...

    def reset(self, hard: bool) -> None:
        """Reboot hook: called after the station has stopped its transactions for a Reset."""
        ...


@runtime_checkable
class SignedMeterAdapter(Protocol):
    """OPTIONAL capability of a :class:`HardwareAdapter` (Eichrecht, issue #5): a certified meter (or signing
    capsule) that produces signed OCMF records. An adapter without it simply lacks these methods; the runtime asks
    :func:`signed_meter_of`. Unlike the other adapter methods these may take time (a real meter needs up to ~30 s
    in rare cases): the runtime calls them in a worker thread with a timeout.

    The record is returned as the meter produced it and is stored and forwarded byte for byte. Meter errors are
    the meter's to report inside the record (ST, EF, TX = X/A/P); a meter that does not answer raises."""

    def signed_reading(self, connector_id: int, tx_marker: str | None, *, identification=None,
                       transaction_ref: str | None = None) -> str:
        """One signed OCMF record of the connector's meter. ``tx_marker``: OCMF TX (B begin, E/L/R/A/P end,
        C/T/S intermediate, X error; None = fiscal reading without transaction). ``identification``: a
        :class:`secure_cp.eichrecht.ocmf.Identification` for the user-assignment fields."""
        ...

    def meter_public_key(self, connector_id: int) -> bytes:
        """The meter's public key, DER SubjectPublicKeyInfo."""
        ...


def signed_meter_of(adapter: object) -> SignedMeterAdapter | None:
    """The adapter as a signing meter, or None when it has no signed-reading capability."""
    return adapter if isinstance(adapter, SignedMeterAdapter) else None
