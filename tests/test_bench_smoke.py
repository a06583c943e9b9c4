"""Smoke test of ``python -m bench`` (bench/): a tiny run completes and prints its ratio and target lines.

Timings are never asserted (DESIGN.md: tests never assert on wall-clock time); the benchmark's numbers are for
people. This only proves that every part runs end to end on this machine: the CSMS process, the three
round-trip clients, cold start / idle / offline-queue station processes and the GetConfiguration timing.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TINY = ["--n", "20", "--warmup", "5", "--cold-starts", "1", "--idle-wait", "0.5", "--idle-window", "1",
        "--queued", "300", "--settle", "0.3", "--getconf-calls", "20"]


def test_bench_tiny_run_completes_and_prints_ratios(tmp_path):
    out_json = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench", *TINY, "--json", str(out_json)], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("ratio (c)/(a) = ") for line in lines), done.stdout
    assert any(line.startswith("ratio (c)/(b) = ") for line in lines), done.stdout
    # every target got a verdict line (PASS or MISS, whichever: a miss is a measurement, not a failure)
    targets = json.loads(out_json.read_text())["targets"]
    assert set(targets) >= {"ratio_c_a", "ratio_c_b", "cold_start_ms", "rss_idle_mb", "idle_cpu_pct",
                            "getconf_p99_ms"}
    assert all(t["verdict"] in ("PASS", "MISS") for t in targets.values()), targets
