"""Secure firmware update: 2.0.1 UpdateFirmware + FirmwareStatusNotification (Part 2 L01) and 1.6 SignedUpdateFirmware +
SignedFirmwareStatusNotification (Security Whitepaper edition 3, L01).

Version-neutral. The protocol adapters ask ``FirmwareUpdates.request()`` what to answer, and get every status back
through the ``report(status, request_id)`` callback, on the event loop and never from inside ``request()`` (so the
response goes out before the first notification).

* Before accepting (L01.FR.21/22, 1.6 L01.FR.23/24): the signingCertificate must be issued directly by one of the
  manufacturer roots (no intermediates: L01 remark) and be valid now; otherwise InvalidCertificate and the security
  event InvalidFirmwareSigningCertificate (L01.FR.02). A request without signingCertificate and signature is no
  secure update: Rejected (TC_L_18_CS).
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

from .diagnostics import http_target, redact_url
from .engine import rfc3339
from .filetransfer import FTP_SCHEMES, TransferError, ftp_download
from .securityevents import SecurityEvents
from .store import KeyValue

log = logging.getLogger("secure_cp.firmware")

__all__ = ["FirmwareUpdates", "UpdateAnswer", "Installer", "CommandInstaller", "SimulatedInstaller",
           "InstallResult", "check_signing_certificate", "verify_signature", "load_roots"]

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
        return cert
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
    downloaded image."""

    def __init__(self, *, kv: KeyValue, security_events: SecurityEvents,
                 manufacturer_roots: Callable[[], list[x509.Certificate]], report: Callable[[str, int], None],
                 reboot: Callable[[int], None], idle: Callable[[], bool], clock: Callable[[], float],
                 installer: Installer, work_dir: Path, ssl_context: ssl.SSLContext | None = None,
                 timeout: float = HTTP_TIMEOUT, hold: Callable[[bool], None] = lambda on: None):
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
