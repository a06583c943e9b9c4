"""OCPP-J RPC layer (no I/O): frames, CALLERROR codes, strict schema validation and call tracking.

``frames`` parses and writes the JSON wrapper, ``errors`` spells CALLERROR codes per OCPP version,
``schemas`` validates payloads against the OCA JSON schemas, ``endpoint`` is the sans-I/O state of one
connection (one CALL in flight, timeouts, CALLERROR answers to bad input).
"""

from .endpoint import (
    UNKNOWN_MESSAGE_ID,
    BusyError,
    Endpoint,
    ErrorResponse,
    Event,
    IncomingCall,
    Reply,
    Response,
    Timeout,
)
from .errors import VERSIONS, ErrorKind, OcppError, error_code, error_codes, error_kind
from .frames import (
    CALL,
    CALLERROR,
    CALLRESULT,
    MAX_DESCRIPTION_LENGTH,
    MAX_UNIQUE_ID_LENGTH,
    Call,
    CallError,
    CallResult,
    Frame,
    FrameError,
    decode,
    encode,
)
from .schemas import SchemaError, SchemaRegistry, is_rfc3339_date_time, shared_registry

__all__ = [
    "BusyError",
    "CALL",
    "CALLERROR",
    "CALLRESULT",
    "Call",
    "CallError",
    "CallResult",
    "Endpoint",
    "ErrorKind",
    "ErrorResponse",
    "Event",
    "Frame",
    "FrameError",
    "IncomingCall",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_UNIQUE_ID_LENGTH",
    "OcppError",
    "Reply",
    "Response",
    "SchemaError",
    "SchemaRegistry",
    "Timeout",
    "UNKNOWN_MESSAGE_ID",
    "VERSIONS",
    "decode",
    "encode",
    "error_code",
    "error_codes",
    "error_kind",
    "is_rfc3339_date_time",
    "shared_registry",
]
