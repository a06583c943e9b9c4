"""Sans-I/O endpoint: call tracking (OCPP-J 1.6 §4.1.1, §4.1.4), CALLERROR answers (§4.2.3), time injected."""

from __future__ import annotations

import itertools
import logging
from decimal import Decimal

import pytest

from secure_cp.rpc import (
    BusyError,
    Call,
    CallError,
    CallResult,
    Endpoint,
    ErrorKind,
    ErrorResponse,
    IncomingCall,
    OcppError,
    Reply,
    Response,
    SchemaError,
    SchemaRegistry,
    Timeout,
    decode,
    encode,
)

VERSIONS = ["1.6", "2.0.1"]

BOOT = {
    "1.6": ("BootNotification", {"chargePointVendor": "VendorX", "chargePointModel": "SingleSocketCharger"},
            {"status": "Accepted", "currentTime": "2024-05-01T12:00:00Z", "interval": 300}),
    "2.0.1": ("BootNotification", {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}},
              {"status": "Accepted", "currentTime": "2024-05-01T12:00:00Z", "interval": 300}),
}
# A CSMS-initiated action and a valid request / response for it.
RESET = {
    "1.6": ("Reset", {"type": "Soft"}, {"status": "Accepted"}),
    "2.0.1": ("Reset", {"type": "Immediate"}, {"status": "Accepted"}),
}
OCCURRENCE = {"1.6": "OccurenceConstraintViolation", "2.0.1": "OccurrenceConstraintViolation"}
STRUCTURE = {"1.6": "FormationViolation", "2.0.1": "ProtocolError"}
SYNTAX = {"1.6": "FormationViolation", "2.0.1": "FormatViolation"}


def counter_ids() -> object:
    numbers = itertools.count(1)
    return lambda: f"id-{next(numbers)}"


def reply_frame(events: list) -> CallError:
    assert len(events) == 1 and isinstance(events[0], Reply), events
    frame = decode(events[0].text)
    assert isinstance(frame, CallError)
    return frame


# --- outgoing CALLs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_send_call_tracks_one_outstanding_call(version: str) -> None:
    """OCPP-J 1.6 §4.1.1: no new CALL until the previous one is answered or timed out."""
    endpoint = Endpoint(version, call_timeout=10.0)
    action, request, response = BOOT[version]
    assert not endpoint.busy and endpoint.outstanding is None and endpoint.next_deadline() is None

    unique_id, text = endpoint.send_call(action, request, now=100.0)
    assert decode(text) == Call(unique_id, action, request)
    assert endpoint.busy and endpoint.outstanding == (unique_id, action)
    assert endpoint.next_deadline() == 110.0

    with pytest.raises(BusyError):
        endpoint.send_call("Heartbeat", {}, now=101.0)
    assert endpoint.outstanding == (unique_id, action)

    events = endpoint.receive(encode(CallResult(unique_id, response)), now=102.0)
    assert events == [Response(unique_id, action, response)]
    assert not endpoint.busy and endpoint.next_deadline() is None
    endpoint.send_call("Heartbeat", {}, now=103.0)  # free again


def test_default_ids_are_unique_uuids() -> None:
    endpoint = Endpoint("1.6")
    ids = set()
    for n in range(200):
        unique_id, _ = endpoint.send_call("Heartbeat", {}, now=float(n))
        assert len(unique_id) == 36
        ids.add(unique_id)
        endpoint.reset()
    assert len(ids) == 200


def test_custom_id_factory_and_bad_ids() -> None:
    endpoint = Endpoint("1.6", id_factory=counter_ids())  # type: ignore[arg-type]
    assert endpoint.send_call("Heartbeat", {}, now=0.0)[0] == "id-1"
    endpoint.reset()
    assert endpoint.send_call("Heartbeat", {}, now=0.0)[0] == "id-2"
    endpoint.reset()
    too_long = Endpoint("1.6", id_factory=lambda: "x" * 37)
    with pytest.raises(ValueError):
        too_long.send_call("Heartbeat", {}, now=0.0)
    assert not too_long.busy


