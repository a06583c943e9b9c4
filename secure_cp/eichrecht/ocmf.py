"""OCMF records (Open Charge Metering Format, S.A.F.E. e.V., ``OCMF-en.md``): parse byte-exact, build and sign.

A record is ``OCMF|<payload JSON>|<signature JSON>``; the signature is ECDSA over the UTF-8 bytes of the payload
section exactly as written. Two rules follow, and this module keeps both:

* **Opaque stays opaque** (DESIGN.md §4). :class:`OcmfRecord` keeps the original text (``raw``, ``payload_text``,
  ``signature_text``) and only *reads* the parsed fields; nothing is ever written back from the parsed values, so
  ``"RV":2935.600`` can never become ``2935.6`` on its way to the CSMS.
* **Gateway mode writes its own payload once.** :func:`build_payload` writes the payload text with fixed decimals
  (``RV`` quantized to the meter's resolution), the spec's time format ``YYYY-MM-DDThh:mm:ss,fff+hhmm S`` and the
  meter's status and error flags exactly as given (ST, EF, TX: never a substitute value). :class:`BackendSigner`
  signs it through the key backend (PKCS#11, TPM, software) and :func:`sign_payload` appends the signature section.
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any, Iterable, Protocol

from .. import jsontext

__all__ = [
    "OcmfError", "OcmfRecord", "Reading", "MeterIdentity", "Identification", "ReadingValue", "Signer",
    "BackendSigner", "KeySigner", "SIGNATURE_METHODS", "DEFAULT_SIGNATURE_METHOD", "format_time", "parse_time",
    "build_payload", "sign_payload", "identification_for_token", "parse_pagination",
]

#: OCMF ``SA`` values this module signs and verifies: curve and hash (spec Table 22; SHA-384/512 variants are
#: accepted for verification, as other verifiers do).
SIGNATURE_METHODS: dict[str, tuple[str, str]] = {
    "ECDSA-secp256r1-SHA256": ("secp256r1", "sha256"),
    "ECDSA-secp384r1-SHA256": ("secp384r1", "sha256"),
    "ECDSA-secp384r1-SHA384": ("secp384r1", "sha384"),
    "ECDSA-secp256r1-SHA512": ("secp256r1", "sha512"),
    "ECDSA-secp384r1-SHA512": ("secp384r1", "sha512"),
    "ECDSA-secp256k1-SHA256": ("secp256k1", "sha256"),
    "ECDSA-brainpool256r1-SHA256": ("brainpoolP256r1", "sha256"),
    "ECDSA-brainpoolP256r1-SHA256": ("brainpoolP256r1", "sha256"),
    "ECDSA-brainpool384r1-SHA256": ("brainpoolP384r1", "sha256"),
}
#: The default when a record has no ``SA`` (spec Table 22: the default since OCMF 0.4).
DEFAULT_SIGNATURE_METHOD = "ECDSA-secp256r1-SHA256"

TIME_SYNC_FLAGS = frozenset("UISR")         # Table 19: unknown, informative, synchronized, relative
METER_STATES = frozenset("NGTDRMXIOSEF")    # Table 10
TX_MARKERS = frozenset("BCXELRAPST")        # Table 7, TX
END_MARKERS = frozenset("ELRAP")            # the ones that end a transaction
UNITS = frozenset({"kWh", "Wh", "mOhm", "uOhm"})   # Table 20
CURRENT_TYPES = frozenset({"AC", "DC"})     # Table 21

_PAGINATION = re.compile(r"([TF])([1-9][0-9]*|0)")
_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2}),(\d{3})([+-])(\d{2})(\d{2})(?: ([A-Z]))?")


class OcmfError(ValueError):
    """An OCMF string or field is malformed; the message says what and where (never a traceback for users)."""


# ----------------------------------------------------------------------------------------------- parsing


def parse_pagination(pg: Any) -> tuple[str, int]:
    """``"T32"`` -> ``("T", 32)``; OcmfError for anything else (context letter T or F, number without zeros)."""
    if not isinstance(pg, str) or not _PAGINATION.fullmatch(pg):
        raise OcmfError(f"PG {pg!r}: expected T or F followed by a number without leading zeros")
    return pg[0], int(pg[1:])


def parse_time(tm: Any) -> tuple[_dt.datetime, str]:
    """``"2019-08-13T10:03:15,000+0000 I"`` -> (aware datetime, sync flag). A missing flag reads as ``U``
    (unknown), an unknown flag is an error."""
    m = _TIME.fullmatch(tm) if isinstance(tm, str) else None
    if m is None:
        raise OcmfError(f"TM {tm!r}: expected 'YYYY-MM-DDThh:mm:ss,fff+hhmm F'")
    y, mo, d, h, mi, s, ms, sign, oh, om, flag = m.groups()
    if flag is not None and flag not in TIME_SYNC_FLAGS:
        raise OcmfError(f"TM {tm!r}: time status {flag!r} is not one of U, I, S, R")
    try:
        offset = _dt.timedelta(hours=int(oh), minutes=int(om)) * (1 if sign == "+" else -1)
        when = _dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), int(ms) * 1000,
                            tzinfo=_dt.timezone(offset))
    except ValueError as exc:
        raise OcmfError(f"TM {tm!r}: {exc}") from None
    return when, flag or "U"


def format_time(when: _dt.datetime, sync: str) -> str:
    """The OCMF time text of an aware datetime: ``2018-07-24T13:22:04,000+0200 S`` (milliseconds truncated)."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise OcmfError("TM: the reading time needs a time zone (an aware datetime)")
    if sync not in TIME_SYNC_FLAGS:
        raise OcmfError(f"TM: time status {sync!r} is not one of U, I, S, R")
    offset = when.utcoffset()
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return (f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:{when.second:02d},"
            f"{when.microsecond // 1000:03d}{sign}{minutes // 60:02d}{minutes % 60:02d} {sync}")


