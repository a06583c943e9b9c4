"""What every benchmark part shares: the MeterValues payload, the 10-measurand meter, and /proc readers.

The three round-trip clients must send the *same* MeterValues so that the comparison measures the stacks, not
the payloads: one ``meterValue`` with the 10 sampled values below, each ``{"value", "context", "measurand"}``
plus ``"unit"`` where the measurand has one - the shape secure-cp's 1.6 adapter produces
(``secure_cp.v16.messages.sampled_values``). ``SimulatedHardware`` measures 7 measurands; :class:`BenchHardware`
adds three more (Frequency, Power.Factor, Power.Offered) so that secure-cp sends 10 as well, without touching
``secure_cp/``.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

#: (measurand, unit or None) in the order all three clients send them; units are the OCPP 1.6 defaults
#: (secure_cp.engine.model.UNITS).
MEASURANDS: tuple[tuple[str, str | None], ...] = (
    ("Energy.Active.Import.Register", "Wh"),
    ("Power.Active.Import", "W"),
    ("Current.Import", "A"),
    ("Current.Offered", "A"),
    ("Voltage", "V"),
    ("SoC", "Percent"),
    ("Temperature", "Celsius"),
    ("Frequency", None),
    ("Power.Factor", None),
    ("Power.Offered", "W"),
)
MEASURAND_NAMES = tuple(m for m, _ in MEASURANDS)

#: The OCPP 2.0.1 round trips send 10 sampled values too. Temperature is no 2.0.1 measurand (MeasurandEnumType,
#: Part 2 §3.50; secure-cp's 2.0.1 adapter leaves it out), so Energy.Active.Export.Register takes its place.
MEASURANDS_201: tuple[tuple[str, str | None], ...] = tuple(
    ("Energy.Active.Export.Register", "Wh") if m == "Temperature" else (m, u) for m, u in MEASURANDS)
MEASURAND_NAMES_201 = tuple(m for m, _ in MEASURANDS_201)
CONTEXT = "Trigger"        # what Engine.trigger_meter puts on its sample
ID_TAG = "TAG1"            # accepted by the CSMS's default authorization list
MAX_POWER_W = 11000.0
VOLTAGE_V = 230.0
PHASES = 3

ROOT = Path(__file__).resolve().parent.parent      # /work/main: the cwd of every subprocess we start


# ---- time ------------------------------------------------------------------------------------------------------


def rfc3339_ms(ts: float) -> str:
    """Epoch seconds -> RFC 3339 UTC with milliseconds and 'Z' (what OCPP date-times look like)."""
    dt = datetime.fromtimestamp(ts, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class UniqueMs:
    """Epoch seconds that advance by at least 1 ms per call.

    Round trips can be shorter than a millisecond; two MeterValues with the same millisecond timestamp and the
    same values would be identical, and the CSMS counts identical MeterValues as duplicate deliveries. Every
    client takes its timestamps from here so that no payload repeats.
    """

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, now: float | None = None) -> float:
        now = time.time() if now is None else now
        self._last = max(now, self._last + 0.001)
        return self._last


# ---- the payload (clients a and b) -------------------------------------------------------------------------


class FakeMeter:
    """The reading the floor clients send: same measurands, same number formats as the simulated meter."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def sampled_values(self) -> list[dict]:
        """One reading as OCPP 1.6 sampledValue dicts (camelCase, as on the wire)."""
        elapsed = time.monotonic() - self._t0
        energy = int(MAX_POWER_W * elapsed / 3600.0)
        current = MAX_POWER_W / (VOLTAGE_V * PHASES)
        values = (f"{energy}", f"{MAX_POWER_W:.1f}", f"{current:.2f}", f"{current:.1f}", f"{VOLTAGE_V:.1f}",
                  f"{min(100, 20 + energy // 600)}", "25.0", "50.0", "0.98", f"{MAX_POWER_W:.1f}")
        out = []
        for (measurand, unit), value in zip(MEASURANDS, values):
            sv = {"value": value, "context": CONTEXT, "measurand": measurand}
            if unit:
                sv["unit"] = unit
            out.append(sv)
        return out


    def sampled_values_201(self) -> list[dict]:
        """One reading as OCPP 2.0.1 SampledValueType dicts: numbers (not strings, Part 2 §2.53), the unit in
        ``unitOfMeasure`` - the shape secure-cp's 2.0.1 adapter produces (``secure_cp.v201.messages``)."""
        elapsed = time.monotonic() - self._t0
        energy = int(MAX_POWER_W * elapsed / 3600.0)
        current = round(MAX_POWER_W / (VOLTAGE_V * PHASES), 2)
        values = (energy, MAX_POWER_W, current, round(current, 1), VOLTAGE_V, min(100, 20 + energy // 600), 0,
                  50.0, 0.98, MAX_POWER_W)
        out = []
        for (measurand, unit), value in zip(MEASURANDS_201, values):
            sv: dict = {"value": value, "context": CONTEXT, "measurand": measurand}
            if unit:
                sv["unitOfMeasure"] = {"unit": unit}
            out.append(sv)
        return out


def transaction_event_updated(transaction_id: str, seq_no: int, timestamp: str, sampled: list[dict]) -> dict:
    """A TransactionEventRequest Updated with one meterValue, as secure-cp sends for a reading taken on request:
    triggerReason Trigger with the current chargingState (F06.FR.07; Part 2 §1.58)."""
    return {"eventType": "Updated", "timestamp": timestamp, "triggerReason": "Trigger", "seqNo": seq_no,
            "transactionInfo": {"transactionId": transaction_id, "chargingState": "Charging"},
            "meterValue": [{"timestamp": timestamp, "sampledValue": sampled}]}


def transaction_event_started(transaction_id: str, timestamp: str) -> dict:
    """The Started event (seqNo 0) that opens the transaction in the CSMS's ledger (E01/E02)."""
    return {"eventType": "Started", "timestamp": timestamp, "triggerReason": "Authorized", "seqNo": 0,
            "transactionInfo": {"transactionId": transaction_id, "chargingState": "Charging"},
            "evse": {"id": 1, "connectorId": 1}, "idToken": {"idToken": ID_TAG, "type": "Central"}}


def meter_values_payload(connector_id: int, transaction_id: int | None, timestamp: str, sampled: list[dict]) -> dict:
    """A MeterValues.req payload with one meterValue (OCPP 1.6 §6.31)."""
    payload: dict = {"connectorId": connector_id}
    if transaction_id is not None:
        payload["transactionId"] = transaction_id
    payload["meterValue"] = [{"timestamp": timestamp, "sampledValue": sampled}]
    return payload


# ---- the simulated meter with 10 measurands (client c) ----------------------------------------------------


def bench_hardware(connectors: int = 1, *, ocpp201: bool = False, **kw):
    """A :class:`~secure_cp.hal.simulated.SimulatedHardware` whose meter also reports Frequency, Power.Factor
    and Power.Offered, so that MeterValuesSampledData can name the same 10 measurands the other clients send.

    With ``ocpp201`` it also measures Energy.Active.Export.Register (always 0: nothing is fed back), the tenth
    2.0.1 measurand (:data:`MEASURANDS_201`).

    Built lazily (a function, not a module-level class) so that importing :mod:`bench.common` does not import
    secure_cp: the floor clients must not pay for modules they do not use.
    """
    from secure_cp.hal.api import MeterReading
    from secure_cp.hal.simulated import MEASURANDS as SIM_MEASURANDS, SimulatedHardware

    kw.setdefault("max_power_w", MAX_POWER_W)
    constant = {"Frequency": Decimal("50.0"), "Power.Factor": Decimal("0.98"),
                "Power.Offered": Decimal(f"{kw['max_power_w']:.1f}")}
    if ocpp201:
        constant["Energy.Active.Export.Register"] = Decimal(0)
    extra = set(constant)

    class BenchHardware(SimulatedHardware):
        def supported_measurands(self) -> set[str]:
            return set(SIM_MEASURANDS) | extra

        def read_meter(self, connector_id: int) -> MeterReading:
            reading = super().read_meter(connector_id)
            return MeterReading(energy_wh=reading.energy_wh, values={**reading.values, **constant})

    return BenchHardware(connectors, **kw)


# ---- /proc -------------------------------------------------------------------------------------------------


def _status_fields(path: str) -> dict[str, str]:
    out = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB."""
    st = _status_fields(f"/proc/{pid}/status")
    return int(st["VmRSS"].split()[0]), int(st["VmHWM"].split()[0])


def cpu_ns(pid: int) -> int:
    """CPU time of all threads of ``pid`` in ns: the sum of /proc/<pid>/task/*/schedstat "time on CPU".

    schedstat counts nanoseconds; utime+stime in /proc/<pid>/stat counts clock ticks (10 ms here), far too
    coarse for "0.2 % of 10 s" (20 ms). Threads that ended are not counted; the station's do not end.
    """
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def cpu_ticks_s(pid: int) -> float:
    """utime + stime from /proc/<pid>/stat, in seconds (coarse: clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wakeups(pid: int) -> tuple[int, int]:
    """(context switches of all threads, number of threads): every wake-up from sleep is a switch."""
    total, threads = 0, 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            st = _status_fields(f"/proc/{pid}/task/{tid}/status")
        except (FileNotFoundError, ProcessLookupError):
            continue
        threads += 1
        total += int(st["voluntary_ctxt_switches"]) + int(st["nonvoluntary_ctxt_switches"])
    return total, threads


def closed_port() -> tuple[socket.socket, int]:
    """A 127.0.0.1 port nobody listens on: bound (so nobody else gets it) but not listening -> refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def filesystem_of(path: Path) -> str:
    """The file system type under ``path`` (from /proc/mounts): fsync costs differ a lot (ext4 vs tmpfs)."""
    best, fstype = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mount = parts[1]
                if str(path).startswith(mount.rstrip("/") + "/") or str(path) == mount:
                    if len(mount) > len(best):
                        best, fstype = mount, parts[2]
    except OSError:
        pass
    return fstype


def die_with_parent() -> None:
    """``preexec_fn`` for every child: the kernel sends it SIGTERM when the benchmark dies (Linux
    PR_SET_PDEATHSIG), so a killed or timed-out benchmark leaves no station or CSMS behind."""
    import ctypes
    import signal
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)   # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def python() -> str:
    """The interpreter running the benchmark (the venv's), for every subprocess."""
    return sys.executable
