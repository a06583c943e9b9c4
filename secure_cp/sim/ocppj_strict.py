"""Strict OCPP-J checking for the test CSMS: frame structure, JSON schemas with formats, CALLERROR codes.

Why it is separate from :mod:`secure_cp.sim.csms`: the checks are the same machinery for OCPP 1.6-J and
OCPP 2.0.1-J; only the data differs (schemas, which actions go which way, the CALLERROR vocabulary and how a
broken frame is answered). That data is one :class:`ProtocolRules` per version (:data:`V16_RULES`,
:data:`V201_RULES`); the functions here take the rules as an argument and hold no state.

Deliberately *not* the station's own validation code (``secure_cp.rpc``): the CSMS is the independent judge of
the station, so it must not share the code it judges.
"""

from __future__ import annotations

import dataclasses
import decimal
import json
from pathlib import Path
from typing import Any

import ocpp
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from rfc3339_validator import validate_rfc3339

__all__ = [
    "CALL",
    "CALLERROR",
    "CALLRESULT",
    "MAX_MESSAGE_ID_LENGTH",
    "V16_RULES",
    "V201_RULES",
    "Frame",
    "ProtocolRules",
    "SchemaBook",
    "Violation",
    "call_error_text",
    "check_payload",
    "parse_frame",
]

#: OCPP-J 1.6 §4.1.4 Table 3 / OCPP-J 2.0.1 §4.1.4 Table 4: a message id is a string of at most 36 characters.
MAX_MESSAGE_ID_LENGTH = 36

CALL, CALLRESULT, CALLERROR = 2, 3, 4


# --------------------------------------------------------------------------------------------------------------
# JSON and schemas
# --------------------------------------------------------------------------------------------------------------


def _make_format_checker() -> FormatChecker:
    """A FormatChecker that knows exactly the formats the OCA schemas use and we can check strictly.

    ``date-time`` is RFC 3339 (OCPP 1.6 §3.15 / OCPP 2.0.1 part 2 §3.1): a full date, 'T', time and a
    mandatory offset ('Z' or +hh:mm). Other formats (``uri``) are left unchecked, as a plain validator would.
    """
    checker = FormatChecker(formats=())

    @checker.checks("date-time")
    def _date_time(value: object) -> bool:
        return not isinstance(value, str) or bool(validate_rfc3339(value))

    return checker


_FORMAT_CHECKER = _make_format_checker()


