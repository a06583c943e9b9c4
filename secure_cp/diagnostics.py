"""Log retrieval: GetLog + LogStatusNotification (OCPP 2.0.1 Part 2 N01; OCPP 1.6 Security Whitepaper edition 3 N01).

Version-neutral. The protocol adapters ask ``LogUploads.request()`` what to answer to a GetLog, and get every
upload status back through the ``report(status, request_id)`` callback, always on the event loop and never from
inside ``request()`` (so the GetLog response goes out before the first LogStatusNotification, N01 steps 2-3).

* DiagnosticsLog (N01.FR.04): the station's own log file(s), written by a rotating file handler in the data
  directory (``logsetup.add_file_log``), the records within ``oldestTimestamp`` .. ``latestTimestamp``.
* SecurityLog (N01.FR.03): the rolling security log of ``securityevents.SecurityEvents``, the events within the
  window. It is read on the event loop (one small SQLite query: the store's connection belongs to that thread).
* One log file per request (N01.FR.02): a zip archive with one text member, uploaded over HTTP(S) (N01.FR.14),
  by POST as multipart/form-data with Content-Type and a Content-Disposition naming the file (N01.FR.19), or PUT;
  or over FTP / FTPS (``filetransfer``: passive mode, explicit TLS, user:password from the URL, N01 remark), stored
  in the location's directory under the file name of the GetLog answer. OCPPCommCtrlr.FileTransferProtocols /
  SupportedFileTransferProtocols is FTP,FTPS,HTTP,HTTPS; another scheme (sftp://) is accepted and answered
  NotSupportedOperation (N01.FR.10) without an upload. FTP failures: login refused or no access PermissionDenied,
  a command the server does not implement NotSupportedOperation, a syntax error answer BadMessage, anything else
  (network, timeout, server gone) UploadFailure.
* Statuses (N01.FR.07-10, N01.FR.20): Uploading when the upload starts, then Uploaded, or after ``retries`` more
  attempts ``retryInterval`` s apart UploadFailure / BadMessage / PermissionDenied / NotSupportedOperation (the
  last failure's kind, sent once all attempts failed, as N01.FR.10 recommends). A new GetLog while one is being
  assembled or uploaded cancels it (N01.FR.12): AcceptedCanceled for the old requestId, then the new job.
* The archive is built and uploaded in a worker thread: file reads, compression, DNS, TLS and HTTP never block
  the event loop. A cancelled job's thread may still finish its current HTTP request (bounded by ``timeout``);
  whatever it reports then is dropped.
"""
from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from . import lazy
from .filetransfer import FTP_SCHEMES, TransferError, ftp_upload
from .securityevents import SecurityEvents

log = logging.getLogger("secure_cp.diagnostics")
zipfile = lazy.module("zipfile")     # imported when a log is packed, not at start-up

__all__ = ["GetLogAnswer", "LogUploads", "FINAL_STATUSES"]

LOG_TYPES = ("DiagnosticsLog", "SecurityLog")
#: UploadLogStatusEnumType values that end a job.
FINAL_STATUSES = frozenset({"Uploaded", "UploadFailure", "BadMessage", "PermissionDenied", "NotSupportedOperation"})
UPLOAD_SCHEMES = frozenset({"http", "https"}) | FTP_SCHEMES    # FileTransferProtocols FTP,FTPS,HTTP,HTTPS
#: UploadLogStatusEnumType for each filetransfer.TransferError kind.
_FTP_STATUS = {"permission": "PermissionDenied", "unsupported": "NotSupportedOperation", "bad_message": "BadMessage",
               "failure": "UploadFailure"}
DEFAULT_RETRIES = 1              # GetLog without retries: "left to the Charging Station"
DEFAULT_RETRY_INTERVAL = 30.0    # s, GetLog without retryInterval
HTTP_TIMEOUT = 60.0              # s per upload attempt
FILENAME_MAX = 255               # GetLogResponse.filename string[0..255]
_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) ")


@dataclass(frozen=True)
class GetLogAnswer:
    """What the adapter answers: ``status`` (LogStatusEnumType), the file name when accepted, and for a rejection a
    reason (a Part 2 reason code, used by 2.0.1 as statusInfo.reasonCode) with its explanation."""
    status: str
    filename: str | None = None
    reason: str | None = None
    detail: str = ""


@dataclass
class _Job:
    request_id: int
    log_type: str
    location: str
    filename: str
    oldest: float | None
    latest: float | None
    attempts: int
    interval: float
    content: str | None = None          # SecurityLog: collected on the loop; DiagnosticsLog: in the worker
    cancelled: threading.Event = field(default_factory=threading.Event)


