"""OCPP 1.6 connector status, registration, heartbeat and metering end to end.

Spec: OCPP 1.6 edition 2 §4.2 (BootNotification: Pending / Rejected / Accepted, interval), §4.6 (Heartbeat),
§4.7 (MeterValues), §4.9 (StatusNotification: transitions, SuspendedEVSE precedence, faults, EV side disconnect,
MinimumStatusDuration), §4.10 (Stop Transaction, EV side disconnect, cable lock), §5.3 (ChangeConfiguration
Rejected for values the station cannot use), §9.1.5 / §9.1.10 / §9.1.15 / §9.1.17 / §9.1.19 / §9.1.20 /
§9.1.23 / §9.1.33 (keys).
"""
from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime

import pytest

from helpers import barrier, booted, eventually
from secure_cp.sim.csms import Csms

# 1.6 §4.9 table: the transitions a connector (id > 0) may make, From -> {To}
A, B, C, D, E, F, G, H, I = ("Available", "Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing",
                             "Reserved", "Unavailable", "Faulted")
ALLOWED = {
    A: {B, C, D, E, G, H, I}, B: {A, C, D, E, F, I}, C: {A, D, E, F, H, I}, D: {A, C, E, F, H, I},
    E: {A, C, D, F, H, I}, F: {A, B, H, I}, G: {A, B, H, I}, H: {A, B, C, D, E, I}, I: {A, B, C, D, E, F, G, H},
}


# ---- helpers ------------------------------------------------------------------------------------------------






def statuses(csms: Csms, cid: int, after: int = 0) -> list[dict]:
    return [r.payload for r in csms.received[after:]
            if r.action == "StatusNotification" and r.payload["connectorId"] == cid]


async def wait_status(csms: Csms, cid: int, status: str, after: int, timeout: float = 10.0):
    return await csms.wait_for("StatusNotification",
                               lambda p: p["connectorId"] == cid and p["status"] == status,
                               after=after, timeout=timeout)


