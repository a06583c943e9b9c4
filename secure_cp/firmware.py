"""Secure firmware update: 2.0.1 UpdateFirmware + FirmwareStatusNotification (Part 2 L01) and 1.6 SignedUpdateFirmware +
SignedFirmwareStatusNotification (Security Whitepaper edition 3, L01).

Version-neutral. The protocol adapters ask ``FirmwareUpdates.request()`` what to answer, and get every status back
through the ``report(status, request_id)`` callback, on the event loop and never from inside ``request()`` (so the
response goes out before the first notification).

* Before accepting (L01.FR.21/22, 1.6 L01.FR.23/24): the signingCertificate must be issued directly by one of the
  manufacturer roots (no intermediates: L01 remark) and be valid now; otherwise InvalidCertificate and the security
  event InvalidFirmwareSigningCertificate (L01.FR.02). A request without signingCertificate and signature is no
  secure update: Rejected (TC_L_18_CS).
* Revocation (Part 2 A00 §1.5 / whitepaper §2.6.3: "online verification" for the firmware signing certificate): the
  runtime holds the request until ``check_revocation`` has asked the OCSP responder of the signer's
  authorityInfoAccess (RFC 6960 over HTTP, in a worker thread; the answer must be signed by the manufacturer root or
  its delegated responder and be current). Revoked: RevokedCertificate (1.6 L01.FR.25; the 2.0.1
  UpdateFirmwareStatusEnumType value) + InvalidFirmwareSigningCertificate. No status to be had (no responder named,
  unreachable, an answer that does not verify): ``[firmware] revocation = "ocsp-soft"`` (default) accepts with a
  warning and a security log entry, as neither version makes a reachable responder a condition and a station
  without internet must still update; "ocsp-hard" refuses with InvalidCertificate ("could not be verified", 2.0.1
  L01 step 3); "off" asks nobody. While OCSP gives no status, the CRLs of the signer's CRL distribution points are
  read (signed by the root, current) instead.
* A new request while one runs cancels it: AcceptedCanceled (L01.FR.24); nothing more is reported for the old one.
* retrieveDateTime in the future: DownloadScheduled, then the download at that time (L01.FR.13). Downloading, then
  ``retries`` more attempts ``retryInterval`` s apart, then Downloaded or DownloadFailed (L01.FR.30). HTTP(S), and
  FTP(S) in passive mode with explicit TLS for ftps (``filetransfer``; FileTransferProtocols FTP,FTPS,HTTP,HTTPS);
  another scheme, a wrong password, a missing file or a server that goes away mid-transfer fail as a download.
* The signature (base64) is verified over the entire file with SHA-256 and the certificate's key (ECDSA, or RSA-PSS /
  PKCS#1 v1.5) (L01.FR.04/12): SignatureVerified, or InvalidSignature + the security event InvalidFirmwareSignature
  (L01.FR.03). A missing signature is an invalid one (L01 step 5).
* installDateTime in the future: InstallScheduled, installed at that time (L01.FR.16). While a transaction runs the
  installation waits for it to end (L01.FR.06), reported InstallScheduled (L01.FR.34), and meanwhile the ``hold``
  callback holds the connectors without a transaction Unavailable (L01.FR.07; the runtime skips it when
  AllowNewSessionsPendingFirmwareUpdate is true). The installation starts when the last transaction has ended; the
  hold ends with a failed installation or a cancelled update, else with the reboot that activates the image.
* Installing, then the installer hook (``Installer``): a command from the configuration (e.g. RAUC or SWUpdate), or the
  simulator's, which keeps the image. It ends in InstallationFailed, InstallVerificationFailed (L01.FR.29), or a
  reboot to activate the image: InstallRebooting before it (L01.FR.15, L01.FR.32 option a), boot reason
  FirmwareUpdate, and after the boot Installed (L01.FR.28) with the security event FirmwareUpdated (L01.FR.31).
* Every status carries the request's requestId (L01.FR.10/20). The last one is kept in the store for a triggered
  FirmwareStatusNotification: Idle after Installed or when there was none, else the last one (L01.FR.25/26).
* Downloads, signature checks and the installer run in a worker thread: the event loop never waits for them.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import shlex
import shutil
import ssl
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from . import lazy

x509 = lazy.module("cryptography.x509")
_exceptions = lazy.module("cryptography.exceptions")
hashes = lazy.module("cryptography.hazmat.primitives.hashes")
ec = lazy.module("cryptography.hazmat.primitives.asymmetric.ec")
padding = lazy.module("cryptography.hazmat.primitives.asymmetric.padding")
rsa = lazy.module("cryptography.hazmat.primitives.asymmetric.rsa")
utils = lazy.module("cryptography.hazmat.primitives.asymmetric.utils")
serialization = lazy.module("cryptography.hazmat.primitives.serialization")
ocsp = lazy.module("cryptography.x509.ocsp")

from .diagnostics import http_target, redact_url
from .engine import rfc3339
from .filetransfer import FTP_SCHEMES, TransferError, ftp_download
from .security.iso15118 import responder_url
from .securityevents import SecurityEvents
from .store import KeyValue

log = logging.getLogger("secure_cp.firmware")

__all__ = ["FirmwareUpdates", "UpdateAnswer", "Installer", "CommandInstaller", "SimulatedInstaller",
           "InstallResult", "check_signing_certificate", "verify_signature", "load_roots", "Revocation",
           "check_ocsp_response", "check_crl", "revocation_status", "REVOCATION_POLICIES"]

DOWNLOAD_SCHEMES = frozenset({"http", "https"}) | FTP_SCHEMES   # FileTransferProtocols FTP,FTPS,HTTP,HTTPS
DEFAULT_RETRIES = 1              # no retries given: "left to the Charging Station"
DEFAULT_RETRY_INTERVAL = 30.0    # s, no retryInterval given
HTTP_TIMEOUT = 60.0              # s per download attempt (connect and each read)
IDLE_POLL = 1.0                  # s between checks whether the transactions have ended (L01.FR.06)
CHUNK = 1 << 16
#: Statuses after which nothing more happens for that request (the job is over).
FINAL_STATUSES = frozenset({"DownloadFailed", "InvalidSignature", "InstallationFailed", "InstallVerificationFailed",
                            "Installed", "InstallRebooting"})


@dataclass(frozen=True)
class UpdateAnswer:
    """The response status (UpdateFirmwareStatusEnumType) and, for a refusal, a reason code and its explanation."""
    status: str
    reason: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class InstallResult:
    """What an installer did: ``status`` is InstallationFailed / InstallVerificationFailed, or ``reboot`` True when
    the image is installed and a reboot activates it (Installed is then reported by the restarted station)."""
    reboot: bool = False
    status: str = "InstallationFailed"
    detail: str = ""


class Installer(Protocol):
    def install(self, image: Path, request_id: int) -> InstallResult:
        """Install ``image`` (verified already); runs in a worker thread and may take long."""
        ...


class CommandInstaller:
    """Runs the configured command (``[firmware] install_command``): ``{file}`` in it is replaced by the image's
    path, else the path is the last argument. Exit 0: installed, reboot to activate; exit 2: the installer's own
    verification refused the image (InstallVerificationFailed); anything else: InstallationFailed."""

    VERIFICATION_FAILED = 2

    def __init__(self, command: str, timeout: float = 3600.0):
        self.argv = shlex.split(command)
        if not self.argv:
            raise ValueError("firmware install command is empty")
        self.timeout = timeout

    def install(self, image: Path, request_id: int) -> InstallResult:
        argv = [a.replace("{file}", str(image)) for a in self.argv]
        if not any("{file}" in a for a in self.argv):
            argv.append(str(image))
        try:
            done = subprocess.run(argv, capture_output=True, timeout=self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return InstallResult(detail=str(exc))
        output = (done.stderr or done.stdout or b"").decode(errors="replace").strip()[-200:]
        if done.returncode == 0:
            return InstallResult(reboot=True)
        status = "InstallVerificationFailed" if done.returncode == self.VERIFICATION_FAILED else "InstallationFailed"
        return InstallResult(status=status, detail=f"exit {done.returncode}: {output}")


class SimulatedInstaller:
    """The simulator's installer: keeps the image as ``<dir>/installed.bin`` and its request as a line of
    ``<dir>/installed.log`` (what a test or a CSMS developer looks at), then asks for the activating reboot."""

    def __init__(self, directory: Path):
        self.directory = directory

    def install(self, image: Path, request_id: int) -> InstallResult:
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, self.directory / "installed.bin")
        digest = hashlib.sha256((self.directory / "installed.bin").read_bytes()).hexdigest()
        with open(self.directory / "installed.log", "a", encoding="utf-8") as f:
            f.write(f"{request_id} sha256={digest}\n")
        log.info("simulated firmware install of request %d (sha256 %s)", request_id, digest)
        return InstallResult(reboot=True)


# ---- certificates and signatures ---------------------------------------------------------------------------------
def load_roots(path: Path | None) -> list[x509.Certificate]:
    """The certificates of a PEM file (the ``[security] manufacturer_root_file``); none when not configured."""
    if path is None:
        return []
    return x509.load_pem_x509_certificates(Path(path).read_bytes())


def check_signing_certificate(pem: str, roots: list[x509.Certificate], at: dt.datetime) -> x509.Certificate:
    """The firmware signing certificate if it is valid at ``at`` and issued directly by one of ``roots`` (itself a
    valid CA certificate); ValueError saying why not (L01.FR.12: the X.509 rules; no intermediates)."""
    return _signer_and_root(pem, roots, at)[0]


def _signer_and_root(pem: str, roots: list[x509.Certificate], at: dt.datetime
                     ) -> tuple[x509.Certificate, x509.Certificate]:
    """``check_signing_certificate``, and the manufacturer root that issued the certificate (its OCSP issuer)."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise ValueError("signingCertificate is not a PEM X.509 certificate") from None
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise ValueError("signing certificate expired or not yet valid")
    if not roots:
        raise ValueError("no manufacturer root certificate installed")
    for root in roots:
        if root.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(root)
        except (ValueError, TypeError, _exceptions.InvalidSignature):
            continue
        if not root.not_valid_before_utc <= at <= root.not_valid_after_utc:
            raise ValueError("the manufacturer root is expired or not yet valid")
        try:
            if not root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                continue
        except x509.ExtensionNotFound:
            continue
        try:
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
            if not usage.digital_signature:
                raise ValueError("signing certificate's key usage excludes digitalSignature")
        except x509.ExtensionNotFound:
            pass
        return cert, root
    raise ValueError("signing certificate not issued by a manufacturer root")


