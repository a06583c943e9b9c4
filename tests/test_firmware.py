"""Secure firmware update, end to end: 2.0.1 UpdateFirmware + FirmwareStatusNotification (Part 2 L01, Part 6 TC_L_01,
02, 03, 05, 06, 07, 08, 10, 18: the Core profile's L test cases) and 1.6 SignedUpdateFirmware +
SignedFirmwareStatusNotification (Security Whitepaper edition 3 L01).

A real station (engine, adapters, SQLite, reboots) against the strict CSMS, a development manufacturer PKI
(``security.devpki``), and a real HTTP server in this process (``http.server`` in a thread) serving the image.
Statuses are checked in the order the CSMS received them, each with the request's requestId (L01.FR.10)."""
from __future__ import annotations

import contextlib
import http.server
import socket
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ftp_fixture import FtpServer
from helpers import LocalHttpServer, barrier as barrier16, booted as booted16, triggered_idle
from test_v201_core import barrier, ended, get_var, set_var, started
from secure_cp.security import devpki
from secure_cp.sim.csms import CallErrorReceived, Csms

ID = "CP1"
IMAGE = b"secure-cp firmware image v2\n" + bytes(range(256)) * 64


class FirmwareServer(LocalHttpServer):
    """Serves ``files`` (path -> bytes) by GET; 404 for anything else. ``gets`` lists the requested paths."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.gets: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.gets.append(self.path)
                body = outer.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args) -> None:
                pass

        super().__init__(Handler)

    def serve(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return self.base + path


@pytest.fixture
def server() -> Iterator[FirmwareServer]:
    with FirmwareServer() as s:
        yield s


@pytest.fixture
def pki(tmp_path):
    root = devpki.manufacturer_root(tmp_path / "pki")
    return root, devpki.firmware_signing_certificate(tmp_path / "pki", root)


def closed_port_url() -> str:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/fw.bin"


def rfc(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) + delta).isoformat(timespec="milliseconds").replace("+00:00", "Z")


PAST = timedelta(hours=-2)


def firmware(location: str, signer: devpki.FirmwareSigner, *, data: bytes = IMAGE, retrieve: timedelta = PAST,
             install: timedelta | None = PAST) -> dict:
    fw = {"location": location, "retrieveDateTime": rfc(retrieve), "signingCertificate": signer.pem,
          "signature": signer.sign(data)}
    if install is not None:
        fw["installDateTime"] = rfc(install)
    return fw


async def booted(csms: Csms, make_station, root, **kw):
    st = await make_station(csms, protocols=["ocpp2.0.1"], manufacturer_root_file=root.cert_file, **kw)
    await csms.wait_for("BootNotification", identity=ID)
    await csms.wait_for("SecurityEventNotification", identity=ID)   # the boot's StartupOfTheDevice is out
    return st


def statuses(csms: Csms, after: int = 0, action: str = "FirmwareStatusNotification") -> list[tuple[str, int | None]]:
    return [(r.payload["status"], r.payload.get("requestId")) for r in csms.received[after:] if r.action == action]


def security_events(csms: Csms, after: int = 0) -> list[str]:
    return [r.payload["type"] for r in csms.received[after:] if r.action == "SecurityEventNotification"]


async def status_reached(csms: Csms, status: str, request_id: int, after: int, timeout: float = 20,
                         action: str = "FirmwareStatusNotification"):
    return await csms.wait_for(action, lambda p: p == {"status": status, "requestId": request_id}, after=after,
                               timeout=timeout)


INSTALLED_FLOW = ["Downloading", "Downloaded", "SignatureVerified", "Installing", "InstallRebooting", "Installed"]


async def refused_signer(csms: Csms, request_id: int, fw: dict, status: str, after: int,
                         action: str = "UpdateFirmware") -> dict:
    """``action`` (UpdateFirmware; 1.6 SignedUpdateFirmware) with ``fw`` is answered ``status`` and the security event
    InvalidFirmwareSigningCertificate is sent (L01.FR.02; whitepaper L01.FR.25); the response."""
    res = await csms.call(ID, action, {"requestId": request_id, "firmware": fw})
    assert res["status"] == status, res
    await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "InvalidFirmwareSigningCertificate",
                        after=after)
    return res


# ---- 2.0.1 ---------------------------------------------------------------------------------------------------------
async def test_tc_l_01_cs_installed_after_a_firmware_update_reboot(csms, make_station, server, pki):
    """TC_L_01_CS (L01.FR.01/04/05/10/12/15/20/21/28/31/32): Accepted; Downloading, Downloaded, SignatureVerified,
    Installing, InstallRebooting, all with the requestId; the station reboots (BootNotification reason
    FirmwareUpdate), then reports Installed and the security event FirmwareUpdated. The installer got the image
    byte for byte. A triggered FirmwareStatusNotification then says Idle (L01.FR.25)."""
    root, signer = pki
    st = await booted(csms, make_station, root)
    n = len(csms.received)
    res = await csms.call(ID, "UpdateFirmware", {"requestId": 41, "retries": 1, "retryInterval": 0,
                                                 "firmware": firmware(server.serve("/fw.bin", IMAGE), signer)})
    assert res == {"status": "Accepted"}
    await status_reached(csms, "Installed", 41, n)
    boot = await csms.wait_for("BootNotification", after=n)
    assert boot.payload["reason"] == "FirmwareUpdate"
    assert statuses(csms, n) == [(s, 41) for s in INSTALLED_FLOW]
    await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "FirmwareUpdated", after=n)
    installed = st.cfg.data_dir / "firmware" / "installed.bin"
    assert installed.read_bytes() == IMAGE
    assert st.station.boots == 1 and server.gets == ["/fw.bin"]
    await triggered_idle(csms, "FirmwareStatusNotification")
    assert csms.violations == []


async def test_tc_l_02_cs_install_scheduled(csms, make_station, server, pki):
    """TC_L_02_CS (L01.FR.16): installDateTime in the future -> InstallScheduled after SignatureVerified, then
    Installing once that time has come, and Installed after the reboot."""
    root, signer = pki
    await booted(csms, make_station, root)
    n = len(csms.received)
    fw = firmware(server.serve("/fw.bin", IMAGE), signer, install=timedelta(seconds=1.5))
    assert await csms.call(ID, "UpdateFirmware", {"requestId": 42, "firmware": fw}) == {"status": "Accepted"}
    await status_reached(csms, "Installed", 42, n)
    assert statuses(csms, n) == [(s, 42) for s in ["Downloading", "Downloaded", "SignatureVerified",
                                                    "InstallScheduled", *INSTALLED_FLOW[3:]]]
    assert csms.violations == []


async def test_tc_l_03_cs_download_scheduled(csms, make_station, server, pki):
    """TC_L_03_CS (L01.FR.13): retrieveDateTime in the future -> DownloadScheduled first, the download at that
    time, then the whole installation."""
    root, signer = pki
    await booted(csms, make_station, root)
    n = len(csms.received)
    fw = firmware(server.serve("/fw.bin", IMAGE), signer, retrieve=timedelta(seconds=1.5), install=None)
    assert await csms.call(ID, "UpdateFirmware", {"requestId": 43, "firmware": fw}) == {"status": "Accepted"}
    first = await csms.wait_for("FirmwareStatusNotification", after=n)
    assert first.payload == {"status": "DownloadScheduled", "requestId": 43}
    assert server.gets == []                              # not before retrieveDateTime
    await status_reached(csms, "Installed", 43, n)
    assert statuses(csms, n) == [("DownloadScheduled", 43)] + [(s, 43) for s in INSTALLED_FLOW]
    assert csms.violations == []


async def test_tc_l_05_cs_invalid_certificate_from_an_unknown_root(csms, make_station, server, pki, tmp_path):
    """TC_L_05_CS (L01.FR.02/21/22): a signing certificate from a root the station does not trust ->
    InvalidCertificate with statusInfo, the security event InvalidFirmwareSigningCertificate, no download and no
    FirmwareStatusNotification. An expired certificate from the right root: the same."""
    root, _ = pki
    await booted(csms, make_station, root)
    stranger = devpki.firmware_signing_certificate(tmp_path / "other", devpki.unknown_ca(tmp_path / "other"))
    n = len(csms.received)
    res = await refused_signer(csms, 44, firmware(server.serve("/fw.bin", IMAGE), stranger), "InvalidCertificate", n)
    assert res["statusInfo"]["reasonCode"] == "InvalidCertificate"
    now = datetime.now(timezone.utc)
    expired = devpki.firmware_signing_certificate(tmp_path / "pki", root, "expired", not_before=now - timedelta(2),
                                                  not_after=now - timedelta(1))
    res = await csms.call(ID, "UpdateFirmware", {"requestId": 45, "firmware": firmware(
        server.serve("/fw.bin", IMAGE), expired)})
    assert res["status"] == "InvalidCertificate"
    await barrier(csms)
    assert security_events(csms, n) == ["InvalidFirmwareSigningCertificate"] * 2
    assert statuses(csms, n) == [] and server.gets == []
    assert csms.violations == []


async def test_tc_l_06_cs_tampered_image_invalid_signature(csms, make_station, server, pki):
    """TC_L_06_CS (L01.FR.03/04): the file on the server differs from the signed one -> Downloading, Downloaded,
    InvalidSignature, the security event InvalidFirmwareSignature; nothing is installed, no reboot."""
    root, signer = pki
    st = await booted(csms, make_station, root)
    tampered = IMAGE[:-1] + b"\x00"
    n = len(csms.received)
    fw = firmware(server.serve("/fw.bin", tampered), signer, data=IMAGE)
    assert await csms.call(ID, "UpdateFirmware", {"requestId": 46, "firmware": fw}) == {"status": "Accepted"}
    await status_reached(csms, "InvalidSignature", 46, n)
    await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "InvalidFirmwareSignature", after=n)
    await barrier(csms)
    assert statuses(csms, n) == [("Downloading", 46), ("Downloaded", 46), ("InvalidSignature", 46)]
    assert not (st.cfg.data_dir / "firmware" / "installed.bin").exists()
    assert st.station.boots == 0
    m = len(csms.received)
    await csms.call(ID, "TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    last = await csms.wait_for("FirmwareStatusNotification", after=m)
    assert last.payload == {"status": "InvalidSignature", "requestId": 46}     # L01.FR.26
    assert csms.violations == []


async def test_tc_l_07_cs_download_failed_after_the_retries(csms, make_station, server, pki):
    """TC_L_07_CS (L01.FR.30): a file that does not exist is tried 1 + retries times, then Downloading and
    DownloadFailed with the requestId; an unreachable server the same."""
    root, signer = pki
    await booted(csms, make_station, root)
    n = len(csms.received)
    fw = firmware(server.base + "/fw.bin_does.not_exist", signer)
    assert await csms.call(ID, "UpdateFirmware", {"requestId": 47, "retries": 2, "retryInterval": 0,
                                                  "firmware": fw}) == {"status": "Accepted"}
    await status_reached(csms, "DownloadFailed", 47, n)
    assert statuses(csms, n) == [("Downloading", 47), ("DownloadFailed", 47)]
    assert server.gets == ["/fw.bin_does.not_exist"] * 3
    n = len(csms.received)
    fw = firmware(closed_port_url(), signer)
    assert await csms.call(ID, "UpdateFirmware", {"requestId": 48, "retries": 1, "retryInterval": 0,
                                                  "firmware": fw}) == {"status": "Accepted"}
    await status_reached(csms, "DownloadFailed", 48, n)
    assert statuses(csms, n) == [("Downloading", 48), ("DownloadFailed", 48)]
    assert csms.violations == []


async def test_tc_l_08_cs_installer_refuses_the_image(csms, make_station, server, pki):
    """TC_L_08_CS (L01.FR.29): the configured install command (``[firmware] install_command``) gets the image path
    and exits 2 (its own verification failed) -> Installing, then InstallVerificationFailed; no reboot."""
    root, signer = pki
    command = f"{sys.executable} -c \"import sys, shutil; shutil.copy(sys.argv[1], sys.argv[1] + '.seen'); sys.exit(2)\""
    st = await booted(csms, make_station, root, firmware_install_command=command)
    n = len(csms.received)
    fw = firmware(server.serve("/fw.bin", IMAGE), signer)
    assert await csms.call(ID, "UpdateFirmware", {"requestId": 49, "firmware": fw}) == {"status": "Accepted"}
    await status_reached(csms, "InstallVerificationFailed", 49, n)
    assert statuses(csms, n) == [(s, 49) for s in ["Downloading", "Downloaded", "SignatureVerified", "Installing",
                                                    "InstallVerificationFailed"]]
    assert (st.cfg.data_dir / "firmware" / "firmware-49.bin.seen").read_bytes() == IMAGE
    assert st.station.boots == 0
    assert csms.violations == []


async def test_tc_l_10_cs_second_update_cancels_the_first(csms, make_station, server, pki):
    """TC_L_10_CS (L01.FR.24, L01.FR.26): while an update waits for its retrieveDateTime (DownloadScheduled, which
    a TriggerMessage reports again with its requestId), a new UpdateFirmware is answered AcceptedCanceled; the old
    request reports nothing more, the new one runs to Installed."""
    root, signer = pki
    await booted(csms, make_station, root)
    url = server.serve("/fw.bin", IMAGE)
    n = len(csms.received)
    fw = firmware(url, signer, retrieve=timedelta(days=1))
    assert await csms.call(ID, "UpdateFirmware", {"requestId": 50, "firmware": fw}) == {"status": "Accepted"}
    await status_reached(csms, "DownloadScheduled", 50, n)
    m = len(csms.received)
    await csms.call(ID, "TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    again = await csms.wait_for("FirmwareStatusNotification", after=m)
    assert again.payload == {"status": "DownloadScheduled", "requestId": 50}
    res = await csms.call(ID, "UpdateFirmware", {"requestId": 51, "firmware": firmware(url, signer)})
    assert res == {"status": "AcceptedCanceled"}
    await status_reached(csms, "Installed", 51, n)
    assert statuses(csms, n) == [("DownloadScheduled", 50), ("DownloadScheduled", 50)] + \
        [(s, 51) for s in INSTALLED_FLOW]
    assert csms.violations == []


async def test_tc_l_18_cs_missing_certificate_and_signature_rejected(csms, make_station, server, pki):
    """TC_L_18_CS: an UpdateFirmware without signingCertificate and signature (a non-secure update) -> Rejected,
    nothing downloaded; then the station still takes a proper update."""
    root, signer = pki
    await booted(csms, make_station, root)
    url = server.serve("/fw.bin", IMAGE)
    n = len(csms.received)
    res = await csms.call(ID, "UpdateFirmware", {"requestId": 52, "firmware": {"location": url,
                                                                              "retrieveDateTime": rfc(PAST)}})
    assert res["status"] == "Rejected" and res["statusInfo"]["reasonCode"] == "MissingSigningCert"
    await barrier(csms)
    assert statuses(csms, n) == [] and server.gets == []
    assert await csms.call(ID, "UpdateFirmware", {"requestId": 53, "firmware": firmware(url, signer)}) == \
        {"status": "Accepted"}
    await status_reached(csms, "Installed", 53, n)
    assert csms.violations == []


# ---- installation while transactions run (L01.FR.06/07/34) -----------------------------------------------------------
async def two_evses(csms: Csms, make_station, root, allow_new_sessions: str, **kw):
    """A booted 2.0.1 station with two EVSEs, ChargingStation.AllowNewSessionsPendingFirmwareUpdate set by the CSMS
    (the test cases' Configuration State)."""
    st = await booted(csms, make_station, root, connectors=2, **kw)
    for evse in (1, 2):
        await csms.wait_for("StatusNotification", lambda p, e=evse: p["evseId"] == e, identity=ID)
    assert await set_var(csms, "ChargingStation", "AllowNewSessionsPendingFirmwareUpdate", allow_new_sessions) == \
        "Accepted"
    return st


async def charging(csms: Csms, st, evse: int, tag: str, after: int = 0) -> str:
    """Plug in and present ``tag`` on ``evse``: the transaction id of the Started event."""
    st.hw.ev_plug(evse)
    st.hw.present_tag(tag, evse)
    return (await started(csms, after=after, evse={"id": evse, "connectorId": 1}))["transactionInfo"]["transactionId"]


def connector_statuses(csms: Csms, after: int, evse: int) -> list[str]:
    return [r.payload["connectorStatus"] for r in csms.received[after:]
            if r.action == "StatusNotification" and r.payload["evseId"] == evse]


def index_of(csms: Csms, action: str, pred, after: int = 0) -> int:
    return next(i for i, r in enumerate(csms.received) if i >= after and r.action == action and pred(r.payload))


async def test_tc_l_15_cs_install_waits_for_the_transaction_and_idle_evses_are_unavailable(csms, make_station,
                                                                                          server, pki):
    """TC_L_15_CS (L01.FR.01/06/07/10/20/34), AllowNewSessionsPendingFirmwareUpdate false: during a transaction on
    EVSE 1 the update downloads and verifies, then reports InstallScheduled (step 9) and sets the idle EVSE 2
    Unavailable (step 11; AvailabilityState too) where no new transaction starts; when the transaction ends
    (ParkingBayUnoccupied: the cable is unplugged) EVSE 1 goes Unavailable too (step 14), then Installing,
    InstallRebooting, the reboot, and both EVSEs Available again (step 21) with Installed and FirmwareUpdated.
    TC_L_13_CS checks the same connector statuses (its steps 5, 14, 21); its download after the transaction does
    not apply: this station downloads while charging (PICS AQ-7)."""
    root, signer = pki
    st = await two_evses(csms, make_station, root, "false")
    tx_id = await charging(csms, st, 1, "TAG1")
    n = len(csms.received)
    fw = firmware(server.serve("/fw.bin", IMAGE), signer)
    assert await csms.call(ID, "UpdateFirmware", {"requestId": 71, "firmware": fw}) == {"status": "Accepted"}
    await status_reached(csms, "InstallScheduled", 71, n)
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2 and p["connectorStatus"] == "Unavailable",
                        after=n)
    assert await get_var(csms, "EVSE", "AvailabilityState", evse={"id": 2}) == "Unavailable"
    assert connector_statuses(csms, n, 1) == []             # EVSE 1 goes on charging
    m = len(csms.received)
    st.hw.ev_plug(2)                                        # no new session on the held EVSE
    st.hw.present_tag("TAG2", 2)
    await csms.wait_for("Authorize", after=m)
    await barrier(csms)
    assert st.station.engine.connectors[2].tx_key is None
    assert not [r for r in csms.received[m:] if r.action == "TransactionEvent"]
    st.hw.ev_plug(2, False)
    await barrier(csms)
    assert statuses(csms, n) == [(s, 71) for s in ["Downloading", "Downloaded", "SignatureVerified",
                                                    "InstallScheduled"]]   # nothing installed while charging
    assert (st.cfg.data_dir / "firmware" / "installed.bin").exists() is False
    m = len(csms.received)
    st.hw.ev_plug(1, False)                                 # ParkingBayUnoccupied: the transaction ends
    await ended(csms, tx_id, after=m)
    await status_reached(csms, "Installed", 71, m)
    assert index_of(csms, "TransactionEvent", lambda p: p["eventType"] == "Ended", m) < \
        index_of(csms, "FirmwareStatusNotification", lambda p: p["status"] == "Installing", m)
    boot = index_of(csms, "BootNotification", lambda p: p["reason"] == "FirmwareUpdate", m)
    assert connector_statuses(csms, m, 1)[0] == "Unavailable"     # step 14, before the reboot
    for evse in (1, 2):                                     # step 21: the reboot ended the hold
        await csms.wait_for("StatusNotification", lambda p, e=evse: p["evseId"] == e, after=boot)
        assert connector_statuses(csms, boot, evse) == ["Available"]
    await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "FirmwareUpdated", after=m)
    assert statuses(csms, n) == [(s, 71) for s in ["Downloading", "Downloaded", "SignatureVerified",
                                                    "InstallScheduled", *INSTALLED_FLOW[3:]]]
    assert (st.cfg.data_dir / "firmware" / "installed.bin").read_bytes() == IMAGE
    assert not any(c.holds for c in st.station.engine.connectors.values())
    assert csms.violations == []


