"""OCPP 2.0.1 B09 (Setting a new NetworkConnectionProfile) and B10 (Migrate to new CSMS), end to end.

A real station (2.0.1 adapter, SQLite, websockets) against two strict embedded CSMS instances. Test names carry the
OCA test cases (OCPP 2.0.1 edition 3 Part 6: TC_B_43_CS Rejected, TC_B_45_CS migration, TC_B_46_CS fallback after
NetworkProfileConnectionAttempts, TC_B_49_CS fallback to the last connected profile) and the Part 2 requirements.
"""
from __future__ import annotations

import logging
import socket

import pytest
import pytest_asyncio

from helpers import eventually
from secure_cp.sim.csms import Csms

ID = "CP1"
PASSWORD = "0123456789abcdef"          # BasicAuthPassword (16 characters) for security profile 1


def profile(url: str, security_profile: int = 0, **extra) -> dict:
    """A NetworkConnectionProfileType as an OCTT would send it."""
    return {"ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": url, "messageTimeout": 30,
            "securityProfile": security_profile, "ocppInterface": "Wired0", **extra}


async def set_profile(csms: Csms, slot: int, data: dict) -> dict:
    return await csms.call(ID, "SetNetworkProfile", {"configurationSlot": slot, "connectionData": data})


async def set_var(csms: Csms, component: str, variable: str, value: str) -> dict:
    res = await csms.call(ID, "SetVariables", {"setVariableData": [
        {"component": {"name": component}, "variable": {"name": variable}, "attributeValue": value}]})
    return res["setVariableResult"][0]


async def booted(csms: Csms, make_station, **kw):
    st = await make_station(csms, protocols=["ocpp2.0.1"], **kw)
    await csms.wait_for("StatusNotification", identity=ID)
    return st


def station_records(caplog) -> list[logging.LogRecord]:
    """What the station logged (the embedded CSMS logs its own side of the wire in full)."""
    return [r for r in caplog.records if r.name.startswith("secure_cp") and not r.name.startswith("secure_cp.sim")]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest_asyncio.fixture
async def csms_b():
    """The second CSMS (the one to migrate to)."""
    async with Csms() as server:
        yield server


# ---- B09 ----------------------------------------------------------------------------------------------------------
async def test_b09_fr_01_set_network_profile_accepted_stored_and_kept_over_restart(csms, csms_b, make_station,
                                                                                    tmp_path):
    st = await booted(csms, make_station)
    assert (await set_profile(csms, 2, profile(csms_b.url)))["status"] == "Accepted"
    stored = st.station.network.get(2)
    assert stored is not None and stored.url == csms_b.url and stored.security_profile == 0
    # the configured [csms] section is slot 1 until the CSMS stores a profile there
    assert st.station.network.get(1).url == csms.url and st.station.network.get(1).from_config
    # nothing changes before a reboot (B09 remark): the station stays on CSMS A
    assert st.station.transport.config.url == csms.url
    await st.stop()
    again = await make_station(csms, protocols=["ocpp2.0.1"], data_dir=tmp_path / ID, start=False)
    kept = again.station.network.get(2)
    assert kept is not None and kept.url == csms_b.url
    assert csms.violations == []


async def test_tc_b_43_b09_fr_05_slot_outside_network_configuration_priority_values_list_rejected(
        csms, csms_b, make_station):
    st = await booted(csms, make_station)
    for slot in (999, 0, 3):   # valuesList is "1,2"
        res = await set_profile(csms, slot, profile(csms_b.url))
        assert res["status"] == "Rejected" and res["statusInfo"]["reasonCode"] == "InvalidSlot", (slot, res)
        assert st.station.network.get(slot) is None
    assert csms.violations == []


