"""What the OCPP 1.6 and 2.0.1 adapters share: the runtime's hooks, the record of the CALL in flight, sending a
CALL and taking the CSMS's clock. Everything version-specific stays in v16/ and v201/."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from .eichrecht.ocpp import CLOCK, EVENT_TOO_LONG, PERIODIC, RecordTooLong, SignedPolicy, signed_records
from .engine import Notice, ResetNow, parse_rfc3339, rfc3339
from .rpc import ErrorKind, ErrorResponse, IncomingCall, OcppError, Reply, Response, SchemaError, Timeout
from .securityevents import SecurityEvents, event_type_for
from .store import StoreError

log = logging.getLogger("secure_cp.adapter")

#: s, the default of 2.0.1 ClockCtrlr.TimeAdjustmentReportingThreshold; used by 1.6 (see _time_report_threshold).
TIME_REPORT_THRESHOLD = 20.0

SECURITY_EVENT_RETRY = 60.0   # s after a CALLERROR / timeout before the same security event is sent again
#: s before the next BootNotification when the CSMS gave interval 0 with Pending / Rejected (2.0.1 B02.FR.07,
#: B03.FR.05), or the last one failed
DEFAULT_BOOT_RETRY = 60


@dataclass
class Hooks:
    """What an adapter asks of the runtime (all optional)."""
    set_clock: Callable[[float], object] = lambda ts: None          # CSMS time from Boot/Heartbeat
    config_changed: Callable[[str, str], None] = lambda k, v: None  # e.g. WebSocketPingInterval, AuthorizationKey
    #: A02.FR.08: a new station certificate is valid: use it for the next connection (reconnect under profile 3)
    station_certificate_changed: Callable[[], None] = lambda: None
    #: M06.FR.07: a new V2G certificate is valid: refresh the cached OCSP status of it and of its sub-CAs
    v2g_certificate_changed: Callable[[], None] = lambda: None
    #: Slow, blocking work (a key generation in a TPM): ``run_blocking(work, done)`` runs ``work()`` and then
    #: ``done(result_or_exception, now)`` as an event of the station (its texts are sent). The runtime runs ``work``
    #: in a worker thread (asyncio.to_thread); this default, for adapters driven without a runtime, runs it at once
    #: and calls ``done(result, None)`` (None: still inside the caller's event, nothing to send separately).
    run_blocking: Callable[[Callable[[], Any], Callable[[Any, float | None], list]], None] = \
        lambda work, done: _run_now(work, done)


def _run_now(work: Callable[[], Any], done: Callable[[Any, float | None], list]) -> None:
    try:
        result = work()
    except Exception as exc:  # noqa: BLE001 - handed to ``done`` like the runtime does
        result = exc
    done(result, None)


class StoreFailedInCall(StoreError):
    """The store refused a write while a CSMS request was handled (a full disk, an I/O error). The runtime rolls the
    event back and reloads the station from the store (runtime._event), as for any refused write; ``reply`` is the
    CALLERROR that tells the CSMS at once that nothing of its request was done, sent before that."""

    def __init__(self, cause: StoreError, reply: str) -> None:
        super().__init__(str(cause))
        self.reply = reply


@dataclass
class Inflight:
    """The one CALL on the line (OCPP-J allows one): what it was for, so its answer can be routed."""
    kind: str                 # e.g. "boot" | "heartbeat" | "status" | "volatile" | "call" | "outbox"
    action: str
    ref: Any = None           # outbox item, status effect, or a callback


class AdapterBase:
    """Sans-I/O adapter skeleton; subclasses set ``engine``, ``endpoint``, ``registry``, ``hooks``, ``db``,
    ``queue`` (delivery.OutboxQueue), ``_inflight``, ``_after_reply`` (a list), ``last_sent_at``, ``online``,
    ``registration``, ``next_boot_at``, ``security`` (securityevents.SecurityEvents) and ``_security_retry_at``;
    implement ``_next_call``, ``_on_boot``, ``_on_tx_delivered``, ``_tx_failed``, ``_queue_data_transfer`` and the
    ``_cs_<Action>`` handlers; and list how they turn each engine effect into messages in ``EFFECTS`` (effect
    type -> handler(adapter, effect, now)). The hooks ``_note_received``, ``_call_while_rejected``,
    ``_on_own_response``, ``_on_own_failure`` and ``_before_next_call`` are where the versions differ in the
    shared paths below."""

    version: str
    security: SecurityEvents
    _security_retry_at: float = 0.0      # after a CALLERROR / timeout (the event stays queued)

    EFFECTS: dict[type, Callable] = {}
    COMMON_EFFECTS: dict[type, Callable] = {
        ResetNow: lambda self, e, now: setattr(self, "reset_requested", e.hard),
        Notice: lambda self, e, now: log.info("connector %s: %s", e.connector_id, e.text),
    }

    #: 1.6 §4.2: while the registration is Rejected the Charge Point does not respond at all, not even to a
    #: malformed message (2.0.1 answers: B03.FR.08)
    SILENT_WHILE_REJECTED = False

    # ---- input from the CSMS ----------------------------------------------------------------------------------
    def received(self, text: str, now: float) -> list[str]:
        """One message from the CSMS; returns the texts to send: the reply, then the next CALL if the line is free."""
        self._now = now
        self._note_received(text)
        out: list[str] = []
        for ev in self.endpoint.receive(text, now):
            if isinstance(ev, Response):       # the frequent one
                self._on_response(ev.payload, now)
            elif isinstance(ev, IncomingCall):
                reply = self._handle_call(ev, now)
                after, self._after_reply = self._after_reply, []
                try:
                    for fn in after:
                        self._run_after_reply(fn)
                except StoreError as exc:   # the event is rolled back: the handler's answer no longer holds
                    raise self._store_failed(ev, exc) from exc
                if reply is not None:
                    out.append(reply)
            elif isinstance(ev, ErrorResponse):
                self._on_failure(f"{ev.code}: {ev.description}", now)
            elif isinstance(ev, Reply):
                self._invalid_message(ev, now)
                if not (self.SILENT_WHILE_REJECTED and self.registration == "rejected"):
                    out.append(ev.text)
        self._process_effects(now)
        out.extend(self.poll(now))
        return out

    def _note_received(self, text: str) -> None:
        """Hook: a message arrived (2.0.1 notes its size for the BytesPerMessage checks)."""

    def _handle_call(self, call: IncomingCall, now: float) -> str | None:
        """The reply to a CALL from the CSMS: its ``_cs_<Action>`` handler's payload, or the CALLERROR for it."""
        if self.registration == "rejected":
            return self._call_while_rejected(call)
        handler = getattr(self, "_cs_" + call.action, None)
        if handler is None:
            return self.endpoint.reply_error(call, ErrorKind.NOT_SUPPORTED, f"{call.action} is not supported")
        try:
            with self.db.tx():   # a SAVEPOINT: a handler that fails leaves the store as it was
                payload = handler(call.payload, now)
        except OcppError as exc:
            self._after_reply.clear()
            return self.endpoint.reply_exception(call, exc)
        except StoreError as exc:
            raise self._store_failed(call, exc) from exc
        except Exception as exc:  # a bug in one handler must not take the station down or corrupt state
            log.exception("handling %s failed", call.action)
            self._after_reply.clear()
            return self.endpoint.reply_error(call, ErrorKind.INTERNAL_ERROR, f"{type(exc).__name__}")
        return self.endpoint.reply(call, payload)

    def _store_failed(self, call: IncomingCall, exc: StoreError) -> StoreFailedInCall:
        """OCPP-J InternalError ("not able to process the requested Action successfully") for a request whose
        write the store refused; the runtime rolls the whole event back."""
        return StoreFailedInCall(exc, self.endpoint.reply_error(
            call, ErrorKind.INTERNAL_ERROR,
            "the station's storage refused the write (full or failing): nothing of this request was done"))

    def _call_while_rejected(self, call: IncomingCall) -> str | None:
        """The answer to a CALL while the CSMS rejects the registration: 2.0.1 B03.FR.08 (SecurityError), 1.6 §4.2
        (none: the 1.6 adapter overrides this)."""
        return self.endpoint.reply_error(call, ErrorKind.SECURITY_ERROR,
                                         "the CSMS rejected this station's BootNotification")

    def _run_after_reply(self, fn: Callable[[], None]) -> None:
        """What a handler left for after its reply (a reset, a trigger, a changed setting taking effect)."""
        try:
            fn()
        except StoreError:
            raise
        except Exception:  # the reply is out; a failing follow-up must not take the station down
            log.exception("follow-up of a CSMS request failed")

    # ---- the CSMS's answer to our CALL (OCPP-J: one on the line) ----------------------------------------------
    def _on_response(self, payload: dict, now: float) -> None:
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return
        kind = inflight.kind
        if kind == "outbox":
            self._on_tx_delivered(inflight.ref, payload, now)
        elif kind == "boot":
            self._on_boot(payload, now)
        elif kind == "heartbeat":
            self._sync_clock(payload.get("currentTime"))
        elif kind == "security":   # 2.0.1 A04.FR.03, 1.6 whitepaper A04.FR.03: the CSMS confirmed it
            self._security_event_answered(inflight, True, now)
        else:
            self._on_own_response(inflight, payload, now)

    def _on_own_response(self, inflight: Inflight, payload: dict, now: float) -> None:
        """Hook: the answer to a CALL of a kind only this version sends (statuses, queued calls)."""

    def _on_failure(self, error: str, now: float) -> None:
        """A CALLERROR or timeout from a connected CSMS: this, and only this, burns transaction attempts (2.0.1 E13,
        1.6 TransactionMessageAttempts)."""
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return
        log.warning("%s failed: %s", inflight.action, error)
        kind = inflight.kind
        if kind == "outbox":
            self._tx_failed(inflight.ref, error, now)
        elif kind == "boot":
            self.next_boot_at = now + DEFAULT_BOOT_RETRY
        elif kind == "security":   # A04.FR.02: kept until confirmed; tried again later, not in a loop
            self._security_event_answered(inflight, False, now)
        else:
            self._on_own_failure(inflight, now)

    def _on_own_failure(self, inflight: Inflight, now: float) -> None:
        """Hook: a CALL of a kind only this version sends failed."""

    def _rejected_or_pending(self, status: str, interval: int, now: float) -> None:
        """BootNotification Pending / Rejected: the next one after ``interval`` (2.0.1 B02.FR.07 / B03.FR.05)."""
        self.registration = status.lower()
        self.next_boot_at = now + (interval if interval > 0 else DEFAULT_BOOT_RETRY)

    # ---- sending ----------------------------------------------------------------------------------------------
    def poll(self, now: float) -> list[str]:
        """Timers and the next CALL to send, if the line is free."""
        self._now = now
        self.queue.poll(now)
        if isinstance(self.endpoint.poll(now), Timeout):
            self._on_failure("no response (timeout)", now)
        self._process_effects(now)
        self._before_next_call(now)
        if not self.online or self.endpoint.busy:
            return []
        if self.registration == "accepted":
            self._poll_signing(now)
        text = self._next_call(now)
        return [text] if text else []

    def _before_next_call(self, now: float) -> None:
        """Hook: work due before the next CALL is chosen, online or not (2.0.1: OnIdle resets)."""

    def _process_effects(self, now: float) -> None:
        engine = self.engine
        if engine.effects:            # mostly empty (asked several times per frame): no drain, no new list
            for eff in engine.drain():
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
              validated: bool = False, payload_text: str | None = None) -> str | None:
        """Start a CALL (None if the payload fails its schema: we never send an invalid frame). ``validated``:
        the payload passed the same schema check when it was queued by this process; ``payload_text``: the
        payload's stored JSON text (see ``endpoint.send_call``)."""
        try:
            _, text = self.endpoint.send_call(action, payload, now, validated=validated, payload_text=payload_text)
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

    # ---- signed meter values (Eichrecht, issue #5; OCA note "Signed Meter Values in OCPP") ---------------------
    def signed_policy(self) -> SignedPolicy:
        """The note's configuration matrix (Table 20) from the device model both versions share: 1.6
        SampledDataSignReadings / AlignedDataSignReadings / SampledDataSignStartedReadings /
        PublicKeyWithSignedMeterValue are the 2.0.1 SampledDataCtrlr / AlignedDataCtrlr / OCPPCommCtrlr variables."""
        model = self.signed_model

        def flag(component: str, variable: str) -> bool:
            return (model.get(component, variable) or "false").lower() == "true"
        sampled, aligned = flag("SampledDataCtrlr", "SignReadings"), flag("AlignedDataCtrlr", "SignReadings")
        updated = {PERIODIC} if sampled and flag("SampledDataCtrlr", "SignUpdatedReadings") else set()
        if aligned and flag("AlignedDataCtrlr", "SignUpdatedReadings"):
            updated.add(CLOCK)
        return SignedPolicy(sign_readings=sampled or aligned,
                            sign_started=sampled and flag("SampledDataCtrlr", "SignStartedReadings"),
                            public_key=model.get("OCPPCommCtrlr", "PublicKeyWithSignedMeterValue") or "Never",
                            updated=frozenset(updated))

    @property
    def signed_model(self):
        """The device model the signed-value variables live in (2.0.1: ``model``; 1.6: the one under Config16)."""
        return self.model   # type: ignore[attr-defined]

    def _signed_items(self, tx, contexts: tuple[str, ...], policy: SignedPolicy, build: Callable, now: float) -> list:
        """``build(raw, context, public_key_der, with_key, record)`` for each signed record of ``tx`` in ``contexts``
        (in that order). A record too long for signedMeterData is left out, never shortened, and recorded as a
        security event; the record stays in the legal log. OncePerTransaction: the first value sent carries the
        key (remembered on the record, in the caller's store transaction)."""
        records = signed_records(tx)
        out = []
        for context in contexts:
            record = records.get(context)
            item = self._signed_item(tx, context, record, policy, build, now) if record else None
            if item is not None:
                out.append(item)
        return out

    def _signed_item(self, tx, context: str, record: dict, policy: SignedPolicy, build: Callable, now: float):
        """``build(...)`` for one signed record ({"raw", "t", "key"}) of ``tx`` (None: no record, or too long: left
        out and recorded as a security event). Sets ``key_sent`` when this value carries the public key."""
        if not record.get("raw"):
            return None
        der = bytes.fromhex(record["key"]) if record.get("key") else None
        with_key = policy.key_with(not tx.extra.get("key_sent"))
        try:
            item = build(record["raw"], context, der, with_key, record)
        except RecordTooLong as exc:
            log.error("transaction %s: %s signed record not sent: %s", tx.tx_key, context, exc)
            self.security.record(EVENT_TOO_LONG, rfc3339(now), f"{tx.tx_key} {context}: {exc}", critical=False)
            return None
        if with_key and der:
            tx.extra["key_sent"] = True
            self.transactions.update(tx.tx_key, extra=tx.extra)   # type: ignore[attr-defined]
        return item

    # ---- station certificate signing (2.0.1 A02/A03, 1.6 whitepaper A02/A03; security.certsigning) -------------
    signing = None            # security.certsigning.CertSigning, or None: no SignCertificate / CertificateSigned

    def _queue_sign_certificate(self, cert_type: str, csr: str) -> None:
        """Queue SignCertificate for ``csr`` (version-specific payload and queue); its answer goes to
        ``_sign_certificate_answered``."""
        raise NotImplementedError

    def _sign_retry_policy(self) -> tuple[float, int]:
        """(CertSigningWaitMinimum s, CertSigningRepeatTimes) of this version (A02.FR.17-19)."""
        return 0.0, 0

    def _start_signing(self, cert_type: str, now: float, *, after_reply: bool = False) -> bool:
        """A02.FR.02/03: a new key pair and CSR, sent as SignCertificate (``after_reply``: once the response to the
        CALL being handled is out, A02.FR.02 "after sending a TriggerMessageResponse"). False when no CSR can be
        made (no OrganizationName / CpoName): a trigger is answered Rejected. The key generation runs off the event
        loop (Hooks.run_blocking, DESIGN.md rule 7); its result comes back as an event (``_csr_generated``)."""
        from .security.certsigning import CertSigningError
        try:
            job = self.signing.prepare(cert_type, now)
        except CertSigningError as exc:
            log.error("no CSR for a %s: %s", cert_type, exc)
            return False
        signing = self.signing
        in_handler = [True]     # the default hook completes at once, inside the handler of the trigger

        def done(result, when: float | None) -> list:
            return self._csr_generated(signing, job, result, when, after_reply and in_handler[0])
        self.hooks.run_blocking(lambda: signing.generate(job), done)
        in_handler[0] = False
        return True

    def _csr_generated(self, signing, job, result, now: float | None, after_reply: bool) -> list:
        """The key pair and CSR of ``job`` are made (``result``: the CSR PEM) or failed (an exception, logged: a
        backend failure; the trigger was answered already). The CSR becomes the pending request and goes out as
        SignCertificate; returns what can be sent now."""
        if isinstance(result, BaseException):
            log.error("no CSR for a %s: %s", job.cert_type, result)
            return []
        signing.finish(job, result)
        if after_reply:
            self._after_reply.append(lambda: self._queue_sign_certificate(job.cert_type, result))
            return []
        self._queue_sign_certificate(job.cert_type, result)
        return self.poll(now) if now is not None else []   # None: inside a poll already (the default hook)

    def _sign_certificate_answered(self, cert_type: str, res: dict | None) -> None:
        wait, repeat = self._sign_retry_policy()
        self.signing.sent(cert_type, res.get("status") if res else None, self._signing_now(), wait_minimum=wait,
                          repeat_times=repeat)

    def _signing_now(self) -> float:
        return getattr(self, "_now", 0.0) or self.last_sent_at

    def _certificate_signed(self, chain: str, cert_type: str, now: float) -> dict:
        """CertificateSigned: Accepted after the checks of certsigning.install, else Rejected (A02.FR.06/07/16); a
        certificate valid now is used from the next connection, which follows the response (A02.FR.08)."""
        result = self.signing.install(chain, cert_type, now)
        if result.switch_now and cert_type == "ChargingStationCertificate":
            self._after_reply.append(self.hooks.station_certificate_changed)
        elif result.switch_now and cert_type == "V2GCertificate":
            self._after_reply.append(self.hooks.v2g_certificate_changed)
        return {"status": result.status}

    def _poll_signing(self, now: float) -> None:
        """Online and registered: resend what is due (A02.FR.17/18), switch to a certificate that became valid
        (A02.FR.08), and renew a station certificate near its expiry (A03.FR.02)."""
        signing = self.signing
        if signing is None:
            return
        resend_or_switch = signing.deadline()    # before it, due() and switch_due() have nothing (asked every frame)
        if resend_or_switch is not None and resend_or_switch <= now:
            for cert_type, csr in signing.due(now):
                log.info("no CertificateSigned yet: SignCertificate for the %s again", cert_type)
                self._queue_sign_certificate(cert_type, csr)
            if signing.switch_due(now):
                self.hooks.station_certificate_changed()
        renew = signing.renewal_at(now)
        if renew is not None and renew <= now:
            log.info("station certificate expires within %d days: renewing it (A03)",
                     self.signing.renew_before // 86400)
            self.signing.renewal_started(now)
            self._start_signing("ChargingStationCertificate", now)

    def _signing_deadline(self) -> float | None:
        """When ``_poll_signing`` has work (for ``next_deadline`` while registered); None: nothing waits."""
        if self.signing is None:
            return None
        times = [t for t in (self.signing.deadline(), self.signing.renewal_at(self._signing_now())) if t is not None]
        return min(times) if times else None

    def flush_delivered(self) -> None:
        """Delete the delivered outbox items now (at shutdown; see delivery.OutboxQueue)."""
        self.queue.flush()

    def pending_messages(self) -> int:
        """Transaction messages still to deliver."""
        return self.queue.pending_count()

    def clock_moved(self, delta: float) -> None:
        """The station clock was corrected by ``delta`` s (from a currentTime): times measured on the old clock
        move with it, so the CALL in flight keeps its timeout and the heartbeat its interval (a clock set hours
        back must not silence the heartbeat, one set forward must not time out the CALLs sent at boot)."""
        self.endpoint.clock_moved(delta)
        if self.last_sent_at:
            self.last_sent_at += delta

    def _sync_clock(self, current_time: str | None) -> None:
        """Take the CSMS's time (BootNotification / Heartbeat currentTime). A change of more than
        ``_time_report_threshold()`` seconds is the critical security event SettingSystemTime (2.0.1 Appendix 1,
        1.6 whitepaper §8), stamped with the new time; ``self._now`` is the station's time before the change."""
        if not current_time:
            return
        try:
            new = parse_rfc3339(current_time)
        except ValueError:
            log.warning("CSMS sent an unusable currentTime %r", current_time)
            return
        delta = new - getattr(self, "_now", new)
        threshold = self._time_report_threshold()
        if threshold > 0 and abs(delta) > threshold:
            self.security.record("SettingSystemTime", rfc3339(new), f"clock set by the CSMS by {delta:+.0f} s")
        self.hooks.set_clock(new)

    def _invalid_message(self, reply, now: float) -> None:
        """A received message was no valid OCPP message (``rpc.Reply.invalid``): the non-critical security event
        InvalidMessages (2.0.1 Appendix 1, 1.6 whitepaper §8), kept in the security log, not pushed."""
        if reply.invalid:
            self.security.record("InvalidMessages", rfc3339(now), reply.invalid)

    def _time_report_threshold(self) -> float:
        """Seconds a clock change must exceed to be a SettingSystemTime event. 1.6 has no configuration key for it
        (the whitepaper says only "the system time was changed"): the 2.0.1 default of ClockCtrlr.
        TimeAdjustmentReportingThreshold, so the ordinary drift corrections of every Heartbeat are not events."""
        return TIME_REPORT_THRESHOLD

    def tick(self, now: float) -> list[str]:
        """Timers of the engine, then of the adapter."""
        self.engine.tick(now)
        return self.poll(now)