@dataclass(frozen=True)
class Reading:
    """One entry of ``RD`` with the fields a previous entry defined filled in (spec: "fields that have an identical
    value to the previous reading are omitted"). ``rv``/``cl`` keep the exact decimal text as :class:`Decimal`."""
    index: int
    tm: str
    time: _dt.datetime
    sync: str
    tx: str | None
    rv: Decimal | None
    ri: str | None
    ru: str | None
    rt: str | None
    cl: Decimal | None
    ef: str
    st: str | None


_INHERITED = ("TM", "TX", "RI", "RU", "RT", "EF", "ST")


@dataclass(frozen=True)
class OcmfRecord:
    """A parsed OCMF record that remembers its original text: forward ``raw``, verify over ``payload_bytes``."""
    raw: str
    payload_text: str
    signature_text: str
    payload: dict = field(repr=False)
    signature: dict = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> OcmfRecord:
        """Parse ``OCMF|payload|signature``. The text is kept as given (no strip: the caller decides what a line
        is); OcmfError with a clear message for a truncated or malformed record."""
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise OcmfError(f"record is not UTF-8 text: {exc}") from None
        if not isinstance(text, str):
            raise OcmfError(f"record must be text, got {type(text).__name__}")
        if not text.startswith("OCMF|"):
            raise OcmfError(f"record does not start with 'OCMF|': {text[:20]!r}")
        parts = text.split("|")
        if len(parts) != 3:
            raise OcmfError(f"record has {len(parts)} '|'-separated sections, expected 3 "
                            "(OCMF|payload|signature): truncated or not OCMF")
        payload = _json_object(parts[1], "payload")
        signature = _json_object(parts[2], "signature")
        return cls(text, parts[1], parts[2], payload, signature)

    # --- payload accessors (read only; None when absent) -----------------------------------------------------
    def _str(self, key: str) -> str | None:
        value = self.payload.get(key)
        if value is not None and not isinstance(value, str):
            raise OcmfError(f"{key}: expected a string, got {value!r}")
        return value

    @property
    def payload_bytes(self) -> bytes:
        """What the signature covers: the payload section's UTF-8 bytes exactly as received."""
        return self.payload_text.encode("utf-8")

    fv = property(lambda self: self._str("FV"))
    gi = property(lambda self: self._str("GI"))
    gs = property(lambda self: self._str("GS"))
    gv = property(lambda self: self._str("GV"))
    pg = property(lambda self: self._str("PG"))
    mv = property(lambda self: self._str("MV"))
    mm = property(lambda self: self._str("MM"))
    ms = property(lambda self: self._str("MS"))
    mf = property(lambda self: self._str("MF"))
    il = property(lambda self: self._str("IL"))
    it = property(lambda self: self._str("IT"))
    id = property(lambda self: self._str("ID"))
    tt = property(lambda self: self._str("TT"))
    ct = property(lambda self: self._str("CT"))
    ci = property(lambda self: self._str("CI"))

    @property
    def is_(self) -> bool | None:
        """``IS``, the identification status (a Python keyword, hence the underscore)."""
        value = self.payload.get("IS")
        if value is not None and not isinstance(value, bool):
            raise OcmfError(f"IS: expected true or false, got {value!r}")
        return value

    @property
    def if_(self) -> list[str]:
        value = self.payload.get("IF", [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise OcmfError(f"IF: expected an array of strings, got {value!r}")
        return value

    @property
    def pagination(self) -> tuple[str, int]:
        """(context, number) of ``PG``; OcmfError when missing or malformed."""
        return parse_pagination(self.payload.get("PG"))

    @property
    def signer_serial(self) -> str | None:
        """The serial that names the signing component: GS, else MS (spec: "Relation of Serial Numbers")."""
        return self.gs or self.ms

    @property
    def readings(self) -> list[Reading]:
        """``RD`` with omitted fields inherited from the previous reading of this record."""
        rd = self.payload.get("RD")
        if not isinstance(rd, list) or not rd:
            raise OcmfError("RD: expected a non-empty array of readings")
        out: list[Reading] = []
        last: dict[str, Any] = {}
        for i, entry in enumerate(rd):
            if not isinstance(entry, dict):
                raise OcmfError(f"RD[{i}]: expected an object, got {entry!r}")
            merged = {k: entry.get(k, last.get(k)) for k in _INHERITED}
            last = merged
            if merged["TM"] is None:
                raise OcmfError(f"RD[{i}]: TM is missing")
            when, sync = parse_time(merged["TM"])
            out.append(Reading(
                index=i, tm=merged["TM"], time=when, sync=sync, tx=_opt_str(merged["TX"], f"RD[{i}].TX"),
                rv=_opt_decimal(entry.get("RV"), f"RD[{i}].RV"), ri=_opt_str(merged["RI"], f"RD[{i}].RI"),
                ru=_opt_str(merged["RU"], f"RD[{i}].RU"), rt=_opt_str(merged["RT"], f"RD[{i}].RT"),
                cl=_opt_decimal(entry.get("CL"), f"RD[{i}].CL"), ef=_opt_str(merged["EF"], f"RD[{i}].EF") or "",
                st=_opt_str(merged["ST"], f"RD[{i}].ST")))
        return out

    # --- signature accessors ----------------------------------------------------------------------------------
    @property
    def sa(self) -> str:
        """``SA``, or the default (ECDSA-secp256r1-SHA256) when absent."""
        value = self.signature.get("SA", DEFAULT_SIGNATURE_METHOD)
        if not isinstance(value, str):
            raise OcmfError(f"SA: expected a string, got {value!r}")
        return value

    @property
    def se(self) -> str:
        value = self.signature.get("SE", "hex")
        if value not in ("hex", "base64"):
            raise OcmfError(f"SE {value!r}: expected 'hex' or 'base64'")
        return value

    @property
    def signature_bytes(self) -> bytes:
        """``SD`` decoded per ``SE``: a DER ECDSA signature (``SM`` application/x-der, the only MIME type)."""
        sd = self.signature.get("SD")
        if not isinstance(sd, str) or not sd:
            raise OcmfError("SD: the signature data is missing")
        sm = self.signature.get("SM", "application/x-der")
        if sm != "application/x-der":
            raise OcmfError(f"SM {sm!r}: only application/x-der is defined")
        try:
            if self.se == "hex":
                return bytes.fromhex(sd)
            import base64
            return base64.b64decode(sd, validate=True)
        except ValueError as exc:
            raise OcmfError(f"SD is not valid {self.se}: {exc}") from None

    def __str__(self) -> str:
        return self.raw


def _json_object(text: str, what: str) -> dict:
    try:
        # parse_float=Decimal: the reading values keep their exact digits for display and comparison
        value = json.loads(text, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        raise OcmfError(f"{what} section is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise OcmfError(f"{what} section must be a JSON object")
    return value


def _opt_str(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise OcmfError(f"{where}: expected a string, got {value!r}")
    return value


def _opt_decimal(value: Any, where: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise OcmfError(f"{where}: expected a number, got {value!r}")
    return Decimal(value)


# ---------------------------------------------------------------------------------------------- building


@dataclass(frozen=True)
class MeterIdentity:
    """The signing component and its meter (spec Tables 1 and 3); fixed for a meter, written into every record.
    ``gs`` or ``ms`` must name the signer (conditionally mandatory serials)."""
    gi: str | None = None        # gateway identification (manufacturer, model)
    gs: str | None = None        # gateway serial
    gv: str | None = None        # gateway software version
    mv: str | None = None        # meter vendor
    mm: str | None = None        # meter model
    ms: str | None = None        # meter serial (1..1 in the spec table)
    mf: str | None = None        # meter firmware
    cf: str | None = None        # charge controller firmware (CF, later OCMF)
    lc: dict | None = None       # loss compensation (LN, LI, LR, LU)


@dataclass(frozen=True)
class Identification:
    """User assignment (spec Table 4): present exactly when the record refers to a transaction."""
    status: bool = False                          # IS
    type: str = "NONE"                            # IT (Table 17)
    data: str | None = None                       # ID
    level: str | None = None                      # IL (Table 11)
    flags: tuple[str, ...] = ()                   # IF (Tables 13-16)
    tariff_text: str | None = None                # TT


# OCPP IdTokenType (2.0.1) -> OCMF identification type (Table 17); 1.6 idTags are treated as ISO14443 UIDs when
# they look like one (4/7/10 bytes hex), else as centrally issued ids.
_TOKEN_TYPES = {"ISO14443": "ISO14443", "ISO15693": "ISO15693", "eMAID": "EMAID", "Central": "CENTRAL",
                "Local": "LOCAL", "KeyCode": "KEY_CODE", "MacAddress": "UNDEFINED", "NoAuthorization": "NONE"}
_UID = re.compile(r"(?:[0-9A-Fa-f]{8}|[0-9A-Fa-f]{14}|[0-9A-Fa-f]{20})")


def identification_for_token(id_token: str | None, token_type: str | None = None, *, source: str = "local",
                             tls: bool = False, accepted: bool = True) -> Identification:
    """The OCMF user assignment for an authorization (issue #5: RFID UID -> ISO14443, central -> CENTRAL, ...).

    ``token_type``: the 2.0.1 IdTokenType, None for 1.6 (then an 8/14/20-digit hex tag is an RFID UID, anything
    else a central id). ``source``: how the station accepted it: "authorize", "remote", "cache", "local_list",
    "local" (free vend / no backend). The level is HEARSAY for a plain RFID UID and TRUSTED when the backend
    confirmed it (spec Table 11)."""
    if not id_token:
        return Identification(status=False, type="NONE", level="NONE",
                              flags=("RFID_NONE", "OCPP_NONE", "ISO15118_NONE", "PLMN_NONE"))
    if token_type is None:
        it = "ISO14443" if _UID.fullmatch(id_token) else "CENTRAL"
    else:
        it = _TOKEN_TYPES.get(token_type, "UNDEFINED")
    rfid = "RFID_PLAIN" if it in ("ISO14443", "ISO15693") and source != "remote" else "RFID_NONE"
    ocpp = {"authorize": "OCPP_AUTH_TLS" if tls else "OCPP_AUTH", "remote": "OCPP_RS_TLS" if tls else "OCPP_RS",
            "cache": "OCPP_CACHE", "local_list": "OCPP_WHITELIST"}.get(source, "OCPP_NONE")
    pnc = "ISO15118_PNC" if it == "EMAID" and token_type == "eMAID" else "ISO15118_NONE"
    level = "TRUSTED" if source in ("authorize", "remote") else "HEARSAY"
    return Identification(status=accepted, type=it, data=id_token, level=level if accepted else "NONE",
                          flags=(rfid, ocpp, pnc, "PLMN_NONE"))


@dataclass(frozen=True)
class ReadingValue:
    """One reading to write in gateway mode. ``value`` None: only the meter's state is reported (spec: RV/RI/RU/RT
    may be omitted for an error event); ``st``/``ef``/``tx`` are written as the meter reported them."""
    time: _dt.datetime
    value: Decimal | None
    tx: str | None = None                # B/C/X/E/L/R/A/P/S/T; None for fiscal (F) readings
    sync: str = "S"                      # time status of the clock that stamped the reading
    ri: str = "1-b:1.8.0"                # OBIS: active energy import, total
    ru: str = "kWh"
    decimals: int = 3                    # the meter's resolution in ``ru``
    rt: str | None = "AC"
    cl: Decimal | None = None
    ef: str = ""                         # E: energy unusable, t: time unusable
    st: str = "G"                        # meter state (Table 10)


def _fixed(value: Decimal, decimals: int, where: str) -> Decimal:
    try:
        value = Decimal(value)
        # truncated toward zero, as a register display does: never a value the meter did not reach
        return value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_DOWN)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise OcmfError(f"{where}: {value!r} is not a finite decimal ({exc})") from None


def _reading_json(r: ReadingValue, i: int) -> dict[str, Any]:
    if r.st not in METER_STATES:
        raise OcmfError(f"RD[{i}].ST {r.st!r}: not a meter state of OCMF Table 10")
    if r.tx is not None and r.tx not in TX_MARKERS:
        raise OcmfError(f"RD[{i}].TX {r.tx!r}: not one of {''.join(sorted(TX_MARKERS))}")
    if any(c not in "Et" for c in r.ef):
        raise OcmfError(f"RD[{i}].EF {r.ef!r}: only 'E' (energy) and 't' (time) are defined")
    out: dict[str, Any] = {"TM": format_time(r.time, r.sync)}
    if r.tx is not None:
        out["TX"] = r.tx
    if r.value is not None:
        if r.ru not in UNITS:
            raise OcmfError(f"RD[{i}].RU {r.ru!r}: not one of {', '.join(sorted(UNITS))}")
        if r.rt is not None and r.rt not in CURRENT_TYPES:
            raise OcmfError(f"RD[{i}].RT {r.rt!r}: AC or DC")
        out["RV"] = _fixed(r.value, r.decimals, f"RD[{i}].RV")
        out["RI"] = r.ri
        out["RU"] = r.ru
        if r.rt is not None:
            out["RT"] = r.rt
        if r.cl is not None:
            out["CL"] = _fixed(r.cl, r.decimals, f"RD[{i}].CL")
    out["EF"] = r.ef
    out["ST"] = r.st
    return out


def build_payload(*, pagination: str, identity: MeterIdentity, readings: Iterable[ReadingValue],
                  identification: Identification | None = None, fv: str = "1.0", ct: str | None = None,
                  ci: str | None = None) -> str:
    """The payload section text of a gateway-mode record, written once, compactly, in the spec's field order.

    ``pagination``: "T<n>" / "F<n>" from :class:`~.pagination.Pagination`. ``identification``: required for a T
    record (the user-assignment group is present exactly when there is a transaction reference), absent for F.
    ``fv`` "1.0" by default: the S.A.F.E. transparency software rejects format versions above 1.3.
    ``ct``/``ci``: "EVSEID" and the EVSE id, or "CBIDC" and "<charge box id> <connector id>" (Table 18)."""
    context, _ = parse_pagination(pagination)
    if not (identity.gs or identity.ms):
        raise OcmfError("GS or MS: the signing component needs a serial number")
    if not re.fullmatch(r"\d+\.\d+", fv):
        raise OcmfError(f"FV {fv!r}: expected <major>.<minor>")
    readings = list(readings)
    if not readings:
        raise OcmfError("RD: a record needs at least one reading")
    if context == "T" and identification is None:
        raise OcmfError("IS/IT: a transaction (T) record carries the user assignment")
    if context == "F" and any(r.tx is not None for r in readings):
        raise OcmfError("TX: fiscal (F) readings have no transaction reference")
    body: dict[str, Any] = {"FV": fv}
    for key in ("gi", "gs", "gv"):
        if getattr(identity, key) is not None:
            body[key.upper()] = getattr(identity, key)
    body["PG"] = pagination
    for key in ("mv", "mm", "ms", "mf"):
        if getattr(identity, key) is not None:
            body[key.upper()] = getattr(identity, key)
    if context == "T" and identification is not None:
        body["IS"] = identification.status
        if identification.level is not None:
            body["IL"] = identification.level
        body["IF"] = list(identification.flags)
        body["IT"] = identification.type
        if identification.data is not None:
            body["ID"] = identification.data
        if identification.tariff_text is not None:
            body["TT"] = identification.tariff_text
    if identity.cf is not None:
        body["CF"] = identity.cf
    if identity.lc is not None:
        body["LC"] = identity.lc
    if ct is not None:
        body["CT"] = ct
    if ci is not None:
        body["CI"] = ci
    body["RD"] = [_reading_json(r, i) for i, r in enumerate(readings)]
    text = jsontext.dumps(body)
    if "|" in text:
        raise OcmfError("payload: '|' is not allowed inside a section (it separates the sections)")
    return text


# ----------------------------------------------------------------------------------------------- signing


class Signer(Protocol):
    """Whatever makes the ECDSA signature of a record: the key backend (gateway mode) or a meter's own key."""
    signature_method: str

    def sign(self, data: bytes) -> bytes:
        """DER ECDSA signature over ``data`` (hashed per ``signature_method``)."""
        ...

    def public_key_der(self) -> bytes:
        """DER SubjectPublicKeyInfo of the verifying key."""
        ...


def _method_for_curve(curve_name: str, hash_name: str) -> str:
    for method, (curve, h) in SIGNATURE_METHODS.items():
        if curve == curve_name and h == hash_name and "brainpoolP" not in method:
            return method
    raise OcmfError(f"no OCMF signature method for curve {curve_name} with {hash_name}")


class BackendSigner:
    """Signs through a :class:`~secure_cp.security.keys.base.KeyBackend` key: the private key stays in its backend
    (PKCS#11 token, TPM, software file); only the SHA digest goes in. Thread-safe like the backend; use
    :meth:`sign_async` on the event loop (a TPM needs ~100 ms per signature)."""

    def __init__(self, backend, label: str, *, hash_name: str = "sha256") -> None:
        from cryptography.hazmat.primitives.asymmetric import ec
        self.backend = backend
        self.label = label
        public = backend.public_key(label)
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise OcmfError(f"key {label!r}: OCMF needs an elliptic-curve key, not {type(public).__name__}")
        self.signature_method = _method_for_curve(public.curve.name, hash_name)
        self._hash_name = hash_name
        self._der = backend.public_key_der(label)

    def public_key_der(self) -> bytes:
        return self._der

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        algorithm = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}[self._hash_name]()
        return self.backend.sign_digest(self.label, hashlib.new(self._hash_name, data).digest(), algorithm)

    async def sign_async(self, data: bytes) -> bytes:
        return await asyncio.to_thread(self.sign, data)


class KeySigner:
    """Signs with a ``cryptography`` EC private key held in this process: the simulated meter's own key."""

    def __init__(self, private_key, *, hash_name: str = "sha256") -> None:
        self._key = private_key
        self._hash_name = hash_name
        self.signature_method = _method_for_curve(private_key.curve.name, hash_name)

    def public_key_der(self) -> bytes:
        from cryptography.hazmat.primitives import serialization
        return self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        algorithm = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}[self._hash_name]()
        return self._key.sign(data, ec.ECDSA(algorithm))


def signature_section(method: str, signature_der: bytes) -> str:
    """The signature section text: SA, SE "hex", SD (upper-case hex of the DER signature)."""
    return jsontext.dumps({"SA": method, "SE": "hex", "SD": signature_der.hex().upper()})


def sign_payload(payload_text: str, signer: Signer) -> OcmfRecord:
    """``OCMF|payload|signature`` with the signature over the payload's exact UTF-8 bytes."""
    signature = signer.sign(payload_text.encode("utf-8"))
    return OcmfRecord.parse(f"OCMF|{payload_text}|{signature_section(signer.signature_method, signature)}")
