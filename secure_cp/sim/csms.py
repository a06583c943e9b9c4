"""A real, local OCPP-J Central System (CSMS): the embedded demo CSMS and the strict peer of the tests.

Why it exists: our charging station must be tested against a CSMS that is *not* built from our own code, or
our bugs would cancel out. The message layer here is the ``ocpp`` package (mobilityhouse) with its ``@on``
handlers; the WebSocket layer is ``websockets``. On top sits a strict layer the ``ocpp`` package lacks
(:mod:`secure_cp.sim.ocppj_strict`):

* every frame the station sends is checked for OCPP-J structure (OCPP-J 1.6 / 2.0.1 §4.1-§4.2);
* every station->CSMS CALL payload, and every CALLRESULT the station returns to one of our CALLs, is validated
  against the official OCA JSON schema *including* ``format: date-time`` (RFC 3339) and with numbers parsed as
  ``decimal.Decimal`` so ``multipleOf`` is exact;
* a violation is recorded in :attr:`Csms.violations`, logged at ERROR and, for a CALL, answered with the
  CALLERROR the spec prescribes (OCPP-J 1.6 §4.2.3 Table 7, OCPP-J 2.0.1 §4.3 Table 8) instead of being processed.

It also behaves like a CSMS that deduplicates at-least-once delivery and records every duplicate, so tests can
assert that the station neither loses nor duplicates transaction messages: in 1.6 a repeated StartTransaction
gets the same transactionId and repeated StopTransaction / MeterValues are recognised; in 2.0.1 the
TransactionEvent ledger (:attr:`Csms.transactions201`) recognises repeats by seqNo and finds missing seqNos
(OCPP 2.0.1 part 2, E §1.3.2).

Protocol versions are chosen per connection by WebSocket subprotocol (OCPP-J 1.6 §3.1.2, OCPP-J 2.0.1 §3.1.2 /
§3.2): each supported subprotocol maps to a session class (:data:`SESSION_CLASSES`, ``ocpp2.0.1`` and
``ocpp1.6``); a :class:`Csms` accepts the subset given as ``subprotocols`` and picks the first of its own list
that the station offers (server preference order).

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
import ssl
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote, urlsplit

import ocpp.v16
import ocpp.v201
from ocpp.routing import on
from ocpp.v16 import call_result as v16_result
from ocpp.v201 import call_result as v201_result
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.headers import build_www_authenticate_basic
from websockets.http11 import Request, Response

from secure_cp.sim.ocppj_strict import CALL as _CALL
from secure_cp.sim.ocppj_strict import CALLERROR as _CALLERROR
from secure_cp.sim.ocppj_strict import CALLRESULT as _CALLRESULT
from secure_cp.sim.ocppj_strict import (
    MAX_MESSAGE_ID_LENGTH,
    V16_RULES,
    V201_RULES,
    Frame,
    ProtocolRules,
    Violation,
    call_error_text,
    check_payload,
    parse_frame,
)

__all__ = [
    "MAX_MESSAGE_ID_LENGTH",
    "SESSION_CLASSES",
    "V16_RULES",
    "V201_RULES",
    "CallErrorReceived",
    "Csms",
    "Record",
    "Tx201Record",
    "TxRecord",
    "format_record",
    "main",
]

_LOG = logging.getLogger("secure_cp.sim.csms")

#: The vendorId / messageId pair the DataTransfer handler implements (everything else is unknown to us).
ECHO_VENDOR_ID = "secure-cp.test"
ECHO_MESSAGE_ID = "echo"

#: seq_gaps() / report gap lists stop after this many missing numbers: a station that jumps its seqNo by 2**31
#: must not make the CSMS build a list of two billion integers.
MAX_GAPS_LISTED = 10_000


# --------------------------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Record:
    """One message from a station, as it was on the wire (either protocol version).

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
    """What the CSMS knows of one OCPP 1.6 transaction: the StartTransaction payload, the MeterValues payloads
    that referenced it (in arrival order, duplicates excluded), and the StopTransaction payload once it arrived."""

    transaction_id: int
    identity: str
    start: dict[str, Any]
    meter_values: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    stop: dict[str, Any] | None = None


def _missing_numbers(present: Iterable[int], low: int, high: int) -> list[int]:
    """The integers in ``low..high`` not in ``present``, at most :data:`MAX_GAPS_LISTED` of them."""
    have = set(present)
    missing: list[int] = []
    n = low
    while n <= high and len(missing) < MAX_GAPS_LISTED:
        if n not in have:
            missing.append(n)
        n += 1
    return missing


@dataclasses.dataclass
class Tx201Record:
    """What the CSMS knows of one OCPP 2.0.1 transaction: its TransactionEvent payloads in arrival order.

    Exact repeats (same seqNo, same payload: a retry after a lost answer) are not added again but recorded in
    :attr:`Csms.duplicates`; a seqNo repeated with a *different* payload is recorded in :attr:`Csms.violations`
    and kept in ``conflicts``, so ``events`` holds each seqNo once.
    """

    transaction_id: str
    identity: str
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    conflicts: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def seq_nos(self) -> list[int]:
        """The seqNo of each event, in arrival order."""
        return [event["seqNo"] for event in self.events]

    @property
    def started(self) -> dict[str, Any] | None:
        """The eventType=Started event, if it arrived."""
        return next((e for e in self.events if e["eventType"] == "Started"), None)

    @property
    def ended_event(self) -> dict[str, Any] | None:
        """The eventType=Ended event, if it arrived."""
        return next((e for e in self.events if e["eventType"] == "Ended"), None)

    @property
    def ended(self) -> bool:
        """True once the eventType=Ended event arrived (OCPP 2.0.1 part 2 §3.80: "Last event of a transaction")."""
        return self.ended_event is not None

    def seq_gaps(self) -> list[int]:
        """The seqNos missing for a complete transaction (OCPP 2.0.1 part 2, E §1.3.2 "Sequence numbers").

        The spec's completeness check is: Started with seqNo *a*, Ended with seqNo *o* > *a*, and an event for
        every integer between them. The counter may run on from earlier transactions (E §1.3.2.1 allows a
        continuously increasing seqNo), so the range is anchored on Started/Ended, not on 0. While Started or
        Ended has not arrived, the lowest / highest seqNo received stands in for it.
        """
        if not self.events:
            return []
        started, ended = self.started, self.ended_event
        low = started["seqNo"] if started is not None else min(self.seq_nos)
        high = ended["seqNo"] if ended is not None else max(self.seq_nos)
        return _missing_numbers(self.seq_nos, low, high)


