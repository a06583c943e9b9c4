"""Slow key backends never block the event loop (DESIGN.md rule 7, issue #4 "Signing runs off the event loop").

A backend that takes a while per signature (bench.security.SlowBackend: a software key behind a sleep, standing for
a TPM) records the thread of every signature; signing through the station's path (``security.keys.wrapper.
sign_data``) while a station runs against the embedded CSMS must happen in a worker thread, never in the loop's
thread. No wall-clock assertion: the timing itself is measured by ``python -m bench.security``.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from secure_cp.security.keys import KeyAlgorithm, SoftwareBackend, sign_data

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))     # bench/ is a top-level package next to tests/, not installed
from bench.security import SlowBackend, running_station  # noqa: E402


def test_station_signing_path_runs_in_a_worker_thread(tmp_path):
    backend = SlowBackend(SoftwareBackend(tmp_path / "keys"), delay=0.02)
    backend.generate("k", KeyAlgorithm.EC_P256)
    public = backend.public_key("k")

    async def scenario() -> tuple[int, list[bytes]]:
        async with running_station(tmp_path):
            loop_thread = threading.get_ident()
            signatures = [await sign_data(backend, "k", f"reading {i}".encode()) for i in range(3)]
            return loop_thread, signatures

    loop_thread, signatures = asyncio.run(scenario())
    assert len(backend.sign_threads) == 3
    assert loop_thread not in backend.sign_threads
    for i, signature in enumerate(signatures):     # the worker really signed what was asked (raises if not)
        public.verify(signature, f"reading {i}".encode(), ec.ECDSA(hashes.SHA256()))


def test_bench_security_quick_run_prints_every_section():
    done = subprocess.run([sys.executable, "-m", "bench.security", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for row in ("software", "SoftHSM2 (PKCS#11)", "profile 2, no client key", "profile 3, software key", "off the loop (sign_data)"):
        assert row in out, out
    stall = next(line for line in out.splitlines() if line.startswith("off the loop"))
    assert {"PASS", "MISS"} & set(stall.split()) and "worker thread: True" in stall
    assert "skipped" not in next(line for line in out.splitlines() if line.startswith("SoftHSM2"))
