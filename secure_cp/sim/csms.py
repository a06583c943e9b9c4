"""A real, local OCPP-J Central System (CSMS): the embedded demo CSMS and the strict peer of the tests.

Why it exists: our charging station must be tested against a CSMS that is *not* built from our own code, or
our bugs would cancel out. The message layer here is the ``ocpp`` package (mobilityhouse) with its ``@on``
handlers; the WebSocket layer is ``websockets``. On top sits a strict layer the ``ocpp`` package lacks:

* every frame the station sends is checked for OCPP-J structure (OCPP-J 1.6 §4.1-§4.2);
* every station->CSMS CALL payload, and every CALLRESULT the station returns to one of our CALLs, is validated
  against the official OCA JSON schema *including* ``format: date-time`` (RFC 3339) and with numbers parsed as
  ``decimal.Decimal`` so ``multipleOf`` is exact;
* a violation is recorded in :attr:`Csms.violations`, logged at ERROR and, for a CALL, answered with the
  CALLERROR the spec prescribes (OCPP-J 1.6 §4.2.3, Table 7) instead of being processed.

It also behaves like a CSMS that deduplicates at-least-once delivery (a repeated StartTransaction gets the same
transactionId, repeated StopTransaction / MeterValues are recognised) and records every duplicate, so tests can
assert that the station neither loses nor duplicates transaction messages.

Protocol versions are chosen per connection by WebSocket subprotocol (OCPP-J 1.6 §3.1.2): each supported
subprotocol maps to a session class (:data:`SESSION_CLASSES`). Only ``ocpp1.6`` exists now; an ``ocpp2.0.1``
session (an ``ocpp.v201.ChargePoint`` subclass with 2.0.1 handlers and a :class:`_ProtocolRules` for 2.0.1)
can be added to that table without touching :class:`Csms`.

Run ``python -m secure_cp.sim.csms --host 127.0.0.1 --port 9000`` for a standalone CSMS that prints one line per
message received.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import dataclasses
import decimal
import hmac
import http
import itertools
import json
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import ocpp
import ocpp.v16
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from ocpp.routing import on
from ocpp.v16 import call_result as v16_result
from rfc3339_validator import validate_rfc3339
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.headers import build_www_authenticate_basic
from websockets.http11 import Request, Response

__all__ = [
    "SESSION_CLASSES",
    "CallErrorReceived",
    "Csms",
    "Record",
    "TxRecord",
    "format_record",
    "main",
]

_LOG = logging.getLogger("secure_cp.sim.csms")

#: OCPP-J 1.6 §4.1.4 Table 3: a message id is a string of at most 36 characters.
MAX_MESSAGE_ID_LENGTH = 36
#: The vendorId / messageId pair the DataTransfer handler implements (everything else is unknown to us).
ECHO_VENDOR_ID = "secure-cp.test"
ECHO_MESSAGE_ID = "echo"

_CALL, _CALLRESULT, _CALLERROR = 2, 3, 4


# --------------------------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Record:
    """One message from a station, as it was on the wire.

    In :attr:`Csms.received` these are the station's CALLs (``action`` is the CALL's action). In
    :attr:`Csms.responses` they are the station's answers to our CALLs: ``action`` is the action of *our* CALL,
    ``payload`` the CALLRESULT payload, or ``{"errorCode", "errorDescription", "errorDetails"}`` for a CALLERROR.
    """

    identity: str
    action: str
    payload: dict[str, Any]
    unique_id: str
    at: datetime


@dataclasses.dataclass
class TxRecord:
    """What the CSMS knows of one transaction: the StartTransaction payload, the MeterValues payloads that
    referenced it (in arrival order, duplicates excluded), and the StopTransaction payload once it arrived."""

    transaction_id: int
    identity: str
    start: dict[str, Any]
    meter_values: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    stop: dict[str, Any] | None = None


class CallErrorReceived(Exception):
    """The station answered one of our CALLs with a CALLERROR (OCPP-J 1.6 §4.2.3)."""

    def __init__(self, code: str, description: str, details: dict[str, Any]) -> None:
        super().__init__(f"{code}: {description} {details}")
        self.code = code
        self.description = description
        self.details = details


# --------------------------------------------------------------------------------------------------------------
# Strict validation (version-neutral machinery, version-specific rules)
# --------------------------------------------------------------------------------------------------------------


def _make_format_checker() -> FormatChecker:
    """A FormatChecker that knows exactly the formats the OCA schemas use and we can check strictly.

    ``date-time`` is RFC 3339 (OCPP 1.6 §3.15 / OCPP 2.0.1 part 2 §2.1.4): a full date, 'T', time and a
    mandatory offset ('Z' or +hh:mm). Other formats (``uri``) are left unchecked, as a plain validator would.
    """
    checker = FormatChecker(formats=())

    @checker.checks("date-time")
    def _date_time(value: object) -> bool:
        return not isinstance(value, str) or bool(validate_rfc3339(value))

    return checker


_FORMAT_CHECKER = _make_format_checker()


class _Violation(Exception):
    """A station->CSMS frame broke the rules.

    ``code`` is the CALLERROR errorCode to answer with; ``answer_to`` the message id of the broken CALL, if one
    could be read (responses and unreadable frames are never answered: there is nobody to answer).
    """

    def __init__(self, code: str, message: str, answer_to: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.answer_to = answer_to


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN / Infinity, JSON (RFC 8259) does not; OCPP-J 1.6 §4.1.2 requires valid JSON.
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate object keys are "unpredictable" per RFC 8259 §4: a strict peer must not guess which one wins.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate object key {key!r}")
        result[key] = value
    return result


def _loads_strict(text: str, *, exact_numbers: bool) -> Any:
    """Parse JSON strictly; with ``exact_numbers`` non-integers become Decimal (exact ``multipleOf``)."""
    return json.loads(
        text,
        parse_float=decimal.Decimal if exact_numbers else float,
        parse_constant=_reject_constant,
        object_pairs_hook=_no_duplicate_keys,
    )


class _SchemaBook:
    """Loads the OCA JSON schemas shipped in the ``ocpp`` package and validates payloads against them.

    Schemas are parsed with Decimal numbers (so ``multipleOf: 0.1`` is exact), and the validator class is picked
    from each schema's ``$schema`` (draft-04 for 1.6, draft-06 for 2.0.1).
    """

    def __init__(self, directory: Path, request_suffix: str) -> None:
        self._directory = directory
        self._request_suffix = request_suffix
        self._cache: dict[str, Any] = {}

    def validator(self, action: str, *, response: bool) -> Any | None:
        name = f"{action}{'Response' if response else self._request_suffix}"
        if name not in self._cache:
            path = self._directory / f"{name}.json"
            if not path.is_file():
                self._cache[name] = None
            else:
                schema = json.loads(path.read_text(encoding="utf-8-sig"), parse_float=decimal.Decimal)
                cls = validator_for(schema, default=Draft4Validator)
                self._cache[name] = cls(schema, format_checker=_FORMAT_CHECKER)
        return self._cache[name]


@dataclasses.dataclass(frozen=True)
class _ProtocolRules:
    """Everything version-specific about checking frames: schemas, message directions, CALLERROR codes."""

    version: str  # as the ocpp package names it: "1.6", "2.0.1"
    schemas: _SchemaBook
    station_actions: frozenset[str]  # actions a station may send (CP -> CSMS)
    csms_actions: frozenset[str]  # actions a CSMS may send (CSMS -> CP)
    error_codes: frozenset[str]  # valid CALLERROR errorCode values
    # errorCode per JSON-schema keyword that failed; "*" is the fallback.
    keyword_codes: dict[str, str]
    frame_error: str  # errorCode for a broken RPC frame
    unknown_action: str  # errorCode for an action the receiver does not know
    unsupported_action: str  # errorCode for a known action we do not accept in this direction

    def code_for(self, keyword: str) -> str:
        return self.keyword_codes.get(keyword, self.keyword_codes["*"])


_OCPP_DIR = Path(ocpp.__file__).resolve().parent

#: OCPP 1.6 (incl. Security Whitepaper ed. 3) rules. Table 7 of OCPP-J 1.6 §4.2.3 names the error codes; the
#: errata keep the typo "OccurenceConstraintViolation" (and the 1.6 name "FormationViolation"), and we also
#: accept the corrected spelling from stations.
V16_RULES = _ProtocolRules(
    version="1.6",
    schemas=_SchemaBook(_OCPP_DIR / "v16" / "schemas", request_suffix=""),
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
    unknown_action="NotImplemented",  # Table 7: "Requested Action is not known by receiver"
    unsupported_action="NotSupported",  # Table 7: "... recognized but not supported by the receiver"
)


def _describe_schema_error(error: Any) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "<payload>"
    return f"{where}: {error.message}"


def _check_payload(rules: _ProtocolRules, action: str, payload: Any, *, response: bool) -> None:
    """Raise :class:`_Violation` if ``payload`` (Decimal-parsed) does not satisfy the schema."""
    validator = rules.schemas.validator(action, response=response)
    if validator is None:
        raise _Violation(rules.unknown_action, f"no schema for {action}{' response' if response else ''}")
    error = best_match(validator.iter_errors(payload))
    if error is not None:
        raise _Violation(rules.code_for(str(error.validator)), _describe_schema_error(error))


# --------------------------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Frame:
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


def _parse_frame(rules: _ProtocolRules, text: str) -> _Frame:
    """Check the OCPP-J RPC structure (OCPP-J 1.6 §4.1-§4.2) and split the frame; raise :class:`_Violation`."""
    try:
        # Lenient first (Python's json tolerates NaN and duplicate keys), so that a CALL that is only subtly
        # invalid still has a readable message id and can be answered with a CALLERROR.
        items = json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise _Violation(rules.frame_error, f"not valid JSON: {exc}") from None
    if not isinstance(items, list) or not items:
        raise _Violation(rules.frame_error, "an OCPP-J message must be a non-empty JSON array")
    type_id = items[0]
    if type(type_id) is not int or type_id not in (_CALL, _CALLRESULT, _CALLERROR):
        # OCPP-J 1.6 §4.1.3: an unknown MessageTypeNumber is ignored (no answer).
        raise _Violation(rules.frame_error, f"unknown MessageTypeId {type_id!r}")
    message_id = _message_id(items)

    def broken(reason: str) -> _Violation:
        return _Violation(rules.frame_error, reason, message_id if type_id == _CALL else None)

    try:
        items = _loads_strict(text, exact_numbers=False)
        exact = _loads_strict(text, exact_numbers=True)
    except ValueError as exc:
        raise broken(f"not valid JSON: {exc}") from None

    if message_id is None:
        raise broken("message id missing or not a string")
    if len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise broken(f"message id longer than {MAX_MESSAGE_ID_LENGTH} characters")
    if type_id == _CALL:
        if len(items) != 4 or not isinstance(items[2], str):
            raise broken("a CALL must be [2, messageId, action, payload]")
        payload, exact_payload = items[3], exact[3]
        if payload is None:
            # OCPP-J 1.6 §4.2.1 allows null for "no payload" (and recommends {}): treat it as {} so a
            # missing required field is still caught by the schema.
            payload, exact_payload = {}, {}
        if not isinstance(payload, dict):
            raise broken("a CALL payload must be a JSON object")
        return _Frame(_CALL, message_id, items[2], payload, exact_payload)
    if type_id == _CALLRESULT:
        if len(items) != 3:
            raise broken("a CALLRESULT must be [3, messageId, payload]")
        payload, exact_payload = (items[2], exact[2]) if items[2] is not None else ({}, {})
        if not isinstance(payload, dict):
            raise broken("a CALLRESULT payload must be a JSON object")
        return _Frame(_CALLRESULT, message_id, payload=payload, exact=exact_payload)
    if (
        len(items) != 5
        or not isinstance(items[2], str)
        or not isinstance(items[3], str)
        or not isinstance(items[4], dict)
    ):
        raise broken("a CALLERROR must be [4, messageId, errorCode, errorDescription, {errorDetails}]")
    return _Frame(
        _CALLERROR, message_id, error_code=items[2], error_description=items[3], error_details=items[4]
    )


def _call_error_text(unique_id: str, code: str, description: str, details: dict[str, Any] | None = None) -> str:
    return json.dumps([_CALLERROR, unique_id, code, description, details or {}], separators=(",", ":"))


# --------------------------------------------------------------------------------------------------------------
# Sessions: one per station connection, class chosen by subprotocol
# --------------------------------------------------------------------------------------------------------------


class _Wire:
    """The "connection" we hand to ``ocpp.ChargePoint``: it only ever sends (we read the socket ourselves).

    Sending through here lets the CSMS swallow the answer to a CALL marked by :meth:`Csms.drop_next`.
    """

    def __init__(self, session: _StrictSession) -> None:
        self._session = session

    async def send(self, text: str) -> None:
        await self._session.send_frame(text)

    async def recv(self) -> str:  # pragma: no cover - the session feeds route_message itself
        raise RuntimeError("the CSMS reads the socket itself; ChargePoint.start() is not used")


class _StrictSession:
    """Version-neutral part of a station session: frame checks, strict validation, knobs, CS->CP calls.

    Mixed in *before* an ``ocpp`` ChargePoint class, so :meth:`route_message` runs the strict layer and then
    hands valid CALLs to the package's router (``super().route_message``), which dispatches to ``@on`` handlers.
    """

    rules: _ProtocolRules

    def __init__(self, csms: Csms, identity: str, ws: ServerConnection) -> None:
        self.csms = csms
        self.identity = identity
        self.ws = ws
        self.closed = asyncio.Event()
        self._pending: dict[str, tuple[str, asyncio.Future[_Frame]]] = {}
        self._sent_call_ids: set[str] = set()
        self._seen_call_ids: set[str] = set()
        self._drop_ids: set[str] = set()
        self._inflight: dict[str, dict[str, Any]] = {}  # unique_id -> camelCase payload of the CALL being handled
        self._call_lock = asyncio.Lock()  # OCPP-J 1.6 §4.1.1: one CALL of ours in flight at a time
        super().__init__(identity, _Wire(self), response_timeout=csms.response_timeout,  # type: ignore[call-arg]
                         logger=csms.log.getChild("ocpp"))

    # -- sending ----------------------------------------------------------------------------------------------

    async def send_frame(self, text: str) -> None:
        if self._drop_ids:
            with contextlib.suppress(ValueError, TypeError, IndexError):
                frame = json.loads(text)
                if frame[0] in (_CALLRESULT, _CALLERROR) and frame[1] in self._drop_ids:
                    self._drop_ids.discard(frame[1])
                    self.csms.log.info("%s: dropping our answer %s (drop_next)", self.identity, text)
                    return
        self.csms.log.debug("%s <- %s", self.identity, text)
        await self.ws.send(text)

    # -- receiving --------------------------------------------------------------------------------------------

    async def route_message(self, raw_msg: str) -> None:  # overrides ocpp.ChargePoint.route_message
        at = self.csms.now()
        self.csms.log.debug("%s -> %s", self.identity, raw_msg)
        try:
            frame = _parse_frame(self.rules, raw_msg)
        except _Violation as violation:
            self.csms._violation(f"{self.identity}: {violation.message}: {raw_msg[:200]}")
            if violation.answer_to is not None:
                await self.send_frame(_call_error_text(violation.answer_to, violation.code, violation.message))
            return
        if frame.type_id == _CALL:
            await self._on_call(frame, at)
        else:
            self._on_response(frame, at)

    async def _on_call(self, frame: _Frame, at: datetime) -> None:
        assert frame.action is not None
        record = Record(self.identity, frame.action, frame.payload, frame.unique_id, at)
        try:
            if frame.unique_id in self._seen_call_ids:
                # OCPP-J 1.6 §4.1.4: a CALL's message id differs from all earlier ones on the same connection.
                self.csms._violation(f"{self.identity}: message id {frame.unique_id!r} reused for {frame.action}")
            self._seen_call_ids.add(frame.unique_id)
            try:
                self._check_call(frame)
            except _Violation as violation:
                self.csms._violation(f"{self.identity}: {frame.action}: {violation.message}")
                await self.send_frame(_call_error_text(frame.unique_id, violation.code, violation.message))
                return
            injected = self.csms._take_failure(frame.action)
            if injected is not None:
                self.csms.log.info("%s: answering %s with %s (fail_next)", self.identity, frame.action, injected)
                await self.send_frame(_call_error_text(frame.unique_id, injected, "injected by fail_next"))
                return
            if self.csms._take_drop(frame.action):
                # Process the CALL but lose the answer: what the station sees after a response is lost in
                # transit; its retry then reaches a CSMS that already has the message (a duplicate).
                self._drop_ids.add(frame.unique_id)
            self._inflight[frame.unique_id] = frame.payload
            try:
                normalized = json.dumps([_CALL, frame.unique_id, frame.action, frame.payload])
                await super().route_message(normalized)  # type: ignore[misc]
            finally:
                self._inflight.pop(frame.unique_id, None)
        finally:
            # Appended once answered, so a test that awaited the record also sees the CSMS's state for it.
            self.csms._add_record(record)

    def _check_call(self, frame: _Frame) -> None:
        rules = self.rules
        assert frame.action is not None
        if frame.action not in rules.station_actions:
            if frame.action in rules.csms_actions:
                raise _Violation(rules.unsupported_action, f"{frame.action} is not sent by a charging station")
            raise _Violation(rules.unknown_action, f"unknown action {frame.action!r}")
        _check_payload(rules, frame.action, frame.exact, response=False)

    def _on_response(self, frame: _Frame, at: datetime) -> None:
        entry = self._pending.pop(frame.unique_id, None)
        if entry is None:
            if frame.unique_id in self._sent_call_ids:
                self.csms.log.warning("%s: late answer to %s (we timed out already)", self.identity, frame.unique_id)
            else:
                self.csms._violation(f"{self.identity}: answer to unknown message id {frame.unique_id!r}")
            return
        action, future = entry
        if frame.type_id == _CALLRESULT:
            payload = frame.payload
            try:
                _check_payload(self.rules, action, frame.exact, response=True)
            except _Violation as violation:
                self.csms._violation(f"{self.identity}: {action} response: {violation.message}")
        else:
            payload = {
                "errorCode": frame.error_code,
                "errorDescription": frame.error_description,
                "errorDetails": frame.error_details,
            }
            if frame.error_code not in self.rules.error_codes:
                self.csms._violation(f"{self.identity}: {action}: unknown CALLERROR code {frame.error_code!r}")
        self.csms._add_response(Record(self.identity, action, payload, frame.unique_id, at))
        if not future.done():
            future.set_result(frame)

    # -- CS -> CP calls ---------------------------------------------------------------------------------------

    async def call_station(self, action: str, payload: dict[str, Any], timeout: float, strict: bool) -> dict:
        if strict:
            if action not in self.rules.csms_actions:
                raise ValueError(f"{action} is not a CSMS->station action in OCPP {self.rules.version}")
            exact = json.loads(json.dumps(payload), parse_float=decimal.Decimal)
            try:
                _check_payload(self.rules, action, exact, response=False)
            except _Violation as violation:
                raise ValueError(f"invalid {action} payload: {violation.message}") from None
        async with self._call_lock:
            unique_id = str(uuid.uuid4())
            future: asyncio.Future[_Frame] = asyncio.get_running_loop().create_future()
            self._pending[unique_id] = (action, future)
            self._sent_call_ids.add(unique_id)
            try:
                if self.closed.is_set():
                    raise ConnectionError(f"{self.identity} disconnected")
                try:
                    await self.send_frame(json.dumps([_CALL, unique_id, action, payload], separators=(",", ":")))
                except ConnectionClosed as exc:
                    raise ConnectionError(f"{self.identity} disconnected") from exc
                async with asyncio.timeout(timeout):
                    frame = await future
            finally:
                self._pending.pop(unique_id, None)
        if frame.type_id == _CALLERROR:
            raise CallErrorReceived(frame.error_code or "", frame.error_description or "", frame.error_details)
        return frame.payload

    def connection_lost(self) -> None:
        for _action, future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"{self.identity} disconnected"))
        self._pending.clear()
        self.closed.set()

    # -- helpers for handlers ---------------------------------------------------------------------------------

    def payload_of(self, unique_id: str) -> dict[str, Any]:
        """The CALL's payload exactly as on the wire (camelCase), for handlers that store it."""
        return self._inflight[unique_id]


