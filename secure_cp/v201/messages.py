"""Engine values <-> OCPP 2.0.1 payloads (pure functions and tables, no state).

Every payload built here is meant to pass the official 2.0.1 schema; the adapter still validates before it queues
or sends anything, so a bug here is logged instead of reaching the CSMS.
"""
from __future__ import annotations

import re
from typing import Any

from ..devicemodel.v201 import MEASURANDS_201
from ..engine.model import Sample, Status, StopReason, rfc3339

#: Engine status -> ConnectorStatusEnumType (Part 2 §3.23). 2.0.1 reports only whether the connector is in use;
#: the details (Charging, SuspendedEV, ...) travel as TransactionEvent chargingState.
CONNECTOR_STATUS = {
    Status.AVAILABLE: "Available",
    Status.PREPARING: "Occupied",
    Status.CHARGING: "Occupied",
    Status.SUSPENDED_EV: "Occupied",
    Status.SUSPENDED_EVSE: "Occupied",
    Status.FINISHING: "Occupied",
    Status.RESERVED: "Reserved",
    Status.UNAVAILABLE: "Unavailable",
    Status.FAULTED: "Faulted",
}

#: Engine status of a connector with a running transaction -> ChargingStateEnumType (Part 2 §3.16).
CHARGING_STATE = {
    Status.CHARGING: "Charging",
    Status.SUSPENDED_EV: "SuspendedEV",
    Status.SUSPENDED_EVSE: "SuspendedEVSE",
    Status.PREPARING: "EVConnected",
    Status.FINISHING: "EVConnected",
}

#: The engine's (1.6-style) stop reason -> (TriggerReasonEnumType, ReasonEnumType) of the Ended event (E06/E07).
#: ReasonEnumType has no UnlockCommand: the trigger says it, the reason is Other. Power loss and reboot are found at
#: boot, when the transaction could not end normally: AbnormalCondition (E06.FR.16).
STOP_REASONS: dict[StopReason, tuple[str, str]] = {
    StopReason.LOCAL: ("StopAuthorized", "Local"),                       # E07.FR.02 / E07.FR.05
    StopReason.REMOTE: ("RemoteStop", "Remote"),                         # F03.FR.03
    StopReason.EV_DISCONNECTED: ("EVCommunicationLost", "EVDisconnected"),  # E06.FR.02, E09
    StopReason.POWER_LOSS: ("AbnormalCondition", "PowerLoss"),
    StopReason.REBOOT: ("AbnormalCondition", "Reboot"),
    StopReason.HARD_RESET: ("ResetCommand", "ImmediateReset"),           # B12.FR.04
    StopReason.SOFT_RESET: ("ResetCommand", "ImmediateReset"),
    StopReason.UNLOCK_COMMAND: ("UnlockCommand", "Other"),
    StopReason.DE_AUTHORIZED: ("Deauthorized", "DeAuthorized"),          # E05.FR.10
    StopReason.EMERGENCY_STOP: ("AbnormalCondition", "EmergencyStop"),
    StopReason.OTHER: ("AbnormalCondition", "Other"),                    # E06.FR.16 (a fault ended it)
    StopReason.TIMEOUT: ("EVConnectTimeout", "Timeout"),                # E03: no cable within EVConnectionTimeOut
}

#: Engine sample context -> TriggerReasonEnumType of the Updated event carrying it (J02).
METER_TRIGGERS = {"Sample.Periodic": "MeterValuePeriodic", "Sample.Clock": "MeterValueClock", "Trigger": "Trigger"}

#: AuthorizationStatusEnumType (Part 2 §3.3) -> the 1.6 IdTagInfo status the engine understands.
AUTH_STATUS_16 = {"Accepted": "Accepted", "Blocked": "Blocked", "Expired": "Expired", "ConcurrentTx": "ConcurrentTx"}

_HEX_UID = re.compile(r"(?:[0-9A-Fa-f]{2}){4,10}")


#: IdTokenEnumType values whose IdTokenInfo never goes into the Authorization Cache: NoAuthorization (C02.FR.03) and
#: Central, an identifier the CSMS made up, e.g. for one remote start (C03.FR.02 / C05.FR.02, C05 remark: "pointless
#: to either cache or authorize these tokens").
NOT_CACHED_TYPES = frozenset({"NoAuthorization", "Central"})


def cacheable(token_type: str) -> bool:
    """Whether the IdTokenInfo of an idToken of this type may be stored in the Authorization Cache."""
    return token_type not in NOT_CACHED_TYPES


def token_type_guess(id_tag: str) -> str:
    """IdTokenEnumType for an identifier whose type nobody told us, i.e. one read at this station (a type the CSMS
    gave, in RequestStartTransaction, is remembered instead): a card UID (4..10 bytes as hex digits, Part 2 C §1.1
    note) is ISO14443, anything else Local. Never Central: that type means the CSMS generated the identifier (Part 2
    §3.43), and its IdTokenInfo would then not be cached (C03.FR.02)."""
    return "ISO14443" if _HEX_UID.fullmatch(id_tag) else "Local"


def id_token(id_tag: str, token_type: str) -> dict:
    return {"idToken": id_tag, "type": token_type}