async def test_tc_l_14_cs_allow_new_sessions_pending_firmware_update_true(csms, make_station, server, pki):
    """TC_L_14_CS (L01.FR.06, L01.FR.07 precondition false): AllowNewSessionsPendingFirmwareUpdate true -> no EVSE is
    made Unavailable while the installation waits, a second transaction starts on EVSE 2, and the installation
    waits for that one too: Installing only when the last transaction has ended."""
    root, signer = pki
    st = await two_evses(csms, make_station, root, "true")
    assert await get_var(csms, "ChargingStation", "AllowNewSessionsPendingFirmwareUpdate") == "true"
    tx1 = await charging(csms, st, 1, "TAG1")
    n = len(csms.received)
    fw = firmware(server.serve("/fw.bin", IMAGE), signer)
    assert await csms.call(ID, "UpdateFirmware", {"requestId": 72, "firmware": fw}) == {"status": "Accepted"}
    await status_reached(csms, "InstallScheduled", 72, n)
    tx2 = await charging(csms, st, 2, "TAG2", after=n)     # a new session is allowed
    m = len(csms.received)
    st.hw.ev_plug(1, False)
    await ended(csms, tx1, after=m)
    await barrier(csms)
    assert "Unavailable" not in connector_statuses(csms, n, 1) + connector_statuses(csms, n, 2)
    assert ("Installing", 72) not in statuses(csms, n)     # the second transaction still runs
    m = len(csms.received)
    st.hw.ev_plug(2, False)
    await ended(csms, tx2, after=m)
    await status_reached(csms, "Installed", 72, m)
    assert statuses(csms, n) == [(s, 72) for s in ["Downloading", "Downloaded", "SignatureVerified",
                                                    "InstallScheduled", *INSTALLED_FLOW[3:]]]
    assert csms.violations == []


