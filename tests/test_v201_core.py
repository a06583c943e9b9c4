"""OCPP 2.0.1 end to end: a real station (engine + 2.0.1 adapter + SQLite + websockets) against the strict CSMS.

Test names carry the OCA test case (OCPP 2.0.1 edition 3 Part 6, ``TC_*_CS``) or the Part 2 requirement they
cover. The CSMS (secure_cp.sim.csms, built on the ``ocpp`` package) validates every frame against the official
schemas and keeps a TransactionEvent ledger that finds repeated or missing seqNos; ``csms.violations`` must stay
empty in every test.
"""
from __future__ import annotations

import asyncio

import pytest

from helpers import eventually, go_offline, go_online
from secure_cp.engine import TxStarted, TxStopped
from secure_cp.sim.csms import ECHO_VENDOR_ID, CallErrorReceived, Csms

ID = "CP1"
HEX_TAG = "A1B2C3D4"          # an RFID card UID: IdTokenType ISO14443


# ---- helpers ------------------------------------------------------------------------------------------------
async def booted(csms: Csms, make_station, *, connectors: int = 1, **kw):
    """A 2.0.1 station that has booted and reported the status of each connector."""
    n = len(csms.received)           # a restarted station: only what this start sends counts
    st = await make_station(csms, protocols=["ocpp2.0.1"], connectors=connectors, **kw)
    await csms.wait_for("BootNotification", identity=st.cfg.identity, after=n)
    for cid in range(1, connectors + 1):
        await csms.wait_for("StatusNotification", lambda p, c=cid: p["evseId"] == c, identity=st.cfg.identity,
                            after=n)
    return st


async def barrier(csms: Csms, ident: str = ID) -> None:
    """One CSMS->station round trip: every CALL the station made because of earlier input has been answered."""
    await csms.call(ident, "GetVariables", {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}, timeout=5)


async def get_var(csms: Csms, component: str, variable: str, instance: str | None = None, evse: dict | None = None
                  ) -> str:
    comp: dict = {"name": component, **({"evse": evse} if evse else {})}
    var: dict = {"name": variable, **({"instance": instance} if instance else {})}
    res = await csms.call(ID, "GetVariables", {"getVariableData": [{"component": comp, "variable": var}]})
    result = res["getVariableResult"][0]
    assert result["attributeStatus"] == "Accepted", result
    return result["attributeValue"]


async def set_var(csms: Csms, component: str, variable: str, value: str, instance: str | None = None) -> str:
    var: dict = {"name": variable, **({"instance": instance} if instance else {})}
    res = await csms.call(ID, "SetVariables", {"setVariableData": [
        {"component": {"name": component}, "variable": var, "attributeValue": value}]})
    return res["setVariableResult"][0]["attributeStatus"]


def tx_events(csms: Csms, after: int = 0) -> list[dict]:
    return [r.payload for r in csms.received[after:] if r.action == "TransactionEvent"]


async def started(csms: Csms, after: int = 0, **match) -> dict:
    rec = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started"
                              and all(p.get(k) == v for k, v in match.items()), after=after)
    return rec.payload


async def updated(csms: Csms, tx_id: str, trigger: str, after: int = 0, state: str | None = None) -> dict:
    """The Updated TransactionEvent of ``tx_id`` with ``trigger`` as triggerReason (after record ``after``); with
    ``state``, its chargingState must be that."""
    rec = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Updated"
                              and p["triggerReason"] == trigger
                              and p["transactionInfo"]["transactionId"] == tx_id, after=after)
    if state is not None:
        assert rec.payload["transactionInfo"].get("chargingState") == state, rec.payload
    return rec.payload


async def ended(csms: Csms, tx_id: str, after: int = 0) -> dict:
    rec = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended"
                              and p["transactionInfo"]["transactionId"] == tx_id, after=after)
    return rec.payload


def assert_complete(csms: Csms, tx_id: str) -> list[int]:
    """Part 2 E §1.3.2: Started .. Ended with every seqNo in between, each once."""
    tx = csms.transactions201[tx_id]
    assert tx.started is not None and tx.ended, [e["eventType"] for e in tx.events]
    assert csms.seq_gaps(tx_id) == []
    return tx.seq_nos


async def plug_and_start(csms: Csms, st, tag: str = "TAG1") -> str:
    """Plug in on connector 1 and present ``tag``: the transactionId of the Started that follows."""
    st.hw.ev_plug(1)
    st.hw.present_tag(tag)
    return (await started(csms))["transactionInfo"]["transactionId"]


async def stop_with_tag(csms: Csms, st, tx_id: str, tag: str = HEX_TAG) -> dict:
    """Present ``tag`` again: the transaction ends, its events complete (E §1.3.2); the Ended payload."""
    st.hw.present_tag(tag)
    end = await ended(csms, tx_id)
    assert_complete(csms, tx_id)
    return end


# ---- B Provisioning -----------------------------------------------------------------------------------------
async def test_tc_b_01_cold_boot_accepted_reports_each_connector_and_heartbeat_interval(csms, make_station):
    """TC_B_01_CS, B01.FR.01/04/05/09: BootNotification with reason and chargingStation, then a StatusNotification
    per connector (evseId + connectorId, none for the station as a whole: G01); the interval of the response
    becomes OCPPCommCtrlr.HeartbeatInterval; the station's state is ChargingStation.AvailabilityState."""
    csms.boot_interval = 123
    st = await booted(csms, make_station, connectors=2)
    boot = csms.received[0]
    assert boot.action == "BootNotification"
    assert boot.payload == {"reason": "PowerUp", "chargingStation": {
        "model": "test", "vendorName": "secure-cp", "serialNumber": "SN1", "firmwareVersion": "0.1"}}
    statuses = [r.payload for r in csms.received if r.action == "StatusNotification"]
    assert {(p["evseId"], p["connectorId"], p["connectorStatus"]) for p in statuses} == \
        {(1, 1, "Available"), (2, 1, "Available")}
    assert await get_var(csms, "OCPPCommCtrlr", "HeartbeatInterval") == "123"
    assert st.station.adapter.heartbeat_interval == 123
    assert await get_var(csms, "ChargingStation", "AvailabilityState") == "Available"
    assert await get_var(csms, "EVSE", "AvailabilityState", evse={"id": 2}) == "Available"
    # TxStartPoint/TxStopPoint report what the engine does (Part 2 E §1.1.2, OCPP 1.6 compatible)
    assert await get_var(csms, "TxCtrlr", "TxStartPoint") == "PowerPathClosed"
    assert await get_var(csms, "TxCtrlr", "TxStopPoint") == "EVConnected,Authorized"
    assert csms.violations == []


