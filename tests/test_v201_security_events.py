"""OCPP 2.0.1 A04 Security Event Notification, end to end (real station, real WebSockets, strict CSMS, SQLite).

Part 2 A04.FR.01 (critical events are sent), A04.FR.02 (queued with guaranteed delivery while offline, across a
reboot), A04.FR.03 (the CSMS confirms), A04.FR.04 (every event is in the security log); the critical flags of
Appendix 1 (security_events.csv). Part 6: TC_B_21 step 11 and TC_G_18 / TC_G_19 / TC_G_21 expect a
SecurityEventNotification StartupOfTheDevice or ResetOrReboot after the (re)boot.
"""
from __future__ import annotations

from datetime import timedelta

import pytest

from helpers import eventually, startup_event_confirmed_once
from secure_cp.securityevents import EVENT_TYPES, SecurityEvents, is_critical
from secure_cp.sim.csms import Csms
from secure_cp.store import Database
from test_v201_core import barrier

ID = "CP1"
BOOT_EVENTS = ("StartupOfTheDevice", "ResetOrReboot")


async def booted(csms: Csms, make_station, **kw):
    st = await make_station(csms, protocols=["ocpp2.0.1"], **kw)
    await csms.wait_for("BootNotification", identity=st.cfg.identity)
    return st


def security_types(csms: Csms, after: int = 0) -> list[str]:
    return [r.payload["type"] for r in csms.received[after:] if r.action == "SecurityEventNotification"]


# ---- the module on its own (real SQLite) ----------------------------------------------------------------------
def test_a04_appendix_1_critical_flags():
    """Appendix 1: 20 event types; the non-critical ones are exactly these five; unknown (vendor) types count as
    critical."""
    assert len(EVENT_TYPES) == 20
    assert {t for t, crit in EVENT_TYPES.items() if not crit} == {
        "FailedToAuthenticateAtCsms", "CsmsFailedToAuthenticate", "ReconfigurationOfSecurityParameters",
        "InvalidMessages", "AttemptedReplayAttacks"}
    assert is_critical("StartupOfTheDevice") and is_critical("VendorSpecificThing")


def test_a04_fr_04_rolling_log_never_drops_an_undelivered_critical_event(tmp_path):
    """A04.FR.04: every event is logged, the log rolls; A04.FR.02: a critical event not yet confirmed survives the
    rolling and a reopen of the store (power cut), and leaves the queue only when confirmed (A04.FR.03)."""
    db = Database(tmp_path / "s.db")
    events = SecurityEvents(db, log_size=3)
    first = events.record("TamperDetectionActivated", "2026-01-01T00:00:00.000Z", "lid open")
    for i in range(5):
        events.record("InvalidMessages", f"2026-01-01T00:00:0{i + 1}.000Z")
    with pytest.raises(ValueError):
        events.record("", "2026-01-01T00:00:00.000Z")
    db.close()
    db = Database(tmp_path / "s.db")
    events = SecurityEvents(db, log_size=3)
    log = events.log()
    assert [e.type for e in log] == ["TamperDetectionActivated"] + ["InvalidMessages"] * 3
    assert [e.id for e in events.pending(10)] == [first.id]          # non-critical ones are never queued
    events.delivered(first.id)
    assert events.pending(10) == []
    events.record("InvalidMessages", "2026-01-01T00:01:00.000Z")
    assert "TamperDetectionActivated" not in [e.type for e in events.log()]   # delivered: it may roll out now
    db.close()


# ---- over the wire ---------------------------------------------------------------------------------------------
async def test_tc_g_18_a04_fr_01_startup_of_the_device_after_boot(csms, make_station):
    """A04.FR.01 / TC_G_18_CS, TC_G_19_CS, TC_G_21_CS (the SecurityEventNotification step after the reboot): a
    booted station sends StartupOfTheDevice (timestamp, type) once Accepted, after the connector statuses; the
    CSMS's confirmation takes it off the queue (A04.FR.03), so a reconnect does not send it again."""
    st = await booted(csms, make_station)
    await startup_event_confirmed_once(csms, st, barrier)
    assert csms.violations == []


async def test_tc_b_21_step_11_reset_or_reboot_after_a_reset(csms, make_station):
    """TC_B_21_CS step 11 (and TC_B_20 / TC_G_21 after their reset): after a Reset the rebooted station reports
    ResetOrReboot (techInfo: the boot reason) and StartupOfTheDevice."""
    await booted(csms, make_station)
    await csms.wait_for("SecurityEventNotification")
    n = len(csms.received)
    assert await csms.call(ID, "Reset", {"type": "Immediate"}) == {"status": "Accepted"}
    boot = await csms.wait_for("BootNotification", after=n)
    assert boot.payload["reason"] == "RemoteReset"
    reset = await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "ResetOrReboot", after=n)
    assert "RemoteReset" in reset.payload["techInfo"]
    await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "StartupOfTheDevice", after=n)
    assert security_types(csms, n) == ["ResetOrReboot", "StartupOfTheDevice"]
    assert csms.violations == []


