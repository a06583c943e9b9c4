"""The station's own certificates: key pair, CSR, and the signed chain (OCPP 2.0.1 A02/A03, 1.6 Security Whitepaper
ed. 3 A02/A03). Version-neutral: the adapters turn it into SignCertificate / CertificateSigned of their version.

Flow. :meth:`CertSigning.start` generates a new key pair in the key backend (A02.FR.02; the private key never leaves
it, A02.FR.05) and returns a PKCS#10 CSR, PEM (A02.FR.03), subject O = OrganizationName / CpoName (1.6 A02.FR.13) and
CN = the station identity (A00 Certificate Properties), or ISO15118Ctrlr.SeccId for a V2GCertificate (A02 alternative
scenario). The request is kept in the store as *pending* (key label, CSR). :meth:`CertSigning.sent` records the CSMS's
answer: Accepted arms the back-off (A02.FR.17/18: CertSigningWaitMinimum, doubled each time, at most
CertSigningRepeatTimes resends, A02.FR.19); :meth:`due` hands back the CSR to send again. :meth:`install` checks a
CertificateSigned chain (A02.FR.06): the size limit (A02.FR.16), PEM, the leaf's public key is the pending key, the
leaf is no CA, its CN is the one asked for, it has not expired, and leaf + intermediates chain to a trusted root of
the type (CSMSRootCertificate for the station certificate: the CPO hierarchy; V2GRootCertificate for V2G). Invalid:
Rejected, discarded, security event InvalidChargingStationCertificate (1.6: InvalidChargePointCertificate, mapped by
securityevents), and no back-off until the CSMS triggers again (A02.FR.07/20). Valid: the chain is written atomically
to ``<data_dir>/station-certs/`` and becomes the *active* certificate of its type; the one it replaces is kept as
*previous* until a connection with the new one succeeds (:meth:`confirm_in_use`, A02.FR.10), then its key and file
are deleted. The newest certificate whose notBefore has passed is used (A02.FR.08/09): :meth:`credential`.

Renewal (A03.FR.02): :meth:`renewal_at` is ``renew_before`` seconds (default 30 days, "one month"; station
configuration ``[security] renew_days``) before the current station certificate expires.

Blocking work: key generation and the CSR signature (:meth:`CertSigning.generate`) run in a worker thread: the
adapter prepares the request, asks the runtime to run the generation (``Hooks.run_blocking``) and gets the result
back as an event (:meth:`CertSigning.finish`, then SignCertificate). A TPM takes ~100 ms per key operation.
"""
from __future__ import annotations

import logging
import secrets
from decimal import Decimal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import lazy
from .keys.base import KeyAlgorithm, KeyBackend, KeyBackendError, KeyRef

x509 = lazy.module("cryptography.x509")
hashes = lazy.module("cryptography.hazmat.primitives.hashes")
serialization = lazy.module("cryptography.hazmat.primitives.serialization")

__all__ = ["CertSigning", "CertSigningError", "CsrJob", "SignResult", "station_credential", "STATION_CERTIFICATE", "V2G_CERTIFICATE",
           "SIGNABLE_TYPES", "RENEW_BEFORE_DEFAULT", "INVALID_CERTIFICATE_EVENT"]

log = logging.getLogger("secure_cp.security.certsigning")

STATION_CERTIFICATE = "ChargingStationCertificate"
V2G_CERTIFICATE = "V2GCertificate"
SIGNABLE_TYPES = (STATION_CERTIFICATE, V2G_CERTIFICATE)
#: Trust anchors of each type (certstore names): the CPO hierarchy under the CSMS root, the V2G hierarchy.
_ROOT_TYPE = {STATION_CERTIFICATE: "CSMSRootCertificate", V2G_CERTIFICATE: "V2GRootCertificate"}
#: A03.FR.02: renew when the certificate "will expire in one month".
RENEW_BEFORE_DEFAULT = 30 * 86400.0
#: 2.0.1 name; the 1.6 adapter sends it as InvalidChargePointCertificate (securityevents.NAMES_16).
INVALID_CERTIFICATE_EVENT = "InvalidChargingStationCertificate"
_MAX_BACKOFF_DOUBLINGS = 30