async def test_tc_b_02_pending_allows_configuration_rejects_remote_start_trigger_boot(csms, make_station):
    """TC_B_02_CS, B02.FR.01/02/05, F06: while Pending the station sends nothing but BootNotification, answers
    GetVariables/SetVariables, rejects RequestStartTransaction, and a TriggerMessage(BootNotification) makes it
    boot again at once with reason Triggered; Accepted then brings the statuses (B01.FR.05)."""
    csms.boot_status = "Pending"
    st = await make_station(csms, protocols=["ocpp2.0.1"])
    await csms.wait_for("BootNotification")
    assert await set_var(csms, "OCPPCommCtrlr", "HeartbeatInterval", "77") == "Accepted"
    assert await get_var(csms, "OCPPCommCtrlr", "HeartbeatInterval") == "77"
    res = await csms.call(ID, "RequestStartTransaction", {"idToken": {"idToken": "TAG1", "type": "Central"},
                                                          "remoteStartId": 1})
    assert res["status"] == "Rejected"
    st.hw.ev_plug(1)
    await barrier(csms)
    assert [r.action for r in csms.received] == ["BootNotification"]   # B02.FR.02
    # B02.FR.01/02: a report asked for while Pending is sent while Pending
    assert await csms.call(ID, "GetBaseReport", {"requestId": 3, "reportBase": "ConfigurationInventory"}) == \
        {"status": "Accepted"}
    assert any(d["variable"]["name"] == "HeartbeatInterval" for d in await csms.wait_report(ID, 3))
    assert {r.action for r in csms.received} == {"BootNotification", "NotifyReport"}
    csms.boot_status = "Accepted"
    assert (await csms.call(ID, "TriggerMessage", {"requestedMessage": "BootNotification"}))["status"] == "Accepted"
    boot = await csms.wait_for("BootNotification", after=1)
    assert boot.payload["reason"] == "Triggered"
    status = await csms.wait_for("StatusNotification")
    assert status.payload["connectorStatus"] == "Occupied"   # plugged in while Pending
    assert (await csms.call(ID, "TriggerMessage", {"requestedMessage": "BootNotification"}))["status"] == \
        "Rejected"   # F06.FR.17: already Accepted
    assert csms.violations == []