def verify_signature(cert: x509.Certificate, digest: bytes, signature_b64: str | None) -> None:
    """Check the base64 ``signature`` over the file whose SHA-256 is ``digest`` with the certificate's public key:
    ECDSA, or RSA with PSS or PKCS#1 v1.5 (L01.FR.04). Raises cryptography's InvalidSignature."""
    if not signature_b64:
        raise _exceptions.InvalidSignature("no signature")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise _exceptions.InvalidSignature("signature is not base64") from None
    key = cert.public_key()
    prehashed = utils.Prehashed(hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, digest, ec.ECDSA(prehashed))
        return
    if isinstance(key, rsa.RSAPublicKey):
        try:
            key.verify(signature, digest, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO), prehashed)
        except _exceptions.InvalidSignature:
            key.verify(signature, digest, padding.PKCS1v15(), prehashed)
        return
    raise _exceptions.InvalidSignature(f"unsupported signing key {type(key).__name__}")


# ---- revocation of the signing certificate (OCSP, RFC 6960) ------------------------------------------------------
#: ``[firmware] revocation``: ask the responder of the signer's authorityInfoAccess; when no status can be had,
#: "ocsp-soft" accepts (warning + security log entry), "ocsp-hard" refuses; "off" asks nobody.
REVOCATION_POLICIES = ("ocsp-soft", "ocsp-hard", "off")
OCSP_TIMEOUT = 10.0                   # s for one OCSP request (connect and each read)
OCSP_CLOCK_SKEW = dt.timedelta(minutes=5)    # a responder's thisUpdate may be this far ahead of the station's clock
OCSP_MAX_AGE = dt.timedelta(days=7)   # a response without nextUpdate older than this is stale
OCSP_MAX_RESPONSE = 1 << 16           # bytes read from a responder at most
CRL_MAX_SIZE = 1 << 20                # bytes read from a CRL distribution point at most
#: Security log entry (vendor-specific, not critical: not pushed to the CSMS) when ocsp-soft accepts a signer whose
#: revocation status could not be had.
REVOCATION_UNKNOWN_EVENT = "FirmwareSignerRevocationUnknown"


