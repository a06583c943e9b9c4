"""Engine values <-> OCPP 1.6 payloads (pure functions)."""
from __future__ import annotations

from decimal import Decimal

from ..engine.model import Sample, rfc3339


def _plain(value: Decimal) -> str:
    """A value's text in plain notation (1.6 sends it as a string): str() unless it chose an exponent, which
    format(value, "f") spells out (str() costs half of format() and is the same text otherwise)."""
    text = str(value)
    return format(value, "f") if "E" in text else text


def sampled_values(sample: Sample) -> list[dict]:
    context = sample.context
    return [{"value": _plain(value), "context": context, "measurand": measurand, "unit": unit} if unit
            else {"value": _plain(value), "context": context, "measurand": measurand}
            for measurand, value, unit in sample.values]


def meter_value(sample: Sample) -> dict:
    return {"timestamp": rfc3339(sample.timestamp), "sampledValue": sampled_values(sample)}


def start_transaction(tx) -> dict:
    p = {"connectorId": tx.connector_id, "idTag": tx.id_tag, "meterStart": tx.meter_start_wh,
         "timestamp": tx.started_at}
    if tx.reservation_id is not None:
        p["reservationId"] = tx.reservation_id
    return p


def stop_transaction(tx, transaction_data: tuple[Sample, ...]) -> dict:
    """Without transactionId: it is filled in when the message is sent (the CSMS may not have given it yet)."""
    p = {"meterStop": tx.meter_stop_wh, "timestamp": tx.stopped_at, "reason": tx.stop_reason}
    if tx.stop_id_tag:
        p["idTag"] = tx.stop_id_tag
    data = [meter_value(s) for s in transaction_data if s.values]
    if data:
        p["transactionData"] = data
    return p


def meter_values(connector_id: int, samples: tuple[Sample, ...]) -> dict:
    return {"connectorId": connector_id, "meterValue": [meter_value(s) for s in samples if s.values]}
