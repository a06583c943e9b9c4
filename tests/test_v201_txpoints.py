"""OCPP 2.0.1 transaction start/stop points end to end (Part 2 E01-E06; Part 6 TC_E_xx_CS): a real station
(engine + 2.0.1 adapter + SQLite + websockets) against the strict CSMS, TxCtrlr.TxStartPoint / TxStopPoint set by
SetVariables. Every test checks the triggerReason sequence, seqNo without gaps and ``csms.violations == []``."""
from __future__ import annotations

from test_v201_core import (HEX_TAG, assert_complete, barrier, booted, ended, plug_and_start, set_var, started,
                            stop_with_tag, tx_events, updated)

TOKEN = {"idToken": HEX_TAG, "type": "ISO14443"}


async def configured(csms, make_station, start: str | None = None, stop: str | None = None):
    csms.authorize[HEX_TAG] = {"status": "Accepted"}
    st = await booted(csms, make_station)
    if start is not None:
        assert await set_var(csms, "TxCtrlr", "TxStartPoint", start) == "Accepted"
    if stop is not None:
        assert await set_var(csms, "TxCtrlr", "TxStopPoint", stop) == "Accepted"
    return st


async def test_tc_e_09_cs_start_point_evconnected_plug_starts_tag_updates(csms, make_station):
    """TC_E_09_CS (E01.FR.02, E02): TxStartPoint EVConnected: the plug starts the transaction (Started
    CablePluggedIn, no idToken, chargingState EVConnected, no power); the tag -> Updated Authorized with the
    idToken and chargingState Charging."""
    st = await configured(csms, make_station, start="EVConnected")
    st.hw.ev_plug(1)
    start = await started(csms)
    tx_id = start["transactionInfo"]["transactionId"]
    assert start["triggerReason"] == "CablePluggedIn" and "idToken" not in start
    assert start["transactionInfo"]["chargingState"] == "EVConnected"
    assert not st.hw.connectors[1].permitted
    n = len(csms.received)
    st.hw.present_tag(HEX_TAG)
    upd = await updated(csms, tx_id, "Authorized", after=n)
    assert upd["idToken"] == TOKEN and upd["transactionInfo"]["chargingState"] == "Charging"
    assert st.hw.connectors[1].permitted
    end = await stop_with_tag(csms, st, tx_id)
    assert end["triggerReason"] == "StopAuthorized" and end["transactionInfo"]["stoppedReason"] == "Local"
    assert csms.violations == []


async def test_tc_e_10_cs_start_point_authorized_tag_starts_plug_updates(csms, make_station):
    """TC_E_10_CS (E01.FR.03, E03): TxStartPoint Authorized: the tag starts the transaction (Started Authorized
    with idToken, chargingState Idle, no cable yet); the plug -> Updated CablePluggedIn (EVConnected), power on:
    Updated ChargingStateChanged (Charging)."""
    st = await configured(csms, make_station, start="Authorized")
    st.hw.present_tag(HEX_TAG)
    start = await started(csms)
    tx_id = start["transactionInfo"]["transactionId"]
    assert start["triggerReason"] == "Authorized" and start["idToken"] == TOKEN
    assert start["transactionInfo"]["chargingState"] == "Idle"
    n = len(csms.received)
    st.hw.ev_plug(1)
    await updated(csms, tx_id, "CablePluggedIn", after=n, state="EVConnected")
    await updated(csms, tx_id, "ChargingStateChanged", after=n, state="Charging")
    assert st.hw.connectors[1].permitted and st.hw.connectors[1].locked
    st.hw.ev_plug(1, False)
    end = await ended(csms, tx_id)
    assert end["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert_complete(csms, tx_id)
    assert csms.violations == []


async def test_tc_e_01_cs_start_point_power_path_closed(csms, make_station):
    """TC_E_01_CS (E01.FR.05): TxStartPoint PowerPathClosed (the default, 1.6-compatible): the plug alone starts
    nothing; the tag starts it with the power path closed."""
    st = await configured(csms, make_station, start="PowerPathClosed")
    st.hw.ev_plug(1)
    await csms.wait_for("StatusNotification", lambda p: p["connectorStatus"] == "Occupied")
    await barrier(csms)
    assert tx_events(csms) == []
    st.hw.present_tag(HEX_TAG)
    start = await started(csms)
    tx_id = start["transactionInfo"]["transactionId"]
    assert start["triggerReason"] == "Authorized" and start["idToken"] == TOKEN
    assert start["transactionInfo"]["chargingState"] == "Charging"
    await stop_with_tag(csms, st, tx_id)
    assert csms.violations == []


async def test_tc_e_20_cs_stop_point_evconnected_only(csms, make_station):
    """TC_E_20_CS (E06.FR.02, TxStopPoint EVConnected only): the same tag again only de-authorizes (Updated Deauthorized, the
    power path opens, the transaction goes on); the unplug ends it (EVDisconnected)."""
    st = await configured(csms, make_station, stop="EVConnected")
    tx_id = await plug_and_start(csms, st, HEX_TAG)
    n = len(csms.received)
    st.hw.present_tag(HEX_TAG)
    await updated(csms, tx_id, "Deauthorized", after=n, state="EVConnected")
    assert not st.hw.connectors[1].permitted
    await barrier(csms)
    assert not [p for p in tx_events(csms, n) if p["eventType"] == "Ended"]
    st.hw.ev_plug(1, False)
    end = await ended(csms, tx_id)
    assert end["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert end["triggerReason"] == "EVCommunicationLost"
    assert_complete(csms, tx_id)
    assert csms.violations == []


async def test_tc_e_15_cs_stop_point_authorized_only(csms, make_station):
    """TC_E_15_CS (E06.FR.03, TxStopPoint Authorized only): with StopTxOnEVSideDisconnect false (E10) unplugging does
    not end the transaction (Updated EVCommunicationLost, chargingState Idle); plugging back -> Updated
    CablePluggedIn; the tag ends it."""
    st = await configured(csms, make_station, stop="Authorized")
    assert await set_var(csms, "TxCtrlr", "StopTxOnEVSideDisconnect", "false") == "Accepted"
    tx_id = await plug_and_start(csms, st, HEX_TAG)
    n = len(csms.received)
    st.hw.ev_plug(1, False)
    await updated(csms, tx_id, "EVCommunicationLost", after=n, state="Idle")
    st.hw.ev_plug(1)
    await updated(csms, tx_id, "CablePluggedIn", after=n)
    end = await stop_with_tag(csms, st, tx_id)
    assert end["triggerReason"] == "StopAuthorized" and end["transactionInfo"]["stoppedReason"] == "Local"
    assert csms.violations == []


async def test_f02_remote_start_authorizes_transaction_started_on_plug(csms, make_station):
    """F02 with TxStartPoint EVConnected: the cable started the transaction; RequestStartTransaction authorizes it
    -> Updated RemoteStart with the remoteStartId and idToken."""
    st = await configured(csms, make_station, start="EVConnected")
    st.hw.ev_plug(1)
    tx_id = (await started(csms))["transactionInfo"]["transactionId"]
    res = await csms.call("CP1", "RequestStartTransaction",
                          {"idToken": {"idToken": "R1", "type": "Central"}, "remoteStartId": 5, "evseId": 1})
    assert res["status"] == "Accepted"
    upd = await updated(csms, tx_id, "RemoteStart")
    assert upd["transactionInfo"]["remoteStartId"] == 5 and upd["idToken"] == {"idToken": "R1", "type": "Central"}
    st.hw.ev_plug(1, False)
    await ended(csms, tx_id)
    assert_complete(csms, tx_id)
    assert csms.violations == []
