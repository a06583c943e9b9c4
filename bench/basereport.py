"""OCPP 2.0.1 GetBaseReport FullInventory latency: ``python -m bench.basereport --data-dir DIR [--runs 20]``.

Target (issue #3): a FullInventory GetBaseReport answered and fully sent in <= 50 ms. Measured from the CSMS's
side, which is where "fully sent" can be seen: from the moment the CSMS sends GetBaseReport (``Csms.call``:
schema check, send, the station's CALLRESULT) until the NotifyReport with tbc=false, and every seqNo before it,
has arrived and been answered (``Csms.wait_report``; Part 2 B07.FR.04/10). The station sends one CALL at a time
(OCPP-J: one CALL in flight), so every part costs a round trip to the CSMS.

The station is the production command (``python -m secure_cp.cli run``, simulated hardware, ``protocols =
["ocpp2.0.1"]``) in a process of its own; the CSMS (``secure_cp.sim.csms.Csms``, strict: every NotifyReport is
validated against its schema) runs in this process, so both ends' clocks are the same and the CSMS's CPU is
not the station's. Each report is checked: Accepted, complete, same number of reportData entries every run.
Besides the wall time, the CPU each side spent per report (station: /proc schedstat of the station process;
CSMS: this process) shows which end the time goes to.

The strict CSMS validates every NotifyReport part with ``jsonschema`` (tens of ms for a 15 kB part) before it
answers, and the station cannot send part n+1 before part n is answered, so that CSMS's CPU lies on the critical
path. The same measurement is therefore also made against a minimal CSMS (:func:`measure_basereport_minimal`:
``websockets`` + ``json``, answers at once, validates nothing): the floor, i.e. the station's own time.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path

from .common import cpu_ns
from .process import StationProcess

IDENTITY = "BENCH-REPORT-201"


def write_config_201(path: Path, data_dir: Path, url: str) -> Path:
    """A production-default station TOML that offers only OCPP 2.0.1."""
    path.write_text(
        "[station]\n"
        f'identity = "{IDENTITY}"\nvendor = "bench"\nmodel = "basereport"\nserial = "B3"\nfirmware_version = "0.1"\n'
        f'data_dir = "{data_dir}"\n\n'
        f'[csms]\nurl = "{url}"\nprotocols = ["ocpp2.0.1"]\n\n'
        '[log]\nlevel = "WARNING"\n'
    )
    return path


async def _quiet(csms, seconds: float = 0.3, timeout: float = 10.0) -> None:
    """Until the CSMS has received nothing for ``seconds`` (the boot's StatusNotifications are through)."""
    deadline = time.monotonic() + timeout
    last, since = len(csms.received), time.monotonic()
    while time.monotonic() - since < seconds and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if len(csms.received) != last:
            last, since = len(csms.received), time.monotonic()


async def measure_basereport(tmp: Path, runs: int, warmup: int = 2) -> dict:
    from secure_cp.sim.csms import Csms

    tmp.mkdir(parents=True, exist_ok=True)
    async with Csms("127.0.0.1", 0, subprotocols=("ocpp2.0.1",)) as csms:
        cfg = write_config_201(tmp / "basereport.toml", tmp / "data", csms.url)
        station = StationProcess(cfg, tmp / "basereport.log")
        try:
            try:
                await csms.wait_for("BootNotification", identity=IDENTITY, timeout=30)
            except TimeoutError:
                raise RuntimeError(f"no BootNotification from {IDENTITY}:\n{station.log_text()[-2000:]}") from None
            await _quiet(csms)
            walls: list[float] = []
            station_cpu: list[float] = []
            csms_cpu: list[float] = []
            items = parts = None
            for i in range(warmup + runs):
                request_id = 1000 + i
                before = len(csms.received)
                s0, c0, t0 = cpu_ns(station.pid), time.process_time(), time.perf_counter()
                answer = await csms.call(IDENTITY, "GetBaseReport", {"requestId": request_id,
                                                                     "reportBase": "FullInventory"})
                if answer.get("status") != "Accepted":
                    raise RuntimeError(f"GetBaseReport FullInventory answered {answer}")
                data = await csms.wait_report(IDENTITY, request_id, timeout=30)
                t1, c1, s1 = time.perf_counter(), time.process_time(), cpu_ns(station.pid)
                n_parts = sum(1 for r in csms.received[before:]
                              if r.action == "NotifyReport" and r.payload["requestId"] == request_id)
                if items is None:
                    items, parts = len(data), n_parts
                elif (items, parts) != (len(data), n_parts):
                    raise RuntimeError(f"report {request_id}: {len(data)} items in {n_parts} parts, "
                                       f"earlier {items} in {parts}")
                if i >= warmup:
                    walls.append(t1 - t0)
                    station_cpu.append((s1 - s0) / 1e9)
                    csms_cpu.append(c1 - c0)
                await asyncio.sleep(0.05)   # let the station's post-report bookkeeping settle
            violations = list(csms.violations)
            part_bytes = [len(json.dumps(r.payload, separators=(",", ":"), default=str))
                          for r in csms.received if r.action == "NotifyReport" and r.payload["requestId"] == 1000]
        finally:
            await station.stop()
    walls.sort()
    p99 = min(len(walls) - 1, int(len(walls) * 0.99))
    med = len(walls) // 2
    return {
        "basereport_runs": runs,
        "basereport_items": items,
        "basereport_parts": parts,
        "basereport_bytes": sum(part_bytes),
        "basereport_median_ms": walls[med] * 1000,
        "basereport_p99_ms": walls[p99] * 1000,
        "basereport_min_ms": walls[0] * 1000,
        "basereport_station_cpu_median_ms": sorted(station_cpu)[med] * 1000,
        "basereport_csms_cpu_median_ms": sorted(csms_cpu)[med] * 1000,
        "basereport_violations": len(violations),
        "basereport_violation_samples": violations[:3],
    }


# ---- the same against a minimal CSMS -----------------------------------------------------------------------------


class MinimalCsms:
    """``websockets`` + ``json``, no validation: answers every station CALL at once with the smallest valid
    response, and notes when the final NotifyReport part of a requestId arrives (before answering it)."""

    ANSWERS = {"Authorize": {"idTokenInfo": {"status": "Accepted"}}}

    def __init__(self) -> None:
        self.url = ""
        self.ws = None
        self.connected = asyncio.Event()
        self.received = 0
        self._pending: dict[str, asyncio.Future] = {}
        self._reports: dict[int, dict] = {}      # requestId -> {"parts": set of seqNos, "final": seqNo, "done": fut}

    def _now_text(self) -> str:
        from .common import rfc3339_ms
        return rfc3339_ms(time.time())

    async def _handler(self, ws) -> None:
        self.ws = ws
        self.connected.set()
        async for text in ws:
            msg = json.loads(text)
            if msg[0] == 2:
                self.received += 1
                uid, action, payload = msg[1], msg[2], msg[3]
                if action == "NotifyReport":
                    self._report_part(payload)
                if action == "BootNotification":
                    answer = {"currentTime": self._now_text(), "interval": 300, "status": "Accepted"}
                elif action == "Heartbeat":
                    answer = {"currentTime": self._now_text()}
                else:
                    answer = self.ANSWERS.get(action, {})
                await ws.send(json.dumps([3, uid, answer], separators=(",", ":")))
            elif msg[0] in (3, 4):
                fut = self._pending.pop(msg[1], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)

    def _report_part(self, payload: dict) -> None:
        rep = self._reports.get(payload["requestId"])
        if rep is None:
            return
        rep["parts"].add(payload["seqNo"])
        rep["items"] += len(payload.get("reportData", []))
        if not payload.get("tbc", False):
            rep["final"] = payload["seqNo"]
        if rep["final"] is not None and rep["parts"] == set(range(rep["final"] + 1)) and not rep["done"].done():
            rep["done"].set_result(None)

    async def get_base_report(self, request_id: int, timeout: float = 30) -> tuple[dict, int, int]:
        """Send GetBaseReport FullInventory; return (response, parts, items) once the whole report arrived."""
        loop = asyncio.get_running_loop()
        rep = self._reports[request_id] = {"parts": set(), "final": None, "items": 0, "done": loop.create_future()}
        uid = str(uuid.uuid4())
        answer = self._pending[uid] = loop.create_future()
        await self.ws.send(json.dumps([2, uid, "GetBaseReport",
                                       {"requestId": request_id, "reportBase": "FullInventory"}]))
        async with asyncio.timeout(timeout):
            res = await answer
            if res[0] != 3:
                raise RuntimeError(f"GetBaseReport answered {res}")
            await rep["done"]
        return res[2], len(rep["parts"]), rep["items"]


async def measure_basereport_minimal(tmp: Path, runs: int, warmup: int = 2) -> dict:
    from websockets.asyncio.server import serve

    tmp.mkdir(parents=True, exist_ok=True)
    csms = MinimalCsms()
    async with serve(csms._handler, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"]) as server:
        csms.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        cfg = write_config_201(tmp / "basereport-min.toml", tmp / "data-min", csms.url)
        station = StationProcess(cfg, tmp / "basereport-min.log")
        try:
            try:
                async with asyncio.timeout(30):
                    await csms.connected.wait()
            except TimeoutError:
                raise RuntimeError(f"{IDENTITY} did not connect:\n{station.log_text()[-2000:]}") from None
            deadline, last, since = time.monotonic() + 10, -1, time.monotonic()
            while time.monotonic() - since < 0.3 and time.monotonic() < deadline:   # boot messages through
                await asyncio.sleep(0.05)
                if csms.received != last:
                    last, since = csms.received, time.monotonic()
            walls: list[float] = []
            station_cpu: list[float] = []
            shape = None
            for i in range(warmup + runs):
                s0, t0 = cpu_ns(station.pid), time.perf_counter()
                answer, parts, items = await csms.get_base_report(2000 + i)
                t1, s1 = time.perf_counter(), cpu_ns(station.pid)
                if answer.get("status") != "Accepted":
                    raise RuntimeError(f"GetBaseReport FullInventory answered {answer}")
                if shape is None:
                    shape = (parts, items)
                elif shape != (parts, items):
                    raise RuntimeError(f"report {2000 + i}: {items} items in {parts} parts, earlier {shape}")
                if i >= warmup:
                    walls.append(t1 - t0)
                    station_cpu.append((s1 - s0) / 1e9)
                await asyncio.sleep(0.05)
        finally:
            await station.stop()
    walls.sort()
    p99 = min(len(walls) - 1, int(len(walls) * 0.99))
    med = len(walls) // 2
    return {
        "basereport_min_csms_median_ms": walls[med] * 1000,
        "basereport_min_csms_p99_ms": walls[p99] * 1000,
        "basereport_min_csms_station_cpu_median_ms": sorted(station_cpu)[med] * 1000,
        "basereport_min_csms_parts": shape[0],
        "basereport_min_csms_items": shape[1],
    }


def main(argv: list[str] | None = None) -> None:
    """The measurement in a fresh process of its own (the CSMS here, the station a child of it)."""
    p = argparse.ArgumentParser(prog="python -m bench.basereport")
    p.add_argument("--data-dir", required=True, help="a fresh directory for the station's data and log")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    a = p.parse_args(argv)
    import logging
    logging.basicConfig(level=logging.ERROR, format="csms: %(levelname)s %(name)s: %(message)s")
    result = asyncio.run(measure_basereport(Path(a.data_dir), a.runs, a.warmup))
    result.update(asyncio.run(measure_basereport_minimal(Path(a.data_dir), a.runs, a.warmup)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