@dataclass(frozen=True)
class Revocation:
    """The revocation status of a firmware signing certificate: ``status`` "good", "revoked" or "unknown" (no
    responder named, none reachable, or an answer that does not verify), and why."""
    status: str
    detail: str = ""


def _key_hash(public_key) -> bytes:
    """RFC 6960 KeyHash: SHA-1 over the subjectPublicKey bits (the same as the RFC 5280 method-1 key identifier)."""
    return x509.SubjectKeyIdentifier.from_public_key(public_key).digest


def _signed_by(public_key, signature: bytes, data: bytes, algorithm) -> bool:
    """Whether ``signature`` over ``data`` verifies with ``public_key`` (ECDSA, or RSA PKCS#1 v1.5 as OCSP uses)."""
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
        else:
            return False
    except _exceptions.InvalidSignature:
        return False
    return True


def _ocsp_signer(response, issuer: x509.Certificate, at: dt.datetime) -> x509.Certificate | None:
    """The certificate the response names as its signer: the issuer itself, or a delegated responder certificate in
    the response that the issuer issued with extended key usage OCSPSigning and that is valid at ``at`` (RFC 6960
    §4.2.2.2). None when neither."""
    for cert in (issuer, *response.certificates):
        if response.responder_name is not None and cert.subject != response.responder_name:
            continue
        if response.responder_key_hash is not None and _key_hash(cert.public_key()) != response.responder_key_hash:
            continue
        if cert is issuer:
            return cert
        try:
            cert.verify_directly_issued_by(issuer)
            usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (ValueError, TypeError, _exceptions.InvalidSignature, x509.ExtensionNotFound):
            continue
        if x509.ExtendedKeyUsageOID.OCSP_SIGNING in usage and \
                cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            return cert
    return None