def seconds(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()


async def get_key(csms: Csms, key: str) -> str | None:
    res = await csms.call("CP1", "GetConfiguration", {"key": [key]})
    return res["configurationKey"][0].get("value")


# ---- StatusNotification ---------------------------------------------------------------------------------------
async def test_status_sequence_of_a_session_follows_the_transition_table(csms, make_station):
    """1.6 §4.9: Available -> Preparing (plug, A2) -> Charging (B3) -> Finishing (stopped by the user, C6) ->
    Available (cable removed, F1); every reported step is a transition of the §4.9 table."""
    st = await booted(csms, make_station)
    n = len(csms.received)
    st.hw.ev_plug(1)
    await wait_status(csms, 1, "Preparing", n)
    st.hw.present_tag("TAG1")
    await wait_status(csms, 1, "Charging", n)
    st.hw.present_tag("TAG1")
    await wait_status(csms, 1, "Finishing", n)
    st.hw.ev_plug(1, False)
    await wait_status(csms, 1, "Available", n)
    seq = [p["status"] for p in statuses(csms, 1)]
    assert seq == ["Available", "Preparing", "Charging", "Finishing", "Available"], seq
    for a, b in zip(seq, seq[1:]):
        assert b in ALLOWED[a], f"{a} -> {b} is not a §4.9 transition"
    assert all(p["errorCode"] == "NoError" for p in statuses(csms, 1))
    order = [r.action for r in csms.received[n:] if r.action in ("StartTransaction", "StopTransaction")]
    assert order == ["StartTransaction", "StopTransaction"]
    assert csms.violations == []


async def test_suspended_ev_and_suspended_evse_with_evse_precedence(csms, make_station):
    """1.6 §4.9: EV pauses -> SuspendedEV (C4); EVSE withholds energy as well -> SuspendedEVSE, which SHALL have
    precedence over SuspendedEV; EV ready again -> still SuspendedEVSE; EVSE ready -> Charging (E3)."""
    st = await booted(csms, make_station)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await wait_status(csms, 1, "Charging", 0)
    n = len(csms.received)
    st.hw.ev_ready(1, False)
    await wait_status(csms, 1, "SuspendedEV", n)
    st.hw.evse_ready(1, False)
    await wait_status(csms, 1, "SuspendedEVSE", n)
    st.hw.ev_ready(1, True)
    await barrier(csms)
    assert st.station.engine.status_of(1).value == "SuspendedEVSE"
    st.hw.evse_ready(1, True)
    m = len(csms.received)
    await wait_status(csms, 1, "Charging", m)
    seq = [p["status"] for p in statuses(csms, 1, n)]
    assert seq == ["SuspendedEV", "SuspendedEVSE", "Charging"], seq
    assert csms.violations == []


async def test_fault_is_reported_as_faulted_with_error_code_and_cleared(csms, make_station):
    """1.6 §4.9/§7.6: a fault that prevents charging -> Faulted with its ChargePointErrorCode (A9); resolved ->
    back to the pre-fault state (I1) with NoError. A non-fatal condition is a warning: reported with the
    errorCode but status not Faulted."""
    st = await booted(csms, make_station)
    n = len(csms.received)
    st.hw.inject_fault(1, "GroundFailure", info="RCD tripped")
    faulted = await wait_status(csms, 1, "Faulted", n)
    assert faulted.payload["errorCode"] == "GroundFailure"
    assert faulted.payload.get("info") == "RCD tripped"
    st.hw.inject_fault(1, None)
    back = await wait_status(csms, 1, "Available", n)
    assert back.payload["errorCode"] == "NoError"
    m = len(csms.received)
    st.hw.inject_fault(1, "HighTemperature", info="hot", fatal=False)
    warn = await csms.wait_for("StatusNotification",
                               lambda p: p["connectorId"] == 1 and p["errorCode"] == "HighTemperature", after=m)
    assert warn.payload["status"] == "Available"
    st.hw.inject_fault(1, None)
    k = len(csms.received)
    cleared = await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1, after=k)
    assert cleared.payload["status"] == "Available" and cleared.payload["errorCode"] == "NoError"
    assert csms.violations == []


async def test_ev_side_disconnect_with_stop_false_suspends_and_keeps_transaction(csms, make_station):
    """1.6 §4.9/§4.10/§9.1.23, StopTransactionOnEVSideDisconnect=false: SuspendedEV, errorCode NoError, info
    'EV side disconnected'; the transaction is not stopped and the cable stays locked (even with
    UnlockConnectorOnEVSideDisconnect=true); reconnecting the EV allows energy transfer again."""
    st = await booted(csms, make_station, ocpp={"StopTransactionOnEVSideDisconnect": "false",
                                               "UnlockConnectorOnEVSideDisconnect": "true"})
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await wait_status(csms, 1, "Charging", 0)
    n = len(csms.received)
    st.hw.ev_plug(1, False)
    susp = await wait_status(csms, 1, "SuspendedEV", n)
    assert susp.payload["errorCode"] == "NoError"
    assert susp.payload.get("info") == "EV side disconnected"
    await barrier(csms)
    assert "StopTransaction" not in [r.action for r in csms.received[n:]]
    assert st.station.engine.connectors[1].tx_key is not None
    assert st.hw.connectors[1].locked is True
    m = len(csms.received)
    st.hw.ev_plug(1)
    await wait_status(csms, 1, "Charging", m)
    st.hw.present_tag("TAG1")
    stop = await csms.wait_for("StopTransaction", after=m)
    assert stop.payload["reason"] == "Local"
    assert csms.violations == []


