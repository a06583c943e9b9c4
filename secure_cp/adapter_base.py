"""What the OCPP 1.6 and 2.0.1 adapters share: the runtime's hooks, the record of the CALL in flight, sending a
CALL and taking the CSMS's clock. Everything version-specific stays in v16/ and v201/."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from .engine import Notice, ResetNow, parse_rfc3339
from .rpc import SchemaError
from .securityevents import SecurityEvents, event_type_for

log = logging.getLogger("secure_cp.adapter")

SECURITY_EVENT_RETRY = 60.0   # s after a CALLERROR / timeout before the same security event is sent again


@dataclass
class Hooks:
    """What an adapter asks of the runtime (all optional)."""
    set_clock: Callable[[float], None] = lambda ts: None            # CSMS time from Boot/Heartbeat
    config_changed: Callable[[str, str], None] = lambda k, v: None  # e.g. WebSocketPingInterval, AuthorizationKey


@dataclass
class Inflight:
    """The one CALL on the line (OCPP-J allows one): what it was for, so its answer can be routed."""
    kind: str                 # e.g. "boot" | "heartbeat" | "status" | "volatile" | "call" | "outbox"
    action: str
    ref: Any = None           # outbox item, status effect, or a callback


class AdapterBase:
    """Sans-I/O adapter skeleton; subclasses set ``engine``, ``endpoint``, ``registry``, ``hooks``, ``_inflight``,
    ``last_sent_at``, ``online``, ``registration``, ``security`` (securityevents.SecurityEvents) and
    ``_security_retry_at``, implement ``poll`` and ``_queue_data_transfer``, and list how they turn each engine
    effect into messages in ``EFFECTS`` (effect type -> handler(adapter, effect, now))."""

    version: str
    security: SecurityEvents
    _security_retry_at: float = 0.0      # after a CALLERROR / timeout (the event stays queued)

    EFFECTS: dict[type, Callable] = {}
    COMMON_EFFECTS: dict[type, Callable] = {
        ResetNow: lambda self, e, now: setattr(self, "reset_requested", e.hard),
        Notice: lambda self, e, now: log.info("connector %s: %s", e.connector_id, e.text),
    }

    def _process_effects(self, now: float) -> None:
        for eff in self.engine.drain():
            self._effect(eff, now)

    def _effect(self, eff, now: float) -> None:
        handler = self.EFFECTS.get(type(eff)) or self.COMMON_EFFECTS.get(type(eff))
        if handler is not None:
            handler(self, eff, now)

    def data_transfer(self, vendor_id: str, message_id: str | None, data: str | None,
                      on_result: Callable[[dict | None], None]) -> None:
        """CP -> CS DataTransfer (1.6 §4.3, 2.0.1 P02): on_result gets the response payload, or None if it failed
        or the station is offline / not registered. Bad arguments raise SchemaError to the caller."""
        payload: dict[str, Any] = {"vendorId": vendor_id}
        if message_id is not None:
            payload["messageId"] = message_id
        if data is not None:
            payload["data"] = data
        self.registry.validate_request("DataTransfer", payload)
        if not self.online or self.registration != "accepted":
            on_result(None)
            return
        self._queue_data_transfer(payload, on_result)

    def _send(self, kind: str, action: str, payload: dict, ref: Any, now: float, *,
              validated: bool = False) -> str | None:
        """Start a CALL (None if the payload fails its schema: we never send an invalid frame). ``validated``:
        the payload passed the same schema check when it was queued by this process (see ``endpoint.send_call``)."""
        try:
            _, text = self.endpoint.send_call(action, payload, now, validated=validated)
        except SchemaError as exc:
            log.error("not sending invalid %s: %s", action, exc.description)
            return None
        self._inflight = Inflight(kind, action, ref)
        self.last_sent_at = now
        return text

    # ---- security events (2.0.1 A04, 1.6 whitepaper A04: the same use case, the same queue) --------------------
    def _next_security_event(self, now: float) -> str | None:
        """A04.FR.01/02: the oldest critical security event the CSMS has not confirmed, once registered (queued on
        disk, so one that happened offline or before a reboot goes out after the next BootNotification Accepted;
        2.0.1 TC_B_21 step 11, TC_G_18/19/21). Its type under this version's name (``event_type_for``)."""
        if now < self._security_retry_at or not self.security.has_pending():
            return None
        for event in self.security.pending(1):
            payload = {"type": event_type_for(self.version, event.type), "timestamp": event.timestamp}
            if event.tech_info:
                payload["techInfo"] = event.tech_info
            text = self._send("security", "SecurityEventNotification", payload, event.id, now)
            if text:
                return text
            self.security.delivered(event.id)   # fails its schema (cannot be sent, ever): only the log keeps it
        return None

    def _security_event_answered(self, inflight: Inflight, confirmed: bool, now: float) -> None:
        """The answer to a SecurityEventNotification: confirmed (A04.FR.03), it leaves the queue; a CALLERROR or
        timeout keeps it queued (A04.FR.02) and it is tried again after SECURITY_EVENT_RETRY, not in a loop. A
        dropped connection is neither: it stays queued and goes again after the reconnect."""
        if confirmed:
            self.security.delivered(inflight.ref)
        else:
            self._security_retry_at = now + SECURITY_EVENT_RETRY

    def _security_deadline(self) -> float | None:
        """When ``_next_security_event`` has something to send (for ``next_deadline``), None if nothing is queued."""
        return self._security_retry_at if self.security.has_pending() else None

    def flush_delivered(self) -> None:
        """Delete the delivered outbox items now (at shutdown; see delivery.OutboxQueue)."""
        self.queue.flush()

    def pending_messages(self) -> int:
        """Transaction messages still to deliver."""
        return self.queue.pending_count()

    def _sync_clock(self, current_time: str | None) -> None:
        if not current_time:
            return
        try:
            self.hooks.set_clock(parse_rfc3339(current_time))
        except ValueError:
            log.warning("CSMS sent an unusable currentTime %r", current_time)

    def tick(self, now: float) -> list[str]:
        """Timers of the engine, then of the adapter."""
        self.engine.tick(now)
        return self.poll(now)
