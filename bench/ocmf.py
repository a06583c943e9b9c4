"""``python -m bench.ocmf``: signed OCMF readings per second per key backend, and the legal log's cost per
transaction (begin + end record, each reserved, signed and appended in one durable SQLite transaction).

Kept out of the default ``python -m bench`` run (SoftHSM2 setup and fsyncs would slow it down). Prints one JSON
line per measurement; ratios are against the software backend measured in the same run.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from secure_cp.eichrecht.legallog import LegalLog
from secure_cp.eichrecht.ocmf import (BackendSigner, MeterIdentity, ReadingValue, build_payload,
                                      identification_for_token, sign_payload)
from secure_cp.security.keys import KeyAlgorithm, SoftwareBackend
from secure_cp.store import Database

IDENTITY = MeterIdentity(gi="bench", gs="B-1", ms="M-1")
IDENT = identification_for_token("04A2B3C4")


def _reading(i: int, tx: str) -> list[ReadingValue]:
    return [ReadingValue(dt.datetime.now(dt.timezone.utc), Decimal(i) / 1000, tx=tx)]


def signed_per_second(signer, seconds: float = 2.0) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sign_payload(build_payload(pagination=f"T{n + 1}", identity=IDENTITY, identification=IDENT,
                                   readings=_reading(n, "C")), signer)
        n += 1
    return n / (time.perf_counter() - start)


def legal_log_per_transaction(signer, directory: Path, transactions: int = 50) -> float:
    """Milliseconds per transaction: two records, each PG reserve + sign + append + COMMIT (synchronous=FULL)."""
    with Database(directory / "station.db") as db:
        log = LegalLog(db)
        start = time.perf_counter()
        for i in range(transactions):
            for tx in ("B", "E"):
                log.sign_and_append(signer=signer, identity=IDENTITY, readings=_reading(i, tx), identification=IDENT,
                                    tx_key=f"t{i}", evse_id=1, connector_id=1)
        return (time.perf_counter() - start) * 1000 / transactions


def _softhsm(directory: Path):
    from secure_cp.security.keys.pkcs11_backend import Pkcs11Backend, default_module
    module, util = default_module(), shutil.which("softhsm2-util")
    if module is None or util is None:
        return None
    (directory / "tokens").mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run([util, "--init-token", "--free", "--label", "bench", "--pin", "1234", "--so-pin", "12345678"],
                   check=True, capture_output=True)
    return Pkcs11Backend(module, "bench", "1234")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-ocmf-") as tmp:
        root = Path(tmp)
        backends = {"software": SoftwareBackend(root / "keys")}
        hsm = _softhsm(root / "hsm")
        if hsm is not None:
            backends["softhsm2"] = hsm
        base = None
        for name, backend in backends.items():
            backend.generate("ocmf", KeyAlgorithm.EC_P256)
            signer = BackendSigner(backend, "ocmf")
            rate = signed_per_second(signer)
            (root / name).mkdir()
            per_tx = legal_log_per_transaction(signer, root / name)
            base = base or rate
            print(json.dumps({"backend": name, "signed_readings_per_s": round(rate, 1),
                              "ratio_vs_software": round(rate / base, 3),
                              "legal_log_ms_per_transaction": round(per_tx, 2)}), flush=True)
            backend.close()
        if hsm is None:
            print(json.dumps({"backend": "softhsm2", "skipped": "SoftHSM2 is not installed"}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
