"""Property tests: whatever arrives, Endpoint.receive never raises, answers only with well-formed CALLERRORs
carrying a code of the negotiated version (OCPP-J 1.6 §4.2.3 Table 7 / OCPP 2.0.1 Part 4 §4.3 Table 8), and
leaves the outstanding CALL alone unless the message really answers it.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secure_cp.rpc import (
    CallError,
    CallResult,
    Endpoint,
    IncomingCall,
    Reply,
    decode,
    encode,
    error_codes,
    is_rfc3339_date_time,
    shared_registry,
)
from secure_cp import jsontext
from secure_cp.rpc.frames import Call, encode_call
from secure_cp.rpc.schemas import _is_multiple_of

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VERSIONS = ("1.6", "2.0.1")

# Valid CSMS-initiated requests (the kind a charging station receives) for each version.
SAMPLES: dict[str, dict[str, dict]] = {
    "1.6": {
        "ChangeConfiguration": {"key": "HeartbeatInterval", "value": "60"},
        "RemoteStartTransaction": {"connectorId": 1, "idTag": "04A2B3C4"},
        "ReserveNow": {"connectorId": 1, "expiryDate": "2024-05-01T12:00:00Z", "idTag": "A1", "reservationId": 3,
                       "parentIdTag": "P1"},
        "TriggerMessage": {"requestedMessage": "StatusNotification", "connectorId": 1},
        "UpdateFirmware": {"location": "https://fw.example/a.bin", "retrieveDate": "2024-05-01T12:00:00Z",
                           "retries": 3, "retryInterval": 60},
        "SetChargingProfile": {"connectorId": 1, "csChargingProfiles": {
            "chargingProfileId": 7, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute", "chargingSchedule": {
                "chargingRateUnit": "A", "startSchedule": "2024-05-01T00:00:00Z",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": Decimal("16.0"), "numberPhases": 3}]}}},
        "GetConfiguration": {"key": ["HeartbeatInterval"]},
        "SendLocalList": {"listVersion": 2, "updateType": "Full", "localAuthorizationList": [
            {"idTag": "A", "idTagInfo": {"status": "Accepted", "expiryDate": "2025-01-01T00:00:00Z"}}]},
        "InstallCertificate": {"certificateType": "CentralSystemRootCertificate", "certificate": "-----BEGIN"},
        "GetLog": {"logType": "SecurityLog", "requestId": 1,
                   "log": {"remoteLocation": "https://x.example/y", "oldestTimestamp": "2024-01-01T00:00:00Z"}},
    },
    "2.0.1": {
        "RequestStartTransaction": {"idToken": {"idToken": "04A2B3C4", "type": "ISO14443"}, "remoteStartId": 1,
                                    "evseId": 1},
        "Reset": {"type": "OnIdle", "evseId": 1},
        "SetVariables": {"setVariableData": [{"attributeValue": "60", "component": {"name": "OCPPCommCtrlr"},
                                              "variable": {"name": "HeartbeatInterval"}}]},
        "ChangeAvailability": {"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 1}},
        "ReserveNow": {"id": 1, "expiryDateTime": "2024-05-01T12:00:00Z",
                       "idToken": {"idToken": "A", "type": "Central"}, "evseId": 1},
        "TriggerMessage": {"requestedMessage": "Heartbeat"},
        "SetChargingProfile": {"evseId": 1, "chargingProfile": {
            "id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute",
            "chargingSchedule": [{"id": 1, "chargingRateUnit": "W", "startSchedule": "2024-05-01T00:00:00Z",
                                  "chargingSchedulePeriod": [{"startPeriod": 0, "limit": Decimal("11000.5")}]}]}},
        "GetLog": {"log": {"remoteLocation": "https://x.example/y"}, "logType": "DiagnosticsLog", "requestId": 1},
    },
}

OCCURRENCE = {"1.6": "OccurenceConstraintViolation", "2.0.1": "OccurrenceConstraintViolation"}
STRUCTURE = {"1.6": "FormationViolation", "2.0.1": "ProtocolError"}


def endpoint_with_outstanding_call(version: str) -> Endpoint:
    endpoint = Endpoint(version)
    endpoint.send_call("Heartbeat", {}, now=0.0)
    return endpoint


def check_events(version: str, endpoint: Endpoint, before: tuple[str, str] | None, events: list) -> None:
    """The invariants every receive() must keep for input that does not answer our CALL."""
    assert endpoint.outstanding == before
    for event in events:
        if isinstance(event, Reply):
            check_callerror_text(version, event.text)
        else:
            assert isinstance(event, IncomingCall), event  # never a Response/ErrorResponse for a foreign id
            shared_registry(version).validate_request(event.action, event.payload)


def check_callerror_text(version: str, text: str) -> CallError:
    text.encode("utf-8")  # sendable
    frame = decode(text, version=version)
    assert isinstance(frame, CallError)
    assert frame.code in error_codes(version)
    assert len(frame.unique_id) <= 36 and len(frame.description) <= 255
    assert isinstance(frame.details, dict)
    return frame


# --- arbitrary input -------------------------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12,
)
all_actions = sorted(set(SAMPLES["1.6"]) | set(SAMPLES["2.0.1"]) | {"Heartbeat", "BootNotification", "", "Nope"})


@st.composite
def frame_like_arrays(draw: st.DrawFn) -> str:
    type_id = draw(st.one_of(st.sampled_from([2, 3, 4]), st.integers(-3, 9), json_values))
    unique_id = draw(st.one_of(st.text(max_size=40), json_values))
    rest = draw(st.lists(st.one_of(st.sampled_from(all_actions), json_values), max_size=4))
    message = [type_id, unique_id, *rest]
    return json.dumps(message[: draw(st.integers(0, len(message)))], ensure_ascii=draw(st.booleans()))


@FUZZ
@given(version=st.sampled_from(VERSIONS), text=st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_arbitrary_text_never_breaks_the_endpoint(version: str, text: str | bytes) -> None:
    endpoint = endpoint_with_outstanding_call(version)
    before = endpoint.outstanding
    check_events(version, endpoint, before, endpoint.receive(text, now=1.0))


@FUZZ
@given(version=st.sampled_from(VERSIONS), text=frame_like_arrays())
def test_arbitrary_json_arrays_never_break_the_endpoint(version: str, text: str) -> None:
    endpoint = endpoint_with_outstanding_call(version)
    before = endpoint.outstanding
    check_events(version, endpoint, before, endpoint.receive(text, now=1.0))


@FUZZ
@given(version=st.sampled_from(VERSIONS), text=frame_like_arrays(), cut=st.integers(0, 200))
def test_truncated_json_never_breaks_the_endpoint(version: str, text: str, cut: int) -> None:
    endpoint = endpoint_with_outstanding_call(version)
    before = endpoint.outstanding
    check_events(version, endpoint, before, endpoint.receive(text[:cut], now=1.0))


# --- schema-violating payloads for real actions -------------------------------------------------------------------------


def test_samples_are_valid() -> None:
    for version, samples in SAMPLES.items():
        endpoint = Endpoint(version)
        for action, payload in samples.items():
            events = endpoint.receive(encode(Call("ok", action, payload)), now=0.0)
            assert events == [IncomingCall("ok", action, payload)], (version, action, events)


def walk(value: Any, schema: dict, path: tuple = ()) -> Any:
    """(path, value, schema) for every value present in a payload, with the subschema that governs it."""
    yield path, value, schema
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, schema["properties"][key], path + (key,))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from walk(item, schema["items"], path + (index,))


def put(payload: dict, path: tuple, value: Any) -> dict:
    result = copy.deepcopy(payload)
    node: Any = result
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return result


def matches_type(json_type: str, value: Any) -> bool:
    return {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float, Decimal)) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "null": value is None,
    }[json_type]


wrong_type_values = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), st.decimals(places=2, allow_nan=False, allow_infinity=False),
    st.text(max_size=10), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=4), st.integers(),
                                                                                max_size=2),
)


@st.composite
def violations(draw: st.DrawFn, version: str) -> tuple[str, dict, str]:
    """(action, invalid payload, expected CALLERROR code) - one violation of one rule."""
    action = draw(st.sampled_from(sorted(SAMPLES[version])))
    payload = SAMPLES[version][action]
    nodes = list(walk(payload, shared_registry(version).schema(action)))
    candidates = {
        "required": [(p, v, s) for p, v, s in nodes if isinstance(v, dict) and s.get("required")],
        "additionalProperties": [(p, v, s) for p, v, s in nodes
                                 if isinstance(v, dict) and s.get("additionalProperties") is False],
        "type": [(p, v, s) for p, v, s in nodes if p and isinstance(s.get("type"), str)],
        "constraint": [(p, v, s) for p, v, s in nodes if p and isinstance(v, str)
                       and ("enum" in s or s.get("format") == "date-time" or "maxLength" in s)],
        "minItems": [(p, v, s) for p, v, s in nodes if p and isinstance(v, list) and s.get("minItems", 0) >= 1],
    }
    rule = draw(st.sampled_from(sorted(rule for rule, found in candidates.items() if found)))
    path, value, sub = draw(st.sampled_from(candidates[rule]))

    if rule == "required":
        key = draw(st.sampled_from(sorted(sub["required"])))
        pruned = {k: v for k, v in value.items() if k != key}
        return action, (put(payload, path, pruned) if path else pruned), OCCURRENCE[version]
    if rule == "additionalProperties":
        key = draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in sub["properties"]))
        extended = {**value, key: draw(wrong_type_values)}
        return action, (put(payload, path, extended) if path else extended), STRUCTURE[version]
    if rule == "type":
        wrong = draw(wrong_type_values.filter(lambda v: not matches_type(sub["type"], v)))
        return action, put(payload, path, wrong), "TypeConstraintViolation"
    if rule == "constraint":
        if "enum" in sub:
            text = draw(st.text(max_size=30).filter(lambda t: t not in sub["enum"]))
        elif sub.get("format") == "date-time":
            text = draw(st.text(max_size=30).filter(lambda t: not is_rfc3339_date_time(t)))
        else:
            text = draw(st.text(min_size=sub["maxLength"] + 1, max_size=sub["maxLength"] + 10))
        return action, put(payload, path, text), "PropertyConstraintViolation"
    return action, put(payload, path, []), OCCURRENCE[version]


@FUZZ
@given(data=st.data(), version=st.sampled_from(VERSIONS), unique_id=st.text(min_size=1, max_size=36))
def test_schema_violations_for_real_actions_get_the_spec_code(data: st.DataObject, version: str, unique_id: str) -> None:
    action, payload, expected = data.draw(violations(version))
    endpoint = endpoint_with_outstanding_call(version)
    before = endpoint.outstanding
    events = endpoint.receive(encode(Call(unique_id, action, payload)), now=1.0)
    check_events(version, endpoint, before, events)
    assert len(events) == 1 and isinstance(events[0], Reply), (action, payload, events)
    frame = check_callerror_text(version, events[0].text)
    assert frame.unique_id == unique_id
    assert frame.code == expected, (action, payload, frame)


# --- numbers -------------------------------------------------------------------------------------------------------------

decimals = st.decimals(allow_nan=False, allow_infinity=False, min_value=Decimal("-1e12"), max_value=Decimal("1e12"),
                       places=None).filter(lambda d: d.as_tuple().exponent >= -30)  # type: ignore[operator]
divisors = st.sampled_from([Decimal("0.1"), Decimal("0.25"), Decimal("3"), Decimal("1E+2"), Decimal("0.001"),
                            Decimal("7.5"), Decimal("1")])


@FUZZ
@given(value=st.one_of(decimals, st.integers(-(10**20), 10**20)), divisor=divisors)
def test_multiple_of_is_exact(value: Decimal | int, divisor: Decimal) -> None:
    assert _is_multiple_of(value, divisor) == ((Fraction(value) / Fraction(divisor)).denominator == 1)


@FUZZ
@given(value=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9))
def test_float_multiple_of_uses_shortest_repr(value: float) -> None:
    assert _is_multiple_of(value, Decimal("0.1")) == ((Fraction(Decimal(repr(value))) * 10).denominator == 1)


json_with_decimals = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10),
              st.decimals(allow_nan=False, allow_infinity=False, places=3)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=3)),
    max_leaves=10,
)


@FUZZ
@given(payload=st.dictionaries(st.text(max_size=6), json_with_decimals, max_size=4), unique_id=st.text(max_size=36))
def test_encode_decode_round_trip(payload: dict, unique_id: str) -> None:
    frame = CallResult(unique_id, payload)
    text = encode(frame)
    text.encode("utf-8")
    again = decode(text)
    assert again == frame
    assert encode(again) == text  # the decimal text is stable


@FUZZ
@given(payload=st.dictionaries(st.text(max_size=6), json_with_decimals, max_size=4), unique_id=st.text(max_size=36),
       action=st.sampled_from(["MeterValues", "TransactionEvent", "Ünknown\x01\"\\"]))
def test_a_call_around_stored_payload_text_is_the_encoded_call(payload: dict, unique_id: str, action: str) -> None:
    """The outbox sends a queued payload as the text it stored (encode_call): the very frame encode() writes."""
    text = encode_call(unique_id, action, jsontext.dumps(payload))
    assert text == encode(Call(unique_id, action, payload))
    assert decode(text) == Call(unique_id, action, payload)


def test_a_call_around_stored_payload_text_with_lone_surrogates() -> None:
    """A lone surrogate cannot go out as UTF-8: it is written as a \\u escape, in the id or in the stored payload."""
    for unique_id, payload in (("id-\ud800", {"a": "é"}), ("id-é", {"a": "\udc00"})):
        text = encode_call(unique_id, "DataTransfer", jsontext.dumps(payload))
        text.encode("utf-8")
        assert decode(text) == Call(unique_id, "DataTransfer", payload)
