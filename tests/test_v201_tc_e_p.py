"""OCPP 2.0.1 Part 6 test cases of blocks E, F, G and J that the older files did not name (see
conformance/ocpp201-tc-E-P.md): a real station (engine + 2.0.1 adapter + SQLite + websockets) against the strict
CSMS. Each test is named after its TC_*_CS id and cites the Part 2 requirements the test case lists; every test
ends with ``csms.violations == []`` (schema and seqNo checks of the CSMS)."""
from __future__ import annotations

import asyncio

from helpers import eventually, triggered_idle
from test_v201_core import (HEX_TAG, ID, assert_complete, barrier, booted, ended, get_var, go_offline, go_online,
                            set_var, started, stop_with_tag, tx_events, updated)

TOKEN = {"idToken": HEX_TAG, "type": "ISO14443"}


async def configured(csms, make_station, *, connectors: int = 1, **variables: str):
    """A booted station with TxCtrlr variables set by SetVariables (name=value) and HEX_TAG known to the CSMS."""
    csms.authorize[HEX_TAG] = {"status": "Accepted"}
    st = await booted(csms, make_station, connectors=connectors)
    for name, value in variables.items():
        assert await set_var(csms, "TxCtrlr", name, value) == "Accepted", name
    return st


async def charging(csms, st, connector: int = 1, tag: str = HEX_TAG) -> str:
    """Plug, then present the tag: the transaction id once the EVSE charges."""
    n = len(csms.received)
    st.hw.ev_plug(connector)
    st.hw.present_tag(tag)
    tx_id = (await started(csms, after=n))["transactionInfo"]["transactionId"]
    await csms.wait_for("TransactionEvent", lambda p: p["transactionInfo"]["transactionId"] == tx_id
                        and p["transactionInfo"].get("chargingState") == "Charging", after=n)
    return tx_id


async def authorized_until_connection_timeout(csms, make_station):
    """TxStartPoint and TxStopPoint Authorized, EVConnectionTimeOut 1 s: the tag starts a transaction and, no cable
    coming, it ends with EVConnectTimeout / Timeout (E03.FR.05, E06.FR.04). The station and the transactionId."""
    st = await configured(csms, make_station, TxStartPoint="Authorized", TxStopPoint="Authorized",
                          EVConnectionTimeOut="1")
    st.hw.present_tag(HEX_TAG)
    tx_id = (await started(csms))["transactionInfo"]["transactionId"]
    end = await ended(csms, tx_id)
    assert end["triggerReason"] == "EVConnectTimeout" and end["transactionInfo"]["stoppedReason"] == "Timeout"
    return st, tx_id


async def ev_readiness(csms, st, tx_id: str, ready: bool, state: str) -> None:
    """The EV on connector 1 becomes ready (or not) to take energy: Updated ChargingStateChanged with chargingState
    ``state``."""
    n = len(csms.received)
    st.hw.ev_ready(1, ready)
    await updated(csms, tx_id, "ChargingStateChanged", after=n, state=state)


async def availability(csms, operational: str, evse: dict | None = None) -> dict:
    """ChangeAvailability ``operational`` for the station, or for ``evse`` (an EVSE or a connector): the response."""
    return await csms.call(ID, "ChangeAvailability",
                           {"operationalStatus": operational, **({"evse": evse} if evse else {})})


async def status_of(csms, evse_id: int, connector_id: int, status: str, after: int = 0) -> dict:
    rec = await csms.wait_for("StatusNotification", lambda p: p["evseId"] == evse_id
                              and p["connectorId"] == connector_id and p["connectorStatus"] == status, after=after)
    return rec.payload


# ---- E Transactions ------------------------------------------------------------------------------------------
async def test_tc_e_02_cs_start_point_energy_transfer(csms, make_station):
    """TC_E_02_CS (E01.FR.06/07/10/15/16): TxStartPoint EnergyTransfer: the station is authorized, the plug closes
    the power path and the energy flows: Started (ChargingStateChanged or Authorized) with the idToken, evse and
    connectorId, chargingState Charging."""
    st = await configured(csms, make_station, TxStartPoint="EnergyTransfer")
    st.hw.present_tag(HEX_TAG)
    await csms.wait_for("Authorize")
    n = len(csms.received)
    st.hw.ev_plug(1)
    await status_of(csms, 1, 1, "Occupied", after=n)
    start = await started(csms, after=n)
    assert start["triggerReason"] in ("ChargingStateChanged", "Authorized")
    assert start["idToken"] == TOKEN and start["evse"] == {"id": 1, "connectorId": 1}
    assert start["transactionInfo"]["chargingState"] == "Charging"
    tx_id = start["transactionInfo"]["transactionId"]
    await stop_with_tag(csms, st, tx_id)
    assert csms.violations == []


