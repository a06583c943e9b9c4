"""GetConfiguration latency, in the station's process: ``Station.adapter.received(<GetConfiguration CALL>, now)``.

A GetConfiguration.req without ``key`` asks for every key the station offers (OCPP 1.6 §5.8). The time taken is
the whole station-side work: frame decoding, request schema validation, reading every key from the device
model (SQLite), building and validating the response, encoding the CALLRESULT; wall time per call (what a CSMS
waits) and the thread's CPU time (the part that is work, not preemption). Each answer is checked: a
CALLRESULT to our message id that lists every offered key and no unknown one.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .common import MEASURAND_NAMES, bench_hardware


def measure_getconf(data_dir: Path, calls: int, warmup: int = 5) -> dict:
    from secure_cp.config import StationConfig
    from secure_cp.runtime import Station

    cfg = StationConfig(identity="BENCH-GETCONF", data_dir=data_dir, csms_url="ws://127.0.0.1:9",
                        ocpp_config={"MeterValuesSampledData": ",".join(MEASURAND_NAMES)})
    station = Station(cfg, bench_hardware(1))
    try:
        # every configuration key, plus MeterPublicKey<N> per signing meter (OCA note §3.3.1)
        offered = len(station.config.keys()) + len(station.adapter.meter_key_evses)
        times: list[float] = []
        cpu: list[float] = []
        for i in range(warmup + calls):
            uid = f"getconf-{i}"
            text = json.dumps([2, uid, "GetConfiguration", {}])
            t, c = time.perf_counter(), time.thread_time()
            out = station.adapter.received(text, time.time())
            dt, dc = time.perf_counter() - t, time.thread_time() - c
            if len(out) != 1:
                raise RuntimeError(f"GetConfiguration: expected one answer, got {out!r}")
            frame = json.loads(out[0])
            if frame[0] != 3 or frame[1] != uid or len(frame[2].get("configurationKey", [])) != offered \
                    or frame[2].get("unknownKey"):
                raise RuntimeError(f"GetConfiguration: unexpected answer {out[0][:300]}")
            if i >= warmup:
                times.append(dt)
                cpu.append(dc)
        answer_bytes = len(out[0])
    finally:
        station.db.close()
    times.sort()
    cpu.sort()
    p99 = min(len(times) - 1, int(len(times) * 0.99))
    return {
        "getconf_calls": calls,
        "getconf_keys": offered,
        "getconf_bytes": answer_bytes,
        "getconf_median_ms": times[len(times) // 2] * 1000,
        "getconf_p99_ms": times[p99] * 1000,
        "getconf_max_ms": times[-1] * 1000,
        # CPU of the calling thread: tells work from time spent preempted (other processes on the machine)
        "getconf_cpu_median_ms": cpu[len(cpu) // 2] * 1000,
        "getconf_cpu_p99_ms": cpu[p99] * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.getconf --data-dir DIR [--calls N]``: the measurement in a fresh process of its own, so
    that the benchmark's own heap (CSMS records and all) cannot add garbage-collection pauses to the timings."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m bench.getconf")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--calls", type=int, default=200)
    a = p.parse_args(argv)
    print(json.dumps(measure_getconf(Path(a.data_dir), a.calls)), flush=True)


if __name__ == "__main__":
    main()