def _floats(value):
    """The store keeps JSON numbers exactly (Decimal); times here are float seconds."""
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    return value


class CertSigningError(Exception):
    """A CSR cannot be made (no organization name, key backend unusable): the trigger is answered Rejected."""


@dataclass(frozen=True)
class CsrJob:
    """One CSR to make (CertSigning.prepare): the certificate type, the new key's label and the subject."""
    cert_type: str
    label: str
    cn: str
    org: str


@dataclass(frozen=True)
class SignResult:
    """The answer to CertificateSigned: ``status`` Accepted / Rejected, ``detail`` why (for the log and statusInfo),
    ``switch_now`` True when the new certificate is valid already (reconnect with it, A02.FR.08)."""
    status: str
    detail: str = ""
    switch_now: bool = False


def _spki(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _is_ca(cert) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert, issuer) -> bool:
    from .certstore import _issued_by as issued_by   # one implementation of "signature verifies + names match"
    return issued_by(cert, issuer)


def _common_name(cert_or_csr) -> str | None:
    from cryptography.x509.oid import NameOID
    attrs = cert_or_csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def station_credential(chain_file: Path, key: KeyRef, label: str, *, token: str | None = None,
                       key_dir: Path | None = None):
    """The TLS client credential (security.tls) of a signed chain and its key ``label``: a software key is a PEM
    file; a token key is a tls.Pkcs11Credential (pkcs11-provider; ``token`` label, ``key_dir`` for its URI file)."""
    from . import tls
    if key.backend == "software":
        return tls.SoftwareCredential(chain_file, Path(key.uri))
    if token is None or key.module is None or key_dir is None:
        raise tls.TlsConfigError(f"no PKCS#11 token configured for key {label!r}", "key_file")
    return tls.Pkcs11Credential(chain_file, label, token, Path(key.module), key_dir)