class _V16Session(_StrictSession, ocpp.v16.ChargePoint):
    """OCPP 1.6-J (with the Security Whitepaper ed. 3 messages): the CSMS side of every CP->CS action.

    Handlers take the wire payload via ``payload_of(call_unique_id)`` instead of the package's snake_case
    keyword arguments, because the CSMS records and compares payloads exactly as the station sent them.
    """

    rules = V16_RULES

    @on("Authorize")
    def on_authorize(self, call_unique_id: str, **_: Any) -> v16_result.Authorize:
        payload = self.payload_of(call_unique_id)
        return v16_result.Authorize(id_tag_info=self.csms.id_tag_info(payload["idTag"]))

    @on("BootNotification")
    def on_boot_notification(self, **_: Any) -> v16_result.BootNotification:
        # OCPP 1.6 §4.2 / §6.4: currentTime is the CSMS time; interval is the heartbeat interval (Accepted) or
        # the retry interval (Pending / Rejected).
        return v16_result.BootNotification(
            current_time=self.csms.now_text(), interval=self.csms.boot_interval, status=self.csms.boot_status
        )

    @on("DataTransfer")
    def on_data_transfer(self, call_unique_id: str, **_: Any) -> v16_result.DataTransfer:
        # OCPP 1.6 §4.3: unknown vendorId -> UnknownVendorId without data; known vendor but messageId mismatch
        # -> UnknownMessageId.
        payload = self.payload_of(call_unique_id)
        if payload["vendorId"] != ECHO_VENDOR_ID:
            return v16_result.DataTransfer(status="UnknownVendorId")
        if payload.get("messageId") != ECHO_MESSAGE_ID:
            return v16_result.DataTransfer(status="UnknownMessageId")
        return v16_result.DataTransfer(status="Accepted", data=payload.get("data"))

    @on("DiagnosticsStatusNotification")
    def on_diagnostics_status_notification(self, **_: Any) -> v16_result.DiagnosticsStatusNotification:
        return v16_result.DiagnosticsStatusNotification()

    @on("FirmwareStatusNotification")
    def on_firmware_status_notification(self, **_: Any) -> v16_result.FirmwareStatusNotification:
        return v16_result.FirmwareStatusNotification()

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> v16_result.Heartbeat:
        return v16_result.Heartbeat(current_time=self.csms.now_text())

    @on("MeterValues")
    def on_meter_values(self, call_unique_id: str, **_: Any) -> v16_result.MeterValues:
        self.csms._meter_values(self.identity, self.payload_of(call_unique_id), call_unique_id)
        return v16_result.MeterValues()

    @on("StartTransaction")
    def on_start_transaction(self, call_unique_id: str, **_: Any) -> v16_result.StartTransaction:
        payload = self.payload_of(call_unique_id)
        transaction_id = self.csms._start_transaction(self.identity, payload, call_unique_id)
        return v16_result.StartTransaction(
            transaction_id=transaction_id, id_tag_info=self.csms.id_tag_info(payload["idTag"])
        )

    @on("StatusNotification")
    def on_status_notification(self, **_: Any) -> v16_result.StatusNotification:
        return v16_result.StatusNotification()

    @on("StopTransaction")
    def on_stop_transaction(self, call_unique_id: str, **_: Any) -> v16_result.StopTransaction:
        payload = self.payload_of(call_unique_id)
        self.csms._stop_transaction(self.identity, payload, call_unique_id)
        # OCPP 1.6 §6.50: idTagInfo is present when the request contained an idTag.
        id_tag = payload.get("idTag")
        return v16_result.StopTransaction(id_tag_info=self.csms.id_tag_info(id_tag) if id_tag else None)

    @on("SecurityEventNotification")
    def on_security_event_notification(self, **_: Any) -> v16_result.SecurityEventNotification:
        return v16_result.SecurityEventNotification()

    @on("SignCertificate")
    def on_sign_certificate(self, **_: Any) -> v16_result.SignCertificate:
        return v16_result.SignCertificate(status="Accepted")

    @on("LogStatusNotification")
    def on_log_status_notification(self, **_: Any) -> v16_result.LogStatusNotification:
        return v16_result.LogStatusNotification()

    @on("SignedFirmwareStatusNotification")
    def on_signed_firmware_status_notification(self, **_: Any) -> v16_result.SignedFirmwareStatusNotification:
        return v16_result.SignedFirmwareStatusNotification()


