"""OCPP 1.6 Security Whitepaper edition 3, use case A04 Security Event Notification, end to end (real station, real
WebSockets, the strict CSMS validating the whitepaper's SecurityEventNotification.req schema, SQLite, real TLS).

A04.FR.01 (critical events are sent), A04.FR.02 (queued with guaranteed delivery while disconnected, across a
reboot), A04.FR.03 (the Central System confirms with SecurityEventNotification.conf), A04.FR.04 (every event is in
the security log); §8 "Security Events" (the 1.6 names). The queue and the sending are shared with 2.0.1
(tests/test_v201_security_events.py).
"""
from __future__ import annotations

import logging
from datetime import timedelta

from helpers import barrier, booted, eventually, startup_event_confirmed_once
from secure_cp.engine import rfc3339
from secure_cp.security import devpki
from secure_cp.securityevents import event_type_for, is_critical
from secure_cp.sim.csms import Csms
from test_tls import bad_server_cert, profile2, tls_csms, tls_failures

ID = "CP1"
V16 = {"protocols": ["ocpp1.6"]}


def security_events_sent(csms: Csms, after: int = 0) -> list[dict]:
    return [r.payload for r in csms.received[after:] if r.action == "SecurityEventNotification"]


# ---- names and criticality (no I/O) ----------------------------------------------------------------------------
def test_whitepaper_8_names_map_between_versions_and_share_criticality():
    """§8: the four events 1.6 names differently are sent under the connected version's name; a 1.6 name counts as
    critical exactly when its 2.0.1 twin does (Appendix 1 applied to both versions); shared and vendor types pass."""
    assert event_type_for("1.6", "InvalidCsmsCertificate") == "InvalidCentralSystemCertificate"
    assert event_type_for("2.0.1", "InvalidCentralSystemCertificate") == "InvalidCsmsCertificate"
    assert event_type_for("1.6", "FailedToAuthenticateAtCsms") == "FailedToAuthenticateAtCentralSystem"
    assert event_type_for("2.0.1", "InvalidChargePointCertificate") == "InvalidChargingStationCertificate"
    assert event_type_for("1.6", "StartupOfTheDevice") == "StartupOfTheDevice"
    assert event_type_for("1.6", "AcmeDoorOpened") == "AcmeDoorOpened"
    assert is_critical("InvalidCentralSystemCertificate") and is_critical("InvalidChargePointCertificate")
    assert not is_critical("FailedToAuthenticateAtCentralSystem")
    assert not is_critical("CentralSystemFailedToAuthenticate")


# ---- over the wire -------------------------------------------------------------------------------------------
async def test_a04_fr_01_fr_03_v16_startup_of_the_device_after_boot_accepted(csms, make_station):
    """A04.FR.01: after BootNotification.conf Accepted (and the statuses of the boot) the station sends
    SecurityEventNotification.req StartupOfTheDevice; A04.FR.03: the .conf takes it off the queue, it stays in the
    log (A04.FR.04), and a reconnect within the same boot does not send it again."""
    st = await booted(csms, make_station, **V16)
    await startup_event_confirmed_once(csms, st, barrier)
    assert csms.violations == []


async def test_a04_fr_02_v16_events_of_an_offline_period_delivered_after_reconnect(csms, make_station):
    """A04.FR.02: a critical event that happens while disconnected (tamper sensor, reported through the security
    log's ``record`` as the hardware layer does) is sent after the reconnect, without a new BootNotification
    (1.6: a reconnect within one boot is no boot), once."""
    st = await booted(csms, make_station, **V16)
    await csms.wait_for("SecurityEventNotification", identity=ID)
    await eventually(lambda: st.station.security_events.pending(1) == [], 5, "startup confirmed")
    await csms.stop()
    await eventually(lambda: not st.station.adapter.online, 5, "offline")
    st.station.security_events.record("TamperDetectionActivated", rfc3339(st.station.clock.now()), "lid opened")
    n = len(csms.received)
    await csms.start()
    ev = await csms.wait_for("SecurityEventNotification", after=n, identity=ID)
    assert ev.payload == {"type": "TamperDetectionActivated", "timestamp": ev.payload["timestamp"],
                          "techInfo": "lid opened"}
    assert not any(r.action == "BootNotification" for r in csms.received[n:])
    await eventually(lambda: st.station.security_events.pending(1) == [], 5, "confirmed")
    await barrier(csms)
    assert [p["type"] for p in security_events_sent(csms, n)] == ["TamperDetectionActivated"]
    assert csms.violations == []


