"""Strict validation against the OCA JSON schemas shipped in the ``ocpp`` package.

Error kinds follow OCPP-J 1.6 §4.2.3 Table 7 / OCPP 2.0.1 Part 4 §4.3 Table 8 definitions.
"""

from __future__ import annotations

import copy
import importlib.resources
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from secure_cp.rpc import ErrorKind, SchemaError, SchemaRegistry, decode, is_rfc3339_date_time, shared_registry

OCCURRENCE = ErrorKind.OCCURRENCE_CONSTRAINT_VIOLATION
TYPE = ErrorKind.TYPE_CONSTRAINT_VIOLATION
PROPERTY = ErrorKind.PROPERTY_CONSTRAINT_VIOLATION


@pytest.fixture(scope="module")
def v16() -> SchemaRegistry:
    return SchemaRegistry("1.6")


@pytest.fixture(scope="module")
def v201() -> SchemaRegistry:
    return SchemaRegistry("2.0.1")


def reject(validate: Any, action: str, payload: Any) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        validate(action, payload)
    return info.value


# --- the registry -------------------------------------------------------------------------------------------------


def test_schemas_come_from_the_installed_ocpp_package(v16: SchemaRegistry, v201: SchemaRegistry) -> None:
    ocpp_dir = Path(str(importlib.resources.files("ocpp")))
    for registry in (v16, v201):
        assert ocpp_dir in Path(str(registry._directory)).parents
    repo = Path(__file__).resolve().parents[1]
    assert not list((repo / "secure_cp").rglob("*.json")), "schemas must not be copied into the repository"


def test_knows_core_and_security_extension_actions(v16: SchemaRegistry, v201: SchemaRegistry) -> None:
    for action in ("BootNotification", "MeterValues", "SetChargingProfile", "StartTransaction", "DataTransfer",
                   # 1.6 security whitepaper ed. 3 messages
                   "SignCertificate", "CertificateSigned", "InstallCertificate", "SecurityEventNotification",
                   "SignedUpdateFirmware", "GetLog", "ExtendedTriggerMessage"):
        assert v16.knows(action), action
    for action in ("BootNotification", "MeterValues", "TransactionEvent", "SetVariables", "Get15118EVCertificate"):
        assert v201.knows(action), action
    for action in ("TransactionEvent", "BootNotificationResponse", "", "../v201/schemas/Reset", "bootnotification"):
        assert not v16.knows(action), action
    for action in ("StartTransaction", "BootNotificationRequest", "BootNotificationResponse", "Reset.json"):
        assert not v201.knows(action), action
    assert len(v16.actions) >= 39 and len(v201.actions) >= 64


def test_unknown_action_is_not_implemented(v16: SchemaRegistry) -> None:
    error = reject(v16.validate_request, "Teleport", {})
    assert error.kind is ErrorKind.NOT_IMPLEMENTED
    assert reject(v16.validate_response, "../../etc/passwd", {}).kind is ErrorKind.NOT_IMPLEMENTED


def test_unknown_version() -> None:
    with pytest.raises(ValueError):
        SchemaRegistry("2.0")


def test_shared_registry_is_one_per_version() -> None:
    assert shared_registry("1.6") is shared_registry("1.6")
    assert shared_registry("2.0.1") is not shared_registry("1.6")
    assert shared_registry("2.0.1").version == "2.0.1"


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_every_schema_compiles_and_validates(version: str) -> None:
    """Each of the ~200 OCA schemas compiles; {} either passes or fails with a mapped kind, nothing else."""
    registry = SchemaRegistry(version)
    kinds = set()
    for action in registry.actions:
        for validate in (registry.validate_request, registry.validate_response):
            try:
                validate(action, {})
            except SchemaError as exc:
                kinds.add(exc.kind)
    assert kinds == {OCCURRENCE}  # {} can only be missing required fields


# --- BootNotification ------------------------------------------------------------------------------------------


