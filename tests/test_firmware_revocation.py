"""Revocation of the firmware signing certificate (issue #4: "wrong signature, wrong signer and revoked signer
refused"): 1.6 Security Whitepaper L01.FR.23/25 (SignedUpdateFirmware.conf RevokedCertificate), 2.0.1 L01.FR.21
and UpdateFirmwareStatusEnumType RevokedCertificate, L01.FR.02 (InvalidFirmwareSigningCertificate). Part 2 A00
§1.5 (whitepaper §2.6.3) names "online verification" as the revocation method for the firmware signing certificate.

A real station against the strict CSMS, the development manufacturer PKI (``security.devpki``) with the signer's
authorityInfoAccess naming a real OCSP responder in this process (``http.server`` in a thread) that answers with
signed RFC 6960 responses: good, revoked, forged, or nobody listening; and a CRL distribution point. ``[firmware] revocation`` decides what an
unknown status does: ocsp-soft (default) accepts with a warning and a security log entry, ocsp-hard refuses."""
from __future__ import annotations

import base64
import datetime as dt
import http.server
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.x509 import ocsp

from test_firmware import (ID, IMAGE, INSTALLED_FLOW, FirmwareServer, booted, closed_port_url, firmware,
                           refused_signer, security_events, status_reached, statuses)
from test_v201_core import barrier
from helpers import LocalHttpServer, booted as booted16
from secure_cp import firmware as fwmod
from secure_cp.config import ConfigError, parse
from secure_cp.security import devpki

NOW = dt.datetime.now(dt.timezone.utc)