async def test_tc_e_04_cs_authorization_first(csms, make_station):
    """TC_E_04_CS (E03.FR.01/06/12, E01.FR.16): the idToken first (Authorize Accepted), then the cable: Started
    with the idToken, the evse and connectorId, then the energy flows (chargingState Charging)."""
    st = await configured(csms, make_station)
    st.hw.present_tag(HEX_TAG)
    assert (await csms.wait_for("Authorize")).payload == {"idToken": TOKEN}
    n = len(csms.received)
    st.hw.ev_plug(1)
    await status_of(csms, 1, 1, "Occupied", after=n)
    start = await started(csms, after=n)
    assert start["idToken"] == TOKEN and start["evse"] == {"id": 1, "connectorId": 1}
    tx_id = start["transactionInfo"]["transactionId"]
    await csms.wait_for("TransactionEvent", lambda p: p["transactionInfo"].get("chargingState") == "Charging",
                        after=n)
    await stop_with_tag(csms, st, tx_id)
    assert csms.violations == []


async def test_tc_e_08_cs_stop_point_energy_transfer_stop_authorized(csms, make_station):
    """TC_E_08_CS (E06.FR.07/15): TxStopPoint EnergyTransfer: the driver's tag stops the energy transfer, which
    ends the transaction (StopAuthorized, stoppedReason Local)."""
    st = await configured(csms, make_station, TxStopPoint="EnergyTransfer")
    tx_id = await charging(csms, st)
    end = await stop_with_tag(csms, st, tx_id)
    assert end["triggerReason"] == "StopAuthorized" and end["transactionInfo"].get("stoppedReason", "Local") == \
        "Local"
    assert not st.hw.connectors[1].permitted
    assert csms.violations == []


async def test_tc_e_44_cs_transaction_stopped_while_offline(csms, make_station):
    """TC_E_44_CS (E08.FR.01/04-08): the connection drops during a transaction; the driver stops it with the same
    idToken (known from the cache) and unplugs; after the reconnect the queued events are delivered, each with
    offline true, one of them the Ended; seqNos continue without a gap."""
    st = await configured(csms, make_station)
    tx_id = await charging(csms, st)
    await barrier(csms)
    await go_offline(csms, st)
    st.hw.present_tag(HEX_TAG)
    st.hw.ev_plug(1, False)
    n = await go_online(csms, st)
    end = await ended(csms, tx_id, after=n)
    assert end["triggerReason"] == "StopAuthorized"
    queued = [p for p in tx_events(csms, n) if p["transactionInfo"]["transactionId"] == tx_id]
    assert queued and all(p.get("offline") is True for p in queued)
    assert_complete(csms, tx_id)
    assert csms.violations == []


async def test_tc_e_13_cs_start_point_authorized_remote(csms, make_station):
    """TC_E_13_CS (E01.FR.03, F01.FR.03/04/06/19, F02.FR.01): TxStartPoint Authorized: RequestStartTransaction is
    Accepted and starts the transaction at once: Started RemoteStart with the idToken and remoteStartId."""
    st = await configured(csms, make_station, TxStartPoint="Authorized")
    res = await csms.call(ID, "RequestStartTransaction", {"idToken": TOKEN, "evseId": 1, "remoteStartId": 42})
    assert res["status"] == "Accepted"
    start = await started(csms)
    assert start["triggerReason"] == "RemoteStart" and start["idToken"] == TOKEN
    assert start["transactionInfo"]["remoteStartId"] == 42
    tx_id = start["transactionInfo"]["transactionId"]
    st.hw.ev_plug(1)
    await updated(csms, tx_id, "CablePluggedIn")
    await stop_with_tag(csms, st, tx_id)
    assert csms.violations == []


