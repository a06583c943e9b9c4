"""OCPP 2.0.1 Part 6 test cases that were still open (issue #3): the security-profile upgrade without a CSMS root
(TC_A_20) and the downgrade (TC_A_22) at profile 2 over real TLS, the migration to a new CSMS with a new CSMS root
(TC_B_50), the last steps of the offline unknown id (TC_C_26), the clock from BootNotification / Heartbeat currentTime
(1.6 and 2.0.1) and the reconnect back-off whose OCPPCommCtrlr.RetryBackOff* defaults come from the configuration.
Each runs a real station against the strict embedded CSMS over real WebSockets (and TLS where the TC needs it).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from helpers import eventually
from secure_cp.security import devpki, tls
from secure_cp.sim.csms import Csms
from test_v201_core import ID, barrier, booted, ended, go_offline, go_online, started, tx_events

PASSWORD = "0123456789abcdef"          # the BasicAuthPassword (hex-string form) of the Basic-auth CSMSs below
PRIORITY = ("OCPPCommCtrlr", "NetworkConfigurationPriority")


def new_pki(path: Path) -> devpki.DevPki:
    return devpki.generate(path, identity=ID)


def tls_csms(pki: devpki.DevPki) -> Csms:
    """A security-profile-2 CSMS: TLS with the server certificate of ``pki``, Basic auth."""
    return Csms(ssl_context=tls.server_context(pki.server_cert, pki.server_key),
                basic_auth={ID: PASSWORD.encode()})


def connection(url: str, security_profile: int) -> dict:
    return {"ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": url, "messageTimeout": 30,
            "securityProfile": security_profile, "ocppInterface": "Wired0"}


async def set_network_profile(csms: Csms, slot: int, url: str, security_profile: int) -> dict:
    return await csms.call(ID, "SetNetworkProfile", {"configurationSlot": slot,
                                                      "connectionData": connection(url, security_profile)})


async def set_variable(csms: Csms, component: str, variable: str, value: str) -> dict:
    res = await csms.call(ID, "SetVariables", {"setVariableData": [
        {"component": {"name": component}, "variable": {"name": variable}, "attributeValue": value}]})
    return res["setVariableResult"][0]


async def get_variable(csms: Csms, component: str, variable: str) -> str | None:
    res = await csms.call(ID, "GetVariables", {"getVariableData": [
        {"component": {"name": component}, "variable": {"name": variable}}]})
    return res["getVariableResult"][0].get("attributeValue")


async def install_root(csms: Csms, pki: devpki.DevPki) -> None:
    res = await csms.call(ID, "InstallCertificate", {"certificateType": "CSMSRootCertificate",
                                                      "certificate": Path(pki.ca_file).read_text()})
    assert res["status"] == "Accepted"


# ---- A Security ---------------------------------------------------------------------------------------------------
async def test_tc_a_20_cs_profile_2_stored_without_csms_root_but_priority_rejected(tmp_path, make_station):
    """TC_A_20_CS (A05.FR.02; B09.FR.01): a station at profile 1 without any CSMS root accepts a profile-2
    NetworkConnectionProfile (step 2: B09 checks the content, the root is a prerequisite of the upgrade, not of the
    profile), but the NetworkConfigurationPriority that would put it in use is Rejected (step 4): SecurityProfile,
    the priority and the connection stay. Once a root is installed the same priority is accepted (A05.FR.04)."""
    pki = new_pki(tmp_path / "pki")
    async with Csms(basic_auth={ID: PASSWORD.encode()}) as plain, tls_csms(pki) as secure:
        st = await make_station(plain, protocols=["ocpp2.0.1"], security_profile=1, password=PASSWORD)
        await plain.wait_for("StatusNotification", identity=ID)
        station = st.station
        assert station.certificates.roots("CSMSRootCertificate") == [] and station.cfg.ca_file is None
        res = await set_network_profile(plain, 2, secure.url, 2)
        assert res["status"] == "Accepted"                                            # step 2
        assert station.network.get(2).security_profile == 2
        res = await set_variable(plain, *PRIORITY, "2,1")
        assert res["attributeStatus"] == "Rejected"                                   # step 4
        assert station.model.get(*PRIORITY) == "1"
        assert station.model.get("SecurityCtrlr", "SecurityProfile") == "1"
        assert station.transport.connected and secure.received == []
        await install_root(plain, pki)                                                # the prerequisite met
        assert (await set_variable(plain, *PRIORITY, "2,1"))["attributeStatus"] == "RebootRequired"
        assert plain.violations == []


@pytest.mark.parametrize("lower", [1, 0])
async def test_tc_a_22_cs_downgrade_from_profile_2_rejected(tmp_path, make_station, lower):
    """TC_A_22_CS (B09.FR.04): a station connected with security profile 2 (TLS, Basic auth) refuses a
    NetworkConnectionProfile with a lower securityProfile (1 and 0): Rejected, NoSecurityDowngrade, nothing stored.
    A profile at the same level is accepted (B09.FR.01)."""
    pki = new_pki(tmp_path / "pki")
    async with tls_csms(pki) as secure, Csms() as other:
        st = await make_station(secure, protocols=["ocpp2.0.1"], security_profile=2, password=PASSWORD,
                                ca_file=pki.ca_file)
        await secure.wait_for("StatusNotification", identity=ID)
        await eventually(lambda: st.station.model.get("SecurityCtrlr", "SecurityProfile") == "2",
                         what="SecurityProfile 2")
        res = await set_network_profile(secure, 2, other.url, lower)
        assert res["status"] == "Rejected" and res["statusInfo"]["reasonCode"] == "NoSecurityDowngrade"
        assert st.station.network.get(2) is None
        assert (await set_network_profile(secure, 2, secure.url, 2))["status"] == "Accepted"
        assert st.station.network.get(2).security_profile == 2
        assert other.received == [] and secure.violations == []


# ---- B Provisioning -----------------------------------------------------------------------------------------------
async def test_tc_b_50_cs_migrate_to_new_csms_with_new_csms_root(tmp_path, make_station):
    """TC_B_50_CS (B10, M05.FR.13): the station runs at profile 2 against CSMS 1 (root 1 from its configuration).
    Memory state: CSMS 1 installs root 2 (InstallCertificate CSMSRootCertificate). Steps 1-6: SetNetworkProfile to
    CSMS 2 (server certificate of root 2) in slot 2, NetworkConfigurationPriority "2,1", Reset OnIdle; steps 7-9: the
    station reboots, validates CSMS 2's certificate against the installed root 2 (the configured ca_file holds root
    1 only) and boots there."""
    pki1, pki2 = new_pki(tmp_path / "pki1"), new_pki(tmp_path / "pki2")
    assert Path(pki1.ca_file).read_bytes() != Path(pki2.ca_file).read_bytes()
    async with tls_csms(pki1) as csms1, tls_csms(pki2) as csms2:
        st = await make_station(csms1, protocols=["ocpp2.0.1"], security_profile=2, password=PASSWORD,
                                ca_file=pki1.ca_file)
        await csms1.wait_for("StatusNotification", identity=ID)
        await install_root(csms1, pki2)                                               # memory state
        res = await set_network_profile(csms1, 2, csms2.url, 2)
        assert res["status"] == "Accepted"                                            # step 2
        assert (await set_variable(csms1, *PRIORITY, "2,1"))["attributeStatus"] == "RebootRequired"   # step 4
        assert (await csms1.call(ID, "Reset", {"type": "OnIdle"}))["status"] == "Accepted"            # step 6
        boot = await csms2.wait_for("BootNotification", identity=ID, timeout=20)                      # steps 7-9
        assert boot.payload["reason"] == "RemoteReset"
        await csms2.wait_for("StatusNotification", identity=ID)
        session = csms2._session(ID)
        assert session.ws.transport.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        assert st.station.network.active_slot == 2
        assert await get_variable(csms2, "SecurityCtrlr", "SecurityProfile") == "2"
        ids = await csms2.call(ID, "GetInstalledCertificateIds", {"certificateType": ["CSMSRootCertificate"]})
        assert len(ids["certificateHashDataChain"]) == 1
        assert [r.action for r in csms1.received].count("BootNotification") == 1
        assert csms1.violations == [] and csms2.violations == []


# ---- C Authorization ----------------------------------------------------------------------------------------------
async def test_tc_c_26_cs_offline_unknown_id_suspended_then_stopped_by_the_same_id_token(csms, make_station):
    """TC_C_26_CS (C15.FR.02/06/08, C13.FR.04): OfflineTxForUnknownIdEnabled true, StopTxOnInvalidId false,
    MaxEnergyOnInvalidId 0. State StartOfflineTransaction: offline, the EV plugs in and an idToken unknown to the
    station starts a transaction. Step 1: after the reconnect the queued TransactionEvents all carry offline true;
    the CSMS answers the one with the idToken Invalid, so the station suspends the energy (SuspendedEVSE) and keeps
    the transaction. Steps 3-4: the idToken presented again stops it (triggerReason StopAuthorized); the unplug
    ends it."""
    st = await booted(csms, make_station, ocpp={"AllowOfflineTxForUnknownId": "true", "LocalAuthorizeOffline": "true",
                                                "StopTransactionOnInvalidId": "false", "MaxEnergyOnInvalidId": "0"})
    csms.authorize["TAG1"] = {"status": "Invalid"}
    await go_offline(csms, st)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await eventually(lambda: st.station.engine.connectors[1].tx_key is not None, 5, "the offline transaction")
    queued = len(st.station.outbox.pending())
    n = len(csms.received)
    await go_online(csms, st)
    start = await started(csms, after=n)
    tx_id = start["transactionInfo"]["transactionId"]
    assert start["idToken"]["idToken"] == "TAG1"
    suspended = await csms.wait_for("TransactionEvent", lambda p: p["transactionInfo"].get("chargingState")
                                    == "SuspendedEVSE", after=n)
    assert suspended.payload["eventType"] == "Updated"
    assert all(e["offline"] is True for e in tx_events(csms, n)[:queued])              # step 1
    assert st.station.engine.connectors[1].tx_key == tx_id
    m = len(csms.received)
    st.hw.present_tag("TAG1")                                                          # manual action
    stop = await csms.wait_for("TransactionEvent", lambda p: p["triggerReason"] == "StopAuthorized", after=m)
    assert stop.payload["transactionInfo"]["transactionId"] == tx_id                   # step 3
    st.hw.ev_plug(1, False)                                                            # manual action
    end = await ended(csms, tx_id, after=m)
    assert "offline" not in end
    assert csms.violations == [] and csms.duplicates == []


# ---- the clock: BootNotification / Heartbeat currentTime ---------------------------------------------------------
def skew(st, csms: Csms) -> float:
    """Seconds between the station's clock and the CSMS's clock (no wall clock involved)."""
    return abs(st.station.clock.now() - csms.now().timestamp())


def parse(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_clock_follows_boot_notification_and_heartbeat_current_time(csms, make_station, protocol, caplog):
    """1.6 §4.2 / §4.6 (BootNotification.conf / Heartbeat.conf currentTime) and 2.0.1 B01.FR.06 / G02.FR.06
    (TimeSource Heartbeat): the station takes the CSMS's time from the BootNotification response, and again from
    each Heartbeat response; what it sends afterwards carries that time (StatusNotification timestamp, 2.0.1
    ClockCtrlr.DateTime). The correction is no time passing: the CALLs sent right after the boot do not time out
    (fixed: a clock set 2 h forward timed out the boot's StatusNotifications at once), and a clock set 3 h back
    keeps the heartbeat going."""
    real = csms.clock
    csms.clock = lambda: real() + timedelta(hours=2)
    csms.boot_interval = 1
    st = await make_station(csms, protocols=[protocol])
    await csms.wait_for("BootNotification", identity=ID)
    await csms.wait_for("StatusNotification", identity=ID)
    assert skew(st, csms) < 5
    n = len(csms.received)
    st.hw.ev_plug(1)                                       # a status change after the clock was set
    status = await csms.wait_for("StatusNotification", lambda p: "Available" not in (p.get("status"),
                                                                               p.get("connectorStatus")),
                                 identity=ID, after=n)
    assert abs(parse(status.payload["timestamp"]) - csms.now().timestamp()) < 5
    if protocol == "ocpp2.0.1":
        assert st.station.model.get("ClockCtrlr", "TimeSource") == "Heartbeat"
        res = await csms.call(ID, "GetVariables", {"getVariableData": [
            {"component": {"name": "ClockCtrlr"}, "variable": {"name": "DateTime"}}]})
        assert abs(parse(res["getVariableResult"][0]["attributeValue"]) - csms.now().timestamp()) < 5
    csms.clock = lambda: real() - timedelta(hours=1)                 # the CSMS's clock moves: 3 h back
    assert skew(st, csms) > 3 * 3600 - 5
    n = len(csms.received)
    await csms.wait_for("Heartbeat", identity=ID, after=n)                # every second (the boot interval)
    await eventually(lambda: skew(st, csms) < 5, 5, "the clock set from the Heartbeat response")
    n = len(csms.received)
    await csms.wait_for("Heartbeat", identity=ID, after=n)                # still every second after 3 h back
    assert "timed out" not in caplog.text
    assert csms.violations == []


# ---- B10 / Part 4 §5.3: one source for the reconnect back-off --------------------------------------------------------
async def test_retry_back_off_variables_default_to_the_configured_reconnect_settings(csms, make_station):
    """OCPPCommCtrlr.RetryBackOffWaitMinimum / RetryBackOffRandomRange / RetryBackOffRepeatTimes (Part 4 §5.3,
    appendices OCPPCommCtrlr) are the back-off the transport uses; their defaults come from the [csms]
    reconnect_min 2 / reconnect_max 20 (minimum 2 s, random range 2 s, 3 doublings: 2 * 2^3 <= 20; set as the
    simulator API does at run time), and SetVariables changes the back-off used from the next reconnect on
    (TC_B_57_CS)."""
    st = await booted(csms, make_station)
    assert await get_variable(csms, "OCPPCommCtrlr", "RetryBackOffWaitMinimum") == "0"   # conftest: 0.05 s
    st.station.cfg.reconnect_min, st.station.cfg.reconnect_max = 2.0, 20.0
    st.station.reset_backoff_defaults()
    values = {name: await get_variable(csms, "OCPPCommCtrlr", name)
              for name in ("RetryBackOffWaitMinimum", "RetryBackOffRandomRange", "RetryBackOffRepeatTimes")}
    assert values == {"RetryBackOffWaitMinimum": "2", "RetryBackOffRandomRange": "2", "RetryBackOffRepeatTimes": "3"}
    used = st.station.transport_config()
    assert (used.reconnect_min, used.reconnect_random_range, used.reconnect_repeat_times) == (2.0, 2.0, 3)
    for name, value in (("RetryBackOffWaitMinimum", "1"), ("RetryBackOffRandomRange", "0"),
                        ("RetryBackOffRepeatTimes", "2")):
        assert (await set_variable(csms, "OCPPCommCtrlr", name, value))["attributeStatus"] == "Accepted"
    await barrier(csms)
    assert [st.station.transport.backoff_delay(a) for a in range(4)] == [1.0, 2.0, 4.0, 4.0]
    assert csms.violations == []


async def test_retry_back_off_of_a_1_6_station_comes_from_the_same_variables(csms, make_station):
    """OCPP 1.6 has no back-off keys: the station reconnects with the same RetryBackOff* values, here their
    configured defaults (reconnect_min 1, reconnect_max 60: 1 s, 1 s random range, 5 doublings)."""
    st = await make_station(csms)
    await csms.wait_for("BootNotification", identity=ID)
    st.station.cfg.reconnect_min, st.station.cfg.reconnect_max = 1.0, 60.0
    st.station.reset_backoff_defaults()
    used = st.station.transport_config()
    assert (used.reconnect_min, used.reconnect_random_range, used.reconnect_repeat_times) == (1.0, 1.0, 5)
    assert used.reconnect_max == 1.0 * 2 ** 5 + 1.0