@pytest.mark.parametrize("version", VERSIONS)
def test_send_call_never_sends_an_invalid_frame(version: str) -> None:
    endpoint = Endpoint(version)
    with pytest.raises(SchemaError) as info:
        endpoint.send_call("BootNotification", {}, now=0.0)
    assert info.value.kind is ErrorKind.OCCURRENCE_CONSTRAINT_VIOLATION
    with pytest.raises(SchemaError) as info:
        endpoint.send_call("NoSuchAction", {}, now=0.0)
    assert info.value.kind is ErrorKind.NOT_IMPLEMENTED
    assert not endpoint.busy


def test_send_call_keeps_decimal_text() -> None:
    endpoint = Endpoint("2.0.1")
    payload = {"evseId": 1, "meterValue": [{"timestamp": "2024-05-01T12:00:00Z",
                                            "sampledValue": [{"value": Decimal("2935.600")}]}]}
    _, text = endpoint.send_call("MeterValues", payload, now=0.0)
    assert '"value":2935.600' in text


# --- answers to our CALL -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_callerror_answers_the_outstanding_call(version: str) -> None:
    endpoint = Endpoint(version)
    unique_id, _ = endpoint.send_call("Heartbeat", {}, now=0.0)
    events = endpoint.receive(f'[4,"{unique_id}","InternalError","db down",{{"retry":true}}]', now=1.0)
    assert events == [ErrorResponse(unique_id, "Heartbeat", "InternalError", "db down", {"retry": True})]
    assert not endpoint.busy


@pytest.mark.parametrize("version", VERSIONS)
def test_invalid_callresult_becomes_error_response(version: str, caplog: pytest.LogCaptureFixture) -> None:
    endpoint = Endpoint(version)
    action, request, response = BOOT[version]
    unique_id, _ = endpoint.send_call(action, request, now=0.0)
    broken = dict(response)
    del broken["status"]
    with caplog.at_level(logging.WARNING, logger="secure_cp.rpc"):
        events = endpoint.receive(encode(CallResult(unique_id, broken)), now=1.0)
    assert len(events) == 1 and isinstance(events[0], ErrorResponse)
    assert events[0].unique_id == unique_id and events[0].action == action
    assert events[0].code == OCCURRENCE[version]
    assert "status" in events[0].description
    assert not endpoint.busy
    assert "invalid BootNotification response" in caplog.text


@pytest.mark.parametrize("version", VERSIONS)
def test_malformed_answer_to_our_call_ends_it_without_a_reply(version: str) -> None:
    """A broken CALLRESULT is never answered (that could loop), but our CALL has failed."""
    endpoint = Endpoint(version)
    unique_id, _ = endpoint.send_call("Heartbeat", {}, now=0.0)
    events = endpoint.receive(f'[3,"{unique_id}",[1,2]]', now=1.0)
    assert len(events) == 1 and isinstance(events[0], ErrorResponse)
    assert events[0].code == STRUCTURE[version]
    assert not endpoint.busy

    unique_id, _ = endpoint.send_call("Heartbeat", {}, now=2.0)
    events = endpoint.receive(f'[3,"{unique_id}",{{"currentTime":', now=3.0)  # truncated
    assert len(events) == 1 and isinstance(events[0], ErrorResponse) and events[0].code == SYNTAX[version]
    assert not endpoint.busy


@pytest.mark.parametrize("version", VERSIONS)
def test_answer_with_unknown_id_is_dropped(version: str, caplog: pytest.LogCaptureFixture) -> None:
    endpoint = Endpoint(version)
    unique_id, _ = endpoint.send_call("Heartbeat", {}, now=0.0)
    with caplog.at_level(logging.WARNING, logger="secure_cp.rpc"):
        assert endpoint.receive('[3,"someone-else",{"currentTime":"2024-05-01T12:00:00Z"}]', now=1.0) == []
        assert endpoint.receive('[4,"someone-else","GenericError","",{}]', now=1.0) == []
        assert endpoint.receive('[3,"someone-else",5]', now=1.0) == []
    assert endpoint.outstanding == (unique_id, "Heartbeat")
    assert "unknown CALL" in caplog.text


