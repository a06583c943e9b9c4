"""OCPP 1.6 Core end to end: a real station (engine + adapter + SQLite + websockets) against the strict CSMS."""
from __future__ import annotations

import asyncio

import pytest

from helpers import booted
from secure_cp.sim.csms import CallErrorReceived




async def test_full_session_plug_then_tag(csms, make_station):
    """Boot, status of connectors 0..N, plug, authorize, start, meter values, stop by same tag, unplug."""
    st = await booted(csms, make_station, ocpp={"MeterValueSampleInterval": "1",
                                               "StopTxnSampledData": "Energy.Active.Import.Register"})
    hw = st.hw
    boot = csms.received[0]
    assert boot.action == "BootNotification"
    assert boot.payload["chargePointVendor"] == "secure-cp"
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Available")
    hw.ev_plug(1)
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing")
    hw.present_tag("TAG1")
    auth = await csms.wait_for("Authorize")
    assert auth.payload == {"idTag": "TAG1"}
    start = await csms.wait_for("StartTransaction")
    assert start.payload["connectorId"] == 1 and start.payload["idTag"] == "TAG1"
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Charging")
    mv = await csms.wait_for("MeterValues", lambda p: "transactionId" in p)
    tx_id = mv.payload["transactionId"]
    assert tx_id in csms.transactions
    hw.present_tag("TAG1")
    stop = await csms.wait_for("StopTransaction")
    assert stop.payload["transactionId"] == tx_id
    assert stop.payload["reason"] == "Local"
    assert stop.payload["meterStop"] >= start.payload["meterStart"]
    contexts = [sv["context"] for m in stop.payload["transactionData"] for sv in m["sampledValue"]]
    assert contexts[0] == "Transaction.Begin" and contexts[-1] == "Transaction.End"
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Finishing")
    hw.ev_plug(1, False)
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Available", after=len(csms.received) - 1)
    assert csms.violations == []
    assert csms.duplicates == []
    assert csms.transactions[tx_id].stop is not None


async def test_remote_start_and_stop(csms, make_station):
    st = await booted(csms, make_station, ocpp={"AuthorizeRemoteTxRequests": "true"})
    res = await csms.call("CP1", "RemoteStartTransaction", {"idTag": "TAG2", "connectorId": 1})
    assert res == {"status": "Accepted"}
    await csms.wait_for("Authorize", lambda p: p["idTag"] == "TAG2")   # AuthorizeRemoteTxRequests = true
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing")
    st.hw.ev_plug(1)
    start = await csms.wait_for("StartTransaction")
    await asyncio.sleep(0.1)
    tx_id = next(iter(csms.transactions))
    assert csms.transactions[tx_id].start == start.payload
    assert await csms.call("CP1", "RemoteStopTransaction", {"transactionId": tx_id + 100}) == {"status": "Rejected"}
    assert await csms.call("CP1", "RemoteStopTransaction", {"transactionId": tx_id}) == {"status": "Accepted"}
    stop = await csms.wait_for("StopTransaction")
    assert stop.payload["reason"] == "Remote" and stop.payload["transactionId"] == tx_id
    assert csms.violations == []


async def test_unknown_and_unsupported_actions_get_callerrors(csms, make_station):
    st = await booted(csms, make_station)
    with pytest.raises(CallErrorReceived) as e:
        await csms.call("CP1", "ReserveNow", {"connectorId": 1, "expiryDate": "2030-01-01T00:00:00Z",
                                              "idTag": "TAG1", "reservationId": 1})
    assert e.value.code == "NotSupported"
    await csms.send_raw("CP1", '[2,"x1","FooBar",{}]')
    await csms.send_raw("CP1", 'not json at all')
    # the station is still alive and answers
    assert await csms.call("CP1", "ClearCache", {}) == {"status": "Accepted"}
    sent = [f.text for f in st.station.frames if f.direction == "tx"]
    assert '[4,"x1","NotImplemented"' in "".join(sent)
    # non-JSON text has no recoverable message id: dropped (OCPP-J 1.6 §4.2.3), nothing sent for it
    assert not any("not json" in t for t in sent)


async def test_get_and_change_configuration(csms, make_station):
    await booted(csms, make_station)
    res = await csms.call("CP1", "GetConfiguration", {})
    keys = {k["key"]: k for k in res["configurationKey"]}
    assert "HeartbeatInterval" in keys and keys["NumberOfConnectors"]["readonly"] is True
    assert "AuthorizationKey" not in keys or "value" not in keys["AuthorizationKey"]
    assert (await csms.call("CP1", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "120"}))["status"] \
        == "Accepted"
    assert (await csms.call("CP1", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "-5"}))["status"] \
        == "Rejected"
    assert (await csms.call("CP1", "ChangeConfiguration", {"key": "NoSuchKey", "value": "1"}))["status"] \
        == "NotSupported"
    assert (await csms.call("CP1", "ChangeConfiguration", {"key": "NumberOfConnectors", "value": "3"}))["status"] \
        == "Rejected"
    res = await csms.call("CP1", "GetConfiguration", {"key": ["HeartbeatInterval", "Nope"]})
    assert res["configurationKey"][0]["value"] == "120" and res["unknownKey"] == ["Nope"]