class Violation(Exception):
    """A station->CSMS frame broke the rules.

    ``code`` is the CALLERROR errorCode to answer with; ``answer_to`` the message id to put in that CALLERROR,
    or None when the frame is not answered (responses, and in 1.6 frames whose id cannot be read).
    """

    def __init__(self, code: str, message: str, answer_to: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.answer_to = answer_to


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN / Infinity, JSON (RFC 8259) does not; OCPP-J §4.1.2 requires valid JSON.
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate object keys are "unpredictable" per RFC 8259 §4: a strict peer must not guess which one wins.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate object key {key!r}")
        result[key] = value
    return result


def loads_strict(text: str, *, exact_numbers: bool) -> Any:
    """Parse JSON strictly; with ``exact_numbers`` non-integers become Decimal (exact ``multipleOf``)."""
    return json.loads(
        text,
        parse_float=decimal.Decimal if exact_numbers else float,
        parse_constant=_reject_constant,
        object_pairs_hook=_no_duplicate_keys,
    )


class SchemaBook:
    """Loads the OCA JSON schemas shipped in the ``ocpp`` package and validates payloads against them.

    Schemas are parsed with Decimal numbers (so ``multipleOf: 0.1`` is exact), and the validator class is picked
    from each schema's ``$schema`` (draft-04 for 1.6, draft-06 for 2.0.1).
    """

    def __init__(self, directory: Path, request_suffix: str) -> None:
        self.directory = directory
        self._request_suffix = request_suffix
        self._cache: dict[str, Any] = {}

    def validator(self, action: str, *, response: bool) -> Any | None:
        name = f"{action}{'Response' if response else self._request_suffix}"
        if name not in self._cache:
            path = self.directory / f"{name}.json"
            if not path.is_file():
                self._cache[name] = None
            else:
                schema = json.loads(path.read_text(encoding="utf-8-sig"), parse_float=decimal.Decimal)
                cls = validator_for(schema, default=Draft4Validator)
                self._cache[name] = cls(schema, format_checker=_FORMAT_CHECKER)
        return self._cache[name]


# --------------------------------------------------------------------------------------------------------------
# Per-version rules
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProtocolRules:
    """Everything version-specific about checking frames: schemas, message directions, CALLERROR codes."""

    version: str  # as the ocpp package names it: "1.6", "2.0.1"
    subprotocol: str  # the WebSocket subprotocol that selects this version
    schemas: SchemaBook
    station_actions: frozenset[str]  # actions a station may send (CP -> CSMS)
    csms_actions: frozenset[str]  # actions a CSMS may send (CSMS -> CP)
    error_codes: frozenset[str]  # valid CALLERROR errorCode values
    # errorCode per JSON-schema keyword that failed; "*" is the fallback.
    keyword_codes: dict[str, str]
    frame_error: str  # errorCode for a frame that is not a valid RPC message
    payload_error: str  # errorCode for a CALL whose payload is syntactically broken (bad JSON, not an object)
    unknown_action: str  # errorCode for an action the receiver does not know
    unsupported_action: str  # errorCode for a known action we do not accept in this direction
    #: errorCode to answer an unknown MessageTypeId with; None: ignore it silently.
    message_type_error: str | None
    #: message id for a CALLERROR about a frame whose id cannot be read; None: do not answer such frames.
    unreadable_id: str | None
    #: True: a CALL's message id must be unique across all connections of the same station identity.
    ids_unique_per_identity: bool

    def code_for(self, keyword: str) -> str:
        return self.keyword_codes.get(keyword, self.keyword_codes["*"])


_OCPP_DIR = Path(ocpp.__file__).resolve().parent

#: OCPP 1.6 (incl. Security Whitepaper ed. 3) rules. Table 7 of OCPP-J 1.6 §4.2.3 names the error codes; the
#: errata keep the typo "OccurenceConstraintViolation" (and the 1.6 name "FormationViolation"), and we also
#: accept the corrected spelling from stations.
V16_RULES = ProtocolRules(
    version="1.6",
    subprotocol="ocpp1.6",
    schemas=SchemaBook(_OCPP_DIR / "v16" / "schemas", request_suffix=""),
    station_actions=frozenset(
        {
            "Authorize", "BootNotification", "DataTransfer", "DiagnosticsStatusNotification",
            "FirmwareStatusNotification", "Heartbeat", "MeterValues", "StartTransaction", "StatusNotification",
            "StopTransaction",
            # Security Whitepaper edition 3, §4-§6:
            "SecurityEventNotification", "SignCertificate", "LogStatusNotification",
            "SignedFirmwareStatusNotification",
        }
    ),
    csms_actions=frozenset(
        {
            "CancelReservation", "ChangeAvailability", "ChangeConfiguration", "ClearCache", "ClearChargingProfile",
            "DataTransfer", "GetCompositeSchedule", "GetConfiguration", "GetDiagnostics", "GetLocalListVersion",
            "RemoteStartTransaction", "RemoteStopTransaction", "ReserveNow", "Reset", "SendLocalList",
            "SetChargingProfile", "TriggerMessage", "UnlockConnector", "UpdateFirmware",
            "CertificateSigned", "DeleteCertificate", "ExtendedTriggerMessage", "GetInstalledCertificateIds",
            "GetLog", "InstallCertificate", "SignedUpdateFirmware",
        }
    ),
    error_codes=frozenset(
        {
            "NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
            "FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
            "OccurrenceConstraintViolation", "TypeConstraintViolation", "GenericError",
        }
    ),
    keyword_codes={
        "required": "ProtocolError",  # Table 7: "Payload for Action is incomplete"
        "additionalProperties": "FormationViolation",  # "... not conform the PDU structure"
        "format": "FormationViolation",  # the value is syntactically incorrect (e.g. not RFC 3339)
        "type": "TypeConstraintViolation",
        "maxLength": "TypeConstraintViolation",  # CiStringNNType is a data type (OCPP 1.6 §7.15-§7.19)
        "minLength": "TypeConstraintViolation",
        "minItems": "OccurenceConstraintViolation",
        "maxItems": "OccurenceConstraintViolation",
        "*": "PropertyConstraintViolation",  # enum, minimum, maximum, multipleOf, pattern, ...
    },
    frame_error="FormationViolation",
    payload_error="FormationViolation",
    unknown_action="NotImplemented",  # Table 7: "Requested Action is not known by receiver"
    unsupported_action="NotSupported",  # Table 7: "... recognized but not supported by the receiver"
    message_type_error=None,  # OCPP-J 1.6 §4.1.3: an unknown MessageTypeNumber is ignored
    unreadable_id=None,  # OCPP-J 1.6 has no id for answering a frame whose id cannot be read
    ids_unique_per_identity=False,  # OCPP-J 1.6 §4.1.4: unique "on the same WebSocket connection"
)

#: OCPP 2.0.1 rules (OCPP-J 2.0.1 = part 4 of 2.0.1 edition 3). The JSON schemas are the OCA 2.0.1 FINAL set.
V201_RULES = ProtocolRules(
    version="2.0.1",
    subprotocol="ocpp2.0.1",
    schemas=SchemaBook(_OCPP_DIR / "v201" / "schemas", request_suffix="Request"),
    # Part 2, "Messages": every PDU "sent by the Charging Station to the CSMS" (DataTransfer goes both ways).
    station_actions=frozenset(
        {
            "Authorize", "BootNotification", "ClearedChargingLimit", "DataTransfer", "FirmwareStatusNotification",
            "Get15118EVCertificate", "GetCertificateStatus", "Heartbeat", "LogStatusNotification", "MeterValues",
            "NotifyChargingLimit", "NotifyCustomerInformation", "NotifyDisplayMessages", "NotifyEVChargingNeeds",
            "NotifyEVChargingSchedule", "NotifyEvent", "NotifyMonitoringReport", "NotifyReport",
            "PublishFirmwareStatusNotification", "ReportChargingProfiles", "ReservationStatusUpdate",
            "SecurityEventNotification", "SignCertificate", "StatusNotification", "TransactionEvent",
        }
    ),
    # ... and every PDU sent by the CSMS (PublishFirmware / UnpublishFirmware go to a Local Controller, L03/L04).
    csms_actions=frozenset(
        {
            "CancelReservation", "CertificateSigned", "ChangeAvailability", "ClearCache", "ClearChargingProfile",
            "ClearDisplayMessage", "ClearVariableMonitoring", "CostUpdated", "CustomerInformation", "DataTransfer",
            "DeleteCertificate", "GetBaseReport", "GetChargingProfiles", "GetCompositeSchedule",
            "GetDisplayMessages", "GetInstalledCertificateIds", "GetLocalListVersion", "GetLog",
            "GetMonitoringReport", "GetReport", "GetTransactionStatus", "GetVariables", "InstallCertificate",
            "PublishFirmware", "RequestStartTransaction", "RequestStopTransaction", "ReserveNow", "Reset",
            "SendLocalList", "SetChargingProfile", "SetDisplayMessage", "SetMonitoringBase", "SetMonitoringLevel",
            "SetNetworkProfile", "SetVariableMonitoring", "SetVariables", "TriggerMessage", "UnlockConnector",
            "UnpublishFirmware", "UpdateFirmware",
        }
    ),
    # OCPP-J 2.0.1 §4.3 Table 8 "Valid Error Codes".
    error_codes=frozenset(
        {
            "FormatViolation", "GenericError", "InternalError", "MessageTypeNotSupported", "NotImplemented",
            "NotSupported", "OccurrenceConstraintViolation", "PropertyConstraintViolation", "ProtocolError",
            "RpcFrameworkError", "SecurityError", "TypeConstraintViolation",
        }
    ),
    # 2.0.1 split 1.6's FormationViolation ("syntactically incorrect or not conform the PDU structure") into
    # FormatViolation ("syntactically incorrect") and ProtocolError ("not conform the PDU structure"), and dropped
    # 1.6's "incomplete" wording of ProtocolError; the mapping follows the Table 8 definitions.
    keyword_codes={
        # a required field occurs 0 times: it violates its cardinality 1..1 (part 2 message tables, "Card.")
        "required": "OccurrenceConstraintViolation",
        "minItems": "OccurrenceConstraintViolation",
        "maxItems": "OccurrenceConstraintViolation",
        "additionalProperties": "ProtocolError",  # a field that is not in the PDU
        "format": "FormatViolation",  # syntactically incorrect value (e.g. a dateTime that is not RFC 3339)
        "type": "TypeConstraintViolation",  # Table 8's own example: "somestring": 12
        "maxLength": "TypeConstraintViolation",  # string[N] / identifierString[N] are data types (part 2 §2.1)
        "minLength": "TypeConstraintViolation",
        "*": "PropertyConstraintViolation",  # enum, minimum, maximum, ...: "a field contains an invalid value"
    },
    frame_error="RpcFrameworkError",  # Table 8: "Content of the call is not a valid RPC Request"
    payload_error="FormatViolation",  # Table 8: "Payload for Action is syntactically incorrect"
    unknown_action="NotImplemented",
    unsupported_action="NotSupported",
    message_type_error="MessageTypeNotSupported",  # §4.4 (the text's "MessageTypeErrorSupported" is a typo)
    unreadable_id="-1",  # §4.2.3: "When also the MessageId cannot be read, the CALLERROR SHALL contain "-1""
    ids_unique_per_identity=True,  # §4.1.4: "... on any WebSocket connection using the same ... identifier"
)


def _describe_schema_error(error: Any) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "<payload>"
    return f"{where}: {error.message}"


def check_payload(rules: ProtocolRules, action: str, payload: Any, *, response: bool) -> None:
    """Raise :class:`Violation` if ``payload`` (Decimal-parsed) does not satisfy the schema."""
    validator = rules.schemas.validator(action, response=response)
    if validator is None:
        raise Violation(rules.unknown_action, f"no schema for {action}{' response' if response else ''}")
    if validator.is_valid(payload):   # the common case: skip collecting and ranking every error
        return
    error = best_match(validator.iter_errors(payload))
    if error is not None:
        raise Violation(rules.code_for(str(error.validator)), _describe_schema_error(error))


# --------------------------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Frame:
    """A structurally valid OCPP-J frame from a station. Payloads are kept twice: ``payload`` with plain Python
    numbers (for records and handlers) and ``exact`` with Decimal numbers (for schema validation)."""

    type_id: int
    unique_id: str
    action: str | None = None
    payload: Any = None
    exact: Any = None
    error_code: str | None = None
    error_description: str | None = None
    error_details: Any = None


def _message_id(items: list[Any]) -> str | None:
    return items[1] if len(items) > 1 and isinstance(items[1], str) else None


def parse_frame(rules: ProtocolRules, text: str) -> Frame:
    """Check the OCPP-J RPC structure (OCPP-J 1.6 / 2.0.1 §4.1-§4.2) and split the frame.

    Raises :class:`Violation`; its ``answer_to`` says whether and with which message id the frame is answered:
    in 1.6 only CALLs whose id is a string are answered; in 2.0.1 also frames whose id cannot be read (with
    id "-1", §4.2.3) and frames of an unknown message type (MessageTypeNotSupported, §4.4).
    """
    try:
        # Lenient first (Python's json tolerates NaN and duplicate keys), so that a CALL that is only subtly
        # invalid still has a readable message id and can be answered with a CALLERROR.
        items = json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise Violation(rules.frame_error, f"not valid JSON: {exc}", rules.unreadable_id) from None
    if not isinstance(items, list) or not items:
        raise Violation(rules.frame_error, "an OCPP-J message must be a non-empty JSON array", rules.unreadable_id)
    type_id = items[0]
    message_id = _message_id(items)
    id_readable = message_id is not None and len(message_id) <= MAX_MESSAGE_ID_LENGTH
    if type(type_id) is not int:
        raise Violation(rules.frame_error, f"MessageTypeId {type_id!r} is not an integer", rules.unreadable_id)
    if type_id not in (CALL, CALLRESULT, CALLERROR):
        reason = f"unknown MessageTypeId {type_id!r}"
        if rules.message_type_error is None:
            raise Violation(rules.frame_error, reason)  # OCPP-J 1.6 §4.1.3: ignored, not answered
        raise Violation(rules.message_type_error, reason, message_id if id_readable else rules.unreadable_id)

    if type_id != CALL:
        answer_to = None  # a broken response is not answered: a CALLERROR answers a CALL
    elif rules.unreadable_id is None:
        answer_to = message_id  # 1.6: answer any CALL whose id is a string
    else:
        answer_to = message_id if id_readable else rules.unreadable_id

    def broken(reason: str, code: str = rules.frame_error) -> Violation:
        return Violation(code, reason, answer_to)

    if message_id is None:
        raise broken("message id missing or not a string")
    if len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise broken(f"message id longer than {MAX_MESSAGE_ID_LENGTH} characters")
    try:
        items = loads_strict(text, exact_numbers=False)
        exact = loads_strict(text, exact_numbers=True)
    except ValueError as exc:
        raise broken(f"not valid JSON: {exc}", rules.payload_error) from None
    if type_id == CALL:
        if len(items) != 4 or not isinstance(items[2], str):
            raise broken("a CALL must be [2, messageId, action, payload]")
        payload, exact_payload = items[3], exact[3]
        if payload is None:
            # OCPP-J §4.2.1 (1.6) / §4.1.5 (2.0.1) allow null for "no payload" (and recommend {}): treat it as
            # {} so a missing required field is still caught by the schema.
            payload, exact_payload = {}, {}
        if not isinstance(payload, dict):
            raise broken("a CALL payload must be a JSON object", rules.payload_error)
        return Frame(CALL, message_id, items[2], payload, exact_payload)
    if type_id == CALLRESULT:
        if len(items) != 3:
            raise broken("a CALLRESULT must be [3, messageId, payload]")
        payload, exact_payload = (items[2], exact[2]) if items[2] is not None else ({}, {})
        if not isinstance(payload, dict):
            raise broken("a CALLRESULT payload must be a JSON object")
        return Frame(CALLRESULT, message_id, payload=payload, exact=exact_payload)
    if (
        len(items) != 5
        or not isinstance(items[2], str)
        or not isinstance(items[3], str)
        or not isinstance(items[4], dict)
    ):
        raise broken("a CALLERROR must be [4, messageId, errorCode, errorDescription, {errorDetails}]")
    return Frame(CALLERROR, message_id, error_code=items[2], error_description=items[3], error_details=items[4])


def call_error_text(unique_id: str, code: str, description: str, details: dict[str, Any] | None = None) -> str:
    return json.dumps([CALLERROR, unique_id, code, description, details or {}], separators=(",", ":"))