@dataclasses.dataclass(frozen=True)
class SignedValue:
    """A signed meter value the CSMS found in a station's message (Eichrecht, issue #5) and its check:
    ``ocmf`` the record as decoded (1.6 SignedData value: the OCA JSON form or the raw OCMF string; 2.0.1
    signedMeterValue: base64 signedMeterData), ``verified`` the signature check with the message's publicKey or
    the key in :attr:`Csms.meter_public_keys` (None: no key to check with), ``error`` why it could not be read."""

    identity: str
    action: str
    context: str | None
    ocmf: str | None
    public_key: str | None
    verified: bool | None
    error: str | None = None


def _signed_in(payload: dict[str, Any]) -> list[tuple[str | None, str | None, str | None, str | None]]:
    """(context, OCMF text, publicKey, error) of every signed sampled value of a 1.6 / 2.0.1 payload."""
    out: list[tuple[str | None, str | None, str | None, str | None]] = []
    for mv in (payload.get("meterValue") or []) + (payload.get("transactionData") or []):
        for sv in mv.get("sampledValue", []):
            smv = sv.get("signedMeterValue")
            if smv is None and sv.get("format") == "SignedData":
                value = sv.get("value", "")
                if value.startswith("OCMF|"):
                    out.append((sv.get("context"), value, None, None))
                    continue
                try:
                    smv = json.loads(value)
                except ValueError as exc:
                    out.append((sv.get("context"), None, None, f"SignedData value is neither OCMF nor JSON: {exc}"))
                    continue
            if not isinstance(smv, dict):
                continue
            try:
                text = base64.b64decode(smv.get("signedMeterData", ""), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
                out.append((sv.get("context"), None, None, f"signedMeterData: {exc}"))
                continue
            out.append((sv.get("context"), text, smv.get("publicKey") or None, None))
    return out


class CallErrorReceived(Exception):
    """The station answered one of our CALLs with a CALLERROR (OCPP-J 1.6 / 2.0.1 §4.2.3)."""

    def __init__(self, code: str, description: str, details: dict[str, Any]) -> None:
        super().__init__(f"{code}: {description} {details}")
        self.code = code
        self.description = description
        self.details = details


@dataclasses.dataclass
class _Report:
    """The parts of one multi-part NotifyReport (OCPP 2.0.1 B07/B08) from one station, by seqNo."""

    identity: str
    request_id: int
    parts: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    final_seq_no: int | None = None  # seqNo of the part with tbc=false

    def missing(self) -> list[int]:
        # Part 2 §1.40.1: "seqNo: Sequence number of this message. First message starts at 0."
        top = self.final_seq_no if self.final_seq_no is not None else max(self.parts, default=-1)
        return _missing_numbers(self.parts, 0, top)

    @property
    def complete(self) -> bool:
        return self.final_seq_no is not None and not self.missing()

    def data(self) -> list[dict[str, Any]]:
        return [item for seq_no in sorted(self.parts) for item in self.parts[seq_no].get("reportData", [])]


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

    rules: ProtocolRules

    def __init__(self, csms: Csms, identity: str, ws: ServerConnection) -> None:
        self.csms = csms
        self.identity = identity
        self.ws = ws
        self.closed = asyncio.Event()
        self._pending: dict[str, tuple[str, asyncio.Future[Frame]]] = {}
        self._sent_call_ids: set[str] = set()
        # 2.0.1 wants CALL ids unique over all connections of the identity, 1.6 per connection (§4.1.4 each).
        self._seen_call_ids: set[str] = (
            csms._call_ids_of(identity) if self.rules.ids_unique_per_identity else set()
        )
        self._drop_ids: set[str] = set()
        self._exact_answers: dict[str, dict[str, Any]] = {}  # unique_id -> CALLRESULT payload to send verbatim
        self._inflight: dict[str, dict[str, Any]] = {}  # unique_id -> camelCase payload of the CALL being handled
        self._call_lock = asyncio.Lock()  # OCPP-J §4.1.1: one CALL of ours in flight at a time
        super().__init__(identity, _Wire(self), response_timeout=csms.response_timeout,  # type: ignore[call-arg]
                         logger=csms.log.getChild("ocpp"))

    # -- sending ----------------------------------------------------------------------------------------------

    async def send_frame(self, text: str) -> None:
        if self._drop_ids or self._exact_answers:
            with contextlib.suppress(ValueError, TypeError, IndexError):
                frame = json.loads(text)
                if frame[0] in (_CALLRESULT, _CALLERROR) and frame[1] in self._drop_ids:
                    self._drop_ids.discard(frame[1])
                    self.csms.log.info("%s: dropping our answer %s (drop_next)", self.identity, text)
                    return
                exact = self._exact_answers.pop(frame[1], None) if frame[0] in (_CALLRESULT, _CALLERROR) else None
                if exact is not None and frame[0] == _CALLRESULT:
                    text = json.dumps([_CALLRESULT, frame[1], exact], separators=(",", ":"))
        self.csms.log.debug("%s <- %s", self.identity, text)
        await self.ws.send(text)

    # -- receiving --------------------------------------------------------------------------------------------

    async def route_message(self, raw_msg: str) -> None:  # overrides ocpp.ChargePoint.route_message
        at = self.csms.now()
        self.csms.log.debug("%s -> %s", self.identity, raw_msg)
        try:
            frame = parse_frame(self.rules, raw_msg)
        except Violation as violation:
            self.csms._violation(f"{self.identity}: {violation.message}: {raw_msg[:200]}")
            if violation.answer_to is not None:
                await self.send_frame(call_error_text(violation.answer_to, violation.code, violation.message))
            return
        if frame.type_id == _CALL:
            await self._on_call(frame, at)
        else:
            self._on_response(frame, at)

    async def _on_call(self, frame: Frame, at: datetime) -> None:
        assert frame.action is not None
        record = Record(self.identity, frame.action, frame.payload, frame.unique_id, at)
        try:
            if frame.unique_id in self._seen_call_ids:
                # OCPP-J §4.1.4: a CALL's message id differs from all earlier ones (1.6: on the same connection;
                # 2.0.1: on any connection of this identity, retries included).
                self.csms._violation(f"{self.identity}: message id {frame.unique_id!r} reused for {frame.action}")
            self._seen_call_ids.add(frame.unique_id)
            try:
                self._check_call(frame)
            except Violation as violation:
                self.csms._violation(f"{self.identity}: {frame.action}: {violation.message}")
                await self.send_frame(call_error_text(frame.unique_id, violation.code, violation.message))
                return
            injected = self.csms._take_failure(frame.action)
            if injected is not None:
                self.csms.log.info("%s: answering %s with %s (fail_next)", self.identity, frame.action, injected)
                await self.send_frame(call_error_text(frame.unique_id, injected, "injected by fail_next"))
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
                self._exact_answers.pop(frame.unique_id, None)
        finally:
            # Appended once answered, so a test that awaited the record also sees the CSMS's state for it.
            self.csms._add_record(record)

    def _check_call(self, frame: Frame) -> None:
        rules = self.rules
        assert frame.action is not None
        if frame.action not in rules.station_actions:
            if frame.action in rules.csms_actions:
                raise Violation(rules.unsupported_action, f"{frame.action} is not sent by a charging station")
            raise Violation(rules.unknown_action, f"unknown action {frame.action!r}")
        check_payload(rules, frame.action, frame.exact, response=False)

    def _on_response(self, frame: Frame, at: datetime) -> None:
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
                check_payload(self.rules, action, frame.exact, response=True)
            except Violation as violation:
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
                check_payload(self.rules, action, exact, response=False)
            except Violation as violation:
                raise ValueError(f"invalid {action} payload: {violation.message}") from None
        async with self._call_lock:
            unique_id = str(uuid.uuid4())
            future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
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

    def answer_exactly(self, unique_id: str, payload: dict[str, Any]) -> None:
        """Send ``payload`` verbatim as the CALLRESULT of ``unique_id``.

        The ``ocpp`` package re-keys every dict of a response from snake_case to camelCase, including opaque
        values such as DataTransfer ``data``; a handler that must echo such a value byte for byte registers the
        exact payload here (the handler still returns the package's response object, which is validated).
        """
        self._exact_answers[unique_id] = payload


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
        self.csms._check_signed(self.identity, "MeterValues", self.payload_of(call_unique_id))
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
        self.csms._check_signed(self.identity, "StopTransaction", payload)
        # OCPP 1.6 §6.50: idTagInfo is present when the request contained an idTag.
        id_tag = payload.get("idTag")
        return v16_result.StopTransaction(id_tag_info=self.csms.id_tag_info(id_tag) if id_tag else None)

    @on("SecurityEventNotification")
    def on_security_event_notification(self, **_: Any) -> v16_result.SecurityEventNotification:
        return v16_result.SecurityEventNotification()

    @on("SignCertificate")
    def on_sign_certificate(self, csr: str, **_: Any) -> v16_result.SignCertificate:
        return v16_result.SignCertificate(status=self.csms._sign_requested(self.identity, csr, None))

    @on("LogStatusNotification")
    def on_log_status_notification(self, **_: Any) -> v16_result.LogStatusNotification:
        return v16_result.LogStatusNotification()

    @on("SignedFirmwareStatusNotification")
    def on_signed_firmware_status_notification(self, **_: Any) -> v16_result.SignedFirmwareStatusNotification:
        return v16_result.SignedFirmwareStatusNotification()


class _V201Session(_StrictSession, ocpp.v201.ChargePoint):
    """OCPP 2.0.1: the CSMS side of every station->CSMS message of part 2 ("Messages, Datatypes & Enumerations").

    Like the 1.6 session, handlers read the wire payload (``payload_of``). Messages for which the spec leaves
    the CSMS nothing to decide get their empty response; the rest is documented per handler.
    """

    rules = V201_RULES

    @on("Authorize")
    def on_authorize(self, call_unique_id: str, **_: Any) -> v201_result.Authorize:
        # C01.FR.02..: idTokenInfo from the CSMS's authorization table. C07.FR.13-17: a contract certificate
        # (certificate or iso15118CertificateHashData) also gets a certificateStatus.
        payload = self.payload_of(call_unique_id)
        info = self.csms.id_token_info201(payload["idToken"])
        certificate_status = None
        if "certificate" in payload or "iso15118CertificateHashData" in payload:
            info, certificate_status = self.csms._contract_certificate_verdict(info)
        return v201_result.Authorize(id_token_info=info, certificate_status=certificate_status)

    @on("BootNotification")
    def on_boot_notification(self, **_: Any) -> v201_result.BootNotification:
        # B01-B03 / part 2 §1.2.2: interval is the heartbeat interval when Accepted, otherwise the minimum wait
        # before the next BootNotification. Same knobs as 1.6.
        return v201_result.BootNotification(
            current_time=self.csms.now_text(), interval=self.csms.boot_interval, status=self.csms.boot_status
        )

    @on("ClearedChargingLimit")
    def on_cleared_charging_limit(self, **_: Any) -> v201_result.ClearedChargingLimit:
        return v201_result.ClearedChargingLimit()

    @on("DataTransfer")
    def on_data_transfer(self, call_unique_id: str, **_: Any) -> v201_result.DataTransfer:
        # P02.FR.06: unknown vendorId -> UnknownVendorId; P02.FR.07: messageId mismatch -> UnknownMessageId.
        # The echo returns ``data`` byte for byte (see answer_exactly).
        payload = self.payload_of(call_unique_id)
        if payload["vendorId"] != ECHO_VENDOR_ID:
            return v201_result.DataTransfer(status="UnknownVendorId")
        if payload.get("messageId") != ECHO_MESSAGE_ID:
            return v201_result.DataTransfer(status="UnknownMessageId")
        answer: dict[str, Any] = {"status": "Accepted"}
        if payload.get("data") is not None:
            answer["data"] = payload["data"]
        self.answer_exactly(call_unique_id, answer)
        return v201_result.DataTransfer(status="Accepted", data=payload.get("data"))

    @on("FirmwareStatusNotification")
    def on_firmware_status_notification(self, **_: Any) -> v201_result.FirmwareStatusNotification:
        return v201_result.FirmwareStatusNotification()

    @on("Get15118EVCertificate")
    def on_get_15118_ev_certificate(self, call_unique_id: str, **_: Any) -> v201_result.Get15118EVCertificate:
        # M01/M02: the CSMS would forward exiRequest to a contract certificate pool. By default this CSMS has none
        # and reports that it could not process the request; tests script the answer (Csms.ev_certificate_answer).
        answer = self.csms._scripted(self.csms.ev_certificate_answer, self.payload_of(call_unique_id))
        answer.setdefault("exiResponse", "")   # required by the 2.0.1 schema even with Failed (Part 6 omits it)
        self.answer_exactly(call_unique_id, answer)
        return v201_result.Get15118EVCertificate(status=answer["status"], exi_response=answer.get("exiResponse", ""),
                                                 status_info=answer.get("statusInfo"))

    @on("GetCertificateStatus")
    def on_get_certificate_status(self, call_unique_id: str, **_: Any) -> v201_result.GetCertificateStatus:
        # M06: the CSMS asks the OCSP responder; by default this CSMS cannot reach one -> Failed (ocspResult may be
        # omitted only when status is not Accepted, part 2 §1.18.2). Tests script it (certificate_status_answer).
        answer = self.csms._scripted(self.csms.certificate_status_answer, self.payload_of(call_unique_id))
        self.answer_exactly(call_unique_id, answer)
        return v201_result.GetCertificateStatus(status=answer["status"], ocsp_result=answer.get("ocspResult"),
                                                status_info=answer.get("statusInfo"))

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> v201_result.Heartbeat:
        return v201_result.Heartbeat(current_time=self.csms.now_text())

    @on("LogStatusNotification")
    def on_log_status_notification(self, **_: Any) -> v201_result.LogStatusNotification:
        return v201_result.LogStatusNotification()

    @on("MeterValues")
    def on_meter_values(self, **_: Any) -> v201_result.MeterValues:
        # J01: meter values outside transactions (transaction meter values travel in TransactionEvent).
        return v201_result.MeterValues()

    @on("NotifyChargingLimit")
    def on_notify_charging_limit(self, **_: Any) -> v201_result.NotifyChargingLimit:
        return v201_result.NotifyChargingLimit()

    @on("NotifyCustomerInformation")
    def on_notify_customer_information(self, **_: Any) -> v201_result.NotifyCustomerInformation:
        return v201_result.NotifyCustomerInformation()

    @on("NotifyDisplayMessages")
    def on_notify_display_messages(self, **_: Any) -> v201_result.NotifyDisplayMessages:
        return v201_result.NotifyDisplayMessages()

    @on("NotifyEVChargingNeeds")
    def on_notify_ev_charging_needs(self, **_: Any) -> v201_result.NotifyEVChargingNeeds:
        # Part 2 §3.59: Accepted = "A schedule will be provided momentarily", Processing = "gathering
        # information to provide a schedule", Rejected = "Service not available". This CSMS computes no
        # schedules, so Rejected is the truthful answer.
        return v201_result.NotifyEVChargingNeeds(status="Rejected")

    @on("NotifyEVChargingSchedule")
    def on_notify_ev_charging_schedule(self, **_: Any) -> v201_result.NotifyEVChargingSchedule:
        # Part 2 §1.37.2: status says the message was processed, "It does not imply any approval".
        return v201_result.NotifyEVChargingSchedule(status="Accepted")

    @on("NotifyEvent")
    def on_notify_event(self, **_: Any) -> v201_result.NotifyEvent:
        return v201_result.NotifyEvent()

    @on("NotifyMonitoringReport")
    def on_notify_monitoring_report(self, **_: Any) -> v201_result.NotifyMonitoringReport:
        return v201_result.NotifyMonitoringReport()

    @on("NotifyReport")
    def on_notify_report(self, call_unique_id: str, **_: Any) -> v201_result.NotifyReport:
        self.csms._notify_report(self.identity, self.payload_of(call_unique_id), call_unique_id)
        return v201_result.NotifyReport()

    @on("PublishFirmwareStatusNotification")
    def on_publish_firmware_status_notification(self, **_: Any) -> v201_result.PublishFirmwareStatusNotification:
        return v201_result.PublishFirmwareStatusNotification()

    @on("ReportChargingProfiles")
    def on_report_charging_profiles(self, **_: Any) -> v201_result.ReportChargingProfiles:
        return v201_result.ReportChargingProfiles()

    @on("ReservationStatusUpdate")
    def on_reservation_status_update(self, **_: Any) -> v201_result.ReservationStatusUpdate:
        return v201_result.ReservationStatusUpdate()

    @on("SecurityEventNotification")
    def on_security_event_notification(self, **_: Any) -> v201_result.SecurityEventNotification:
        return v201_result.SecurityEventNotification()

    @on("SignCertificate")
    def on_sign_certificate(self, csr: str, certificate_type: str | None = None,
                            **_: Any) -> v201_result.SignCertificate:
        # A02/A03: Accepted means the CSMS forwards the CSR to a CA (Csms.certificate_signer, if set)
        return v201_result.SignCertificate(status=self.csms._sign_requested(self.identity, csr, certificate_type))

    @on("StatusNotification")
    def on_status_notification(self, **_: Any) -> v201_result.StatusNotification:
        return v201_result.StatusNotification()

    @on("TransactionEvent")
    def on_transaction_event(self, call_unique_id: str, **_: Any) -> v201_result.TransactionEvent:
        # E01.FR.11/12, C09.FR.12: a request that carries an idToken is answered with its idTokenInfo (status and
        # groupIdToken); without idToken the response is empty. Duplicates are answered the same way.
        payload = self.payload_of(call_unique_id)
        self.csms._transaction_event(self.identity, payload, call_unique_id)
        self.csms._check_signed(self.identity, "TransactionEvent", payload)
        id_token = payload.get("idToken")
        return v201_result.TransactionEvent(
            id_token_info=self.csms.id_token_info201(id_token) if id_token is not None else None
        )


#: Supported WebSocket subprotocols -> session class, in the default server preference order (OCPP-J §3.1.2).
SESSION_CLASSES: dict[str, type[_StrictSession]] = {"ocpp2.0.1": _V201Session, "ocpp1.6": _V16Session}


# --------------------------------------------------------------------------------------------------------------
# The CSMS
# --------------------------------------------------------------------------------------------------------------


def _default_authorize() -> dict[str, dict[str, Any]]:
    tags = [f"TAG{i}" for i in range(1, 10)] + ["DEMO"]
    return {tag: {"status": "Accepted"} for tag in tags}


def _as_id_token_info(entry: dict[str, Any]) -> dict[str, Any]:
    """An ``authorize`` table entry as a 2.0.1 IdTokenInfoType.

    The table is shared with 1.6, whose IdTagInfo names differ: ``expiryDate`` becomes ``cacheExpiryDateTime``
    and ``parentIdTag`` becomes ``groupIdToken`` (a Central token, part 2 C09); 2.0.1 names pass unchanged.
    """
    info: dict[str, Any] = {}
    for key, value in entry.items():
        if key == "expiryDate":
            info.setdefault("cacheExpiryDateTime", value)
        elif key == "parentIdTag":
            info.setdefault("groupIdToken", {"idToken": value, "type": "Central"})
        else:
            info[key] = value
    return info


def _identity_from_path(path: str) -> str:
    # OCPP-J 1.6 / 2.0.1 §3.1.1: the connection URL is the endpoint URL + "/" + percent-encoded identity.
    return unquote(urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1])