#: Supported WebSocket subprotocols in server preference order -> session class (OCPP-J 1.6 §3.1.2).
SESSION_CLASSES: dict[str, type[_StrictSession]] = {"ocpp1.6": _V16Session}


# --------------------------------------------------------------------------------------------------------------
# The CSMS
# --------------------------------------------------------------------------------------------------------------


def _default_authorize() -> dict[str, dict[str, Any]]:
    tags = [f"TAG{i}" for i in range(1, 10)] + ["DEMO"]
    return {tag: {"status": "Accepted"} for tag in tags}


def _identity_from_path(path: str) -> str:
    # OCPP-J 1.6 §3.1.1: the connection URL is the endpoint URL + "/" + percent-encoded identity.
    return unquote(urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1])


class Csms:
    """A local OCPP-J Central System on 127.0.0.1 (see the module docstring).

    Behaviour knobs (``boot_status``, ``boot_interval``, ``authorize``, :meth:`fail_next`, :meth:`drop_next`,
    ``clock``) may be changed at any time. Records (``received``, ``responses``, ``violations``,
    ``transactions``, ``duplicates``, ``connected``, ``refused``) are plain attributes for tests to read.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        basic_auth: dict[str, bytes] | None = None,
        log: logging.Logger | None = None,
        response_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.basic_auth = basic_auth
        self.log = log or _LOG
        self.response_timeout = response_timeout
        # knobs
        self.boot_status: str = "Accepted"
        self.boot_interval: int = 300
        self.authorize: dict[str, dict[str, Any]] = _default_authorize()
        self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
        # records
        self.received: list[Record] = []
        self.responses: list[Record] = []
        self.violations: list[str] = []
        self.transactions: dict[int, TxRecord] = {}
        self.duplicates: list[str] = []
        self.connected: dict[str, str] = {}
        self.refused: list[str] = []
        #: called with every Record appended to ``received`` / to ``responses`` (e.g. to print it)
        self.listeners: list[Callable[[Record], None]] = []
        self.response_listeners: list[Callable[[Record], None]] = []
        # internals
        self._server: Server | None = None
        self._sessions: dict[str, _StrictSession] = {}
        self._failures: dict[str, deque[str]] = {}
        self._drops: dict[str, int] = {}
        self._tx_ids = itertools.count(1)
        self._start_keys: dict[tuple[Any, ...], int] = {}
        self._waiters: list[asyncio.Future[None]] = []

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await serve(
            self._serve_connection,
            self.host,
            self.port,
            select_subprotocol=self._select_subprotocol,
            process_request=self._process_request,
            logger=self.log.getChild("ws"),
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.log.info("CSMS listening on %s", self.url)

    async def stop(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        await server.wait_closed()
        for session in list(self._sessions.values()):
            session.connection_lost()

    async def __aenter__(self) -> Csms:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The OCPP-J endpoint URL; a station appends "/" + its identity (OCPP-J 1.6 §3.1.1)."""
        return f"ws://{self.host}:{self.port}"

    # -- knobs ------------------------------------------------------------------------------------------------

    def fail_next(self, action: str, error_code: str = "InternalError", count: int = 1) -> None:
        """Answer the next ``count`` valid CALLs of ``action`` (any station) with a CALLERROR, unprocessed."""
        self._failures.setdefault(action, deque()).extend([error_code] * count)

    def drop_next(self, action: str, count: int = 1) -> None:
        """Process the next ``count`` valid CALLs of ``action`` but never send the answer (the station times
        out), like a response lost in transit: a retry is then a duplicate the CSMS recognises."""
        self._drops[action] = self._drops.get(action, 0) + count

    def now(self) -> datetime:
        return self.clock()

    def now_text(self) -> str:
        """Current time as RFC 3339 UTC with 'Z' and milliseconds (OCPP 1.6 §3.15)."""
        return self.now().astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    def id_tag_info(self, id_tag: str) -> dict[str, Any]:
        return dict(self.authorize.get(id_tag, {"status": "Invalid"}))

    # -- CS -> CP ---------------------------------------------------------------------------------------------

    async def call(
        self,
        identity: str,
        action: str,
        payload: dict[str, Any],
        timeout: float | None = None,
        *,
        strict: bool = True,
    ) -> dict[str, Any]:
        """Send a CSMS->station CALL (camelCase payload as on the wire) and return the CALLRESULT payload.

        Raises :class:`CallErrorReceived` on a CALLERROR, ``TimeoutError`` after ``timeout`` seconds (default
        ``response_timeout``), ``KeyError`` if the station is not connected, ``ConnectionError`` if it disconnects
        meanwhile. With ``strict`` the request is first validated against its schema (``ValueError``); the
        station's CALLRESULT is always validated, violations go to :attr:`violations`.
        """
        session = self._session(identity)
        return await session.call_station(
            action, payload, self.response_timeout if timeout is None else timeout, strict
        )

    async def send_raw(self, identity: str, text: str) -> None:
        """Send arbitrary text to a station (for malformed-frame tests)."""
        await self._session(identity).ws.send(text)

    async def disconnect(self, identity: str) -> None:
        """Close that station's connection from the server side and wait until it is gone."""
        session = self._session(identity)
        await session.ws.close(code=1000, reason="closed by CSMS")
        await session.closed.wait()

    def _session(self, identity: str) -> _StrictSession:
        try:
            return self._sessions[identity]
        except KeyError:
            raise KeyError(f"station {identity!r} is not connected") from None

    # -- waiting ----------------------------------------------------------------------------------------------

    async def wait_for(
        self,
        action: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda p: True,
        *,
        identity: str | None = None,
        timeout: float = 10.0,
        after: int = 0,
    ) -> Record:
        """The first record in :attr:`received` at index >= ``after`` with this action (and identity) whose
        payload satisfies ``predicate``; waits until one arrives. A record is added once the CSMS answered it."""

        def find() -> Record | None:
            for record in itertools.islice(self.received, after, None):
                if record.action == action and identity in (None, record.identity) and predicate(record.payload):
                    return record
            return None

        try:
            return await self._wait_until(find, timeout)
        except TimeoutError:
            seen = [f"{r.identity}:{r.action}" for r in self.received[after:]]
            raise TimeoutError(f"no {action} (identity={identity}) within {timeout}s; received {seen}") from None

    async def wait_connected(self, identity: str, timeout: float = 10.0) -> str:
        """Wait until ``identity`` has an open OCPP connection; return its negotiated subprotocol."""
        try:
            return await self._wait_until(lambda: self.connected.get(identity), timeout)
        except TimeoutError:
            raise TimeoutError(f"{identity} did not connect within {timeout}s") from None

    async def _wait_until(self, check: Callable[[], Any], timeout: float) -> Any:
        async with asyncio.timeout(timeout):
            while (result := check()) is None:
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                finally:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
            return result

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- connection handling ----------------------------------------------------------------------------------

    def _select_subprotocol(self, connection: ServerConnection, offered: Iterable[str]) -> str | None:
        # OCPP-J 1.6 §3.2: without a common subprotocol the handshake completes without one (and we then
        # close), rather than failing with HTTP 400 as websockets would by default.
        offered = list(offered)
        for subprotocol in SESSION_CLASSES:
            if subprotocol in offered:
                return subprotocol
        return None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        identity = _identity_from_path(request.path)
        if not identity:
            # OCPP-J 1.6 §3.2: an unrecognised charge point identifier -> HTTP 404.
            self._refuse(f"<none>: no charge point identity in path {request.path!r}")
            return connection.respond(http.HTTPStatus.NOT_FOUND, "No charge point identity in the URL\n")
        if self.basic_auth is None:
            return None
        reason = self._check_basic_auth(identity, request.headers)
        if reason is None:
            return None
        # Security Whitepaper ed. 3 §2.3, A00.FR.202-204: HTTP Basic auth, username = charge point identity.
        self._refuse(f"{identity}: HTTP 401: {reason}")
        response = connection.respond(http.HTTPStatus.UNAUTHORIZED, f"{reason}\n")
        response.headers["WWW-Authenticate"] = build_www_authenticate_basic("secure-cp CSMS")
        return response

    def _check_basic_auth(self, identity: str, headers: Headers) -> str | None:
        """Return why the credentials are refused, or None if they are good. The password is compared as bytes
        (A00.FR.205 passwords are the AuthorizationKey; OCPP-J 1.6 §6.2.2 allows a binary key)."""
        assert self.basic_auth is not None
        header = headers.get("Authorization")
        if header is None:
            return "missing credentials"
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return f"unsupported authorization scheme {scheme!r}"
        try:
            decoded = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return "credentials are not valid base64"
        user_bytes, colon, password = decoded.partition(b":")
        if not colon:
            return "credentials lack a ':'"
        user = user_bytes.decode("utf-8", errors="replace")
        if user != identity:
            return f"username {user!r} differs from the identity in the URL"
        expected = self.basic_auth.get(identity)
        if expected is None or not hmac.compare_digest(password, expected):
            return "invalid credentials"
        return None

    async def _serve_connection(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        identity = _identity_from_path(ws.request.path)
        subprotocol = ws.subprotocol
        if subprotocol is None:
            offered = ws.request.headers.get_all("Sec-WebSocket-Protocol")
            reason = f"no supported subprotocol (offered {offered or 'none'})"
            self._refuse(f"{identity}: {reason}")
            if not offered:
                # OCPP-J 1.6 §3.1.2: the OCPP version MUST be given in Sec-WebSocket-Protocol.
                self._violation(f"{identity}: connected without offering a subprotocol")
            await ws.close(code=1002, reason="no supported OCPP subprotocol")
            return
        session = SESSION_CLASSES[subprotocol](self, identity, ws)
        previous = self._sessions.get(identity)
        if previous is not None:
            # A station reconnecting before we noticed its old connection died: the new one wins.
            self.log.warning("%s: new connection replaces the open one", identity)
            await previous.ws.close(code=1000, reason="replaced by a new connection")
        self._sessions[identity] = session
        self.connected[identity] = subprotocol
        self.log.info("%s connected (%s)", identity, subprotocol)
        self._notify()
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    # OCPP-J 1.6 §4.1.2: messages are UTF-8 JSON text.
                    self._violation(f"{identity}: binary WebSocket frame ({len(message)} bytes)")
                    continue
                await session.route_message(message)
        except ConnectionClosed:
            pass
        finally:
            if self._sessions.get(identity) is session:
                del self._sessions[identity]
                self.connected.pop(identity, None)
            session.connection_lost()
            self.log.info("%s disconnected (code %s)", identity, ws.close_code)
            self._notify()

    # -- recording (called by sessions) -----------------------------------------------------------------------

    def _violation(self, text: str) -> None:
        self.violations.append(text)
        self.log.error("OCPP violation: %s", text)
        self._notify()

    def _refuse(self, text: str) -> None:
        self.refused.append(text)
        self.log.warning("connection refused: %s", text)
        self._notify()

    def _add_record(self, record: Record) -> None:
        self.received.append(record)
        self._publish(record, self.listeners)

    def _add_response(self, record: Record) -> None:
        self.responses.append(record)
        self._publish(record, self.response_listeners)

    def _publish(self, record: Record, listeners: list[Callable[[Record], None]]) -> None:
        for listener in listeners:
            try:
                listener(record)
            except Exception:  # a broken printer must not break the CSMS
                self.log.exception("record listener failed")
        self._notify()

    def _take_failure(self, action: str) -> str | None:
        queue = self._failures.get(action)
        return queue.popleft() if queue else None

    def _take_drop(self, action: str) -> bool:
        if self._drops.get(action, 0) > 0:
            self._drops[action] -= 1
            return True
        return False

    def _start_transaction(self, identity: str, payload: dict[str, Any], unique_id: str) -> int:
        """Allocate a transactionId, or return the earlier one for a repeated StartTransaction (at-least-once
        delivery: the station resends when our answer was lost; OCPP 1.6 §4.8 / §3.7)."""
        key = (identity, payload["connectorId"], payload["idTag"], payload["timestamp"], payload["meterStart"])
        existing = self._start_keys.get(key)
        if existing is not None:
            self.duplicates.append(
                f"{identity}: duplicate StartTransaction connectorId={key[1]} idTag={key[2]} timestamp={key[3]} "
                f"meterStart={key[4]} -> transactionId {existing} (message {unique_id})"
            )
            self.log.warning("%s", self.duplicates[-1])
            return existing
        transaction_id = next(self._tx_ids)
        self._start_keys[key] = transaction_id
        self.transactions[transaction_id] = TxRecord(transaction_id, identity, payload)
        return transaction_id

    def _stop_transaction(self, identity: str, payload: dict[str, Any], unique_id: str) -> None:
        transaction_id = payload["transactionId"]
        tx = self.transactions.get(transaction_id)
        if tx is None:
            self._violation(f"{identity}: StopTransaction for unknown transactionId {transaction_id}")
            return
        if tx.stop is not None:
            self.duplicates.append(
                f"{identity}: duplicate StopTransaction for transactionId {transaction_id} (message {unique_id})"
            )
            self.log.warning("%s", self.duplicates[-1])
            return
        tx.stop = payload

    def _meter_values(self, identity: str, payload: dict[str, Any], unique_id: str) -> None:
        transaction_id = payload.get("transactionId")
        if transaction_id is None:
            return
        tx = self.transactions.get(transaction_id)
        if tx is None:
            # In 1.6 only the CSMS hands out transactionIds, so a station cannot know an id we never issued.
            self._violation(f"{identity}: MeterValues for unknown transactionId {transaction_id}")
            return
        if payload in tx.meter_values:
            self.duplicates.append(
                f"{identity}: duplicate MeterValues for transactionId {transaction_id} (message {unique_id})"
            )
            self.log.warning("%s", self.duplicates[-1])
            return
        tx.meter_values.append(payload)


# --------------------------------------------------------------------------------------------------------------
# Human-readable output and the command line
# --------------------------------------------------------------------------------------------------------------

#: Per action: the payload fields worth showing, as (label, key).
_SUMMARY_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "Authorize": (("idTag", "idTag"),),
    "BootNotification": (("vendor", "chargePointVendor"), ("model", "chargePointModel"),
                         ("firmware", "firmwareVersion")),
    "DataTransfer": (("vendorId", "vendorId"), ("messageId", "messageId"), ("data", "data")),
    "StartTransaction": (("connector", "connectorId"), ("idTag", "idTag"), ("meterStart", "meterStart"),
                         ("reservationId", "reservationId")),
    "StopTransaction": (("tx", "transactionId"), ("idTag", "idTag"), ("meterStop", "meterStop"),
                        ("reason", "reason")),
    "StatusNotification": (("connector", "connectorId"), ("status", "status"), ("errorCode", "errorCode"),
                           ("info", "info")),
    "SecurityEventNotification": (("type", "type"), ("techInfo", "techInfo")),
}


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _meter_summary(payload: dict[str, Any]) -> list[str]:
    parts = [f"connector={payload.get('connectorId')}"]
    if "transactionId" in payload:
        parts.append(f"tx={payload['transactionId']}")
    for meter_value in payload.get("meterValue", [])[:1]:
        for sample in meter_value.get("sampledValue", [])[:3]:
            measurand = sample.get("measurand", "Energy.Active.Import.Register")
            unit = sample.get("unit", "Wh" if measurand.startswith("Energy") else "")
            parts.append(f"{measurand}={_short(sample.get('value'), 24)}{unit}")
    return parts