async def test_l01_fr_07_each_evse_freed_is_held_and_a_failed_install_lifts_the_hold(csms, make_station, server,
                                                                                    pki):
    """L01.FR.07 "any EVSE that becomes available SHALL be set to UNAVAILABLE": with transactions on both EVSEs the
    one that ends first goes Unavailable while the other still charges (no Installing yet); after the last one
    the installation starts. The installer fails (InstallationFailed): no reboot, the hold is lifted and both
    EVSEs are Available and usable again."""
    root, signer = pki
    command = f"{sys.executable} -c \"import sys; sys.exit(1)\""
    st = await two_evses(csms, make_station, root, "false", firmware_install_command=command)
    tx1 = await charging(csms, st, 1, "TAG1")
    tx2 = await charging(csms, st, 2, "TAG2")
    n = len(csms.received)
    fw = firmware(server.serve("/fw.bin", IMAGE), signer)
    assert await csms.call(ID, "UpdateFirmware", {"requestId": 73, "firmware": fw}) == {"status": "Accepted"}
    await status_reached(csms, "InstallScheduled", 73, n)
    m = len(csms.received)
    st.hw.ev_plug(1, False)
    await ended(csms, tx1, after=m)
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1 and p["connectorStatus"] == "Unavailable",
                        after=m)
    await barrier(csms)
    assert connector_statuses(csms, n, 2) == [] and ("Installing", 73) not in statuses(csms, n)
    m = len(csms.received)
    st.hw.ev_plug(2, False)
    await ended(csms, tx2, after=m)
    await status_reached(csms, "InstallationFailed", 73, m)
    for evse in (1, 2):
        await csms.wait_for("StatusNotification", lambda p, e=evse: p["evseId"] == e
                            and p["connectorStatus"] == "Available", after=m)
    assert st.station.boots == 0
    assert statuses(csms, n) == [(s, 73) for s in ["Downloading", "Downloaded", "SignatureVerified",
                                                    "InstallScheduled", "Installing", "InstallationFailed"]]
    assert not any(c.holds for c in st.station.engine.connectors.values())
    await charging(csms, st, 1, "TAG3", after=m)            # usable again
    assert csms.violations == []


