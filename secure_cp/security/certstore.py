"""The station's certificate store: CA certificates installed by the CSMS (OCPP 2.0.1 M03/M04/M05, 1.6 Security
Whitepaper ed. 3 M03/M04/M05: GetInstalledCertificateIds, DeleteCertificate, InstallCertificate).

Each certificate is a PEM file in ``<data_dir>/certs/`` written atomically (temp file, fsync, rename, directory
fsync) and one row of the ``certificates`` table (schema version 4), which is the index: a certificate exists when
its row does. A power cut between the file and the row leaves an orphan file, removed at the next open; a row
whose file is gone is dropped at open too.

Types are kept under their 2.0.1 names: the 1.6 CentralSystemRootCertificate is the 2.0.1 CSMSRootCertificate (one
trust store for both versions, DESIGN.md §2). Hash data follows RFC 6960 CertID: issuerNameHash = H(DER of the
certificate's issuer Name), issuerKeyHash = H(the issuer's subjectPublicKey BIT STRING value), serialNumber in hex.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .. import lazy
from ..fsutil import fsync_dir, write_atomically

asn1_keys = lazy.module("asn1crypto.keys")
x509 = lazy.module("cryptography.x509")
_exceptions = lazy.module("cryptography.exceptions")
serialization = lazy.module("cryptography.hazmat.primitives.serialization")

__all__ = ["CertificateStore", "InstallResult", "INSTALL_TYPES", "ID_TYPES", "canonical_type", "hash_data",
           "HASH_ALGORITHMS"]

log = logging.getLogger("secure_cp.security.certstore")

#: CA certificate types InstallCertificate may carry (2.0.1 InstallCertificateUseEnumType).
INSTALL_TYPES = ("V2GRootCertificate", "MORootCertificate", "CSMSRootCertificate", "ManufacturerRootCertificate")
#: Types GetInstalledCertificateIds reports (2.0.1 GetCertificateIdUseEnumType). V2GCertificateChain is not in the
#: store: it is the station's V2G (SECC) certificate with its sub-CAs, installed by A02/A03 (``v2g_chains``).
ID_TYPES = INSTALL_TYPES + ("V2GCertificateChain",)
#: 1.6 whitepaper names -> the 2.0.1 names they are stored under.
_ALIASES = {"CentralSystemRootCertificate": "CSMSRootCertificate"}
HASH_ALGORITHMS = {"SHA256": hashlib.sha256, "SHA384": hashlib.sha384, "SHA512": hashlib.sha512}


def canonical_type(cert_type: str) -> str:
    """The stored name of a 1.6 or 2.0.1 certificate type."""
    return _ALIASES.get(cert_type, cert_type)


def _public_key_bits(cert: x509.Certificate) -> bytes:
    """The value of the subjectPublicKey BIT STRING (what RFC 6960 §4.1.1 issuerKeyHash hashes)."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bytes(asn1_keys.PublicKeyInfo.load(spki)["public_key"].contents[1:])   # skip the unused-bits octet


def hash_data(cert: x509.Certificate, issuer: x509.Certificate, algorithm: str = "SHA256") -> dict:
    """CertificateHashDataType of ``cert`` issued by ``issuer`` (RFC 6960 CertID; hex, lower case)."""
    h = HASH_ALGORITHMS[algorithm]
    return {"hashAlgorithm": algorithm,
            "issuerNameHash": h(cert.issuer.public_bytes()).hexdigest(),
            "issuerKeyHash": h(_public_key_bits(issuer)).hexdigest(),
            "serialNumber": format(cert.serial_number, "x")}


def _same_hash(a: dict, b: dict) -> bool:
    """Hash data equality: hex compared case-insensitively, serial numbers without leading zeros."""
    return (a["hashAlgorithm"] == b["hashAlgorithm"]
            and a["issuerNameHash"].lower() == b["issuerNameHash"].lower()
            and a["issuerKeyHash"].lower() == b["issuerKeyHash"].lower()
            and a["serialNumber"].lower().lstrip("0") == b["serialNumber"].lower().lstrip("0"))


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (_exceptions.InvalidSignature, ValueError, TypeError):   # bad signature, unsupported algorithm
        return False
    return True