class UploadError(Exception):
    """An upload attempt failed; ``status`` is the UploadLogStatusEnumType to report if it stays failed."""

    def __init__(self, status: str, detail: str):
        super().__init__(detail)
        self.status = status


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _in_window(ts: float, oldest: float | None, latest: float | None) -> bool:
    return (oldest is None or ts >= oldest) and (latest is None or ts <= latest)


def http_target(location: str) -> tuple[str, dict[str, str]]:
    """(URL without user:password, request headers): credentials in a file-transfer location become HTTP Basic
    auth, never part of the request line (or of a log line: see redact_url)."""
    parts = urllib.parse.urlsplit(location)
    headers = {"User-Agent": "secure-cp"}
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        parts = parts._replace(netloc=host + (f":{parts.port}" if parts.port else ""))
    return urllib.parse.urlunsplit(parts), headers


def redact_url(url: str) -> str:
    """The location without its user:password part (N01.FR.17 credentials never go to the log)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class LogUploads:
    """The station's one log-upload job at a time (both protocol versions share it).

    ``report(status, request_id)`` is called on the event loop for every status; ``log_files()`` lists the
    diagnostics log files, oldest first; ``ssl_context`` is used for https locations (default: the operating
    system's CAs, N01.FR.16; a context that also trusts the CSMS root satisfies N01.FR.15)."""

    def __init__(self, *, security_events: SecurityEvents, log_files: Callable[[], list[Path]], identity: str,
                 report: Callable[[str, int], None], method: str = "POST", ssl_context: ssl.SSLContext | None = None,
                 timeout: float = HTTP_TIMEOUT):
        if method not in ("POST", "PUT"):
            raise ValueError(f"upload method must be POST or PUT, not {method!r}")
        self.security_events = security_events
        self.log_files = log_files
        self.identity = re.sub(r"[^A-Za-z0-9._-]", "_", identity)[:64] or "station"
        self.report = report
        self.method = method
        self.ssl_context = ssl_context
        self.timeout = timeout
        self._current: _Job | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- the adapters' side (event loop) --------------------------------------------------------------------
    @property
    def busy_request_id(self) -> int | None:
        """The requestId of the upload being assembled or uploaded, None when idle (TriggerMessage: Idle)."""
        return self._current.request_id if self._current is not None else None

    def request(self, log_type: str, request_id: int, log_params: dict, retries: int | None,
                retry_interval: int | None) -> GetLogAnswer:
        """Decide the GetLog answer and, when accepted, start the job (its statuses follow via ``report``)."""
        location = log_params.get("remoteLocation", "")
        parts = urllib.parse.urlsplit(location)
        if not parts.scheme or not parts.netloc:
            return GetLogAnswer("Rejected", reason="InvalidURL", detail="remoteLocation is not a URL")
        try:
            oldest = _parse_time(log_params.get("oldestTimestamp"))
            latest = _parse_time(log_params.get("latestTimestamp"))
        except ValueError:
            return GetLogAnswer("Rejected", reason="InvalidValue", detail="unreadable timestamp")
        if log_type not in LOG_TYPES:    # pragma: no cover - the schema allows only these two
            return GetLogAnswer("Rejected", reason="UnsupportedParam", detail=f"logType {log_type}")
        content = None
        if log_type == "SecurityLog":
            content = self._security_log(oldest, latest)
            if content is None:                                   # N01.FR.05
                return GetLogAnswer("Rejected", reason="NotFound", detail="no security events in that window")
        elif not any(p.exists() and p.stat().st_size for p in self.log_files()):
            return GetLogAnswer("Rejected", reason="NotFound", detail="no diagnostics log")
        kind = "securitylog" if log_type == "SecurityLog" else "diagnosticslog"
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        filename = f"{kind}-{self.identity}-{request_id}-{stamp}.zip"[-FILENAME_MAX:]
        job = _Job(request_id, log_type, location, filename, oldest, latest,
                   attempts=1 + max(0, DEFAULT_RETRIES if retries is None else retries),
                   interval=max(0.0, float(DEFAULT_RETRY_INTERVAL if retry_interval is None else retry_interval)),
                   content=content)
        self._loop = asyncio.get_running_loop()
        status = "Accepted"
        old = self._current
        if old is not None:                                       # N01.FR.12 / N01.FR.20
            old.cancelled.set()
            status = "AcceptedCanceled"
            log.info("log upload %d cancelled by GetLog %d", old.request_id, request_id)
            self._loop.call_soon(self.report, "AcceptedCanceled", old.request_id)
        self._current = job
        if parts.scheme.lower() not in UPLOAD_SCHEMES:            # N01.FR.10: e.g. sftp://
            log.warning("log upload %d: %s is not a supported transfer protocol", request_id, parts.scheme)
            self._loop.call_soon(self._deliver, job, "NotSupportedOperation")
        else:
            threading.Thread(target=self._run, args=(job,), name=f"log-upload-{request_id}", daemon=True).start()
        return GetLogAnswer(status, filename)

    def close(self) -> None:
        """Stop the running job (station shutdown); it reports nothing more."""
        if self._current is not None:
            self._current.cancelled.set()
            self._current = None

    def _deliver(self, job: _Job, status: str) -> None:
        """On the loop: pass a job's status on, unless the job was cancelled or replaced meanwhile."""
        if job is not self._current or job.cancelled.is_set():
            return
        if status in FINAL_STATUSES:
            self._current = None
        self.report(status, job.request_id)

    def _security_log(self, oldest: float | None, latest: float | None) -> str | None:
        lines = []
        for e in self.security_events.log():
            try:
                ts = _parse_time(e.timestamp)
            except ValueError:
                ts = None
            if ts is None or _in_window(ts, oldest, latest):
                lines.append(f"{e.timestamp} {e.type}{' critical' if e.critical else ''}"
                             f"{' ' + e.tech_info if e.tech_info else ''}")
        return "\n".join(lines) + "\n" if lines else None

    # ---- the worker thread ----------------------------------------------------------------------------------
    def _post(self, job: _Job, status: str) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._deliver, job, status)

    def _run(self, job: _Job) -> None:
        try:
            self._attempts(job)
        except Exception:   # a bug must not leave the station "busy" for ever
            log.exception("log upload %d failed", job.request_id)
            self._post(job, "UploadFailure")

    def _attempts(self, job: _Job) -> None:
        try:
            data = self._archive(job)
        except OSError as exc:
            log.error("log upload %d: cannot read the log: %s", job.request_id, exc)
            self._post(job, "UploadFailure")
            return
        self._post(job, "Uploading")                              # N01.FR.08
        failure = UploadError("UploadFailure", "not tried")
        for attempt in range(job.attempts):
            if attempt and job.cancelled.wait(job.interval):
                return
            if job.cancelled.is_set():
                return
            try:
                self._upload(job, data)
            except UploadError as exc:
                failure = exc
                log.warning("log upload %d to %s, attempt %d of %d failed: %s", job.request_id,
                            redact_url(job.location), attempt + 1, job.attempts, exc)
                continue
            log.info("log upload %d: %s uploaded to %s", job.request_id, job.filename, redact_url(job.location))
            self._post(job, "Uploaded")                           # N01.FR.09
            return
        self._post(job, failure.status)                           # N01.FR.10: after all attempts

    def _archive(self, job: _Job) -> bytes:
        """One zip file with one text member: the security events or the log records of the window."""
        if job.content is not None:
            member, text = "security.log", job.content
        else:
            member, text = "diagnostics.log", self._diagnostics(job.oldest, job.latest)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(member, text)
        return buf.getvalue()

    def _diagnostics(self, oldest: float | None, latest: float | None) -> str:
        """The log records in the window, oldest file first; a line without a timestamp (a traceback, a
        multi-line message) belongs to the record before it."""
        out: list[str] = []
        keep = oldest is None
        for path in self.log_files():
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:       # rotated away meanwhile
                continue
            for line in text.splitlines(keepends=True):
                m = _TS.match(line)
                if m:
                    try:
                        keep = _in_window(_parse_time(m.group(1)) or 0.0, oldest, latest)
                    except ValueError:
                        pass
                if keep:
                    out.append(line)
        return "".join(out)

    def _upload(self, job: _Job, data: bytes) -> None:
        if urllib.parse.urlsplit(job.location).scheme.lower() in FTP_SCHEMES:
            try:                                                  # N01.FR.17: credentials in the URL
                ftp_upload(job.location, job.filename, data, timeout=self.timeout, context=self.ssl_context)
            except TransferError as exc:
                raise UploadError(_FTP_STATUS[exc.kind], str(exc)) from None
            return
        url, headers = http_target(job.location)                  # N01.FR.17: credentials in the URL
        if self.method == "POST":                                  # N01.FR.19
            boundary = uuid.uuid4().hex
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"uploadfile\"; "
                    f"filename=\"{job.filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode() \
                + data + f"\r\n--{boundary}--\r\n".encode()
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        else:
            body = data
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-Disposition"] = f"attachment; filename=\"{job.filename}\""
        req = urllib.request.Request(url, data=body, headers=headers, method=self.method)
        context = self.ssl_context if url.lower().startswith("https:") else None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=context) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            raise UploadError(_http_status(exc.code), f"HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UploadError("UploadFailure", str(reason)) from None


def _http_status(code: int) -> str:
    """UploadLogStatusEnumType for an HTTP error answer."""
    if code in (401, 403, 407):
        return "PermissionDenied"
    if code in (405, 501):
        return "NotSupportedOperation"
    if code in (400, 411, 413, 415, 422):
        return "BadMessage"
    return "UploadFailure"
