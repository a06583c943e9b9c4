"""Signed meter values in OCPP messages (OCA application note "Signed Meter Values in OCPP" v1.0, issue #5).

What the 1.6 and 2.0.1 adapters share: which messages carry signed readings (the note's configuration matrix,
Table 20), the ``signedMeterValue`` object and the 1.6 ``SampledValue`` with format ``SignedData``. The OCMF text
is taken from the legal log as it was stored and only base64-encoded here: never parsed and re-serialized.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from .meterkeys import oca_public_key

__all__ = ["SIGNED_DATA_LIMIT", "RecordTooLong", "SignedPolicy", "signed_meter_value", "sampled_value_16",
           "signed_records", "ENERGY"]

#: signedMeterData / publicKey: string[0..2500] (2.0.1 SignedMeterValueType; the note reuses it for 1.6)
SIGNED_DATA_LIMIT = 2500
ENERGY = "Energy.Active.Import.Register"
BEGIN, END = "Transaction.Begin", "Transaction.End"
PERIODIC, CLOCK = "Sample.Periodic", "Sample.Clock"
#: the vendor-specific security event when a signed record cannot be sent (not critical: it stays in the log)
EVENT_TOO_LONG = "SignedMeterValueTooLong"
EVENT_MISSING = "SignedMeterValueMissing"


class RecordTooLong(ValueError):
    """The base64 form of a record exceeds the 2500 characters of signedMeterData: it is left out of the message
    (never truncated) and a security event says so; the record itself stays in the legal log."""


@dataclass(frozen=True)
class SignedPolicy:
    """Which messages carry signed readings, read from the configuration at the moment a message is built.

    ``sign_readings``: SampledDataSignReadings / AlignedDataSignReadings (either): signed begin and end values in
    StopTransaction / TransactionEvent Ended. ``sign_started``: SampledDataSignStartedReadings: the begin value in
    its own message too (1.6 MeterValues after StartTransaction, 2.0.1 Started or the first Updated).
    ``public_key``: PublicKeyWithSignedMeterValue (Never / OncePerTransaction / EveryMeterValue). ``updated``: the
    contexts of intermediate readings sent with a signed value (Table 20): ``Sample.Periodic`` with
    SampledDataSignReadings and SampledDataSignUpdatedReadings, ``Sample.Clock`` with AlignedDataSignReadings and
    AlignedDataSignUpdatedReadings (§3.3.6/§3.3.8, §4.3.4/§4.3.7)."""
    sign_readings: bool
    sign_started: bool
    public_key: str = "OncePerTransaction"
    updated: frozenset[str] = frozenset()

    def key_with(self, first_of_transaction: bool) -> bool:
        """Whether this signed value carries the public key (OCA note §3.3.2 / §4.3.1)."""
        if self.public_key == "EveryMeterValue":
            return True
        return self.public_key == "OncePerTransaction" and first_of_transaction


def signed_meter_value(raw: str, public_key_der: bytes | None, with_key: bool) -> dict:
    """The SignedMeterValueType object (2.0.1 §2.46; OCA note Table 1/11): signedMeterData = base64 of the OCMF
    text, signingMethod "" (OCMF names it in SA), encodingMethod "OCMF", publicKey per the configuration ("" when
    not sent). Raises RecordTooLong instead of ever shortening a record."""
    data = base64.b64encode(raw.encode("utf-8")).decode("ascii")
    if len(data) > SIGNED_DATA_LIMIT:
        raise RecordTooLong(f"signed record of {len(raw)} characters is {len(data)} in base64 "
                            f"(signedMeterData allows {SIGNED_DATA_LIMIT})")
    key = oca_public_key(public_key_der) if with_key and public_key_der else ""
    if len(key) > SIGNED_DATA_LIMIT:
        key = ""
    return {"signedMeterData": data, "signingMethod": "", "encodingMethod": "OCMF", "publicKey": key}


def sampled_value_16(raw: str, context: str, public_key_der: bytes | None, with_key: bool, form: str) -> dict:
    """A 1.6 SampledValue with format SignedData: ``form`` "oca-json" puts the JSON text of the SignedMeterValueType
    in ``value`` (OCA note §3.2.1), "raw" the OCMF string itself (what many CSMSs and transparency tools read)."""
    obj = signed_meter_value(raw, public_key_der, with_key)    # the size check applies to both forms
    value = raw if form == "raw" else json.dumps(obj, separators=(",", ":"))
    return {"value": value, "context": context, "format": "SignedData", "measurand": ENERGY, "location": "Outlet"}


def signed_records(tx) -> dict[str, dict]:
    """The signed readings of a transaction record by context ({"raw", "t", "key"}), as the engine keeps them."""
    return dict(tx.extra.get("signed") or {})