async def test_l01_fr_30_ftp_download_wrong_password_server_gone_then_installed(csms, make_station, pki, tmp_path):
    """FTP download (passive, user:password from the URL; L01 remark): a wrong password and a server that goes away
    mid-transfer -> Downloading, DownloadFailed after 1 + retries attempts (L01.FR.30), nothing installed; then the
    right URL -> the whole flow to Installed, the image byte for byte."""
    root, signer = pki
    st = await booted(csms, make_station, root)
    big = IMAGE * 64                        # ~1 MiB: the cut falls mid-transfer
    with FtpServer(tmp_path / "ftp") as ftp:
        ftp.put("/fw/image.bin", big)
        n = len(csms.received)
        fw = firmware(ftp.url("/fw/image.bin", password="wrong"), signer, data=big)
        assert await csms.call(ID, "UpdateFirmware", {"requestId": 81, "retries": 1, "retryInterval": 0,
                                                      "firmware": fw}) == {"status": "Accepted"}
        await status_reached(csms, "DownloadFailed", 81, n)
        assert statuses(csms, n) == [("Downloading", 81), ("DownloadFailed", 81)]
        assert ftp.commands.count("PASS") == 2 and not any(c.startswith("RETR") for c in ftp.commands)
        n = len(csms.received)
        ftp.cut_after = 64 * 1024
        fw = firmware(ftp.url("/fw/image.bin"), signer, data=big)
        assert await csms.call(ID, "UpdateFirmware", {"requestId": 82, "retries": 0, "retryInterval": 0,
                                                      "firmware": fw}) == {"status": "Accepted"}
        await status_reached(csms, "DownloadFailed", 82, n)
        assert statuses(csms, n) == [("Downloading", 82), ("DownloadFailed", 82)]
        assert not (st.cfg.data_dir / "firmware" / "firmware-82.bin").exists()    # no partial image left
        ftp.cut_after = None
        n = len(csms.received)
        fw = firmware(ftp.url("/fw/image.bin"), signer, data=big)
        assert await csms.call(ID, "UpdateFirmware", {"requestId": 83, "firmware": fw}) == {"status": "Accepted"}
        await status_reached(csms, "Installed", 83, n)
    assert statuses(csms, n) == [(s, 83) for s in INSTALLED_FLOW]
    assert (st.cfg.data_dir / "firmware" / "installed.bin").read_bytes() == big
    assert csms.violations == []