@pytest.mark.parametrize("data, reason", [
    (profile("wss://127.0.0.1:1/ocpp", 4), "UnsupportedSecurity"),     # no such profile (a root is no B09 check)
    (profile("ws://127.0.0.1:1/ocpp", 0, ocppVersion="OCPP16"), "UnsupportedVersion"),
    (profile("ws://127.0.0.1:1/ocpp", 0, ocppTransport="SOAP"), "UnsupportedTransport"),
    (profile("http://127.0.0.1:1/ocpp", 0), "InvalidURL"),
    (profile("ws://127.0.0.1:1/ocpp", 0, messageTimeout=0), "InvalidTimeout"),
])
async def test_b09_fr_02_content_the_station_cannot_use_is_rejected(csms, make_station, data, reason):
    st = await booted(csms, make_station)
    res = await set_profile(csms, 2, data)
    assert res == {"status": "Rejected", "statusInfo": {"reasonCode": reason}}
    assert st.station.network.get(2) is None


async def test_b09_fr_02_vpn_profile_rejected_and_its_secrets_never_logged(csms, make_station, caplog):
    caplog.set_level(logging.DEBUG)
    st = await booted(csms, make_station)
    vpn = {"server": "vpn.example", "user": "u", "password": "vpn-secret-1234", "key": "vpn-key-5678",
           "type": "IPSec"}
    res = await set_profile(csms, 2, profile("ws://127.0.0.1:1/ocpp", vpn=vpn))
    assert res["status"] == "Rejected" and res["statusInfo"]["reasonCode"] == "UnsupportedNetwork"
    frames = [f.text for f in st.station.frames if "SetNetworkProfile" in f.text]
    assert frames and all("vpn-secret-1234" not in t and "vpn-key-5678" not in t for t in frames)
    station_log = "\n".join(r.getMessage() for r in station_records(caplog))
    assert station_log and "vpn-secret-1234" not in station_log and "vpn-key-5678" not in station_log


async def test_b09_fr_04_lower_security_profile_rejected_and_password_never_revealed(make_station, caplog):
    caplog.set_level(logging.DEBUG)
    async with Csms(basic_auth={ID: PASSWORD.encode()}) as a, Csms(basic_auth={ID: PASSWORD.encode()}) as b:
        st = await booted(a, make_station, security_profile=1, password=PASSWORD)
        res = await set_profile(a, 2, profile(b.url, 0))
        assert res == {"status": "Rejected", "statusInfo": {"reasonCode": "NoSecurityDowngrade"}}
        assert (await set_profile(a, 2, profile(b.url, 1)))["status"] == "Accepted"
        got = await a.call(ID, "GetVariables", {"getVariableData": [
            {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "SecurityProfile"}},
            {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}]})
        results = got["getVariableResult"]
        assert results[0]["attributeValue"] == "1"                 # the profile in use (A05, B09.FR.04)
        assert results[1]["attributeStatus"] == "Rejected" and "attributeValue" not in results[1]   # WriteOnly
        # migrate with the password (2.0.1 profiles carry none: SecurityCtrlr.BasicAuthPassword serves every slot)
        assert (await set_var(a, "OCPPCommCtrlr", "NetworkConfigurationPriority", "2,1"))["attributeStatus"] \
            == "RebootRequired"
        assert (await a.call(ID, "Reset", {"type": "Immediate"}))["status"] == "Accepted"
        await b.wait_for("BootNotification", identity=ID)
        assert b.refused == []
        assert all(PASSWORD not in f.text for f in st.station.frames)
        station_log = "\n".join(r.getMessage() for r in station_records(caplog))
        assert station_log and PASSWORD not in station_log


# ---- B10 ----------------------------------------------------------------------------------------------------------
async def test_b10_fr_02_priority_with_an_empty_slot_rejected(csms, make_station):
    st = await booted(csms, make_station)
    res = await set_var(csms, "OCPPCommCtrlr", "NetworkConfigurationPriority", "2,1")
    assert res["attributeStatus"] == "Rejected"                     # slot 2 holds no profile
    assert st.station.network.priority() == [1]