class OcspResponder(LocalHttpServer):
    """An OCSP responder over HTTP: POST application/ocsp-request -> a response signed by the manufacturer root
    (``devpki.ocsp_response``): revoked for the serial numbers in ``revoked``, good for the others it ``knows``;
    ``forger`` (another CA) signs instead when set. ``requests`` lists (Content-Type, serial number) received."""

    def __init__(self, issuer: devpki.Issuer) -> None:
        self.issuer = issuer
        self.known: dict[int, object] = {}
        self.revoked: set[int] = set()
        self.forger: devpki.Issuer | None = None
        self.requests: list[tuple[str, int]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ocsp.load_der_ocsp_request(body)
                outer.requests.append((self.headers["Content-Type"], request.serial_number))
                cert = outer.known[request.serial_number]
                answer = base64.b64decode(devpki.ocsp_response(
                    cert, outer.forger or outer.issuer, revoked=request.serial_number in outer.revoked))
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        super().__init__(Handler)
        self.url = self.base + "/ocsp"

    def signer(self, out: Path, stem: str, *, revoked: bool = False) -> devpki.FirmwareSigner:
        """A firmware signing certificate whose authorityInfoAccess names this responder."""
        signer = devpki.firmware_signing_certificate(out, self.issuer, stem, ocsp_url=self.url)
        self.known[signer.cert.serial_number] = signer.cert
        if revoked:
            self.revoked.add(signer.cert.serial_number)
        return signer


@pytest.fixture
def server() -> Iterator[FirmwareServer]:
    with FirmwareServer() as s:
        yield s


@pytest.fixture
def responder(tmp_path) -> Iterator[OcspResponder]:
    with OcspResponder(devpki.manufacturer_root(tmp_path / "pki")) as r:
        yield r


def installed(st) -> Path:
    return st.cfg.data_dir / "firmware" / "installed.bin"


async def update_installed(csms, st, request_id: int, fw: dict, after: int) -> None:
    """UpdateFirmware with ``fw`` -> Accepted, the status Installed reported, the image installed byte for byte."""
    assert await csms.call(ID, "UpdateFirmware", {"requestId": request_id, "firmware": fw}) == {"status": "Accepted"}
    await status_reached(csms, "Installed", request_id, after)
    assert installed(st).read_bytes() == IMAGE


def unreachable_signer(responder: OcspResponder, out: Path, stem: str) -> devpki.FirmwareSigner:
    """A signer whose responder URL is a port nobody listens on."""
    return devpki.firmware_signing_certificate(out, responder.issuer, stem,
                                               ocsp_url=closed_port_url().replace("/fw.bin", "/ocsp"))


# ---- 2.0.1 ---------------------------------------------------------------------------------------------------------
async def test_l01_fr_21_revoked_signer_refused_with_revoked_certificate(csms, make_station, server, responder,
                                                                          tmp_path):
    """L01.FR.21 + UpdateFirmwareStatusEnumType RevokedCertificate, L01.FR.02: the responder says revoked ->
    RevokedCertificate with statusInfo, the security event InvalidFirmwareSigningCertificate, no download, no
    FirmwareStatusNotification, nothing installed. The station asked once, POST application/ocsp-request."""
    signer = responder.signer(tmp_path / "pki", "revoked", revoked=True)
    st = await booted(csms, make_station, responder.issuer)
    n = len(csms.received)
    res = await refused_signer(csms, 81, firmware(server.serve("/fw.bin", IMAGE), signer), "RevokedCertificate", n)
    assert res["statusInfo"]["reasonCode"] == "RevokedCertificate"
    await barrier(csms)
    assert statuses(csms, n) == [] and server.gets == []
    assert responder.requests == [("application/ocsp-request", signer.cert.serial_number)]
    assert not installed(st).exists()
    assert csms.violations == []


async def test_l01_good_signer_installed_after_the_ocsp_check(csms, make_station, server, responder, tmp_path):
    """TC_L_01_CS flow with a signer the responder says is good: Accepted, Downloading .. Installed, the image
    installed byte for byte; one OCSP request; FirmwareUpdated and no InvalidFirmwareSigningCertificate."""
    signer = responder.signer(tmp_path / "pki", "good")
    st = await booted(csms, make_station, responder.issuer)
    n = len(csms.received)
    await update_installed(csms, st, 82, firmware(server.serve("/fw.bin", IMAGE), signer), n)
    assert statuses(csms, n) == [(s, 82) for s in INSTALLED_FLOW]
    assert responder.requests == [("application/ocsp-request", signer.cert.serial_number)]
    assert "FirmwareUpdated" in security_events(csms, n)
    assert "InvalidFirmwareSigningCertificate" not in security_events(csms, n)
    assert csms.violations == []


async def test_l01_unreachable_responder_soft_policy_installs_with_a_warning(csms, make_station, server, responder,
                                                                             tmp_path, caplog):
    """``[firmware] revocation = "ocsp-soft"`` (the default; neither version requires a reachable responder): nobody
    answers at the signer's OCSP URL -> Accepted and Installed, a warning in the log, a (non-critical) entry in the
    security log, which is not pushed to the CSMS."""
    caplog.set_level(logging.WARNING, logger="secure_cp.firmware")
    signer = unreachable_signer(responder, tmp_path / "pki", "offline")
    st = await booted(csms, make_station, responder.issuer)
    n = len(csms.received)
    await update_installed(csms, st, 83, firmware(server.serve("/fw.bin", IMAGE), signer), n)
    assert any("revocation status of the signing certificate unknown" in r.getMessage() and "ocsp-soft" in
               r.getMessage() for r in caplog.records)
    entries = [e for e in st.station.security_events.log() if e.type == fwmod.REVOCATION_UNKNOWN_EVENT]
    assert len(entries) == 1 and not entries[0].critical and "unreachable" in entries[0].tech_info
    assert fwmod.REVOCATION_UNKNOWN_EVENT not in security_events(csms, n)
    assert csms.violations == []


async def test_l01_hard_policy_refuses_unknown_status_and_forged_answers(csms, make_station, server, responder,
                                                                          tmp_path):
    """``[firmware] revocation = "ocsp-hard"``: a signer whose status cannot be had (nobody listening; an answer
    signed by another CA) -> InvalidCertificate, reasonCode RevocationUnknown (2.0.1 L01 step 3: "not valid or could
    not be verified"), InvalidFirmwareSigningCertificate each time, no download. A good answer is still Accepted."""
    st = await booted(csms, make_station, responder.issuer, firmware_revocation="ocsp-hard")
    url = server.serve("/fw.bin", IMAGE)
    n = len(csms.received)
    offline = unreachable_signer(responder, tmp_path / "pki", "offline")
    res = await csms.call(ID, "UpdateFirmware", {"requestId": 84, "firmware": firmware(url, offline)})
    assert res["status"] == "InvalidCertificate" and res["statusInfo"]["reasonCode"] == "RevocationUnknown"
    responder.forger = devpki.unknown_ca(tmp_path / "forger")
    forged = responder.signer(tmp_path / "pki", "forged")
    res = await csms.call(ID, "UpdateFirmware", {"requestId": 85, "firmware": firmware(url, forged)})
    assert res["status"] == "InvalidCertificate" and "not signed by the issuer" in res["statusInfo"]["additionalInfo"]
    await barrier(csms)
    assert security_events(csms, n) == ["InvalidFirmwareSigningCertificate"] * 2
    assert statuses(csms, n) == [] and server.gets == []
    responder.forger = None
    good = responder.signer(tmp_path / "pki", "good")
    await update_installed(csms, st, 86, firmware(url, good), n)
    assert csms.violations == []


async def test_l01_crl_distribution_point_when_ocsp_gives_no_status(csms, make_station, server, responder, tmp_path):
    """The signer's CRL distribution point (a CRL signed by the manufacturer root, served over HTTP) is read when
    OCSP gives no status: listed -> RevokedCertificate + InvalidFirmwareSigningCertificate; under ocsp-hard an
    unreachable responder with a current CRL that does not list the signer -> Accepted and installed."""
    st = await booted(csms, make_station, responder.issuer, firmware_revocation="ocsp-hard")
    url = server.serve("/fw.bin", IMAGE)
    listed = devpki.firmware_signing_certificate(tmp_path / "pki", responder.issuer, "listed",
                                                 crl_url=server.base + "/root.crl")
    unlisted = devpki.firmware_signing_certificate(tmp_path / "pki", responder.issuer, "unlisted",
                                                   ocsp_url=closed_port_url(), crl_url=server.base + "/root.crl")
    server.serve("/root.crl", devpki.crl(responder.issuer, (listed.cert.serial_number,)))
    n = len(csms.received)
    res = await refused_signer(csms, 87, firmware(url, listed), "RevokedCertificate", n)
    assert "(CRL)" in res["statusInfo"]["additionalInfo"]
    assert server.gets == ["/root.crl"]
    await update_installed(csms, st, 88, firmware(url, unlisted), n)
    assert server.gets == ["/root.crl", "/root.crl", "/fw.bin"]
    assert csms.violations == []


# ---- 1.6 (Security Whitepaper edition 3) ------------------------------------------------------------------------
async def test_16_whitepaper_l01_fr_25_revoked_signer_then_good_signer(csms, make_station, server, responder,
                                                                         tmp_path):
    """Whitepaper L01.FR.23/25: SignedUpdateFirmware.req with a revoked signer -> SignedUpdateFirmware.conf
    RevokedCertificate, the security event InvalidFirmwareSigningCertificate, no download; a good signer afterwards
    -> Accepted and SignedFirmwareStatusNotification Downloading .. Installed."""
    revoked = responder.signer(tmp_path / "pki", "revoked", revoked=True)
    good = responder.signer(tmp_path / "pki", "good")
    st = await booted16(csms, make_station, manufacturer_root_file=responder.issuer.cert_file)
    url = server.serve("/fw.bin", IMAGE)
    n = len(csms.received)
    res = await refused_signer(csms, 91, firmware(url, revoked, install=None), "RevokedCertificate", n,
                               action="SignedUpdateFirmware")
    assert res == {"status": "RevokedCertificate"}
    assert server.gets == []
    action = "SignedFirmwareStatusNotification"
    res = await csms.call(ID, "SignedUpdateFirmware", {"requestId": 92, "firmware": firmware(url, good,
                                                                                             install=None)})
    assert res == {"status": "Accepted"}
    await status_reached(csms, "Installed", 92, n, action=action)
    assert statuses(csms, n, action) == [(s, 92) for s in INSTALLED_FLOW]
    assert installed(st).read_bytes() == IMAGE
    assert [serial for _, serial in responder.requests] == [revoked.cert.serial_number, good.cert.serial_number]
    assert csms.violations == []


# ---- the OCSP response checks (RFC 6960) ------------------------------------------------------------------------
def _der(b64: str) -> bytes:
    return base64.b64decode(b64)


def test_ocsp_response_checks(tmp_path):
    """check_ocsp_response believes only a current answer about this certificate signed by its issuer or a delegated
    responder (extended key usage OCSPSigning, issued by the issuer): good / revoked; stale, future, forged, for
    another certificate, a responder certificate without OCSPSigning, or not OCSP at all -> unknown."""
    root = devpki.manufacturer_root(tmp_path)
    signer = devpki.firmware_signing_certificate(tmp_path, root, ocsp_url="http://127.0.0.1:1/ocsp").cert
    other = devpki.firmware_signing_certificate(tmp_path, root, "other").cert
    delegate = devpki.ocsp_responder_certificate(tmp_path, root)
    plain = devpki.firmware_signing_certificate(tmp_path, root, "plain")
    check = fwmod.check_ocsp_response
    assert check(_der(devpki.ocsp_response(signer, root)), signer, root.cert, NOW).status == "good"
    assert check(_der(devpki.ocsp_response(signer, root, revoked=True)), signer, root.cert, NOW).status == "revoked"
    assert check(_der(devpki.ocsp_response(signer, root, responder=delegate)), signer, root.cert,
                 NOW).status == "good"
    unknown = [
        devpki.ocsp_response(signer, root, next_update=NOW - dt.timedelta(hours=1),
                             this_update=NOW - dt.timedelta(days=2)),                      # stale
        devpki.ocsp_response(signer, root, this_update=NOW + dt.timedelta(hours=1)),        # from the future
        devpki.ocsp_response(signer, devpki.unknown_ca(tmp_path / "x")),                    # another CA signed
        devpki.ocsp_response(other, root),                                                  # another certificate
        devpki.ocsp_response(signer, root, responder=devpki.Issuer(plain.cert, plain.key, plain.cert_file)),
    ]                                                              # the last: a responder without OCSPSigning
    for answer in unknown:
        assert check(_der(answer), signer, root.cert, NOW).status == "unknown"
    assert check(b"not DER", signer, root.cert, NOW).status == "unknown"


def test_crl_checks(tmp_path):
    """check_crl believes only a current CRL signed by the issuer: listed -> revoked, else good; stale, from the
    future, signed by another CA, or not a CRL -> unknown."""
    root = devpki.manufacturer_root(tmp_path)
    signer = devpki.firmware_signing_certificate(tmp_path, root).cert
    check = fwmod.check_crl
    assert check(devpki.crl(root, (signer.serial_number,)), signer, root.cert, NOW).status == "revoked"
    assert check(devpki.crl(root, (signer.serial_number + 1,)), signer, root.cert, NOW).status == "good"
    for answer in (devpki.crl(root, next_update=NOW - dt.timedelta(hours=1), this_update=NOW - dt.timedelta(days=2)),
                   devpki.crl(root, this_update=NOW + dt.timedelta(hours=1)),
                   devpki.crl(devpki.unknown_ca(tmp_path / "x")),
                   b"not a CRL"):
        assert check(answer, signer, root.cert, NOW).status == "unknown"


def test_firmware_revocation_config():
    """``[firmware] revocation``: ocsp-soft by default, ocsp-hard / off accepted, anything else names the key."""
    assert parse({"station": {"identity": "X"}}).firmware_revocation == "ocsp-soft"
    for policy in ("ocsp-hard", "off"):
        assert parse({"station": {"identity": "X"}, "firmware": {"revocation": policy}}).firmware_revocation == policy
    with pytest.raises(ConfigError) as e:
        parse({"station": {"identity": "X"}, "firmware": {"revocation": "crl"}})
    assert "firmware.revocation" in str(e.value)