async def test_ev_side_disconnect_with_stop_true_stops_with_ev_disconnected(csms, make_station):
    """1.6 §4.10/§9.1.23/§9.1.33: StopTransactionOnEVSideDisconnect=true: the transaction is stopped with reason
    EVDisconnected; UnlockConnectorOnEVSideDisconnect=true unlocks the connector."""
    st = await booted(csms, make_station, ocpp={"StopTransactionOnEVSideDisconnect": "true",
                                               "UnlockConnectorOnEVSideDisconnect": "true"})
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await csms.wait_for("StartTransaction")
    assert st.hw.connectors[1].locked is True
    n = len(csms.received)
    st.hw.ev_plug(1, False)
    stop = await csms.wait_for("StopTransaction", after=n)
    assert stop.payload["reason"] == "EVDisconnected"
    assert st.hw.connectors[1].locked is False
    assert st.station.engine.connectors[1].tx_key is None
    assert csms.violations == []


async def test_minimum_status_duration_suppresses_a_short_lived_status(csms, make_station):
    """1.6 §4.9/§9.1.20: a status that lasted less than MinimumStatusDuration (1 s) is not reported; one that
    lasts is reported (after the duration)."""
    st = await booted(csms, make_station, ocpp={"MinimumStatusDuration": "1"})
    n = len(csms.received)
    st.hw.ev_plug(1)
    await asyncio.sleep(0.1)
    st.hw.ev_plug(1, False)                     # Preparing for 0.1 s only
    await asyncio.sleep(1.3)
    await barrier(csms)
    assert statuses(csms, 1, n) == []
    st.hw.ev_plug(1)
    prep = await wait_status(csms, 1, "Preparing", n, timeout=5)
    assert statuses(csms, 1, n) == [prep.payload]
    assert csms.violations == []


# ---- registration ---------------------------------------------------------------------------------------------
async def test_boot_pending_sends_nothing_but_boot_notifications_until_accepted(csms, make_station):
    """1.6 §4.2: while Pending the station sends no request other than BootNotification (retried after the
    interval, not earlier), answers CSMS requests (RemoteStartTransaction is not allowed: Rejected); once Accepted
    it reports its current statuses."""
    csms.boot_status, csms.boot_interval = "Pending", 1
    st = await make_station(csms)
    await eventually(lambda: sum(r.action == "BootNotification" for r in csms.received) >= 2, 10, "a second Boot")
    st.hw.ev_plug(1)                                           # a status change while Pending
    res = await csms.call("CP1", "GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert res["configurationKey"][0]["key"] == "HeartbeatInterval"
    assert await csms.call("CP1", "RemoteStartTransaction", {"idTag": "TAG1", "connectorId": 1}) == \
        {"status": "Rejected"}
    await asyncio.sleep(0.3)
    boots = [r for r in csms.received if r.action == "BootNotification"]
    assert seconds(boots[0].at, boots[1].at) >= 0.9
    csms.boot_status, csms.boot_interval = "Accepted", 300
    n = len(csms.received)
    assert {r.action for r in csms.received[:n]} == {"BootNotification"}
    await wait_status(csms, 1, "Preparing", n)
    await wait_status(csms, 0, "Available", n)
    assert csms.received[n].action == "BootNotification"
    assert st.station.engine.connectors[1].tx_key is None
    assert csms.violations == []


async def test_boot_rejected_station_does_not_answer_and_waits_for_the_interval(csms, make_station):
    """1.6 §4.2: while Rejected the station SHALL NOT respond to CSMS-initiated messages (not even with a
    CALLERROR) and sends nothing until the retry interval has expired; then it boots again."""
    csms.boot_status, csms.boot_interval = "Rejected", 2
    st = await make_station(csms)
    await csms.wait_for("BootNotification")
    with pytest.raises(TimeoutError):
        await csms.call("CP1", "GetConfiguration", {"key": ["HeartbeatInterval"]}, timeout=0.7)
    await csms.send_raw("CP1", '[2,"rejected-1","FooBar",{}]')
    await asyncio.sleep(0.2)
    assert {r.action for r in csms.received} == {"BootNotification"}
    assert not any('"rejected-1"' in f.text for f in st.station.frames if f.direction == "tx")
    csms.boot_status, csms.boot_interval = "Accepted", 300
    second = await csms.wait_for("BootNotification", after=1, timeout=10)
    assert seconds(csms.received[0].at, second.at) >= 1.9
    await wait_status(csms, 0, "Available", 1)
    await barrier(csms)                                        # answers again once Accepted
    assert csms.violations == []


async def test_heartbeat_is_sent_at_heartbeat_interval(csms, make_station):
    """1.6 §4.6/§9.1.10: after ChangeConfiguration HeartbeatInterval=1 the station sends a Heartbeat after each
    second without other traffic (lower bound checked, not speed)."""
    await booted(csms, make_station)
    assert (await csms.call("CP1", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "1"})) == \
        {"status": "Accepted"}
    n = len(csms.received)
    await eventually(lambda: sum(r.action == "Heartbeat" for r in csms.received[n:]) >= 2, 10, "two Heartbeats")
    beats = [r for r in csms.received[n:] if r.action == "Heartbeat"]
    assert beats[0].payload == {}
    assert seconds(beats[0].at, beats[1].at) >= 0.9
    assert csms.violations == []