def test_answer_without_outstanding_call_is_dropped() -> None:
    endpoint = Endpoint("1.6")
    assert endpoint.receive('[3,"x",{"currentTime":"2024-05-01T12:00:00Z"}]', now=0.0) == []
    assert not endpoint.busy


# --- timeouts ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_timeout_with_injected_time(version: str, caplog: pytest.LogCaptureFixture) -> None:
    endpoint = Endpoint(version, call_timeout=5.0)
    unique_id, _ = endpoint.send_call("Heartbeat", {}, now=1000.0)
    assert endpoint.poll(1000.0) is None
    assert endpoint.poll(1004.999) is None
    assert endpoint.busy
    with caplog.at_level(logging.WARNING, logger="secure_cp.rpc"):
        assert endpoint.poll(1005.0) == Timeout(unique_id, "Heartbeat")
    assert not endpoint.busy and endpoint.next_deadline() is None
    assert endpoint.poll(2000.0) is None  # reported once

    # A late answer after the timeout is dropped and logged as late.
    with caplog.at_level(logging.WARNING, logger="secure_cp.rpc"):
        assert endpoint.receive(f'[3,"{unique_id}",{{"currentTime":"2024-05-01T12:00:00Z"}}]', now=1006.0) == []
    assert "late answer" in caplog.text
    assert not endpoint.busy
    # ... and a new CALL can go out.
    new_id, _ = endpoint.send_call("Heartbeat", {}, now=1007.0)
    assert new_id != unique_id
    assert endpoint.receive(f'[3,"{unique_id}",{{"currentTime":"2024-05-01T12:00:00Z"}}]', now=1008.0) == []
    assert endpoint.outstanding == (new_id, "Heartbeat")


def test_answer_before_poll_still_counts() -> None:
    """The deadline is enforced by poll(): an answer that arrives first is taken."""
    endpoint = Endpoint("1.6", call_timeout=5.0)
    unique_id, _ = endpoint.send_call("Heartbeat", {}, now=0.0)
    events = endpoint.receive(f'[3,"{unique_id}",{{"currentTime":"2024-05-01T12:00:00Z"}}]', now=6.0)
    assert isinstance(events[0], Response)
    assert endpoint.poll(6.0) is None


def test_reset_forgets_the_outstanding_call() -> None:
    endpoint = Endpoint("2.0.1")
    unique_id, _ = endpoint.send_call("Heartbeat", {}, now=0.0)
    assert endpoint.reset() is None
    assert not endpoint.busy and endpoint.poll(1e9) is None and endpoint.next_deadline() is None
    assert endpoint.receive(f'[3,"{unique_id}",{{"currentTime":"2024-05-01T12:00:00Z"}}]', now=1.0) == []


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError):
        Endpoint("2.0")
    with pytest.raises(ValueError):
        Endpoint("1.6", SchemaRegistry("2.0.1"))
    with pytest.raises(ValueError):
        Endpoint("1.6", call_timeout=0)


# --- incoming CALLs ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_valid_incoming_call(version: str) -> None:
    endpoint = Endpoint(version)
    action, request, _ = RESET[version]
    events = endpoint.receive(encode(Call("csms-1", action, request)).encode("utf-8"), now=0.0)
    assert events == [IncomingCall("csms-1", action, request)]


@pytest.mark.parametrize("version", VERSIONS)
def test_incoming_call_while_our_call_is_outstanding(version: str) -> None:
    """OCPP-J 1.6 §4.1.1 NOTE: CALLs from both sides may cross."""
    endpoint = Endpoint(version)
    unique_id, _ = endpoint.send_call("Heartbeat", {}, now=0.0)
    action, request, _ = RESET[version]
    assert endpoint.receive(encode(Call("csms-2", action, request)), now=1.0) == [
        IncomingCall("csms-2", action, request)]
    assert endpoint.outstanding == (unique_id, "Heartbeat")


