"""Tests of the local strict CSMS (secure_cp.sim.csms) with a raw WebSocket client speaking OCPP-J by hand.

The client is deliberately not our station stack: these tests pin down the CSMS that the integration tests
use as an independent judge, so it must be checked against hand-written frames.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
from typing import Any

import pytest
from csms_fixture import AUTH_IDENTITY, AUTH_PASSWORD
from rfc3339_validator import validate_rfc3339
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from raw_station import RawStation
from secure_cp.sim.csms import CallErrorReceived, Csms, Record, format_record

BOOT = {"chargePointVendor": "secure-cp", "chargePointModel": "Sim-1"}
TS = "2024-05-01T10:00:00.000Z"


def station(csms: Csms, identity: str = "CP1", **kwargs: Any) -> connect:
    kwargs.setdefault("subprotocols", ["ocpp1.6"])
    return connect(f"{csms.url}/{identity}", **kwargs)


def start_payload(timestamp: str = TS, connector: int = 1, id_tag: str = "TAG1", meter: int = 0) -> dict:
    return {"connectorId": connector, "idTag": id_tag, "meterStart": meter, "timestamp": timestamp}


def meter_payload(tx: int, value: str, timestamp: str = TS) -> dict:
    return {
        "connectorId": 1,
        "transactionId": tx,
        "meterValue": [{"timestamp": timestamp, "sampledValue": [{"value": value, "unit": "Wh"}]}],
    }


# ---- connection, BootNotification, strict validation ------------------------------------------------------------


async def test_boot_notification_accepted_with_rfc3339_current_time(csms: Csms) -> None:
    """OCPP 1.6 §4.2 / §6.4, OCPP-J 1.6 §3.2: subprotocol ocpp1.6 negotiated, Boot accepted, currentTime RFC 3339."""
    async with station(csms) as ws:
        assert ws.subprotocol == "ocpp1.6"
        assert await csms.wait_connected("CP1") == "ocpp1.6"
        conf = await RawStation(ws).result("BootNotification", BOOT)
    assert conf["status"] == "Accepted"
    assert conf["interval"] == 300
    assert validate_rfc3339(conf["currentTime"]) and conf["currentTime"].endswith("Z")
    record = await csms.wait_for("BootNotification", identity="CP1")
    assert record.payload == BOOT and record.unique_id == "m1"
    assert csms.violations == []


async def test_boot_status_and_interval_knobs(csms: Csms) -> None:
    csms.boot_status, csms.boot_interval = "Pending", 7
    async with station(csms) as ws:
        conf = await RawStation(ws).result("BootNotification", BOOT)
    assert (conf["status"], conf["interval"]) == ("Pending", 7)


async def test_bad_date_time_is_a_violation_answered_with_callerror(csms: Csms) -> None:
    """A date-time without 'T' and offset passes the ocpp package's own check; the strict layer catches it."""
    async with station(csms) as ws:
        raw = RawStation(ws)
        frame = await raw.call(
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": "2024-01-01 10:00"},
        )
        assert frame[0] == 4
        assert frame[2] == "FormationViolation"
        assert frame[4] == {}
        # the connection stays usable after a rejected CALL
        assert (await raw.result("Heartbeat", {}))["currentTime"]
    assert len(csms.violations) == 1
    assert "timestamp" in csms.violations[0] and "date-time" in csms.violations[0]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"chargePointVendor": "v"}, "ProtocolError"),  # required field missing
        ({**BOOT, "extra": 1}, "FormationViolation"),  # additionalProperties
        ({**BOOT, "chargePointModel": 5}, "TypeConstraintViolation"),
        ({**BOOT, "chargePointModel": "x" * 21}, "TypeConstraintViolation"),  # CiString20Type
    ],
)
async def test_schema_violations_get_ocpp_j_error_codes(csms: Csms, payload: dict, code: str) -> None:
    """OCPP-J 1.6 §4.2.3 Table 7: the errorCode names what is wrong."""
    async with station(csms) as ws:
        frame = await RawStation(ws).call("BootNotification", payload)
    assert frame[0] == 4 and frame[2] == code
    assert len(csms.violations) == 1
    assert len(csms.received) == 1  # recorded even though rejected: it is what the station sent


