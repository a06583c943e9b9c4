"""OCPP 2.0.1 Part 6 test cases of blocks B (Provisioning) and E (Transactions) that were partial or missing in
conformance/ocpp201-tc-A-D.md and conformance/ocpp201-tc-E-P.md: a real station (engine + 2.0.1 adapter + SQLite +
websockets) against the strict embedded CSMS. Each test is named after its TC_*_CS id and cites the Part 2 (or
Part 4) requirements it checks; every test ends with ``csms.violations == []``."""
from __future__ import annotations

import logging
import re

from helpers import eventually
from test_v201_core import (HEX_TAG, ID, assert_complete, barrier, booted, ended, get_var, go_offline, go_online,
                            set_var, started, tx_events)
from test_v201_network import profile, set_profile

TOKEN = {"idToken": HEX_TAG, "type": "ISO14443"}


def statuses(csms, after: int = 0) -> dict[int, str]:
    """The latest connectorStatus per EVSE reported since ``after``."""
    return {r.payload["evseId"]: r.payload["connectorStatus"] for r in csms.received[after:]
            if r.action == "StatusNotification"}


# ---- B Provisioning ------------------------------------------------------------------------------------------
async def test_tc_b_03_cs_rejected_boot_is_retried_after_the_interval_then_accepted(csms, make_station):
    """TC_B_03_CS (B03.FR.02/04/06): Rejected with an interval: nothing but the next BootNotification, which comes
    no earlier than the interval (station clock); Accepted then brings the status of every connector (B01.FR.05)."""
    csms.boot_status, csms.boot_interval = "Rejected", 1
    st = await make_station(csms, protocols=["ocpp2.0.1"], connectors=2)
    first = await csms.wait_for("BootNotification")
    adapter = st.station.adapter
    await eventually(lambda: adapter.registration == "rejected", 5, "the Rejected answer")
    assert adapter.next_boot_at - adapter.last_sent_at >= 1          # B03.FR.04: not before the interval
    st.hw.ev_plug(2)                                                  # a change while Rejected: nothing sent
    csms.boot_status, csms.boot_interval = "Accepted", 300
    second = await csms.wait_for("BootNotification", after=1, timeout=5)
    assert [r.action for r in csms.received[:csms.received.index(second) + 1]] == \
        ["BootNotification", "BootNotification"]                      # B03.FR.02
    assert second.payload == first.payload
    n = csms.received.index(second)
    for evse in (1, 2):
        await csms.wait_for("StatusNotification", lambda p, e=evse: p["evseId"] == e, after=n)
    assert statuses(csms, n) == {1: "Available", 2: "Occupied"}
    assert adapter.heartbeat_interval == 300
    assert csms.violations == []


async def test_tc_b_23_cs_station_reset_keeps_an_unavailable_connector_unavailable(csms, make_station):
    """TC_B_23_CS (B11.FR.01-04, B01.FR.03): Reset OnIdle without a transaction is Accepted, the station reboots
    (BootNotification RemoteReset) and reports the connector the CSMS made Inoperative as Unavailable, the other one
    as Available."""
    st = await booted(csms, make_station, connectors=2)
    res = await csms.call(ID, "ChangeAvailability", {"operationalStatus": "Inoperative",
                                                     "evse": {"id": 1, "connectorId": 1}})
    assert res == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1 and p["connectorStatus"] == "Unavailable")
    n = len(csms.received)
    assert await csms.call(ID, "Reset", {"type": "OnIdle"}) == {"status": "Accepted"}
    boot = await csms.wait_for("BootNotification", after=n)
    assert boot.payload["reason"] == "RemoteReset"
    m = csms.received.index(boot)
    for evse in (1, 2):
        await csms.wait_for("StatusNotification", lambda p, e=evse: p["evseId"] == e, after=m)
    assert statuses(csms, m) == {1: "Unavailable", 2: "Available"}
    assert st.station.boots == 1 and st.hw.resets == [False]
    assert await get_var(csms, "Connector", "AvailabilityState", evse={"id": 1, "connectorId": 1}) == "Unavailable"
    assert csms.violations == []


async def test_tc_b_25_cs_evse_reset_without_transaction(csms, make_station):
    """TC_B_25_CS (B11.FR.01/08/10): Reset OnIdle of one EVSE without a transaction is Accepted and resets only that
    EVSE: no reboot of the station, no BootNotification, and both EVSEs can charge afterwards. An EVSE that does not
    exist is Rejected."""
    st = await booted(csms, make_station, connectors=2)
    n = len(csms.received)
    assert await csms.call(ID, "Reset", {"type": "OnIdle", "evseId": 1}) == {"status": "Accepted"}
    assert await csms.call(ID, "Reset", {"type": "OnIdle", "evseId": 3}) == {"status": "Rejected"}
    await barrier(csms)
    assert "BootNotification" not in [r.action for r in csms.received[n:]]
    assert st.station.boots == 0 and st.hw.resets == []
    for evse in (1, 2):
        st.hw.ev_plug(evse)
        st.hw.present_tag(f"TAG{evse}", evse)
        await started(csms, after=n, evse={"id": evse, "connectorId": 1})
    assert csms.violations == []


