"""``python -m bench``: run every measurement once, print the table (and ``--json FILE``). Exit 0 even on MISS.

Run from the project root with the venv's interpreter: ``.venv/bin/python -m bench`` (about 2.5 minutes on 2 cores;
the round-trip clients run in 5 interleaved rounds, ``--rounds``), ``--quick`` (about 35 s). ``--profile`` adds a cProfile run of client (c) on 1.6 and on 2.0.1 and the 1.6 per-step
CPU breakdown. Sections (``--only``): ``roundtrip`` (1.6 MeterValues), ``roundtrip201`` (2.0.1 TransactionEvent
Updated), ``process``, ``queue``, ``getconf`` (1.6), ``basereport`` (2.0.1 GetBaseReport FullInventory).
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import report
from .clients import KINDS, needs_data_dir
from .common import ROOT, die_with_parent, filesystem_of, python
from .process import cold_and_idle, offline_queue

SECTIONS = ("roundtrip", "roundtrip201", "process", "queue", "getconf", "basereport")
#: section -> OCPP version of its round trips
ROUNDTRIP_VERSIONS = {"roundtrip": "1.6", "roundtrip201": "2.0.1"}


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class CsmsProcess:
    """``python -m bench.csms_proc`` as a child: its URL, and its counters on demand."""

    def __init__(self, log: Path):
        self._log = open(log, "wb")
        self.proc = subprocess.Popen([python(), "-m", "bench.csms_proc"], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     preexec_fn=die_with_parent)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the CSMS process did not start (see {log})")
        self.url = json.loads(line)["url"]

    def stats(self) -> dict:
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def run_client(kind: str, url: str, n: int, warmup: int, tmp: Path, profile: Path | None = None,
               ocpp: str = "1.6", wrapper: list[str] | None = None) -> dict:
    """One client process (``wrapper``: a command that runs it, e.g. valgrind); its JSON result."""
    cmd = [*(wrapper or []), python(), "-m", "bench.clients", kind, "--url", url, "--n", str(n), "--warmup",
           str(warmup), "--ocpp", ocpp]
    if needs_data_dir(kind):
        data_dir = tmp / f"{kind}-{time.monotonic_ns()}"
        cmd += ["--data-dir", str(data_dir)]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, preexec_fn=die_with_parent)
    if done.returncode != 0:
        raise RuntimeError(f"client {kind} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def roundtrips(n: int, warmup: int, tmp: Path, ocpp: str = "1.6", rounds: int = 1) -> dict:
    """The clients against one fresh CSMS process (per OCPP version), in ``rounds`` interleaved rounds of ``n /
    rounds`` round trips each (a, b, c, c', a, b, c, c', ...): this machine's speed drifts by tens of percent within
    a minute, and interleaving spreads the drift over all clients instead of charging it to one. Each client's
    result is its median round (by CPU per round trip); ``rounds_cpu_us`` keeps every round's figure."""
    csms = CsmsProcess(tmp / f"csms-{ocpp}.log")
    per_round = max(1, n // rounds)
    try:
        out: dict = {"csms_url": csms.url, "ocpp": ocpp, "rounds": rounds}
        runs: dict[str, list[dict]] = {kind: [] for kind in KINDS}
        for number in range(rounds):
            for kind in KINDS:
                _say(f"  round trips {ocpp}: {kind}" + (f" (round {number + 1} of {rounds})" if rounds > 1 else "")
                     + " ...")
                before = csms.stats()["cpu_s"]
                res = run_client(kind, csms.url, per_round, warmup, tmp, ocpp=ocpp)
                res["csms_cpu_us"] = (csms.stats()["cpu_s"] - before) / (per_round + warmup) * 1e6  # incl. boot
                runs[kind].append(res)
        for kind, results in runs.items():
            ordered = sorted(results, key=lambda res: res["cpu_us"])
            out[kind] = {**ordered[(len(ordered) - 1) // 2], "rounds_cpu_us": [res["cpu_us"] for res in results]}
        out["csms"] = csms.stats()
    finally:
        csms.close()
    return out


def getconf(data_dir: Path, calls: int) -> dict:
    """GetConfiguration timing (bench.getconf) in a fresh process: a station's heap, not the benchmark's."""
    done = subprocess.run([python(), "-m", "bench.getconf", "--data-dir", str(data_dir), "--calls", str(calls)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=die_with_parent)
    if done.returncode != 0:
        raise RuntimeError(f"GetConfiguration measurement failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def basereport(data_dir: Path, runs: int) -> dict:
    """GetBaseReport FullInventory timing (bench.basereport) in a fresh process: CSMS there, station its child."""
    done = subprocess.run([python(), "-m", "bench.basereport", "--data-dir", str(data_dir), "--runs", str(runs)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=die_with_parent)
    if done.returncode != 0:
        raise RuntimeError(f"GetBaseReport measurement failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def profile_securecp(n: int, warmup: int, tmp: Path, top: int, ocpp: str = "1.6") -> str:
    """cProfile of client (c)'s measured loop (a separate run: profiling inflates CPU); the top entries."""
    csms = CsmsProcess(tmp / f"csms-profile-{ocpp}.log")
    try:
        prof = tmp / f"securecp-{ocpp}.prof"
        res = run_client("securecp", csms.url, n, warmup, tmp, profile=prof, ocpp=ocpp)
    finally:
        csms.close()
    buf = io.StringIO()
    stats = pstats.Stats(str(prof), stream=buf)
    stats.strip_dirs()
    buf.write(f"cProfile of (c) on OCPP {ocpp} (timer: process CPU time), {n} round trips ({res['cpu_us']:.0f} us "
              "CPU/RT under the profiler)\n")
    buf.write(f"\n--- top {top} by own time (tottime) ---\n")
    stats.sort_stats("tottime").print_stats(top)
    buf.write(f"\n--- top {top} by cumulative time ---\n")
    stats.sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short run (~20 s): fewer round trips, shorter idle")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument("--n", type=int, help="measured round trips per client and OCPP version (default 2000, quick 200)")
    p.add_argument("--warmup", type=int, help="unmeasured round trips first (default 100, quick 20)")
    p.add_argument("--rounds", type=int, help="interleaved rounds of the round-trip clients, n/rounds round trips "
                   "each; the median round counts (default 5, quick 1)")
    p.add_argument("--cold-starts", type=int, help="cold starts to time (median; default 3, quick 1)")
    p.add_argument("--idle-wait", type=float, help="idle seconds after boot before RSS (default 5, quick 2)")
    p.add_argument("--idle-window", type=float, help="seconds of idle CPU measurement (default 10, quick 5)")
    p.add_argument("--queued", type=int, default=10_000, help="offline messages prefilled (default 10000)")
    p.add_argument("--settle", type=float, help="seconds after the offline boot before RSS (default 3, quick 1)")
    p.add_argument("--getconf-calls", type=int, default=200, help="GetConfiguration calls timed (default 200)")
    p.add_argument("--report-runs", type=int, help="GetBaseReport FullInventory reports timed, per CSMS "
                   "(default 20, quick 10)")
    p.add_argument("--only", action="append", choices=SECTIONS, help="run only this section (repeatable)")
    p.add_argument("--profile", action="store_true",
                   help="also cProfile client (c) (1.6 and 2.0.1, as selected), print the top entries and the "
                        "1.6 per-step CPU breakdown")
    p.add_argument("--profile-top", type=int, default=25)
    a = p.parse_args(argv)
    quick = a.quick
    defaults = {"n": (2000, 200), "warmup": (100, 20), "rounds": (5, 1), "cold_starts": (3, 1), "idle_wait": (5.0, 2.0),
                "idle_window": (10.0, 5.0), "settle": (3.0, 1.0), "report_runs": (20, 10)}
    for key, (full, short) in defaults.items():
        if getattr(a, key) is None:
            setattr(a, key, short if quick else full)
    a.sections = tuple(a.only or SECTIONS)
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    results: dict = {"meta": {
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(), "cpus": os.cpu_count(), "mode": "quick" if a.quick else "full",
        "n": a.n, "warmup": a.warmup, "rounds": a.rounds, "queued": a.queued, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_start": os.getloadavg()[0],
    }}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="secure-cp-bench-") as tmp_name:
        tmp = Path(tmp_name)
        results["meta"]["data_fs"] = filesystem_of(tmp)
        if "roundtrip" in a.sections:
            _say("OCPP 1.6 MeterValues round trips (a) raw, (b) ocpp, (c) secure-cp, (c') without fsync ...")
            results["roundtrip"] = roundtrips(a.n, a.warmup, tmp, "1.6", a.rounds)
        if "roundtrip201" in a.sections:
            _say("OCPP 2.0.1 TransactionEvent Updated round trips (a) raw, (b) ocpp, (c) secure-cp, (c') without fsync ...")
            results["roundtrip201"] = roundtrips(a.n, a.warmup, tmp, "2.0.1", a.rounds)
        if "process" in a.sections:
            _say(f"cold start x{a.cold_starts}, RSS after {a.idle_wait:g} s idle, "
                 f"idle CPU over {a.idle_window:g} s ...")
            results["process"] = asyncio.run(cold_and_idle(tmp, cold_starts=a.cold_starts, idle_wait=a.idle_wait,
                                                            idle_window=a.idle_window))
        if "queue" in a.sections:
            _say(f"offline station with {a.queued} queued messages ...")
            results["queue"] = asyncio.run(offline_queue(tmp, queued=a.queued, settle=a.settle))
        if "getconf" in a.sections:
            _say(f"GetConfiguration x{a.getconf_calls} ...")
            results["getconf"] = getconf(tmp / "getconf", a.getconf_calls)
        if "basereport" in a.sections:
            _say(f"OCPP 2.0.1 GetBaseReport FullInventory x{a.report_runs} (strict CSMS, then minimal CSMS) ...")
            results["basereport"] = basereport(tmp / "basereport", a.report_runs)
        profile_text = None
        if a.profile:
            versions = [v for sec, v in ROUNDTRIP_VERSIONS.items() if sec in a.sections] or ["1.6"]
            profile_text = "\n".join(profile_securecp(a.n, a.warmup, tmp, a.profile_top, v) for v in versions)
    results["meta"]["seconds"] = time.monotonic() - t0
    results["meta"]["loadavg_end"] = os.getloadavg()[0]
    report.derive(results)
    print(report.format_table(results))
    print(f"(took {results['meta']['seconds']:.0f} s)")
    if profile_text:
        from .breakdown import breakdown, format_rows
        print()
        print("CPU per step of one (c) OCPP 1.6 round trip, each step timed alone (python -m bench.breakdown):")
        print(format_rows(breakdown(a.n)))
        print()
        print(profile_text)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