async def test_tc_b_45_migrate_to_new_csms(csms, csms_b, make_station):
    """B09.FR.01, B10.FR.01, B10.FR.04, B10.FR.06: SetNetworkProfile + SetVariables + Reset -> boots at CSMS B."""
    st = await booted(csms, make_station)
    assert (await set_profile(csms, 2, profile(csms_b.url)))["status"] == "Accepted"
    res = await set_var(csms, "OCPPCommCtrlr", "NetworkConfigurationPriority", "2,1")
    assert res["attributeStatus"] == "RebootRequired"               # B10.FR.01
    assert st.station.transport.config.url == csms.url              # effective after the reboot only
    assert (await csms.call(ID, "Reset", {"type": "OnIdle"}))["status"] == "Accepted"
    boot = await csms_b.wait_for("BootNotification", identity=ID)
    assert boot.payload["reason"] == "RemoteReset"
    await csms_b.wait_for("StatusNotification", identity=ID)
    assert st.station.network.active_slot == 2
    assert st.station.transport.config.url == csms_b.url
    got = await csms_b.call(ID, "GetVariables", {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "ActiveNetworkProfile"}}]})
    assert got["getVariableResult"][0]["attributeValue"] == "2"   # Appendix 3.1.12: the slot in use
    await eventually(lambda: ID not in csms._sessions, 5, "the old connection to be gone")   # B10.FR.06
    assert csms.violations == [] and csms_b.violations == []


async def reset_with_dead_profile(csms, make_station, caplog, attempts: str, priority: str):
    """A booted station gets a profile in slot 2 whose CSMS nobody answers, NetworkProfileConnectionAttempts
    ``attempts`` (Accepted) and NetworkConfigurationPriority ``priority`` (RebootRequired), then an immediate Reset.
    The station, the dead URL and the BootNotification after the reset."""
    caplog.set_level(logging.INFO, logger="secure_cp")
    st = await booted(csms, make_station)
    dead = f"ws://127.0.0.1:{closed_port()}/ocpp"
    assert (await set_var(csms, "OCPPCommCtrlr", "NetworkProfileConnectionAttempts", attempts))["attributeStatus"] \
        == "Accepted"
    assert (await set_profile(csms, 2, profile(dead)))["status"] == "Accepted"
    assert (await set_var(csms, "OCPPCommCtrlr", "NetworkConfigurationPriority", priority))["attributeStatus"] \
        == "RebootRequired"
    mark = len(csms.received)
    assert (await csms.call(ID, "Reset", {"type": "Immediate"}))["status"] == "Accepted"
    boot = await csms.wait_for("BootNotification", identity=ID, after=mark, timeout=15)
    return st, dead, boot


async def test_tc_b_46_fallback_after_network_profile_connection_attempts(csms, make_station, caplog):
    """B10.FR.03/04: the first entry cannot be reached; after NetworkProfileConnectionAttempts attempts the station
    tries the next entry of NetworkConfigurationPriority (CSMS A) and boots there."""
    st, dead, boot = await reset_with_dead_profile(csms, make_station, caplog, "2", "2,1")
    assert boot.payload["reason"] == "RemoteReset"
    tried = [r for r in caplog.records if r.name.startswith("secure_cp.transport") and dead in r.getMessage()
             and "cannot connect" in r.getMessage()]
    assert len(tried) == 2                                          # NetworkProfileConnectionAttempts per entry
    assert st.station.network.active_slot == 1
    assert csms.violations == []


async def test_tc_b_49_b10_fr_07_fallback_to_the_last_connected_profile(csms, make_station, caplog):
    """B10.FR.07: every entry of NetworkConfigurationPriority failed -> back to the profile that connected last,
    even though the CSMS removed it from the priority list."""
    st, _, _ = await reset_with_dead_profile(csms, make_station, caplog, "1", "2")
    assert [p.slot for p in st.station.plan.order] == [2, 1]
    assert st.station.network.active_slot == 1
    assert csms.violations == []
