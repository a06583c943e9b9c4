"""Verification of OCMF records and transparency files: what ``secure-cp audit`` checks.

Per record: the ECDSA signature over the exact payload bytes (curve and hash per ``SA``, SHA-256 P-256 when absent),
the format version (the S.A.F.E. transparency software rejects ``FV`` above 1.3), pagination syntax, the serial of
the signer, the meter state (``ST``) and error flags (``EF``, ``TX`` = X/A/P) of every reading, the time status,
the identification level, and that the record carries a law-relevant energy register (OBIS ``1-0:1.8.0`` and the
OCMF reserved registers B0-C7).

Per transaction (records paired by the file's ``transactionId``, else begin to end in file order): exactly one
begin and one end reading, same signer serial and identification, same register and unit, energy and time not
going backwards, pagination strictly increasing in one context (a gap is reported: records of the same meter are
missing between them). Across all records: a pagination number used twice by the same signer is an error.

Errors make :attr:`AuditReport.ok` false; warnings are printed but do not fail the audit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable

from .meterkeys import PublicKeyError, load_public_key
from .ocmf import END_MARKERS, SIGNATURE_METHODS, OcmfError, OcmfRecord, Reading
from .transparency import TransparencyEntry, looks_like_xml, parse_transparency_xml

__all__ = ["Finding", "RecordCheck", "TransactionCheck", "AuditReport", "verify_signature", "audit_entries",
           "audit_text", "is_law_relevant_obis", "MAX_SAFE_FV"]

#: The highest format version the S.A.F.E. transparency software accepts.
MAX_SAFE_FV = (1, 3)
_BAD_ID_LEVELS = {"MISMATCH", "INVALID", "OUTDATED", "UNKNOWN"}
_OBIS = re.compile(r"([0-9A-Fa-f]{1,2})-([0-9A-Fa-f]{1,2}):([0-9A-Fa-f]{1,2})\.([0-9A-Fa-f]{1,2})\.([0-9A-Fa-f]{1,2})"
                   r"(?:[.*]([0-9A-Fa-f]+))?")
# C groups of law-relevant energy registers: 1 (active import) and the OCMF reserved B0-C7; 98 and 9E are vendor
# registers (loss compensated) the transparency software also accepts. Groups are hex, as OCMF writes "1-b:...".
_LAW_C = {0x01, 0x98, 0x9E, *range(0xB0, 0xC8)}
_CURVES = {"secp256r1": "SECP256R1", "secp384r1": "SECP384R1", "secp256k1": "SECP256K1",
           "brainpoolP256r1": "BrainpoolP256R1", "brainpoolP384r1": "BrainpoolP384R1"}


def is_law_relevant_obis(ri: str | None) -> bool | None:
    """True for a law-relevant cumulative energy register, False for another register, None if malformed."""
    m = _OBIS.fullmatch(ri or "")
    if m is None:
        return None
    a, _b, c, d, _e, f = m.groups()
    return int(a, 16) == 1 and int(d, 16) == 8 and int(c, 16) in _LAW_C and (f is None or int(f, 16) in (0, 0xFF))


@dataclass(frozen=True)
class Finding:
    severity: str                 # "error" or "warning"
    code: str                     # short, stable: "signature", "fv", "meter-state", "pagination", ...
    message: str
    record: int | None = None     # 1-based record number, None for a transaction-level finding
    transaction: str | None = None


@dataclass
class RecordCheck:
    index: int                    # 1-based
    source: str                   # "line 3" / "<value> #2"
    raw: str
    record: OcmfRecord | None = None
    public_key: str | None = None
    signature_ok: bool | None = None
    transaction_id: str | None = None
    context: str | None = None


@dataclass
class TransactionCheck:
    name: str
    records: list[int]
    begin: Reading | None = None
    end: Reading | None = None

    @property
    def energy(self) -> Decimal | None:
        if self.begin is None or self.end is None or self.begin.rv is None or self.end.rv is None:
            return None
        return self.end.rv - self.begin.rv


@dataclass
class AuditReport:
    records: list[RecordCheck] = field(default_factory=list)
    transactions: list[TransactionCheck] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return bool(self.records) and not self.errors

    def add(self, severity: str, code: str, message: str, record: int | None = None,
            transaction: str | None = None) -> None:
        self.findings.append(Finding(severity, code, message, record, transaction))

    def as_dict(self) -> dict[str, Any]:
        def reading(r: Reading | None) -> dict | None:
            return None if r is None else {"time": r.tm, "tx": r.tx, "value": None if r.rv is None else str(r.rv),
                                           "unit": r.ru, "obis": r.ri, "state": r.st, "error_flags": r.ef}
        return {
            "ok": self.ok,
            "errors": len(self.errors), "warnings": len(self.warnings),
            "records": [{"record": c.index, "source": c.source, "pagination": _safe(lambda: c.record.pg, c.record),
                         "serial": _safe(lambda: c.record.signer_serial, c.record), "format_version":
                         _safe(lambda: c.record.fv, c.record), "signature_ok": c.signature_ok,
                         "public_key": c.public_key, "transaction_id": c.transaction_id, "context": c.context}
                        for c in self.records],
            "transactions": [{"name": t.name, "records": t.records, "begin": reading(t.begin),
                              "end": reading(t.end), "energy": None if t.energy is None else str(t.energy)}
                             for t in self.transactions],
            "findings": [f.__dict__ for f in self.findings],
        }

    def render_text(self) -> str:
        lines = []
        for c in self.records:
            sig = {True: "signature OK", False: "signature INVALID", None: "signature not checked"}[c.signature_ok]
            head = f"record {c.index} ({c.source})"
            if c.record is not None:
                head += f": PG {_safe(lambda: c.record.pg, c.record)}, serial {_safe(lambda: c.record.signer_serial, c.record)}"
            lines.append(f"{head}: {sig}")
            lines += [f"  {f.severity}: {f.message}" for f in self.findings if f.record == c.index]
        for t in self.transactions:
            desc = f"transaction {t.name} (records {', '.join(map(str, t.records))})"
            if t.begin is not None and t.end is not None and t.energy is not None:
                desc += (f": {t.begin.rv} {t.begin.ru} at {t.begin.tm} -> {t.end.rv} {t.end.ru} at {t.end.tm}, "
                         f"{t.energy} {t.end.ru}")
            lines.append(desc)
            lines += [f"  {f.severity}: {f.message}" for f in self.findings if f.transaction == t.name]
        lines += [f"{f.severity}: {f.message}" for f in self.findings if f.record is None and f.transaction is None]
        verdict = "OK" if self.ok else "FAILED"
        lines.append(f"{verdict}: {len(self.records)} record(s), {len(self.errors)} error(s), "
                     f"{len(self.warnings)} warning(s)")
        return "\n".join(lines)


def _safe(get, record) -> Any:
    if record is None:
        return None
    try:
        return get()
    except OcmfError:
        return None


# ---------------------------------------------------------------------------------------------- signature


def verify_signature(record: OcmfRecord, public_key: str | bytes) -> bool:
    """Whether ``SD`` is a valid signature of the payload bytes under ``public_key`` (hex/base64/OCA text or DER).
    OcmfError / PublicKeyError when the check cannot be made (unknown SA, key on another curve, bad encoding)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    method = SIGNATURE_METHODS.get(record.sa)
    if method is None:
        raise OcmfError(f"SA {record.sa!r}: unsupported signature method "
                        f"(known: {', '.join(SIGNATURE_METHODS)})")
    curve_name, hash_name = method
    key = load_public_key(public_key)
    if key.curve.name != curve_name:
        raise PublicKeyError(f"the public key is on curve {key.curve.name}, but SA {record.sa} needs {curve_name}")
    algorithm = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}[hash_name]()
    try:
        key.verify(record.signature_bytes, record.payload_bytes, ec.ECDSA(algorithm))
    except InvalidSignature:
        return False
    return True


