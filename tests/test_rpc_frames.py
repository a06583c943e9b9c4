"""OCPP-J frames (OCPP-J 1.6 §4, OCPP 2.0.1 Part 4 §4) and CALLERROR codes (1.6 §4.2.3 Table 7, 2.0.1 §4.3)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secure_cp import jsontext
from secure_cp.rpc import frames
from secure_cp.store import db as store_db
from secure_cp.rpc import (
    CALL,
    CALLERROR,
    CALLRESULT,
    Call,
    CallError,
    CallResult,
    ErrorKind,
    FrameError,
    OcppError,
    decode,
    encode,
    error_code,
    error_codes,
    error_kind,
)

# --- round trips --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, frame",
    [
        (
            '[2,"19223201","BootNotification",{"chargePointVendor":"VendorX","chargePointModel":"SingleSocketCharger"}]',
            Call("19223201", "BootNotification",
                 {"chargePointVendor": "VendorX", "chargePointModel": "SingleSocketCharger"}),
        ),
        (
            '[3,"19223201",{"status":"Accepted","currentTime":"2013-02-01T20:53:32.486Z","heartbeatInterval":300}]',
            CallResult("19223201",
                       {"status": "Accepted", "currentTime": "2013-02-01T20:53:32.486Z", "heartbeatInterval": 300}),
        ),
        (
            '[4,"162376037","NotSupported","SetDisplayMessageRequest not implemented",{}]',
            CallError("162376037", "NotSupported", "SetDisplayMessageRequest not implemented", {}),
        ),
        ('[4,"x","GenericError","",{"a":[1,true,null]}]', CallError("x", "GenericError", "", {"a": [1, True, None]})),
        ('[2,"","Heartbeat",{}]', Call("", "Heartbeat", {})),
    ],
)
def test_spec_examples_round_trip_byte_exact(text: str, frame: object) -> None:
    """OCPP-J 1.6 §4.2.1-4.2.3 / 2.0.1 Part 4 §4.2.3 examples: decode, and encode back to the same bytes."""
    assert decode(text) == frame
    assert decode(text.encode("utf-8")) == frame
    assert encode(frame) == text  # type: ignore[arg-type]


def test_message_type_numbers() -> None:
    """OCPP-J 1.6 §4.1.3 Table 2."""
    assert (CALL, CALLRESULT, CALLERROR) == (2, 3, 4)


def test_decode_tolerates_whitespace_and_encode_is_compact() -> None:
    frame = decode(' [ 2 , "a" , "Heartbeat" , { } ] \n')
    assert frame == Call("a", "Heartbeat", {})
    assert encode(frame) == '[2,"a","Heartbeat",{}]'


@pytest.mark.parametrize("number", ["2935.600", "0.0000001", "-0.0", "100.0", "0.000", "12345678901234567890.123456789"])
def test_decimal_text_survives_decode_and_encode(number: str) -> None:
    """Eichrecht: a reading keeps its exact decimal text (never through float)."""
    text = f'[3,"m",{{"value":{number},"list":[{number}]}}]'
    frame = decode(text)
    assert isinstance(frame, CallResult)
    assert isinstance(frame.payload["value"], Decimal)
    assert str(frame.payload["value"]) == str(Decimal(number))
    assert encode(frame) == text


def test_exponent_numbers_stay_exact_in_value() -> None:
    frame = decode('[3,"m",{"a":1.5E+3,"b":1e-50,"c":1E+400}]')
    out = encode(frame)
    assert decode(out) == frame
    assert '"a":1.5E+3' in out and '"c":1E+400' in out


def test_integers_stay_int_and_bools_stay_bool() -> None:
    frame = decode('[3,"m",{"i":7,"b":true,"n":null}]')
    assert isinstance(frame, CallResult)
    assert type(frame.payload["i"]) is int and frame.payload["b"] is True and frame.payload["n"] is None
    assert encode(frame) == '[3,"m",{"i":7,"b":true,"n":null}]'


def test_null_payload_reads_as_empty_object() -> None:
    """OCPP-J 1.6 §4.2.1/§4.2.2 and 2.0.1 Part 4 §4.1.5 name null as a notation for "no payload"."""
    assert decode('[2,"a","Heartbeat",null]') == Call("a", "Heartbeat", {})
    assert decode('[3,"a",null]') == CallResult("a", {})
    assert decode('[4,"a","GenericError","",null]') == CallError("a", "GenericError", "", {})


# --- encode ----------------------------------------------------------------------------------------------------


def test_encode_writes_utf8_text_not_escapes() -> None:
    """OCPP-J 1.6 §4.1.2: UTF-8; natural-language text is sent as is."""
    text = encode(CallResult("a", {"text": "Grüße 充电"}))
    assert text == '[3,"a",{"text":"Grüße 充电"}]'


def test_encode_floats_and_decimals() -> None:
    text = encode(CallResult("a", {"f": 21.4, "d": Decimal("2935.600"), "small": Decimal("1E-7"), "i": 3}))
    assert text == '[3,"a",{"f":21.4,"d":2935.600,"small":0.0000001,"i":3}]'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), Decimal("NaN"), Decimal("-Infinity")])
def test_encode_refuses_non_json_numbers(bad: object) -> None:
    with pytest.raises(ValueError):
        encode(CallResult("a", {"x": bad}))


def test_encode_refuses_non_json_values() -> None:
    # the stdlib encoder writes a non-string key as its text: still valid JSON (payloads decoded from JSON never
    # have one; checking every key in Python would cost the C encoder's speed)
    assert encode(CallResult("a", {1: "non-string key"})) == '[3,"a",{"1":"non-string key"}]'  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        encode(CallResult("a", {"x": object()}))
    with pytest.raises(TypeError):
        encode("not a frame")  # type: ignore[arg-type]


def test_encode_refuses_over_long_message_id() -> None:
    """OCPP-J 1.6 §4.1.4 Table 3: messageId is at most 36 characters."""
    encode(Call("x" * 36, "Heartbeat", {}))
    with pytest.raises(ValueError):
        encode(Call("x" * 37, "Heartbeat", {}))


def test_encode_escapes_lone_surrogates_so_the_text_is_utf8() -> None:
    frame = decode('[3,"a",{"s":"\\ud800x","t":"ü"}]')
    text = encode(frame)
    text.encode("utf-8")  # must not raise
    assert decode(text) == frame


def test_encode_accepts_tuples_and_enum_subclasses() -> None:
    import enum

    class Colour(str, enum.Enum):
        RED = "Red"

    class Num(enum.IntEnum):
        ONE = 1

    text = encode(CallResult("a", {"c": Colour.RED, "n": Num.ONE, "t": (1, 2)}))
    assert json.loads(text) == [3, "a", {"c": "Red", "n": 1, "t": [1, 2]}]


# --- decode errors --------------------------------------------------------------------------------------------

LONG_ID = "x" * 37

# text, kind (1.6), unique_id, message_type_id
DECODE_ERRORS = [
    (b"\xff\xfe", ErrorKind.RPC_FRAMEWORK_ERROR, None, None),
    (b'[2,"u1","Heartbeat",{"a":"\xff"}]', ErrorKind.FORMATION_VIOLATION, "u1", 2),
    ("not json", ErrorKind.RPC_FRAMEWORK_ERROR, None, None),
    ('[2,"u2","Heartbeat",{', ErrorKind.FORMATION_VIOLATION, "u2", 2),
    ('[2,"u3","A",{"x":1,"x":2}]', ErrorKind.FORMATION_VIOLATION, "u3", 2),
    ('[2,"u4","A",{"x":NaN}]', ErrorKind.FORMATION_VIOLATION, "u4", 2),
    ('[2,"u5","A",{"x":Infinity}]', ErrorKind.FORMATION_VIOLATION, "u5", 2),
    ('[3,"u6",{"x":' + "9" * 5000 + "}]", ErrorKind.FORMATION_VIOLATION, "u6", 3),
    ("[" * 50000, ErrorKind.RPC_FRAMEWORK_ERROR, None, None),
    ('{"a":1}', ErrorKind.RPC_FRAMEWORK_ERROR, None, None),
    ('"text"', ErrorKind.RPC_FRAMEWORK_ERROR, None, None),
    ("null", ErrorKind.RPC_FRAMEWORK_ERROR, None, None),
    ("[]", ErrorKind.RPC_FRAMEWORK_ERROR, None, None),
    ('["2","u7","Heartbeat",{}]', ErrorKind.RPC_FRAMEWORK_ERROR, "u7", None),
    ('[true,"u8","Heartbeat",{}]', ErrorKind.RPC_FRAMEWORK_ERROR, "u8", None),
    ('[2.0,"u9","Heartbeat",{}]', ErrorKind.RPC_FRAMEWORK_ERROR, "u9", None),
    ("[2]", ErrorKind.RPC_FRAMEWORK_ERROR, None, 2),
    ('[2,7,"Heartbeat",{}]', ErrorKind.RPC_FRAMEWORK_ERROR, None, 2),
    ('[2,null,"Heartbeat",{}]', ErrorKind.RPC_FRAMEWORK_ERROR, None, 2),
    (f'[2,"{LONG_ID}","Heartbeat",{{}}]', ErrorKind.RPC_FRAMEWORK_ERROR, None, 2),
    ('[5,"u10",{}]', ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED, "u10", 5),
    ('[0,"u11"]', ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED, "u11", 0),
    ('[2,"u12","Heartbeat"]', ErrorKind.RPC_FRAMEWORK_ERROR, "u12", 2),
    ('[2,"u13","Heartbeat",{},{}]', ErrorKind.RPC_FRAMEWORK_ERROR, "u13", 2),
    ('[2,"u14",12,{}]', ErrorKind.RPC_FRAMEWORK_ERROR, "u14", 2),
    ('[2,"u15","Heartbeat",[]]', ErrorKind.FORMATION_VIOLATION, "u15", 2),
    ('[2,"u16","Heartbeat","{}"]', ErrorKind.FORMATION_VIOLATION, "u16", 2),
    ('[3,"u17"]', ErrorKind.RPC_FRAMEWORK_ERROR, "u17", 3),
    ('[3,"u18",5]', ErrorKind.FORMATION_VIOLATION, "u18", 3),
    ('[4,"u19","GenericError",""]', ErrorKind.RPC_FRAMEWORK_ERROR, "u19", 4),
    ('[4,"u20",1,"",{}]', ErrorKind.RPC_FRAMEWORK_ERROR, "u20", 4),
    ('[4,"u21","GenericError",null,{}]', ErrorKind.RPC_FRAMEWORK_ERROR, "u21", 4),
    ('[4,"u22","GenericError","",[]]', ErrorKind.RPC_FRAMEWORK_ERROR, "u22", 4),
    # shapes close to the ones decode() recognises first (a CALLRESULT / CALL in a few tests): the full checks judge
    ('[3,"u23",{},{}]', ErrorKind.RPC_FRAMEWORK_ERROR, "u23", 3),
    ('[2,"u24",{},{}]', ErrorKind.RPC_FRAMEWORK_ERROR, "u24", 2),
    ('[true,"u25",{}]', ErrorKind.RPC_FRAMEWORK_ERROR, "u25", None),
    ('[3,"u26","{}"]', ErrorKind.FORMATION_VIOLATION, "u26", 3),
    (f'[3,"{LONG_ID}",{{}}]', ErrorKind.RPC_FRAMEWORK_ERROR, None, 3),
]


@pytest.mark.parametrize("text, kind, unique_id, type_id", DECODE_ERRORS)
def test_decode_errors(text: str | bytes, kind: ErrorKind, unique_id: str | None, type_id: int | None) -> None:
    """OCPP-J 1.6 §4.2.3: broken messages are reported with the id when it can be read, else without."""
    with pytest.raises(FrameError) as info:
        decode(text)
    error = info.value
    assert error.kind is kind
    assert error.unique_id == unique_id
    assert error.message_type_id == type_id
    assert error.description


def test_payload_not_object_is_structure_error_per_version() -> None:
    """1.6 FormationViolation "not conform the PDU structure"; 2.0.1 moved those words to ProtocolError."""
    for text in ('[2,"a","Heartbeat",[]]', '[3,"a",1]'):
        with pytest.raises(FrameError) as v16:
            decode(text, version="1.6")
        with pytest.raises(FrameError) as v201:
            decode(text, version="2.0.1")
        assert v16.value.kind is ErrorKind.FORMATION_VIOLATION
        assert v201.value.kind is ErrorKind.PROTOCOL_ERROR


def test_decode_rejects_unknown_version_and_types() -> None:
    with pytest.raises(ValueError):
        decode("[]", version="2.0")
    with pytest.raises(TypeError):
        decode(42)  # type: ignore[arg-type]


def test_id_of_exactly_36_characters_is_fine() -> None:
    assert decode(f'[2,"{"x" * 36}","Heartbeat",{{}}]').unique_id == "x" * 36


# --- error codes --------------------------------------------------------------------------------------------------


def test_ocpp16_error_codes_keep_the_spec_spelling() -> None:
    """OCPP-J 1.6 §4.2.3 Table 7 and errata 5.1/5.2 (misspellings kept on purpose)."""
    assert error_codes("1.6") == {
        "NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError", "FormationViolation",
        "PropertyConstraintViolation", "OccurenceConstraintViolation", "TypeConstraintViolation", "GenericError",
    }
    assert error_code(ErrorKind.FORMATION_VIOLATION, "1.6") == "FormationViolation"
    assert error_code(ErrorKind.OCCURRENCE_CONSTRAINT_VIOLATION, "1.6") == "OccurenceConstraintViolation"
    # Kinds 1.6 lacks map to the nearest 1.6 code.
    assert error_code(ErrorKind.RPC_FRAMEWORK_ERROR, "1.6") == "ProtocolError"
    assert error_code(ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED, "1.6") == "GenericError"


def test_ocpp201_error_codes() -> None:
    """OCPP 2.0.1 Part 4 §4.3 Table 8."""
    assert error_codes("2.0.1") == {
        "FormatViolation", "GenericError", "InternalError", "MessageTypeNotSupported", "NotImplemented",
        "NotSupported", "OccurrenceConstraintViolation", "PropertyConstraintViolation", "ProtocolError",
        "RpcFrameworkError", "SecurityError", "TypeConstraintViolation",
    }
    assert error_code(ErrorKind.FORMATION_VIOLATION, "2.0.1") == "FormatViolation"
    assert error_code(ErrorKind.OCCURRENCE_CONSTRAINT_VIOLATION, "2.0.1") == "OccurrenceConstraintViolation"
    assert error_code(ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED, "2.0.1") == "MessageTypeNotSupported"
    assert error_code(ErrorKind.RPC_FRAMEWORK_ERROR, "2.0.1") == "RpcFrameworkError"


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_every_kind_has_a_code_of_its_version(version: str) -> None:
    for kind in ErrorKind:
        assert error_code(kind, version) in error_codes(version)


def test_error_code_rejects_unknown_version() -> None:
    with pytest.raises(ValueError):
        error_code(ErrorKind.GENERIC_ERROR, "1.5")


def test_error_kind_understands_both_spellings() -> None:
    assert error_kind("FormationViolation") is ErrorKind.FORMATION_VIOLATION
    assert error_kind("FormatViolation") is ErrorKind.FORMATION_VIOLATION
    assert error_kind("OccurenceConstraintViolation") is ErrorKind.OCCURRENCE_CONSTRAINT_VIOLATION
    assert error_kind("OccurrenceConstraintViolation") is ErrorKind.OCCURRENCE_CONSTRAINT_VIOLATION
    assert error_kind("ProtocolError") is ErrorKind.PROTOCOL_ERROR
    assert error_kind("RpcFrameworkError") is ErrorKind.RPC_FRAMEWORK_ERROR
    assert error_kind("NoSuchCode") is None


def test_ocpp_error_carries_kind_description_details() -> None:
    error = OcppError(ErrorKind.SECURITY_ERROR, "bad signature", {"hint": 1})
    assert error.kind is ErrorKind.SECURITY_ERROR
    assert error.description == "bad signature"
    assert error.details == {"hint": 1}
    assert OcppError(ErrorKind.INTERNAL_ERROR).details == {}
    assert "SecurityError" in str(error)


# decode() and the store read the common text (no whitespace around it) with the JSON scanner directly
# (jsontext.loads_with); every other text, and every error, must come out exactly as from the full decoder.
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.decimals(allow_nan=False, allow_infinity=False, places=3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=_JSON, before=st.sampled_from(["", " ", "\n\t"]), after=st.sampled_from(["", " ", "\r\n", "x", "]"]),
       cut=st.integers(min_value=0, max_value=40))
def test_parse_is_the_full_decoder(value: object, before: str, after: str, cut: int) -> None:
    text = before + jsontext.dumps(value) + after
    store_decoder = json.JSONDecoder(parse_float=Decimal)   # what secure_cp.store reads its JSON columns with
    for decoder, parse in ((frames._DECODER, frames._parse), (store_decoder, store_db._DECODE)):
        for candidate in (text, text[:cut]):
            try:
                expected = ("ok", decoder.decode(candidate))
            except (ValueError, RecursionError) as exc:
                expected = ("error", type(exc), str(exc))
            try:
                got = ("ok", parse(candidate))
            except (ValueError, RecursionError) as exc:
                got = ("error", type(exc), str(exc))
            assert got == expected, candidate
