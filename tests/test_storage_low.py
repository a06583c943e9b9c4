"""MemoryExhaustion: the station raises the critical security event when the file system of its data directory
gets full, while there is still room to record it, and the CSMS gets it as SecurityEventNotification.

Spec: OCPP 2.0.1 Part 2 Appendix 1 (security_events.csv) and the 1.6 Security Whitepaper edition 3 §8:
MemoryExhaustion, "the Flash or RAM memory of the Charging Station is getting full", critical (pushed, A04.FR.01,
kept until confirmed, A04.FR.02). The mark is ``[station] storage_low_mb``; these tests set it above or below the
real free space of the test's file system (``os.statvfs``), which is what the station reads.
"""
from __future__ import annotations

import os

import pytest

from helpers import barrier, booted, eventually
from test_v201_core import barrier as barrier201
from test_v201_core import booted as booted201

ID = "CP1"


def free_mb(path) -> float:
    fs = os.statvfs(path)
    return fs.f_bavail * fs.f_frsize / 1e6


def memory_events(csms) -> list[dict]:
    return [r.payload for r in csms.received
            if r.action == "SecurityEventNotification" and r.payload["type"] == "MemoryExhaustion"]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_low_storage_at_start_raises_memory_exhaustion(csms, make_station, tmp_path, version):
    mark = free_mb(tmp_path) + 1_000_000          # a million MB more than there is: the disk is "getting full"
    if version == "1.6":
        st = await booted(csms, make_station, storage_low_mb=mark)
    else:
        st = await booted201(csms, make_station, storage_low_mb=mark)
    event = await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "MemoryExhaustion")
    assert "MB free" in event.payload["techInfo"] and f"{mark:g}" in event.payload["techInfo"]
    logged = [e for e in st.station.security_events.log() if e.type == "MemoryExhaustion"]
    assert len(logged) == 1 and logged[0].critical
    await (barrier(csms) if version == "1.6" else barrier201(csms))   # the station goes on as before
    assert len(memory_events(csms)) == 1
    assert csms.violations == []


async def test_enough_storage_raises_nothing(csms, make_station):
    st = await booted(csms, make_station, storage_low_mb=1)
    await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "StartupOfTheDevice")
    await barrier(csms)
    assert memory_events(csms) == []
    assert not [e for e in st.station.security_events.log() if e.type == "MemoryExhaustion"]


async def test_raised_once_per_crossing_while_running(csms, make_station, tmp_path):
    """Free space is looked at when an event comes (at most once a minute; the test makes the next look due):
    one event when it falls below the mark, none more while it stays there, a new one only after it was well
    above the mark (1.25 x) and fell below again."""
    st = await booted(csms, make_station, storage_low_mb=1)
    station = st.station

    async def look(mark: float) -> None:
        station.cfg.storage_low_mb = mark
        station._storage_next = 0.0                 # due now; the next event looks
        await barrier(csms)                          # an event: the CSMS's GetConfiguration

    low = free_mb(tmp_path) + 1_000_000
    await look(low)
    await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "MemoryExhaustion")
    await look(low)                                  # still low: nothing new
    await look(free_mb(tmp_path) / 1.2)              # above the mark, but not 1.25 x: still "low"
    await look(low)
    await barrier(csms)
    assert len(memory_events(csms)) == 1
    await look(1)                                    # well above the mark: recovered
    await look(low)                                  # below again: a second event
    await eventually(lambda: len(memory_events(csms)) == 2, 5, "a second MemoryExhaustion")
    await barrier(csms)
    assert len(memory_events(csms)) == 2
    assert csms.violations == []
