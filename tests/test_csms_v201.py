"""Tests of the OCPP 2.0.1 side of the local strict CSMS (secure_cp.sim.csms) with a raw WebSocket client.

Like tests/test_csms.py, the client speaks OCPP-J 2.0.1 by hand (not our station stack), because this CSMS is
the independent judge of the station in the integration tests. References: OCPP 2.0.1 edition 3 part 4
(OCPP-J) and part 2 (use cases, messages).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from rfc3339_validator import validate_rfc3339
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from raw_station import RawStation
from secure_cp.sim.csms import (
    SESSION_CLASSES,
    V201_RULES,
    CallErrorReceived,
    Csms,
    Record,
    format_record,
)

TS = "2024-05-01T10:00:00.000Z"
BOOT = {"reason": "PowerUp", "chargingStation": {"model": "Sim-1", "vendorName": "secure-cp"}}

#: OCPP-J 2.0.1 §4.1.4: CALL ids must differ across *all* connections of an identity, so one counter for the file.
_MESSAGE_IDS = itertools.count(1)


class RawStation201(RawStation):
    """The raw client with message ids unique across all connections of this file (2.0.1 Part 4 §4.1.4)."""

    def __init__(self, ws: ClientConnection) -> None:
        super().__init__(ws, _MESSAGE_IDS, "r")


def station(csms: Csms, identity: str = "CP1", subprotocols: list[str] | None = None) -> connect:
    return connect(f"{csms.url}/{identity}", subprotocols=subprotocols or ["ocpp2.0.1"])


@pytest_asyncio.fixture
async def csms() -> AsyncIterator[Csms]:
    """A CSMS with the default subprotocols (ocpp2.0.1 preferred, ocpp1.6)."""
    async with Csms() as server:
        yield server


@pytest_asyncio.fixture
async def raw(csms: Csms) -> AsyncIterator[RawStation201]:
    """A raw 2.0.1 station "CP1" connected to ``csms``."""
    async with station(csms) as ws:
        assert ws.subprotocol == "ocpp2.0.1"
        yield RawStation201(ws)


def tx_event(event_type: str, seq_no: int, tx_id: str = "TX-1", trigger: str = "CablePluggedIn",
             **extra: Any) -> dict[str, Any]:
    info = {"transactionId": tx_id, **extra.pop("info", {})}
    return {"eventType": event_type, "timestamp": TS, "triggerReason": trigger, "seqNo": seq_no,
            "transactionInfo": info, **extra}


def report_part(request_id: int, seq_no: int, names: list[str], tbc: bool) -> dict[str, Any]:
    data = [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": name},
         "variableAttribute": [{"value": "1", "mutability": "ReadWrite"}]}
        for name in names
    ]
    part: dict[str, Any] = {"requestId": request_id, "generatedAt": TS, "seqNo": seq_no, "reportData": data}
    if tbc:
        part["tbc"] = True
    return part


# ---- subprotocol negotiation (OCPP-J 2.0.1 §3.1.2, §3.2) ----------------------------------------------------------


async def test_negotiation_picks_ocpp201_when_station_offers_both(csms: Csms) -> None:
    """OCPP-J 2.0.1 §3.1.3: a station offering "ocpp2.0.1, ocpp1.6" gets 2.0.1 from a CSMS supporting both."""
    async with station(csms, subprotocols=["ocpp2.0.1", "ocpp1.6"]) as ws:
        assert ws.subprotocol == "ocpp2.0.1"
        assert await csms.wait_connected("CP1") == "ocpp2.0.1"
        assert csms.connected == {"CP1": "ocpp2.0.1"}
        # the session really speaks 2.0.1: a 2.0.1 BootNotification is valid, a 1.6 one is not
        assert (await RawStation201(ws).result("BootNotification", BOOT))["status"] == "Accepted"
    assert csms.subprotocols == ("ocpp2.0.1", "ocpp1.6")
    assert csms.violations == []


async def test_csms_with_only_ocpp16_picks_ocpp16() -> None:
    async with Csms(subprotocols=["ocpp1.6"]) as server:
        async with station(server, subprotocols=["ocpp2.0.1", "ocpp1.6"]) as ws:
            assert ws.subprotocol == "ocpp1.6"
            assert await server.wait_connected("CP1") == "ocpp1.6"
            conf = await RawStation201(ws).result(
                "BootNotification", {"chargePointVendor": "secure-cp", "chargePointModel": "Sim-1"}
            )
            assert conf["status"] == "Accepted"
        assert server.violations == []


async def test_server_preference_order_decides() -> None:
    """OCPP-J §3.2: the server chooses among the offered subprotocols; its own order wins."""
    async with Csms(subprotocols=["ocpp1.6", "ocpp2.0.1"]) as server:
        async with station(server, subprotocols=["ocpp2.0.1", "ocpp1.6"]) as ws:
            assert ws.subprotocol == "ocpp1.6"
        async with station(server, "CP2", subprotocols=["ocpp2.0.1"]) as ws:
            assert ws.subprotocol == "ocpp2.0.1"


async def test_csms_with_only_ocpp201_refuses_an_ocpp16_station() -> None:
    """OCPP-J 2.0.1 §3.2: no common subprotocol -> handshake without Sec-WebSocket-Protocol, then closed."""
    async with Csms(subprotocols=["ocpp2.0.1"]) as server:
        async with station(server, subprotocols=["ocpp1.6"]) as ws:
            assert ws.subprotocol is None
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1002
        assert server.connected == {}
        assert len(server.refused) == 1 and "ocpp1.6" in server.refused[0]
        assert server.violations == []  # offering an unsupported version is allowed, just refused


@pytest.mark.parametrize("subprotocols", [[], ["ocpp2.1"], ["ocpp1.6", "ocpp1.5"]])
def test_unknown_subprotocols_are_rejected_at_construction(subprotocols: list[str]) -> None:
    with pytest.raises(ValueError):
        Csms(subprotocols=subprotocols)


# ---- BootNotification and strict validation ------------------------------------------------------------------------


async def test_boot_notification_with_reason(csms: Csms, raw: RawStation201) -> None:
    """B01 / part 2 §1.2: reason and chargingStation are recorded; Accepted with interval and RFC 3339 time."""
    conf = await raw.result("BootNotification", BOOT)
    assert conf["status"] == "Accepted" and conf["interval"] == 300
    assert validate_rfc3339(conf["currentTime"]) and conf["currentTime"].endswith("Z")
    record = await csms.wait_for("BootNotification", identity="CP1")
    assert record.payload == BOOT
    assert format_record(record) == "CP1 -> BootNotification reason=PowerUp vendor=secure-cp model=Sim-1"
    csms.boot_status, csms.boot_interval = "Pending", 9  # B02: the knobs are shared with 1.6
    conf = await raw.result("BootNotification", {**BOOT, "reason": "Triggered"})
    assert (conf["status"], conf["interval"]) == ("Pending", 9)
    assert csms.violations == []


async def test_bad_date_time_is_a_format_violation(csms: Csms, raw: RawStation201) -> None:
    """OCPP-J 2.0.1 §4.3 Table 8: a syntactically incorrect dateTime -> FormatViolation (not 1.6's name)."""
    status = {"timestamp": "2024-01-01 10:00", "connectorStatus": "Available", "evseId": 1, "connectorId": 1}
    frame = await raw.call("StatusNotification", status)
    assert frame[0] == 4 and frame[2] == "FormatViolation" and frame[4] == {}
    assert (await raw.result("Heartbeat", {}))["currentTime"]  # the connection stays usable
    assert len(csms.violations) == 1
    assert "timestamp" in csms.violations[0] and "date-time" in csms.violations[0]
    assert [r.action for r in csms.received] == ["StatusNotification", "Heartbeat"]  # recorded even if rejected


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"reason": "PowerUp"}, "OccurrenceConstraintViolation"),  # required chargingStation missing (1..1)
        ({**BOOT, "extra": 1}, "ProtocolError"),  # a field that is not in the PDU
        ({**BOOT, "reason": 5}, "TypeConstraintViolation"),
        ({**BOOT, "chargingStation": {"model": "x" * 21, "vendorName": "v"}}, "TypeConstraintViolation"),  # string[20]
        ({**BOOT, "reason": "Sneezed"}, "PropertyConstraintViolation"),  # not a BootReasonEnumType value
    ],
)
async def test_schema_violations_get_ocpp201_error_codes(
    csms: Csms, raw: RawStation201, payload: dict, code: str
) -> None:
    """OCPP-J 2.0.1 §4.3 Table 8: the errorCode names what is wrong."""
    frame = await raw.call("BootNotification", payload)
    assert frame[0] == 4 and frame[2] == code
    assert code in V201_RULES.error_codes
    assert len(csms.violations) == 1