class CertSigning:
    """The station's certificates of the SIGNABLE_TYPES: pending request, active and previous (module docstring).

    ``kv``: a store namespace (persistent state); ``directory``: where the chains are written; ``backend``: opens the
    key backend (called when first needed); ``organization`` / ``common_name(cert_type)``: the CSR subject;
    ``roots(root_type)``: the trusted roots of a certstore type; ``max_chain_size``: MaxCertificateChainSize /
    CertificateSignedMaxChainSize (None: no limit); ``record_event(type, tech_info)``: the security log;
    ``configured_chain``: the certificate chain of ``[security] cert_file`` (the certificate before any A02)."""

    def __init__(self, kv, directory: Path, backend: Callable[[], KeyBackend], *,
                 organization: Callable[[], str | None], common_name: Callable[[str], str | None],
                 roots: Callable[[str], list], max_chain_size: Callable[[], int | None],
                 record_event: Callable[[str, str], None], algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
                 configured_chain: Callable[[], list] = list, renew_before: float = RENEW_BEFORE_DEFAULT) -> None:
        self._kv = kv
        self.directory = Path(directory)
        self._open_backend = backend
        self._backend: KeyBackend | None = None
        self._organization = organization
        self._common_name = common_name
        self._roots = roots
        self._max_chain_size = max_chain_size
        self._record_event = record_event
        self._algorithm = algorithm
        self._configured_chain = configured_chain
        self.renew_before = renew_before
        self._cache: dict[str, Any] = {}
        self._version = 0                                      # counts state writes (the memos below)
        self._db = kv.db
        # the answers of renewal_at / deadline, and the _version and store rollbacks they hold for (-1: none yet)
        self._renewal_memo: float | None = None
        self._renewal_version = self._renewal_rollbacks = -1
        self._deadline_memo: float | None = None
        self._deadline_version = self._deadline_rollbacks = -1
        self._cache_rollbacks = kv.db.rollbacks
        self._chains: dict[Path, tuple[int, list]] = {}

    # ---- state (a dict per certificate type in the store) ----------------------------------------------------
    # The adapters ask for deadlines on every frame, so the state is read from the store once and then kept in
    # memory (this object is its only writer); any store rollback may have taken back a write, so it forgets.
    def _cached(self, key: str) -> Any:
        rollbacks = self._db.rollbacks
        if rollbacks != self._cache_rollbacks:
            self._cache.clear()
            self._cache_rollbacks = rollbacks
        if key not in self._cache:
            self._cache[key] = self._kv.get(key)
        return self._cache[key]

    def _get(self, key: str) -> dict:
        value = self._cached(key)
        return _floats(dict(value)) if value else {}

    def _put(self, key: str, value: dict) -> None:
        self._cache.pop(key, None)
        self._version += 1
        if value:
            self._kv.set(key, value)
        else:
            self._kv.delete(key)

    def _chain_of(self, path: Path) -> list:
        """The certificates of a PEM file (leaf first), parsed again only when the file changes."""
        try:
            stamp = path.stat().st_mtime_ns
            cached = self._chains.get(path)
            if cached is None or cached[0] != stamp:
                cached = self._chains[path] = (stamp, x509.load_pem_x509_certificates(path.read_bytes()))
            return list(cached[1])
        except (OSError, ValueError):
            return []

    @property
    def backend(self) -> KeyBackend:
        if self._backend is None:
            self._backend = self._open_backend()
        return self._backend

    def pending(self, cert_type: str) -> dict | None:
        """The pending request of ``cert_type`` ({label, csr, attempt, next_at, stopped}) or None."""
        return self._get("pending").get(cert_type)

    def active(self, cert_type: str = STATION_CERTIFICATE) -> dict | None:
        """The installed certificate of ``cert_type`` ({file, label, not_before, not_after, serial}) or None."""
        return self._get("active").get(cert_type)

    def installed_chains(self, cert_type: str) -> list[list]:
        """Every installed chain of ``cert_type`` (leaf first): the active one, then the previous one kept as the
        fallback or until the active one's notBefore (2.0.1 M03.FR.05 reports them, M04.FR.06 protects them)."""
        chains = []
        for key in ("active", "previous"):
            entry = self._get(key).get(cert_type)
            chain = self._chain_of(self.directory / entry["file"]) if entry is not None else []
            if chain:
                chains.append(chain)
        return chains

    # ---- A02.FR.02/03: a new key pair and its CSR ----------------------------------------------------------
    # Three steps so that the slow one runs off the event loop (DESIGN.md rule 7): ``prepare`` (checks, in the
    # caller's thread), ``generate`` (key pair + CSR signature in the backend: blocking, any thread; a TPM takes
    # ~100 ms per operation), ``finish`` (the pending request in the store, in the caller's thread again). The
    # adapters run ``generate`` through the runtime's Hooks.run_blocking (a worker thread); ``start`` does all three
    # in the caller's thread (tools, tests).
    def prepare(self, cert_type: str, now: float) -> CsrJob:
        """What a new CSR for ``cert_type`` is made of; CertSigningError when the subject cannot be formed."""
        if cert_type not in SIGNABLE_TYPES:
            raise CertSigningError(f"cannot sign a {cert_type}")
        org = self._organization()
        cn = self._common_name(cert_type)
        if not org:   # A02 prerequisite: OrganizationName / CpoName set
            raise CertSigningError("OrganizationName (1.6: CpoName) is not set: no CSR")
        if not cn:
            raise CertSigningError(f"no common name for a {cert_type} CSR")
        label = f"{'cs' if cert_type == STATION_CERTIFICATE else 'v2g'}-{int(now)}-{secrets.token_hex(4)}"
        return CsrJob(cert_type, label, cn, org)

    def generate(self, job: CsrJob) -> str:
        """A02.FR.02/03: a new key pair ``job.label`` in the backend and its CSR (PEM). Blocking: meant for a worker
        thread. CertSigningError when the backend fails (the half-made key is deleted)."""
        from cryptography.x509.oid import NameOID
        backend = self.backend
        try:
            backend.generate(job.label, self._algorithm)
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, job.cn),
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, job.org)])
            csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(
                backend.private_key(job.label), hashes.SHA256())
        except (KeyBackendError, ValueError) as exc:
            self._delete_key(job.label)
            raise CertSigningError(f"CSR for a {job.cert_type}: {exc}") from exc
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def finish(self, job: CsrJob, pem: str) -> None:
        """Keep the generated CSR as the pending request of its type; a pending request it replaces is discarded
        (its key deleted)."""
        self.discard_pending(job.cert_type)
        pending = self._get("pending")
        pending[job.cert_type] = {"label": job.label, "csr": pem, "cn": job.cn, "attempt": 0, "next_at": None,
                                  "stopped": False}
        self._put("pending", pending)
        log.info("new %s key %s on the %s backend; CSR CN=%s O=%s", job.cert_type, job.label, self.backend.kind,
                 job.cn, job.org)

    def start(self, cert_type: str, now: float) -> str:
        """``prepare`` + ``generate`` + ``finish`` in the caller's thread: a new key pair and CSR for ``cert_type``
        (PEM text). CertSigningError when the subject cannot be formed or the backend fails."""
        job = self.prepare(cert_type, now)
        pem = self.generate(job)
        self.finish(job, pem)
        return pem

    def discard_pending(self, cert_type: str) -> None:
        """Forget the pending request of ``cert_type`` and delete its key (never an active or previous one)."""
        pending = self._get("pending")
        entry = pending.pop(cert_type, None)
        if entry is None:
            return
        self._put("pending", pending)
        if entry["label"] not in self._labels_in_use():
            self._delete_key(entry["label"])

    # ---- A02.FR.17-20: resending ----------------------------------------------------------------------------
    def sent(self, cert_type: str, status: str | None, now: float, *, wait_minimum: float,
             repeat_times: int) -> None:
        """The CSMS answered SignCertificate of ``cert_type``: "Accepted" arms the back-off (A02.FR.17/18), at most
        ``repeat_times`` resends (A02.FR.19); "Rejected" ends the request (its key is deleted); None (CALLERROR,
        timeout) is retried like Accepted, so a passing fault does not lose the request."""
        entry = self.pending(cert_type)
        if entry is None:
            return
        if status == "Rejected":
            log.warning("the CSMS rejected the SignCertificate for a %s", cert_type)
            self.discard_pending(cert_type)
            return
        if entry["stopped"] or entry["attempt"] >= repeat_times:
            entry["next_at"] = None      # A02.FR.19: no more resends until triggered
        else:
            entry["next_at"] = now + max(0.0, wait_minimum) * 2.0 ** min(entry["attempt"], _MAX_BACKOFF_DOUBLINGS)
        self._update_pending(cert_type, entry)

    def _update_pending(self, cert_type: str, entry: dict) -> None:
        pending = self._get("pending")
        pending[cert_type] = entry
        self._put("pending", pending)

    def deadline(self) -> float | None:
        """When :meth:`due` has a CSR to resend, or a new certificate becomes valid (None: nothing waits): before
        it, :meth:`due` and :meth:`switch_due` find nothing to do.

        Asked on every frame: it depends on the stored state only, so it is computed once per state change (every
        write counts ``_version`` up; a store rollback may take a write back)."""
        rollbacks = self._db.rollbacks
        if self._deadline_version == self._version and self._deadline_rollbacks == rollbacks:
            return self._deadline_memo
        times = [e["next_at"] for e in self._get("pending").values() if e.get("next_at") is not None]
        times += [e["not_before"] for e in self._get("active").values() if e.get("switch_pending")]
        result = min(times) if times else None
        self._deadline_memo, self._deadline_version, self._deadline_rollbacks = result, self._version, rollbacks
        return result

    def due(self, now: float) -> list[tuple[str, str]]:
        """(certificate type, CSR) of each request whose back-off expired (A02.FR.17); each is counted as one more
        attempt and waits for its answer (``sent``) to be armed again."""
        out = []
        for cert_type, entry in self._get("pending").items():
            if entry.get("next_at") is not None and entry["next_at"] <= now:
                entry["attempt"] += 1
                entry["next_at"] = None
                self._update_pending(cert_type, entry)
                out.append((cert_type, entry["csr"]))
        return out

    def switch_due(self, now: float) -> bool:
        """A02.FR.08: True once when an installed certificate whose notBefore was in the future becomes valid."""
        active = self._get("active")
        switched = False
        for entry in active.values():
            if entry.get("switch_pending") and entry["not_before"] <= now:
                entry["switch_pending"] = False
                switched = True
        if switched:
            self._put("active", active)
        return switched

    # ---- A02.FR.06/07/16: CertificateSigned -----------------------------------------------------------------
    def install(self, chain_pem: str, cert_type: str, now: float) -> SignResult:
        """Check and install a signed chain (module docstring). Rejected ones are logged as a security event."""
        detail = self._check(chain_pem, cert_type, now)
        if isinstance(detail, str):
            log.error("CertificateSigned for a %s rejected: %s", cert_type, detail)
            self._record_event(INVALID_CERTIFICATE_EVENT, f"{cert_type}: {detail}"[:255])
            entry = self.pending(cert_type)
            if entry is not None:            # A02.FR.20: no back-off until the CSMS triggers again
                entry.update(next_at=None, stopped=True)
                self._update_pending(cert_type, entry)
            return SignResult("Rejected", detail)
        leaf, certs = detail
        from ..fsutil import write_atomically   # the store's temp file + fsync + rename + directory fsync
        entry = self.pending(cert_type)
        assert entry is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{cert_type}-{leaf.serial_number:x}.pem"
        data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
        try:
            write_atomically(self.directory / name, data)
        except OSError as exc:
            log.error("cannot store the new %s: %s", cert_type, exc)
            return SignResult("Rejected", f"cannot store the certificate: {exc.strerror}")
        not_before = leaf.not_valid_before_utc.timestamp()
        active = self._get("active")
        previous = self._get("previous")
        old = active.get(cert_type)
        if cert_type == STATION_CERTIFICATE and self.using_fallback():
            # the station runs on the previous certificate because the active one never connected (A02.FR.28): the
            # working one stays the fallback, the failed one goes
            failed, old = old, previous.pop(cert_type, None)
            if failed is not None:
                self._forget(failed)
            self._cache.pop("fallback", None)
            self._version += 1
            self._kv.delete("fallback")
        if old is not None:
            stale = previous.get(cert_type)   # an older fallback never confirmed: the newer one replaces it
            if stale is not None:
                self._forget(stale)
            previous[cert_type] = old
        active[cert_type] = {"file": name, "label": entry["label"], "not_before": not_before,
                             "not_after": leaf.not_valid_after_utc.timestamp(), "serial": f"{leaf.serial_number:x}",
                             "switch_pending": not_before > now}
        pending = self._get("pending")
        pending.pop(cert_type, None)
        self._put("pending", pending)
        self._put("active", active)
        self._put("previous", previous)
        log.info("installed the new %s (serial %x, valid %s .. %s)", cert_type, leaf.serial_number,
                 leaf.not_valid_before_utc, leaf.not_valid_after_utc)
        return SignResult("Accepted", switch_now=not_before <= now)

    def _check(self, chain_pem: str, cert_type: str, now: float):
        """(leaf, certificates) of a valid chain, or the reason (str) it is not."""
        limit = self._max_chain_size()
        if limit and len(chain_pem) > limit:           # A02.FR.16
            return f"certificate chain of {len(chain_pem)} characters exceeds MaxCertificateChainSize {limit}"
        entry = self.pending(cert_type)
        if entry is None:
            return f"no signing request for a {cert_type} is pending"
        try:
            certs = x509.load_pem_x509_certificates(chain_pem.encode())
        except ValueError as exc:
            return f"not a PEM certificate chain: {exc}"
        leaf = certs[0]
        try:
            pending_key = self.backend.public_key_der(entry["label"])
        except KeyBackendError as exc:
            return f"the pending key is gone: {exc}"
        if _spki(leaf.public_key()) != pending_key:
            return "the certificate is not for the key of the pending CSR"
        if _is_ca(leaf):
            return "the certificate is a CA certificate"
        if _common_name(leaf) != entry.get("cn"):
            return f"subject CN {_common_name(leaf)!r} is not {entry.get('cn')!r}"
        for cert in certs:
            if cert.not_valid_after_utc.timestamp() < now:
                return f"certificate {cert.subject.rfc4514_string()} expired"
        for cert, issuer in zip(certs, certs[1:]):
            if not _is_ca(issuer) or not _issued_by(cert, issuer):
                return f"{cert.subject.rfc4514_string()} is not issued by the next certificate of the chain"
            if issuer.not_valid_before_utc.timestamp() > now:
                return f"CA certificate {issuer.subject.rfc4514_string()} not yet valid"
        roots = self._roots(_ROOT_TYPE[cert_type])
        top = certs[-1]
        if not any(_issued_by(top, root) or _spki(top.public_key()) == _spki(root.public_key()) for root in roots):
            return f"the chain does not lead to an installed {_ROOT_TYPE[cert_type]}"
        return leaf, certs

    # ---- using it ---------------------------------------------------------------------------------------------
    def credential(self, now: float, cert_type: str = STATION_CERTIFICATE) -> tuple[Path, KeyRef, str] | None:
        """(chain file, key reference, key label) of the certificate to use now: the active one once its notBefore has
        passed (A02.FR.08), else the previous one; the previous one first while the station falls back to it
        (A02.FR.28, :meth:`round_failed`); None: none installed or falling back to the configured files."""
        order: tuple[str, ...] = ("active", "previous")
        if cert_type == STATION_CERTIFICATE and self.using_fallback():
            order = ("previous",)       # none: the configured certificate ([security] cert_file) is the fallback
        for key in order:
            entry = self._get(key).get(cert_type)
            if entry is not None and entry["not_before"] <= now and (self.directory / entry["file"]).is_file():
                try:
                    return self.directory / entry["file"], self.backend.key_ref(entry["label"]), entry["label"]
                except KeyBackendError as exc:
                    log.error("key %s of the %s %s unusable: %s", entry["label"], key, cert_type, exc)
        return None

    def in_use_is_new(self, now: float) -> bool:
        """Whether :meth:`credential` gives the active (newest) certificate."""
        entry = self.active()
        return entry is not None and entry["not_before"] <= now and not self.using_fallback()

    # ---- A02.FR.28/10/29: the new certificate does not work -------------------------------------------------
    # Errata 2.0.1 ed. 3 (A02.FR.28, A03.FR.24): when the station cannot connect to any entry of
    # NetworkConfigurationPriority with the new client certificate, it falls back to the old one (B10.FR.07) or
    # alternates between old and new after each round of all entries (B10.FR.08). This station's connection plan
    # wraps around (B10.FR.08), so it alternates: each failed round switches between the two. Whichever connects
    # first stays and the other is discarded (A02.FR.10); a discarded new one is reported (A02.FR.29,
    # DiscardedRenewedClientCertificate). The 1.6 whitepaper (A02.FR.10: "MAY discard the old certificate" once
    # the new one works) says nothing about a failing new one: the same rule applies to both versions.
    def using_fallback(self) -> bool:
        """True while the previous station certificate is used instead of the new one (A02.FR.28)."""
        return bool(self._cached("fallback"))

    def has_fallback(self, now: float) -> bool:
        """Whether a new station certificate in use, that has not connected yet, has one to fall back to: the previous
        signed one, else the configured one ([security] cert_file)."""
        active = self.active()
        return (active is not None and active["not_before"] <= now and not active.get("confirmed")
                and (self._get("previous").get(STATION_CERTIFICATE) is not None or bool(self._configured_chain())))

    def round_failed(self, now: float) -> bool:
        """No connection with any network profile using the station certificate in use (A02.FR.28): switch between
        the new and the previous certificate. True when the certificate to use changed (drop cached TLS contexts)."""
        if not self.has_fallback(now):
            return False
        fallback = not self.using_fallback()
        self._cache.pop("fallback", None)
        self._version += 1
        self._kv.set("fallback", fallback)
        if fallback:
            log.warning("no connection with the new station certificate %s: falling back to the previous one "
                        "(A02.FR.28)", self.active()["serial"])
        else:
            log.warning("no connection with the previous station certificate either: trying the new one %s again",
                        self.active()["serial"])
        return True

    def confirm_in_use(self, now: float) -> None:
        """A connection with a station certificate succeeded (A02.FR.10): the other one is deleted, key included. When
        it was the previous one (fallback, A02.FR.28), the new one is discarded and reported (A02.FR.29)."""
        previous = self._get("previous")
        old = previous.get(STATION_CERTIFICATE)
        if self.using_fallback():
            self._cache.pop("fallback", None)
            self._version += 1
            self._kv.delete("fallback")
            active = self._get("active")
            new = active.pop(STATION_CERTIFICATE, None)
            if new is None:
                return
            if old is not None:
                active[STATION_CERTIFICATE] = previous.pop(STATION_CERTIFICATE)
            self._put("active", active)
            self._put("previous", previous)
            self._forget(new)
            kept = f"serial {old['serial']}" if old is not None else "the configured certificate"
            log.error("no connection with the new station certificate %s: discarded, %s stays in use (A02.FR.10)",
                      new["serial"], kept)
            self._record_event("DiscardedRenewedClientCertificate",     # A02.FR.29
                               f"new ChargingStationCertificate serial {new['serial']} discarded: no connection "
                               f"with it; {kept} in use")
            return
        if not self.in_use_is_new(now):
            return
        active = self._get("active")
        if not active[STATION_CERTIFICATE].get("confirmed"):
            active[STATION_CERTIFICATE]["confirmed"] = True     # it connected once: no fallback from it any more
            self._put("active", active)
        if old is None:
            return
        previous.pop(STATION_CERTIFICATE)
        self._forget(old)
        self._put("previous", previous)
        log.info("the new station certificate works: previous certificate %s and its key deleted", old["serial"])

    def _forget(self, entry: dict) -> None:
        (self.directory / entry["file"]).unlink(missing_ok=True)
        if entry["label"] not in self._labels_in_use(exclude=entry):
            self._delete_key(entry["label"])

    def _labels_in_use(self, exclude: dict | None = None) -> set[str]:
        labels = set()
        for key in ("active", "previous"):
            labels |= {e["label"] for e in self._get(key).values() if e is not exclude and e != exclude}
        return labels

    def _delete_key(self, label: str) -> None:
        try:
            self.backend.delete(label)
        except KeyBackendError as exc:
            log.warning("could not delete key %s: %s", label, exc)

    # ---- A03: renewal -------------------------------------------------------------------------------------------
    def current_chain(self, now: float) -> list:
        """The station certificate chain in use (leaf first): the installed one, else the configured one."""
        cred = self.credential(now)
        if cred is not None:
            chain = self._chain_of(cred[0])
            if chain:
                return chain
        return list(self._configured_chain())

    def renewal_at(self, now: float) -> float | None:
        """A03.FR.02: when the station certificate is due for renewal (``renew_before`` before it expires); None
        without a certificate, while a request is pending, or while a new certificate waits for its notBefore.

        Asked on every frame for the adapters' deadlines: unless the station certificate in use can be the previous
        one (no active one, a previous one kept: then the answer depends on ``now``, see :meth:`credential`), the
        answer depends on the stored state and the configured certificate only, so it is computed once per state
        change."""
        rollbacks = self._db.rollbacks
        if self._renewal_version == self._version and self._renewal_rollbacks == rollbacks:
            return self._renewal_memo
        result = self._renewal_at(now)
        if self.active() is not None or self._get("previous").get(STATION_CERTIFICATE) is None:
            self._renewal_memo, self._renewal_version, self._renewal_rollbacks = result, self._version, rollbacks
        return result

    def _renewal_at(self, now: float) -> float | None:
        if self.pending(STATION_CERTIFICATE) is not None:
            return None
        active = self.active()
        if active is not None:
            if active.get("switch_pending"):
                return None
            expiry = active["not_after"]
        else:
            chain = self.current_chain(now)
            if not chain:
                return None
            expiry = chain[0].not_valid_after_utc.timestamp()
        if _floats(self._cached("renewal_started_for")) == expiry:   # tried once for this certificate: the CSMS decides now
            return None
        return expiry - self.renew_before

    def renewal_started(self, now: float) -> None:
        """Record that A03 renewal was started for the current certificate: a Rejected SignCertificate or an invalid
        answer does not restart it in a loop; a TriggerMessage (A02) still can."""
        active = self.active()
        chain = [] if active is not None else self.current_chain(now)
        expiry = active["not_after"] if active is not None else (
            chain[0].not_valid_after_utc.timestamp() if chain else None)
        if expiry is not None:
            self._cache.pop("renewal_started_for", None)
            self._version += 1
            self._kv.set("renewal_started_for", expiry)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None
