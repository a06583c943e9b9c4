"""OCPP-J RPC frames: parse and serialise CALL, CALLRESULT and CALLERROR (no I/O).

OCPP-J 1.6 §4 and OCPP 2.0.1 Part 4 §4 define the wrapper::

    [2, "<messageId>", "<Action>", {payload}]                          CALL
    [3, "<messageId>", {payload}]                                      CALLRESULT
    [4, "<messageId>", "<errorCode>", "<errorDescription>", {details}]  CALLERROR

Numbers with a fraction or exponent are parsed as :class:`decimal.Decimal`, never float, so a meter reading
like ``2935.600`` keeps its exact decimal text through validation (``multipleOf``) and back out through
:func:`encode` (Eichrecht: values are forwarded byte for byte, not rounded through binary floating point).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Union

from .. import jsontext
from .errors import ErrorKind, check_version

__all__ = [
    "CALL",
    "CALLRESULT",
    "CALLERROR",
    "MAX_UNIQUE_ID_LENGTH",
    "MAX_DESCRIPTION_LENGTH",
    "Call",
    "CallResult",
    "CallError",
    "Frame",
    "FrameError",
    "decode",
    "encode",
]

CALL, CALLRESULT, CALLERROR = 2, 3, 4

#: OCPP-J 1.6 §4.1.4 Table 3 / OCPP 2.0.1 Part 4 §4.1.4 Table 4: messageId is string[36].
MAX_UNIQUE_ID_LENGTH = 36
#: OCPP 2.0.1 Part 4 §4.2.3 Table 7: errorDescription is string[255] (1.6 gives no limit; we use the same).
MAX_DESCRIPTION_LENGTH = 255

# Number of elements of each frame type (OCPP-J 1.6 §4.2.1-4.2.3).
_FRAME_LENGTH = {CALL: 4, CALLRESULT: 3, CALLERROR: 5}

# Frames and the endpoint's events are made for every message: plain slotted dataclasses, not frozen ones, whose
# __init__ (object.__setattr__ per field) costs about three times as many instructions. Nothing mutates them.


@dataclass(slots=True)
class Call:
    unique_id: str
    action: str
    payload: dict


@dataclass(slots=True)
class CallResult:
    unique_id: str
    payload: dict


@dataclass(slots=True)
class CallError:
    unique_id: str
    code: str
    description: str
    details: dict


Frame = Union[Call, CallResult, CallError]


class FrameError(Exception):
    """A text that is not a well-formed OCPP-J frame.

    ``unique_id`` is the message id when it could be recovered (a string of at most 36 characters), else None.
    ``message_type_id`` is the message type number when it could be read as an integer, else None. Together they
    tell the endpoint what to do (see ``Endpoint.receive``): a broken CALL whose id is known gets a CALLERROR; a
    broken CALLRESULT/CALLERROR is never answered; without an id, 1.6 drops the text and 2.0.1 answers with
    messageId "-1" (OCPP 2.0.1 Part 4 §4.2.3).
    """

    def __init__(
        self,
        kind: ErrorKind,
        description: str,
        unique_id: str | None = None,
        message_type_id: int | None = None,
    ) -> None:
        super().__init__(description)
        self.kind = kind
        self.description = description
        self.unique_id = unique_id
        self.message_type_id = message_type_id


class _DuplicateKey(ValueError):
    pass


def _no_constants(name: str) -> Any:
    # json accepts NaN / Infinity / -Infinity by default; RFC 8259 (and so OCPP-J) does not.
    raise ValueError(f"{name} is not a JSON number")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate member names make a message mean different things to different parsers (first wins / last
    # wins), which is how validators get bypassed. RFC 8259 §4 says names SHOULD be unique: we insist.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"duplicate member name {key[:40]!r}")
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(
    parse_float=Decimal, parse_constant=_no_constants, object_pairs_hook=_unique_pairs
)

_parse = jsontext.loads_with(_DECODER)   # _DECODER.decode, the common frame read by the scanner directly


# Recovers type and id from a text that is not valid JSON, so that a truncated or corrupt CALL can still be
# answered with its own id instead of letting the sender wait for its timeout.
_PREFIX = re.compile(r'\A\s*\[\s*([0-9]{1,3})\s*,\s*"([^"\\\x00-\x1f]{0,36})"')


def _valid_id(value: Any) -> str | None:
    if isinstance(value, str) and len(value) <= MAX_UNIQUE_ID_LENGTH:
        return value
    return None


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def decode(text: str | bytes, *, version: str = "1.6") -> Call | CallResult | CallError:
    """Parse one OCPP-J message; raise :class:`FrameError` if it is not a well-formed frame.

    ``version`` only chooses error kinds where the two specifications word them differently: a payload that is
    not an object is "not conform the PDU structure", which 1.6 calls FormationViolation and 2.0.1 calls
    ProtocolError. A ``null`` payload or errorDetails is read as ``{}``: both specifications name ``null`` as a
    notation for "no payload" (OCPP-J 1.6 §4.2.1, OCPP 2.0.1 Part 4 §4.1.5), even if ``{}`` is good practice.
    """
    if version != "1.6" and version != "2.0.1":
        check_version(version)   # raises

    if type(text) is not str:
        if isinstance(text, (bytes, bytearray, memoryview)):
            raw = bytes(text)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                # OCPP-J 1.6 §4.1.2: the whole message MUST be UTF-8.
                _raise_unparsable(raw.decode("utf-8", "replace"), f"message is not valid UTF-8 ({exc.reason})")
        elif not isinstance(text, str):
            raise TypeError(f"decode() takes str or bytes, not {type(text).__name__}")

    try:
        message = _parse(text)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, NaN/Infinity, duplicate names and over-long integers.
        _raise_unparsable(text, f"message is not valid JSON: {_clip(str(exc))}")

    # The frames a working peer sends, recognised in a few tests (every other text takes the checks below, which
    # name what is wrong): a CALLRESULT, or a CALL, with a string id of at most 36 characters and an object payload.
    if type(message) is list:
        size = len(message)
        if size == 3 or size == 4:
            type_id, unique_id, third = message[0], message[1], message[2]
            if type(unique_id) is str and len(unique_id) <= MAX_UNIQUE_ID_LENGTH and type(type_id) is int:
                if size == 3 and type_id == CALLRESULT and type(third) is dict:
                    return CallResult(unique_id, third)
                if size == 4 and type_id == CALL and type(third) is str and type(message[3]) is dict:
                    return Call(unique_id, third, message[3])
    structure_kind = ErrorKind.FORMATION_VIOLATION if version == "1.6" else ErrorKind.PROTOCOL_ERROR
    if not isinstance(message, list):
        raise FrameError(ErrorKind.RPC_FRAMEWORK_ERROR, "message is not a JSON array")
    if not message:
        raise FrameError(ErrorKind.RPC_FRAMEWORK_ERROR, "message is an empty array")

    unique_id = _valid_id(message[1]) if len(message) > 1 else None
    type_id = message[0]
    if not isinstance(type_id, int) or isinstance(type_id, bool):
        raise FrameError(
            ErrorKind.RPC_FRAMEWORK_ERROR, "MessageTypeId is not an integer", unique_id=unique_id
        )
    if len(message) < 2:
        raise FrameError(ErrorKind.RPC_FRAMEWORK_ERROR, "message has no messageId", message_type_id=type_id)
    if unique_id is None:
        raw_id = message[1]
        if isinstance(raw_id, str):
            why = f"messageId is longer than {MAX_UNIQUE_ID_LENGTH} characters"
        else:
            why = "messageId is not a string"
        raise FrameError(ErrorKind.RPC_FRAMEWORK_ERROR, why, message_type_id=type_id)
    if type_id not in _FRAME_LENGTH:
        raise FrameError(
            ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED,
            f"MessageTypeId {_clip(str(type_id), 20)} is not supported",
            unique_id=unique_id,
            message_type_id=type_id,
        )

    def fail(kind: ErrorKind, description: str) -> FrameError:
        return FrameError(kind, description, unique_id=unique_id, message_type_id=type_id)

    expected = _FRAME_LENGTH[type_id]
    if len(message) != expected:
        name = {CALL: "CALL", CALLRESULT: "CALLRESULT", CALLERROR: "CALLERROR"}[type_id]
        raise fail(
            ErrorKind.RPC_FRAMEWORK_ERROR, f"{name} must have {expected} elements, not {len(message)}"
        )

    if type_id == CALL:
        action = message[2]
        if not isinstance(action, str):
            raise fail(ErrorKind.RPC_FRAMEWORK_ERROR, "Action is not a string")
        payload = {} if message[3] is None else message[3]
        if not isinstance(payload, dict):
            raise fail(structure_kind, "payload is not a JSON object")
        return Call(unique_id, action, payload)

    if type_id == CALLRESULT:
        payload = {} if message[2] is None else message[2]
        if not isinstance(payload, dict):
            raise fail(structure_kind, "payload is not a JSON object")
        return CallResult(unique_id, payload)

    code, description, details = message[2], message[3], message[4]
    if not isinstance(code, str):
        raise fail(ErrorKind.RPC_FRAMEWORK_ERROR, "errorCode is not a string")
    if not isinstance(description, str):
        raise fail(ErrorKind.RPC_FRAMEWORK_ERROR, "errorDescription is not a string")
    details = {} if details is None else details
    if not isinstance(details, dict):
        raise fail(ErrorKind.RPC_FRAMEWORK_ERROR, "errorDetails is not a JSON object")
    return CallError(unique_id, code, description, details)


def _raise_unparsable(text: str, description: str) -> None:
    match = _PREFIX.match(text)
    if match is None:
        # OCPP 2.0.1 Part 4 §4.3: RpcFrameworkError - "for example: MessageId could not be read".
        raise FrameError(ErrorKind.RPC_FRAMEWORK_ERROR, description)
    # The wrapper's start is readable, the rest is syntactically broken: 1.6 FormationViolation / 2.0.1
    # FormatViolation ("Payload for Action is syntactically incorrect").
    raise FrameError(
        ErrorKind.FORMATION_VIOLATION, description, unique_id=match.group(2), message_type_id=int(match.group(1))
    )


# --- encoding -------------------------------------------------------------------------------------------

# A str as JSON string, escaped as the encoder (ensure_ascii=False) escapes it: for ASCII text (no lone surrogate
# that jsontext.dumps would have to escape) the same text
_quote = json.encoder.encode_basestring


def _dumps(value: Any) -> str:
    return jsontext.dumps(value)


def encode_call(unique_id: str, action: str, payload_text: str) -> str:
    """The text of a CALL whose payload is already JSON text written by the same encoder (e.g. as it was queued):
    the same text as ``encode(Call(unique_id, action, payload))``, without encoding the payload again."""
    if not isinstance(unique_id, str) or len(unique_id) > MAX_UNIQUE_ID_LENGTH:
        raise ValueError(f"messageId must be a string of at most {MAX_UNIQUE_ID_LENGTH} characters")
    if unique_id.isascii() and action.isascii():    # the usual case: quoted by the C helper, no encoder run
        return f"[{CALL},{_quote(unique_id)},{_quote(action)},{payload_text}]"
    return f"[{CALL},{_dumps(unique_id)},{_dumps(action)},{payload_text}]"


def encode(frame: Call | CallResult | CallError) -> str:
    """Serialise a frame as compact JSON (no spaces, UTF-8 text rather than \\u escapes).

    Decimal values are written with their exact decimal text (``Decimal("2935.600")`` -> ``2935.600``), never
    through float; floats are written with Python's shortest repr. NaN and infinities raise ValueError.
    """
    if isinstance(frame, Call):
        message: list[Any] = [CALL, frame.unique_id, frame.action, frame.payload]
    elif isinstance(frame, CallResult):
        message = [CALLRESULT, frame.unique_id, frame.payload]
    elif isinstance(frame, CallError):
        message = [CALLERROR, frame.unique_id, frame.code, frame.description, frame.details]
    else:
        raise TypeError(f"not an OCPP-J frame: {type(frame).__name__}")
    if not isinstance(frame.unique_id, str) or len(frame.unique_id) > MAX_UNIQUE_ID_LENGTH:
        raise ValueError(f"messageId must be a string of at most {MAX_UNIQUE_ID_LENGTH} characters")
    return _dumps(message)