def test_v16_boot_notification(v16: SchemaRegistry) -> None:
    ok = {"chargePointVendor": "VendorX", "chargePointModel": "SingleSocketCharger", "firmwareVersion": "1.0"}
    v16.validate_request("BootNotification", ok)

    missing = reject(v16.validate_request, "BootNotification", {"chargePointVendor": "VendorX"})
    assert missing.kind is OCCURRENCE and missing.rule == "required" and "chargePointModel" in missing.description

    long = reject(v16.validate_request, "BootNotification", {**ok, "chargePointVendor": "V" * 21})
    assert long.kind is PROPERTY and long.rule == "maxLength" and long.path == "$.chargePointVendor"
    assert "$.chargePointVendor" in long.description and "maxLength" in long.description
    v16.validate_request("BootNotification", {**ok, "chargePointVendor": "V" * 20})

    wrong_type = reject(v16.validate_request, "BootNotification", {**ok, "chargePointModel": 5})
    assert wrong_type.kind is TYPE and wrong_type.path == "$.chargePointModel"

    extra = reject(v16.validate_request, "BootNotification", {**ok, "colour": "red"})
    assert extra.kind is ErrorKind.FORMATION_VIOLATION and extra.rule == "additionalProperties"
    assert "colour" in extra.description

    v16.validate_response("BootNotification",
                          {"status": "Accepted", "currentTime": "2013-02-01T20:53:32.486Z", "interval": 300})
    bad_enum = reject(v16.validate_response, "BootNotification",
                      {"status": "Maybe", "currentTime": "2013-02-01T20:53:32.486Z", "interval": 300})
    assert bad_enum.kind is PROPERTY and bad_enum.rule == "enum"


def test_v201_boot_notification(v201: SchemaRegistry) -> None:
    ok = {"reason": "PowerUp", "chargingStation": {"model": "SingleSocketCharger", "vendorName": "VendorX"}}
    v201.validate_request("BootNotification", ok)

    nested = copy.deepcopy(ok)
    del nested["chargingStation"]["model"]
    error = reject(v201.validate_request, "BootNotification", nested)
    assert error.kind is OCCURRENCE and error.path == "$.chargingStation"

    nested = copy.deepcopy(ok)
    nested["chargingStation"]["model"] = "M" * 21
    error = reject(v201.validate_request, "BootNotification", nested)
    assert error.kind is PROPERTY and error.path == "$.chargingStation.model"

    assert reject(v201.validate_request, "BootNotification", {**ok, "reason": "Boredom"}).kind is PROPERTY

    # 2.0.1 Part 4 Table 8 words "not conform the PDU structure" as ProtocolError.
    nested = copy.deepcopy(ok)
    nested["chargingStation"]["colour"] = "red"
    error = reject(v201.validate_request, "BootNotification", nested)
    assert error.kind is ErrorKind.PROTOCOL_ERROR and error.rule == "additionalProperties"

    # customData is the extension point that stays open (Part 4 §9).
    v201.validate_request("BootNotification", {**ok, "customData": {"vendorId": "X", "anything": [1, 2]}})
    assert reject(v201.validate_request, "BootNotification", {**ok, "customData": {}}).kind is OCCURRENCE


# --- MeterValues -------------------------------------------------------------------------------------------------


def v16_meter_values(n: int = 10) -> dict:
    return {
        "connectorId": 1,
        "transactionId": 42,
        "meterValue": [{
            "timestamp": "2024-05-01T12:00:00.123Z",
            "sampledValue": [
                {"value": "2935.600", "measurand": "Energy.Active.Import.Register", "unit": "kWh",
                 "context": "Sample.Periodic", "format": "Raw"}
                for _ in range(n)
            ],
        }],
    }


def v201_meter_values(n: int = 10) -> dict:
    return {
        "evseId": 1,
        "meterValue": [{
            "timestamp": "2024-05-01T12:00:00+02:00",
            "sampledValue": [
                {"value": Decimal("2935.600"), "measurand": "Energy.Active.Import.Register",
                 "unitOfMeasure": {"unit": "kWh", "multiplier": 0}, "context": "Sample.Periodic"}
                for _ in range(n)
            ],
        }],
    }


