"""A real software TPM 2.0 (Debian package ``swtpm``, installed by .ci/bootstrap) in a test's directory.

``start_swtpm(directory)`` runs ``swtpm socket --tpm2`` on free 127.0.0.1 ports with its state in ``directory``
(started up, no tpm2_startup needed) and returns a :class:`Swtpm` whose ``tcti`` is the direct ``swtpm:`` TCTI
string (no resource manager: the tpm2 key backend flushes every object it loads). ``stop()`` ends that process.
Missing swtpm is a failure, not a skip.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Swtpm:
    process: subprocess.Popen
    port: int
    directory: Path

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def _free_port_pair() -> int:
    """A port p with p + 1 free too (the swtpm TCTI finds the control channel at port + 1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for swtpm")


def start_swtpm(directory: Path) -> Swtpm:
    exe = shutil.which("swtpm")
    assert exe is not None, "swtpm is not installed: run `bash .ci/bootstrap test` (it apt-get installs swtpm)"
    state = directory / "state"
    state.mkdir(parents=True, exist_ok=True)
    port = _free_port_pair()
    proc = subprocess.Popen([exe, "socket", "--tpm2", "--tpmstate", f"dir={state}",
                             "--flags", "not-need-init,startup-clear",
                             "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
                             "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                             "--log", f"file={directory / 'swtpm.log'}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:      # ready when both sockets accept
        try:
            for p in (port, port + 1):
                socket.create_connection(("127.0.0.1", p), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"swtpm did not start: {proc.stderr.read().decode(errors='replace') if proc.stderr else ''}")
            time.sleep(0.05)
    return Swtpm(proc, port, directory)
