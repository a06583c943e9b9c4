"""``python -m bench.instructions``: user-space instructions per round trip of clients (a), (b), (c), counted by
valgrind's callgrind: the same count for the same code whatever else the machine does, where CPU time here varies by
+-20 % between runs. For comparing two versions of the code (A/B) and for the ratios without the noise.

Each client runs twice under callgrind, with ``--n1`` and ``--n2`` measured round trips (same warm-up); the difference
of the two totals divided by ``n2 - n1`` is the cost of one round trip, start-up and connection excluded. Not counted:
the kernel (socket work, and the fsync of (c)'s durable commit: see CPU time in ``python -m bench``). Needs
``valgrind`` (Debian package; ``bash .ci/bootstrap bench`` installs it). About 3 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .__main__ import CsmsProcess, run_client

_COLLECTED = re.compile(r"Collected : (\d+)")
KINDS = ("raw", "raw-durable", "ocpp", "securecp")


def instructions(kind: str, url: str, n: int, warmup: int, tmp: Path, ocpp: str) -> int:
    """Total instructions of one client process (start-up, ``warmup`` and ``n`` round trips, exit)."""
    out = tmp / f"callgrind-{kind}-{ocpp}-{n}.out"
    log = tmp / f"callgrind-{kind}-{ocpp}-{n}.log"
    run_client(kind, url, n, warmup, tmp, ocpp=ocpp,
               wrapper=["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", f"--log-file={log}"])
    found = _COLLECTED.findall(log.read_text())
    if not found:
        raise RuntimeError(f"callgrind printed no total for {kind} (see {log})")
    return int(found[-1])


def per_round_trip(urls: tuple[str, str], n1: int, n2: int, warmup: int, tmp: Path, ocpp: str) -> dict[str, float]:
    """Instructions per round trip of each client; its two runs in parallel (one per core), each against its own
    CSMS process (a CSMS takes one connection per identity)."""
    out: dict[str, float] = {}
    with ThreadPoolExecutor(2) as pool:
        for kind in KINDS:
            small, large = pool.map(lambda url, n: instructions(kind, url, n, warmup, tmp, ocpp), urls, (n1, n2))
            out[kind] = (large - small) / (n2 - n1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.splitlines()[0])
    p.add_argument("--ocpp", action="append", choices=["1.6", "2.0.1"], help="OCPP version(s) (default both)")
    p.add_argument("--n1", type=int, default=100, help="round trips of the shorter run (default 100)")
    p.add_argument("--n2", type=int, default=500, help="round trips of the longer run (default 500)")
    p.add_argument("--warmup", type=int, default=30)
    a = p.parse_args(argv)
    if a.n2 <= a.n1:
        p.error("--n2 must be larger than --n1")
    try:
        subprocess.run(["valgrind", "--version"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        print("valgrind is not installed (apt-get install valgrind, or bash .ci/bootstrap bench)", file=sys.stderr)
        return 2
    print("| OCPP | (a) raw | (a+) raw, durable | (b) ocpp | (c) secure-cp | (c)/(a) | (c)/(a+) | (c)/(b) |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="secure-cp-instructions-") as name:
        tmp = Path(name)
        for ocpp in a.ocpp or ["1.6", "2.0.1"]:
            pair = [CsmsProcess(tmp / f"csms-{ocpp}-{i}.log") for i in (1, 2)]
            try:
                r = per_round_trip((pair[0].url, pair[1].url), a.n1, a.n2, a.warmup, tmp, ocpp)
            finally:
                for csms in pair:
                    csms.close()
            print(f"| {ocpp} | {r['raw'] / 1e3:,.0f} k | {r['raw-durable'] / 1e3:,.0f} k | {r['ocpp'] / 1e3:,.0f} k | "
                  f"{r['securecp'] / 1e3:,.0f} k | {r['securecp'] / r['raw']:.2f} | "
                  f"{r['securecp'] / r['raw-durable']:.2f} | {r['securecp'] / r['ocpp']:.2f} |", flush=True)
    print("(instructions per round trip in user space, callgrind; the kernel's share, fsync included, is not counted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