async def test_malformed_frames_are_answered_per_ocppj_201(csms: Csms, raw: RawStation201) -> None:
    """OCPP-J 2.0.1 §4.2.3 (id "-1" when unreadable), §4.3 RpcFrameworkError / FormatViolation, §4.4
    MessageTypeNotSupported; NotImplemented / NotSupported for unknown / CSMS->station actions."""
    ws = raw.ws
    await ws.send("this is not json")
    assert (await raw.recv())[:3] == [4, "-1", "RpcFrameworkError"]
    await ws.send(json.dumps({"not": "an array"}))
    assert (await raw.recv())[:3] == [4, "-1", "RpcFrameworkError"]
    await ws.send(json.dumps([5, "x1", "Heartbeat", {}]))  # unknown message type, readable id
    assert (await raw.recv())[:3] == [4, "x1", "MessageTypeNotSupported"]
    await ws.send(json.dumps([2, "y" * 37, "Heartbeat", {}]))  # id > 36 characters cannot be used
    assert (await raw.recv())[:3] == [4, "-1", "RpcFrameworkError"]
    await ws.send(json.dumps([2, 17, "Heartbeat", {}]))  # id not a string
    assert (await raw.recv())[:3] == [4, "-1", "RpcFrameworkError"]
    await ws.send(json.dumps([2, "x2", "Heartbeat"]))  # a CALL has 4 elements
    assert (await raw.recv())[:3] == [4, "x2", "RpcFrameworkError"]
    await ws.send('[2, "x3", "Heartbeat", {"a": 1, "a": 2}]')  # duplicate key: payload syntactically incorrect
    assert (await raw.recv())[:3] == [4, "x3", "FormatViolation"]
    await ws.send(json.dumps([2, "x4", "Heartbeat", []]))
    assert (await raw.recv())[:3] == [4, "x4", "FormatViolation"]
    assert (await raw.call("FlyToTheMoon", {}))[2] == "NotImplemented"
    assert (await raw.call("GetVariables", {"getVariableData": []}))[2] == "NotSupported"  # CSMS->station
    assert (await raw.call("StartTransaction", {}))[2] == "NotImplemented"  # a 1.6 action is unknown in 2.0.1
    await ws.send(json.dumps([3, "never-sent", {}]))  # an answer to a CALL the CSMS never made: not answered
    await ws.send(json.dumps([2, "x5", "Heartbeat", None]))  # null payload is allowed notation (§4.1.5)
    assert (await raw.recv())[:2] == [3, "x5"]
    assert len(csms.violations) == 12, csms.violations