@pytest.mark.parametrize("version", VERSIONS)
def test_unknown_action_is_not_implemented(version: str) -> None:
    """Table 7: NotImplemented = "Requested Action is not known by receiver"."""
    endpoint = Endpoint(version)
    error = reply_frame(endpoint.receive('[2,"c1","Teleport",{}]', now=0.0))
    assert (error.unique_id, error.code, error.details) == ("c1", "NotImplemented", {})
    assert "Teleport" in error.description


@pytest.mark.parametrize("version", VERSIONS)
def test_known_but_unsupported_action_is_not_supported(version: str) -> None:
    """Table 7: NotSupported = "Requested Action is recognized but not supported by the receiver"."""
    endpoint = Endpoint(version, supported_actions=lambda action: action != "Reset")
    action, request, _ = RESET[version]
    error = reply_frame(endpoint.receive(encode(Call("c2", action, request)), now=0.0))
    assert (error.unique_id, error.code) == ("c2", "NotSupported")


@pytest.mark.parametrize("version", VERSIONS)
def test_schema_violations_get_the_spec_codes(version: str) -> None:
    endpoint = Endpoint(version)
    action, request, _ = RESET[version]
    cases = [
        ({}, OCCURRENCE[version]),
        ({**request, "extra": 1}, STRUCTURE[version]),
        ({"type": 1}, "TypeConstraintViolation"),
        ({"type": "Sideways"}, "PropertyConstraintViolation"),
    ]
    for n, (payload, code) in enumerate(cases):
        error = reply_frame(endpoint.receive(encode(Call(f"s{n}", action, payload)), now=0.0))
        assert (error.unique_id, error.code) == (f"s{n}", code), payload


def test_multiple_of_violation_in_incoming_call() -> None:
    """1.6 ChargingSchedulePeriod.limit multipleOf 0.1, checked on the exact decimal text received."""
    endpoint = Endpoint("1.6")
    text = ('[2,"p1","SetChargingProfile",{"connectorId":1,"csChargingProfiles":{"chargingProfileId":1,'
            '"stackLevel":0,"chargingProfilePurpose":"TxDefaultProfile","chargingProfileKind":"Relative",'
            '"chargingSchedule":{"chargingRateUnit":"A","chargingSchedulePeriod":[{"startPeriod":0,"limit":LIMIT}]}}}]')
    events = endpoint.receive(text.replace("LIMIT", "21.4"), now=0.0)
    assert isinstance(events[0], IncomingCall)
    assert str(events[0].payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]) \
        == "21.4"
    error = reply_frame(endpoint.receive(text.replace("LIMIT", "21.45"), now=0.0))
    assert error.code == "PropertyConstraintViolation" and "multipleOf" in error.description


# --- malformed frames -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_malformed_call_with_readable_id_gets_callerror(version: str) -> None:
    endpoint = Endpoint(version)
    cases = [
        ('[2,"m1","Heartbeat"]', "ProtocolError" if version == "1.6" else "RpcFrameworkError"),
        ('[2,"m2",7,{}]', "ProtocolError" if version == "1.6" else "RpcFrameworkError"),
        ('[2,"m3","Heartbeat",[]]', STRUCTURE[version]),
        ('[2,"m4","Heartbeat",{"a":', SYNTAX[version]),
        ('[2,"m5","Heartbeat",{"a":1,"a":2}]', SYNTAX[version]),
    ]
    for text, code in cases:
        error = reply_frame(endpoint.receive(text, now=0.0))
        assert error.code == code, text
        assert error.unique_id == text.split('"')[1]