def test_v16_meter_values(v16: SchemaRegistry) -> None:
    v16.validate_request("MeterValues", v16_meter_values())
    payload = v16_meter_values()
    payload["meterValue"][0]["sampledValue"] = []
    error = reject(v16.validate_request, "MeterValues", payload)
    assert error.kind is OCCURRENCE and error.rule == "minItems"
    payload = v16_meter_values()
    payload["meterValue"][0]["sampledValue"][7]["measurand"] = "Energy.Magic"
    error = reject(v16.validate_request, "MeterValues", payload)
    assert error.kind is PROPERTY and error.path == "$.meterValue[0].sampledValue[7].measurand"
    payload = v16_meter_values()
    payload["meterValue"][0]["sampledValue"][0]["value"] = Decimal("2935.600")  # 1.6 value is a string
    assert reject(v16.validate_request, "MeterValues", payload).kind is TYPE


def test_v201_meter_values_with_decimals_from_decode(v201: SchemaRegistry) -> None:
    frame = decode('[2,"m","MeterValues",{"evseId":1,"meterValue":[{"timestamp":"2024-05-01T12:00:00Z",'
                   '"sampledValue":[{"value":2935.600},{"value":12},{"value":-0.5e3}]}]}]')
    v201.validate_request("MeterValues", frame.payload)  # type: ignore[union-attr]
    v201.validate_request("MeterValues", v201_meter_values())

    for bad in (True, "2935.600", None, float("nan"), Decimal("NaN"), Decimal("Infinity"), float("inf")):
        payload = v201_meter_values()
        payload["meterValue"][0]["sampledValue"][3]["value"] = bad
        error = reject(v201.validate_request, "MeterValues", payload)
        assert error.kind is TYPE, bad
        assert error.path == "$.meterValue[0].sampledValue[3].value"


def test_validation_never_modifies_the_payload(v201: SchemaRegistry) -> None:
    """2.0.1 schemas carry "default"s (e.g. context Sample.Periodic); they must not be written into payloads."""
    payload = {"evseId": 0, "meterValue": [{"timestamp": "2024-05-01T12:00:00Z", "sampledValue": [{"value": 1}]}]}
    before = copy.deepcopy(payload)
    v201.validate_request("MeterValues", payload)
    assert payload == before


# --- integer / number strictness --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False, 1.0, Decimal("1"), Decimal("1.0"), "1", None])
def test_integer_means_python_int(v16: SchemaRegistry, v201: SchemaRegistry, value: Any) -> None:
    """bool is not an integer; neither is 1.0 (the engine gets ints where OCPP says integer)."""
    assert reject(v16.validate_request, "StatusNotification",
                  {"connectorId": value, "errorCode": "NoError", "status": "Available"}).kind is TYPE
    error = reject(v201.validate_request, "MeterValues",
                   {"evseId": value, "meterValue": [{"timestamp": "2024-05-01T12:00:00Z",
                                                     "sampledValue": [{"value": 1}]}]})
    assert error.kind is TYPE and error.path == "$.evseId"


def test_big_integers_are_integers(v16: SchemaRegistry) -> None:
    v16.validate_request("StatusNotification", {"connectorId": 10**30, "errorCode": "NoError", "status": "Available"})


# --- SetChargingProfile multipleOf --------------------------------------------------------------------------------


def charging_profile(limit: Any) -> dict:
    return {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 7,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "startSchedule": "2024-05-01T00:00:00Z",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit, "numberPhases": 3}],
            },
        },
    }


LIMIT_PATH = "$.csChargingProfiles.chargingSchedule.chargingSchedulePeriod[0].limit"


@pytest.mark.parametrize("limit", [
    Decimal("21.4"), Decimal("21.40"), Decimal("21"), Decimal("0.0"), Decimal("-6.3"), Decimal("1E+400"),
    Decimal("2.1E+1"), 21, 0, 21.4, 0.3, 1e300, 16.1,
])
def test_v16_limit_multiple_of_point_one_accepted(v16: SchemaRegistry, limit: Any) -> None:
    """1.6 ChargingSchedulePeriod.limit: "multipleOf": 0.1, checked in exact decimal arithmetic."""
    v16.validate_request("SetChargingProfile", charging_profile(limit))


