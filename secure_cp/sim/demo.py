"""`secure-cp demo`: an embedded CSMS, a simulated station, one full charging session, printed as it happens."""
from __future__ import annotations

import asyncio
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import StationConfig
from ..hal.simulated import SimulatedHardware
from .csms import Csms, format_record


def _say(text: str) -> None:
    print(text, flush=True)


def _follow(csms: Csms, verbose: bool) -> None:
    """Print each message the CSMS receives the moment it has answered it."""
    def show(r) -> None:
        if verbose or r.action != "Heartbeat":
            _say("  CSMS <- " + format_record(r))
    csms.listeners.append(show)


@dataclass(frozen=True)
class _Script:
    """What marks each step of the session in one OCPP version: (action, predicate on the payload)."""
    registered: tuple[str, Callable[[dict], bool]]
    plugged: tuple[str, Callable[[dict], bool]]
    started: tuple[str, Callable[[dict], bool]]
    stopped: tuple[str, Callable[[dict], bool]]
    available: tuple[str, Callable[[dict], bool]]


_SCRIPTS = {
    "ocpp1.6": _Script(
        registered=("StatusNotification", lambda p: p["connectorId"] == 1),
        plugged=("StatusNotification", lambda p: p["status"] == "Preparing"),
        started=("StartTransaction", lambda p: True),
        stopped=("StopTransaction", lambda p: True),
        available=("StatusNotification", lambda p: p["status"] == "Available")),
    "ocpp2.0.1": _Script(
        registered=("StatusNotification", lambda p: p["evseId"] == 1),
        plugged=("StatusNotification", lambda p: p["connectorStatus"] == "Occupied"),
        started=("TransactionEvent", lambda p: p["eventType"] == "Started"),
        stopped=("TransactionEvent", lambda p: p["eventType"] == "Ended"),
        available=("StatusNotification", lambda p: p["connectorStatus"] == "Available")),
}


def _summary(csms: Csms, protocol: str, start, stop) -> str:
    if protocol == "ocpp1.6":
        tx = csms.transactions[stop.payload["transactionId"]]
        energy = stop.payload["meterStop"] - start.payload["meterStart"]
        return (f"transaction {tx.transaction_id}, {energy} Wh, {len(tx.meter_values)} MeterValues, "
                f"stop reason {stop.payload.get('reason', 'Local')}")
    tx_id = stop.payload["transactionInfo"]["transactionId"]
    events = csms.transactions201[tx_id].events
    return (f"transaction {tx_id}, {len(events)} TransactionEvents (seqNo {events[0]['seqNo']}.."
            f"{events[-1]['seqNo']}), stopped reason {stop.payload['transactionInfo'].get('stoppedReason', 'Local')}")


async def run_demo(*, verbose: bool = False, seconds: float = 8.0, protocol: str = "ocpp1.6") -> int:
    from ..runtime import Station
    script = _SCRIPTS[protocol]
    async with Csms(subprotocols=(protocol,)) as csms:
        with tempfile.TemporaryDirectory(prefix="secure-cp-demo-") as tmp:
            cfg = StationConfig(identity="DEMO-CP-1", vendor="secure-cp", model="demo", serial="DEMO0001",
                                firmware_version="0.1.0", data_dir=Path(tmp), csms_url=csms.url,
                                protocols=[protocol], reconnect_min=0.2, reconnect_max=2.0,
                                ocpp_config={"MeterValueSampleInterval": "2", "HeartbeatInterval": "30",
                                             "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import",
                                             "StopTxnSampledData": "Energy.Active.Import.Register"})
            hw = SimulatedHardware(1, max_power_w=22000.0)
            station = Station(cfg, hw)
            _say(f"secure-cp demo ({protocol}): embedded CSMS at {csms.url}, station {cfg.identity} (data in {tmp})")
            _follow(csms, verbose)
            runner = asyncio.create_task(station.run())
            try:
                await csms.wait_for("BootNotification", timeout=10)
                await csms.wait_for(*script.registered, timeout=10)
                _say("* driver plugs in the EV")
                hw.ev_plug(1, True)
                await csms.wait_for(*script.plugged, timeout=10)
                _say("* driver presents RFID card DEMO")
                hw.present_tag("DEMO")
                start = await csms.wait_for(*script.started, timeout=10)
                _say(f"* charging for {seconds:.0f} s at {hw.max_power_w / 1000:.0f} kW ...")
                await asyncio.sleep(seconds)
                _say("* driver presents RFID card DEMO again to stop")
                hw.present_tag("DEMO")
                stop = await csms.wait_for(*script.stopped, timeout=10)
                _say("* driver unplugs")
                hw.ev_plug(1, False)
                await csms.wait_for(*script.available, after=len(csms.received) - 1, timeout=10)
                await asyncio.sleep(0.3)
                _say("session complete: " + _summary(csms, protocol, start, stop))
                if csms.violations:
                    _say(f"schema violations seen by the CSMS: {csms.violations}")
                    return 1
                return 0
            except asyncio.TimeoutError:
                print("demo failed: the expected message did not arrive", file=sys.stderr)
                return 1
            finally:
                await station.stop()
                await asyncio.wait_for(runner, 10)