async def test_l01_fr_02_22_deleted_manufacturer_root_no_longer_trusted(csms, make_station, server, pki):
    """The spec defines no revocation source for the firmware signing certificate (no CRL / OCSP in L01; see
    README "Firmware"), so trust is the manufacturer root in the certificate store (L01.FR.12, M04 remark: with all
    ManufacturerRootCertificates deleted no signed firmware can be installed): installed by InstallCertificate ->
    Accepted; after DeleteCertificate the same request -> InvalidCertificate and the security event
    InvalidFirmwareSigningCertificate (L01.FR.02/22), no download."""
    root, signer = pki
    await make_station(csms, protocols=["ocpp2.0.1"])
    await csms.wait_for("BootNotification", identity=ID)
    await csms.wait_for("SecurityEventNotification", identity=ID)
    pem = Path(root.cert_file).read_text()
    assert (await csms.call(ID, "InstallCertificate", {"certificateType": "ManufacturerRootCertificate",
                                                       "certificate": pem}))["status"] == "Accepted"
    url = server.serve("/fw.bin", IMAGE)
    n = len(csms.received)
    fw = firmware(url, signer, retrieve=timedelta(hours=1))          # DownloadScheduled: nothing fetched yet
    assert await csms.call(ID, "UpdateFirmware", {"requestId": 91, "firmware": fw}) == {"status": "Accepted"}
    ids = await csms.call(ID, "GetInstalledCertificateIds", {"certificateType": ["ManufacturerRootCertificate"]})
    [chain] = ids["certificateHashDataChain"]
    assert (await csms.call(ID, "DeleteCertificate", {"certificateHashData": chain["certificateHashData"]}))[
        "status"] == "Accepted"
    res = await csms.call(ID, "UpdateFirmware", {"requestId": 92, "firmware": fw})
    assert res["status"] == "InvalidCertificate" and res["statusInfo"]["reasonCode"] == "InvalidCertificate"
    await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "InvalidFirmwareSigningCertificate",
                        after=n)
    await barrier(csms)
    assert statuses(csms, n) == [("DownloadScheduled", 91)] and server.gets == []
    assert csms.violations == []