def check_ocsp_response(der: bytes, cert: x509.Certificate, issuer: x509.Certificate, at: dt.datetime
                        ) -> Revocation:
    """What a responder's DER OCSPResponse says about ``cert`` (issued by ``issuer``) at ``at``. Believed only when
    it is successful, signed by the issuer or its delegated responder, carries a single response for this CertID,
    and is current: thisUpdate not in the future (``OCSP_CLOCK_SKEW``), nextUpdate not passed, or without nextUpdate
    at most ``OCSP_MAX_AGE`` old. Anything else is "unknown"."""
    try:
        response = ocsp.load_der_ocsp_response(der)
    except ValueError:
        return Revocation("unknown", "the answer is not an OCSP response")
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return Revocation("unknown", f"OCSP responder answered {response.response_status.name}")
    signer = _ocsp_signer(response, issuer, at)
    algorithm = response.signature_hash_algorithm
    if signer is None or algorithm is None or not _signed_by(signer.public_key(), response.signature,
                                                             response.tbs_response_bytes, algorithm):
        return Revocation("unknown", "OCSP response not signed by the issuer or its responder")
    for single in response.responses:
        try:
            expected = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, single.hash_algorithm).build()
        except ValueError:       # a CertID hash algorithm OCSP requests cannot use
            continue
        if (single.serial_number, single.issuer_name_hash, single.issuer_key_hash) != \
                (cert.serial_number, expected.issuer_name_hash, expected.issuer_key_hash):
            continue
        if single.this_update_utc > at + OCSP_CLOCK_SKEW:
            return Revocation("unknown", "OCSP response: thisUpdate is in the future")
        if (single.next_update_utc is not None and single.next_update_utc < at) or \
                (single.next_update_utc is None and at - single.this_update_utc > OCSP_MAX_AGE):
            return Revocation("unknown", "OCSP response is stale")
        if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
            reason = f" ({single.revocation_reason.name})" if single.revocation_reason is not None else ""
            return Revocation("revoked", f"revoked at {rfc3339(single.revocation_time_utc.timestamp())}{reason}")
        if single.certificate_status == ocsp.OCSPCertStatus.GOOD:
            return Revocation("good", "OCSP: good")
        return Revocation("unknown", "the OCSP responder does not know the certificate")
    return Revocation("unknown", "OCSP response is not about this certificate")


class _SourceError(Exception):
    """A revocation source (OCSP responder, CRL distribution point) that gave no usable answer."""


def _http_fetch(url: str, body: bytes | None, headers: dict[str, str], limit: int, timeout: float,
                context: ssl.SSLContext | None) -> bytes:
    """GET (``body`` None) or POST over HTTP(S), at most ``limit`` bytes of answer; _SourceError saying why not."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise _SourceError(f"{url}: {scheme}:// not supported")
    req = urllib.request.Request(url, data=body, method="GET" if body is None else "POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context if scheme == "https" else None) as resp:
            data = resp.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise _SourceError(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _SourceError(f"{url} unreachable: {getattr(exc, 'reason', exc)}") from None
    if len(data) > limit:
        raise _SourceError(f"{url}: answer too large")
    return data


def check_crl(data: bytes, cert: x509.Certificate, issuer: x509.Certificate, at: dt.datetime) -> Revocation:
    """What a CRL (DER or PEM) says about ``cert``: believed only when ``issuer`` issued and signed it and it is
    current (thisUpdate not in the future, nextUpdate present and not passed); listed -> revoked, else good."""
    try:
        crl = x509.load_der_x509_crl(data)
    except ValueError:
        try:
            crl = x509.load_pem_x509_crl(data)
        except ValueError:
            return Revocation("unknown", "the answer is not a CRL")
    if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        return Revocation("unknown", "CRL not signed by the issuer")
    if crl.last_update_utc > at + OCSP_CLOCK_SKEW:
        return Revocation("unknown", "CRL: thisUpdate is in the future")
    if crl.next_update_utc is None or crl.next_update_utc < at:
        return Revocation("unknown", "CRL is stale")
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is not None:
        return Revocation("revoked", f"revoked at {rfc3339(entry.revocation_date_utc.timestamp())} (CRL)")
    return Revocation("good", "CRL: not listed")


def _crl_urls(cert: x509.Certificate) -> list[str]:
    """The HTTP(S) URLs of the certificate's CRL distribution points."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    return [str(name.value) for point in points for name in (point.full_name or [])
            if isinstance(name, x509.UniformResourceIdentifier)]