async def test_tc_b_30_rejected_station_answers_security_error_and_sends_nothing(csms, make_station):
    """TC_B_30_CS, B03.FR.02/08: Rejected -> no message until the interval has passed, and every CSMS request is
    answered with CALLERROR SecurityError."""
    csms.boot_status = "Rejected"
    st = await make_station(csms, protocols=["ocpp2.0.1"])
    await csms.wait_for("BootNotification")
    with pytest.raises(CallErrorReceived) as e:
        await csms.call(ID, "GetVariables", {"getVariableData": [
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
    assert e.value.code == "SecurityError"
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await asyncio.sleep(0.2)
    assert [r.action for r in csms.received] == ["BootNotification"]
    assert csms.violations == []


async def test_tc_b_06_b_09_b_11_b_39_get_and_set_variables(csms, make_station):
    """TC_B_06/09/11/39_CS (B05, B06): values are read and written in the shared device model; a bad value and
    a ReadOnly variable are Rejected; TxStartPoint / TxStopPoint accept every valid member list (E01, E06)."""
    await booted(csms, make_station)
    assert await set_var(csms, "OCPPCommCtrlr", "HeartbeatInterval", "120") == "Accepted"
    assert await get_var(csms, "OCPPCommCtrlr", "HeartbeatInterval") == "120"
    assert await set_var(csms, "OCPPCommCtrlr", "HeartbeatInterval", "abc") == "Rejected"
    assert await set_var(csms, "ChargingStation", "Model", "other") == "Rejected"
    assert await set_var(csms, "TxCtrlr", "TxStartPoint", "EVConnected") == "Accepted"
    assert await set_var(csms, "TxCtrlr", "TxStopPoint", "EVConnected") == "Accepted"
    assert await set_var(csms, "TxCtrlr", "TxStopPoint", "DataSigned") == "Rejected"   # no stop point (§2.6.6.2)
    assert await set_var(csms, "TxCtrlr", "TxStopPoint", "Authorized,EVConnected") == "Accepted"
    assert await set_var(csms, "TxCtrlr", "TxStartPoint", "PowerPathClosed") == "Accepted"
    res = await csms.call(ID, "GetVariables", {"getVariableData": [
        {"component": {"name": "NoSuchThing"}, "variable": {"name": "X"}}]})
    assert res["getVariableResult"][0]["attributeStatus"] == "UnknownComponent"
    assert csms.violations == []


async def test_tc_b_13_b_14_get_base_report_full_and_summary_inventory(csms, make_station):
    """TC_B_13_CS / TC_B_14_CS (B07.FR.01/03/04/08/09/10): Accepted, then NotifyReport parts with the requestId,
    seqNo from 0, the last with tbc false."""
    await booted(csms, make_station)
    assert await csms.call(ID, "GetBaseReport", {"requestId": 7, "reportBase": "FullInventory"}) == \
        {"status": "Accepted"}
    data = await csms.wait_report(ID, 7)
    names = {(d["component"]["name"], d["variable"]["name"]) for d in data}
    assert {("OCPPCommCtrlr", "HeartbeatInterval"), ("TxCtrlr", "TxStartPoint"),
            ("ChargingStation", "AvailabilityState"), ("EVSE", "AvailabilityState")} <= names
    start_point = next(d for d in data if d["variable"]["name"] == "TxStartPoint")
    assert start_point["variableAttribute"][0]["value"] == "PowerPathClosed"
    assert start_point["variableCharacteristics"]["valuesList"] == \
        "ParkingBayOccupancy,EVConnected,Authorized,DataSigned,PowerPathClosed,EnergyTransfer"
    assert await csms.call(ID, "GetBaseReport", {"requestId": 8, "reportBase": "SummaryInventory"}) == \
        {"status": "Accepted"}
    summary = await csms.wait_report(ID, 8)
    assert ("ChargingStation", "AvailabilityState") in {(d["component"]["name"], d["variable"]["name"])
                                                        for d in summary}
    assert csms.violations == []


# ---- E Transactions ------------------------------------------------------------------------------------------
async def test_tc_e_03_e_06_full_session_plug_then_tag(csms, make_station):
    """TC_E_03_CS + TC_E_06_CS (E02, E06, E07, J02): cable first -> StatusNotification Occupied; RFID tag ->
    Authorize (ISO14443) -> TransactionEvent Started (Authorized, evse, idToken, Transaction.Begin reading);
    periodic Updated (MeterValuePeriodic); the same tag ends it: Ended (StopAuthorized, Local, Transaction.End);
    unplug -> Available. transactionId is the engine's tx_key; seqNo 0.. without gaps, nothing repeated."""
    csms.authorize[HEX_TAG] = {"status": "Accepted"}
    st = await booted(csms, make_station, ocpp={"MeterValueSampleInterval": "1",
                                               "StopTxnSampledData": "Energy.Active.Import.Register"})
    st.hw.ev_plug(1)
    occupied = await csms.wait_for("StatusNotification", lambda p: p["connectorStatus"] == "Occupied")
    st.hw.present_tag(HEX_TAG)
    auth = await csms.wait_for("Authorize")
    assert auth.payload == {"idToken": {"idToken": HEX_TAG, "type": "ISO14443"}}
    start = await started(csms)
    assert csms.received.index(occupied) < csms.received.index(auth)   # E02: plug-in reported first
    tx_id = start["transactionInfo"]["transactionId"]
    assert start["triggerReason"] == "Authorized" and start["seqNo"] == 0 and "offline" not in start
    assert start["evse"] == {"id": 1, "connectorId": 1}
    assert start["idToken"] == {"idToken": HEX_TAG, "type": "ISO14443"}
    assert start["transactionInfo"]["chargingState"] == "Charging"
    assert start["meterValue"][0]["sampledValue"][0]["context"] == "Transaction.Begin"
    rec = st.station.transactions.get(tx_id)
    assert rec is not None and rec.transaction_id == tx_id and len(tx_id) == 32
    upd = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Updated")
    assert upd.payload["triggerReason"] == "MeterValuePeriodic"
    assert upd.payload["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Periodic"
    st.hw.present_tag(HEX_TAG)
    end = await ended(csms, tx_id)
    assert end["triggerReason"] == "StopAuthorized"
    assert end["transactionInfo"]["stoppedReason"] == "Local"
    assert end["transactionInfo"]["chargingState"] == "EVConnected"
    assert end["idToken"] == {"idToken": HEX_TAG, "type": "ISO14443"}
    contexts = [sv["context"] for mv in end["meterValue"] for sv in mv["sampledValue"]]
    assert contexts[0] == "Transaction.Begin" and contexts[-1] == "Transaction.End"
    n = len(csms.received)
    st.hw.ev_plug(1, False)
    await csms.wait_for("StatusNotification", lambda p: p["connectorStatus"] == "Available", after=n)
    seq = assert_complete(csms, tx_id)
    assert seq == list(range(len(seq)))
    assert csms.violations == [] and csms.duplicates == []
    await eventually(lambda: st.station.outbox.pending_count() == 0, 5, "empty outbox")


async def test_tc_e_14_ev_disconnect_ends_transaction(csms, make_station):
    """TC_E_14_CS (E06.FR.02, E09): unplugging ends the transaction: Ended with EVCommunicationLost /
    EVDisconnected and chargingState Idle."""
    st = await booted(csms, make_station)
    tx_id = await plug_and_start(csms, st)
    st.hw.ev_plug(1, False)
    end = await ended(csms, tx_id)
    assert end["triggerReason"] == "EVCommunicationLost"
    assert end["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert end["transactionInfo"]["chargingState"] == "Idle"
    assert_complete(csms, tx_id)
    assert csms.violations == []


async def test_e02_fr_13_charging_state_changes_are_transaction_events(csms, make_station):
    """E02.FR.13 / E01.FR.19: the EV pausing and resuming during a transaction -> Updated with triggerReason
    ChargingStateChanged and chargingState SuspendedEV, then Charging; the connector stays Occupied, so no
    StatusNotification in between (2.0.1 reports connector use, not charging detail)."""
    st = await booted(csms, make_station)
    tx_id = await plug_and_start(csms, st)
    await barrier(csms)
    n = len(csms.received)
    st.hw.ev_ready(1, False)
    upd = await csms.wait_for("TransactionEvent", lambda p: p["triggerReason"] == "ChargingStateChanged", after=n)
    assert upd.payload["transactionInfo"]["chargingState"] == "SuspendedEV"
    st.hw.ev_ready(1, True)
    upd = await csms.wait_for("TransactionEvent", lambda p: p["transactionInfo"].get("chargingState") == "Charging",
                              after=n)
    assert upd.payload["triggerReason"] == "ChargingStateChanged"
    await barrier(csms)
    assert not any(r.action == "StatusNotification" for r in csms.received[n:])
    await stop_with_tag(csms, st, tx_id, "TAG1")
    assert csms.violations == []


async def test_tc_c_17_invalid_id_without_stop_suspends_energy(csms, make_station):
    """TC_C_17_CS / E05.FR.02: StopTxOnInvalidId false and the CSMS answers the (offline) Started with a status
    that is not Accepted: the transaction goes on without energy: Updated ChargingStateChanged SuspendedEVSE."""
    st = await booted(csms, make_station, ocpp={"AllowOfflineTxForUnknownId": "true",
                                               "StopTransactionOnInvalidId": "false"})
    await go_offline(csms, st)
    st.hw.ev_plug(1)
    st.hw.present_tag("NOBODY")
    n = len(csms.received)
    await go_online(csms, st)
    tx_id = (await started(csms, after=n))["transactionInfo"]["transactionId"]
    upd = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Updated", after=n)
    assert upd.payload["triggerReason"] == "ChargingStateChanged"
    assert upd.payload["transactionInfo"]["chargingState"] == "SuspendedEVSE"
    assert st.station.engine.connectors[1].tx_key == tx_id
    assert csms.violations == []


async def test_tc_e_40_e_43_offline_transaction_is_queued_with_offline_flag_and_deauthorized(csms, make_station):
    """TC_E_43_CS / TC_E_40_CS (E04.FR.01-03, E11, E12, E05.FR.10): a transaction of an unknown id started offline
    (OfflineTxForUnknownIdEnabled) is queued and sent after the reconnect with offline true; the CSMS answers the
    Started with idTokenInfo Unknown, so StopTxOnInvalidId ends it: Ended Deauthorized / DeAuthorized."""
    st = await booted(csms, make_station, ocpp={"AllowOfflineTxForUnknownId": "true"})
    await go_offline(csms, st)
    st.hw.ev_plug(1)
    st.hw.present_tag("NOBODY")
    assert st.station.engine.connectors[1].tx_key is not None
    queued = [i.payload for i in st.station.outbox.pending()]
    assert [p["eventType"] for p in queued] == ["Started"] and queued[0]["offline"] is True
    n = len(csms.received)
    await go_online(csms, st)
    start = await started(csms, after=n)
    assert start["offline"] is True and start["idToken"]["idToken"] == "NOBODY"
    tx_id = start["transactionInfo"]["transactionId"]
    end = await ended(csms, tx_id, after=n)
    assert end["triggerReason"] == "Deauthorized"
    assert end["transactionInfo"]["stoppedReason"] == "DeAuthorized"
    assert "offline" not in end
    assert_complete(csms, tx_id)
    assert csms.violations == [] and csms.duplicates == []


async def test_e11_fr_07_events_queued_when_the_connection_drops_are_marked_offline(csms, make_station):
    """E11.FR.07: a TransactionEvent still queued (never transmitted) when the station goes offline is sent with
    offline true. The one in flight when the line dropped is repeated exactly (E13: not a failed attempt); the CSMS
    recognises the repeat, and the ledger stays complete."""
    st = await booted(csms, make_station)
    st.hw.ev_plug(1)
    csms.drop_next("TransactionEvent")          # the Started is processed, its answer lost
    st.hw.present_tag("TAG1")
    await csms.wait_for("TransactionEvent")
    st.hw.present_tag("TAG1")                     # the Ended is queued behind it, never transmitted
    await eventually(lambda: st.station.outbox.pending_count() == 2, 5, "two queued events")
    await go_offline(csms, st)                    # well before the station's 2 s call timeout
    pending = st.station.outbox.pending()
    assert "offline" not in pending[0].payload and pending[1].payload["offline"] is True
    n = len(csms.received)
    await go_online(csms, st)
    end = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended", after=n)
    assert end.payload["offline"] is True
    assert_complete(csms, end.payload["transactionInfo"]["transactionId"])
    assert any("duplicate" in d for d in csms.duplicates), csms.duplicates
    assert st.station.outbox.failed() == []
    assert csms.violations == []


async def test_tc_e_51_retry_after_callerror_then_delivered(csms, make_station):
    """TC_E_51_CS (E13.FR.02/03): a TransactionEvent answered with a CALLERROR is sent again (same payload, new
    message id) and delivered within MessageAttempts[TransactionEvent]."""
    st = await booted(csms, make_station, ocpp={"TransactionMessageAttempts": "3",
                                               "TransactionMessageRetryInterval": "0"})
    csms.fail_next("TransactionEvent")
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await eventually(lambda: len(csms.transactions201) == 1, 5, "the Started on the ledger")
    sent = [r for r in csms.received if r.action == "TransactionEvent"]
    assert len(sent) == 2 and sent[0].payload == sent[1].payload and sent[0].unique_id != sent[1].unique_id
    assert st.station.outbox.failed() == []
    assert csms.violations == [] and csms.duplicates == []


async def test_tc_e_50_given_up_after_max_attempts_and_next_event_follows(csms, make_station):
    """TC_E_50_CS (E13.FR.04): after MessageAttempts[TransactionEvent] failures the message is discarded (kept in
    the store as failed) and the next transaction message is sent."""
    st = await booted(csms, make_station, ocpp={"TransactionMessageRetryInterval": "0"})
    assert await set_var(csms, "OCPPCommCtrlr", "MessageAttempts", "2", instance="TransactionEvent") == "Accepted"
    csms.fail_next("TransactionEvent", count=2)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await eventually(lambda: len(st.station.outbox.failed()) == 1, 5, "the Started given up")
    assert st.station.outbox.failed()[0].payload["eventType"] == "Started"
    st.hw.present_tag("TAG1")
    rec = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
    assert rec.payload["seqNo"] == 1
    assert len([r for r in csms.received if r.action == "TransactionEvent"]) == 3
    assert csms.violations == []


async def test_tc_e_28_to_e_34_get_transaction_status(csms, make_station):
    """TC_E_28..34_CS (E14.FR.01-08): ongoingIndicator and messagesInQueue for a transactionId, and
    messagesInQueue only without one."""
    st = await booted(csms, make_station, ocpp={"TransactionMessageRetryInterval": "60"})
    assert await csms.call(ID, "GetTransactionStatus", {"transactionId": "unknown"}) == \
        {"ongoingIndicator": False, "messagesInQueue": False}
    assert await csms.call(ID, "GetTransactionStatus", {}) == {"messagesInQueue": False}
    tx_id = await plug_and_start(csms, st)
    await barrier(csms)
    assert await csms.call(ID, "GetTransactionStatus", {"transactionId": tx_id}) == \
        {"ongoingIndicator": True, "messagesInQueue": False}
    csms.fail_next("TransactionEvent")     # the Ended waits 60 s for its retry
    st.hw.present_tag("TAG1")
    await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
    await barrier(csms)
    assert await csms.call(ID, "GetTransactionStatus", {"transactionId": tx_id}) == \
        {"ongoingIndicator": False, "messagesInQueue": True}
    assert await csms.call(ID, "GetTransactionStatus", {}) == {"messagesInQueue": True}
    assert csms.violations == []


async def test_boot_time_reemission_ends_interrupted_transaction_once(csms, make_station):
    """Power cut / restart during a transaction (E §1.3, B01): the next boot ends it (Ended with stoppedReason
    Reboot, queued before the connection so offline true) and never repeats its Started: seqNos stay unique."""
    st = await booted(csms, make_station)
    tx_id = await plug_and_start(csms, st)
    await barrier(csms)
    await st.stop()
    n = len(csms.received)
    st2 = await make_station(csms, protocols=["ocpp2.0.1"], data_dir=st.cfg.data_dir)
    end = await ended(csms, tx_id, after=n)
    assert end["transactionInfo"]["stoppedReason"] == "Reboot" and end["offline"] is True
    assert end["triggerReason"] == "AbnormalCondition"
    boot = next(r for r in csms.received[n:] if r.action == "BootNotification")
    assert boot.payload["reason"] == "PowerUp"
    # the engine announcing the same transaction again (as it does at boot) queues nothing: q_start / q_stop
    station = st2.station
    await eventually(lambda: station.outbox.pending_count() == 0, 5, "empty outbox")
    station.engine.effects += [TxStarted(tx_id), TxStopped(tx_id)]
    station._event(station.adapter.poll, station.clock.now())
    assert station.outbox.pending_count() == 0
    await barrier(csms)
    assert [e["eventType"] for e in csms.transactions201[tx_id].events] == ["Started", "Ended"]
    assert_complete(csms, tx_id)
    assert csms.violations == [] and csms.duplicates == []


# ---- F Remote control ----------------------------------------------------------------------------------------
async def test_tc_f_02_f_08_f_09_remote_start_first_and_remote_stop(csms, make_station):
    """TC_F_02_CS (F02, AuthorizeRemoteStart true): Accepted, Authorize with the given idToken type, plug-in ->
    Started with triggerReason RemoteStart and the remoteStartId (F02.FR.01/21); TC_F_09_CS: an unknown
    transactionId is Rejected; TC_F_08_CS (F03.FR.03/07): Ended RemoteStop / Remote."""
    st = await booted(csms, make_station, ocpp={"AuthorizeRemoteTxRequests": "true"})
    res = await csms.call(ID, "RequestStartTransaction", {
        "idToken": {"idToken": "TAG2", "type": "KeyCode"}, "remoteStartId": 42, "evseId": 1})
    assert res == {"status": "Accepted"}
    auth = await csms.wait_for("Authorize")
    assert auth.payload["idToken"] == {"idToken": "TAG2", "type": "KeyCode"}
    st.hw.ev_plug(1)
    start = await started(csms)
    assert start["triggerReason"] == "RemoteStart" and start["transactionInfo"]["remoteStartId"] == 42
    assert start["idToken"] == {"idToken": "TAG2", "type": "KeyCode"}
    tx_id = start["transactionInfo"]["transactionId"]
    assert await csms.call(ID, "RequestStopTransaction", {"transactionId": "nope"}) == {"status": "Rejected"}
    assert await csms.call(ID, "RequestStopTransaction", {"transactionId": tx_id}) == {"status": "Accepted"}
    end = await ended(csms, tx_id)
    assert end["triggerReason"] == "RemoteStop" and end["transactionInfo"]["stoppedReason"] == "Remote"
    assert await csms.call(ID, "RequestStopTransaction", {"transactionId": tx_id}) == {"status": "Rejected"}
    assert_complete(csms, tx_id)
    assert csms.violations == []


async def test_tc_f_01_f_03_remote_start_cable_first_without_authorize(csms, make_station):
    """TC_F_01_CS / TC_F_03_CS (F01.FR.02, AuthorizeRemoteStart false): no Authorize; the transaction starts at
    once on the plugged connector; a second request for the busy EVSE is Rejected (F01.FR.24)."""
    st = await booted(csms, make_station, ocpp={"AuthorizeRemoteTxRequests": "false"})
    st.hw.ev_plug(1)
    res = await csms.call(ID, "RequestStartTransaction", {
        "idToken": {"idToken": "TAG5", "type": "Central"}, "remoteStartId": 7})
    assert res == {"status": "Accepted"}
    start = await started(csms)
    assert start["triggerReason"] == "RemoteStart" and start["transactionInfo"]["remoteStartId"] == 7
    assert not any(r.action == "Authorize" for r in csms.received)
    res = await csms.call(ID, "RequestStartTransaction", {
        "idToken": {"idToken": "TAG6", "type": "Central"}, "remoteStartId": 8, "evseId": 1})
    assert res == {"status": "Rejected"}
    res = await csms.call(ID, "RequestStartTransaction", {
        "idToken": {"idToken": "TAG6", "type": "Central"}, "remoteStartId": 9, "evseId": 5})
    assert res == {"status": "Rejected"}
    assert csms.violations == []


async def test_e01_fr_14_remote_start_on_an_evse_with_a_transaction_is_rejected(csms, make_station):
    """E01.FR.14 / F01.FR.24 with an EVSE of two connectors ([[evse]] connectors = 2): one transaction per EVSE;
    statuses carry the connector's number on its EVSE."""
    st = await make_station(csms, protocols=["ocpp2.0.1"], connectors=2, evses=[2])
    for k in (1, 2):
        await csms.wait_for("StatusNotification", lambda p, k=k: (p["evseId"], p["connectorId"]) == (1, k))
    st.hw.ev_plug(2)
    await csms.wait_for("StatusNotification", lambda p: p["connectorStatus"] == "Occupied" and p["connectorId"] == 2)
    res = await csms.call(ID, "RequestStartTransaction", {
        "idToken": {"idToken": "TAG1", "type": "Central"}, "remoteStartId": 1, "evseId": 1})
    assert res == {"status": "Accepted"}
    start = await started(csms)
    assert start["evse"] == {"id": 1, "connectorId": 2}   # the plugged connector of the EVSE
    res = await csms.call(ID, "RequestStartTransaction", {
        "idToken": {"idToken": "TAG2", "type": "Central"}, "remoteStartId": 2, "evseId": 1})
    assert res == {"status": "Rejected"}
    assert csms.violations == []


async def test_tc_f_05_f_06_f_10_unlock_connector(csms, make_station):
    """TC_F_05_CS (F05.FR.02): an authorized transaction is neither unlocked nor stopped; TC_F_06_CS: Unlocked
    without a transaction; TC_F_10_CS (F05.FR.03): UnknownConnector."""
    st = await booted(csms, make_station)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG3")
    await started(csms)
    res = await csms.call(ID, "UnlockConnector", {"evseId": 1, "connectorId": 1})
    assert res == {"status": "OngoingAuthorizedTransaction"}
    await barrier(csms)
    assert not any(p["eventType"] == "Ended" for p in tx_events(csms))
    assert st.station.engine.connectors[1].tx_key is not None
    st.hw.present_tag("TAG3")
    await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
    assert await csms.call(ID, "UnlockConnector", {"evseId": 1, "connectorId": 1}) == {"status": "Unlocked"}
    assert await csms.call(ID, "UnlockConnector", {"evseId": 1, "connectorId": 2}) == \
        {"status": "UnknownConnector"}
    assert await csms.call(ID, "UnlockConnector", {"evseId": 9, "connectorId": 1}) == \
        {"status": "UnknownConnector"}
    assert csms.violations == []


async def test_tc_f_trigger_message(csms, make_station):
    """F06: TC_F_20_CS Heartbeat, TC_F_23_CS StatusNotification (connector level only, F06.FR.12), TC_F_11_CS
    MeterValues for an EVSE (F06.FR.06), TC_F_13_CS TransactionEvent with triggerReason Trigger and chargingState
    (F06.FR.07), TC_F_27_CS NotImplemented (F06.FR.08); the response always comes first (F06.FR.04)."""
    st = await booted(csms, make_station, connectors=2)
    n = len(csms.received)
    assert (await csms.call(ID, "TriggerMessage", {"requestedMessage": "Heartbeat"}))["status"] == "Accepted"
    await csms.wait_for("Heartbeat", after=n)
    res = await csms.call(ID, "TriggerMessage", {"requestedMessage": "StatusNotification",
                                                  "evse": {"id": 2, "connectorId": 1}})
    assert res["status"] == "Accepted"
    status = await csms.wait_for("StatusNotification", after=n)
    assert status.payload["evseId"] == 2 and status.payload["connectorStatus"] == "Available"
    assert (await csms.call(ID, "TriggerMessage", {"requestedMessage": "StatusNotification",
                                                   "evse": {"id": 2}}))["status"] == "Rejected"
    res = await csms.call(ID, "TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 2}})
    assert res["status"] == "Accepted"
    mv = await csms.wait_for("MeterValues", after=n)
    assert mv.payload["evseId"] == 2
    assert mv.payload["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"
    # TransactionEvent: Rejected without a transaction, Accepted with one
    assert (await csms.call(ID, "TriggerMessage", {"requestedMessage": "TransactionEvent"}))["status"] == \
        "Rejected"
    tx_id = await plug_and_start(csms, st)
    res = await csms.call(ID, "TriggerMessage", {"requestedMessage": "TransactionEvent", "evse": {"id": 1}})
    assert res["status"] == "Accepted"
    upd = await csms.wait_for("TransactionEvent", lambda p: p["triggerReason"] == "Trigger")
    assert upd.payload["eventType"] == "Updated" and upd.payload["transactionInfo"]["transactionId"] == tx_id
    assert upd.payload["transactionInfo"]["chargingState"] == "Charging"
    assert upd.payload["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"
    assert (await csms.call(ID, "TriggerMessage", {"requestedMessage": "SignCombinedCertificate"}))["status"] == \
        "NotImplemented"
    await stop_with_tag(csms, st, tx_id, "TAG1")
    assert csms.violations == []


# ---- B Reset -------------------------------------------------------------------------------------------------
async def test_tc_b_20_reset_on_idle_without_transaction_reboots(csms, make_station):
    """TC_B_20_CS (B11.FR.01/03/04): Accepted, reboot, BootNotification with reason RemoteReset."""
    st = await booted(csms, make_station)
    n = len(csms.received)
    assert await csms.call(ID, "Reset", {"type": "OnIdle"}) == {"status": "Accepted"}
    boot = await csms.wait_for("BootNotification", after=n)
    assert boot.payload["reason"] == "RemoteReset"
    assert st.hw.resets == [False]
    await csms.wait_for("StatusNotification", after=n)
    # the reason is used once: a later power-up says PowerUp again
    await st.stop()
    m = len(csms.received)
    await make_station(csms, protocols=["ocpp2.0.1"], data_dir=st.cfg.data_dir)
    assert (await csms.wait_for("BootNotification", after=m)).payload["reason"] == "PowerUp"
    assert csms.violations == []


async def test_tc_b_21_reset_on_idle_with_transaction_is_scheduled(csms, make_station):
    """TC_B_21_CS (B12.FR.01/03): Scheduled; the transaction goes on until the driver ends it; then the station
    reboots (RemoteReset)."""
    st = await booted(csms, make_station)
    tx_id = await plug_and_start(csms, st)
    assert await csms.call(ID, "Reset", {"type": "OnIdle"}) == {"status": "Scheduled"}
    await barrier(csms)
    assert st.station.engine.connectors[1].tx_key is not None and st.hw.resets == []
    n = len(csms.received)
    st.hw.present_tag("TAG1")
    end = await ended(csms, tx_id, after=n)
    assert end["transactionInfo"]["stoppedReason"] == "Local"
    boot = await csms.wait_for("BootNotification", after=n)
    assert boot.payload["reason"] == "RemoteReset"
    assert_complete(csms, tx_id)
    assert csms.violations == []


async def test_tc_b_22_reset_immediate_with_transaction(csms, make_station):
    """TC_B_22_CS (B12.FR.02/04): Accepted; the transaction ends (ResetCommand / ImmediateReset) and its Ended is
    delivered before the reboot."""
    st = await booted(csms, make_station)
    tx_id = await plug_and_start(csms, st)
    n = len(csms.received)
    assert await csms.call(ID, "Reset", {"type": "Immediate"}) == {"status": "Accepted"}
    end = await ended(csms, tx_id, after=n)
    assert end["triggerReason"] == "ResetCommand"
    assert end["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    boot = await csms.wait_for("BootNotification", after=n)
    assert csms.received.index(boot) > next(i for i, r in enumerate(csms.received)
                                            if r.action == "TransactionEvent" and r.payload is end)
    assert boot.payload["reason"] == "RemoteReset"
    assert_complete(csms, tx_id)
    assert csms.violations == []


async def test_tc_b_27_reset_evse_immediate_stops_only_that_evse(csms, make_station):
    """TC_B_27_CS (B12.FR.08): an EVSE reset ends the transaction on that EVSE only; no reboot. An unknown EVSE
    is Rejected."""
    st = await booted(csms, make_station, connectors=2)
    for cid, tag in ((1, "TAG1"), (2, "TAG2")):
        st.hw.ev_plug(cid)
        st.hw.present_tag(tag, cid)
        await started(csms, evse={"id": cid, "connectorId": 1})
    tx2 = st.station.engine.connectors[2].tx_key
    assert await csms.call(ID, "Reset", {"type": "Immediate", "evseId": 2}) == {"status": "Accepted"}
    end = await ended(csms, tx2)
    assert end["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    await barrier(csms)
    assert st.station.engine.connectors[1].tx_key is not None
    assert st.hw.resets == [] and st.station.boots == 0
    assert await csms.call(ID, "Reset", {"type": "Immediate", "evseId": 9}) == {"status": "Rejected"}
    assert await csms.call(ID, "Reset", {"type": "OnIdle", "evseId": 1}) == {"status": "Scheduled"}
    assert csms.violations == []


# ---- G Availability ------------------------------------------------------------------------------------------
async def test_tc_g_03_g_05_g_17_change_availability(csms, make_station):
    """TC_G_03_CS (EVSE inoperative -> Unavailable), TC_G_17_CS (a connector with a transaction: Scheduled,
    Unavailable after it ends), TC_G_05_CS (station inoperative: every connector Unavailable, the station's
    AvailabilityState too), G03.FR.03 (already in that state: Accepted), unknown EVSE: Rejected."""
    st = await booted(csms, make_station, connectors=2)
    n = len(csms.received)
    res = await csms.call(ID, "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 2}})
    assert res == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2 and p["connectorStatus"] == "Unavailable",
                        after=n)
    assert (await csms.call(ID, "ChangeAvailability", {"operationalStatus": "Inoperative",
                                                       "evse": {"id": 2}}))["status"] == "Accepted"
    assert (await csms.call(ID, "ChangeAvailability", {"operationalStatus": "Inoperative",
                                                       "evse": {"id": 7}}))["status"] == "Rejected"
    tx_id = await plug_and_start(csms, st)
    res = await csms.call(ID, "ChangeAvailability", {"operationalStatus": "Inoperative",
                                                     "evse": {"id": 1, "connectorId": 1}})
    assert res == {"status": "Scheduled"}
    n = len(csms.received)
    st.hw.present_tag("TAG1")
    await ended(csms, tx_id)
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1 and p["connectorStatus"] == "Unavailable",
                        after=n)
    assert (await csms.call(ID, "ChangeAvailability", {"operationalStatus": "Operative"}))["status"] == "Accepted"
    assert (await csms.call(ID, "ChangeAvailability", {"operationalStatus": "Inoperative"}))["status"] == "Accepted"
    assert await get_var(csms, "ChargingStation", "AvailabilityState") == "Unavailable"
    assert csms.violations == []


async def test_tc_g_01_g_02_every_connector_change_reported_in_order_while_online(csms, make_station):
    """TC_G_01_CS / TC_G_02_CS (G01.FR.03/04): a quick plug-in and unplug while online are both reported, in
    order (Occupied, then Available)."""
    st = await booted(csms, make_station)
    n = len(csms.received)
    st.hw.ev_plug(1)
    st.hw.ev_plug(1, False)
    await csms.wait_for("StatusNotification", lambda p: p["connectorStatus"] == "Available", after=n)
    assert [r.payload["connectorStatus"] for r in csms.received[n:] if r.action == "StatusNotification"] == \
        ["Occupied", "Available"]
    assert csms.violations == []


async def test_tc_g_19_connector_unavailable_persists_across_reboot(csms, make_station):
    """TC_G_19_CS (G03.FR.08, B11.FR.02): the availability set by the CSMS survives a restart."""
    st = await booted(csms, make_station)
    assert (await csms.call(ID, "ChangeAvailability", {"operationalStatus": "Inoperative",
                                                       "evse": {"id": 1, "connectorId": 1}}))["status"] == "Accepted"
    await csms.wait_for("StatusNotification", lambda p: p["connectorStatus"] == "Unavailable")
    await st.stop()
    n = len(csms.received)
    await make_station(csms, protocols=["ocpp2.0.1"], data_dir=st.cfg.data_dir)
    await csms.wait_for("BootNotification", after=n)
    status = await csms.wait_for("StatusNotification", after=n)
    assert status.payload["connectorStatus"] == "Unavailable"
    assert csms.violations == []


async def test_tc_b_51_status_after_offline_longer_than_offline_threshold(csms, make_station):
    """TC_B_51_CS (B04.FR.01): offline longer than OfflineThreshold -> every connector's status is reported again,
    changed or not."""
    st = await booted(csms, make_station)
    assert await set_var(csms, "OCPPCommCtrlr", "OfflineThreshold", "0") == "Accepted"
    await go_offline(csms, st)
    await asyncio.sleep(0.05)
    n = len(csms.received)
    await go_online(csms, st)
    status = await csms.wait_for("StatusNotification", after=n)
    assert status.payload["connectorStatus"] == "Available"
    assert csms.violations == []


async def test_tc_b_52_status_after_short_offline_period_only_for_changed_connectors(csms, make_station):
    """TC_B_52_CS (B04.FR.02): offline for less than OfflineThreshold -> only the connectors whose status changed
    meanwhile are reported."""
    st = await booted(csms, make_station, connectors=2)
    await go_offline(csms, st)
    st.hw.ev_plug(2)
    n = len(csms.received)
    await go_online(csms, st)
    status = await csms.wait_for("StatusNotification", after=n)
    assert (status.payload["evseId"], status.payload["connectorStatus"]) == (2, "Occupied")
    await barrier(csms)
    assert [r.payload["evseId"] for r in csms.received[n:] if r.action == "StatusNotification"] == [2]
    assert csms.violations == []


async def test_tc_g_02_heartbeat_after_the_interval(csms, make_station):
    """G02.FR.01/02: with nothing else to send, a Heartbeat once the interval from the BootNotificationResponse has
    passed."""
    csms.boot_interval = 1
    await booted(csms, make_station)
    await csms.wait_for("Heartbeat", timeout=5)
    assert csms.violations == []


# ---- C Authorization, P DataTransfer, RPC errors ------------------------------------------------------------
async def test_tc_c_37_c_38_clear_cache(csms, make_station):
    """TC_C_37_CS (C11.FR.01): Accepted and the cache is empty; TC_C_38_CS (C11.FR.04): Rejected while
    AuthCacheCtrlr.Enabled is false."""
    st = await booted(csms, make_station)
    st.hw.present_tag("TAG1")
    await csms.wait_for("Authorize")
    await eventually(lambda: "TAG1" in st.station.cache, 5, "TAG1 cached")
    assert await csms.call(ID, "ClearCache", {}) == {"status": "Accepted"}
    assert len(st.station.cache) == 0
    assert await set_var(csms, "AuthCacheCtrlr", "Enabled", "false") == "Accepted"
    assert await csms.call(ID, "ClearCache", {}) == {"status": "Rejected"}
    assert csms.violations == []


async def test_tc_p_01_p_02_data_transfer_both_ways(csms, make_station):
    """P01 (CSMS -> station, the DataTransfer registry: known vendor echo, UnknownVendorId) and P02 (station ->
    CSMS)."""
    st = await booted(csms, make_station)
    r = await csms.call(ID, "DataTransfer", {"vendorId": "secure-cp", "messageId": "echo", "data": "hi"})
    assert r == {"status": "Accepted", "data": "hi"}
    assert await csms.call(ID, "DataTransfer", {"vendorId": "com.unknown"}) == {"status": "UnknownVendorId"}
    assert await st.station.data_transfer(ECHO_VENDOR_ID, "echo", "ping") == {"status": "Accepted", "data": "ping"}
    assert (await st.station.data_transfer("org.nobody"))["status"] == "UnknownVendorId"
    assert csms.violations == []


async def test_unsupported_unknown_and_failing_requests_get_callerrors(csms, make_station):
    """OCPP-J 2.0.1 §4.3: a known but unsupported action -> NotSupported, an unknown one -> NotImplemented, a
    handler that fails -> InternalError; the station keeps working afterwards."""
    st = await booted(csms, make_station)
    with pytest.raises(CallErrorReceived) as e:
        await csms.call(ID, "ReserveNow", {"id": 1, "expiryDateTime": "2030-01-01T00:00:00Z",
                                           "idToken": {"idToken": "TAG1", "type": "Central"}})
    assert e.value.code == "NotSupported"
    await csms.send_raw(ID, '[2,"x1","FooBar",{}]')
    adapter = st.station.adapter

    def broken(p, now):
        raise RuntimeError("boom")
    adapter._cs_ClearCache = broken
    with pytest.raises(CallErrorReceived) as e:
        await csms.call(ID, "ClearCache", {})
    assert e.value.code == "InternalError"
    del adapter._cs_ClearCache
    assert await csms.call(ID, "ClearCache", {}) == {"status": "Accepted"}
    sent = "".join(f.text for f in st.station.frames if f.direction == "tx")
    assert '[4,"x1","NotImplemented"' in sent
    # the raw CALL did not come from the CSMS's own call(), so it takes our answer for an unknown one
    assert csms.violations == [f"{ID}: answer to unknown message id 'x1'"]
