"""The round-trip clients: ``python -m bench.clients {raw,raw-fsync,raw-durable,ocpp,securecp,securecp-nofsync} --url URL
[--ocpp 2.0.1] ...``.

OCPP 1.6 (default): MeterValues round trips, described below. OCPP 2.0.1 (``--ocpp 2.0.1``, subprotocol
``ocpp2.0.1``): the same, with TransactionEvent Updated (triggerReason Trigger, 10 sampled values) after a
TransactionEvent Started for the same transactionId (the CSMS's ledger wants the Started first), seqNo counting
up from 1; secure-cp runs a 2.0.1 transaction (its transactionId, its seqNos) and takes the reading through
``Station.trigger_meter_values``, which the 2.0.1 adapter turns into exactly such an Updated event.

Each runs in a fresh process of its own, so that the CPU it reports (``time.process_time()``: all threads of
the process, user + system) is the station process's and nothing else's. Each connects to the same CSMS,
registers (BootNotification), starts a transaction (StartTransaction with an accepted idTag; the CSMS refuses
MeterValues for a transactionId it never issued), runs ``--warmup`` round trips, then measures ``--n`` round
trips: send one MeterValues, wait for its CALLRESULT, and only then send the next. It prints one JSON object.

* ``raw``: ``websockets`` + ``json`` by hand, no validation, nothing persisted: the floor.
* ``raw-durable``: ``raw`` plus the least a station that loses nothing across a power cut must add: each message's
  text committed durably before it is sent (SQLite in ``--data-dir``, WAL, synchronous=FULL: secure-cp's
  settings), and deleted once answered, with the next commit (as secure-cp does). No validation, no engine.
* ``raw-fsync``: ``raw`` plus the cheapest durable write there is, without a database: each message's text
  written (``pwrite``) into a preallocated file in ``--data-dir`` and ``fdatasync``-ed before it is sent. Not a
  store anyone could recover from (no framing, no checksum, no deletion); it measures what the kernel charges
  for making one message durable, whatever keeps it.
* ``ocpp``: the ``ocpp`` package's ``v16.ChargePoint`` (dataclass payloads, JSON-schema validation of request
  and response, the way that package is meant to be used).
* ``securecp``: a real ``secure_cp.runtime.Station`` on a SQLite store in ``--data-dir``, in a transaction
  (plug + tag through the simulated hardware). Per round trip ``Engine.trigger_meter`` takes a reading and the
  runtime polls the adapter, exactly what the runtime does after a hardware event: the sample goes through the
  engine, the 1.6 adapter, schema validation, the persistent outbox (SQLite, synchronous=FULL) and the
  transport; the CALLRESULT removes it from the outbox.

All of them use the same WebSocket settings (``websockets`` defaults: permessage-deflate on, as secure-cp's
transport offers it) and the same payload (:mod:`bench.common`).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import sys
import time
import uuid
from typing import Awaitable, Callable

from .common import (CONTEXT, ID_TAG, MEASURAND_NAMES, MEASURAND_NAMES_201, FakeMeter, UniqueMs,
                     bench_hardware, meter_values_payload, rfc3339_ms, transaction_event_started,
                     transaction_event_updated)

RoundTrip = Callable[[], Awaitable[None]]


async def measure(round_trip: RoundTrip, n: int, warmup: int, profile: str | None = None) -> dict:
    """Run ``warmup`` unmeasured and ``n`` measured round trips; CPU and wall time per round trip."""
    for _ in range(warmup):
        await round_trip()
    prof = None
    if profile:
        import cProfile
        # CPU time, not wall time: what the station process spends, not how long it waits for the CSMS or fsync
        prof = cProfile.Profile(time.process_time)
    walls: list[float] = []
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    c0, w0 = time.process_time(), time.perf_counter()
    if prof:
        prof.enable()
    for _ in range(n):
        t = time.perf_counter()
        await round_trip()
        walls.append(time.perf_counter() - t)
    if prof:
        prof.disable()
    c1, w1 = time.process_time(), time.perf_counter()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    if prof:
        prof.dump_stats(profile)
    walls.sort()
    return {
        "n": n,
        "warmup": warmup,
        "cpu_us": (c1 - c0) / n * 1e6,
        "user_us": (ru1.ru_utime - ru0.ru_utime) / n * 1e6,
        "sys_us": (ru1.ru_stime - ru0.ru_stime) / n * 1e6,
        "wall_us": (w1 - w0) / n * 1e6,
        "wall_p50_us": walls[len(walls) // 2] * 1e6,
        "wall_p99_us": walls[min(len(walls) - 1, int(len(walls) * 0.99))] * 1e6,
        "ctx_switches_per_rt": ((ru1.ru_nvcsw + ru1.ru_nivcsw) - (ru0.ru_nvcsw + ru0.ru_nivcsw)) / n,
        "profiled": bool(prof),
    }


def _boot_payload(model: str) -> dict:
    return {"chargePointVendor": "bench", "chargePointModel": model}


# ---- (a) raw websockets + json ---------------------------------------------------------------------------------


class DurableLog:
    """(a+)'s store: one SQLite file with secure-cp's settings (WAL, synchronous=FULL), one table of message texts.
    ``store`` commits a text durably (deleting the one answered before in the same commit); ``answered`` marks
    the last stored text for that deletion."""

    def __init__(self, path: str) -> None:
        import sqlite3   # here: (a) itself must not pay for what only (a+) uses

        self.conn = sqlite3.connect(path, isolation_level=None)
        if self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
            raise RuntimeError(f"{path}: no WAL journal")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT NOT NULL)")
        self._last: int | None = None
        self._done: int | None = None
        # A floor, so its best case: a WAL file that no longer grows. A new WAL grows with every commit until the
        # first automatic checkpoint (1000 pages) and is overwritten from then on, and an fdatasync that also
        # writes a new file size costs the kernel far more. So: well past the first checkpoint before measuring.
        for _ in range(600):
            self.store("x" * 900)
            self.answered()
        self.store("")
        self.answered()

    def store(self, text: str) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        if self._done is not None:
            conn.execute("DELETE FROM outbox WHERE seq = ?", (self._done,))
            self._done = None
        self._last = conn.execute("INSERT INTO outbox (text) VALUES (?)", (text,)).lastrowid
        conn.execute("COMMIT")

    def answered(self) -> None:
        self._done = self._last


async def _raw_call(ws, action: str, payload: dict, log: DurableLog | FsyncLog | None = None) -> dict:
    """The floor: one CALL as plain json over websockets, waiting for its CALLRESULT (with ``log``: stored
    durably before it is sent)."""
    uid = str(uuid.uuid4())
    text = json.dumps([2, uid, action, payload], separators=(",", ":"))
    if log is not None:
        log.store(text)
    await ws.send(text)
    while True:
        msg = json.loads(await ws.recv())
        if msg[0] in (3, 4) and msg[1] == uid:
            break
    if msg[0] != 3:
        raise RuntimeError(f"{action} answered with CALLERROR {msg[2:]}")
    if log is not None:
        log.answered()
    return msg[2]


class FsyncLog:
    """(af)'s "store": each text written over a preallocated file (so that no write changes its size, the cheap
    case for the file system) and ``fdatasync``-ed. The bare cost of durability, with nothing to recover from."""

    SLOT = 8192               # bytes a text may take (the bench's messages are about 1 KB)
    SLOTS = 512

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.pwrite(self.fd, bytes(self.SLOT * self.SLOTS), 0)
        os.fsync(self.fd)
        self._next = 0

    def store(self, text: str) -> None:
        data = text.encode()
        if len(data) > self.SLOT:
            raise ValueError(f"a {len(data)}-byte message does not fit a {self.SLOT}-byte slot")
        os.pwrite(self.fd, data, self._next * self.SLOT)
        os.fdatasync(self.fd)
        self._next = (self._next + 1) % self.SLOTS

    def answered(self) -> None:
        pass


#: one identity per client, so that the CSMS keeps their transactions apart
_IDENTITY_SUFFIX = {"raw": "", "raw-durable": "-DURABLE", "raw-fsync": "-FSYNC"}
#: every client, in the order ``python -m bench`` runs them
KINDS = ("raw", "raw-fsync", "raw-durable", "ocpp", "securecp", "securecp-nofsync")


def needs_data_dir(kind: str) -> bool:
    """Whether the client keeps something on disk (``--data-dir``)."""
    return kind not in ("raw", "ocpp")


def _durable_log(data_dir: str | None, kind: str) -> DurableLog | FsyncLog | None:
    if data_dir is None:
        return None
    from pathlib import Path

    Path(data_dir).mkdir(parents=True, exist_ok=True)
    if kind == "raw-fsync":
        return FsyncLog(str(Path(data_dir) / "raw-fsync.log"))
    return DurableLog(str(Path(data_dir) / "raw-durable.db"))


async def run_raw(url: str, n: int, warmup: int, profile: str | None, data_dir: str | None = None,
                 kind: str = "raw") -> dict:
    from websockets.asyncio.client import connect

    log = _durable_log(data_dir, kind)
    async with connect(f"{url}/BENCH-A-RAW" + _IDENTITY_SUFFIX[kind], subprotocols=["ocpp1.6"]) as ws:
        async def call(action: str, payload: dict) -> dict:
            return await _raw_call(ws, action, payload, log)

        clock = UniqueMs()
        await call("BootNotification", _boot_payload("raw"))
        start = await call("StartTransaction", {"connectorId": 1, "idTag": ID_TAG, "meterStart": 0,
                                                "timestamp": rfc3339_ms(clock())})
        tid = start["transactionId"]
        meter = FakeMeter()

        async def round_trip() -> None:
            await call("MeterValues", meter_values_payload(1, tid, rfc3339_ms(clock()), meter.sampled_values()))

        result = await measure(round_trip, n, warmup, profile)
    result["kind"] = "raw"
    return result


# ---- (b) the ocpp package ---------------------------------------------------------------------------------------


async def run_ocpp(url: str, n: int, warmup: int, profile: str | None) -> dict:
    from ocpp.v16 import ChargePoint, call, datatypes, enums
    from websockets.asyncio.client import connect

    async with connect(f"{url}/BENCH-B-OCPP", subprotocols=["ocpp1.6"]) as ws:
        cp = ChargePoint("BENCH-B-OCPP", ws)
        reader = asyncio.create_task(cp.start())
        clock = UniqueMs()
        await cp.call(call.BootNotification(charge_point_model="ocpp", charge_point_vendor="bench"), suppress=False)
        start = await cp.call(call.StartTransaction(connector_id=1, id_tag=ID_TAG, meter_start=0,
                                                    timestamp=rfc3339_ms(clock())), suppress=False)
        tid = start.transaction_id
        meter = FakeMeter()
        context = enums.ReadingContext(CONTEXT)

        async def round_trip() -> None:
            sampled = [datatypes.SampledValue(value=sv["value"], context=context,
                                              measurand=enums.Measurand(sv["measurand"]),
                                              unit=enums.UnitOfMeasure(sv["unit"]) if "unit" in sv else None)
                       for sv in meter.sampled_values()]
            mv = datatypes.MeterValue(timestamp=rfc3339_ms(clock()), sampled_value=sampled)
            await cp.call(call.MeterValues(connector_id=1, transaction_id=tid, meter_value=[mv]), suppress=False)

        try:
            result = await measure(round_trip, n, warmup, profile)
        finally:
            reader.cancel()
    result["kind"] = "ocpp"
    return result


# ---- (a) and (b) on OCPP 2.0.1 -----------------------------------------------------------------------------------


async def run_raw201(url: str, n: int, warmup: int, profile: str | None, data_dir: str | None = None,
                 kind: str = "raw") -> dict:
    from websockets.asyncio.client import connect

    log = _durable_log(data_dir, kind)
    async with connect(f"{url}/BENCH-A-RAW-201" + _IDENTITY_SUFFIX[kind], subprotocols=["ocpp2.0.1"]) as ws:
        if ws.subprotocol != "ocpp2.0.1":
            raise RuntimeError(f"the CSMS chose {ws.subprotocol!r}, not ocpp2.0.1")

        async def call(action: str, payload: dict) -> dict:
            return await _raw_call(ws, action, payload, log)

        clock = UniqueMs()
        boot = await call("BootNotification", {"chargingStation": {"model": "raw", "vendorName": "bench"},
                                               "reason": "PowerUp"})
        if boot["status"] != "Accepted":
            raise RuntimeError(f"BootNotification {boot}")
        tid = uuid.uuid4().hex   # 32 characters, like secure-cp's transactionId
        await call("TransactionEvent", transaction_event_started(tid, rfc3339_ms(clock())))
        meter = FakeMeter()
        seq = 0

        async def round_trip() -> None:
            nonlocal seq
            seq += 1
            await call("TransactionEvent", transaction_event_updated(tid, seq, rfc3339_ms(clock()),
                                                                     meter.sampled_values_201()))

        result = await measure(round_trip, n, warmup, profile)
    result["kind"] = "raw"
    result["transaction_id"] = tid
    return result


async def run_ocpp201(url: str, n: int, warmup: int, profile: str | None) -> dict:
    from ocpp.v201 import ChargePoint, call, datatypes, enums
    from websockets.asyncio.client import connect

    async with connect(f"{url}/BENCH-B-OCPP-201", subprotocols=["ocpp2.0.1"]) as ws:
        if ws.subprotocol != "ocpp2.0.1":
            raise RuntimeError(f"the CSMS chose {ws.subprotocol!r}, not ocpp2.0.1")
        cp = ChargePoint("BENCH-B-OCPP-201", ws)
        reader = asyncio.create_task(cp.start())
        clock = UniqueMs()
        await cp.call(call.BootNotification(
            charging_station=datatypes.ChargingStationType(vendor_name="bench", model="ocpp"),
            reason=enums.BootReasonEnumType.power_up), suppress=False)
        tid = uuid.uuid4().hex
        charging = enums.ChargingStateEnumType.charging
        await cp.call(call.TransactionEvent(
            event_type=enums.TransactionEventEnumType.started, timestamp=rfc3339_ms(clock()),
            trigger_reason=enums.TriggerReasonEnumType.authorized, seq_no=0,
            transaction_info=datatypes.TransactionType(transaction_id=tid, charging_state=charging),
            evse=datatypes.EVSEType(id=1, connector_id=1),
            id_token=datatypes.IdTokenType(id_token=ID_TAG, type=enums.IdTokenEnumType.central)), suppress=False)
        meter = FakeMeter()
        context = enums.ReadingContextEnumType(CONTEXT)
        seq = 0

        async def round_trip() -> None:
            nonlocal seq
            seq += 1
            ts = rfc3339_ms(clock())
            sampled = [datatypes.SampledValueType(
                value=sv["value"], context=context, measurand=enums.MeasurandEnumType(sv["measurand"]),
                unit_of_measure=datatypes.UnitOfMeasureType(unit=sv["unitOfMeasure"]["unit"])
                if "unitOfMeasure" in sv else None)
                for sv in meter.sampled_values_201()]
            await cp.call(call.TransactionEvent(
                event_type=enums.TransactionEventEnumType.updated, timestamp=ts,
                trigger_reason=enums.TriggerReasonEnumType.trigger, seq_no=seq,
                transaction_info=datatypes.TransactionType(transaction_id=tid, charging_state=charging),
                meter_value=[datatypes.MeterValueType(timestamp=ts, sampled_value=sampled)]), suppress=False)

        try:
            result = await measure(round_trip, n, warmup, profile)
        finally:
            reader.cancel()
    result["kind"] = "ocpp"
    result["transaction_id"] = tid
    return result


# ---- (c) secure-cp -----------------------------------------------------------------------------------------------


def _bench_station_class():
    from secure_cp.runtime import Station

    class BenchStation(Station):
        """A Station that says when its outstanding CALL has been answered (for the round-trip loop).

        The runtime has no public hook for "take a meter reading now" or "the line is idle"; the two methods
        below use what the runtime itself uses after a hardware event (``_on_hal``) and on every received frame.
        """

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.idle = asyncio.Event()
            self.rx_count = 0

        def _on_message(self, text: str) -> None:
            super()._on_message(text)
            self.rx_count += 1
            if not self.adapter.endpoint.busy:
                self.idle.set()

        def meter_now(self, now: float) -> None:
            self.idle.clear()
            self.trigger_meter_values(1)

    return BenchStation


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"secure-cp: {what} did not happen within {timeout} s")
        await asyncio.sleep(0.01)


async def _quiet(station, timeout: float = 10.0) -> None:
    """Wait until nothing is in flight and no frame arrived for 0.3 s (boot statuses etc. are through)."""
    deadline = time.monotonic() + timeout
    last, since = station.rx_count, time.monotonic()
    while time.monotonic() - since < 0.3:
        if time.monotonic() > deadline:
            raise TimeoutError("secure-cp: the connection did not become idle")
        await asyncio.sleep(0.02)
        if station.rx_count != last or station.adapter.endpoint.busy:
            last, since = station.rx_count, time.monotonic()


def _tx_running(station, ocpp201: bool) -> bool:
    """The transaction is open at the CSMS: 1.6 StartTransaction confirmed (it has the CSMS's transactionId);
    2.0.1 Started queued and delivered (the outbox is empty again)."""
    tx = station.engine.tx_on(1)
    if tx is None:
        return False
    if not ocpp201:
        return tx.transaction_id is not None
    return bool(tx.extra.get("q_start")) and station.outbox.pending_count() == 0


def _without_fsync() -> None:
    """For (c') only: every database this process opens commits without fsync (PRAGMA synchronous=NORMAL), so the
    report can show what the durable commit of each transaction message costs. Never done by the product."""
    from secure_cp.store import db

    connect = db.Database._connect

    def _connect(self):
        conn = connect(self)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn
    db.Database._connect = _connect


async def run_securecp(url: str, n: int, warmup: int, profile: str | None, data_dir: str,
                       ocpp201: bool = False, identity_suffix: str = "") -> dict:
    from pathlib import Path

    from secure_cp.config import StationConfig

    measurands = MEASURAND_NAMES_201 if ocpp201 else MEASURAND_NAMES
    cfg = StationConfig(identity="BENCH-C-SECURECP" + ("-201" if ocpp201 else "") + identity_suffix, vendor="bench",
                        model="secure-cp", serial="B1", firmware_version="0.1", data_dir=Path(data_dir),
                        csms_url=url, reconnect_min=0.05, reconnect_max=0.5, call_timeout=10.0,
                        protocols=["ocpp2.0.1" if ocpp201 else "ocpp1.6"],
                        ocpp_config={"MeterValueSampleInterval": "0", "HeartbeatInterval": "300",
                                     "MeterValuesSampledData": ",".join(measurands)},
                        # the round trips are the periodic metering path; a signing meter would only add the signed
                        # begin record once (issue #5's own bench: python -m bench.ocmf)
                        eichrecht_mode="off")
    # No state_file: the simulator's register file (a JSON write per reading) is the simulator's business,
    # not the stack's; a real meter is read over Modbus/SML, not from a file.
    hw = bench_hardware(1, ocpp201=ocpp201)
    station = _bench_station_class()(cfg, hw)
    runner = asyncio.create_task(station.run())
    try:
        await _until(lambda: station.adapter.registration == "accepted", 10, "BootNotification Accepted")
        await _quiet(station)
        hw.ev_plug(1, True)
        hw.present_tag(ID_TAG)
        await _until(lambda: _tx_running(station, ocpp201), 10,
                     "TransactionEvent Started delivered" if ocpp201 else "StartTransaction confirmed")
        await _quiet(station)
        clock = UniqueMs()
        sent = 0

        async def round_trip() -> None:
            nonlocal sent
            station.meter_now(clock(station.clock.now()))
            await station.idle.wait()
            sent += 1

        result = await measure(round_trip, n, warmup, profile)
        # undelivered (1.6: delivered rows may wait up to 2 s for their deletion to ride on a durable write)
        result["outbox_pending_after"] = getattr(station.adapter, "pending_messages", station.outbox.pending_count)()
        result["sent"] = sent
        result["subprotocol"] = station.adapter.subprotocol
        tx = station.engine.tx_on(1)
        result["transaction_id"] = tx.transaction_id if tx is not None else None
    finally:
        await station.stop()
        await asyncio.wait_for(runner, 10)
    result["kind"] = "securecp"
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.clients")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--url", required=True)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--data-dir", help="secure-cp's data directory (securecp), the SQLite file's (raw-durable), the "
                                      "preallocated file's (raw-fsync)")
    p.add_argument("--profile", metavar="FILE", help="cProfile the measured loop into FILE")
    p.add_argument("--ocpp", choices=["1.6", "2.0.1"], default="1.6",
                   help="protocol version: 1.6 MeterValues (default) or 2.0.1 TransactionEvent Updated")
    a = p.parse_args(argv)
    v201 = a.ocpp == "2.0.1"
    if needs_data_dir(a.kind) and not a.data_dir:
        p.error(f"{a.kind} needs --data-dir")
    if a.kind in _IDENTITY_SUFFIX:
        coro = (run_raw201 if v201 else run_raw)(a.url, a.n, a.warmup, a.profile,
                                                 a.data_dir if a.kind != "raw" else None, a.kind)
    elif a.kind == "ocpp":
        coro = (run_ocpp201 if v201 else run_ocpp)(a.url, a.n, a.warmup, a.profile)
    else:
        if a.kind == "securecp-nofsync":
            _without_fsync()
        coro = run_securecp(a.url, a.n, a.warmup, a.profile, a.data_dir, ocpp201=v201,
                            identity_suffix="-NOFSYNC" if a.kind == "securecp-nofsync" else "")
    result = asyncio.run(coro)
    result["ocpp"] = a.ocpp
    result["kind"] = a.kind
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    # WARNING: no per-message logging in any client (a station in production logs at INFO, which is per
    # transaction, not per message)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    main()
