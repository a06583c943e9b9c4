"""Log retrieval, end to end: GetLog + LogStatusNotification (OCPP 2.0.1 Part 2 N01, Part 6 TC_N_25 / N_26 / N_34 /
N_35 / N_36 and TC_F_15; OCPP 1.6 Security Whitepaper edition 3 N01 and ExtendedTriggerMessage).

A real station (engine, adapters, SQLite, its rotating log file) against the strict CSMS, and a real HTTP server
in this process (``http.server`` in a thread) that receives the uploads. Statuses are checked in the order the
CSMS received them, each with the GetLog's requestId (N01.FR.07)."""
from __future__ import annotations

import asyncio
import contextlib
import http.server
import io
import logging
import socket
import threading
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from ftp_fixture import FtpServer
from helpers import LocalHttpServer, booted as booted16, triggered_idle
from test_v201_core import barrier
from secure_cp.sim.csms import Csms

ID = "CP1"


class Upload:
    def __init__(self, method: str, path: str, headers, body: bytes):
        self.method, self.path, self.headers, self.body = method, path, headers, body

    def file(self) -> tuple[str, bytes]:
        """The uploaded file of a multipart/form-data POST (N01.FR.19): (filename, bytes)."""
        disposition, _, rest = self.body.partition(b"\r\n\r\n")
        filename = disposition.split(b'filename="', 1)[1].split(b'"', 1)[0].decode()
        return filename, rest.rsplit(b"\r\n--", 1)[0]

    def text(self) -> str:
        """The one text member of the uploaded zip archive."""
        with zipfile.ZipFile(io.BytesIO(self.file()[1])) as z:
            (name,) = z.namelist()
            return z.read(name).decode()