@dataclass(frozen=True)
class InstallResult:
    """``status`` Accepted / Rejected / Failed (the spec enum); ``reason`` a 2.0.1 reasonCode; ``detail`` text."""
    status: str
    reason: str = ""
    detail: str = ""


@dataclass(frozen=True)
class _Replacement:
    """What installing a new CSMS root changes under AdditionalRootCertificateCheck (see _replacement_plan)."""
    delete: list[int] = field(default_factory=list)       # entries removed (the previous fallback)
    mark: list[int] = field(default_factory=list)         # entries that become the fallback (the current root)
    configured: x509.Certificate | None = None            # the configured root copied in as the fallback


def _fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _file_name(cert_type: str, cert: x509.Certificate) -> str:
    return f"{cert_type}-{_fingerprint(cert)[:32]}.pem"


@dataclass(frozen=True)
class _Entry:
    id: int
    cert_type: str
    cert: x509.Certificate


class CertificateStore:
    """CA certificates by type, on disk and indexed in SQLite (see the module docstring).

    ``max_entries``: the capacity (2.0.1 SecurityCtrlr.CertificateEntries maxLimit, 1.6 CertificateStoreMaxLength).
    ``station_chain``: the station's own certificate chain (leaf first): the leaf is never deletable (2.0.1
    M04.FR.06, 1.6 M04.FR.05), the chain resolves issuers for hash data. ``v2g_chains()``: the station's installed
    V2G certificate chains (leaf first, A02/A03 V2GCertificate): reported as V2GCertificateChain (M03.FR.05), never
    deletable (M04.FR.06). ``on_change(cert_type, count)``: called after a change, e.g. to drop cached TLS contexts.

    ``root_check()``: AdditionalRootCertificateCheck (2.0.1 M05.FR.09-16, 1.6 whitepaper M05.FR.08-13): one CSMS
    root plus a temporary fallback; a new root must be signed by the current one (:meth:`install`).
    ``configured_roots()``: the CSMS roots of the station configuration (``ca_file``), the current root as long as
    none is installed."""

    def __init__(self, db, directory: Path, *, max_entries: Callable[[], int] = lambda: 20,
                 station_chain: Callable[[], list[x509.Certificate]] = list,
                 v2g_chains: Callable[[], list[list[x509.Certificate]]] = list,
                 now: Callable[[], float] | None = None,
                 on_change: Callable[[str, int], None] | None = None,
                 root_check: Callable[[], bool] = lambda: False,
                 configured_roots: Callable[[], list[x509.Certificate]] = list) -> None:
        self._db = db
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._max_entries = max_entries
        self._station_chain = station_chain
        self._v2g_chains = v2g_chains
        self._now = now or (lambda: dt.datetime.now(dt.timezone.utc).timestamp())
        self.on_change = on_change
        self._root_check = root_check
        self._configured_roots = configured_roots
        self._server_cert: x509.Certificate | None = None
        self._recover()

    # ---- reading ----------------------------------------------------------------------------------------------
    def _entries(self, cert_type: str | None = None) -> list[_Entry]:
        sql = "SELECT id, cert_type, file FROM certificates"
        rows = self._db.query(sql + (" WHERE cert_type = ? ORDER BY id" if cert_type else " ORDER BY id"),
                              (cert_type,) if cert_type else ())
        out = []
        for row in rows:
            try:
                cert = x509.load_pem_x509_certificate((self.directory / row[2]).read_bytes())
            except (OSError, ValueError) as exc:
                log.error("certificate file %s unreadable: %s", row[2], exc)
                continue
            out.append(_Entry(int(row[0]), row[1], cert))
        return out

    def __len__(self) -> int:
        return int(self._db.query("SELECT COUNT(*) FROM certificates")[0][0])

    def roots(self, cert_type: str) -> list[x509.Certificate]:
        """The installed certificates of ``cert_type`` (1.6 or 2.0.1 name), oldest first."""
        return [e.cert for e in self._entries(canonical_type(cert_type))]

    @property
    def root_check(self) -> bool:
        """AdditionalRootCertificateCheck is true."""
        return self._root_check()

    def _fallback_ids(self) -> set[int]:
        return {int(r[0]) for r in self._db.query("SELECT id FROM certificates WHERE fallback = 1")}

    def csms_roots(self) -> list[x509.Certificate]:
        """The CSMS roots a TLS connection trusts first: the installed CSMSRootCertificates except the fallback."""
        fallback = self._fallback_ids()
        return [e.cert for e in self._entries("CSMSRootCertificate") if e.id not in fallback]

    def fallback_root(self) -> x509.Certificate | None:
        """The old CSMS root kept as fallback after a new one was installed (M05.FR.12 / 1.6 M05.FR.11), or None."""
        fallback = self._fallback_ids()
        return next((e.cert for e in self._entries("CSMSRootCertificate") if e.id in fallback), None)

    def remove_fallback(self) -> bool:
        """M05.FR.13 (1.6 M05.FR.12): a connection with the new CSMS root succeeded, the fallback goes. True if one
        was removed."""
        rows = self._db.query("SELECT id, file FROM certificates WHERE fallback = 1")
        if not rows:
            return False
        with self._db.tx() as conn:
            conn.execute("DELETE FROM certificates WHERE fallback = 1")
        for row in rows:
            (self.directory / row[1]).unlink(missing_ok=True)
        fsync_dir(self.directory)
        log.info("the fallback CSMS root certificate was removed: the connection with the new root succeeded")
        self._changed("CSMSRootCertificate")
        return True

    def _issuer_of(self, cert: x509.Certificate, pool: Iterable[x509.Certificate]) -> x509.Certificate:
        """The issuer among ``pool`` (installed + station chain); a self-issued or unresolvable one: itself."""
        for candidate in pool:
            if candidate is not cert and _issued_by(cert, candidate):
                return candidate
        return cert

    def _pool(self) -> list[x509.Certificate]:
        return ([e.cert for e in self._entries()] + list(self._station_chain())
                + [c for chain in self._v2g_chains() for c in chain])

    def _own_certificates(self) -> list[x509.Certificate]:
        """What DeleteCertificate refuses as the station's own: the station certificate (its sub-CAs are CAs of the
        CPO hierarchy) and every certificate of an installed V2G chain (the SECC leaf and the sub-CAs it presents
        to the EV: without them the chain breaks; M04.FR.03 allows the refusal)."""
        return list(self._station_chain())[:1] + [c for chain in self._v2g_chains() for c in chain]

    def _v2g_ids(self, pool: list[x509.Certificate], algorithm: str) -> list[dict]:
        """M03.FR.05: one CertificateHashDataChainType per installed V2G chain: the V2G Charging Station (SECC)
        certificate, its sub-CAs as childCertificateHashData (a root in the chain is left out: it is installed
        with M05, M03 remark)."""
        out = []
        for chain in self._v2g_chains():
            leaf, subs = chain[0], [c for c in chain[1:] if c.issuer != c.subject]
            entry = {"certificateType": "V2GCertificateChain",
                     "certificateHashData": hash_data(leaf, self._issuer_of(leaf, pool), algorithm)}
            if subs:
                entry["childCertificateHashData"] = [hash_data(c, self._issuer_of(c, pool), algorithm)
                                                     for c in subs[:4]]   # schema: 1..4 children
            out.append(entry)
        return out

    @property
    def capacity(self) -> int:
        """How many certificates the store holds at most (CertificateStoreMaxLength / CertificateEntries)."""
        return self._max_entries()

    def installed(self, algorithm: str = "SHA256") -> list[tuple[str, x509.Certificate, dict]]:
        """(type, certificate, hash data) of every installed certificate, oldest first: for tools
        (``secure-cp certs``)."""
        pool = self._pool()
        return [(e.cert_type, e.cert, hash_data(e.cert, self._issuer_of(e.cert, pool), algorithm))
                for e in self._entries()]

    def ids(self, types: Iterable[str] | None = None, algorithm: str = "SHA256") -> list[dict]:
        """CertificateHashDataChainType entries (2.0.1 M03.FR.04) of the installed certificates of ``types`` (all
        when None). Root types have no children; each V2GCertificateChain has its sub-CAs as children (M03.FR.05)."""
        wanted = {canonical_type(t) for t in types} if types else set(ID_TYPES)
        pool = self._pool()
        out = [{"certificateType": e.cert_type,
                "certificateHashData": hash_data(e.cert, self._issuer_of(e.cert, pool), algorithm)}
               for e in self._entries() if e.cert_type in wanted]
        if "V2GCertificateChain" in wanted:
            out += self._v2g_ids(pool, algorithm)
        return out

    # ---- install ----------------------------------------------------------------------------------------------
    def install(self, cert_type: str, pem: str) -> InstallResult:
        """M05: Rejected when the text is no single valid certificate, is expired / not yet valid, is not a CA, a
        self-issued one's signature does not verify (2.0.1 M05.FR.07, 1.6 M05.FR.06), or the store is full
        (M05.FR.06 / 1.6 M05.FR.03); the same certificate again replaces itself (M05.FR.17); Failed when it
        cannot be written (M05.FR.03 / 1.6 M05.FR.04); else Accepted (M05.FR.02)."""
        cert_type = canonical_type(cert_type)
        if cert_type not in INSTALL_TYPES:
            return InstallResult("Rejected", "InvalidCertificate", f"cannot install a {cert_type}")
        try:
            certs = x509.load_pem_x509_certificates(pem.encode())
        except ValueError as exc:
            return InstallResult("Rejected", "InvalidCertificate", f"not a PEM certificate: {exc}")
        if len(certs) != 1:
            return InstallResult("Rejected", "InvalidCertificate", "exactly one certificate expected")
        cert = certs[0]
        now = self._now()
        if cert.not_valid_before_utc.timestamp() > now:
            return InstallResult("Rejected", "InvalidCertificate", "certificate not yet valid")
        if cert.not_valid_after_utc.timestamp() < now:
            return InstallResult("Rejected", "CertificateExpired", "certificate expired")
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            return InstallResult("Rejected", "InvalidCertificate", "not a CA certificate (basicConstraints)")
        if cert.issuer == cert.subject and not _issued_by(cert, cert):
            return InstallResult("Rejected", "InvalidCertificate", "self-signature does not verify")
        fingerprint = _fingerprint(cert)
        existing = self._db.query("SELECT id, fallback FROM certificates WHERE cert_type = ? AND fingerprint = ?",
                                  (cert_type, fingerprint))
        replacing = cert_type == "CSMSRootCertificate" and self._root_check()
        if existing and not (replacing and existing[0][1]):   # M05.FR.17: replace = keep the identical certificate
            return InstallResult("Accepted")
        plan = _Replacement()
        if replacing:
            refused, plan = self._replacement_plan(cert)
            if refused is not None:
                return refused
        added = 1 + (plan.configured is not None)
        if len(self) - len(plan.delete) + added > self._max_entries():
            return InstallResult("Rejected", "OutOfStorage", "certificate store full")
        name = _file_name(cert_type, cert)
        try:
            files = [self._db.query("SELECT file FROM certificates WHERE id = ?", (i,))[0][0] for i in plan.delete]
            new_files = {name: cert}
            if plan.configured is not None:
                new_files[_file_name(cert_type, plan.configured)] = plan.configured
            for file, c in new_files.items():
                write_atomically(self.directory / file, c.public_bytes(serialization.Encoding.PEM))
            with self._db.tx() as conn:
                for entry_id in plan.delete:
                    conn.execute("DELETE FROM certificates WHERE id = ?", (entry_id,))
                for entry_id in plan.mark:
                    conn.execute("UPDATE certificates SET fallback = 1 WHERE id = ?", (entry_id,))
                for file, c in new_files.items():
                    conn.execute("INSERT INTO certificates (cert_type, fingerprint, file, installed_at, fallback) "
                                 "VALUES (?, ?, ?, ?, ?)", (cert_type, _fingerprint(c), file, now, int(c is not cert)))
            for old in set(files) - set(new_files):
                (self.directory / old).unlink(missing_ok=True)
        except Exception as exc:                          # OSError, StoreError: nothing installed
            log.error("installing a %s failed: %s", cert_type, exc)
            return InstallResult("Failed", "WriteError", str(exc)[:200])
        log.info("installed %s %s (serial %x)", cert_type, cert.subject.rfc4514_string(), cert.serial_number)
        self._changed(cert_type)
        return InstallResult("Accepted")

    def _replacement_plan(self, cert: x509.Certificate) -> tuple[InstallResult | None, "_Replacement"]:
        """AdditionalRootCertificateCheck true (2.0.1 M05.FR.09-12, 1.6 M05.FR.08-11): the new CSMS root replaces
        the current one (the installed one, else the configured ``ca_file`` root) and must be signed by it, else
        Rejected (M05.FR.11 / 1.6 M05.FR.10). The current one becomes the fallback: an installed one is marked, the
        configured one that signed it is copied into the store as the fallback (with a CSMS root installed, the
        ``ca_file`` is not trusted any more); a previous fallback is deleted (one root plus one fallback at most)."""
        fallback = self._fallback_ids()
        installed = [e for e in self._entries("CSMSRootCertificate") if e.id not in fallback]
        current = [e.cert for e in installed] or list(self._configured_roots())
        signer = next((old for old in current if _issued_by(cert, old)), None)
        if current and signer is None:
            log.warning("refused a new CSMS root certificate not signed by the current one "
                        "(AdditionalRootCertificateCheck)")
            return InstallResult("Rejected", "InvalidCertificate",
                                 "not signed by the current CSMS root (AdditionalRootCertificateCheck)"), _Replacement()
        return None, _Replacement(delete=sorted(fallback), mark=[e.id for e in installed],
                                  configured=signer if not installed else None)

    # ---- delete -----------------------------------------------------------------------------------------------
    def set_server_certificate(self, der: bytes | None) -> None:
        """The CSMS server certificate of the current TLS connection (None: not connected over TLS): the CSMS
        root that issued it is "in use" (1.6 M04.FR.06) and cannot be deleted."""
        self._server_cert = x509.load_der_x509_certificate(der) if der else None

    def delete(self, hash_data_: dict) -> str:
        """M04: Accepted after deleting the matching certificate (M04.FR.02), NotFound (M04.FR.04), Failed for the
        station's own certificate (2.0.1 M04.FR.06, 1.6 M04.FR.05) and its V2G chain (:meth:`_own_certificates`), for
        the CSMS root that validated the current connection (1.6 M04.FR.06; 2.0.1 M04.FR.03 allows the refusal) and
        when deleting fails."""
        algorithm = hash_data_["hashAlgorithm"]
        pool = self._pool()
        for cert in self._own_certificates():
            if _same_hash(hash_data(cert, self._issuer_of(cert, pool), algorithm), hash_data_):
                log.warning("refused to delete the station's own certificate %s", cert.subject.rfc4514_string())
                return "Failed"
        for entry in self._entries():
            if not _same_hash(hash_data(entry.cert, self._issuer_of(entry.cert, pool), algorithm), hash_data_):
                continue
            if entry.cert_type == "CSMSRootCertificate" and self._server_cert is not None \
                    and _issued_by(self._server_cert, entry.cert):
                log.warning("refused to delete the CSMS root certificate in use")
                return "Failed"
            try:
                name = self._db.query("SELECT file FROM certificates WHERE id = ?", (entry.id,))[0][0]
                with self._db.tx() as conn:
                    conn.execute("DELETE FROM certificates WHERE id = ?", (entry.id,))
                (self.directory / name).unlink(missing_ok=True)
                fsync_dir(self.directory)
            except Exception as exc:
                log.error("deleting a %s failed: %s", entry.cert_type, exc)
                return "Failed"
            log.info("deleted %s %s", entry.cert_type, entry.cert.subject.rfc4514_string())
            self._changed(entry.cert_type)
            return "Accepted"
        return "NotFound"

    # ---- internals --------------------------------------------------------------------------------------------
    def _changed(self, cert_type: str) -> None:
        if self.on_change is not None:
            self.on_change(cert_type, len(self))

    def _recover(self) -> None:
        """After a power cut: drop rows whose file is gone, and files no row names (an unfinished install)."""
        rows = self._db.query("SELECT id, file FROM certificates")
        named = set()
        for row in rows:
            if (self.directory / row[1]).is_file():
                named.add(row[1])
            else:
                log.error("certificate file %s missing: dropped from the index", row[1])
                with self._db.tx() as conn:
                    conn.execute("DELETE FROM certificates WHERE id = ?", (row[0],))
        for path in self.directory.iterdir():
            if path.name not in named and (path.suffix in (".pem", ".tmp")):
                path.unlink(missing_ok=True)