async def test_message_ids_must_be_unique_across_connections(csms: Csms) -> None:
    """OCPP-J 2.0.1 §4.1.4: unique "on any WebSocket connection using the same ... identifier" (1.6: per
    connection), retries included."""
    async with station(csms) as ws:
        await RawStation201(ws).send_call("Heartbeat", {}, "same-id")
        assert (await RawStation201(ws).recv())[0] == 3
    async with station(csms) as ws:
        await RawStation201(ws).send_call("Heartbeat", {}, "same-id")
        assert (await RawStation201(ws).recv())[0] == 3  # still answered
    async with station(csms, "CP2") as ws:  # another identity may use the same id
        await RawStation201(ws).send_call("Heartbeat", {}, "same-id")
        await RawStation201(ws).recv()
    assert csms.violations == ["CP1: message id 'same-id' reused for Heartbeat"]


# ---- Authorize and DataTransfer ------------------------------------------------------------------------------------


async def test_authorize_looks_up_the_id_token_value(csms: Csms, raw: RawStation201) -> None:
    """C01: idTokenInfo from the shared ``authorize`` table; unknown -> Unknown (part 2 §3.3); 1.6-style
    entries are translated (expiryDate -> cacheExpiryDateTime, parentIdTag -> groupIdToken, C09)."""
    conf = await raw.result("Authorize", {"idToken": {"idToken": "TAG1", "type": "ISO14443"}})
    assert conf == {"idTokenInfo": {"status": "Accepted"}}
    conf = await raw.result("Authorize", {"idToken": {"idToken": "NOPE", "type": "ISO14443"}})
    assert conf == {"idTokenInfo": {"status": "Unknown"}}
    csms.authorize["FAMILY"] = {"status": "Accepted", "expiryDate": "2030-01-01T00:00:00Z", "parentIdTag": "GRP"}
    conf = await raw.result("Authorize", {"idToken": {"idToken": "FAMILY", "type": "ISO14443"}})
    assert conf["idTokenInfo"] == {
        "status": "Accepted", "cacheExpiryDateTime": "2030-01-01T00:00:00Z",
        "groupIdToken": {"idToken": "GRP", "type": "Central"},
    }
    record = await csms.wait_for("Authorize", lambda p: p["idToken"]["idToken"] == "FAMILY")
    assert format_record(record) == "CP1 -> Authorize idToken=FAMILY type=ISO14443"
    assert csms.violations == []