async def test_tc_b_57_cs_reconnect_back_off_from_the_retry_variables(csms, make_station, caplog):
    """TC_B_57_CS (Part 4 §5.3; OCPPCommCtrlr.RetryBackOffRepeatTimes 2, RetryBackOffRandomRange 0,
    RetryBackOffWaitMinimum W): after each connection loss the station waits W; when that reconnect is refused it
    waits 2 W. The waits are the ones the transport computed and logged (no wall-clock assertion)."""
    caplog.set_level(logging.INFO, logger="secure_cp.transport")
    st = await booted(csms, make_station)
    for name, value in (("RetryBackOffRepeatTimes", "2"), ("RetryBackOffRandomRange", "0"),
                        ("RetryBackOffWaitMinimum", "1")):
        assert await set_var(csms, "OCPPCommCtrlr", name, value) == "Accepted", name
    await barrier(csms)
    transport = st.station.transport
    assert [transport.backoff_delay(a) for a in range(4)] == [1.0, 2.0, 4.0, 4.0]   # doubled RepeatTimes times

    def waits() -> list[str]:
        return re.findall(r"(?:reconnecting|retrying) in ([0-9.]+) s", caplog.text)

    await csms.disconnect(ID)                                  # step 1
    await csms.wait_connected(ID)                              # steps 2-3
    assert waits() == ["1.0"]
    await csms.stop()                                          # step 4, and the next attempt is refused (step 6)
    await eventually(lambda: len(waits()) == 3, 10, "the refused reconnect")
    await csms.start()
    await csms.wait_connected(ID)                              # steps 7-8
    assert waits() == ["1.0", "1.0", "2.0"]
    assert csms.violations == []


async def test_b09_message_timeout_of_the_profile_is_the_call_timeout_of_its_connection(csms, make_station):
    """B09 / NetworkConnectionProfileType.messageTimeout (B09.FR.01, B10.FR.04): after the station moved to the
    profile of slot 2 (messageTimeout 7), a CALL of the station times out after 7 s and
    OCPPCommCtrlr.MessageTimeout[Default] reports 7; before, the [csms] call_timeout (2 s) applied."""
    st = await booted(csms, make_station)
    assert st.station.adapter.endpoint.call_timeout == 2.0
    res = await csms.call(ID, "GetVariables", {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "MessageTimeout", "instance": "Default"}}]})
    assert res["getVariableResult"][0]["attributeValue"] == "2"
    assert (await set_profile(csms, 2, profile(csms.url, messageTimeout=7)))["status"] == "Accepted"
    assert await set_var(csms, "OCPPCommCtrlr", "NetworkConfigurationPriority", "2,1") == "RebootRequired"
    n = len(csms.received)
    assert await csms.call(ID, "Reset", {"type": "OnIdle"}) == {"status": "Accepted"}
    await csms.wait_for("BootNotification", after=n)
    await csms.wait_for("StatusNotification", after=n)
    assert st.station.network.active_slot == 2
    assert st.station.adapter.endpoint.call_timeout == 7.0
    res = await csms.call(ID, "GetVariables", {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "MessageTimeout", "instance": "Default"}}]})
    assert res["getVariableResult"][0]["attributeValue"] == "7"
    assert csms.violations == []


# ---- E Transactions ------------------------------------------------------------------------------------------
async def cached(csms, st, tag: str) -> None:
    """Present ``tag`` with no cable: the CSMS authorizes it, the station caches the answer; presented again, the
    pending authorization is cancelled."""
    n = len(csms.received)
    st.hw.present_tag(tag)
    await csms.wait_for("Authorize", lambda p: p["idToken"]["idToken"] == tag, after=n)
    await eventually(lambda: tag in st.station.cache, 5, f"{tag} cached")
    st.hw.present_tag(tag)
    await barrier(csms)


async def test_tc_e_16_cs_offline_start_deauthorized_by_invalid(csms, make_station):
    """TC_E_16_CS (E06.FR.04/15, C15.FR.04; StopTxOnInvalidId true, TxStopPoint Authorized): a transaction started
    offline with a cached idToken is sent after the reconnect with offline true; the CSMS answers the event with the
    idToken with idTokenInfo Invalid; the station then ends it: Ended Deauthorized / DeAuthorized."""
    csms.authorize[HEX_TAG] = {"status": "Accepted"}
    st = await booted(csms, make_station)
    await cached(csms, st, HEX_TAG)
    await go_offline(csms, st)
    st.hw.ev_plug(1)
    st.hw.present_tag(HEX_TAG)
    assert st.station.engine.connectors[1].tx_key is not None          # authorized from the cache
    csms.authorize[HEX_TAG] = {"status": "Invalid"}
    n = len(csms.received)
    await go_online(csms, st)
    start = await started(csms, after=n)
    assert start["offline"] is True and start["idToken"] == TOKEN
    tx_id = start["transactionInfo"]["transactionId"]
    end = await ended(csms, tx_id, after=n)
    assert end["triggerReason"] == "Deauthorized"
    assert end["transactionInfo"]["stoppedReason"] == "DeAuthorized"
    assert not st.hw.connectors[1].permitted
    assert_complete(csms, tx_id)
    assert csms.violations == []