# ---- 1.6 security whitepaper ---------------------------------------------------------------------------------------
async def test_16_whitepaper_l01_signed_update_firmware_and_plain_update_firmware(csms, make_station, server, pki):
    """Whitepaper L01.FR.20: plain UpdateFirmware.req -> CALLERROR NotSupported, no update. L01.FR.01/10/23:
    SignedUpdateFirmware.req -> Accepted; SignedFirmwareStatusNotification.req Downloading .. InstallRebooting, the
    reboot, Installed, all with the requestId; ExtendedTriggerMessage FirmwareStatusNotification -> Idle
    (L01.FR.28). A signer from an unknown root -> InvalidCertificate (L01.FR.24)."""
    root, signer = pki
    await booted16(csms, make_station, manufacturer_root_file=root.cert_file)
    url = server.serve("/fw.bin", IMAGE)
    with pytest.raises(CallErrorReceived) as info:
        await csms.call(ID, "UpdateFirmware", {"location": url, "retrieveDate": rfc(PAST)})
    assert info.value.code == "NotSupported"
    n = len(csms.received)
    fw = firmware(url, signer, install=None)
    assert await csms.call(ID, "SignedUpdateFirmware", {"requestId": 61, "firmware": fw}) == {"status": "Accepted"}
    action = "SignedFirmwareStatusNotification"
    await status_reached(csms, "Installed", 61, n, action=action)
    assert statuses(csms, n, action) == [(s, 61) for s in INSTALLED_FLOW]
    assert server.gets == ["/fw.bin"]
    await triggered_idle(csms, "FirmwareStatusNotification", "ExtendedTriggerMessage", answer=action)
    other = devpki.firmware_signing_certificate(server_dir := Path(root.cert_file).parent / "x",
                                                devpki.unknown_ca(server_dir))
    res = await csms.call(ID, "SignedUpdateFirmware", {"requestId": 62, "firmware": firmware(url, other,
                                                                                             install=None)})
    assert res == {"status": "InvalidCertificate"}
    assert csms.violations == []