def format_record(r: Record, *, response: bool = False) -> str:
    """One line for a human, e.g. ``CP1 -> StartTransaction connector=1 idTag=TAG1 meterStart=0``.

    With ``response`` the record is a station's answer to our CALL (from :attr:`Csms.responses`), shown as
    ``CP1 -> Reset.conf status=Accepted`` or ``CP1 -> Reset CALLERROR NotSupported ...``.
    """
    payload = r.payload
    if response:
        if set(payload) == {"errorCode", "errorDescription", "errorDetails"}:
            return f"{r.identity} -> {r.action} CALLERROR {payload['errorCode']} {_short(payload['errorDescription'])}"
        return " ".join([f"{r.identity} -> {r.action}.conf", *(f"{k}={_short(v)}" for k, v in payload.items())])
    if r.action == "MeterValues" and "meterValue" in payload:
        parts = _meter_summary(payload)
    elif r.action in _SUMMARY_FIELDS:
        parts = [f"{label}={_short(payload[key])}" for label, key in _SUMMARY_FIELDS[r.action] if key in payload]
    else:
        parts = [f"{key}={_short(value)}" for key, value in payload.items()]
    return " ".join([f"{r.identity} -> {r.action}", *parts])


def _parse_auth(values: list[str]) -> dict[str, bytes] | None:
    if not values:
        return None
    credentials = {}
    for value in values:
        identity, sep, password = value.partition(":")
        if not sep:
            raise SystemExit(f"--basic-auth expects IDENTITY:PASSWORD, got {value!r}")
        credentials[identity] = password.encode()
    return credentials


async def _run(host: str, port: int, basic_auth: dict[str, bytes] | None) -> None:
    csms = Csms(host, port, basic_auth=basic_auth)
    csms.listeners.append(lambda record: print(format_record(record), flush=True))
    csms.response_listeners.append(lambda record: print(format_record(record, response=True), flush=True))
    async with csms:
        print(f"CSMS (OCPP 1.6-J) listening on {csms.url}/<identity>", flush=True)
        await asyncio.Event().wait()  # until Ctrl-C


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m secure_cp.sim.csms", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--basic-auth", action="append", default=[], metavar="IDENTITY:PASSWORD",
                        help="require HTTP Basic auth (security profile 1/2); repeat per station")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every frame")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args.host, args.port, _parse_auth(args.basic_auth)))


if __name__ == "__main__":
    main()