async def test_malformed_frames(csms: Csms) -> None:
    """OCPP-J 1.6 §4.1-§4.2: broken frames are violations; broken CALLs with a readable id get a CALLERROR."""
    async with station(csms) as ws:
        raw = RawStation(ws)
        await ws.send("this is not json")  # unanswerable: no message id
        await ws.send(json.dumps([5, "x1", "Heartbeat", {}]))  # unknown MessageTypeId: ignored (§4.1.3)
        await ws.send('[2, "x2", "Heartbeat", {"a": 1, "a": 2}]')  # duplicate key
        assert (await raw.recv())[:3] == [4, "x2", "FormationViolation"]
        await ws.send(json.dumps([2, "x3", "Heartbeat", []]))  # payload not an object
        assert (await raw.recv())[:3] == [4, "x3", "FormationViolation"]
        await ws.send(json.dumps([2, "y" * 37, "Heartbeat", {}]))  # message id > 36 characters (§4.1.4)
        assert (await raw.recv())[2] == "FormationViolation"
        assert (await raw.call("FlyToTheMoon", {}))[2] == "NotImplemented"
        assert (await raw.call("Reset", {"type": "Soft"}))[2] == "NotSupported"  # a CSMS->CP action
        await ws.send(json.dumps([3, "never-sent", {}]))  # answer to a CALL the CSMS never made
        await ws.send(b"\x00binary")
        # a null payload is allowed notation for "no payload" (§4.2.1)
        await ws.send(json.dumps([2, "x4", "Heartbeat", None]))
        assert (await raw.recv())[0:2] == [3, "x4"]
    assert len(csms.violations) == 9, csms.violations


async def test_reused_message_id_is_a_violation(csms: Csms) -> None:
    """OCPP-J 1.6 §4.1.4: a CALL's message id differs from all earlier ones on the same connection."""
    async with station(csms) as ws:
        raw = RawStation(ws)
        await raw.send_call("Heartbeat", {}, "same")
        await raw.recv()
        await raw.send_call("Heartbeat", {}, "same")
        assert (await raw.recv())[0] == 3  # still answered
    assert csms.violations == ["CP1: message id 'same' reused for Heartbeat"]


# ---- transactions and deduplication ---------------------------------------------------------------------------


async def test_transaction_ids_increase_across_stations(csms: Csms) -> None:
    async with station(csms, "CP1") as ws1, station(csms, "CP2") as ws2:
        a, b = RawStation(ws1), RawStation(ws2)
        first = await a.result("StartTransaction", start_payload("2024-05-01T10:00:00Z"))
        second = await b.result("StartTransaction", start_payload("2024-05-01T10:00:00Z"))
        third = await a.result("StartTransaction", start_payload("2024-05-01T11:00:00Z", connector=2))
    assert [first["transactionId"], second["transactionId"], third["transactionId"]] == [1, 2, 3]
    assert first["idTagInfo"] == {"status": "Accepted"}
    assert csms.transactions[2].identity == "CP2"
    assert csms.duplicates == [] and csms.violations == []


async def test_duplicate_start_transaction_gets_same_id_and_is_recorded(csms: Csms) -> None:
    """At-least-once delivery: a resent StartTransaction is recognised and answered with the same id."""
    async with station(csms) as ws:
        raw = RawStation(ws)
        first = await raw.result("StartTransaction", start_payload())
        again = await raw.result("StartTransaction", start_payload())
    assert again["transactionId"] == first["transactionId"] == 1
    assert len(csms.duplicates) == 1 and "StartTransaction" in csms.duplicates[0]
    assert list(csms.transactions) == [1]
    assert len(csms.received) == 2


async def test_unknown_id_tag_is_invalid_and_authorize_is_editable(csms: Csms) -> None:
    async with station(csms) as ws:
        raw = RawStation(ws)
        assert (await raw.result("Authorize", {"idTag": "NOPE"}))["idTagInfo"] == {"status": "Invalid"}
        csms.authorize["NOPE"] = {"status": "Blocked"}
        assert (await raw.result("Authorize", {"idTag": "NOPE"}))["idTagInfo"] == {"status": "Blocked"}
        tx = await raw.result("StartTransaction", start_payload(id_tag="DEMO"))
    assert tx["idTagInfo"] == {"status": "Accepted"}