@pytest.mark.parametrize(
    ("knob", "id_token", "status", "certificate_status"),
    [
        ("Accepted", "TAG1", "Accepted", "Accepted"),  # C07.FR.14
        ("Accepted", "NOPE", "Unknown", "ContractCancelled"),  # C07.FR.13
        ("CertificateExpired", "TAG1", "Expired", "CertificateExpired"),  # C07.FR.15
        ("CertificateRevoked", "TAG1", "Invalid", "CertificateRevoked"),  # C07.FR.16
        ("CertChainError", "TAG1", "Invalid", "CertChainError"),  # C07.FR.17
    ],
)
async def test_authorize_with_contract_certificate(
    csms: Csms, raw: RawStation201, knob: str, id_token: str, status: str, certificate_status: str
) -> None:
    csms.contract_certificate_status = knob
    request = {"idToken": {"idToken": id_token, "type": "eMAID"},
               "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"}
    conf = await raw.result("Authorize", request)
    assert conf == {"idTokenInfo": {"status": status}, "certificateStatus": certificate_status}
    assert csms.violations == []


async def test_data_transfer_vendor_rules_and_exact_echo(csms: Csms, raw: RawStation201) -> None:
    """P02.FR.06/07; the echoed data comes back byte for byte (the ocpp package would re-key snake_case)."""
    data = {"snake_key": [1, {"soc_value": 2.5, "csms_url": None}], "x": "é"}
    echo = {"vendorId": "secure-cp.test", "messageId": "echo", "data": data}
    assert await raw.result("DataTransfer", echo) == {"status": "Accepted", "data": data}
    assert await raw.result("DataTransfer", {"vendorId": "com.other"}) == {"status": "UnknownVendorId"}
    assert await raw.result("DataTransfer", {"vendorId": "secure-cp.test", "messageId": "x"}) == {
        "status": "UnknownMessageId"
    }
    assert csms.violations == []


# ---- the other station->CSMS messages -----------------------------------------------------------------------------

_OCSP = {"hashAlgorithm": "SHA256", "issuerNameHash": "ab", "issuerKeyHash": "cd", "serialNumber": "1",
         "responderURL": "http://ocsp.example.com"}
