"""A station on security profile 0/1 without certificates starts without the heavy crypto libraries.

The benchmark's cold-start and idle-RSS targets (issue #2: <= 300 ms, <= 40 MB) hold only if ``cryptography``,
``asn1crypto`` and ``pkcs11`` are imported when first needed (secure_cp/lazy.py), not by importing the runtime.
"""
from __future__ import annotations

import json
import subprocess
import sys


def test_runtime_import_does_not_load_cryptography():
    code = ("import json, sys, secure_cp.cli, secure_cp.runtime; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('cryptography', 'asn1crypto', 'pkcs11'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_lazy_module_imports_at_first_use():
    code = ("import sys; from secure_cp import lazy; x = lazy.module('cryptography.x509'); "
            "before = 'cryptography.x509' in sys.modules; x.load_pem_x509_certificates; "
            "print(before, 'cryptography.x509' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