async def test_change_availability_persists_and_schedules(csms, make_station, tmp_path):
    st = await booted(csms, make_station, connectors=2)
    assert (await csms.call("CP1", "ChangeAvailability", {"connectorId": 2, "type": "Inoperative"})) == \
        {"status": "Accepted"}
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 2 and p["status"] == "Unavailable")
    assert (await csms.call("CP1", "ChangeAvailability", {"connectorId": 3, "type": "Inoperative"})) == \
        {"status": "Rejected"}
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await csms.wait_for("StartTransaction")
    assert (await csms.call("CP1", "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})) == \
        {"status": "Scheduled"}
    n = len(csms.received)
    st.hw.present_tag("TAG1")
    await csms.wait_for("StopTransaction")
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Unavailable",
                        after=n)
    # persisted: after a restart both connectors come back Unavailable
    await st.stop()
    n = len(csms.received)
    await make_station(csms, connectors=2, data_dir=st.cfg.data_dir)
    await csms.wait_for("BootNotification", after=n)
    for cid in (1, 2):
        await csms.wait_for("StatusNotification", lambda p, c=cid: p["connectorId"] == c and p["status"] == "Unavailable",
                            after=n)
    assert csms.violations == []


async def test_unlock_connector_stops_transaction(csms, make_station):
    st = await booted(csms, make_station)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG3")
    await csms.wait_for("StartTransaction")
    assert await csms.call("CP1", "UnlockConnector", {"connectorId": 1}) == {"status": "Unlocked"}
    stop = await csms.wait_for("StopTransaction")
    assert stop.payload["reason"] == "UnlockCommand"
    assert await csms.call("CP1", "UnlockConnector", {"connectorId": 7}) == {"status": "NotSupported"}


async def test_reset_soft_stops_transactions_and_reboots(csms, make_station):
    st = await booted(csms, make_station)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await csms.wait_for("StartTransaction")
    n = len(csms.received)
    assert await csms.call("CP1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}
    stop = await csms.wait_for("StopTransaction", after=n)
    assert stop.payload["reason"] == "SoftReset"
    await csms.wait_for("BootNotification", after=n)
    assert st.hw.resets == [False]
    assert csms.violations == []


async def test_data_transfer_registry(csms, make_station):
    await booted(csms, make_station)
    r = await csms.call("CP1", "DataTransfer", {"vendorId": "secure-cp", "messageId": "echo", "data": "hi"})
    assert r == {"status": "Accepted", "data": "hi"}
    r = await csms.call("CP1", "DataTransfer", {"vendorId": "com.unknown"})
    assert r == {"status": "UnknownVendorId"}


async def test_remote_start_without_authorize_when_not_required(csms, make_station):
    st = await booted(csms, make_station, ocpp={"AuthorizeRemoteTxRequests": "false"})
    st.hw.ev_plug(1)
    assert await csms.call("CP1", "RemoteStartTransaction", {"idTag": "TAG5"}) == {"status": "Accepted"}
    start = await csms.wait_for("StartTransaction")
    assert start.payload["idTag"] == "TAG5"
    assert not any(r.action == "Authorize" for r in csms.received)
    # a second remote start while the only connector is busy is rejected
    assert await csms.call("CP1", "RemoteStartTransaction", {"idTag": "TAG6"}) == {"status": "Rejected"}


async def test_security_profile_1_basic_auth(csms_auth, make_station):
    """Security profile 1 (1.6 security whitepaper §2.4): HTTP Basic auth, user = identity, password = AuthorizationKey."""
    from csms_fixture import AUTH_IDENTITY, AUTH_PASSWORD
    await make_station(csms_auth, identity=AUTH_IDENTITY, security_profile=1, password=AUTH_PASSWORD.decode())
    await csms_auth.wait_for("BootNotification", identity=AUTH_IDENTITY)
    assert csms_auth.connected[AUTH_IDENTITY] == "ocpp1.6"


async def test_security_profile_1_wrong_password_is_refused(csms_auth, make_station):
    from csms_fixture import AUTH_IDENTITY
    await make_station(csms_auth, identity=AUTH_IDENTITY, security_profile=1, password="ff" * 16)
    for _ in range(100):
        if csms_auth.refused:
            break
        await asyncio.sleep(0.05)
    assert csms_auth.refused and not any(r.action == "BootNotification" for r in csms_auth.received)


async def test_data_transfer_to_csms(csms, make_station):
    """CP -> CS DataTransfer (1.6 §4.3): vendor known -> Accepted with data; unknown vendor -> UnknownVendorId."""
    st = await booted(csms, make_station)
    res = await st.station.data_transfer("secure-cp.test", "echo", "ping")
    assert res == {"status": "Accepted", "data": "ping"}
    res = await st.station.data_transfer("org.nobody")
    assert res["status"] == "UnknownVendorId"
