"""Security events: the station's rolling security log and the durable queue of critical events for the CSMS.

Version-neutral (OCPP 2.0.1 Part 2 A04 and the OCPP 1.6 Security Whitepaper edition 3 use case A04 share it):

* every security event, critical or not, is stored in the security log (A04.FR.04), which rolls: the oldest
  entries go once ``log_size`` is exceeded;
* a critical event (the "Critical" column of Part 2 Appendix 1, ``security_events.csv``) is also queued for a
  SecurityEventNotification (A04.FR.01) and stays queued, across a power cut or a reboot, until the CSMS has
  confirmed it (A04.FR.02: guaranteed delivery; A04.FR.03: the confirmation). An undelivered critical event is
  never rolled out of the log.

The protocol adapters only read ``pending()`` and call ``delivered()``; whoever detects an event (runtime, TLS
layer, firmware updater, tamper input) calls ``record()``. The TLS events (InvalidCsmsCertificate / 1.6
InvalidCentralSystemCertificate, InvalidTLSVersion, InvalidTLSCipherSuite) are recorded by the runtime when a handshake
fails (``Station._record_tls_failure``, classified by ``security.tls``). Both adapters send the same queue
(``AdapterBase._next_security_event``): 2.0.1 SecurityEventNotificationRequest, 1.6 SecurityEventNotification.req.
"""
from __future__ import annotations

from dataclasses import dataclass

from .store import Database

__all__ = ["EVENT_TYPES", "NAMES_16", "SecurityEvent", "SecurityEvents", "event_type_for", "is_critical"]

#: Part 2 Appendix 1 "Security Events" (Appendices CSV v1.4, security_events.csv): type -> critical.
EVENT_TYPES: dict[str, bool] = {
    "FirmwareUpdated": True,
    "FailedToAuthenticateAtCsms": False,
    "CsmsFailedToAuthenticate": False,
    "SettingSystemTime": True,              # changed more than ClockCtrlr.TimeAdjustmentReportingThreshold s
    "StartupOfTheDevice": True,
    "ResetOrReboot": True,
    "SecurityLogWasCleared": True,
    "ReconfigurationOfSecurityParameters": False,
    "MemoryExhaustion": True,
    "InvalidMessages": False,
    "AttemptedReplayAttacks": False,
    "TamperDetectionActivated": True,
    "InvalidFirmwareSignature": True,
    "InvalidFirmwareSigningCertificate": True,
    "InvalidCsmsCertificate": True,
    "InvalidChargingStationCertificate": True,
    "InvalidTLSVersion": True,
    "InvalidTLSCipherSuite": True,
    "MaintenanceLoginAccepted": True,
    "MaintenanceLoginFailed": True,
}
#: The events the 1.6 Security Whitepaper edition 3 (§8) names differently, 1.6 name -> 2.0.1 name. Both versions
#: share one queue, so an event recorded under one version's name is sent under the other's if the station connects
#: with the other version (``event_type_for``). Criticality: the whitepaper marks fewer events critical than
#: Appendix 1 (e.g. not the TLS / certificate ones); every whitepaper-critical event is critical in Appendix 1 too,
#: and "critical should be pushed" does not forbid pushing more, so this station applies Appendix 1 to both versions
#: (an InvalidCentralSystemCertificate reaches a 1.6 Central System, as InvalidCsmsCertificate reaches a 2.0.1 CSMS).
NAMES_16: dict[str, str] = {
    "FailedToAuthenticateAtCentralSystem": "FailedToAuthenticateAtCsms",
    "CentralSystemFailedToAuthenticate": "CsmsFailedToAuthenticate",
    "InvalidCentralSystemCertificate": "InvalidCsmsCertificate",
    "InvalidChargePointCertificate": "InvalidChargingStationCertificate",
}
_NAMES_201_TO_16 = {v201: v16 for v16, v201 in NAMES_16.items()}
TYPE_MAX = 50          # SecurityEventNotificationRequest.type: string(50)
TECH_INFO_MAX = 255    # SecurityEventNotificationRequest.techInfo: string(255)
LOG_SIZE = 1000        # entries kept in the rolling security log (undelivered critical ones are never dropped)


def is_critical(event_type: str) -> bool:
    """Critical per Appendix 1. A type not in the list (vendor-specific) is treated as critical: sending an event
    the CSMS did not need is cheaper than silently keeping one it did."""
    return EVENT_TYPES.get(NAMES_16.get(event_type, event_type), True)