async def test_meter_values_and_stop_are_recorded_with_duplicates(csms: Csms) -> None:
    async with station(csms) as ws:
        raw = RawStation(ws)
        tx = (await raw.result("StartTransaction", start_payload()))["transactionId"]
        assert await raw.result("MeterValues", meter_payload(tx, "100")) == {}
        await raw.result("MeterValues", meter_payload(tx, "200"))
        await raw.result("MeterValues", meter_payload(tx, "200"))  # exact repeat
        stop = {"transactionId": tx, "meterStop": 300, "timestamp": TS, "idTag": "TAG1", "reason": "Local"}
        assert (await raw.result("StopTransaction", stop))["idTagInfo"] == {"status": "Accepted"}
        await raw.result("StopTransaction", stop)  # repeat
        assert await raw.result("StopTransaction", {"transactionId": 99, "meterStop": 1, "timestamp": TS}) == {}
        await raw.result("MeterValues", meter_payload(77, "1"))
    record = csms.transactions[tx]
    assert [m["meterValue"][0]["sampledValue"][0]["value"] for m in record.meter_values] == ["100", "200"]
    assert record.stop == stop
    assert len(csms.duplicates) == 2
    assert "MeterValues" in csms.duplicates[0] and "StopTransaction" in csms.duplicates[1]
    assert csms.violations == [
        "CP1: StopTransaction for unknown transactionId 99",
        "CP1: MeterValues for unknown transactionId 77",
    ]


# ---- the other station->CSMS actions --------------------------------------------------------------------------


async def test_data_transfer_echo_and_unknown_vendor(csms: Csms) -> None:
    """OCPP 1.6 §4.3: unknown vendorId -> UnknownVendorId (no data); messageId mismatch -> UnknownMessageId."""
    async with station(csms) as ws:
        raw = RawStation(ws)
        echo = {"vendorId": "secure-cp.test", "messageId": "echo", "data": "hello"}
        assert await raw.result("DataTransfer", echo) == {"status": "Accepted", "data": "hello"}
        assert await raw.result("DataTransfer", {"vendorId": "com.other"}) == {"status": "UnknownVendorId"}
        assert await raw.result("DataTransfer", {"vendorId": "secure-cp.test", "messageId": "x"}) == {
            "status": "UnknownMessageId"
        }


@pytest.mark.parametrize(
    ("action", "payload", "expected"),
    [
        ("DiagnosticsStatusNotification", {"status": "Uploaded"}, {}),
        ("FirmwareStatusNotification", {"status": "Installed"}, {}),
        ("StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Available"}, {}),
        ("SecurityEventNotification", {"type": "StartupOfTheDevice", "timestamp": TS}, {}),
        ("SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----"}, {"status": "Accepted"}),
        ("LogStatusNotification", {"status": "Uploaded", "requestId": 1}, {}),
        ("SignedFirmwareStatusNotification", {"status": "Downloaded", "requestId": 2}, {}),
    ],
)
async def test_notification_handlers(csms: Csms, action: str, payload: dict, expected: dict) -> None:
    async with station(csms) as ws:
        assert await RawStation(ws).result(action, payload) == expected
    assert (await csms.wait_for(action)).payload == payload
    assert csms.violations == []


# ---- CSMS -> station calls -------------------------------------------------------------------------------------


async def call_received(csms: Csms, ws, action: str, payload: dict) -> tuple[asyncio.Task, list]:
    """Once CP1 is connected, the CSMS calls ``action``: the pending call (a task) and the frame the station got."""
    await csms.wait_connected("CP1")
    task = asyncio.create_task(csms.call("CP1", action, payload))
    return task, await RawStation(ws).recv()


async def test_call_round_trip_reset(csms: Csms) -> None:
    async with station(csms) as ws:
        task, frame = await call_received(csms, ws, "Reset", {"type": "Soft"})
        assert frame[0] == 2 and frame[2:] == ["Reset", {"type": "Soft"}]
        assert len(frame[1]) <= 36
        await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
        assert await task == {"status": "Accepted"}
    assert csms.responses[0].action == "Reset" and csms.responses[0].payload == {"status": "Accepted"}
    assert csms.violations == []


async def test_call_error_from_station_raises(csms: Csms) -> None:
    async with station(csms) as ws:
        task, frame = await call_received(csms, ws, "ClearCache", {})
        await ws.send(json.dumps([4, frame[1], "NotSupported", "no cache", {"why": "none"}]))
        with pytest.raises(CallErrorReceived) as info:
            await task
    assert (info.value.code, info.value.description, info.value.details) == ("NotSupported", "no cache", {"why": "none"})


async def test_invalid_call_result_from_station_is_a_violation(csms: Csms) -> None:
    async with station(csms) as ws:
        task, frame = await call_received(csms, ws, "Reset", {"type": "Hard"})
        await ws.send(json.dumps([3, frame[1], {"status": "Maybe"}]))
        assert await task == {"status": "Maybe"}
    assert len(csms.violations) == 1 and "Reset response" in csms.violations[0]


