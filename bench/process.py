"""Measurements of a real ``secure-cp run`` process: cold start, resident memory, idle CPU, offline queue.

Every station here is the production command (``python -m secure_cp.cli run --config station.toml``) with the
simulated hardware, started as a child process and observed from outside through /proc, the way an operator
would see it on a charger. The CSMS for the cold start and the idle measurements runs in this (the bench)
process, so that the moment the BootNotification arrives is taken on the same clock as the spawn.
"""
from __future__ import annotations

import asyncio
import signal
import statistics
import os
import subprocess
import time
import uuid
from pathlib import Path

from .common import (ID_TAG, ROOT, FakeMeter, closed_port, cpu_ns, cpu_ticks_s, die_with_parent,
                     meter_values_payload, python, rfc3339_ms, rss_kib, wakeups)


def write_config(path: Path, identity: str, data_dir: Path, url: str) -> Path:
    """A station TOML with production defaults (reconnect back-off, call timeout, OCPP keys) except identity,
    data directory and CSMS URL."""
    path.write_text(
        "[station]\n"
        f'identity = "{identity}"\nvendor = "bench"\nmodel = "process"\nserial = "B2"\nfirmware_version = "0.1"\n'
        f'data_dir = "{data_dir}"\n\n'
        f'[csms]\nurl = "{url}"\n\n'
        '[log]\nlevel = "INFO"\n'
    )
    return path


class StationProcess:
    """One ``secure-cp run`` child; its stdout and stderr go to a log file (read for markers, shown on failure)."""

    def __init__(self, config: Path, log: Path):
        self.log = log
        self._log_file = open(log, "wb")
        self.spawned_at = time.time()
        self.proc = subprocess.Popen([python(), "-m", "secure_cp.cli", "run", "--config", str(config)],
                                     cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, preexec_fn=die_with_parent)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    async def wait_log(self, marker: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.log_text():
            if self.proc.poll() is not None:
                raise RuntimeError(f"secure-cp exited ({self.proc.returncode}):\n{self.log_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {marker!r} in the station log within {timeout} s:\n{self.log_text()[-2000:]}")
            await asyncio.sleep(0.05)

    async def stop(self) -> int:
        """SIGTERM (the clean shutdown path), SIGKILL if it has not ended after 10 s; returns the exit code.

        Async so that a CSMS running in this event loop can answer the station's closing handshake meanwhile.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode


def interpreter_ms(code: str, runs: int = 3) -> float:
    """Best-of wall time of ``python -c code`` (the part of a cold start that is Python itself and imports)."""
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([python(), "-c", code], cwd=ROOT, check=True)
        best = min(best, time.perf_counter() - t)
    return best * 1000


# ---- cold start, RSS idle, idle CPU ----------------------------------------------------------------------------


async def _boot(csms, tmp: Path, name: str, identity: str, data_dir: Path) -> tuple[StationProcess, float, int]:
    """Spawn a station and wait for its BootNotification: (process, ms from spawn to the CSMS reading the
    frame, index in ``csms.received`` to look for its later messages from)."""
    after = len(csms.received)
    cfg = write_config(tmp / f"{name}.toml", identity, data_dir, csms.url)
    station = StationProcess(cfg, tmp / f"{name}.log")
    try:
        rec = await csms.wait_for("BootNotification", identity=identity, timeout=30, after=after)
    except TimeoutError:
        await station.stop()
        raise RuntimeError(f"no BootNotification from {identity}:\n{station.log_text()[-2000:]}") from None
    return station, (rec.at.timestamp() - station.spawned_at) * 1000, after


def compile_bytecode() -> None:
    """Compile secure_cp's bytecode (``__pycache__``, git-ignored) as an installed station has it: pip compiles
    what it installs, and a charger image ships compiled; without it (e.g. PYTHONDONTWRITEBYTECODE=1 in the
    environment, as on these build machines) every start would compile every module from source first."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([python(), "-m", "compileall", "-q", str(ROOT / "secure_cp")], check=True, env=env,
                   stdout=subprocess.DEVNULL)


async def cold_and_idle(tmp: Path, *, cold_starts: int, idle_wait: float, idle_window: float) -> dict:
    """``cold_starts`` first boots on fresh data directories (database created, migrated), each timed from
    spawn to its BootNotification at the CSMS, then one restart on an existing data directory. The restarted
    station stays up: RSS after ``idle_wait`` s of idle, then CPU and wake-ups over ``idle_window`` s
    (connected, no transaction)."""
    from secure_cp.sim.csms import Csms

    compile_bytecode()
    result: dict = {}
    async with Csms("127.0.0.1", 0) as csms:
        times: list[float] = []
        for i in range(cold_starts):
            station, ms, _ = await _boot(csms, tmp, f"cold-{i + 1}", f"BENCH-COLD-{i + 1}", tmp / f"cold-{i + 1}")
            times.append(ms)
            await station.stop()
        result["cold_start_ms"] = statistics.median(times)
        result["cold_start_runs_ms"] = times
        identity = "BENCH-COLD-1"
        station, ms, after = await _boot(csms, tmp, "restart", identity, tmp / "cold-1")
        result["restart_ms"] = ms
        try:
            # the boot statuses are through, then idle
            await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1, identity=identity,
                                timeout=10, after=after)
            await asyncio.sleep(idle_wait)
            rss, hwm = rss_kib(station.pid)
            result["rss_idle_kib"] = rss
            result["rss_idle_hwm_kib"] = hwm
            received_before = len(csms.received)
            ns0, ticks0, (sw0, threads) = cpu_ns(station.pid), cpu_ticks_s(station.pid), wakeups(station.pid)
            w0 = time.monotonic()
            await asyncio.sleep(idle_window)
            ns1, ticks1, (sw1, threads1) = cpu_ns(station.pid), cpu_ticks_s(station.pid), wakeups(station.pid)
            window = time.monotonic() - w0
            result["idle_window_s"] = window
            result["idle_cpu_pct"] = (ns1 - ns0) / 1e9 / window * 100
            result["idle_cpu_ticks_pct"] = (ticks1 - ticks0) / window * 100
            result["idle_wakeups"] = sw1 - sw0
            result["idle_threads"] = max(threads, threads1)
            result["idle_messages"] = [r.action for r in csms.received[received_before:]]
        finally:
            result["idle_exit_code"] = await station.stop()
    result["python_start_ms"] = interpreter_ms("pass")
    result["python_import_ms"] = interpreter_ms("import secure_cp.cli, secure_cp.runtime")
    return result