def revocation_status(cert: x509.Certificate, issuer: x509.Certificate, at: dt.datetime, *,
                      timeout: float = OCSP_TIMEOUT, context: ssl.SSLContext | None = None) -> Revocation:
    """The revocation status of ``cert``: first the OCSP responder named in its authorityInfoAccess (HTTP POST
    application/ocsp-request, RFC 6960 Appendix A; CertID with SHA-1 as RFC 5019 responders expect; the answer
    checked by ``check_ocsp_response``), then, while that gives no status, the CRLs of its CRL distribution points
    (``check_crl``). Blocking: call it in a worker thread."""
    reasons: list[str] = []
    url = responder_url(cert)
    if url:
        body = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build().public_bytes(
            serialization.Encoding.DER)
        try:
            result = check_ocsp_response(_http_fetch(url, body, {"Content-Type": "application/ocsp-request",
                                                                  "Accept": "application/ocsp-response"},
                                                     OCSP_MAX_RESPONSE, timeout, context), cert, issuer, at)
        except _SourceError as exc:
            result = Revocation("unknown", f"OCSP responder {exc}")
        if result.status != "unknown":
            return result
        reasons.append(result.detail)
    for crl_url in _crl_urls(cert):
        try:
            result = check_crl(_http_fetch(crl_url, None, {"Accept": "application/pkix-crl"}, CRL_MAX_SIZE,
                                           timeout, context), cert, issuer, at)
        except _SourceError as exc:
            result = Revocation("unknown", f"CRL {exc}")
        if result.status != "unknown":
            return result
        reasons.append(result.detail)
    return Revocation("unknown", "; ".join(reasons) or
                      "the certificate names no OCSP responder and no CRL distribution point")


def _fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# ---- the update job ----------------------------------------------------------------------------------------------
@dataclass
class _Job:
    request_id: int
    location: str
    cert: x509.Certificate
    signature: str | None
    retrieve_at: float | None
    install_at: float | None
    attempts: int
    interval: float
    cancelled: threading.Event = field(default_factory=threading.Event)


class DownloadError(Exception):
    pass