async def test_tc_e_05_cs_authorization_first_cable_plugin_timeout(csms, make_station):
    """TC_E_05_CS (E03.FR.05): TxStartPoint Authorized and the cable never comes: after EVConnectionTimeOut the
    transaction ends with EVConnectTimeout / Timeout (TxStopPoint contains Authorized); the EVSE is then ready for
    the next session (Authorized, plug, Charging)."""
    st, tx_id = await authorized_until_connection_timeout(csms, make_station)
    assert_complete(csms, tx_id)
    n = len(csms.received)
    st.hw.present_tag(HEX_TAG)
    tx2 = (await started(csms, after=n))["transactionInfo"]["transactionId"]
    st.hw.ev_plug(1)
    await updated(csms, tx2, "CablePluggedIn", after=n, state="EVConnected")
    await updated(csms, tx2, "ChargingStateChanged", after=n, state="Charging")
    await stop_with_tag(csms, st, tx2)
    assert csms.violations == []


async def test_tc_e_39_cs_deauthorized_timeout_late_plug_does_not_charge(csms, make_station):
    """TC_E_39_CS (E06.FR.04/15): TxStopPoint Authorized, EVConnectionTimeOut expires: Ended EVConnectTimeout /
    Timeout; a cable plugged in afterwards neither starts charging nor reports chargingState Charging."""
    st, _ = await authorized_until_connection_timeout(csms, make_station)
    n = len(csms.received)
    st.hw.ev_plug(1)
    await status_of(csms, 1, 1, "Occupied", after=n)
    await barrier(csms)
    assert not st.hw.connectors[1].permitted
    assert all(p["transactionInfo"].get("chargingState") != "Charging" for p in tx_events(csms, n))
    assert csms.violations == []


async def test_tc_e_38_cs_ev_not_ready_reports_suspended_ev(csms, make_station):
    """TC_E_38_CS (E03): an EV that is not ready for energy transfer: the transaction reports
    ChargingStateChanged with chargingState SuspendedEV."""
    st = await configured(csms, make_station)
    st.hw.ev_ready(1, False)
    st.hw.present_tag(HEX_TAG)
    await csms.wait_for("Authorize")
    st.hw.ev_plug(1)
    rec = await csms.wait_for("TransactionEvent", lambda p: p["transactionInfo"].get("chargingState") ==
                              "SuspendedEV")
    tx_id = rec.payload["transactionInfo"]["transactionId"]
    assert rec.payload["triggerReason"] in ("ChargingStateChanged", "Authorized")
    if rec.payload["eventType"] == "Updated":
        assert rec.payload["triggerReason"] == "ChargingStateChanged"
    await stop_with_tag(csms, st, tx_id)
    assert csms.violations == []


async def test_tc_e_22_cs_stop_point_energy_transfer_ev_suspends(csms, make_station):
    """TC_E_22_CS (E06.FR.07/15): TxStopPoint EnergyTransfer, the EV suspends the energy transfer: Updated
    ChargingStateChanged with chargingState SuspendedEV (the Part 6 alternative to Ended / EVConnected)."""
    st = await configured(csms, make_station, TxStopPoint="EnergyTransfer")
    tx_id = await charging(csms, st)
    await ev_readiness(csms, st, tx_id, False, "SuspendedEV")
    await stop_with_tag(csms, st, tx_id)
    assert csms.violations == []


async def test_tc_e_07_e_35_cs_stop_point_power_path_closed_local_and_remote(csms, make_station):
    """TC_E_07_CS / TC_E_35_CS (E06.FR.06/15): TxStopPoint PowerPathClosed: the tag ends the transaction
    (StopAuthorized / Local); RequestStopTransaction is Accepted and ends it with RemoteStop / Remote."""
    st = await configured(csms, make_station, TxStopPoint="PowerPathClosed")
    tx_id = await charging(csms, st)
    end = await stop_with_tag(csms, st, tx_id)
    assert end["triggerReason"] == "StopAuthorized" and end["transactionInfo"]["stoppedReason"] == "Local"
    st.hw.ev_plug(1, False)
    await status_of(csms, 1, 1, "Available")
    tx2 = await charging(csms, st)
    res = await csms.call(ID, "RequestStopTransaction", {"transactionId": tx2})
    assert res == {"status": "Accepted"}
    end = await ended(csms, tx2)
    assert end["triggerReason"] == "RemoteStop" and end["transactionInfo"]["stoppedReason"] == "Remote"
    assert_complete(csms, tx2)
    assert csms.violations == []