async def test_a04_fr_02_critical_events_of_an_offline_period_and_a_reboot_are_delivered_later(csms, make_station):
    """A04.FR.02: critical events that happen while the CSMS is unreachable (here: a reboot with no connection,
    and a CALLERROR answer) stay queued on disk and are delivered, in order, once the station is registered."""
    csms.fail_next("SecurityEventNotification", "InternalError")
    st = await booted(csms, make_station)
    await csms.wait_for("SecurityEventNotification")          # answered with a CALLERROR: not confirmed
    assert [e.type for e in st.station.security_events.pending(5)] == ["StartupOfTheDevice"]
    await st.stop()
    await csms.stop()
    st2 = await make_station(csms, protocols=["ocpp2.0.1"], data_dir=st.cfg.data_dir)
    await eventually(lambda: len(st2.station.security_events.pending(5)) == 2, 5, "the second startup queued")
    n = len(csms.received)
    await csms.start()
    await csms.wait_connected(ID)
    await csms.wait_for("SecurityEventNotification", after=n)
    await eventually(lambda: len(security_types(csms, n)) == 2, 5, "both events delivered")
    first, second = [r.payload for r in csms.received[n:] if r.action == "SecurityEventNotification"]
    assert first["timestamp"] <= second["timestamp"]
    await eventually(lambda: st2.station.security_events.pending(5) == [], 5, "queue empty")
    assert csms.violations == []


async def test_a04_setting_system_time_when_the_csms_moves_the_clock_beyond_the_threshold(csms, make_station):
    """Appendix 1 SettingSystemTime (critical): the CSMS's currentTime moves the station clock by more than
    ClockCtrlr.TimeAdjustmentReportingThreshold seconds -> reported with the size of the change in techInfo;
    a change within the threshold is not."""
    real = csms.clock
    csms.clock = lambda: real() + timedelta(hours=2)
    await booted(csms, make_station)
    ev = await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "SettingSystemTime")
    assert "+7200" in ev.payload["techInfo"]
    n = len(csms.received)
    csms.clock = lambda: real() + timedelta(hours=2, seconds=5)      # 5 s < 20 s (the default threshold)
    assert (await csms.call(ID, "TriggerMessage", {"requestedMessage": "Heartbeat"}))["status"] == "Accepted"
    await csms.wait_for("Heartbeat", after=n)
    await csms.call(ID, "GetVariables", {"getVariableData": [
        {"component": {"name": "ClockCtrlr"}, "variable": {"name": "TimeAdjustmentReportingThreshold"}}]})
    assert "SettingSystemTime" not in security_types(csms, n)
    assert csms.violations == []


def test_a04_has_pending_answered_from_memory_follows_record_delivered_and_rollback(tmp_path):
    """The queue check asked on every frame comes from memory, and a rolled-back event is not announced."""
    db = Database(tmp_path / "station.db")
    try:
        events = SecurityEvents(db)
        assert not events.has_pending()
        startup = events.record("StartupOfTheDevice", "2026-11-26T00:00:00.000Z")
        assert events.has_pending()
        events.delivered(startup.id)
        assert not events.has_pending()
        with pytest.raises(RuntimeError):
            with db.tx():
                events.record("TamperDetectionActivated", "2026-11-26T00:00:01.000Z")
                raise RuntimeError("the event's store transaction fails")
        assert not events.has_pending() and events.pending(5) == []
    finally:
        db.close()


async def test_a04_fr_04_invalid_messages_kept_in_the_security_log_not_pushed(csms, make_station):
    """Appendix 1 InvalidMessages (not critical): a CALL that violates its schema, a CALL of an action OCPP does not
    know and a malformed frame are answered with CALLERROR and each stored in the security log with the reason
    (A04.FR.04), but not sent as SecurityEventNotification (A04.FR.01 is for critical events only). A valid CALL
    is no such event; the station keeps working."""
    st = await booted(csms, make_station)
    await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "StartupOfTheDevice")
    n = len(csms.received)
    await csms.send_raw(ID, '[2,"bad-1","Reset",{"type":"Sometime"}]')
    await csms.send_raw(ID, '[2,"bad-2","NoSuchAction",{}]')
    await csms.send_raw(ID, '[2,"bad-3"')
    await barrier(csms)
    invalid = [e for e in st.station.security_events.log() if e.type == "InvalidMessages"]
    assert len(invalid) == 3 and not any(e.critical for e in invalid)
    assert "type" in (invalid[0].tech_info or "") and "NoSuchAction" in (invalid[1].tech_info or "")
    assert "InvalidMessages" not in security_types(csms, n)


async def test_a04_reconfiguration_of_security_parameters_on_certificate_install_and_delete(csms, make_station,
                                                                                          tmp_path):
    """Appendix 1 ReconfigurationOfSecurityParameters (not critical: logged, not pushed): installing a
    ManufacturerRootCertificate (M05) and deleting it (M04) each change the station's trust anchors."""
    from pathlib import Path

    from secure_cp.security import devpki
    st = await booted(csms, make_station)
    await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "StartupOfTheDevice")
    n = len(csms.received)
    pem = Path(devpki.manufacturer_root(tmp_path / "pki").cert_file).read_text()
    assert (await csms.call(ID, "InstallCertificate", {"certificateType": "ManufacturerRootCertificate",
                                                       "certificate": pem}))["status"] == "Accepted"
    ids = await csms.call(ID, "GetInstalledCertificateIds", {"certificateType": ["ManufacturerRootCertificate"]})
    hash_data = ids["certificateHashDataChain"][0]["certificateHashData"]
    assert (await csms.call(ID, "DeleteCertificate", {"certificateHashData": hash_data}))["status"] == "Accepted"
    events = [e for e in st.station.security_events.log() if e.type == "ReconfigurationOfSecurityParameters"]
    assert [e.tech_info for e in events] == ["ManufacturerRootCertificate installed or deleted (1 CA certificates)",
                                             "ManufacturerRootCertificate installed or deleted (0 CA certificates)"]
    assert not any(e.critical for e in events)
    assert "ReconfigurationOfSecurityParameters" not in security_types(csms, n)