@pytest.mark.parametrize("limit", [
    Decimal("21.45"), Decimal("0.01"), Decimal("1E-400"), Decimal("21.400000000000000000000000000001"),
    21.45, 0.05, 5e-324,
])
def test_v16_limit_multiple_of_point_one_rejected(v16: SchemaRegistry, limit: Any) -> None:
    error = reject(v16.validate_request, "SetChargingProfile", charging_profile(limit))
    assert error.kind is PROPERTY and error.rule == "multipleOf" and error.path == LIMIT_PATH
    assert LIMIT_PATH in error.description and "multipleOf" in error.description


def test_v16_limit_from_decoded_text(v16: SchemaRegistry) -> None:
    import json

    from secure_cp.rpc import encode
    from secure_cp.rpc.frames import Call

    text = encode(Call("c", "SetChargingProfile", charging_profile(0)))
    for number, valid in (("21.4", True), ("21.45", False), ("32.000", True), ("32.001", False)):
        frame = decode(text.replace('"limit":0', f'"limit":{number}'))
        assert isinstance(frame.payload["csChargingProfiles"]["chargingSchedule"]  # type: ignore[union-attr]
                          ["chargingSchedulePeriod"][0]["limit"], Decimal)
        if valid:
            v16.validate_request("SetChargingProfile", frame.payload)  # type: ignore[union-attr]
        else:
            assert reject(v16.validate_request, "SetChargingProfile",
                          frame.payload).rule == "multipleOf"  # type: ignore[union-attr]
    assert json.loads(text)


def test_v201_charging_schedule_max_items(v201: SchemaRegistry) -> None:
    schedule = {"id": 1, "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": Decimal("11000.5")}]}
    profile = {"id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
               "chargingProfileKind": "Absolute", "chargingSchedule": [schedule]}
    v201.validate_request("SetChargingProfile", {"evseId": 1, "chargingProfile": profile})
    too_many = {**profile, "chargingSchedule": [schedule] * 4}
    error = reject(v201.validate_request, "SetChargingProfile", {"evseId": 1, "chargingProfile": too_many})
    assert error.kind is OCCURRENCE and error.rule == "maxItems"
    none = {**profile, "chargingSchedule": []}
    assert reject(v201.validate_request, "SetChargingProfile",
                  {"evseId": 1, "chargingProfile": none}).kind is OCCURRENCE


# --- StartTransaction date-time -------------------------------------------------------------------------------------

VALID_DATE_TIMES = [
    "2024-05-01T12:00:00Z", "2024-05-01T12:00:00.123Z", "2024-05-01T12:00:00.123456789Z",
    "2024-05-01T12:00:00+01:00", "2024-05-01T12:00:00-05:30", "2024-05-01T12:00:00-00:00",
    "2024-05-01t12:00:00z", "2024-02-29T00:00:00Z", "2000-02-29T23:59:59Z", "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59+23:59",
]
INVALID_DATE_TIMES = [
    "2024-13-01T00:00:00Z", "2024-00-10T00:00:00Z", "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z",
    "1900-02-29T00:00:00Z", "2024-04-31T00:00:00Z", "2024-01-00T00:00:00Z",
    "2024-01-01 00:00:00Z", "2024-01-01T00:00:00", "2024-01-01T00:00:00+0100", "2024-01-01T00:00:00+01",
    "2024-01-01T24:00:00Z", "2024-01-01T00:60:00Z", "2024-01-01T00:00:60Z", "2024-01-01T00:00Z",
    "2024-01-01T00:00:00.Z", "2024-01-01T00:00:00,5Z", "2024-1-01T00:00:00Z", "24-01-01T00:00:00Z",
    "2024-01-01", "T00:00:00Z", "", "2024-01-01T00:00:00+24:00", "2024-01-01T00:00:00+01:60",
    "２０２４-01-01T00:00:00Z", "2024-01-01T00:00:00Z ", " 2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z\n",
    "0000-01-01T00:00:00Z", "2024-01-01T00:00:00UTC",
]


@pytest.mark.parametrize("value", VALID_DATE_TIMES)
def test_rfc3339_valid(v16: SchemaRegistry, value: str) -> None:
    assert is_rfc3339_date_time(value)
    v16.validate_request("StartTransaction", {"connectorId": 1, "idTag": "04A2B3C4", "meterStart": 0,
                                              "timestamp": value})