_SCHEDULE = {"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]}


@pytest.mark.parametrize(
    ("action", "payload", "expected"),
    [
        ("ClearedChargingLimit", {"chargingLimitSource": "EMS"}, {}),
        ("FirmwareStatusNotification", {"status": "Installed", "requestId": 1}, {}),
        ("Get15118EVCertificate", {"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install",
                                   "exiRequest": "AAAA"}, {"status": "Failed", "exiResponse": ""}),
        ("GetCertificateStatus", {"ocspRequestData": _OCSP}, {"status": "Failed"}),
        ("LogStatusNotification", {"status": "Uploaded", "requestId": 3}, {}),
        ("MeterValues", {"evseId": 1, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": 12.5}]}]}, {}),
        ("NotifyChargingLimit", {"chargingLimit": {"chargingLimitSource": "SO"}}, {}),
        ("NotifyCustomerInformation", {"data": "none", "seqNo": 0, "generatedAt": TS, "requestId": 4}, {}),
        ("NotifyDisplayMessages", {"requestId": 5}, {}),
        ("NotifyEVChargingNeeds", {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "DC"}},
         {"status": "Rejected"}),
        ("NotifyEVChargingSchedule", {"timeBase": TS, "evseId": 1, "chargingSchedule": _SCHEDULE},
         {"status": "Accepted"}),
        ("NotifyEvent", {"generatedAt": TS, "seqNo": 0, "eventData": [
            {"eventId": 1, "timestamp": TS, "trigger": "Alerting", "actualValue": "1",
             "component": {"name": "EVSE"}, "eventNotificationType": "HardWiredNotification",
             "variable": {"name": "Problem"}}]}, {}),
        ("NotifyMonitoringReport", {"requestId": 6, "seqNo": 0, "generatedAt": TS}, {}),
        ("PublishFirmwareStatusNotification", {"status": "Published", "location": ["http://lc/fw.bin"]}, {}),
        ("ReportChargingProfiles", {"requestId": 7, "chargingLimitSource": "CSO", "evseId": 1, "chargingProfile": [
            {"id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
             "chargingProfileKind": "Relative", "chargingSchedule": [_SCHEDULE]}]}, {}),
        ("ReservationStatusUpdate", {"reservationId": 8, "reservationUpdateStatus": "Expired"}, {}),
        ("SecurityEventNotification", {"type": "StartupOfTheDevice", "timestamp": TS}, {}),
        ("SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----"}, {"status": "Accepted"}),
        ("StatusNotification", {"timestamp": TS, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1}, {}),
    ],
)
async def test_notification_handlers(
    csms: Csms, raw: RawStation201, action: str, payload: dict, expected: dict
) -> None:
    """Part 2 "Messages": each station->CSMS message gets its (schema-valid) response."""
    assert await raw.result(action, payload) == expected
    assert (await csms.wait_for(action)).payload == payload
    assert csms.violations == []


def test_action_tables_cover_every_201_schema_and_have_handlers() -> None:
    """Every 2.0.1 schema is a station->CSMS or CSMS->station action (only DataTransfer is both), and the 2.0.1
    session has an ``@on`` handler for exactly the station->CSMS ones."""
    schemas = {p.name.removesuffix("Request.json") for p in Path(V201_RULES.schemas.directory).glob("*Request.json")}
    assert V201_RULES.station_actions | V201_RULES.csms_actions == schemas
    assert V201_RULES.station_actions & V201_RULES.csms_actions == {"DataTransfer"}
    handled = {
        getattr(member, "_on_action") for member in vars(SESSION_CLASSES["ocpp2.0.1"]).values()
        if hasattr(member, "_on_action")
    }
    assert handled == V201_RULES.station_actions
    assert len(handled) == 25


# ---- TransactionEvent ledger (E01-E06, E §1.3) ---------------------------------------------------------------------


async def test_transaction_event_ledger_started_updated_ended(csms: Csms, raw: RawStation201) -> None:
    """E02: Started without idToken -> empty response; Updated with the idToken -> idTokenInfo (E01.FR.11/12);
    Ended closes the transaction. The ledger keeps the events in arrival order."""
    started = tx_event("Started", 0, evse={"id": 1, "connectorId": 1}, info={"chargingState": "EVConnected"})
    updated = tx_event("Updated", 1, trigger="Authorized", idToken={"idToken": "TAG1", "type": "ISO14443"},
                       info={"chargingState": "Charging"},
                       meterValue=[{"timestamp": TS, "sampledValue": [{"value": 1000, "context": "Sample.Periodic"}]}])
    ended = tx_event("Ended", 2, trigger="EVCommunicationLost",
                     info={"chargingState": "Idle", "stoppedReason": "EVDisconnected"})
    assert await raw.result("TransactionEvent", started) == {}
    assert await raw.result("TransactionEvent", updated) == {"idTokenInfo": {"status": "Accepted"}}
    tx = csms.transactions201["TX-1"]
    assert tx.ended is False and csms.seq_gaps("TX-1") == []
    assert await raw.result("TransactionEvent", ended) == {}
    assert tx.identity == "CP1"
    assert tx.events == [started, updated, ended]
    assert tx.seq_nos == [0, 1, 2] and tx.started == started and tx.ended_event == ended
    assert tx.ended is True and csms.seq_gaps("TX-1") == []
    assert csms.duplicates == [] and csms.violations == []
    lines = [format_record(r) for r in csms.received]
    assert lines == [
        "CP1 -> TransactionEvent Started tx=TX-1 seqNo=0 trigger=CablePluggedIn evse=1/1 state=EVConnected",
        "CP1 -> TransactionEvent Updated tx=TX-1 seqNo=1 trigger=Authorized idToken=TAG1 state=Charging "
        "Energy.Active.Import.Register=1000Wh",
        "CP1 -> TransactionEvent Ended tx=TX-1 seqNo=2 trigger=EVCommunicationLost state=Idle reason=EVDisconnected",
    ]


async def test_transaction_event_id_token_info(csms: Csms, raw: RawStation201) -> None:
    """An unknown idToken is Unknown; a NoAuthorization token has nothing to refuse."""
    unknown = tx_event("Started", 0, trigger="Authorized", idToken={"idToken": "NOPE", "type": "ISO14443"})
    assert await raw.result("TransactionEvent", unknown) == {"idTokenInfo": {"status": "Unknown"}}
    free = tx_event("Started", 0, tx_id="TX-2", trigger="CablePluggedIn",
                    idToken={"idToken": "", "type": "NoAuthorization"})
    assert await raw.result("TransactionEvent", free) == {"idTokenInfo": {"status": "Accepted"}}


async def test_seq_gap_detection(csms: Csms, raw: RawStation201) -> None:
    """E §1.3.2: complete = Started seqNo a, Ended seqNo o, every n in between. A continuously increasing counter
    (E §1.3.2.1) starts a transaction above 0, so the range is anchored on Started, not on 0."""
    await raw.result("TransactionEvent", tx_event("Started", 5))
    await raw.result("TransactionEvent", tx_event("Updated", 8, trigger="MeterValuePeriodic"))
    assert csms.seq_gaps("TX-1") == [6, 7]
    await raw.result("TransactionEvent", tx_event("Ended", 9, trigger="StopAuthorized"))
    assert csms.seq_gaps("TX-1") == [6, 7]
    # a late retry fills part of the gap: out-of-order arrival is normal after offline periods (E §1.3.2)
    await raw.result("TransactionEvent", tx_event("Updated", 7, trigger="MeterValuePeriodic"))
    assert csms.seq_gaps("TX-1") == [6]
    assert csms.transactions201["TX-1"].seq_nos == [5, 8, 9, 7]
    await raw.result("TransactionEvent", tx_event("Updated", 6, trigger="MeterValuePeriodic"))
    assert csms.seq_gaps("TX-1") == []
    assert csms.violations == []


async def test_seq_gaps_without_started_use_lowest_received(csms: Csms, raw: RawStation201) -> None:
    await raw.result("TransactionEvent", tx_event("Updated", 3, trigger="MeterValuePeriodic"))
    await raw.result("TransactionEvent", tx_event("Updated", 5, trigger="MeterValuePeriodic"))
    assert csms.seq_gaps("TX-1") == [4]
    assert csms.transactions201["TX-1"].started is None
    with pytest.raises(KeyError):
        csms.seq_gaps("TX-unknown")


async def test_duplicate_and_conflicting_transaction_events(csms: Csms, raw: RawStation201) -> None:
    """An exact repeat (a retry after a lost answer, E13) is answered normally and recorded as a duplicate; the
    same seqNo with a different payload is a violation."""
    started = tx_event("Started", 0, trigger="Authorized", idToken={"idToken": "TAG2", "type": "ISO14443"})
    first = await raw.result("TransactionEvent", started)
    again = await raw.result("TransactionEvent", started)
    assert first == again == {"idTokenInfo": {"status": "Accepted"}}
    assert len(csms.duplicates) == 1 and "seqNo 0" in csms.duplicates[0] and "duplicate" in csms.duplicates[0]
    conflicting = tx_event("Updated", 0, trigger="MeterValuePeriodic")
    assert await raw.result("TransactionEvent", conflicting) == {}
    tx = csms.transactions201["TX-1"]
    assert tx.events == [started] and tx.conflicts == [conflicting]
    assert len(csms.violations) == 1 and "seqNo already used" in csms.violations[0]
    assert len(csms.received) == 3  # every message is on record, whatever the ledger made of it


async def test_transaction_event_order_violations(csms: Csms, raw: RawStation201) -> None:
    """Part 2 §3.80: Started is the first event of a transaction and Ended the last."""
    await raw.result("TransactionEvent", tx_event("Started", 1))
    await raw.result("TransactionEvent", tx_event("Ended", 2, trigger="StopAuthorized"))
    await raw.result("TransactionEvent", tx_event("Updated", 3, trigger="MeterValuePeriodic"))  # after Ended
    await raw.result("TransactionEvent", tx_event("Updated", 0, trigger="MeterValuePeriodic"))  # before Started
    await raw.result("TransactionEvent", tx_event("Started", 4))  # a second Started
    assert len(csms.violations) == 3, csms.violations  # one line per offending event
    assert "above Ended" in csms.violations[0] and "below Started" in csms.violations[1]
    assert "second Started" in csms.violations[2] and "above Ended" in csms.violations[2]
    assert len(csms.transactions201["TX-1"].events) == 5  # received and answered, so kept


async def test_same_transaction_id_from_two_stations_is_flagged(csms: Csms) -> None:
    async with station(csms, "CP1") as ws1, station(csms, "CP2") as ws2:
        await RawStation201(ws1).result("TransactionEvent", tx_event("Started", 0))
        await RawStation201(ws2).result("TransactionEvent", tx_event("Started", 0))
    assert csms.transactions201["TX-1"].identity == "CP1"
    assert len(csms.transactions201["TX-1"].events) == 1
    assert len(csms.violations) == 1 and "already used by CP1" in csms.violations[0]


async def test_drop_next_transaction_event_retry_is_a_duplicate(csms: Csms, raw: RawStation201) -> None:
    """A lost TransactionEventResponse: the station retries (new message id, §4.1.4) and the CSMS sees a repeat."""
    csms.drop_next("TransactionEvent")
    event = tx_event("Started", 0)
    dropped = await raw.send_call("TransactionEvent", event)
    await csms.wait_for("TransactionEvent")
    retry = await raw.send_call("TransactionEvent", event)
    frame = await raw.recv()
    assert frame[:2] == [3, retry] and retry != dropped
    assert len(csms.duplicates) == 1 and csms.transactions201["TX-1"].seq_nos == [0]
    assert csms.violations == []


# ---- NotifyReport (B07 / B08) --------------------------------------------------------------------------------------


async def test_notify_report_assembled_across_tbc_parts(csms: Csms, raw: RawStation201) -> None:
    """B07: a report in parts; seqNo starts at 0, tbc=true until the last part (part 2 §1.40.1)."""
    await raw.result("NotifyReport", report_part(42, 0, ["A", "B"], tbc=True))
    await raw.result("NotifyReport", report_part(42, 1, ["C"], tbc=True))
    with pytest.raises(TimeoutError, match="not complete"):
        await csms.wait_report("CP1", 42, timeout=0.05)
    assert [d["variable"]["name"] for d in csms.reports[42]] == ["A", "B", "C"]  # visible while it grows
    await raw.result("NotifyReport", report_part(42, 2, ["D"], tbc=False))
    report = await csms.wait_report("CP1", 42)
    assert [d["variable"]["name"] for d in report] == ["A", "B", "C", "D"]
    assert report == csms.reports[42]
    with pytest.raises(TimeoutError):
        await csms.wait_report("CP9", 42, timeout=0.05)  # per station
    assert csms.violations == []
    assert format_record(csms.received[0]) == "CP1 -> NotifyReport requestId=42 seqNo=0 items=2 tbc"


async def test_notify_report_single_part_and_without_report_data(csms: Csms, raw: RawStation201) -> None:
    await raw.result("NotifyReport", {"requestId": 7, "generatedAt": TS, "seqNo": 0})  # tbc omitted = false
    assert await csms.wait_report("CP1", 7) == []
    assert csms.reports[7] == []


async def test_notify_report_waits_for_a_missing_part(csms: Csms, raw: RawStation201) -> None:
    """The final part alone is not the whole report: seqNo 0 must arrive too; parts are ordered by seqNo."""
    waiter = asyncio.create_task(csms.wait_report("CP1", 5))
    await raw.result("NotifyReport", report_part(5, 1, ["late"], tbc=False))
    await asyncio.sleep(0)
    assert not waiter.done()
    await raw.result("NotifyReport", report_part(5, 0, ["early"], tbc=True))
    assert [d["variable"]["name"] for d in await waiter] == ["early", "late"]


async def test_notify_report_duplicates_and_parts_after_the_end(csms: Csms, raw: RawStation201) -> None:
    await raw.result("NotifyReport", report_part(9, 0, ["A"], tbc=False))
    await raw.result("NotifyReport", report_part(9, 0, ["A"], tbc=False))  # exact repeat
    await raw.result("NotifyReport", report_part(9, 0, ["Z"], tbc=False))  # same seqNo, other content
    await raw.result("NotifyReport", report_part(9, 1, ["B"], tbc=False))  # after the final part
    assert await csms.wait_report("CP1", 9) == report_part(9, 0, ["A"], tbc=False)["reportData"]
    assert len(csms.duplicates) == 1
    assert len(csms.violations) == 2
    assert "different part" in csms.violations[0] and "after the final part" in csms.violations[1]


# ---- CSMS -> station calls -----------------------------------------------------------------------------------------

_GET = {"getVariableData": [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}
_GOT = {"getVariableResult": [{"attributeStatus": "Accepted", "attributeValue": "300",
                               "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}


async def test_call_get_variables_answered_by_the_station(csms: Csms, raw: RawStation201) -> None:
    """B06: call() sends the camelCase payload as on the wire and returns the validated CALLRESULT."""
    await csms.wait_connected("CP1")
    task = asyncio.create_task(csms.call("CP1", "GetVariables", _GET))
    frame = await raw.recv()
    assert frame[0] == 2 and frame[2:] == ["GetVariables", _GET] and len(frame[1]) <= 36
    await raw.ws.send(json.dumps([3, frame[1], _GOT]))
    assert await task == _GOT
    assert csms.responses[-1].action == "GetVariables" and csms.responses[-1].payload == _GOT
    assert format_record(csms.responses[-1], response=True).startswith("CP1 -> GetVariables.conf getVariableResult=")
    assert csms.violations == []


async def test_call_validates_against_201_schemas(csms: Csms, raw: RawStation201) -> None:
    await csms.wait_connected("CP1")
    with pytest.raises(ValueError, match="not a CSMS->station action in OCPP 2.0.1"):
        await csms.call("CP1", "ChangeConfiguration", {"key": "a", "value": "b"})  # a 1.6 action
    with pytest.raises(ValueError, match="invalid GetVariables payload"):
        await csms.call("CP1", "GetVariables", {"getVariableData": [{"component": {}}]})
    with pytest.raises(ValueError, match="invalid Reset payload"):
        await csms.call("CP1", "Reset", {"type": "Hard"})  # 1.6 value; 2.0.1 has Immediate / OnIdle
    # the station's CALLRESULT is validated too, and its CALLERROR codes against Table 8
    task = asyncio.create_task(csms.call("CP1", "Reset", {"type": "Immediate"}))
    frame = await raw.recv()
    await raw.ws.send(json.dumps([3, frame[1], {"status": "Maybe"}]))
    assert await task == {"status": "Maybe"}
    task = asyncio.create_task(csms.call("CP1", "ClearCache", {}))
    frame = await raw.recv()
    await raw.ws.send(json.dumps([4, frame[1], "FormationViolation", "a 1.6 code", {}]))
    with pytest.raises(CallErrorReceived) as info:
        await task
    assert info.value.code == "FormationViolation"
    task = asyncio.create_task(csms.call("CP1", "ClearCache", {}))
    frame = await raw.recv()
    await raw.ws.send(json.dumps([4, frame[1], "NotSupported", "", {}]))
    with pytest.raises(CallErrorReceived):
        await task
    assert len(csms.violations) == 2, csms.violations
    assert "Reset response" in csms.violations[0]
    assert "unknown CALLERROR code 'FormationViolation'" in csms.violations[1]  # NotSupported is fine


# ---- human-readable output -----------------------------------------------------------------------------------------


def test_format_record_201_summaries() -> None:
    def rec(action: str, payload: dict) -> Record:
        return Record("CP1", action, payload, "m1", None)  # type: ignore[arg-type]

    status = {"timestamp": TS, "connectorStatus": "Occupied", "evseId": 2, "connectorId": 1}
    assert format_record(rec("StatusNotification", status)) == (
        "CP1 -> StatusNotification evse=2 connector=1 status=Occupied"
    )
    boot = {"reason": "RemoteReset", "chargingStation": {"model": "M", "vendorName": "V", "firmwareVersion": "1.2"}}
    assert format_record(rec("BootNotification", boot)) == (
        "CP1 -> BootNotification reason=RemoteReset vendor=V model=M firmware=1.2"
    )
    meter = {"evseId": 1, "meterValue": [{"timestamp": TS, "sampledValue": [
        {"value": 12.5, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh", "multiplier": 3}},
        {"value": 7200, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}},
        {"value": 230.1, "measurand": "Voltage"},
    ]}]}
    assert format_record(rec("MeterValues", meter)) == (
        "CP1 -> MeterValues evse=1 Energy.Active.Import.Register=12.5e3Wh Power.Active.Import=7200W Voltage=230.1"
    )
    offline = tx_event("Updated", 4, trigger="MeterValuePeriodic", offline=True)
    assert format_record(rec("TransactionEvent", offline)) == (
        "CP1 -> TransactionEvent Updated tx=TX-1 seqNo=4 trigger=MeterValuePeriodic offline"
    )