class FirmwareUpdates:
    """The station's one firmware update at a time (both protocol versions share it).

    ``manufacturer_roots()`` gives the trusted manufacturer root certificates (certificate store and/or file);
    ``report(status, request_id)`` is called on the event loop for every status; ``reboot(request_id)`` asks the
    runtime to report InstallRebooting and reboot with boot reason FirmwareUpdate; ``idle()`` is True when no
    transaction runs; ``hold(True)`` holds the idle connectors Unavailable while the installation waits for the
    transactions (L01.FR.07), ``hold(False)`` lifts it; ``clock()`` is the station's time; ``work_dir`` holds the
    downloaded image; ``revocation`` is the ``[firmware] revocation`` policy (one of REVOCATION_POLICIES)."""

    def __init__(self, *, kv: KeyValue, security_events: SecurityEvents,
                 manufacturer_roots: Callable[[], list[x509.Certificate]], report: Callable[[str, int], None],
                 reboot: Callable[[int], None], idle: Callable[[], bool], clock: Callable[[], float],
                 installer: Installer, work_dir: Path, ssl_context: ssl.SSLContext | None = None,
                 timeout: float = HTTP_TIMEOUT, hold: Callable[[bool], None] = lambda on: None,
                 revocation: str = "ocsp-soft", ocsp_timeout: float = OCSP_TIMEOUT):
        if revocation not in REVOCATION_POLICIES:
            raise ValueError(f"firmware revocation policy must be one of {', '.join(REVOCATION_POLICIES)}")
        self.kv = kv
        self.security_events = security_events
        self.manufacturer_roots = manufacturer_roots
        self.report = report
        self.reboot = reboot
        self.idle = idle
        self.hold = hold
        self._holding = False          # hold(True) is in force (event loop only)
        self.clock = clock
        self.installer = installer
        self.work_dir = work_dir
        self.ssl_context = ssl_context
        self.timeout = timeout
        self._current: _Job | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.revocation = revocation
        self.ocsp_timeout = ocsp_timeout
        self._revocations: dict[bytes, Revocation] = {}   # check_revocation's answers, by certificate fingerprint

    # ---- the adapters' side (event loop) ------------------------------------------------------------------------
    @property
    def busy_request_id(self) -> int | None:
        return self._current.request_id if self._current is not None else None

    def trigger_status(self) -> tuple[str, int | None]:
        """What a triggered FirmwareStatusNotification reports: Idle (no requestId) when nothing was sent yet or
        the last status was Installed (L01.FR.25), else the last status sent with its requestId (L01.FR.26)."""
        last = self.kv.get("last")
        if not last or last[0] == "Installed":
            return "Idle", None
        return last[0], last[1]

    def resume(self) -> None:
        """After a boot: an update whose image was installed before the reboot is now active. Installed
        (L01.FR.28, L01.FR.32 a) and the security event FirmwareUpdated (L01.FR.31)."""
        request_id = self.kv.get("activating")
        if request_id is None:
            return
        self.kv.delete("activating")
        self.security_events.record("FirmwareUpdated", rfc3339(self.clock()), f"requestId {request_id}")
        self._status("Installed", request_id)

    def request(self, request_id: int, firmware: dict, retries: int | None,
                retry_interval: int | None) -> UpdateAnswer:
        """Decide the answer to an UpdateFirmware / SignedUpdateFirmware and, when accepted, start the job."""
        pem, signature = firmware.get("signingCertificate"), firmware.get("signature")
        if not pem:      # TC_L_18_CS: no certificate (and signature): not a secure update
            return UpdateAnswer("Rejected", "MissingSigningCert", "no signingCertificate: not a secure update")
        now = self.clock()
        try:
            cert = check_signing_certificate(pem, self.manufacturer_roots(), dt.datetime.fromtimestamp(
                now, dt.timezone.utc))
        except ValueError as exc:        # L01.FR.22 / L01.FR.02
            log.warning("UpdateFirmware %d: invalid signing certificate: %s", request_id, exc)
            self.security_events.record("InvalidFirmwareSigningCertificate", rfc3339(now), str(exc))
            return UpdateAnswer("InvalidCertificate", "InvalidCertificate", str(exc))
        refusal = self._revocation_refusal(request_id, cert, now)     # 1.6 L01.FR.25, 2.0.1 L01.FR.21
        if refusal is not None:
            return refusal
        try:
            retrieve_at = _parse_time(firmware.get("retrieveDateTime"))
            install_at = _parse_time(firmware.get("installDateTime"))
        except ValueError:
            return UpdateAnswer("Rejected", "InvalidValue", "unreadable date-time")
        job = _Job(request_id, firmware["location"], cert, signature, retrieve_at, install_at,
                   attempts=1 + max(0, DEFAULT_RETRIES if retries is None else retries),
                   interval=max(0.0, float(DEFAULT_RETRY_INTERVAL if retry_interval is None else retry_interval)))
        self._loop = asyncio.get_running_loop()
        status = "Accepted"
        if self._current is not None:                             # L01.FR.24
            self._current.cancelled.set()
            log.info("firmware update %d cancelled by request %d", self._current.request_id, request_id)
            status = "AcceptedCanceled"
            self._release()
        self.kv.delete("activating")
        self._current = job
        threading.Thread(target=self._run, args=(job,), name=f"firmware-{request_id}", daemon=True).start()
        return UpdateAnswer(status)

    # ---- revocation of the signer (the runtime asks before it hands the adapters the request) ---------------------
    def revocation_check_for(self, frame: str) -> str | None:
        """The signingCertificate of an UpdateFirmware / SignedUpdateFirmware CALL frame whose revocation status is
        to be asked before the request is answered (``check_revocation``); None for any other frame, or with
        ``[firmware] revocation = "off"``."""
        if self.revocation == "off" or '"signingCertificate"' not in frame:
            return None
        try:
            msg = json.loads(frame)
        except ValueError:
            return None
        if not (isinstance(msg, list) and len(msg) == 4 and msg[0] == 2
                and msg[2] in ("UpdateFirmware", "SignedUpdateFirmware") and isinstance(msg[3], dict)):
            return None
        fw = msg[3].get("firmware")
        pem = fw.get("signingCertificate") if isinstance(fw, dict) else None
        return pem if isinstance(pem, str) and pem else None

    async def check_revocation(self, pem: str) -> None:
        """Ask the OCSP responder (else the CRL) about the signing certificate ``pem`` in a worker thread (the loop never waits for
        the network) and keep the answer for the ``request()`` that follows. Only a certificate that passes the
        manufacturer-root check is asked about: request() refuses the others anyway."""
        roots = self.manufacturer_roots()
        at = dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc)
        try:
            cert, root = _signer_and_root(pem, roots, at)
        except ValueError:
            return
        result = await asyncio.to_thread(revocation_status, cert, root, at, timeout=self.ocsp_timeout,
                                         context=self.ssl_context)
        if len(self._revocations) >= 16:      # answers never asked for by a request (cannot grow without bound)
            self._revocations.clear()
        self._revocations[_fingerprint(cert)] = result

    def _revocation_refusal(self, request_id: int, cert: x509.Certificate, now: float) -> UpdateAnswer | None:
        """The answer for a signer that is revoked or whose status is unknown, None to go on. Revoked:
        RevokedCertificate (1.6 L01.FR.25; 2.0.1 UpdateFirmwareStatusEnumType) and InvalidFirmwareSigningCertificate
        (L01.FR.02). Unknown: ocsp-hard refuses with InvalidCertificate ("not valid or could not be verified", 2.0.1
        L01 scenario step 3) and the same event; ocsp-soft accepts with a warning and a security log entry (neither
        version requires the station to reach a responder: a station without internet must still update)."""
        if self.revocation == "off":
            return None
        result = self._revocations.pop(_fingerprint(cert), None) or Revocation("unknown", "status not asked")
        if result.status == "good":
            return None
        stamp = rfc3339(now)
        if result.status == "revoked":
            log.warning("UpdateFirmware %d: the signing certificate is revoked: %s", request_id, result.detail)
            self.security_events.record("InvalidFirmwareSigningCertificate", stamp,
                                        f"signing certificate revoked: {result.detail}")
            return UpdateAnswer("RevokedCertificate", "RevokedCertificate", result.detail)
        if self.revocation == "ocsp-hard":
            log.warning("UpdateFirmware %d: revocation status of the signing certificate unknown (%s): refused "
                        "(revocation = ocsp-hard)", request_id, result.detail)
            self.security_events.record("InvalidFirmwareSigningCertificate", stamp,
                                        f"revocation status unknown: {result.detail}")
            return UpdateAnswer("InvalidCertificate", "RevocationUnknown", result.detail)
        log.warning("UpdateFirmware %d: revocation status of the signing certificate unknown (%s): accepted "
                    "(revocation = ocsp-soft)", request_id, result.detail)
        self.security_events.record(REVOCATION_UNKNOWN_EVENT, stamp, result.detail, critical=False)
        return None

    def close(self) -> None:
        """Stop the running job (shutdown, reboot); it reports nothing more."""
        if self._current is not None:
            self._current.cancelled.set()
            self._current = None
        self._holding = False      # the engine that held the connectors goes with this boot

    def _status(self, status: str, request_id: int) -> None:
        self.kv.set("last", [status, request_id])
        self.report(status, request_id)

    def _deliver(self, job: _Job, status: str) -> None:
        """On the loop: pass a job's status on, unless the job was cancelled or replaced meanwhile."""
        if job is not self._current or job.cancelled.is_set():
            return
        if status in FINAL_STATUSES:
            self._current = None
            if status != "InstallRebooting":      # the reboot ends the hold (it is kept in memory only)
                self._release()
        if status == "InvalidSignature":                          # L01.FR.03
            self.security_events.record("InvalidFirmwareSignature", rfc3339(self.clock()),
                                        f"requestId {job.request_id}")
        if status == "InstallRebooting":                          # L01.FR.15 / L01.FR.32 a
            self.kv.set("activating", job.request_id)
            self.kv.set("last", [status, job.request_id])
            self.reboot(job.request_id)
            return
        self._status(status, job.request_id)

    def _hold_connectors(self, job: _Job) -> None:
        """On the loop: the job waits for the transactions to end, so hold the idle connectors (L01.FR.07)."""
        if job is self._current and not job.cancelled.is_set() and not self._holding:
            self._holding = True
            self.hold(True)

    def _release(self) -> None:
        if self._holding:
            self._holding = False
            self.hold(False)

    # ---- the worker thread --------------------------------------------------------------------------------------
    def _on_loop(self, fn: Callable, *args) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _post(self, job: _Job, status: str) -> None:
        self._on_loop(self._deliver, job, status)

    def _run(self, job: _Job) -> None:
        image = self.work_dir / f"firmware-{job.request_id}.bin"
        try:
            self._steps(job, image)
        except Exception:   # a bug must not leave the station "busy" for ever
            log.exception("firmware update %d failed", job.request_id)
            self._post(job, "InstallationFailed")
        finally:
            if job.cancelled.is_set():
                image.unlink(missing_ok=True)

    def _wait_until(self, job: _Job, when: float | None, status: str) -> bool:
        """Report ``status`` and wait until the station time ``when`` if it is in the future; False if cancelled."""
        if when is None or when <= self.clock():
            return not job.cancelled.is_set()
        self._post(job, status)
        while not job.cancelled.is_set():
            left = when - self.clock()
            if left <= 0:
                return True
            job.cancelled.wait(min(left, IDLE_POLL))
        return False

    def _steps(self, job: _Job, image: Path) -> None:
        if not self._wait_until(job, job.retrieve_at, "DownloadScheduled"):      # L01.FR.13
            return
        self._post(job, "Downloading")
        digest = self._download(job, image)
        if digest is None:
            return
        self._post(job, "Downloaded")
        try:
            verify_signature(job.cert, digest, job.signature)                 # L01.FR.04 / L01.FR.12
        except _exceptions.InvalidSignature as exc:
            log.warning("firmware update %d: invalid signature %s", job.request_id, exc)
            image.unlink(missing_ok=True)
            self._post(job, "InvalidSignature")
            return
        self._post(job, "SignatureVerified")
        if not self._wait_until(job, job.install_at, "InstallScheduled"):        # L01.FR.16
            return
        if not self.idle():                                                    # L01.FR.06 / L01.FR.34
            self._post(job, "InstallScheduled")
            self._on_loop(self._hold_connectors, job)                          # L01.FR.07
            while not self.idle():
                if job.cancelled.wait(IDLE_POLL):
                    return
        if job.cancelled.is_set():
            return
        self._post(job, "Installing")
        result = self.installer.install(image, job.request_id)
        image.unlink(missing_ok=True)
        if job.cancelled.is_set():
            return
        if result.reboot:
            log.info("firmware update %d installed; rebooting to activate it", job.request_id)
            self._post(job, "InstallRebooting")
        else:
            log.error("firmware update %d: %s %s", job.request_id, result.status, result.detail)
            self._post(job, result.status)

    def _download(self, job: _Job, image: Path) -> bytes | None:
        """1 + retries attempts, ``interval`` s apart; the file's SHA-256, or None (DownloadFailed posted, or
        cancelled)."""
        scheme = urllib.parse.urlsplit(job.location).scheme.lower()
        error = f"{scheme or 'no'}:// is not a supported transfer protocol"
        for attempt in range(job.attempts if scheme in DOWNLOAD_SCHEMES else 0):
            if attempt and job.cancelled.wait(job.interval):
                return None
            if job.cancelled.is_set():
                return None
            try:
                return self._fetch(job, image)
            except DownloadError as exc:
                error = str(exc)
                log.warning("firmware download %d from %s, attempt %d of %d failed: %s", job.request_id,
                            redact_url(job.location), attempt + 1, job.attempts, exc)
        if job.cancelled.is_set():
            return None
        log.error("firmware update %d: download failed: %s", job.request_id, error)
        image.unlink(missing_ok=True)
        self._post(job, "DownloadFailed")                                      # L01.FR.30
        return None

    def _fetch(self, job: _Job, image: Path) -> bytes:
        if urllib.parse.urlsplit(job.location).scheme.lower() in FTP_SCHEMES:
            return self._fetch_ftp(job, image)
        url, headers = http_target(job.location)  # credentials in the URL: HTTP Basic auth, not in the request line
        req = urllib.request.Request(url, headers=headers, method="GET")
        context = self.ssl_context if url.lower().startswith("https:") else None
        self.work_dir.mkdir(parents=True, exist_ok=True)
        sha = hashlib.sha256()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=context) as resp, \
                    open(image, "wb") as out:
                while chunk := resp.read(CHUNK):
                    if job.cancelled.is_set():
                        raise DownloadError("cancelled")
                    sha.update(chunk)
                    out.write(chunk)
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DownloadError(str(getattr(exc, "reason", exc))) from None
        return sha.digest()

    def _fetch_ftp(self, job: _Job, image: Path) -> bytes:
        """FTP / FTPS download (passive; user:password from the URL), hashed while it is written."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        sha = hashlib.sha256()
        with open(image, "wb") as out:
            def write(block: bytes) -> None:
                sha.update(block)
                out.write(block)
            try:
                ftp_download(job.location, write, timeout=self.timeout, context=self.ssl_context,
                             cancelled=job.cancelled.is_set)
            except TransferError as exc:
                raise DownloadError(str(exc)) from None
        return sha.digest()