def test_v16_drops_what_it_cannot_answer(caplog: pytest.LogCaptureFixture) -> None:
    """1.6 has no messageId for an answer to an unreadable message; §4.1.3: unknown message types are ignored."""
    endpoint = Endpoint("1.6")
    with caplog.at_level(logging.WARNING, logger="secure_cp.rpc"):
        for text in ("garbage", b"\xff", "[]", "{}", '[2,"' + "x" * 37 + '","Heartbeat",{}]', '[7,"t1",{}]',
                     '["2","t2","Heartbeat",{}]'):
            assert endpoint.receive(text, now=0.0) == [], text
    assert "malformed message" in caplog.text


def test_v201_answers_unreadable_messages_with_minus_one() -> None:
    """OCPP 2.0.1 Part 4 §4.2.3: if the messageId cannot be read, the CALLERROR carries "-1"."""
    endpoint = Endpoint("2.0.1")
    for text in ("garbage", b"\xff", "[]", "{}", '[2,"' + "x" * 37 + '","Heartbeat",{}]', "[2,5,\"Heartbeat\",{}]"):
        error = reply_frame(endpoint.receive(text, now=0.0))
        assert (error.unique_id, error.code) == ("-1", "RpcFrameworkError"), text


def test_v201_unknown_message_type_is_message_type_not_supported() -> None:
    """OCPP 2.0.1 Part 4 §4.4."""
    endpoint = Endpoint("2.0.1")
    error = reply_frame(endpoint.receive('[6,"t3",{"a":1}]', now=0.0))
    assert (error.unique_id, error.code) == ("t3", "MessageTypeNotSupported")


# --- our answers ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_reply_validates_the_response(version: str, caplog: pytest.LogCaptureFixture) -> None:
    endpoint = Endpoint(version)
    action, request, response = RESET[version]
    call = IncomingCall("r1", action, request)
    assert decode(endpoint.reply(call, response)) == CallResult("r1", response)
    with caplog.at_level(logging.ERROR, logger="secure_cp.rpc"):
        text = endpoint.reply(call, {"status": "Perhaps"})
    error = decode(text)
    assert isinstance(error, CallError) and (error.unique_id, error.code) == ("r1", "InternalError")
    assert "invalid Reset response" in caplog.text
    assert isinstance(decode(endpoint.reply(call, {"status": float("nan")})), CallError)


def test_reply_keeps_decimal_text() -> None:
    endpoint = Endpoint("1.6")
    call = IncomingCall("r2", "GetCompositeSchedule", {"connectorId": 1, "duration": 60})
    payload = {"status": "Accepted", "connectorId": 1, "chargingSchedule": {
        "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": Decimal("16.0")}]}}
    assert '"limit":16.0' in endpoint.reply(call, payload)


@pytest.mark.parametrize("version", VERSIONS)
def test_reply_error_uses_the_version_spelling(version: str) -> None:
    endpoint = Endpoint(version)
    call = IncomingCall("e1", "Reset", {})
    error = decode(endpoint.reply_error(call, ErrorKind.OCCURRENCE_CONSTRAINT_VIOLATION, "x" * 1000, {"k": 1}))
    assert isinstance(error, CallError)
    assert error.code == OCCURRENCE[version]
    assert len(error.description) == 255  # 2.0.1 Part 4 Table 7: errorDescription is string[255]
    assert error.details == {"k": 1}
    plain = decode(endpoint.reply_error(call, ErrorKind.FORMATION_VIOLATION))
    assert isinstance(plain, CallError) and plain.description == "" and plain.details == {}
    assert plain.code == SYNTAX[version]


def test_reply_exception_and_unserialisable_details() -> None:
    endpoint = Endpoint("2.0.1")
    call = IncomingCall("e2", "Reset", {"type": "Immediate"})
    error = decode(endpoint.reply_exception(call, OcppError(ErrorKind.SECURITY_ERROR, "nope", {"a": 1})))
    assert error == CallError("e2", "SecurityError", "nope", {"a": 1})
    error = decode(endpoint.reply_error(call, ErrorKind.GENERIC_ERROR, "d", {"bad": object()}))
    assert error == CallError("e2", "GenericError", "d", {})