async def test_boot_notification_interval_becomes_the_heartbeat_interval(csms, make_station):
    """1.6 §4.2/§6.4: the interval of an Accepted BootNotification.conf is the heartbeat interval (and is what
    HeartbeatInterval reports)."""
    csms.boot_interval = 1
    st = await booted(csms, make_station, ocpp={"HeartbeatInterval": "300"})
    assert await get_key(csms, "HeartbeatInterval") == "1"
    n = len(csms.received)
    await eventually(lambda: sum(r.action == "Heartbeat" for r in csms.received[n:]) >= 2, 10, "two Heartbeats")
    assert st.station.adapter.heartbeat_interval == 1
    assert csms.violations == []


# ---- metering -------------------------------------------------------------------------------------------------
def clock_values(csms: Csms, after: int = 0, tx: bool | None = None) -> list[dict]:
    out = []
    for r in csms.received[after:]:
        if r.action != "MeterValues":
            continue
        if tx is not None and ("transactionId" in r.payload) != tx:
            continue
        out.append(r.payload)
    return out


async def test_clock_aligned_meter_values_carry_the_configured_measurands(csms, make_station):
    """1.6 §9.1.5/§9.1.15: every ClockAlignedDataInterval (1 s) a MeterValues with context Sample.Clock and
    exactly the MeterValuesAlignedData measurands; outside a transaction without transactionId, during one
    with it."""
    measurands = {"Energy.Active.Import.Register", "Voltage"}
    st = await booted(csms, make_station, ocpp={"ClockAlignedDataInterval": "1",
                                               "MeterValuesAlignedData": ",".join(sorted(measurands))})
    await eventually(lambda: len(clock_values(csms, tx=False)) >= 2, 10, "two clock-aligned MeterValues")
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await csms.wait_for("StartTransaction")
    await eventually(lambda: len(clock_values(csms, tx=True)) >= 1, 10, "a clock-aligned MeterValues in the tx")
    tx_id = next(iter(csms.transactions))
    for p in clock_values(csms):
        assert p["connectorId"] == 1
        assert p.get("transactionId", tx_id) == tx_id
        for mv in p["meterValue"]:
            assert {sv["measurand"] for sv in mv["sampledValue"]} == measurands, mv
            assert {sv["context"] for sv in mv["sampledValue"]} == {"Sample.Clock"}
    assert csms.violations == []


