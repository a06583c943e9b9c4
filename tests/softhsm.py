"""A real SoftHSM2 token in a test's directory (Debian package ``softhsm2``, installed by .ci/bootstrap).

``init_token(tmp_path / "hsm", monkeypatch)`` writes a softhsm2.conf whose token directory is inside ``tmp_path``,
points SOFTHSM2_CONF at it (for this process and the ``softhsm2-util`` it runs), and initialises a token with
``softhsm2-util --init-token --free``. Missing SoftHSM2 is a failure, not a skip: bootstrap installs it.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from secure_cp.security.keys.pkcs11_backend import default_module


@dataclass(frozen=True)
class SoftHsmToken:
    module: str
    label: str
    pin: str
    so_pin: str
    conf: Path


def init_token(directory: Path, monkeypatch, label: str = "secure-cp-test", pin: str = "1234",
               so_pin: str = "12345678") -> SoftHsmToken:
    module = default_module()
    util = shutil.which("softhsm2-util")
    assert module is not None and util is not None, \
        "SoftHSM2 is not installed: run `bash .ci/bootstrap test` (it apt-get installs softhsm2) or apt-get install softhsm2"
    tokens = directory / "tokens"
    tokens.mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
                    "slots.removable = false\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    subprocess.run([util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
                   check=True, capture_output=True, text=True)
    return SoftHsmToken(module, label, pin, so_pin, conf)