async def test_tc_e_26_cs_ev_side_disconnect_suspends_cable_back_reports_evconnected(csms, make_station):
    """TC_E_26_CS (E10.FR.01/03; TxStopPoint Authorized, StopTxOnEVSideDisconnect false, UnlockOnEVSideDisconnect
    false): unplugging at the EV side keeps the transaction (Updated EVCommunicationLost, chargingState Idle) and the
    cable lock; plugging back in: Updated CablePluggedIn with chargingState EVConnected (step 5), then Updated
    ChargingStateChanged with chargingState Charging (step 7)."""
    csms.authorize[HEX_TAG] = {"status": "Accepted"}
    st = await booted(csms, make_station)
    for component, variable, value in (("TxCtrlr", "TxStopPoint", "Authorized"),
                                       ("TxCtrlr", "StopTxOnEVSideDisconnect", "false"),
                                       ("OCPPCommCtrlr", "UnlockOnEVSideDisconnect", "false")):
        assert await set_var(csms, component, variable, value) == "Accepted", variable
    n = len(csms.received)
    st.hw.ev_plug(1)
    st.hw.present_tag(HEX_TAG)
    tx_id = (await started(csms, after=n))["transactionInfo"]["transactionId"]
    n = len(csms.received)
    st.hw.ev_plug(1, False)
    lost = await csms.wait_for("TransactionEvent", lambda p: p["triggerReason"] == "EVCommunicationLost", after=n)
    assert lost.payload["eventType"] == "Updated"
    assert lost.payload["transactionInfo"]["chargingState"] == "Idle"
    assert st.hw.connectors[1].locked                                  # E10.FR.01
    n = len(csms.received)
    st.hw.ev_plug(1)
    await csms.wait_for("TransactionEvent", lambda p: p["triggerReason"] == "ChargingStateChanged", after=n)
    events = [p for p in tx_events(csms, n) if p["transactionInfo"]["transactionId"] == tx_id]
    assert [(p["eventType"], p["triggerReason"], p["transactionInfo"].get("chargingState")) for p in events] == \
        [("Updated", "CablePluggedIn", "EVConnected"), ("Updated", "ChargingStateChanged", "Charging")]
    n = len(csms.received)
    st.hw.present_tag(HEX_TAG)
    await ended(csms, tx_id, after=n)
    assert_complete(csms, tx_id)
    assert csms.violations == []


async def test_tc_e_45_cs_offline_stop_by_another_idtoken_of_the_same_group(csms, make_station):
    """TC_E_45_CS (E08.FR.02/04-08, C09.FR.03/04): a transaction started with an idToken of group G; the connection
    is lost; a second idToken of group G, known from the authorization cache, ends it while offline (no Authorize);
    after the reconnect every queued TransactionEvent says offline true, one of them the Ended (StopAuthorized,
    Local); seqNos without a gap."""
    group = {"idToken": "GROUP1", "type": "Central"}
    csms.authorize[HEX_TAG] = {"status": "Accepted", "groupIdToken": group}
    csms.authorize["B2C3D4E5"] = {"status": "Accepted", "groupIdToken": group}
    st = await booted(csms, make_station)
    await cached(csms, st, "B2C3D4E5")
    n = len(csms.received)
    st.hw.ev_plug(1)
    st.hw.present_tag(HEX_TAG)
    tx_id = (await started(csms, after=n))["transactionInfo"]["transactionId"]
    await barrier(csms)
    await go_offline(csms, st)
    st.hw.present_tag("B2C3D4E5")
    assert not st.station.engine.connectors[1].tx_authorized or st.station.engine.connectors[1].tx_key is None
    st.hw.ev_plug(1, False)
    assert st.station.engine.connectors[1].tx_key is None
    n = len(csms.received)
    await go_online(csms, st)
    end = await ended(csms, tx_id, after=n)
    assert end["triggerReason"] == "StopAuthorized"
    assert end["transactionInfo"]["stoppedReason"] == "Local"
    queued = [p for p in tx_events(csms, n) if p["transactionInfo"]["transactionId"] == tx_id]
    assert queued and all(p.get("offline") is True for p in queued)
    assert "Authorize" not in [r.action for r in csms.received[n:]]
    assert_complete(csms, tx_id)
    assert csms.violations == []