async def test_clock_aligned_meter_values_are_timestamped_on_the_interval_boundary(csms, make_station):
    """1.6 §9.1.5: clock-aligned intervals are evenly spaced from midnight and the data of an interval is
    identified by an interval boundary (the spec says its start time), not by the moment the timer happened to
    fire. The event loop is kept busy across one boundary (a loaded station) so that moment is clearly later."""
    st = await booted(csms, make_station, ocpp={"ClockAlignedDataInterval": "1",
                                               "MeterValuesAlignedData": "Energy.Active.Import.Register"})
    await eventually(lambda: len(clock_values(csms)) >= 1, 10, "a clock-aligned MeterValues")
    now = st.station.clock.now()
    await asyncio.sleep(max(0.0, math.ceil(now) - now - 0.05))
    time.sleep(0.1)                    # blocks the loop across the next whole second
    n = len(clock_values(csms))
    await eventually(lambda: len(clock_values(csms)) >= n + 2, 10, "two more clock-aligned MeterValues")
    for p in clock_values(csms):
        for mv in p["meterValue"]:
            ts = datetime.fromisoformat(mv["timestamp"].replace("Z", "+00:00"))
            assert ts.microsecond == 0, f"{mv['timestamp']} is not on a 1 s interval boundary"


async def test_sampled_meter_values_carry_the_configured_measurands_during_a_transaction(csms, make_station):
    """1.6 §9.1.17/§9.1.19: during a transaction every MeterValueSampleInterval (1 s) a MeterValues with the
    transactionId, context Sample.Periodic and exactly the MeterValuesSampledData measurands (with their units);
    a ChangeConfiguration of MeterValuesSampledData applies to the following samples."""
    measurands = {"Energy.Active.Import.Register", "Power.Active.Import", "SoC"}
    st = await booted(csms, make_station, ocpp={"MeterValueSampleInterval": "1",
                                               "MeterValuesSampledData": ",".join(sorted(measurands))})
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await csms.wait_for("StartTransaction")
    await eventually(lambda: len(clock_values(csms, tx=True)) >= 2, 10, "two sampled MeterValues")
    tx_id = next(iter(csms.transactions))
    units = {"Energy.Active.Import.Register": "Wh", "Power.Active.Import": "W", "SoC": "Percent"}
    for p in clock_values(csms, tx=True):
        assert p["transactionId"] == tx_id and p["connectorId"] == 1
        for mv in p["meterValue"]:
            assert {sv["measurand"] for sv in mv["sampledValue"]} == measurands, mv
            for sv in mv["sampledValue"]:
                assert sv["context"] == "Sample.Periodic"
                assert sv.get("unit") == units[sv["measurand"]]
    assert (await csms.call("CP1", "ChangeConfiguration", {"key": "MeterValuesSampledData",
                                                           "value": "Voltage"})) == {"status": "Accepted"}
    n = len(csms.received)
    await eventually(lambda: any({sv["measurand"] for mv in p["meterValue"] for sv in mv["sampledValue"]}
                                 == {"Voltage"} for p in clock_values(csms, n, tx=True)), 10,
                     "a sample with the new measurand list")
    assert csms.violations == []


async def test_unsupported_measurand_in_change_configuration_is_rejected(csms, make_station):
    """1.6 §5.3/§9.1.17: a measurand list the station cannot sample (RPM, Frequency, not a measurand at all) is
    Rejected and leaves the value unchanged; a supported one is Accepted."""
    await booted(csms, make_station, ocpp={"MeterValuesSampledData": "Energy.Active.Import.Register"})
    for key in ("MeterValuesSampledData", "MeterValuesAlignedData"):
        before = await get_key(csms, key)
        for value in ("RPM", "Energy.Active.Import.Register,Frequency", "NotAMeasurand"):
            res = await csms.call("CP1", "ChangeConfiguration", {"key": key, "value": value})
            assert res == {"status": "Rejected"}, (key, value)
        assert await get_key(csms, key) == before
        assert (await csms.call("CP1", "ChangeConfiguration", {"key": key, "value": "Voltage"})) == \
            {"status": "Accepted"}
        assert await get_key(csms, key) == "Voltage"
    assert csms.violations == []
