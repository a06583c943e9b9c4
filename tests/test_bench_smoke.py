"""Smoke test of ``python -m bench`` (bench/): a tiny run completes and prints its ratio and target lines.

Timings are never asserted (DESIGN.md: tests never assert on wall-clock time); the benchmark's numbers are for
people. This only proves that every part runs end to end on this machine: the CSMS process, the three
round-trip clients on OCPP 1.6 (MeterValues) and on OCPP 2.0.1 (TransactionEvent Updated, issue #3), cold
start / idle / offline-queue station processes, the GetConfiguration timing and the 2.0.1 GetBaseReport
FullInventory timing (strict and minimal CSMS).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TINY = ["--n", "20", "--warmup", "5", "--cold-starts", "1", "--idle-wait", "0.5", "--idle-window", "1",
        "--queued", "300", "--settle", "0.3", "--getconf-calls", "20", "--report-runs", "2"]

TARGET_KEYS = {"ratio_c_a", "ratio_c_b", "ratio201_c_a", "ratio201_c_b", "cold_start_ms", "rss_idle_mb",
               "idle_cpu_pct", "getconf_p99_ms", "basereport_p99_ms", "basereport_min_csms_p99_ms"}


def _ratio_line(lines: list[str], ratio: str, version: str) -> str | None:
    return next((line for line in lines if line.startswith(f"ratio {ratio} = ") and f"[OCPP {version}]" in line),
                None)


def test_bench_tiny_run_completes_and_prints_ratios_for_16_and_201(tmp_path):
    out_json = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench", *TINY, "--json", str(out_json)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for version in ("1.6", "2.0.1"):
        for ratio in ("(c)/(a)", "(c)/(b)"):
            line = _ratio_line(lines, ratio, version)
            assert line is not None, f"no {ratio} line for OCPP {version}:\n{done.stdout}"
            assert {"PASS", "MISS"} & set(line.split()), line
    # every target got a verdict (PASS or MISS, whichever: a miss is a measurement, not a failure)
    results = json.loads(out_json.read_text())
    targets = results["targets"]
    assert set(targets) >= TARGET_KEYS
    assert all(t["verdict"] in ("PASS", "MISS") for t in targets.values()), targets
    for key in TARGET_KEYS:
        assert f"{targets[key]['label']} " in done.stdout, key   # and a target line in the table
    # the 2.0.1 round trips really were 2.0.1 TransactionEvents the strict CSMS accepted (E §1.3.2: no seqNo gap)
    rt201 = results["roundtrip201"]
    assert rt201["securecp"]["subprotocol"] == "ocpp2.0.1"
    assert rt201["csms"]["violations"] == 0, rt201["csms"]["violation_samples"]
    ledger = rt201["csms"]["transactions201"]
    rounds = results["meta"]["rounds"]
    assert rounds > 1 and all(len(rt201[kind]["rounds_cpu_us"]) == rounds for kind in ("raw", "ocpp", "securecp"))
    # (a) (af) (a+) (b) (c) (c'), one transaction each per interleaved round
    assert len(ledger) == 6 * rounds, ledger
    assert rt201["raw-durable"]["cpu_us"] > 0 and "(c)/(a+) = " in done.stdout
    assert rt201["raw-fsync"]["cpu_us"] > 0 and "(af)/(a) = " in done.stdout
    assert [tx for tx in ledger.values() if tx["seq_gaps"]] == []
    assert rt201["securecp-nofsync"]["cpu_us"] > 0 and "(c)-(c') = " in done.stdout
    # Started + warm-up + measured round trips of one round
    assert all(tx["events"] == 1 + 20 // rounds + 5 for tx in ledger.values()), ledger
    assert {s["sampled_values"] for s in rt201["csms"]["transaction_event_shape"].values()} == {10}
    assert results["basereport"]["basereport_violations"] == 0


def test_bench_only_selects_the_201_sections(tmp_path):
    """``--only roundtrip201 --only basereport`` runs just the two 2.0.1 parts."""
    out_json = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench", *TINY, "--only", "roundtrip201", "--only", "basereport",
                           "--json", str(out_json)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out_json.read_text())
    assert {"roundtrip201", "basereport"} <= set(results) and not {"roundtrip", "process", "queue",
                                                                    "getconf"} & set(results)
    assert _ratio_line(done.stdout.splitlines(), "(c)/(a)", "2.0.1") is not None, done.stdout
    assert _ratio_line(done.stdout.splitlines(), "(c)/(a)", "1.6") is None, done.stdout
    verdicts = {k: t["verdict"] for k, t in results["targets"].items()}
    assert verdicts["ratio201_c_a"] in ("PASS", "MISS") and verdicts["basereport_p99_ms"] in ("PASS", "MISS")
    assert verdicts["ratio_c_a"] == "n/a"    # not measured in this run