def auth_info_16(info: dict) -> dict:
    """IdTokenInfoType -> the 1.6-style idTagInfo the engine and the authorization cache work with. Statuses 1.6
    does not know (NoCredit, NotAllowedTypeEVSE, NotAtThisLocation, NotAtThisTime, Unknown) become Invalid: not
    valid, which is all the engine needs (C01 failure postcondition). personalMessage, language1/2 and
    chargingPriority are dropped: this station has no display (C01.FR.08-13 apply to stations that show
    messages)."""
    out: dict[str, Any] = {"status": AUTH_STATUS_16.get(info.get("status"), "Invalid")}
    if info.get("cacheExpiryDateTime"):
        out["expiryDate"] = info["cacheExpiryDateTime"]
    group = info.get("groupIdToken")
    if isinstance(group, dict) and group.get("idToken"):
        out["parentIdTag"] = group["idToken"]
    if info.get("evseId"):   # C01.FR.20/21: the only EVSEs the identifier may charge at (kept in cache and list)
        out["evseId"] = [int(e) for e in info["evseId"]]
    return out


_MEASURANDS_201 = frozenset(MEASURANDS_201)


def sampled_values(sample: Sample, measurands: list[str] | None = None, context: str | None = None) -> list[dict]:
    """SampledValueType list of a sample: only 2.0.1 measurands (a 1.6-only one, e.g. Temperature, is left out),
    and only ``measurands`` when given; ``context`` (when not empty) instead of the sample's."""
    context = context or sample.context
    wanted = _MEASURANDS_201 if measurands is None else _MEASURANDS_201.intersection(measurands)
    return [{"value": value, "context": context, "measurand": measurand, "unitOfMeasure": {"unit": unit}} if unit
            else {"value": value, "context": context, "measurand": measurand}
            for measurand, value, unit in sample.values if measurand in wanted]


def meter_value(sample: Sample, measurands: list[str] | None = None, context: str | None = None) -> dict | None:
    """MeterValueType of a sample (None when nothing of it can be sent); ``context`` overrides the sample's."""
    values = sampled_values(sample, measurands, context)
    if not values:
        return None
    return {"timestamp": rfc3339(sample.timestamp), "sampledValue": values}


def boot_notification(station_info: dict, reason: str) -> dict:
    """BootNotificationRequest (B01.FR.01, B01.FR.09) from the runtime's station_info."""
    cs: dict[str, Any] = {"model": station_info["model"], "vendorName": station_info["vendor"]}
    if station_info.get("serial"):
        cs["serialNumber"] = station_info["serial"]
    if station_info.get("firmware_version"):
        cs["firmwareVersion"] = station_info["firmware_version"]
    return {"chargingStation": cs, "reason": reason}


def status_notification(evse_id: int, connector_id: int, status: str, timestamp: float) -> dict:
    return {"timestamp": rfc3339(timestamp), "connectorStatus": status, "evseId": evse_id,
            "connectorId": connector_id}


def transaction_event(event_type: str, timestamp: str, trigger: str, tx_key: str, *, offline: bool,
                      charging_state: str | None = None, stopped_reason: str | None = None,
                      remote_start_id: int | None = None, evse: tuple[int, int] | None = None,
                      token: dict | None = None, meter_values: list[dict] | None = None) -> dict:
    """TransactionEventRequest without seqNo (given when it is queued). transactionId is the engine's tx_key: made
    by the station, unique for its lifetime (E01.FR.08, a UUID as Part 2 E §1.2 recommends)."""
    info: dict[str, Any] = {"transactionId": tx_key}
    if charging_state:
        info["chargingState"] = charging_state
    if stopped_reason:
        info["stoppedReason"] = stopped_reason
    if remote_start_id is not None:
        info["remoteStartId"] = remote_start_id
    p: dict[str, Any] = {"eventType": event_type, "timestamp": timestamp, "triggerReason": trigger, "seqNo": 0,
                         "transactionInfo": info}
    if offline:
        p["offline"] = True
    if evse is not None:
        p["evse"] = {"id": evse[0], "connectorId": evse[1]}
    if token is not None:
        p["idToken"] = token
    if meter_values:
        p["meterValue"] = meter_values
    return p


#: NotifyCustomerInformationRequest.data: string[0..512] (Part 2 §1.34.1).
CUSTOMER_DATA_MAX = 512


def customer_information(request_id: int, lines: list[str], generated_at: str,
                         max_chars: int = CUSTOMER_DATA_MAX) -> list[dict]:
    """NotifyCustomerInformationRequest parts for a report of ``lines`` (N09.FR.05): whole lines packed into parts
    of at most ``max_chars`` characters (a longer line is cut across parts), seqNo from 0, tbc on every part but the
    last. No lines: one part with empty data, "no data found" (N09.FR.06 / N10.FR.04)."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        joined = f"{current}\n{line}" if current else line
        if len(joined) <= max_chars:
            current = joined
            continue
        if current:
            chunks.append(current)
        while len(line) > max_chars:
            chunks.append(line[:max_chars])
            line = line[max_chars:]
        current = line
    if current or not chunks:
        chunks.append(current)
    return [{"data": chunk, "tbc": n < len(chunks) - 1, "seqNo": n, "generatedAt": generated_at,
             "requestId": request_id} for n, chunk in enumerate(chunks)]
