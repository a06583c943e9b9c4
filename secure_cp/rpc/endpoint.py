"""Sans-I/O OCPP-J endpoint: text in, events and text out, time passed in.

One :class:`Endpoint` per WebSocket connection. It owns the RPC rules of OCPP-J 1.6 §4 / OCPP 2.0.1 Part 4 §4:
at most one outgoing CALL in flight (§4.1.1), message ids of at most 36 characters (§4.1.4), matching
CALLRESULT/CALLERROR to the outstanding CALL, timeouts, schema validation in both directions, and the
CALLERROR answer to anything malformed (§4.2.3). It never sends anything itself: the caller sends the texts it
returns. It never raises for bad input from the peer.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Callable, Union

from .errors import ErrorKind, OcppError, check_version, error_code
from .frames import (
    CALL,
    CALLERROR,
    CALLRESULT,
    MAX_DESCRIPTION_LENGTH,
    MAX_UNIQUE_ID_LENGTH,
    Call,
    CallError,
    CallResult,
    FrameError,
    decode,
    encode,
    encode_call,
)
from .schemas import SchemaError, SchemaRegistry, shared_registry

__all__ = [
    "BusyError",
    "Endpoint",
    "ErrorResponse",
    "Event",
    "IncomingCall",
    "Reply",
    "Response",
    "Timeout",
]


# Slotted, not frozen: made for every message (see frames.py). Nothing mutates them.
@dataclass(slots=True)
class IncomingCall:
    """A valid CALL from the peer; answer it with :meth:`Endpoint.reply` or :meth:`Endpoint.reply_error`."""

    unique_id: str
    action: str
    payload: dict


@dataclass(slots=True)
class Response:
    """A valid CALLRESULT to our outstanding CALL."""

    unique_id: str
    action: str
    payload: dict


@dataclass(slots=True)
class ErrorResponse:
    """Our outstanding CALL failed: the peer sent a CALLERROR, or a response that broke its schema or frame."""

    unique_id: str
    action: str
    code: str
    description: str
    details: dict


@dataclass(slots=True)
class Timeout:
    """Our outstanding CALL got no answer within ``call_timeout``."""

    unique_id: str
    action: str


@dataclass(slots=True)
class Reply:
    """A text the caller must send right away (a CALLERROR answering bad input). ``invalid`` says why the received
    message was no valid OCPP message (malformed frame, schema violation, unknown action): the security event
    InvalidMessages; None when it was valid but is not supported here."""

    text: str
    invalid: str | None = None


Event = Union[IncomingCall, Response, ErrorResponse, Reply]


class BusyError(Exception):
    """send_call() while a CALL is outstanding (OCPP-J 1.6 §4.1.1: one CALL at a time)."""


#: OCPP 2.0.1 Part 4 §4.2.3: the messageId of a CALLERROR answering a message whose id cannot be read.
UNKNOWN_MESSAGE_ID = "-1"

# Ids of recently timed-out CALLs, to tell a late answer apart from a bogus one in the log.
_TIMED_OUT_MEMORY = 16


def _message_ids() -> Callable[[], str]:
    """The default id factory: a new messageId per CALL, in the form of a UUID (36 characters).

    The ids must differ from every id the station used before (OCPP 2.0.1 Part 4 §4.1.4: "different from all message
    IDs previously used by the same sender ... on any WebSocket connection"; OCPP-J 1.6 §4.1.4: on the same
    connection). A fresh uuid4 per CALL does that but costs more than the rest of the endpoint's work on a CALL;
    so each factory (one per Endpoint) takes one random uuid4 and keeps its first 24 characters (74 random bits:
    two factories, e.g. before and after a reboot, practically never share them) and counts the remaining 12 hex
    digits (48 bits) up from 1. The ids stay valid UUID text, at most 36 characters, distinct within one factory
    (2^48 CALLs before the count wraps).
    """
    prefix = str(uuid.uuid4())[:24]          # "xxxxxxxx-xxxx-4xxx-yxxx-"
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter) & 0xFFFFFFFFFFFF:012x}"


def _clip(text: str, limit: int = MAX_DESCRIPTION_LENGTH) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _preview(text: str | bytes, limit: int = 120) -> str:
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


class Endpoint:
    """The RPC state of one OCPP-J connection.

    ``version``: "1.6" or "2.0.1". ``registry``: the schemas (default: one shared per version).
    ``supported_actions(action)``: whether the station implements ``action`` as an incoming CALL; default: every
    action that has a schema. ``call_timeout``: seconds until an outstanding CALL times out (§4.1.1 leaves the
    value to the implementation). ``now`` arguments are monotonic seconds.
    """

    def __init__(
        self,
        version: str,
        registry: SchemaRegistry | None = None,
        *,
        call_timeout: float = 30.0,
        id_factory: Callable[[], str] | None = None,
        supported_actions: Callable[[str], bool] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.version = check_version(version)
        if registry is None:
            registry = shared_registry(version)
        elif registry.version != version:
            raise ValueError(f"registry is for OCPP {registry.version}, endpoint for {version}")
        if not call_timeout > 0:
            raise ValueError("call_timeout must be positive")
        self.registry = registry
        self.call_timeout = float(call_timeout)
        self._id_factory = id_factory or _message_ids()
        self._supported = supported_actions or registry.knows
        self._log = log or logging.getLogger("secure_cp.rpc")
        self._outstanding: tuple[str, str] | None = None
        self._deadline: float | None = None
        self._timed_out: deque[tuple[str, str]] = deque(maxlen=_TIMED_OUT_MEMORY)

    # --- state ------------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a CALL is outstanding."""
        return self._outstanding is not None

    @property
    def outstanding(self) -> tuple[str, str] | None:
        """(unique_id, action) of the outstanding CALL, or None."""
        return self._outstanding

    def next_deadline(self) -> float | None:
        """When the outstanding CALL times out (for the caller's timer), or None."""
        return self._deadline

    def clock_moved(self, delta: float) -> None:
        """The caller's clock was set ``delta`` seconds forward (or back): the outstanding CALL keeps its time to
        answer, measured on the new clock (a correction of the clock is no time passing)."""
        if self._deadline is not None:
            self._deadline += delta

    def poll(self, now: float) -> Timeout | None:
        """Time out the outstanding CALL if its deadline has passed; it is then forgotten."""
        if self._outstanding is None or self._deadline is None or now < self._deadline:
            return None
        unique_id, action = self._outstanding
        self._clear()
        self._timed_out.append((unique_id, action))
        self._log.warning("OCPP %s CALL %s (%s) timed out after %.1f s", self.version, unique_id, action,
                          self.call_timeout)
        return Timeout(unique_id, action)

    def reset(self) -> None:
        """The connection is gone: forget the outstanding CALL (it will never be answered on a new one)."""
        self._clear()
        self._timed_out.clear()

    def _clear(self) -> None:
        self._outstanding = None
        self._deadline = None

    # --- outgoing ---------------------------------------------------------------------------------------

    def send_call(self, action: str, payload: dict, now: float, *, validated: bool = False,
                  payload_text: str | None = None) -> tuple[str, str]:
        """Start a CALL; returns (unique_id, text to send).

        Raises BusyError if a CALL is outstanding (call :meth:`poll` first, so that an expired one is cleared
        and reported as a Timeout), SchemaError if ``payload`` is not a valid ``action`` request
        (we never send an invalid frame), ValueError if the id factory returns an id that OCPP-J forbids.
        ``validated=True``: the caller has just checked this payload against the same schema (an outbox item
        checked when it was queued), so it is not checked twice. ``payload_text``: ``payload`` as JSON text from
        the same encoder (an outbox item as it was stored), put into the frame as it is.
        """
        if self._outstanding is not None:
            raise BusyError(f"CALL {self._outstanding[0]} ({self._outstanding[1]}) is still outstanding")
        if not validated:
            self.registry.validate_request(action, payload)
        unique_id = self._id_factory()
        if not isinstance(unique_id, str) or len(unique_id) > MAX_UNIQUE_ID_LENGTH:
            raise ValueError(f"id_factory returned {unique_id!r}: messageId is string[{MAX_UNIQUE_ID_LENGTH}]")
        if payload_text is None:
            text = encode(Call(unique_id, action, payload))
        else:
            text = encode_call(unique_id, action, payload_text)
        self._outstanding = (unique_id, action)
        self._deadline = now + self.call_timeout
        return unique_id, text

    def reply(self, call: IncomingCall, payload: dict) -> str:
        """CALLRESULT text for ``call``; a CALLERROR InternalError instead if ``payload`` breaks the schema."""
        try:
            self.registry.validate_response(call.action, payload)
            return encode(CallResult(call.unique_id, payload))
        except (SchemaError, TypeError, ValueError) as exc:
            # A bug on our side: the peer gets a well-formed error, the log gets the reason.
            self._log.error("OCPP %s invalid %s response to %s not sent: %s", self.version, call.action,
                            call.unique_id, exc)
            return self._error_text(call.unique_id, ErrorKind.INTERNAL_ERROR,
                                    f"could not build a valid {call.action} response")

    def reply_error(
        self, call: IncomingCall, kind: ErrorKind, description: str = "", details: dict | None = None
    ) -> str:
        """CALLERROR text for ``call`` with the version's spelling of ``kind``."""
        return self._error_text(call.unique_id, kind, description, details)

    def reply_exception(self, call: IncomingCall, error: OcppError) -> str:
        """CALLERROR text for ``call`` from an :class:`OcppError` raised by its handler."""
        return self._error_text(call.unique_id, error.kind, error.description, error.details)

    def _error_text(
        self, unique_id: str, kind: ErrorKind, description: str, details: dict | None = None
    ) -> str:
        frame = CallError(unique_id, error_code(kind, self.version), _clip(description), details or {})
        try:
            return encode(frame)
        except (TypeError, ValueError):
            # details that cannot be JSON (a handler bug) must not stop the error from going out.
            return encode(CallError(unique_id, frame.code, frame.description, {}))

    # --- incoming ---------------------------------------------------------------------------------------

    def receive(self, text: str | bytes, now: float) -> list[Event]:
        """Process one received message; returns what happened (empty if it was dropped).

        ``now`` is accepted for symmetry with the other methods; the deadline is enforced by :meth:`poll`, so a
        response that arrives before the caller polls is still taken as the answer.
        """
        try:
            frame = decode(text, version=self.version)
        except FrameError as exc:
            return self._on_frame_error(exc, text)
        except Exception:  # noqa: BLE001 - never raise for bad input; a bug here must not kill the connection
            self._log.exception("OCPP %s unexpected error decoding %s", self.version, _preview(text))
            return []
        try:
            if isinstance(frame, Call):
                return self._on_call(frame)
            return self._on_response(frame)
        except Exception:  # noqa: BLE001 - same reason
            self._log.exception("OCPP %s unexpected error handling %s", self.version, _preview(text))
            return []

    def _on_call(self, call: Call) -> list[Event]:
        # OCPP-J 1.6 §4.2.3 Table 7: NotImplemented = "Requested Action is not known by receiver",
        # NotSupported = "Requested Action is recognized but not supported by the receiver".
        if not self.registry.knows(call.action):
            self._log.warning("OCPP %s CALL %s: unknown action %r", self.version, call.unique_id, call.action[:60])
            return [self._reply(call.unique_id, ErrorKind.NOT_IMPLEMENTED,
                                f"action {call.action!r} is not known", invalid=True)]
        if not self._supported(call.action):
            self._log.info("OCPP %s CALL %s: action %s not supported", self.version, call.unique_id, call.action)
            return [self._reply(call.unique_id, ErrorKind.NOT_SUPPORTED,
                                f"action {call.action} is not supported")]
        try:
            self.registry.validate_request(call.action, call.payload)
        except SchemaError as exc:
            self._log.warning("OCPP %s CALL %s %s rejected: %s", self.version, call.unique_id, call.action,
                              exc.description)
            return [self._reply(call.unique_id, exc.kind, exc.description, invalid=True)]
        return [IncomingCall(call.unique_id, call.action, call.payload)]

    def _on_response(self, frame: CallResult | CallError) -> list[Event]:
        action = self._match(frame.unique_id)
        if action is None:
            return []
        if isinstance(frame, CallError):
            self._log.info("OCPP %s CALL %s (%s) answered with CALLERROR %s: %s", self.version, frame.unique_id,
                           action, frame.code, frame.description[:200])
            return [ErrorResponse(frame.unique_id, action, frame.code, frame.description, frame.details)]
        try:
            self.registry.validate_response(action, frame.payload)
        except SchemaError as exc:
            self._log.warning("OCPP %s invalid %s response %s: %s", self.version, action, frame.unique_id,
                              exc.description)
            return [ErrorResponse(frame.unique_id, action, error_code(exc.kind, self.version),
                                  exc.description, {})]
        return [Response(frame.unique_id, action, frame.payload)]

    def _match(self, unique_id: str) -> str | None:
        """Action of the outstanding CALL if ``unique_id`` answers it (then it is no longer outstanding)."""
        if self._outstanding is not None and self._outstanding[0] == unique_id:
            action = self._outstanding[1]
            self._clear()
            return action
        late = next((a for i, a in self._timed_out if i == unique_id), None)
        if late is not None:
            self._log.warning("OCPP %s late answer to timed-out CALL %s (%s) dropped", self.version, unique_id, late)
        else:
            self._log.warning("OCPP %s answer to unknown CALL %r dropped", self.version, unique_id)
        return None

    def _on_frame_error(self, exc: FrameError, text: str | bytes) -> list[Event]:
        type_id, unique_id = exc.message_type_id, exc.unique_id
        self._log.warning("OCPP %s malformed message (%s): %s", self.version, exc.description, _preview(text))
        if type_id in (CALLRESULT, CALLERROR):
            # Never answer an answer. A broken answer to our CALL still ends it, as a failure.
            if unique_id is None:
                return []
            action = self._match(unique_id)
            if action is None:
                return []
            return [ErrorResponse(unique_id, action, error_code(exc.kind, self.version), exc.description, {})]
        if type_id == CALL and unique_id is not None:
            return [self._reply(unique_id, exc.kind, exc.description, invalid=True)]
        if self.version == "1.6":
            # 1.6 defines no answer without a message id, and §4.1.3 says a message with an unknown
            # MessageTypeId is ignored.
            return []
        # OCPP 2.0.1 Part 4 §4.4: unknown MessageTypeId -> CALLERROR MessageTypeNotSupported;
        # §4.2.3: if the messageId cannot be read, the CALLERROR carries "-1".
        return [self._reply(unique_id if unique_id is not None else UNKNOWN_MESSAGE_ID, exc.kind, exc.description,
                            invalid=True)]

    def _reply(self, unique_id: str, kind: ErrorKind, description: str, *, invalid: bool = False) -> Reply:
        return Reply(self._error_text(unique_id, kind, description), description if invalid else None)

    def __repr__(self) -> str:
        return f"Endpoint(version={self.version!r}, outstanding={self._outstanding!r})"
