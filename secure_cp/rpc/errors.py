"""OCPP-J CALLERROR codes, version-neutral.

The two OCPP-J specifications spell their error codes differently:

* OCPP-J 1.6 §4.2.3 Table 7 has ten codes. Two are misspelled and stay so: the OCPP-J 1.6 errata sheet
  (§5 "Known issues that will not be fixed", 5.1 and 5.2) keeps ``OccurenceConstraintViolation`` and
  ``FormationViolation`` because fixing them would break implementations.
* OCPP 2.0.1 Part 4 §4.3 Table 8 has twelve codes: the corrected ``FormatViolation`` and
  ``OccurrenceConstraintViolation``, plus ``MessageTypeNotSupported`` (§4.4) and ``RpcFrameworkError``.

Code above this module speaks in :class:`ErrorKind` and asks :func:`error_code` for the exact string of the
negotiated version, so a 1.6 peer never receives a 2.0.1 spelling and vice versa.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "ErrorKind",
    "OcppError",
    "VERSIONS",
    "error_code",
    "error_codes",
    "error_kind",
    "check_version",
]

#: OCPP versions this package speaks (the strings used throughout ``secure_cp.rpc``).
VERSIONS = ("1.6", "2.0.1")


class ErrorKind(enum.Enum):
    """What went wrong, independent of the OCPP version's spelling."""

    NOT_IMPLEMENTED = "NotImplemented"
    NOT_SUPPORTED = "NotSupported"
    INTERNAL_ERROR = "InternalError"
    PROTOCOL_ERROR = "ProtocolError"
    SECURITY_ERROR = "SecurityError"
    FORMATION_VIOLATION = "FormationViolation"
    PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
    OCCURRENCE_CONSTRAINT_VIOLATION = "OccurrenceConstraintViolation"
    TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"
    GENERIC_ERROR = "GenericError"
    MESSAGE_TYPE_NOT_SUPPORTED = "MessageTypeNotSupported"
    RPC_FRAMEWORK_ERROR = "RpcFrameworkError"


_CODES_16: dict[ErrorKind, str] = {
    ErrorKind.NOT_IMPLEMENTED: "NotImplemented",
    ErrorKind.NOT_SUPPORTED: "NotSupported",
    ErrorKind.INTERNAL_ERROR: "InternalError",
    ErrorKind.PROTOCOL_ERROR: "ProtocolError",
    ErrorKind.SECURITY_ERROR: "SecurityError",
    ErrorKind.FORMATION_VIOLATION: "FormationViolation",  # sic, OCPP-J 1.6 errata 5.2
    ErrorKind.PROPERTY_CONSTRAINT_VIOLATION: "PropertyConstraintViolation",
    ErrorKind.OCCURRENCE_CONSTRAINT_VIOLATION: "OccurenceConstraintViolation",  # sic, OCPP-J 1.6 errata 5.1
    ErrorKind.TYPE_CONSTRAINT_VIOLATION: "TypeConstraintViolation",
    ErrorKind.GENERIC_ERROR: "GenericError",
    # 1.6 has no code for these two kinds; the nearest 1.6 codes:
    # - An unknown message type id is not covered by any 1.6 code (1.6 §4.1.3 only says the payload is
    #   ignored, and the endpoint never answers it in 1.6), so it is "any other error": GenericError.
    ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED: "GenericError",
    # - A broken RPC wrapper (element missing, action not a string, ...) is the 1.6 "ProtocolError: Payload for
    #   Action is incomplete"; 2.0.1 Table 8 likewise words ProtocolError as "not conform the PDU structure".
    ErrorKind.RPC_FRAMEWORK_ERROR: "ProtocolError",
}

_CODES_201: dict[ErrorKind, str] = {
    ErrorKind.NOT_IMPLEMENTED: "NotImplemented",
    ErrorKind.NOT_SUPPORTED: "NotSupported",
    ErrorKind.INTERNAL_ERROR: "InternalError",
    ErrorKind.PROTOCOL_ERROR: "ProtocolError",
    ErrorKind.SECURITY_ERROR: "SecurityError",
    ErrorKind.FORMATION_VIOLATION: "FormatViolation",
    ErrorKind.PROPERTY_CONSTRAINT_VIOLATION: "PropertyConstraintViolation",
    ErrorKind.OCCURRENCE_CONSTRAINT_VIOLATION: "OccurrenceConstraintViolation",
    ErrorKind.TYPE_CONSTRAINT_VIOLATION: "TypeConstraintViolation",
    ErrorKind.GENERIC_ERROR: "GenericError",
    ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED: "MessageTypeNotSupported",
    ErrorKind.RPC_FRAMEWORK_ERROR: "RpcFrameworkError",
}

_CODES = {"1.6": _CODES_16, "2.0.1": _CODES_201}

# Reverse lookup for codes a peer sends. Peers mix the spellings in practice (1.6 stacks that send
# "FormatViolation", 2.0.1 stacks built on the pre-edition-3 text that send "OccurenceConstraintViolation"),
# so every spelling of either table is understood for either version.
_KINDS_BY_CODE: dict[str, ErrorKind] = {}
for _table in (_CODES_201, _CODES_16):
    for _kind, _code in _table.items():
        if _kind in (ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED, ErrorKind.RPC_FRAMEWORK_ERROR) and _table is _CODES_16:
            continue  # 1.6 fallbacks; the code means its own kind
        _KINDS_BY_CODE.setdefault(_code, _kind)


def check_version(version: str) -> str:
    """Return ``version`` if it is one this package speaks, else raise ValueError."""
    if version not in _CODES:
        raise ValueError(f"unsupported OCPP version {version!r}; expected one of {VERSIONS}")
    return version


def error_code(kind: ErrorKind, version: str) -> str:
    """The exact CALLERROR errorCode string for ``kind`` in OCPP ``version`` ("1.6" or "2.0.1")."""
    return _CODES[check_version(version)][kind]


def error_codes(version: str) -> frozenset[str]:
    """All errorCode strings the specification of ``version`` allows (10 for 1.6, 12 for 2.0.1)."""
    return frozenset(_CODES[check_version(version)].values())


def error_kind(code: str) -> ErrorKind | None:
    """The kind of an errorCode received from a peer (either version's spelling), or None if unknown."""
    return _KINDS_BY_CODE.get(code)


class OcppError(Exception):
    """Raised by a message handler to answer an incoming CALL with a CALLERROR.

    ``details`` becomes the CALLERROR's errorDetails object (OCPP-J 1.6 §4.2.3: ``{}`` when there are none).
    """

    def __init__(self, kind: ErrorKind, description: str = "", details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{kind.value}: {description}" if description else kind.value)
        self.kind = kind
        self.description = description
        self.details: dict[str, Any] = dict(details) if details else {}
