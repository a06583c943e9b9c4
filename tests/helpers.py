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


async def go_offline(csms: Csms, st) -> None:
    """Stop the CSMS (it keeps its records) and wait until the station notices it is offline."""
    await csms.stop()
    await eventually(lambda: not st.station.adapter.online, 5, "the station to notice it is offline")


async def go_online(csms: Csms, st) -> int:
    """Start the CSMS again and wait for the station to reconnect; returns the number of records the CSMS had before
    (pass it as ``after`` to look only at what the reconnected station sent)."""
    n = len(csms.received)
    await csms.start()
    await csms.wait_connected(st.cfg.identity)
    return n


def retries(attempts: int, **ocpp: str) -> dict:
    """The station's [ocpp] keys for the retries of transaction-related messages: TransactionMessageAttempts
    ``attempts`` and TransactionMessageRetryInterval 1 s (1.6 §3.7.1; in 2.0.1 the same device-model variables
    OCPPCommCtrlr.MessageAttempts / MessageAttemptInterval [TransactionEvent], E13), plus other ``ocpp`` keys."""
    return {"TransactionMessageAttempts": str(attempts), "TransactionMessageRetryInterval": "1", **ocpp}


async def startup_event_confirmed_once(csms: Csms, st, round_trip) -> None:
    """A04.FR.01/03/04 (both versions): after the boot's statuses the station sends SecurityEventNotification
    StartupOfTheDevice (a UTC timestamp); the CSMS's confirmation takes it off the queue, it stays in the security log
    as delivered, and a reconnect within the same boot does not send it again (``round_trip(csms)``: one CSMS ->
    station CALL of the version, so that anything the reconnect sent has arrived)."""
    ev = await csms.wait_for("SecurityEventNotification", identity=st.cfg.identity)
    assert ev.payload["type"] == "StartupOfTheDevice" and ev.payload["timestamp"].endswith("Z")
    boot = next(i for i, r in enumerate(csms.received) if r.action == "BootNotification")
    status = next(i for i, r in enumerate(csms.received) if r.action == "StatusNotification")
    assert boot < status < csms.received.index(ev)
    await eventually(lambda: st.station.security_events.pending(1) == [], 5, "the event to be confirmed")
    logged = st.station.security_events.log()
    assert [e.type for e in logged] == ["StartupOfTheDevice"] and logged[0].delivered
    await go_offline(csms, st)
    n = await go_online(csms, st)
    await round_trip(csms)
    assert [r for r in csms.received[n:] if r.action == "SecurityEventNotification"] == []


async def outbox_drained(csms: Csms, st, what: str = "empty outbox") -> None:
    """Every queued message delivered, none given up, and the CSMS saw no repeat and no protocol violation."""
    await eventually(lambda: st.station.outbox.pending_count() == 0, 5, what)
    assert st.station.outbox.failed() == []
    assert csms.duplicates == [] and csms.violations == []


async def triggered_idle(csms: Csms, message: str, trigger: str = "TriggerMessage", answer: str | None = None,
                         ident: str = "CP1", **extra) -> None:
    """``trigger`` (TriggerMessage; 1.6 ExtendedTriggerMessage) of ``message`` (plus ``extra`` request fields) while
    nothing of the kind runs: Accepted, then ``answer`` (default: ``message`` itself) with status Idle and nothing
    else, no requestId (2.0.1 F06.FR.15/16, L01.FR.25, N01.FR.12; 1.6 whitepaper L01/N01)."""
    n = len(csms.received)
    assert await csms.call(ident, trigger, {"requestedMessage": message, **extra}) == {"status": "Accepted"}
    idle = await csms.wait_for(answer or message, after=n)
    assert idle.payload == {"status": "Idle"}


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