async def test_a04_fr_02_v16_unconfirmed_event_survives_a_reboot_and_goes_in_order(csms, make_station):
    """A04.FR.02: a notification answered with a CALLERROR is not confirmed and stays queued on disk; after a
    reboot without a Central System both StartupOfTheDevice events go out, oldest first, once Accepted again."""
    csms.fail_next("SecurityEventNotification", "InternalError")
    st = await booted(csms, make_station, **V16)
    await csms.wait_for("SecurityEventNotification", identity=ID)      # answered with a CALLERROR
    await eventually(lambda: st.station.adapter._security_retry_at > 0, 5, "the failure handled")
    assert [e.type for e in st.station.security_events.pending(5)] == ["StartupOfTheDevice"]
    await st.stop()
    await csms.stop()
    st2 = await make_station(csms, data_dir=st.cfg.data_dir, **V16)
    await eventually(lambda: len(st2.station.security_events.pending(5)) == 2, 5, "the second startup queued")
    n = len(csms.received)
    await csms.start()
    await csms.wait_for("BootNotification", after=n, identity=ID)
    await eventually(lambda: len(security_events_sent(csms, n)) == 2, 10, "both events delivered")
    first, second = security_events_sent(csms, n)
    assert first["type"] == second["type"] == "StartupOfTheDevice"
    assert first["timestamp"] <= second["timestamp"]
    boot = next(i for i, r in enumerate(csms.received[n:]) if r.action == "BootNotification")
    sec = next(i for i, r in enumerate(csms.received[n:]) if r.action == "SecurityEventNotification")
    assert boot < sec
    await eventually(lambda: st2.station.security_events.pending(5) == [], 5, "queue empty")
    assert csms.violations == []


async def test_a00_fr_309_a04_v16_invalid_central_system_certificate_sent_once_tls_is_good(make_station, tmp_path,
                                                                                          caplog):
    """Whitepaper A00.FR.309 + A04.FR.01/02: handshakes with a Central System whose certificate has expired are
    terminated and the 1.6 event InvalidCentralSystemCertificate is logged once; as soon as the Central System
    presents a valid certificate the station boots and sends it in a SecurityEventNotification.req (with the same
    techInfo), which the Central System confirms."""
    caplog.set_level(logging.INFO, logger="secure_cp")
    pki = devpki.generate(tmp_path / "pki", identity=ID)      # the test PKI of test_tls.py, in tmp_path
    async with tls_csms(pki, cert=bad_server_cert("expired", pki, tmp_path / "bad")) as csms:
        st = await make_station(csms, **V16, **profile2(pki))
        await eventually(lambda: tls_failures(caplog) >= 2, what="refused handshakes")
        events = [e for e in st.station.security_events.log() if e.type == "InvalidCentralSystemCertificate"]
        assert len(events) == 1 and events[0].critical and not events[0].delivered
        assert not any(r.action == "BootNotification" for r in csms.received)
        csms.ssl_context.load_cert_chain(pki.server_cert, pki.server_key)
        await csms.wait_for("BootNotification", identity=ID)
        sent = await csms.wait_for("SecurityEventNotification",
                                   lambda p: p["type"] == "InvalidCentralSystemCertificate", identity=ID)
        assert sent.payload["techInfo"] == events[0].tech_info
        await eventually(lambda: all(e.type != "InvalidCentralSystemCertificate"
                                     for e in st.station.security_events.pending(10)), what="confirmed")
        assert csms.violations == []


async def test_whitepaper_8_v16_setting_system_time_when_the_central_system_moves_the_clock(csms, make_station):
    """Whitepaper §8 SettingSystemTime (critical): BootNotification.conf currentTime moves the station clock by two
    hours -> the event is recorded and sent with the change in techInfo; a Heartbeat.conf correction of a few seconds
    (below the 20 s the 2.0.1 ClockCtrlr.TimeAdjustmentReportingThreshold defaults to; 1.6 has no key for it) is no
    event."""
    real = csms.clock
    csms.clock = lambda: real() + timedelta(hours=2)
    st = await booted(csms, make_station, **V16)
    ev = await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "SettingSystemTime", identity=ID)
    assert "+7200" in ev.payload["techInfo"]
    n = len(csms.received)
    csms.clock = lambda: real() + timedelta(hours=2, seconds=5)
    assert await csms.call(ID, "ExtendedTriggerMessage", {"requestedMessage": "Heartbeat"}) == {"status": "Accepted"}
    await csms.wait_for("Heartbeat", after=n)
    await barrier(csms)
    assert [e["type"] for e in security_events_sent(csms, n)] == []
    assert [e.type for e in st.station.security_events.log()].count("SettingSystemTime") == 1
    assert csms.violations == []


async def test_whitepaper_8_v16_reconfiguration_of_security_parameters_on_cpo_name_change(csms, make_station):
    """Whitepaper §8 ReconfigurationOfSecurityParameters (not critical): ChangeConfiguration CpoName (§7.5, the
    organization of the station certificate's CSR) Accepted -> the event in the security log naming the key; not
    pushed to the Central System. (AuthorizationKey and SecurityProfile go the same way, runtime.SECURITY_PARAMETERS;
    the value is never logged.)"""
    st = await booted(csms, make_station, **V16)
    n = len(csms.received)
    assert await csms.call(ID, "ChangeConfiguration", {"key": "CpoName", "value": "New CPO"}) == \
        {"status": "Accepted"}
    await eventually(lambda: any(e.type == "ReconfigurationOfSecurityParameters"
                                 for e in st.station.security_events.log()), 5, "the event")
    [event] = [e for e in st.station.security_events.log() if e.type == "ReconfigurationOfSecurityParameters"]
    assert event.tech_info == "CpoName changed" and not event.critical
    await barrier(csms)
    assert all(e["type"] != "ReconfigurationOfSecurityParameters" for e in security_events_sent(csms, n))
    assert csms.violations == []