async def test_tc_e_21_cs_stop_point_authorized_remote(csms, make_station):
    """TC_E_21_CS (E06.FR.03/15, F03.FR.09): TxStopPoint Authorized: RequestStopTransaction -> Accepted, Ended
    RemoteStop / Remote while the cable is still plugged in."""
    st = await configured(csms, make_station, TxStopPoint="Authorized")
    tx_id = await charging(csms, st)
    assert await csms.call(ID, "RequestStopTransaction", {"transactionId": tx_id}) == {"status": "Accepted"}
    end = await ended(csms, tx_id)
    assert end["triggerReason"] == "RemoteStop" and end["transactionInfo"]["stoppedReason"] == "Remote"
    assert st.hw.connectors[1].plugged and not st.hw.connectors[1].permitted
    assert_complete(csms, tx_id)
    assert csms.violations == []


async def test_tc_e_37_cs_stop_point_power_path_closed_ev_side_disconnect(csms, make_station):
    """TC_E_37_CS (E06.FR.06/15): TxStopPoint PowerPathClosed, StopTxOnEVSideDisconnect false, the cable is pulled:
    the power path opens, so the transaction ends: EVCommunicationLost, chargingState Idle, EVDisconnected."""
    st = await configured(csms, make_station, TxStopPoint="PowerPathClosed", StopTxOnEVSideDisconnect="false")
    tx_id = await charging(csms, st)
    st.hw.ev_plug(1, False)
    end = await ended(csms, tx_id)
    assert end["triggerReason"] == "EVCommunicationLost"
    assert end["transactionInfo"]["chargingState"] == "Idle"
    assert end["transactionInfo"]["stoppedReason"] in ("EVDisconnected", "StoppedByEV")
    assert_complete(csms, tx_id)
    assert csms.violations == []


async def ev_side_disconnect(csms, make_station, unlock: str):
    """TxStopPoint Authorized, StopTxOnEVSideDisconnect true, OCPPCommCtrlr.UnlockOnEVSideDisconnect ``unlock``: a
    charging transaction (the cable locked) ends when the cable is pulled at the EV (E09.FR.01/04: Ended
    EVCommunicationLost, chargingState Idle). The station, the transactionId, the record count before the pull and
    the Ended payload."""
    st = await configured(csms, make_station, TxStopPoint="Authorized", StopTxOnEVSideDisconnect="true")
    assert await set_var(csms, "OCPPCommCtrlr", "UnlockOnEVSideDisconnect", unlock) == "Accepted"
    tx_id = await charging(csms, st)
    assert st.hw.connectors[1].locked
    n = len(csms.received)
    st.hw.ev_plug(1, False)
    end = await ended(csms, tx_id, after=n)
    assert end["triggerReason"] == "EVCommunicationLost" and end["transactionInfo"]["chargingState"] == "Idle"
    return st, tx_id, n, end