def event_type_for(version: str, event_type: str) -> str:
    """The name of an event in a SecurityEventNotification of OCPP ``version`` ("1.6" or "2.0.1"); types both
    versions share, and vendor-specific ones, unchanged."""
    if version == "1.6":
        return _NAMES_201_TO_16.get(event_type, event_type)
    return NAMES_16.get(event_type, event_type)


@dataclass(frozen=True)
class SecurityEvent:
    id: int                   # position in the log; increases with every event, never reused
    type: str
    timestamp: str            # RFC 3339, the station's time when it happened
    tech_info: str | None
    critical: bool
    delivered: bool           # critical only: the CSMS confirmed it


class SecurityEvents:
    """The security log and the queue of critical events in the station's SQLite store (table ``security_log``).
    Every method commits before it returns, or with the caller's ``with db.tx():`` block."""

    def __init__(self, db: Database, *, log_size: int = LOG_SIZE) -> None:
        self.db = db
        self.log_size = log_size
        self._has_pending: bool | None = None    # cached answer of has_pending (None: ask the store)
        self._rollbacks = db.rollbacks           # a rollback may have taken back a recorded event

    def record(self, event_type: str, timestamp: str, tech_info: str | None = None, *,
               critical: bool | None = None) -> SecurityEvent:
        """Store an event (A04.FR.04); a critical one is queued for the CSMS too (A04.FR.01/02). ``critical``
        overrides the Appendix 1 flag (only for vendor-specific types). Raises ValueError on an empty or too long
        type; a long techInfo is cut to what the message allows."""
        if not event_type or len(event_type) > TYPE_MAX:
            raise ValueError(f"security event type must be 1..{TYPE_MAX} characters: {event_type!r}")
        crit = is_critical(event_type) if critical is None else critical
        info = tech_info[:TECH_INFO_MAX] if tech_info else None
        with self.db.tx() as conn:
            cur = conn.execute(
                "INSERT INTO security_log (type, timestamp, tech_info, critical, delivered) VALUES (?, ?, ?, ?, 0)",
                (event_type, timestamp, info, int(crit)))
            event_id = int(cur.lastrowid or 0)
            # rolling: drop the oldest beyond log_size, except critical events the CSMS has not confirmed yet
            conn.execute(
                "DELETE FROM security_log WHERE id <= ? AND NOT (critical = 1 AND delivered = 0)",
                (event_id - self.log_size,))
        if crit:
            self._has_pending = True
        return SecurityEvent(event_id, event_type, timestamp, info, crit, False)

    def has_pending(self) -> bool:
        """Whether a critical event waits for the CSMS; answered from memory (asked on every frame and timer)."""
        if self._has_pending is None or self._rollbacks != self.db.rollbacks:
            self._rollbacks = self.db.rollbacks
            self._has_pending = bool(self.pending(1))
        return self._has_pending

    def pending(self, limit: int = 1) -> list[SecurityEvent]:
        """Critical events not confirmed by the CSMS, oldest first (they are sent in the order they happened)."""
        rows = self.db.query(
            "SELECT * FROM security_log WHERE critical = 1 AND delivered = 0 ORDER BY id LIMIT ?", (limit,))
        return [_event(r) for r in rows]

    def delivered(self, event_id: int) -> None:
        """The CSMS confirmed the notification (A04.FR.03): it leaves the queue and stays in the log."""
        self.db.write("UPDATE security_log SET delivered = 1 WHERE id = ?", (event_id,))
        self._has_pending = None

    def log(self, limit: int | None = None) -> list[SecurityEvent]:
        """The security log, oldest first (the newest ``limit`` entries if given): what a GetLog SecurityLog
        upload (N01) will contain."""
        if limit is None:
            rows = self.db.query("SELECT * FROM security_log ORDER BY id")
        else:
            rows = self.db.query(
                "SELECT * FROM (SELECT * FROM security_log ORDER BY id DESC LIMIT ?) ORDER BY id", (limit,))
        return [_event(r) for r in rows]


def _event(row) -> SecurityEvent:
    return SecurityEvent(row["id"], row["type"], row["timestamp"], row["tech_info"], bool(row["critical"]),
                         bool(row["delivered"]))