# -------------------------------------------------------------------------------------------------- audit


def audit_text(text: str, public_key: str | None = None) -> AuditReport:
    """Audit a transparency XML file or OCMF strings one per line. ``public_key`` (hex DER etc.) is used for
    records without their own key. TransparencyError for unreadable XML."""
    if looks_like_xml(text):
        entries = parse_transparency_xml(text)
        sources = [f"<value> #{i}" for i in range(1, len(entries) + 1)]
    else:
        lines = [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
        # only the line end is removed; the record itself is kept as written
        entries = [TransparencyEntry(line.rstrip("\r")) for _, line in lines]
        sources = [f"line {n}" for n, _ in lines]
    return audit_entries(entries, public_key, sources)


def audit_entries(entries: list[TransparencyEntry], public_key: str | None = None,
                  sources: list[str] | None = None) -> AuditReport:
    report = AuditReport()
    if public_key is not None:
        load_public_key(public_key)      # a bad --public-key is the caller's input error, not a record failure
    for i, entry in enumerate(entries, 1):
        check = RecordCheck(i, sources[i - 1] if sources else f"record {i}", entry.signed_data,
                            public_key=entry.public_key or public_key, transaction_id=entry.transaction_id,
                            context=entry.context)
        report.records.append(check)
        _check_record(report, check)
    _check_transactions(report)
    _check_reuse(report)
    if not entries:
        report.add("error", "empty", "no OCMF record found in the input")
    return report


def _check_record(report: AuditReport, c: RecordCheck) -> None:
    def add(severity: str, code: str, message: str) -> None:
        report.add(severity, code, message, c.index)
    try:
        c.record = rec = OcmfRecord.parse(c.raw)
    except OcmfError as exc:
        add("error", "format", f"not a valid OCMF record: {exc}")
        return
    # signature
    if c.public_key is None:
        add("error", "no-public-key", "no public key to verify the signature (give --public-key HEX)")
    else:
        try:
            c.signature_ok = verify_signature(rec, c.public_key)
            if not c.signature_ok:
                add("error", "signature", "the signature does not match the payload: the record was altered "
                                          "or signed with another key")
        except (OcmfError, PublicKeyError) as exc:
            add("error", "signature", f"signature cannot be checked: {exc}")
    # format version
    try:
        fv = rec.fv
        if fv is None:
            add("warning", "fv", "FV (format version) is missing")
        elif not re.fullmatch(r"\d+\.\d+(\.\d+)?", fv):
            add("error", "fv", f"FV {fv!r} is not <major>.<minor>")
        elif tuple(int(x) for x in fv.split(".")[:2]) > MAX_SAFE_FV:
            add("warning", "fv", f"FV {fv}: the S.A.F.E. transparency software accepts format versions up to "
                                 f"{MAX_SAFE_FV[0]}.{MAX_SAFE_FV[1]} only")
    except OcmfError as exc:
        add("error", "fv", str(exc))
    # identity, pagination, identification
    try:
        rec.pagination
    except OcmfError as exc:
        add("error", "pagination", str(exc))
    try:
        if not rec.signer_serial:
            add("error", "serial", "neither GS nor MS names the signing component")
        if rec.il in _BAD_ID_LEVELS:
            add("error", "identification", f"IL {rec.il}: the user assignment failed")
    except OcmfError as exc:
        add("error", "format", str(exc))
    # readings
    try:
        readings = rec.readings
    except OcmfError as exc:
        add("error", "readings", str(exc))
        return
    law = 0
    for r in readings:
        where = f"RD[{r.index}]"
        if r.st is None:
            add("error", "meter-state", f"{where}: ST (meter state) is missing")
        elif r.st != "G":
            add("error", "meter-state", f"{where}: meter state {r.st!r} (not 'G' = OK): the reading is not usable")
        if "E" in r.ef:
            add("error", "error-flags", f"{where}: EF {r.ef!r}: the energy value is not usable for billing")
        if "t" in r.ef:
            add("warning", "error-flags", f"{where}: EF {r.ef!r}: the time is not usable for billing")
        if r.tx == "X":
            add("error", "transaction-error", f"{where}: TX 'X': error during charging, time and energy no longer "
                                              "usable from this reading on")
        elif r.tx in ("A", "P"):
            add("warning", "transaction-error", f"{where}: TX {r.tx!r}: the charging process was "
                                                f"{'aborted by an error' if r.tx == 'A' else 'ended by a power failure'}")
        if r.sync in ("U", "I"):
            add("warning", "time", f"{where}: time status {r.sync!r} "
                                   f"({'unsynchronized' if r.sync == 'U' else 'informative clock'}): not "
                                   "calibration-law time")
        relevant = is_law_relevant_obis(r.ri) if r.ri is not None else False
        if relevant is None:
            add("error", "obis", f"{where}: RI {r.ri!r} is not an OBIS code")
        elif relevant and r.rv is not None:
            law += 1
            if r.ru not in ("kWh", "Wh"):
                add("error", "unit", f"{where}: unit {r.ru!r} for an energy register (kWh or Wh expected)")
    if law == 0:
        add("error", "obis", "no reading of a law-relevant energy register (OBIS 1-0:1.8.0 or the OCMF reserved "
                             "registers B0-C7)")


def _law_readings(rec: OcmfRecord) -> list[Reading]:
    return [r for r in rec.readings if r.rv is not None and is_law_relevant_obis(r.ri)]


def _groups(report: AuditReport) -> list[tuple[str, list[RecordCheck]]]:
    """Records that belong together: by the file's transactionId, else begin ... end in file order."""
    parsed = [c for c in report.records if c.record is not None and _safe(lambda: c.record.pagination[0],
                                                                          c.record) == "T"]
    if parsed and all(c.transaction_id is not None for c in parsed):
        by_id: dict[str, list[RecordCheck]] = {}
        for c in parsed:
            by_id.setdefault(c.transaction_id, []).append(c)  # type: ignore[arg-type]
        return list(by_id.items())
    groups: list[tuple[str, list[RecordCheck]]] = []
    current: list[RecordCheck] | None = None
    for c in parsed:
        try:
            markers = {r.tx for r in c.record.readings}  # type: ignore[union-attr]
        except OcmfError:
            continue
        if "B" in markers or current is None:
            current = []
            groups.append((str(len(groups) + 1), current))
        current.append(c)
        if markers & END_MARKERS:
            current = None
    return groups


def _check_transactions(report: AuditReport) -> None:
    for name, checks in _groups(report):
        t = TransactionCheck(name, [c.index for c in checks])
        report.transactions.append(t)

        def add(severity: str, code: str, message: str) -> None:
            report.add(severity, code, message, transaction=name)
        try:
            readings = [r for c in checks for r in _law_readings(c.record)]  # type: ignore[arg-type]
        except OcmfError:
            continue
        begins = [r for r in readings if r.tx == "B"]
        ends = [r for r in readings if r.tx in END_MARKERS]
        if len(begins) != 1:
            add("error", "pairing", f"{len(begins)} begin readings (TX 'B'), exactly one expected")
        if len(ends) != 1:
            add("error", "pairing", f"{len(ends)} end readings (TX E/L/R/A/P), exactly one expected")
        t.begin = begins[0] if begins else None
        t.end = ends[-1] if ends else None
        recs = [c.record for c in checks]
        for label, get in (("signer serial (GS/MS)", lambda r: r.signer_serial), ("IS", lambda r: r.is_),
                           ("ID", lambda r: r.id)):
            values = {repr(get(r)) for r in recs}
            if len(values) > 1:
                add("error", "pairing", f"{label} differs between the records: {', '.join(sorted(values))}")
        if t.begin is not None and t.end is not None:
            if (t.begin.ri, t.begin.ru) != (t.end.ri, t.end.ru):
                add("error", "pairing", f"begin and end read different registers: {t.begin.ri} {t.begin.ru} / "
                                        f"{t.end.ri} {t.end.ru}")
            elif t.end.rv < t.begin.rv:  # type: ignore[operator]
                add("error", "pairing", f"the end value {t.end.rv} is below the begin value {t.begin.rv}")
            if t.end.time < t.begin.time:
                add("error", "pairing", f"the end time {t.end.tm} is before the begin time {t.begin.tm}")
        pages = [r.pagination for r in recs]  # type: ignore[union-attr]
        for (c1, n1), (c2, n2) in zip(pages, pages[1:]):
            if c1 != c2:
                add("error", "pagination", f"pagination contexts differ: {c1}{n1} then {c2}{n2}")
            elif n2 <= n1:
                add("error", "pagination", f"pagination not increasing: {c1}{n1} then {c2}{n2}")
            elif n2 != n1 + 1:
                add("warning", "pagination", f"pagination gap: {c1}{n1} then {c2}{n2} "
                                             f"({n2 - n1 - 1} record(s) of this signer not in the file)")


def _check_reuse(report: AuditReport) -> None:
    seen: dict[tuple, RecordCheck] = {}
    for c in report.records:
        key = (_safe(lambda: c.record.signer_serial, c.record), _safe(lambda: c.record.pg, c.record))
        if c.record is None or key[1] is None:
            continue
        first = seen.setdefault(key, c)
        if first is c:
            continue
        if first.raw == c.raw:
            report.add("warning", "duplicate", f"the same record as record {first.index}", c.index)
        else:
            report.add("error", "pagination", f"PG {key[1]} of signer {key[0]} is used by records {first.index} "
                                              f"and {c.index}: a pagination number must never be reused", c.index)


def entries_for(records: Iterable[Any]) -> list[TransparencyEntry]:
    """Transparency entries for legal-log rows (:class:`~.legallog.LegalRecord`): the CSMS's transaction id when
    it is a number (the transparency software reads ``transactionId`` as an integer), else a number of its own per
    transaction (1, 2, ... skipping the numeric ids present), so that a time range of several transactions still
    pairs each begin with its own end."""
    records = list(records)
    used = {r.transaction_id for r in records if (r.transaction_id or "").isdigit()}
    numbers: dict[str, str] = {}
    out = []
    for r in records:
        if (r.transaction_id or "").isdigit():
            tid = r.transaction_id
        else:
            ref = r.transaction_id or r.tx_key or f"row{r.id}"
            if ref not in numbers:
                n = len(numbers) + 1
                while str(n) in used or str(n) in numbers.values():
                    n += 1
                numbers[ref] = str(n)
            tid = numbers[ref]
        out.append(TransparencyEntry(r.raw, r.public_key, tid, r.context))
    return out