async def test_16_whitepaper_l01_fr_03_invalid_signature_over_ftp(csms, make_station, pki, tmp_path):
    """Whitepaper L01 step 5, L01.FR.03: SignedUpdateFirmware.req whose image is downloaded over FTP but whose
    signature was made by another key (a signer of the same manufacturer root) -> Accepted, then
    SignedFirmwareStatusNotification Downloading, Downloaded, InvalidSignature, and the security event
    InvalidFirmwareSignature; no installation, no reboot."""
    root, signer = pki
    st = await booted16(csms, make_station, manufacturer_root_file=root.cert_file)
    other = devpki.firmware_signing_certificate(Path(root.cert_file).parent, root, "other-signer")
    with FtpServer(tmp_path / "ftp") as ftp:
        ftp.put("/fw.bin", IMAGE)
        fw = firmware(ftp.url("/fw.bin"), signer, install=None)
        fw["signature"] = other.sign(IMAGE)                   # valid signature, but not by the given certificate
        n = len(csms.received)
        assert await csms.call(ID, "SignedUpdateFirmware", {"requestId": 63, "firmware": fw}) == \
            {"status": "Accepted"}
        action = "SignedFirmwareStatusNotification"
        await status_reached(csms, "InvalidSignature", 63, n, action=action)
        await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "InvalidFirmwareSignature", after=n)
    await barrier16(csms)
    assert statuses(csms, n, action) == [("Downloading", 63), ("Downloaded", 63), ("InvalidSignature", 63)]
    assert not (st.cfg.data_dir / "firmware" / "installed.bin").exists() and st.station.boots == 0
    assert csms.violations == []
