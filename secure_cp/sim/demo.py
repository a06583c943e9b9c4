"""`secure-cp demo`: an embedded CSMS, a simulated station, one full charging session, printed as it happens."""
from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

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


async def run_demo(*, verbose: bool = False, seconds: float = 8.0) -> int:
    from ..runtime import Station
    async with Csms() as csms:
        with tempfile.TemporaryDirectory(prefix="secure-cp-demo-") as tmp:
            cfg = StationConfig(identity="DEMO-CP-1", vendor="secure-cp", model="demo", serial="DEMO0001",
                                firmware_version="0.1.0", data_dir=Path(tmp), csms_url=csms.url,
                                reconnect_min=0.2, reconnect_max=2.0,
                                ocpp_config={"MeterValueSampleInterval": "2", "HeartbeatInterval": "30",
                                             "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import",
                                             "StopTxnSampledData": "Energy.Active.Import.Register"})
            hw = SimulatedHardware(1, max_power_w=22000.0)
            station = Station(cfg, hw)
            _say(f"secure-cp demo: embedded CSMS at {csms.url}, station {cfg.identity} (data in {tmp})")
            _follow(csms, verbose)
            runner = asyncio.create_task(station.run())
            try:
                await csms.wait_for("BootNotification", timeout=10)
                await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1, timeout=10)
                _say("* driver plugs in the EV")
                hw.ev_plug(1, True)
                await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing", timeout=10)
                _say("* driver presents RFID card DEMO")
                hw.present_tag("DEMO")
                start = await csms.wait_for("StartTransaction", timeout=10)
                await csms.wait_for("StatusNotification", lambda p: p["status"] == "Charging", timeout=10)
                _say(f"* charging for {seconds:.0f} s at {hw.max_power_w / 1000:.0f} kW ...")
                await asyncio.sleep(seconds)
                _say("* driver presents RFID card DEMO again to stop")
                hw.present_tag("DEMO")
                stop = await csms.wait_for("StopTransaction", timeout=10)
                await csms.wait_for("StatusNotification", lambda p: p["status"] == "Finishing", timeout=10)
                _say("* driver unplugs")
                hw.ev_plug(1, False)
                await csms.wait_for("StatusNotification", lambda p: p["status"] == "Available",
                                    after=len(csms.received) - 1, timeout=10)
                await asyncio.sleep(0.3)
                tx = csms.transactions[stop.payload["transactionId"]]
                energy = stop.payload["meterStop"] - start.payload["meterStart"]
                _say(f"session complete: transaction {tx.transaction_id}, {energy} Wh, "
                     f"{len(tx.meter_values)} MeterValues, stop reason {stop.payload.get('reason', 'Local')}")
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
