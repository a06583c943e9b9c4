"""Helpers shared by the integration tests (a station in this process, the strict CSMS in this process)."""
from __future__ import annotations

import asyncio
import http.server
import json
import shutil
import sys
import threading
from pathlib import Path

from secure_cp.sim.csms import Csms


class LocalHttpServer:
    """A real HTTP server on 127.0.0.1 in a thread of the test process, for one request-handler class: ``base`` is
    its URL; started and stopped as a context manager. Subclasses add what they serve and record."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


async def eventually(pred, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``pred`` (state of the station in this process) until it holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def booted(csms: Csms, make_station, **kw):
    """A station that has booted and reported every connector (0..N) once."""
    n = len(csms.received)           # a restarted station: only what this start sends counts
    st = await make_station(csms, **kw)
    ident = st.cfg.identity
    await csms.wait_for("BootNotification", identity=ident, after=n)
    for cid in range(0, len(st.hw.connectors) + 1):
        await csms.wait_for("StatusNotification", lambda p, c=cid: p["connectorId"] == c, identity=ident, after=n)
    return st


async def barrier(csms: Csms, ident: str = "CP1") -> None:
    """One CSMS->station round trip; afterwards every CALL the station made because of earlier frames has been
    answered and recorded by the CSMS (frames are handled in order on both sides)."""
    await csms.call(ident, "GetConfiguration", {"key": ["HeartbeatInterval"]}, timeout=5)


def outbox_cli() -> list[str]:
    """The installed ``secure-cp`` console script of this venv, else the module."""
    script = Path(sys.executable).with_name("secure-cp")
    if script.exists():
        return [str(script)]
    found = shutil.which("secure-cp")
    return [found] if found else [sys.executable, "-m", "secure_cp.cli"]


async def run_outbox_cli(data_dir: Path, *extra: str) -> list[dict]:
    """`secure-cp outbox --data-dir DIR ...` in a subprocess: its JSON lines (it reads while the station runs)."""
    proc = await asyncio.create_subprocess_exec(
        *outbox_cli(), "outbox", "--data-dir", str(data_dir), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]
