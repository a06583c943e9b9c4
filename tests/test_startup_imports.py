"""A station on security profile 0/1 without certificates starts without the heavy crypto libraries.

The benchmark's cold-start and idle-RSS targets (issue #2: <= 300 ms, <= 40 MB) hold only if ``cryptography``,
``asn1crypto`` and ``pkcs11`` are imported when first needed (secure_cp/lazy.py), not by importing the runtime.
"""
from __future__ import annotations

import json
import subprocess
import sys


def python_output(code: str, *args: str, timeout: float = 60) -> str:
    """What ``python -c code args...`` prints in a fresh interpreter of this venv (it must exit 0)."""
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_runtime_import_does_not_load_cryptography():
    code = ("import json, sys, secure_cp.cli, secure_cp.runtime; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('cryptography', 'asn1crypto', 'pkcs11'))))")
    assert json.loads(python_output(code)) == []


def test_lazy_module_imports_at_first_use():
    code = ("import sys; from secure_cp import lazy; x = lazy.module('cryptography.x509'); "
            "before = 'cryptography.x509' in sys.modules; x.load_pem_x509_certificates; "
            "print(before, 'cryptography.x509' in sys.modules)")
    assert python_output(code).split() == ["False", "True"]


_IDLE_STATION = """
import asyncio, json, sys
from pathlib import Path
from secure_cp.config import StationConfig
from secure_cp.runtime import Station

async def main():
    cfg = StationConfig(identity="IDLE", data_dir=Path(sys.argv[1]), csms_url="ws://127.0.0.1:9")
    station = Station(cfg)
    task = asyncio.create_task(station.run())
    for _ in range(200):          # until the signing meter's key is registered (a start-up step), at most 10 s
        await asyncio.sleep(0.05)
        if station.db.query("SELECT COUNT(*) FROM meter_keys")[0][0]:
            break
    await asyncio.sleep(0.3)
    heavy = sorted({m.split('.')[0] for m in sys.modules} & {'cryptography', 'asn1crypto', 'pkcs11', 'ftplib'})
    print(json.dumps({"signing": station.cfg.eichrecht_mode, "heavy": heavy,
                      "keys": station.db.query("SELECT COUNT(*) FROM meter_keys")[0][0]}))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

asyncio.run(main())
"""


def test_idle_station_with_signing_meter_restarts_without_crypto_or_ftp(tmp_path):
    """The simulated signing meter makes its key at the first start (cryptography then); every later start only
    registers the known public key again, and FTP / zip support load with their first transfer, so an idle
    station stays within the RSS target."""
    runs = []
    for _ in range(2):
        out = python_output(_IDLE_STATION, str(tmp_path / "data"), timeout=90)
        runs.append(json.loads(out.strip().splitlines()[-1]))
    assert runs[0]["keys"] == runs[1]["keys"] == 1          # the meter key is registered, once
    assert "cryptography" in runs[0]["heavy"]              # the first start made the meter's key
    assert runs[1]["heavy"] == []
