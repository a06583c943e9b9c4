"""Version-neutral vocabulary of the station model: statuses, stop reasons, samples, and the effects the engine
emits for a protocol adapter (v16/, v201/) to turn into messages.

Effects are plain data. The engine never knows whether a StatusChanged becomes a 1.6 StatusNotification or a
2.0.1 StatusNotification with an EVSE id; the adapter decides, and also decides what survives offline periods.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from functools import partial
from typing import NamedTuple


class Status(str, enum.Enum):
    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class StopReason(str, enum.Enum):
    """OCPP 1.6 Reason (StopTransaction.req); the 2.0.1 adapter maps them onto its own enum."""
    DE_AUTHORIZED = "DeAuthorized"
    EMERGENCY_STOP = "EmergencyStop"
    EV_DISCONNECTED = "EVDisconnected"
    HARD_RESET = "HardReset"
    LOCAL = "Local"
    OTHER = "Other"
    POWER_LOSS = "PowerLoss"
    REBOOT = "Reboot"
    REMOTE = "Remote"
    SOFT_RESET = "SoftReset"
    UNLOCK_COMMAND = "UnlockCommand"
    # Not a 1.6 reason: a transaction started before the cable (TxStartPoint Authorized) whose cable never came
    # within ConnectionTimeOut (2.0.1 E03: EVConnectTimeout / Timeout). A 1.6 transaction never starts that way.
    TIMEOUT = "Timeout"


# Measurand -> default unit (OCPP 1.6 UnitOfMeasure / 2.0.1 unitOfMeasure.unit); absent = dimensionless
UNITS = {
    "Energy.Active.Import.Register": "Wh", "Energy.Active.Export.Register": "Wh",
    "Energy.Reactive.Import.Register": "varh", "Energy.Reactive.Export.Register": "varh",
    "Energy.Active.Import.Interval": "Wh", "Energy.Active.Export.Interval": "Wh",
    "Power.Active.Import": "W", "Power.Active.Export": "W", "Power.Offered": "W",
    "Power.Reactive.Import": "var", "Power.Reactive.Export": "var",
    "Current.Import": "A", "Current.Export": "A", "Current.Offered": "A",
    "Voltage": "V", "Frequency": None, "SoC": "Percent", "Temperature": "Celsius", "RPM": None,
    "Power.Factor": None,
}


# SampledValue and Sample are immutable named tuples rather than frozen dataclasses: the metering path builds ten
# values per reading, and a frozen dataclass sets every field through object.__setattr__ (same fields, repr, ==
# between instances and hash as the dataclasses had).
class SampledValue(NamedTuple):
    measurand: str
    value: Decimal
    unit: str | None = None


#: SampledValue of a ready (measurand, value, unit) tuple, made without a Python-level __new__ (the metering path)
sampled_value = partial(tuple.__new__, SampledValue)


class Sample(NamedTuple):
    """One meter reading at one instant, reduced to the measurands asked for."""
    timestamp: float
    context: str                       # "Sample.Periodic", "Sample.Clock", "Transaction.Begin", "Transaction.End", "Trigger"
    values: tuple[SampledValue, ...]

    def to_json(self) -> dict:
        return {"t": self.timestamp, "c": self.context,
                "v": [[v.measurand, str(v.value), v.unit] for v in self.values]}

    @classmethod
    def from_json(cls, d: dict) -> "Sample":
        return cls(float(d["t"]), d["c"], tuple(SampledValue(m, Decimal(v), u) for m, v, u in d["v"]))


# ---- effects ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatusChanged:
    connector_id: int            # 0 = the whole station
    status: Status
    error_code: str = "NoError"
    info: str = ""
    vendor_error_code: str = ""
    timestamp: float = 0.0


@dataclass(frozen=True)
class AuthorizeRequest:
    """Ask the CSMS whether id_tag may charge. The adapter answers with Engine.on_authorize_result()."""
    id_tag: str


@dataclass(frozen=True)
class TxStarted:
    tx_key: str


@dataclass(frozen=True)
class TxUpdated:
    """Something changed inside a running transaction that is no meter reading (OCPP 2.0.1 TransactionEvent
    Updated; 1.6 has no such message and ignores it). ``trigger`` uses the 2.0.1 TriggerReasonEnumType names the
    engine can produce: Authorized, RemoteStart, CablePluggedIn, Deauthorized, EVCommunicationLost."""
    tx_key: str
    trigger: str


@dataclass(slots=True)   # built for every reading: a frozen dataclass's __init__ costs three times as much
class TxMeterValues:
    tx_key: str | None           # None: a meter value outside any transaction
    connector_id: int
    samples: tuple[Sample, ...]
    #: Eichrecht (OCA note Table 20, SignUpdatedReadings): the meter's signed record of this reading, exactly as the
    #: legal log holds it, and its public key (DER hex); the adapter sends it with the unsigned values
    signed_raw: str | None = None
    signed_key: str | None = None


@dataclass(frozen=True)
class TxStopped:
    tx_key: str
    transaction_data: tuple[Sample, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class TxSigned:
    """A signed reading of the transaction arrived (Eichrecht: it is in the legal log and on the transaction record,
    ``extra["signed"][context]``); the adapter sends it where the configuration says (1.6 MeterValues with context
    Transaction.Begin, 2.0.1 TransactionEvent Updated SignedDataReceived). The end value goes with TxStopped."""
    tx_key: str
    context: str


@dataclass(frozen=True)
class SignedReadingWanted:
    """Not an effect for the adapter: a request to the runtime (Engine.signed_requests) to fetch a signed reading off
    the event loop (meter-signed or gateway-signed) and hand it back with Engine.on_signed_reading. ``marker``: OCMF
    TX (B begin, E end)."""
    tx_key: str
    connector_id: int
    context: str
    marker: str
    #: an intermediate reading (Sample.Periodic / Sample.Clock) held until its signed record arrives
    #: (Engine.on_signed_sample); None for the begin and end readings
    sample: Sample | None = None


@dataclass(frozen=True)
class ResetNow:
    """All transactions are stopped and queued; the runtime may flush the queue and reboot."""
    hard: bool


@dataclass(frozen=True)
class Notice:
    """Something a person at the charger should see (display/LED feedback), e.g. 'tag rejected'."""
    connector_id: int
    text: str


Effect = (StatusChanged | AuthorizeRequest | TxStarted | TxUpdated | TxMeterValues | TxStopped | TxSigned | ResetNow
          | Notice)


def drop_intermediate(items: list, *, keep_last: bool = True) -> list:
    """``items`` with every second intermediate one removed (the 2nd, 4th, 6th, ...: OCPP 2.0.1 J02.FR.20 thins the
    readings of a transaction this way so that they still span all of it); the first and (``keep_last``) the last
    always stay. Nothing to remove -> the same items."""
    if len(items) <= 2:
        return list(items)
    end = len(items) - 1 if keep_last else len(items)
    return [items[0]] + items[2:end:2] + items[end:]


# rfc3339's caches, each one tuple swapped whole (a thread never sees one's key with another's text): the last whole
# second formatted and its text, the last timestamp and its whole text
_last_second: tuple[int | None, str] = (None, "")
_last_stamp: tuple[float | None, str] = (None, "")


def rfc3339(ts: float) -> str:
    """Seconds since the epoch -> RFC 3339 UTC with milliseconds and 'Z' (what every OCPP date-time wants).

    The same text as ``datetime.fromtimestamp(ts, timezone.utc)`` truncated to milliseconds (microseconds
    rounded as datetime rounds them), with the date and time of day formatted once per second: a station
    stamps every message and sample, mostly within the same second (and a reading's time more than once: on
    the transaction record, the message, the sample)."""
    global _last_second, _last_stamp
    last_ts, text = _last_stamp
    if ts == last_ts:       # numerically equal: the same float, the same text
        return text
    frac, whole = math.modf(float(ts))
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole, us = whole + 1, us - 1_000_000
    elif us < 0:
        whole, us = whole - 1, us + 1_000_000
    second = int(whole)
    last_second, prefix = _last_second
    if last_second != second:
        prefix = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
        _last_second = (second, prefix)
    text = f"{prefix}{us // 1000:03d}Z"
    _last_stamp = (ts, text)
    return text


def parse_rfc3339(text: str) -> float:
    """RFC 3339 text -> seconds since the epoch (raises ValueError for anything else)."""
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        raise ValueError(f"date-time without offset: {text!r}")
    return dt.timestamp()
