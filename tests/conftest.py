"""Shared fixtures: a real CSMS (the `ocpp` package, strict) and a real station on a real SQLite store."""
from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest_asyncio

from secure_cp.config import StationConfig
from secure_cp.hal.simulated import SimulatedHardware


pytest_plugins = ["csms_fixture"]     # the csms / csms_auth fixtures

def station_config(data_dir: Path, url: str, identity: str = "CP1", **kw) -> StationConfig:
    ocpp = {"HeartbeatInterval": "300", "MeterValueSampleInterval": "0"}
    ocpp.update(kw.pop("ocpp", {}))
    # the simulated hardware signs (issue #5), which "auto" turns on; the protocol tests count messages without the
    # signed ones, tests/test_eichrecht_ocpp.py asks for them
    kw.setdefault("eichrecht_mode", "off")
    return StationConfig(identity=identity, vendor="secure-cp", model="test", serial="SN1", firmware_version="0.1",
                         data_dir=data_dir, csms_url=url, reconnect_min=0.05, reconnect_max=0.2, call_timeout=2.0,
                         ocpp_config=ocpp, **kw)


class StationHandle:
    """A running station (in this process) plus its simulated hardware."""

    def __init__(self, cfg: StationConfig, hw: SimulatedHardware):
        from secure_cp.runtime import Station
        self.cfg, self.hw = cfg, hw
        self.station = Station(cfg, hw)
        self.task: asyncio.Task | None = None

    async def start(self) -> "StationHandle":
        self.task = asyncio.create_task(self.station.run())
        return self

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            await self.station.stop()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.task, 5)
        if self.task is not None and self.task.done() and not self.task.cancelled():
            exc = self.task.exception()
            if exc is not None:
                raise exc


@pytest_asyncio.fixture
async def make_station(tmp_path):
    """Factory: ``st = await make_station(csms, connectors=1, ocpp={...})``; stopped at the end of the test."""
    handles: list[StationHandle] = []

    async def make(csms_server, *, connectors: int = 1, identity: str = "CP1", data_dir: Path | None = None,
                   start: bool = True, **kw) -> StationHandle:
        cfg = station_config(data_dir or tmp_path / identity, csms_server.url, identity, **kw)
        hw = SimulatedHardware(connectors, state_file=cfg.data_dir / "sim-meter.json") \
            if (cfg.data_dir).mkdir(parents=True, exist_ok=True) is None else None
        h = StationHandle(cfg, hw)
        handles.append(h)
        if start:
            await h.start()
        return h

    yield make
    for h in handles:
        await h.stop()