class Csms:
    """A local OCPP-J Central System on 127.0.0.1 (see the module docstring).

    ``subprotocols`` lists the accepted subprotocols in server preference order (default: every key of
    :data:`SESSION_CLASSES`, ``ocpp2.0.1`` first); a station offering none of them is refused.

    Behaviour knobs (``boot_status``, ``boot_interval``, ``authorize``, ``contract_certificate_status``,
    ``ev_certificate_answer``, ``certificate_status_answer``, :meth:`fail_next`, :meth:`drop_next`, ``clock``)
    may be changed at any time. Records (``received``, ``responses``, ``violations``, ``transactions``,
    ``transactions201``, ``reports``, ``duplicates``, ``connected``, ``refused``) are plain attributes for tests to
    read; ``received`` and ``responses`` hold the messages of both protocol versions.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        basic_auth: dict[str, bytes] | None = None,
        log: logging.Logger | None = None,
        response_timeout: float = 10.0,
        subprotocols: Iterable[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        #: TLS server context (security profiles 2/3, ``secure_cp.security.tls.server_context``); None: plain ws://.
        #: Its certificate may be replaced (``load_cert_chain``) while running: new connections use the new one.
        self.ssl_context = ssl_context
        self.port = port
        self.basic_auth = basic_auth
        self.log = log or _LOG
        self.response_timeout = response_timeout
        self.subprotocols: tuple[str, ...] = tuple(SESSION_CLASSES if subprotocols is None else subprotocols)
        if not self.subprotocols:
            raise ValueError("a CSMS must accept at least one subprotocol")
        for subprotocol in self.subprotocols:
            if subprotocol not in SESSION_CLASSES:
                raise ValueError(f"unsupported subprotocol {subprotocol!r} (supported: {', '.join(SESSION_CLASSES)})")
        # knobs
        self.boot_status: str = "Accepted"
        self.boot_interval: int = 300
        #: idTag (1.6) / idToken value (2.0.1) -> IdTagInfo / IdTokenInfo; unknown ids are Invalid / Unknown.
        self.authorize: dict[str, dict[str, Any]] = _default_authorize()
        #: 2.0.1 C07: what the CSMS concludes about a contract certificate in an AuthorizeRequest
        #: ("Accepted" = the chain is valid; or CertificateExpired / CertificateRevoked / CertChainError / ...).
        self.contract_certificate_status: str = "Accepted"
        #: 2.0.1 M01/M02 / M06: the Get15118EVCertificate / GetCertificateStatus response payloads (wire names), or
        #: functions of the request payload that return them. Default Failed: no certificate pool, no OCSP responder.
        self.ev_certificate_answer: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]] = {
            "status": "Failed", "exiResponse": ""}
        self.certificate_status_answer: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]] = {
            "status": "Failed"}
        self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
        #: A02/A03: the answer to SignCertificate ("Accepted" / "Rejected") and the CA: with a signer (csr PEM,
        #: certificateType or None -> certificate chain PEM, e.g. devpki.sign_csr with the CPO sub-CA) an Accepted
        #: CSR comes back as CertificateSigned (its response in ``responses``); None: nothing follows.
        self.sign_certificate_status: str = "Accepted"
        self.certificate_signer: Callable[[str, str | None], str] | None = None
        #: Eichrecht: identity -> meter public key (hex DER or the OCA form) for signed values sent without one
        self.meter_public_keys: dict[str, str] = {}
        # records
        #: every signed meter value found in MeterValues / StopTransaction / TransactionEvent, with its check
        self.signed_values: list[SignedValue] = []
        #: DER of the TLS client certificate of each station's current connection (None: none presented)
        self.client_certificates: dict[str, bytes | None] = {}
        self.received: list[Record] = []
        self.responses: list[Record] = []
        self.violations: list[str] = []
        self.transactions: dict[int, TxRecord] = {}
        #: OCPP 2.0.1 TransactionEvent ledger, keyed by transactionInfo.transactionId.
        self.transactions201: dict[str, Tx201Record] = {}
        #: OCPP 2.0.1 NotifyReport: requestId -> reportData of all parts received so far, in seqNo order.
        self.reports: dict[int, list[dict[str, Any]]] = {}
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
        self._report_parts: dict[tuple[str, int], _Report] = {}
        self._call_ids: dict[str, set[str]] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await serve(
            self._serve_connection,
            self.host,
            self.port,
            select_subprotocol=self._select_subprotocol,
            process_request=self._process_request,
            logger=self.log.getChild("ws"),
            ssl=self.ssl_context,
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
        """The OCPP-J endpoint URL; a station appends "/" + its identity (OCPP-J §3.1.1)."""
        return f"{'wss' if self.ssl_context is not None else 'ws'}://{self.host}:{self.port}"

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
        """Current time as RFC 3339 UTC with 'Z' and milliseconds (OCPP 1.6 §3.15, OCPP 2.0.1 part 2 §3.1)."""
        return self.now().astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    def id_tag_info(self, id_tag: str) -> dict[str, Any]:
        """OCPP 1.6 IdTagInfo for ``id_tag`` from :attr:`authorize` (unknown: Invalid)."""
        return dict(self.authorize.get(id_tag, {"status": "Invalid"}))

    def id_token_info201(self, id_token: dict[str, Any]) -> dict[str, Any]:
        """OCPP 2.0.1 IdTokenInfo for an IdTokenType, looked up in :attr:`authorize` by its ``idToken`` value.

        Unknown values are ``Unknown`` (part 2 §3.3: "Identifier is unknown. Not allowed for charging."). A token
        of type NoAuthorization means no authorization is done (part 2 §3.43), so there is nothing to refuse.
        """
        if id_token.get("type") == "NoAuthorization":
            return {"status": "Accepted"}
        entry = self.authorize.get(id_token["idToken"])
        return {"status": "Unknown"} if entry is None else _as_id_token_info(entry)

    @staticmethod
    def _scripted(answer: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]],
                  request: dict[str, Any]) -> dict[str, Any]:
        """A knob that is either the response payload or a function of the request payload giving it."""
        return dict(answer(request) if callable(answer) else answer)

    def _contract_certificate_verdict(self, info: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Part 2 C07.FR.13-17: combine :attr:`contract_certificate_status` with the idToken's status."""
        verdict = self.contract_certificate_status
        info = dict(info)
        if verdict == "Accepted":
            if info["status"] in ("Blocked", "Expired", "Invalid", "Unknown"):
                verdict = "ContractCancelled"  # C07.FR.13: certificate valid, eMAID not accepted
        elif verdict == "CertificateExpired":
            info["status"] = "Expired"  # C07.FR.15
        elif verdict in ("CertificateRevoked", "CertChainError"):
            info["status"] = "Invalid"  # C07.FR.16 / C07.FR.17
        return info, verdict

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

        The station's negotiated version decides which actions and schemas apply (1.6 or 2.0.1). Raises
        :class:`CallErrorReceived` on a CALLERROR, ``TimeoutError`` after ``timeout`` seconds (default
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

    # -- 2.0.1 ledgers ----------------------------------------------------------------------------------------

    def seq_gaps(self, transaction_id: str) -> list[int]:
        """Missing TransactionEvent seqNos of a 2.0.1 transaction (see :meth:`Tx201Record.seq_gaps`)."""
        return self.transactions201[transaction_id].seq_gaps()

    async def wait_report(self, identity: str, request_id: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``identity`` has sent the whole NotifyReport for ``request_id`` (B07/B08: the part with
        tbc=false, and every seqNo from 0 up to it); return all reportData entries in seqNo order."""

        def complete() -> list[dict[str, Any]] | None:
            report = self._report_parts.get((identity, request_id))
            return report.data() if report is not None and report.complete else None

        try:
            return await self._wait_until(complete, timeout)
        except TimeoutError:
            report = self._report_parts.get((identity, request_id))
            state = (
                "no part" if report is None
                else f"seqNos {sorted(report.parts)}, final seqNo {report.final_seq_no}, missing {report.missing()}"
            )
            raise TimeoutError(
                f"NotifyReport requestId {request_id} from {identity} not complete within {timeout}s ({state})"
            ) from None

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
        # OCPP-J 1.6 / 2.0.1 §3.2: the server picks; without a common subprotocol the handshake completes
        # without one (and we then close), rather than failing with HTTP 400 as websockets would by default.
        offered = list(offered)
        for subprotocol in self.subprotocols:
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
                # OCPP-J 1.6 / 2.0.1 §3.1.2: the OCPP version MUST be given in Sec-WebSocket-Protocol.
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
        ssl_object = ws.transport.get_extra_info("ssl_object") if ws.transport is not None else None
        self.client_certificates[identity] = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        self.log.info("%s connected (%s)", identity, subprotocol)
        self._notify()
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    # OCPP-J §4.1.2: messages are UTF-8 JSON text.
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

    def _sign_requested(self, identity: str, csr: str, certificate_type: str | None) -> str:
        """SignCertificate: the configured answer; Accepted with a signer: CertificateSigned once answered."""
        status = self.sign_certificate_status
        signer = self.certificate_signer
        if status == "Accepted" and signer is not None:
            async def send() -> None:
                await asyncio.sleep(0)          # after our SignCertificate response has gone out
                payload: dict[str, Any] = {"certificateChain": signer(csr, certificate_type)}
                if certificate_type is not None:    # A02.FR.14: the type of the request
                    payload["certificateType"] = certificate_type
                try:
                    await self.call(identity, "CertificateSigned", payload)
                except (CallErrorReceived, TimeoutError, KeyError, ConnectionError) as exc:
                    self.log.warning("%s: CertificateSigned failed: %s", identity, exc)
            task = asyncio.get_running_loop().create_task(send())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return status

    def _violation(self, text: str) -> None:
        self.violations.append(text)
        self.log.error("OCPP violation: %s", text)
        self._notify()

    def _duplicate(self, text: str) -> None:
        self.duplicates.append(text)
        self.log.warning("%s", text)

    def _refuse(self, text: str) -> None:
        self.refused.append(text)
        self.log.warning("connection refused: %s", text)
        self._notify()

    def _call_ids_of(self, identity: str) -> set[str]:
        """CALL message ids seen from ``identity`` on all its 2.0.1 connections (OCPP-J 2.0.1 §4.1.4)."""
        return self._call_ids.setdefault(identity, set())

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

    # -- 1.6 transactions ---------------------------------------------------------------------------------------

    def _start_transaction(self, identity: str, payload: dict[str, Any], unique_id: str) -> int:
        """Allocate a transactionId, or return the earlier one for a repeated StartTransaction (at-least-once
        delivery: the station resends when our answer was lost; OCPP 1.6 §4.8 / §3.7)."""
        key = (identity, payload["connectorId"], payload["idTag"], payload["timestamp"], payload["meterStart"])
        existing = self._start_keys.get(key)
        if existing is not None:
            self._duplicate(
                f"{identity}: duplicate StartTransaction connectorId={key[1]} idTag={key[2]} timestamp={key[3]} "
                f"meterStart={key[4]} -> transactionId {existing} (message {unique_id})"
            )
            return existing
        transaction_id = next(self._tx_ids)
        self._start_keys[key] = transaction_id
        self.transactions[transaction_id] = TxRecord(transaction_id, identity, payload)
        return transaction_id

    def _check_signed(self, identity: str, action: str, payload: dict[str, Any]) -> None:
        """Record and verify the signed meter values of a message (a retried message adds nothing new)."""
        from secure_cp.eichrecht.ocmf import OcmfError, OcmfRecord
        from secure_cp.eichrecht.meterkeys import PublicKeyError
        from secure_cp.eichrecht.verify import verify_signature
        for context, text, key, error in _signed_in(payload):
            if any(v.identity == identity and v.ocmf == text and v.context == context and v.action == action
                   for v in self.signed_values if text is not None):
                continue
            verified: bool | None = None
            use = key or self.meter_public_keys.get(identity)
            if text is not None and error is None:
                try:
                    record = OcmfRecord.parse(text)
                    verified = verify_signature(record, use) if use else None
                except (OcmfError, PublicKeyError, ValueError) as exc:
                    verified, error = False, f"{type(exc).__name__}: {exc}"
            self.signed_values.append(SignedValue(identity, action, context, text, key, verified, error))

    def _stop_transaction(self, identity: str, payload: dict[str, Any], unique_id: str) -> None:
        transaction_id = payload["transactionId"]
        tx = self.transactions.get(transaction_id)
        if tx is None:
            self._violation(f"{identity}: StopTransaction for unknown transactionId {transaction_id}")
            return
        if tx.stop is not None:
            self._duplicate(
                f"{identity}: duplicate StopTransaction for transactionId {transaction_id} (message {unique_id})"
            )
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
            self._duplicate(
                f"{identity}: duplicate MeterValues for transactionId {transaction_id} (message {unique_id})"
            )
            return
        tx.meter_values.append(payload)

    # -- 2.0.1 TransactionEvent and NotifyReport ------------------------------------------------------------------

    def _transaction_event(self, identity: str, payload: dict[str, Any], unique_id: str) -> None:
        """Add a TransactionEvent to the ledger (OCPP 2.0.1 part 2, E §1.3 "Delivering transaction-related
        messages": retries make repeats and out-of-order arrival normal; seqNos tell what is missing)."""
        transaction_id = payload["transactionInfo"]["transactionId"]
        seq_no, event_type = payload["seqNo"], payload["eventType"]
        what = f"{identity}: TransactionEvent {event_type} transactionId {transaction_id} seqNo {seq_no}"
        tx = self.transactions201.get(transaction_id)
        if tx is None:
            tx = self.transactions201[transaction_id] = Tx201Record(transaction_id, identity)
        elif tx.identity != identity:
            # E01.FR.08 makes ids unique per station only; this ledger is keyed by transactionId alone.
            self._violation(f"{what}: transactionId already used by {tx.identity} (ledger is keyed by transactionId)")
            return
        earlier = next((event for event in tx.events if event["seqNo"] == seq_no), None)
        if earlier is not None:
            if earlier == payload:
                self._duplicate(f"{what}: duplicate (message {unique_id})")
            else:
                tx.conflicts.append(payload)
                self._violation(f"{what}: seqNo already used by a different {earlier['eventType']} event")
            return
        started, ended = tx.started, tx.ended_event
        problems: list[str] = []
        # Part 2 §3.80: Started is the first event of a transaction, Ended the last; by E §1.3.2.1 seqNo grows by
        # one per event, so no event may carry a seqNo below Started's or above Ended's.
        if event_type == "Started" and started is not None:
            problems.append(f"second Started (the first has seqNo {started['seqNo']})")
        if event_type == "Ended" and ended is not None:
            problems.append(f"second Ended (the first has seqNo {ended['seqNo']})")
        if event_type == "Started" and any(s < seq_no for s in tx.seq_nos):
            problems.append(f"Started after events with lower seqNos {sorted(s for s in tx.seq_nos if s < seq_no)}")
        if event_type == "Ended" and any(s > seq_no for s in tx.seq_nos):
            problems.append(f"Ended before events with higher seqNos {sorted(s for s in tx.seq_nos if s > seq_no)}")
        if started is not None and seq_no < started["seqNo"]:
            problems.append(f"seqNo below Started's ({started['seqNo']})")
        if ended is not None and seq_no > ended["seqNo"]:
            problems.append(f"seqNo above Ended's ({ended['seqNo']})")
        tx.events.append(payload)  # received and answered, so on the ledger even when out of order
        if problems:
            self._violation(f"{what}: {'; '.join(problems)}")

    def _notify_report(self, identity: str, payload: dict[str, Any], unique_id: str) -> None:
        """Collect one part of a NotifyReport (B07/B08): parts are numbered by seqNo from 0, the last one has
        tbc=false (part 2 §1.40.1: "Default value when omitted is false")."""
        request_id, seq_no = payload["requestId"], payload["seqNo"]
        is_final = not payload.get("tbc", False)
        what = f"{identity}: NotifyReport requestId {request_id} seqNo {seq_no}"
        report = self._report_parts.setdefault((identity, request_id), _Report(identity, request_id))
        earlier = report.parts.get(seq_no)
        if earlier is not None:
            if earlier == payload:
                self._duplicate(f"{what}: duplicate (message {unique_id})")
            else:
                self._violation(f"{what}: seqNo already used by a different part")
            return
        if report.final_seq_no is not None and (seq_no > report.final_seq_no or is_final):
            self._violation(f"{what}: after the final part (seqNo {report.final_seq_no}, tbc=false)")
            return
        report.parts[seq_no] = payload
        if is_final:
            report.final_seq_no = seq_no
        self.reports[request_id] = [
            item for (_, rid), part in self._report_parts.items() if rid == request_id for item in part.data()
        ]


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


def _sample_text(sample: dict[str, Any]) -> str:
    """``Energy.Active.Import.Register=1234Wh`` for a 1.6 SampledValue or a 2.0.1 SampledValueType."""
    measurand = sample.get("measurand", "Energy.Active.Import.Register")
    default_unit = "Wh" if measurand.startswith("Energy") else ""
    if "unitOfMeasure" in sample or not isinstance(sample.get("value"), str):  # 2.0.1: value is a number
        unit_of_measure = sample.get("unitOfMeasure", {})
        unit = unit_of_measure.get("unit", default_unit)
        multiplier = unit_of_measure.get("multiplier", 0)
        scale = f"e{multiplier}" if multiplier else ""
        return f"{measurand}={_short(sample.get('value'), 24)}{scale}{unit}"
    return f"{measurand}={_short(sample.get('value'), 24)}{sample.get('unit', default_unit)}"


def _samples(meter_values: list[dict[str, Any]]) -> list[str]:
    return [_sample_text(sample) for mv in meter_values[:1] for sample in mv.get("sampledValue", [])[:3]]


def _meter_summary(payload: dict[str, Any]) -> list[str]:
    if "evseId" in payload:  # 2.0.1 MeterValuesRequest
        parts = [f"evse={payload['evseId']}"]
    else:
        parts = [f"connector={payload.get('connectorId')}"]
        if "transactionId" in payload:
            parts.append(f"tx={payload['transactionId']}")
    return parts + _samples(payload.get("meterValue", []))


def _transaction_event_summary(payload: dict[str, Any]) -> list[str]:
    info = payload["transactionInfo"]
    parts = [str(payload.get("eventType")), f"tx={_short(info.get('transactionId'))}",
             f"seqNo={payload.get('seqNo')}", f"trigger={payload.get('triggerReason')}"]
    evse = payload.get("evse")
    if isinstance(evse, dict):
        parts.append(f"evse={evse.get('id')}" + (f"/{evse['connectorId']}" if "connectorId" in evse else ""))
    if isinstance(payload.get("idToken"), dict):
        parts.append(f"idToken={_short(payload['idToken'].get('idToken'))}")
    for label, key in (("state", "chargingState"), ("reason", "stoppedReason")):
        if key in info:
            parts.append(f"{label}={info[key]}")
    if payload.get("offline"):
        parts.append("offline")
    return parts + _samples(payload.get("meterValue", []))


def _summary(action: str, payload: dict[str, Any]) -> list[str]:
    """The ``label=value`` parts of one station CALL; 2.0.1 payloads are told apart by their fields."""
    if action == "MeterValues" and "meterValue" in payload:
        return _meter_summary(payload)
    if action == "TransactionEvent" and isinstance(payload.get("transactionInfo"), dict):
        return _transaction_event_summary(payload)
    if action == "BootNotification" and isinstance(payload.get("chargingStation"), dict):
        station = payload["chargingStation"]
        parts = [f"reason={payload.get('reason')}"]
        for label, key in (("vendor", "vendorName"), ("model", "model"), ("firmware", "firmwareVersion")):
            if key in station:
                parts.append(f"{label}={_short(station[key])}")
        return parts
    if action == "StatusNotification" and "connectorStatus" in payload:
        return [f"evse={payload.get('evseId')}", f"connector={payload.get('connectorId')}",
                f"status={payload['connectorStatus']}"]
    if action == "Authorize" and isinstance(payload.get("idToken"), dict):
        token = payload["idToken"]
        return [f"idToken={_short(token.get('idToken'))}", f"type={token.get('type')}"]
    if action == "NotifyReport" and "requestId" in payload:
        parts = [f"requestId={payload['requestId']}", f"seqNo={payload.get('seqNo')}",
                 f"items={len(payload.get('reportData', []))}"]
        return parts + (["tbc"] if payload.get("tbc") else [])
    if action in _SUMMARY_FIELDS:
        return [f"{label}={_short(payload[key])}" for label, key in _SUMMARY_FIELDS[action] if key in payload]
    return [f"{key}={_short(value)}" for key, value in payload.items()]


def format_record(r: Record, *, response: bool = False) -> str:
    """One line for a human, e.g. ``CP1 -> StartTransaction connector=1 idTag=TAG1 meterStart=0`` or
    ``CP1 -> TransactionEvent Started tx=T1 seqNo=0 trigger=CablePluggedIn evse=1/1 state=EVConnected``.

    With ``response`` the record is a station's answer to our CALL (from :attr:`Csms.responses`), shown as
    ``CP1 -> Reset.conf status=Accepted`` or ``CP1 -> Reset CALLERROR NotSupported ...``.
    """
    payload = r.payload
    if response:
        if set(payload) == {"errorCode", "errorDescription", "errorDetails"}:
            return f"{r.identity} -> {r.action} CALLERROR {payload['errorCode']} {_short(payload['errorDescription'])}"
        return " ".join([f"{r.identity} -> {r.action}.conf", *(f"{k}={_short(v)}" for k, v in payload.items())])
    return " ".join([f"{r.identity} -> {r.action}", *_summary(r.action, payload)])


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


async def _run(host: str, port: int, basic_auth: dict[str, bytes] | None, subprotocols: list[str] | None) -> None:
    csms = Csms(host, port, basic_auth=basic_auth, subprotocols=subprotocols)
    csms.listeners.append(lambda record: print(format_record(record), flush=True))
    csms.response_listeners.append(lambda record: print(format_record(record, response=True), flush=True))
    async with csms:
        print(f"CSMS ({', '.join(csms.subprotocols)}) listening on {csms.url}/<identity>", flush=True)
        await asyncio.Event().wait()  # until Ctrl-C


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m secure_cp.sim.csms", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--basic-auth", action="append", default=[], metavar="IDENTITY:PASSWORD",
                        help="require HTTP Basic auth (security profile 1/2); repeat per station")
    parser.add_argument("--subprotocol", action="append", choices=list(SESSION_CLASSES), dest="subprotocols",
                        help="accept this OCPP subprotocol; repeat in preference order (default: all, "
                             f"{', '.join(SESSION_CLASSES)})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every frame")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args.host, args.port, _parse_auth(args.basic_auth), args.subprotocols))


if __name__ == "__main__":
    main()
