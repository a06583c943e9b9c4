"""`secure-cp demo` (the README's first command) runs a whole session against the embedded CSMS, in both versions."""
from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("protocol, started, ended", [
    ("ocpp1.6", "StartTransaction", "StopTransaction"),
    ("ocpp2.0.1", "TransactionEvent Started", "TransactionEvent Ended"),
])
def test_demo_runs_a_full_session(protocol, started, ended):
    r = subprocess.run([sys.executable, "-m", "secure_cp.cli", "demo", "--seconds", "1", "--protocol", protocol],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "BootNotification" in out and started in out and ended in out
    assert out.index(started) < out.index(ended)
    assert "session complete" in out and "violations" not in out