async def test_tc_e_17_e_24_cs_ev_side_disconnect_deauthorizes_and_unlocks(csms, make_station):
    """TC_E_17_CS / TC_E_24_CS (E06.FR.04, E09.FR.01/02/04): StopTxOnEVSideDisconnect and UnlockOnEVSideDisconnect
    true, TxStopPoint Authorized: pulling the cable ends the transaction (EVCommunicationLost, Idle,
    EVDisconnected), unlocks the connector, and the connector is reported Available."""
    st, tx_id, n, end = await ev_side_disconnect(csms, make_station, unlock="true")
    assert end["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    await status_of(csms, 1, 1, "Available", after=n)
    assert not st.hw.connectors[1].locked
    assert_complete(csms, tx_id)
    assert csms.violations == []


async def test_tc_e_25_cs_ev_side_disconnect_keeps_cable_locked(csms, make_station):
    """TC_E_25_CS (E09.FR.01/03/04): UnlockOnEVSideDisconnect false: the transaction ends on the EV-side
    disconnect (EVCommunicationLost, Idle) but the connector stays locked."""
    st, tx_id, _, _ = await ev_side_disconnect(csms, make_station, unlock="false")
    await barrier(csms)
    assert st.hw.connectors[1].locked
    assert_complete(csms, tx_id)
    assert csms.violations == []


async def test_tc_e_26_cs_ev_side_disconnect_suspends_then_resumes(csms, make_station):
    """TC_E_26_CS (E10.FR.01/03): StopTxOnEVSideDisconnect false, TxStopPoint Authorized: pulling the cable keeps
    the transaction and the cable lock (Updated EVCommunicationLost, chargingState Idle); plugging back in resumes
    it: Updated CablePluggedIn / EVConnected, then ChargingStateChanged / SuspendedEV (this EV is not ready yet:
    energy offered, not taken), then ChargingStateChanged / Charging once the EV asks for energy (the EV-ready case:
    test_v201_tc_b_e_gaps.py::test_tc_e_26_cs_*)."""
    st = await configured(csms, make_station, TxStopPoint="Authorized", StopTxOnEVSideDisconnect="false")
    tx_id = await charging(csms, st)
    n = len(csms.received)
    st.hw.ev_plug(1, False)
    await updated(csms, tx_id, "EVCommunicationLost", after=n, state="Idle")
    assert st.hw.connectors[1].locked   # E10.FR.01
    n = len(csms.received)
    st.hw.ev_ready(1, False)
    st.hw.ev_plug(1)
    await updated(csms, tx_id, "CablePluggedIn", after=n, state="EVConnected")
    await updated(csms, tx_id, "ChargingStateChanged", after=n, state="SuspendedEV")
    await ev_readiness(csms, st, tx_id, True, "Charging")
    await stop_with_tag(csms, st, tx_id)
    assert csms.violations == []


async def test_tc_e_41_cs_no_reply_resent_until_max_attempts(csms, make_station):
    """TC_E_41_CS (E13.FR.01-04): the CSMS never answers the Ended (each transmission times out): it is sent
    exactly MessageAttempts[TransactionEvent] times, then given up (kept in the store as failed), not sent again."""
    st = await booted(csms, make_station, ocpp={"TransactionMessageAttempts": "2",
                                               "TransactionMessageRetryInterval": "1"})
    csms.authorize[HEX_TAG] = {"status": "Accepted"}
    tx_id = await charging(csms, st)
    await barrier(csms)
    csms.drop_next("TransactionEvent", count=2)
    n = len(csms.received)
    st.hw.present_tag(HEX_TAG)
    await eventually(lambda: len(st.station.outbox.failed()) == 1, 20, "the Ended to be given up")
    await asyncio.sleep(1.2)            # longer than a further retry would wait
    await barrier(csms)
    sent = [p for p in tx_events(csms, n) if p["eventType"] == "Ended"]
    assert len(sent) == 2 and sent[0] == sent[1] and sent[0]["transactionInfo"]["transactionId"] == tx_id
    assert csms.violations == []


async def test_tc_e_52_cs_disable_remote_authorization_no_authorize_request(csms, make_station):
    """TC_E_52_CS (C01.FR.02/05 overruled by AuthCtrlr.DisableRemoteAuthorization): an idToken neither in the cache
    nor in the local list is refused without an AuthorizeRequest and no transaction starts; a cached one still
    charges (no AuthorizeRequest either)."""
    st = await configured(csms, make_station)
    tx_id = await charging(csms, st)        # HEX_TAG is now in the authorization cache
    st.hw.present_tag(HEX_TAG)
    await ended(csms, tx_id)
    st.hw.ev_plug(1, False)
    assert await set_var(csms, "AuthCtrlr", "DisableRemoteAuthorization", "true") == "Accepted"
    n = len(csms.received)
    st.hw.ev_plug(1)
    st.hw.present_tag("UNKNOWN1")
    await status_of(csms, 1, 1, "Occupied", after=n)
    await barrier(csms)
    assert [r for r in csms.received[n:] if r.action in ("Authorize", "TransactionEvent")] == []
    assert not st.hw.connectors[1].permitted
    st.hw.present_tag(HEX_TAG)
    tx2 = (await started(csms, after=n))["transactionInfo"]["transactionId"]
    assert [r for r in csms.received[n:] if r.action == "Authorize"] == []
    await stop_with_tag(csms, st, tx2)
    assert csms.violations == []


# ---- F Remote control ----------------------------------------------------------------------------------------
async def test_tc_f_04_cs_remote_start_cable_plugin_timeout(csms, make_station):
    """TC_F_04_CS (F02.FR.01, E03.FR.01/05): TxStartPoint Authorized, RequestStartTransaction and no cable within
    EVConnectionTimeOut: Ended EVConnectTimeout; a second remote start then works."""
    st = await configured(csms, make_station, TxStartPoint="Authorized", EVConnectionTimeOut="1")
    assert (await csms.call(ID, "RequestStartTransaction", {"idToken": TOKEN, "remoteStartId": 1}))["status"] == \
        "Accepted"
    tx_id = (await started(csms))["transactionInfo"]["transactionId"]
    end = await ended(csms, tx_id)
    assert end["triggerReason"] == "EVConnectTimeout"
    assert_complete(csms, tx_id)
    n = len(csms.received)
    assert (await csms.call(ID, "RequestStartTransaction", {"idToken": TOKEN, "remoteStartId": 2}))["status"] == \
        "Accepted"
    tx2 = (await started(csms, after=n))["transactionInfo"]["transactionId"]
    st.hw.ev_plug(1)
    await updated(csms, tx2, "CablePluggedIn", after=n)
    st.hw.present_tag(HEX_TAG)
    await ended(csms, tx2)
    assert csms.violations == []


async def test_tc_f_07_cs_unlock_without_cable(csms, make_station):
    """TC_F_07_CS (F05.FR.01/06): no cable connected: UnlockConnector is still tried and answered Unlocked."""
    await configured(csms, make_station)
    res = await csms.call(ID, "UnlockConnector", {"evseId": 1, "connectorId": 1})
    assert res == {"status": "Unlocked"}
    assert csms.violations == []


async def test_tc_f_12_f_14_cs_trigger_meter_values_and_transaction_event_all_evses(csms, make_station):
    """TC_F_12_CS (F06.FR.04/05/06/10/11): MeterValues without evse -> one MeterValues per EVSE, context Trigger.
    TC_F_14_CS (F06.FR.07/11): TransactionEvent without evse -> an Updated Trigger event per running transaction,
    with chargingState Charging and a Trigger reading."""
    st = await configured(csms, make_station, connectors=2)
    n = len(csms.received)
    assert (await csms.call(ID, "TriggerMessage", {"requestedMessage": "MeterValues"}))["status"] == "Accepted"
    await csms.wait_for("MeterValues", lambda p: p["evseId"] == 2, after=n)
    mvs = [r.payload for r in csms.received[n:] if r.action == "MeterValues"]
    assert sorted(p["evseId"] for p in mvs) == [1, 2]
    assert all(p["meterValue"][0]["sampledValue"][0]["context"] == "Trigger" for p in mvs)
    tx1 = await charging(csms, st, 1)
    tx2 = await charging(csms, st, 2, tag="TAG2")
    n = len(csms.received)
    assert (await csms.call(ID, "TriggerMessage", {"requestedMessage": "TransactionEvent"}))["status"] == \
        "Accepted"
    for tx_id, evse_id in ((tx1, 1), (tx2, 2)):
        upd = await updated(csms, tx_id, "Trigger", after=n, state="Charging")
        assert upd["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"
        assert upd.get("evse", {"id": evse_id})["id"] == evse_id
    assert csms.violations == []


async def test_tc_f_24_cs_trigger_status_notification_occupied(csms, make_station):
    """TC_F_24_CS (F06.FR.02/04/05/10): a connector with a cable plugged in: triggered StatusNotification
    Occupied for that connector."""
    st = await configured(csms, make_station)
    st.hw.ev_plug(1)
    await status_of(csms, 1, 1, "Occupied")
    n = len(csms.received)
    res = await csms.call(ID, "TriggerMessage", {"requestedMessage": "StatusNotification",
                                                 "evse": {"id": 1, "connectorId": 1}})
    assert res == {"status": "Accepted"}
    await status_of(csms, 1, 1, "Occupied", after=n)
    assert csms.violations == []


async def test_tc_f_26_cs_trigger_boot_notification_rejected_once_accepted(csms, make_station):
    """TC_F_26_CS (F06.FR.17): after an Accepted BootNotification a triggered one is Rejected and not sent."""
    await configured(csms, make_station)
    n = len(csms.received)
    res = await csms.call(ID, "TriggerMessage", {"requestedMessage": "BootNotification"})
    assert res == {"status": "Rejected"}
    await barrier(csms)
    assert [r for r in csms.received[n:] if r.action == "BootNotification"] == []
    assert csms.violations == []


async def test_tc_f_15_f_17_f_18_cs_trigger_log_and_firmware_status_idle(csms, make_station):
    """TC_F_15_CS (F06.FR.15): LogStatusNotification while no log upload runs -> Accepted, then status Idle.
    TC_F_18_CS (F06.FR.16, L01.FR.25) / TC_F_17_CS (F06.FR.03: an evse is irrelevant for this message):
    FirmwareStatusNotification while no firmware update runs -> Accepted, then status Idle. No log upload runs
    here and there is no UpdateFirmware: idle, so a triggered notification carries no requestId (a running upload:
    test_diagnostics.py)."""
    await configured(csms, make_station)
    await triggered_idle(csms, "LogStatusNotification")
    await triggered_idle(csms, "FirmwareStatusNotification")
    await triggered_idle(csms, "FirmwareStatusNotification", evse={"id": 1})
    assert csms.violations == []


# ---- G Availability ------------------------------------------------------------------------------------------
async def test_tc_g_04_g_09_g_10_cs_change_availability_evse(csms, make_station):
    """TC_G_10_CS (G03.FR.03): an EVSE already Inoperative -> Inoperative again: Accepted. TC_G_04_CS
    (G03.FR.01/02/04/07): Inoperative -> Operative: Accepted and every connector of that EVSE reported Available.
    TC_G_09_CS (G03.FR.03): Operative -> Operative: Accepted, nothing changes."""
    await configured(csms, make_station, connectors=2)
    assert await availability(csms, "Inoperative", {"id": 2}) == {"status": "Accepted"}
    await status_of(csms, 2, 1, "Unavailable")
    assert await availability(csms, "Inoperative", {"id": 2}) == {"status": "Accepted"}
    n = len(csms.received)
    assert await availability(csms, "Operative", {"id": 2}) == {"status": "Accepted"}
    await status_of(csms, 2, 1, "Available", after=n)
    assert await availability(csms, "Operative", {"id": 2}) == {"status": "Accepted"}
    assert await availability(csms, "Operative", {"id": 1}) == {"status": "Accepted"}
    await barrier(csms)
    assert [r for r in csms.received[n:] if r.action == "StatusNotification" and r.payload["evseId"] == 1] == []
    assert csms.violations == []


async def test_tc_g_06_g_12_g_13_cs_change_availability_station(csms, make_station):
    """TC_G_12_CS (G04.FR.04): station Operative -> Operative: Accepted. TC_G_13_CS: Inoperative -> Inoperative:
    Accepted, every connector stays Unavailable. TC_G_06_CS (G04.FR.08): Inoperative -> Operative: Accepted and every
    connector reported Available."""
    await configured(csms, make_station, connectors=2)
    assert await availability(csms, "Operative") == {"status": "Accepted"}
    n = len(csms.received)
    assert await availability(csms, "Inoperative") == {"status": "Accepted"}
    for evse_id in (1, 2):
        await status_of(csms, evse_id, 1, "Unavailable", after=n)
    assert await availability(csms, "Inoperative") == {"status": "Accepted"}
    assert await get_var(csms, "ChargingStation", "AvailabilityState") == "Unavailable"
    n = len(csms.received)
    assert await availability(csms, "Operative") == {"status": "Accepted"}
    for evse_id in (1, 2):
        await status_of(csms, evse_id, 1, "Available", after=n)
    assert await get_var(csms, "ChargingStation", "AvailabilityState") == "Available"
    assert csms.violations == []


async def test_tc_g_07_g_08_g_15_g_16_cs_change_availability_connector(csms, make_station):
    """TC_G_07_CS (G03.FR.06): a connector Operative -> Inoperative: Accepted, that connector Unavailable.
    TC_G_16_CS: Inoperative again: Accepted. TC_G_08_CS (G03.FR.07): Operative: Accepted, that connector Available.
    TC_G_15_CS: Operative again: Accepted."""
    await configured(csms, make_station, connectors=2)
    conn = {"id": 2, "connectorId": 1}
    n = len(csms.received)
    assert await availability(csms, "Inoperative", conn) == {"status": "Accepted"}
    await status_of(csms, 2, 1, "Unavailable", after=n)
    assert await availability(csms, "Inoperative", conn) == {"status": "Accepted"}
    n = len(csms.received)
    assert await availability(csms, "Operative", conn) == {"status": "Accepted"}
    await status_of(csms, 2, 1, "Available", after=n)
    assert await availability(csms, "Operative", conn) == {"status": "Accepted"}
    await barrier(csms)
    assert [r.payload["evseId"] for r in csms.received[n:] if r.action == "StatusNotification"] == [2]
    assert csms.violations == []


async def test_tc_g_11_g_14_cs_change_availability_with_transaction_is_scheduled(csms, make_station):
    """TC_G_11_CS (G03.FR.05) / TC_G_14_CS (G04.FR.06): Inoperative for the EVSE / the station while a
    transaction runs: Scheduled; idle EVSEs go Unavailable at once (TC_G_14 step 3), the busy one after its
    transaction ends."""
    st = await configured(csms, make_station, connectors=2)
    tx_id = await charging(csms, st, 1)
    assert await availability(csms, "Inoperative", {"id": 1}) == {"status": "Scheduled"}
    n = len(csms.received)
    assert await availability(csms, "Inoperative") == {"status": "Scheduled"}
    await status_of(csms, 2, 1, "Unavailable", after=n)
    await barrier(csms)
    assert [r for r in csms.received[n:] if r.action == "StatusNotification" and r.payload["evseId"] == 1] == []
    st.hw.present_tag(HEX_TAG)
    await ended(csms, tx_id, after=n)
    await status_of(csms, 1, 1, "Unavailable", after=n)
    assert_complete(csms, tx_id)
    assert csms.violations == []


async def test_tc_g_18_g_21_cs_evse_and_station_unavailable_persist_across_reboot(csms, make_station):
    """TC_G_18_CS (G03.FR.08): an EVSE set Inoperative is reported Unavailable after a restart, the other EVSE
    Available. TC_G_21_CS (G04.FR.09): the station set Inoperative: every connector Unavailable after a restart."""
    st = await configured(csms, make_station, connectors=2)
    assert await availability(csms, "Inoperative", {"id": 1}) == {"status": "Accepted"}
    await status_of(csms, 1, 1, "Unavailable")
    await st.stop()
    n = len(csms.received)
    st = await make_station(csms, protocols=["ocpp2.0.1"], connectors=2, data_dir=st.cfg.data_dir)
    assert (await status_of(csms, 1, 1, "Unavailable", after=n))["evseId"] == 1
    await status_of(csms, 2, 1, "Available", after=n)
    assert await availability(csms, "Inoperative") == {"status": "Accepted"}
    await status_of(csms, 2, 1, "Unavailable", after=n)
    await st.stop()
    n = len(csms.received)
    await make_station(csms, protocols=["ocpp2.0.1"], connectors=2, data_dir=st.cfg.data_dir)
    for evse_id in (1, 2):
        await status_of(csms, evse_id, 1, "Unavailable", after=n)
    assert [r.payload["connectorStatus"] for r in csms.received[n:] if r.action == "StatusNotification"] == \
        ["Unavailable", "Unavailable"]
    assert csms.violations == []


# ---- J Meter values ------------------------------------------------------------------------------------------
async def test_tc_j_08_cs_transaction_begin_reading_once_the_evse_is_known(csms, make_station):
    """TC_J_08_CS (J02.FR.01-04/10, E03.FR.11): TxStartPoint Authorized with an idToken presented before the EVSE
    is known: the first TransactionEvent that names the evse carries a Transaction.Begin reading of the
    TxStartedMeasurands."""
    st = await configured(csms, make_station, TxStartPoint="Authorized")
    assert await set_var(csms, "SampledDataCtrlr", "TxStartedMeasurands", "Energy.Active.Import.Register") == \
        "Accepted"
    st.hw.present_tag(HEX_TAG)
    tx_id = (await started(csms))["transactionInfo"]["transactionId"]
    st.hw.ev_plug(1)
    await updated(csms, tx_id, "CablePluggedIn")
    first = next(p for p in tx_events(csms) if p["transactionInfo"]["transactionId"] == tx_id and "evse" in p)
    contexts = [sv.get("context") for mv in first.get("meterValue", []) for sv in mv["sampledValue"]]
    assert "Transaction.Begin" in contexts, first
    await stop_with_tag(csms, st, tx_id)
    assert csms.violations == []


# ---- P DataTransfer / customData -----------------------------------------------------------------------------
async def test_tc_p_03_cs_custom_data_is_accepted_and_ignored(csms, make_station):
    """TC_P_03_CS: a SetVariablesRequest carrying customData (at the top and in the item, Part 2 §2.13 CustomData:
    vendorId plus any vendor properties) is handled like one without: OfflineThreshold set to 200 is Accepted and
    read back as 200."""
    await configured(csms, make_station)
    custom = {"vendorId": "org.openchargealliance.octt", "note": "ignored"}
    res = await csms.call(ID, "SetVariables", {"customData": custom, "setVariableData": [{
        "customData": custom, "attributeType": "Actual", "attributeValue": "200",
        "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "OfflineThreshold"}}]})
    assert res["setVariableResult"][0]["attributeStatus"] == "Accepted"
    assert await get_var(csms, "OCPPCommCtrlr", "OfflineThreshold") == "200"
    assert csms.violations == []