# ---- resident memory with a large offline queue ----------------------------------------------------------------


def prefill_outbox(data_dir: Path, count: int) -> int:
    """Put ``count`` transaction messages in the station's outbox, as if one long transaction ran offline:
    StartTransaction, ``count - 2`` periodic MeterValues (one a minute, the same 10 measurands) and
    StopTransaction, all for one stopped transaction the CSMS has not seen yet. Each kind of payload is checked
    against the OCPP 1.6 schema first (as the adapter does before queuing). Returns the pending count."""
    from secure_cp.rpc.schemas import SchemaRegistry
    from secure_cp.store import Database, Outbox, Transactions, TxRecord

    start_ts = time.time() - 60 * count
    stop_ts = start_ts + 60 * (count - 1)
    wh_per_min = 11000 / 60
    meter = FakeMeter()
    tx_key = uuid.uuid4().hex
    start = {"connectorId": 1, "idTag": ID_TAG, "meterStart": 0, "timestamp": rfc3339_ms(start_ts)}
    stop = {"meterStop": int(wh_per_min * (count - 1)), "timestamp": rfc3339_ms(stop_ts), "reason": "Local",
            "idTag": ID_TAG}
    entries = [("StartTransaction", start, tx_key)]
    for i in range(1, count - 1):
        sampled = meter.sampled_values()
        sampled[0] = dict(sampled[0], value=str(int(wh_per_min * i)))
        entries.append(("MeterValues", meter_values_payload(1, None, rfc3339_ms(start_ts + 60 * i), sampled),
                        tx_key))
    entries.append(("StopTransaction", stop, tx_key))
    registry = SchemaRegistry("1.6")
    for action, payload, _ in (entries[0], entries[1], entries[-1]):
        probe = dict(payload)
        if action != "StartTransaction":
            probe["transactionId"] = 0
        registry.validate_request(action, probe)
    db = Database(data_dir / "station.db")
    try:
        rec = TxRecord(tx_key=tx_key, evse_id=1, connector_id=1, id_tag=ID_TAG, started_at=start["timestamp"],
                       meter_start_wh=0, protocol="1.6", last_meter_wh=stop["meterStop"],
                       last_meter_at=stop["timestamp"], stopped_at=stop["timestamp"], meter_stop_wh=stop["meterStop"],
                       stop_reason="Local", stop_id_tag=ID_TAG,
                       # queued already: the engine must not queue them again at boot
                       extra={"q_start": True, "q_stop": True, "samples": []})
        Transactions(db).create(rec)
        Outbox(db).append_many(entries, now=start_ts)
        return Outbox(db).pending_count()
    finally:
        db.close()


def pending_after(data_dir: Path) -> int:
    from secure_cp.store import Database, Outbox
    db = Database(data_dir / "station.db")
    try:
        return Outbox(db).pending_count()
    finally:
        db.close()


async def _offline_rss(tmp: Path, name: str, url: str, queued: int, settle: float) -> dict:
    data_dir = tmp / name
    data_dir.mkdir(parents=True)
    cfg = write_config(tmp / f"{name}.toml", f"BENCH-{name.upper()}", data_dir, url)
    # a first start does the one-time work (the store's schema, the simulated signing meter's key pair): measured
    # like the connected idle station, on a restart
    first = StationProcess(cfg, tmp / f"{name}-first.log")
    try:
        await first.wait_log("cannot connect", 30)
    finally:
        await first.stop()
    prefilled = prefill_outbox(data_dir, queued) if queued else 0
    station = StationProcess(cfg, tmp / f"{name}.log")
    try:
        # the transport's first failed attempt: the station has booted and found nobody to talk to
        await station.wait_log("cannot connect", 30)
        await asyncio.sleep(settle)
        rss, hwm = rss_kib(station.pid)
    finally:
        await station.stop()
    return {"rss_kib": rss, "hwm_kib": hwm, "queued": prefilled,
            "pending_after": pending_after(data_dir) if queued else 0}


async def offline_queue(tmp: Path, *, queued: int, settle: float) -> dict:
    """RSS of an offline station (CSMS URL on a closed 127.0.0.1 port) with an empty outbox and with
    ``queued`` messages in it; the queue must live on disk, not in memory."""
    sock, port = closed_port()
    try:
        url = f"ws://127.0.0.1:{port}"
        empty = await _offline_rss(tmp, "offline-empty", url, 0, settle)
        full = await _offline_rss(tmp, "offline-queue", url, queued, settle)
    finally:
        sock.close()
    return {
        "rss_offline_empty_kib": empty["rss_kib"],
        "rss_offline_queue_kib": full["rss_kib"],
        "rss_offline_queue_hwm_kib": full["hwm_kib"],
        "queued": full["queued"],
        "queued_pending_after": full["pending_after"],
    }