@pytest.mark.parametrize("value", INVALID_DATE_TIMES)
def test_rfc3339_invalid(v16: SchemaRegistry, v201: SchemaRegistry, value: str) -> None:
    assert not is_rfc3339_date_time(value)
    error = reject(v16.validate_request, "StartTransaction",
                   {"connectorId": 1, "idTag": "04A2B3C4", "meterStart": 0, "timestamp": value})
    assert error.kind is PROPERTY and error.rule == "format" and error.path == "$.timestamp"
    error = reject(v201.validate_response, "Heartbeat", {"currentTime": value})
    assert error.kind is PROPERTY and error.path == "$.currentTime"


def test_v16_start_transaction_rules(v16: SchemaRegistry) -> None:
    ok = {"connectorId": 1, "idTag": "04A2B3C4", "meterStart": 0, "timestamp": "2024-05-01T12:00:00Z"}
    v16.validate_request("StartTransaction", ok)
    assert reject(v16.validate_request, "StartTransaction", {**ok, "idTag": "X" * 21}).kind is PROPERTY
    assert reject(v16.validate_request, "StartTransaction", {**ok, "meterStart": "0"}).kind is TYPE
    assert reject(v16.validate_request, "StartTransaction", {**ok, "timestamp": 1714564800}).kind is TYPE
    no_ts = dict(ok)
    del no_ts["timestamp"]
    assert reject(v16.validate_request, "StartTransaction", no_ts).kind is OCCURRENCE


# --- 1.6 security extension: draft-06 schemas with urn: $id and $refs ---------------------------------------------


def test_v16_security_extension_refs_resolve(v16: SchemaRegistry) -> None:
    hash_data = {"hashAlgorithm": "SHA256", "issuerNameHash": "a", "issuerKeyHash": "b", "serialNumber": "c"}
    v16.validate_response("GetInstalledCertificateIds", {"status": "Accepted", "certificateHashData": [hash_data]})
    error = reject(v16.validate_response, "GetInstalledCertificateIds",
                   {"status": "Accepted", "certificateHashData": [{**hash_data, "hashAlgorithm": "MD5"}]})
    assert error.kind is PROPERTY and error.path == "$.certificateHashData[0].hashAlgorithm"
    partial = dict(hash_data)
    del partial["serialNumber"]
    error = reject(v16.validate_response, "GetInstalledCertificateIds",
                   {"status": "Accepted", "certificateHashData": [partial]})
    assert error.kind is OCCURRENCE
    error = reject(v16.validate_request, "SignCertificate", {"csr": "x", "extra": 1})
    assert error.kind is ErrorKind.FORMATION_VIOLATION
    assert reject(v16.validate_request, "CertificateSigned", {"certificateChain": "c" * 10001}).kind is PROPERTY
    v16.validate_request("SecurityEventNotification", {"type": "FirmwareUpdated", "timestamp": "2024-05-01T12:00:00Z"})
    assert reject(v16.validate_request, "SecurityEventNotification",
                  {"type": "FirmwareUpdated", "timestamp": "yesterday"}).rule == "format"


def test_v16_uri_format(v16: SchemaRegistry) -> None:
    v16.validate_request("UpdateFirmware", {"location": "https://fw.example/x.bin",
                                            "retrieveDate": "2024-05-01T12:00:00Z"})
    assert reject(v16.validate_request, "UpdateFirmware",
                  {"location": "not a uri", "retrieveDate": "2024-05-01T12:00:00Z"}).kind is PROPERTY


def test_root_must_be_an_object(v16: SchemaRegistry) -> None:
    assert reject(v16.validate_request, "Heartbeat", []).kind is TYPE


def test_multiple_of_with_thousands_of_digits(v16: SchemaRegistry) -> None:
    """Exactness without big-integer conversions (Python limits int(str) to 4300 digits)."""
    v16.validate_request("SetChargingProfile", charging_profile(Decimal("1" * 9000 + ".1")))
    v16.validate_request("SetChargingProfile", charging_profile(Decimal("1" * 9000 + ".1000")))
    error = reject(v16.validate_request, "SetChargingProfile", charging_profile(Decimal("1." + "0" * 9000 + "1")))
    assert error.rule == "multipleOf"