async def test_call_validates_request_with_exact_decimals(csms: Csms) -> None:
    """multipleOf 0.1 is checked on Decimals: 21.4 is valid (a float check would reject it), 21.45 is not."""

    def profile(limit: float) -> dict:
        return {
            "connectorId": 1,
            "csChargingProfiles": {
                "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Absolute",
                "chargingSchedule": {
                    "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
                },
            },
        }

    async with station(csms) as ws:
        raw = RawStation(ws)
        await csms.wait_connected("CP1")
        with pytest.raises(ValueError, match="multiple"):
            await csms.call("CP1", "SetChargingProfile", profile(21.45))
        with pytest.raises(ValueError):
            await csms.call("CP1", "BootNotification", BOOT)  # not a CSMS->CP action
        task = asyncio.create_task(csms.call("CP1", "SetChargingProfile", profile(21.4)))
        frame = await raw.recv()
        assert frame[3]["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 21.4
        await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
        assert await task == {"status": "Accepted"}


async def test_call_times_out_and_fails_on_disconnect(csms: Csms) -> None:
    async with station(csms) as ws:
        await csms.wait_connected("CP1")
        with pytest.raises(TimeoutError):
            await csms.call("CP1", "ClearCache", {}, timeout=0.05)
        task = asyncio.create_task(csms.call("CP1", "ClearCache", {}))
        await RawStation(ws).recv()
    with pytest.raises(ConnectionError):
        await task
    with pytest.raises(KeyError):
        await csms.call("CP1", "ClearCache", {})


async def test_send_raw_and_disconnect(csms: Csms) -> None:
    async with station(csms) as ws:
        await csms.wait_connected("CP1")
        await csms.send_raw("CP1", "[2,")
        assert await ws.recv() == "[2,"
        await csms.disconnect("CP1")
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert csms.connected == {}


# ---- knobs --------------------------------------------------------------------------------------------------------


async def test_fail_next_answers_callerror_then_recovers(csms: Csms) -> None:
    csms.fail_next("Heartbeat", "InternalError", count=2)
    async with station(csms) as ws:
        raw = RawStation(ws)
        assert (await raw.call("Heartbeat", {}))[2] == "InternalError"
        assert (await raw.call("Heartbeat", {}))[2] == "InternalError"
        assert (await raw.call("Heartbeat", {}))[0] == 3
    assert len(csms.received) == 3 and csms.violations == []


async def test_fail_next_start_transaction_is_not_processed(csms: Csms) -> None:
    csms.fail_next("StartTransaction", "GenericError")
    async with station(csms) as ws:
        raw = RawStation(ws)
        assert (await raw.call("StartTransaction", start_payload()))[2] == "GenericError"
        assert (await raw.result("StartTransaction", start_payload()))["transactionId"] == 1
    assert csms.duplicates == []


async def test_drop_next_never_answers_and_retry_is_a_duplicate(csms: Csms) -> None:
    """drop_next models a lost answer: processed, unanswered; the station's retry is then deduplicated."""
    csms.drop_next("StartTransaction")
    async with station(csms) as ws:
        raw = RawStation(ws)
        dropped = await raw.send_call("StartTransaction", start_payload())
        await csms.wait_for("StartTransaction")
        retry = await raw.send_call("StartTransaction", start_payload())
        frame = await raw.recv()  # the first frame we get answers the retry: the dropped CALL got none
        assert frame[1] == retry != dropped
        assert frame[2]["transactionId"] == 1
    assert len(csms.duplicates) == 1


async def test_wait_for_predicate_after_and_timeout(csms: Csms) -> None:
    async with station(csms) as ws:
        raw = RawStation(ws)
        await raw.result("Authorize", {"idTag": "TAG1"})
        await raw.result("Authorize", {"idTag": "TAG2"})
    record = await csms.wait_for("Authorize", lambda p: p["idTag"] == "TAG2")
    assert record is csms.received[1]
    assert (await csms.wait_for("Authorize", after=1)).payload["idTag"] == "TAG2"
    with pytest.raises(TimeoutError):
        await csms.wait_for("Authorize", after=2, timeout=0.05)
    with pytest.raises(TimeoutError):
        await csms.wait_for("Authorize", identity="CP9", timeout=0.05)


# ---- subprotocol negotiation and HTTP Basic auth ------------------------------------------------------------------


async def test_no_subprotocol_offered_handshake_completes_then_closed(csms: Csms) -> None:
    """OCPP-J 1.6 §3.2: complete the handshake without Sec-WebSocket-Protocol, then close immediately."""
    async with connect(f"{csms.url}/CP1") as ws:
        assert ws.subprotocol is None
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1002
    assert csms.connected == {}
    assert len(csms.refused) == 1 and len(csms.violations) == 1


async def test_unsupported_subprotocol_is_refused_not_a_violation(csms: Csms) -> None:
    async with connect(f"{csms.url}/CP1", subprotocols=["ocpp2.1"]) as ws:
        assert ws.subprotocol is None
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert "ocpp2.1" in csms.refused[0] and csms.violations == []


async def test_basic_auth_accepted(csms_auth: Csms) -> None:
    """Security Whitepaper A00.FR.202-205: username = identity, password = AuthorizationKey."""
    token = base64.b64encode(AUTH_IDENTITY.encode() + b":" + AUTH_PASSWORD).decode()
    async with station(csms_auth, AUTH_IDENTITY, additional_headers={"Authorization": f"Basic {token}"}) as ws:
        assert (await RawStation(ws).result("BootNotification", BOOT))["status"] == "Accepted"
    assert csms_auth.refused == []


@pytest.mark.parametrize(
    ("identity", "credentials"),
    [
        (AUTH_IDENTITY, None),
        (AUTH_IDENTITY, AUTH_IDENTITY.encode() + b":wrong-password!"),
        ("CP-OTHER", b"CP-OTHER:" + AUTH_PASSWORD),
        ("CP-OTHER", AUTH_IDENTITY.encode() + b":" + AUTH_PASSWORD),  # username != identity in URL
    ],
)
async def test_basic_auth_rejected_with_401(csms_auth: Csms, identity: str, credentials: bytes | None) -> None:
    headers = {} if credentials is None else {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
    with pytest.raises(InvalidStatus) as info:
        async with station(csms_auth, identity, additional_headers=headers):
            pass
    assert info.value.response.status_code == 401
    assert "Basic" in info.value.response.headers["WWW-Authenticate"]
    assert len(csms_auth.refused) == 1 and csms_auth.connected == {}


async def test_missing_identity_is_404(csms: Csms) -> None:
    """OCPP-J 1.6 §3.2: no recognisable charge point identity -> HTTP 404."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{csms.url}/", subprotocols=["ocpp1.6"]):
            pass
    assert info.value.response.status_code == 404


async def test_percent_encoded_identity(csms: Csms) -> None:
    """OCPP-J 1.6 §3.1.1 example 2: identity "RDAM 123" is percent-encoded in the URL."""
    async with connect(f"{csms.url}/RDAM%20123", subprotocols=["ocpp1.6"]):
        assert await csms.wait_connected("RDAM 123") == "ocpp1.6"


async def test_reconnect_replaces_open_connection(csms: Csms) -> None:
    async with station(csms) as old:
        await csms.wait_connected("CP1")
        async with station(csms) as new:
            with pytest.raises(ConnectionClosed):
                await old.recv()
            assert (await RawStation(new).result("Heartbeat", {}))["currentTime"]
            assert csms.connected == {"CP1": "ocpp1.6"}


# ---- human-readable output --------------------------------------------------------------------------------------


def test_format_record() -> None:
    def rec(action: str, payload: dict) -> Record:
        return Record("CP1", action, payload, "m1", None)  # type: ignore[arg-type]

    assert format_record(rec("StartTransaction", start_payload())) == (
        "CP1 -> StartTransaction connector=1 idTag=TAG1 meterStart=0"
    )
    assert format_record(rec("MeterValues", meter_payload(3, "1234"))) == (
        "CP1 -> MeterValues connector=1 tx=3 Energy.Active.Import.Register=1234Wh"
    )
    assert format_record(rec("Heartbeat", {})) == "CP1 -> Heartbeat"
    assert format_record(rec("Reset", {"status": "Accepted"}), response=True) == "CP1 -> Reset.conf status=Accepted"
    error = {"errorCode": "NotSupported", "errorDescription": "no", "errorDetails": {}}
    assert format_record(rec("Reset", error), response=True) == "CP1 -> Reset CALLERROR NotSupported no"


async def test_module_entry_point_prints_received_messages() -> None:
    """``python -m secure_cp.sim.csms`` serves and prints one line per received message."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "secure_cp.sim.csms", "--host", "127.0.0.1", "--port", str(port),
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert f"ws://127.0.0.1:{port}" in banner
        async with connect(f"ws://127.0.0.1:{port}/CP7", subprotocols=["ocpp1.6"]) as ws:
            await RawStation(ws).result("BootNotification", BOOT)
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        assert line == "CP7 -> BootNotification vendor=secure-cp model=Sim-1"
    finally:
        proc.terminate()
        await proc.wait()