class LogServer(LocalHttpServer):
    """Receives uploads; answers ``status`` (200 unless set); ``hold`` makes every request wait until released."""

    def __init__(self) -> None:
        self.uploads: list[Upload] = []
        self.status = 200
        self.hold = threading.Event()
        self.hold.set()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _store(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.hold.wait(10)
                outer.uploads.append(Upload(self.command, self.path, self.headers, body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = _store

            def log_message(self, *args) -> None:
                pass

        super().__init__(Handler)
        self.url = self.base + "/logs"

    def __exit__(self, *exc) -> None:
        self.hold.set()
        super().__exit__(*exc)


@pytest.fixture
def server() -> Iterator[LogServer]:
    with LogServer() as s:
        yield s


def closed_port_url() -> str:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/logs"


async def booted(csms: Csms, make_station, **kw):
    st = await make_station(csms, protocols=["ocpp2.0.1"], **kw)
    await csms.wait_for("BootNotification", identity=ID)
    await csms.wait_for("SecurityEventNotification", identity=ID)   # the boot's StartupOfTheDevice is out
    return st


def log_statuses(csms: Csms, after: int = 0) -> list[tuple[str, int | None]]:
    return [(r.payload["status"], r.payload.get("requestId")) for r in csms.received[after:]
            if r.action == "LogStatusNotification"]


async def final_status(csms: Csms, request_id: int, after: int = 0) -> str:
    rec = await csms.wait_for("LogStatusNotification", lambda p: p.get("requestId") == request_id
                              and p["status"] not in ("Uploading", "AcceptedCanceled"), after=after, timeout=15)
    return rec.payload["status"]


async def log_uploaded(csms: Csms, server, log_type: str, request_id: int) -> dict:
    """GetLog ``log_type`` to the server: Accepted, then LogStatusNotification Uploading and Uploaded with the
    requestId and nothing else (N01.FR.07/08/09); the response."""
    n = len(csms.received)
    res = await csms.call(ID, "GetLog", {"logType": log_type, "requestId": request_id,
                                         "log": {"remoteLocation": server.url}})
    assert res["status"] == "Accepted", res
    assert await final_status(csms, request_id, n) == "Uploaded"
    assert log_statuses(csms, n) == [("Uploading", request_id), ("Uploaded", request_id)]
    return res


def rfc(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---- 2.0.1 -----------------------------------------------------------------------------------------------------
async def test_tc_n_25_cs_diagnostics_log_uploaded_with_the_window(csms, make_station, server):
    """TC_N_25_CS (N01.FR.01/02/04/07/08/09/19): Accepted with a file name, then Uploading and Uploaded with the
    requestId; the server gets a multipart POST naming that file, a zip with the station's log records. With
    oldestTimestamp after a record, that record is not in the upload and a later one is."""
    await booted(csms, make_station)
    logging.getLogger("secure_cp.test").warning("MARKER-ONE before the window")
    await asyncio.sleep(0.05)
    between = datetime.now(timezone.utc)
    await asyncio.sleep(0.05)
    logging.getLogger("secure_cp.test").warning("MARKER-TWO inside the window")
    res = await log_uploaded(csms, server, "DiagnosticsLog", 7)
    assert res["filename"].endswith(".zip")
    (up,) = server.uploads
    assert up.method == "POST" and up.path == "/logs"
    assert up.headers["Content-Type"].startswith("multipart/form-data")
    assert up.file()[0] == res["filename"]
    text = up.text()
    assert "MARKER-ONE" in text and "MARKER-TWO" in text and "secure_cp.test" in text

    n = len(csms.received)
    res = await csms.call(ID, "GetLog", {"logType": "DiagnosticsLog", "requestId": 8, "log": {
        "remoteLocation": server.url, "oldestTimestamp": rfc(between)}})
    assert res["status"] == "Accepted"
    assert await final_status(csms, 8, n) == "Uploaded"
    text = server.uploads[1].text()
    assert "MARKER-TWO" in text and "MARKER-ONE" not in text
    assert csms.violations == []


async def test_tc_n_35_cs_security_log_and_tc_n_34_cs_rejected(csms, make_station, server):
    """TC_N_35_CS (N01.FR.03): the security log is uploaded (the boot's StartupOfTheDevice event is in it), with
    Uploading / Uploaded for its requestId. TC_N_34_CS (N01.FR.05): a window without events -> Rejected, with
    statusInfo, and no notification."""
    await booted(csms, make_station)
    res = await log_uploaded(csms, server, "SecurityLog", 3)
    assert res["filename"].startswith("securitylog-")
    assert "StartupOfTheDevice critical" in server.uploads[0].text()

    future = rfc(datetime.now(timezone.utc) + timedelta(days=1))
    n = len(csms.received)
    res = await csms.call(ID, "GetLog", {"logType": "SecurityLog", "requestId": 4,
                                         "log": {"remoteLocation": server.url, "oldestTimestamp": future}})
    assert res["status"] == "Rejected" and res["statusInfo"]["reasonCode"] == "NotFound"
    await barrier(csms)
    assert log_statuses(csms, n) == [] and len(server.uploads) == 1
    assert csms.violations == []


async def test_tc_n_26_cs_upload_failure_after_the_retries(csms, make_station, server):
    """TC_N_26_CS (N01.FR.08, N01.FR.10): an upload the server refuses is tried 1 + retries times, then reported
    once with the failure (HTTP 500 -> UploadFailure, 403 -> PermissionDenied); an unreachable server ->
    UploadFailure. Uploading first, the failure last, both with the requestId."""
    await booted(csms, make_station)
    server.status = 500
    n = len(csms.received)
    res = await csms.call(ID, "GetLog", {"logType": "SecurityLog", "requestId": 11, "retries": 2,
                                         "retryInterval": 0, "log": {"remoteLocation": server.url}})
    assert res["status"] == "Accepted"
    assert await final_status(csms, 11, n) == "UploadFailure"
    assert log_statuses(csms, n) == [("Uploading", 11), ("UploadFailure", 11)]
    assert len(server.uploads) == 3

    server.status = 403
    n = len(csms.received)
    await csms.call(ID, "GetLog", {"logType": "SecurityLog", "requestId": 12, "retries": 0,
                                   "log": {"remoteLocation": server.url}})
    assert await final_status(csms, 12, n) == "PermissionDenied"
    assert len(server.uploads) == 4                       # retries 0: one attempt

    n = len(csms.received)
    await csms.call(ID, "GetLog", {"logType": "DiagnosticsLog", "requestId": 13, "retries": 1, "retryInterval": 0,
                                   "log": {"remoteLocation": closed_port_url()}})
    assert await final_status(csms, 13, n) == "UploadFailure"
    assert log_statuses(csms, n) == [("Uploading", 13), ("UploadFailure", 13)]
    assert csms.violations == []


async def test_tc_n_36_cs_tc_f_16_cs_second_getlog_cancels_the_first_and_trigger_reports_uploading(
        csms, make_station, server):
    """TC_N_36_CS (N01.FR.12, N01.FR.20): a GetLog while an upload waits for its retry is answered
    AcceptedCanceled; the first upload reports AcceptedCanceled with its own requestId and nothing after that; the
    second one runs to Uploaded. TC_F_16_CS: while the first runs, TriggerMessage LogStatusNotification reports
    Uploading with its requestId (N01.FR.13); once idle again, Idle without requestId (F06.FR.15)."""
    await booted(csms, make_station)
    server.status = 500
    n = len(csms.received)
    res = await csms.call(ID, "GetLog", {"logType": "SecurityLog", "requestId": 21, "retries": 5,
                                         "retryInterval": 600, "log": {"remoteLocation": server.url}})
    assert res["status"] == "Accepted"
    await csms.wait_for("LogStatusNotification", lambda p: p == {"status": "Uploading", "requestId": 21}, after=n)
    m = len(csms.received)
    assert await csms.call(ID, "TriggerMessage", {"requestedMessage": "LogStatusNotification"}) == \
        {"status": "Accepted"}
    busy = await csms.wait_for("LogStatusNotification", after=m)
    assert busy.payload == {"status": "Uploading", "requestId": 21}

    server.status = 200
    res = await csms.call(ID, "GetLog", {"logType": "DiagnosticsLog", "requestId": 22,
                                         "log": {"remoteLocation": server.url}})
    assert res["status"] == "AcceptedCanceled" and res["filename"].startswith("diagnosticslog-")
    assert await final_status(csms, 22, n) == "Uploaded"
    assert log_statuses(csms, n) == [("Uploading", 21), ("Uploading", 21), ("AcceptedCanceled", 21),
                                     ("Uploading", 22), ("Uploaded", 22)]
    await triggered_idle(csms, "LogStatusNotification")
    assert csms.violations == []


async def test_n01_ftp_upload_security_log_and_permission_denied(csms, make_station, tmp_path):
    """N01 remark (FTP, passive, user:password in the URL), N01.FR.02/03/08/09: GetLog SecurityLog to an ftp://
    directory -> Accepted, Uploading, Uploaded; the zip named as in the answer is in that directory and holds the
    security log. A wrong password -> PermissionDenied after 1 + retries attempts (N01.FR.10); a location whose
    server is gone -> UploadFailure."""
    await booted(csms, make_station)
    with FtpServer(tmp_path / "ftp") as ftp:
        (ftp.root / "logs").mkdir()
        n = len(csms.received)
        res = await csms.call(ID, "GetLog", {"logType": "SecurityLog", "requestId": 51,
                                             "log": {"remoteLocation": ftp.url("/logs/")}})
        assert res["status"] == "Accepted"
        assert await final_status(csms, 51, n) == "Uploaded"
        assert log_statuses(csms, n) == [("Uploading", 51), ("Uploaded", 51)]
        with zipfile.ZipFile(io.BytesIO((ftp.root / "logs" / res["filename"]).read_bytes())) as z:
            assert "StartupOfTheDevice" in z.read("security.log").decode()
        assert any(c in ("PASV", "EPSV") for c in ftp.commands)
        n = len(csms.received)
        await csms.call(ID, "GetLog", {"logType": "SecurityLog", "requestId": 52, "retries": 1, "retryInterval": 0,
                                       "log": {"remoteLocation": ftp.url("/logs/", password="wrong")}})
        assert await final_status(csms, 52, n) == "PermissionDenied"
        assert log_statuses(csms, n) == [("Uploading", 52), ("PermissionDenied", 52)]
        assert ftp.commands.count("PASS") == 3                      # 1 good upload + 2 refused attempts
        gone = ftp.url("/logs/")
    n = len(csms.received)
    await csms.call(ID, "GetLog", {"logType": "SecurityLog", "requestId": 53, "retries": 0,
                                   "log": {"remoteLocation": gone}})
    assert await final_status(csms, 53, n) == "UploadFailure"
    assert len(list((tmp_path / "ftp" / "logs").iterdir())) == 1
    assert csms.violations == []


async def test_n01_fr_10_unsupported_scheme_and_invalid_url(csms, make_station):
    """N01.FR.10: an sftp:// location (FileTransferProtocols is FTP,FTPS,HTTP,HTTPS) is accepted and answered
    NotSupportedOperation without an upload (no Uploading: it never starts); a remoteLocation that is no URL ->
    Rejected with reasonCode InvalidURL. The station stays usable."""
    await booted(csms, make_station)
    n = len(csms.received)
    res = await csms.call(ID, "GetLog", {"logType": "SecurityLog", "requestId": 31,
                                         "log": {"remoteLocation": "sftp://user:pw@127.0.0.1/logs"}})
    assert res["status"] == "Accepted"
    assert await final_status(csms, 31, n) == "NotSupportedOperation"
    assert log_statuses(csms, n) == [("NotSupportedOperation", 31)]
    res = await csms.call(ID, "GetLog", {"logType": "SecurityLog", "requestId": 32,
                                         "log": {"remoteLocation": "not a url"}})
    assert res["status"] == "Rejected" and res["statusInfo"]["reasonCode"] == "InvalidURL"
    await barrier(csms)
    assert log_statuses(csms, n) == [("NotSupportedOperation", 31)]
    assert csms.violations == []


# ---- 1.6 security extension ------------------------------------------------------------------------------------
async def test_16_whitepaper_n01_get_log_and_extended_trigger(csms, make_station, server):
    """Whitepaper N01.FR.01/03/07/08/09: GetLog SecurityLog over OCPP 1.6 -> Accepted with a file name,
    LogStatusNotification Uploading and Uploaded with the requestId, the file on the server;
    ExtendedTriggerMessage LogStatusNotification -> Idle without requestId (N01.FR.12); a message this station does
    not trigger -> NotImplemented."""
    await booted16(csms, make_station)
    res = await log_uploaded(csms, server, "SecurityLog", 5)
    assert res["filename"].endswith(".zip")
    assert "StartupOfTheDevice" in server.uploads[0].text()
    await triggered_idle(csms, "LogStatusNotification", "ExtendedTriggerMessage")
    # A02 (test_cert_signing.py): without CpoName no CSR can be made
    assert await csms.call(ID, "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}) == \
        {"status": "Rejected"}
    assert csms.violations == []
