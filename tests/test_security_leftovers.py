"""Issue #4 leftovers, end to end against the strict CSMS over real WebSockets (and real TLS, HTTPS and FTPS servers):

* 2.0.1 M03.FR.05 GetInstalledCertificateIds V2GCertificateChain: the V2G (SECC) certificate installed through A02
  (SignCertificate / CertificateSigned with certificateType V2GCertificate), its sub-CAs as childCertificateHashData,
  checked against ``cryptography``'s RFC 6960 CertID; M04.FR.06 / M04.FR.03 DeleteCertificate refuses them.
* M06.FR.06/07/10: the station asks for the OCSP status of that chain by itself, caches it, does not ask again while
  it is fresh, waits for the connection (no polling) when it goes stale offline, and asks again for a new V2G
  certificate.
* 2.0.1 N01.FR.15/16 (and L01 / the 1.6 whitepaper): firmware over HTTPS and logs over FTPS from servers whose
  certificate chains to a private CA trusted only through ``[files] ca_file``.
* 1.6 whitepaper ExtendedTriggerMessage BootNotification (MessageTriggerEnumType, 1.6 §4.2 / §5.17) and 2.0.1
  TriggerMessage BootNotification (F06.FR.17).
* Part 6 TC_A_21_CS (A05.FR.03) and TC_A_07_CS (profile 3 with the certificate from the A02 store).
"""
from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from ftp_fixture import FtpServer
from helpers import barrier as barrier16, booted as booted16, eventually
from test_cert_signing import signed_response
from test_diagnostics import final_status, log_statuses
from test_firmware import FirmwareServer, INSTALLED_FLOW, firmware, status_reached, statuses
from test_firmware import booted as booted_fw
from test_tls import ssl_object
from test_v201_core import ID, barrier, booted, go_offline, go_online, set_var
from test_v201_tc_remaining import PASSWORD, PRIORITY, set_network_profile, set_variable, tls_csms
from secure_cp.config import ConfigError, load
from secure_cp.security import devpki, tls
from secure_cp.security.iso15118 import OCSP_MAX_AGE
from secure_cp.security.keys import KeysConfig
from secure_cp.sim.csms import Csms

ORG = devpki.CPO_NAME
SECC = "DE*SCP*E0001"


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def cert_id(cert: x509.Certificate, issuer: x509.Certificate) -> dict:
    """RFC 6960 CertID as ``cryptography`` computes it (independent of the station's code), as hash data."""
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
    return {"hashAlgorithm": "SHA256", "issuerNameHash": req.issuer_name_hash.hex(),
            "issuerKeyHash": req.issuer_key_hash.hex(), "serialNumber": format(req.serial_number, "x")}


@pytest.fixture
def v2g(tmp_path) -> devpki.Iso15118Chain:
    return devpki.iso15118_chain(tmp_path / "pki", "v2g", devpki.V2G_NAME, "unused-leaf")


def v2g_signer(v2g: devpki.Iso15118Chain):
    """The CSMS's CA for V2GCertificate CSRs: sub-CA 2 signs; the chain carries sub-CA 2 and sub-CA 1 (the V2G root is
    installed apart, M03 remark)."""
    def sign(csr: str, cert_type: str | None) -> str:
        assert cert_type == "V2GCertificate"
        return devpki.sign_csr(v2g.sub_ca2, csr) + pem(v2g.sub_ca1.cert)
    return sign


async def v2g_station(csms: Csms, make_station, v2g: devpki.Iso15118Chain, tmp_path: Path):
    """A 2.0.1 station with OrganizationName, ISO15118Ctrlr.SeccId and the V2G root installed (M05)."""
    st = await booted(csms, make_station, ocpp={"CpoName": ORG},
                      keys=KeysConfig(backend="software", dir=tmp_path / "keys"))
    assert await set_var(csms, "ISO15118Ctrlr", "SeccId", SECC) == "Accepted"
    res = await csms.call(ID, "InstallCertificate", {"certificateType": "V2GRootCertificate",
                                                      "certificate": pem(v2g.root.cert)})
    assert res == {"status": "Accepted"}
    csms.certificate_signer = v2g_signer(v2g)
    return st


async def install_v2g_certificate(csms: Csms) -> x509.Certificate:
    """A02 for the V2G certificate: TriggerMessage SignV2GCertificate -> SignCertificate(V2GCertificate, CN = SeccId)
    -> CertificateSigned Accepted. The new SECC leaf."""
    n, m = len(csms.received), len(csms.responses)
    assert await csms.call(ID, "TriggerMessage", {"requestedMessage": "SignV2GCertificate"}) == {"status": "Accepted"}
    req = await csms.wait_for("SignCertificate", after=n, identity=ID)
    assert req.payload["certificateType"] == "V2GCertificate"
    csr = x509.load_pem_x509_csr(req.payload["csr"].encode())
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SECC
    assert await signed_response(csms, m) == {"status": "Accepted"}
    signed = next(r for r in reversed(csms.received) if r.action == "SignCertificate")
    key = x509.load_pem_x509_csr(signed.payload["csr"].encode()).public_key()
    return key     # the leaf is identified by its key (the CSMS signed it; its serial is random)


def sent(csms: Csms, action: str, after: int = 0) -> list[dict]:
    return [r.payload for r in csms.received[after:] if r.action == action]


# ---- M03 / M04: V2GCertificateChain --------------------------------------------------------------------------------
async def test_m03_fr_05_v2g_certificate_chain_reported_with_children_and_m04_fr_06_not_deletable(
        csms, make_station, v2g, tmp_path):
    """M03.FR.02 before A02: NotFound. After A02 (V2GCertificate): M03.FR.03/04/05 one V2GCertificateChain entry, the
    SECC certificate's hash data and its sub-CAs as childCertificateHashData (sub-CA 2, sub-CA 1), each an RFC 6960
    CertID; all types (certificateType omitted) include it next to the V2GRootCertificate. M04.FR.06: the V2G
    Charging Station certificate cannot be deleted (Failed), nor a sub-CA of its chain (M04.FR.03: refused, the chain
    presented to EVs would break); the V2G root itself is a store entry and can be (M04.FR.02)."""
    st = await v2g_station(csms, make_station, v2g, tmp_path)
    only = {"certificateType": ["V2GCertificateChain"]}
    assert await csms.call(ID, "GetInstalledCertificateIds", only) == {"status": "NotFound"}
    await install_v2g_certificate(csms)
    chain = st.station.cert_signing.installed_chains("V2GCertificate")[0]
    leaf = chain[0]
    assert [c.subject for c in chain] == [leaf.subject, v2g.sub_ca2.cert.subject, v2g.sub_ca1.cert.subject]

    res = await csms.call(ID, "GetInstalledCertificateIds", only)
    assert res["status"] == "Accepted"
    assert res["certificateHashDataChain"] == [{
        "certificateType": "V2GCertificateChain", "certificateHashData": cert_id(leaf, v2g.sub_ca2.cert),
        "childCertificateHashData": [cert_id(v2g.sub_ca2.cert, v2g.sub_ca1.cert),
                                     cert_id(v2g.sub_ca1.cert, v2g.root.cert)]}]
    everything = (await csms.call(ID, "GetInstalledCertificateIds", {}))["certificateHashDataChain"]
    assert {"certificateType": "V2GRootCertificate", "certificateHashData": cert_id(v2g.root.cert, v2g.root.cert)} \
        in everything
    assert res["certificateHashDataChain"][0] in everything

    for cert, issuer in ((leaf, v2g.sub_ca2.cert), (v2g.sub_ca2.cert, v2g.sub_ca1.cert)):
        answer = await csms.call(ID, "DeleteCertificate", {"certificateHashData": cert_id(cert, issuer)})
        assert answer == {"status": "Failed"}
    assert (await csms.call(ID, "GetInstalledCertificateIds", only))["certificateHashDataChain"] \
        == res["certificateHashDataChain"]                                    # state intact
    answer = await csms.call(ID, "DeleteCertificate", {"certificateHashData": cert_id(v2g.root.cert, v2g.root.cert)})
    assert answer == {"status": "Accepted"}
    assert st.station.certificates.roots("V2GRootCertificate") == []
    assert csms.violations == []


# ---- M06: the OCSP refresher ---------------------------------------------------------------------------------------
async def test_m06_fr_06_07_10_station_fetches_caches_and_refreshes_the_v2g_chain_status_itself(
        csms, make_station, v2g, tmp_path):
    """M06.FR.06: once the V2G certificate is installed (A02) the station itself sends GetCertificateStatus for the
    SECC certificate and each sub-CA (one certificate per request) and caches the answers: while they are fresh it
    asks nothing more. M06.FR.10: when they go stale while offline the refresher waits for the connection (it is
    parked without a timeout, not polling) and asks again once the station is registered online. M06.FR.07: a new
    V2G certificate makes it ask again for the new one and for the intermediates, cached or not."""
    def answer(req: dict) -> dict:
        """An OCSP responder for the V2G hierarchy: good, valid for 30 days."""
        serial = int(req["ocspRequestData"]["serialNumber"], 16)
        leaves = [(chain[0], v2g.sub_ca2) for chain in station.cert_signing.installed_chains("V2GCertificate")]
        cert, issuer = next((c, i) for c, i in issued + leaves if c.serial_number == serial)
        return {"status": "Accepted", "ocspResult": devpki.ocsp_response(
            cert, issuer, next_update=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30))}
    issued: list[tuple[x509.Certificate, devpki.Issuer]] = [(v2g.sub_ca2.cert, v2g.sub_ca1),
                                                          (v2g.sub_ca1.cert, v2g.root)]
    csms.certificate_status_answer = answer
    st = await v2g_station(csms, make_station, v2g, tmp_path)
    station = st.station
    await barrier(csms)
    assert sent(csms, "GetCertificateStatus") == []                      # no V2G certificate yet: nothing to ask
    key = await install_v2g_certificate(csms)
    leaf = station.cert_signing.installed_chains("V2GCertificate")[0][0]
    assert leaf.public_key() == key
    await eventually(lambda: len(sent(csms, "GetCertificateStatus")) == 3, what="three GetCertificateStatus")
    asked = [p["ocspRequestData"] for p in sent(csms, "GetCertificateStatus")]
    expected = [cert_id(leaf, v2g.sub_ca2.cert), cert_id(v2g.sub_ca2.cert, v2g.sub_ca1.cert),
                cert_id(v2g.sub_ca1.cert, v2g.root.cert)]
    assert sorted(({k: d[k] for k in expected[0]} for d in asked), key=str) == sorted(expected, key=str)
    await eventually(lambda: station.iso15118.next_refresh() > station.clock.now(), what="every status cached")
    await barrier(csms)
    assert len(sent(csms, "GetCertificateStatus")) == 3                 # fresh: not asked again
    result = await station.iso15118.certificate_status({**asked[0]})
    assert result.status == "Accepted" and result.cached

    await go_offline(csms, st)
    station.clock.offset += OCSP_MAX_AGE + 60                           # a week later: stale (M06.FR.10)
    station._ocsp_wake.set()                                            # what a clock correction does
    await eventually(lambda: station._ocsp_waiting, what="the refresher waiting for the connection")
    assert len(sent(csms, "GetCertificateStatus")) == 3
    await go_online(csms, st)
    await eventually(lambda: len(sent(csms, "GetCertificateStatus")) == 6, what="refreshed after reconnecting")
    await eventually(lambda: station.iso15118.next_refresh() > station.clock.now(), what="fresh again")
    assert not station._ocsp_waiting

    key = await install_v2g_certificate(csms)                            # renewed (M06.FR.07)
    new_leaf = station.cert_signing.installed_chains("V2GCertificate")[0][0]
    assert new_leaf.public_key() == key and new_leaf.serial_number != leaf.serial_number
    await eventually(lambda: len(sent(csms, "GetCertificateStatus")) == 9, what="status of the new chain")
    serials = {p["ocspRequestData"]["serialNumber"] for p in sent(csms, "GetCertificateStatus")[6:]}
    assert serials == {format(c.serial_number, "x") for c in (new_leaf, v2g.sub_ca2.cert, v2g.sub_ca1.cert)}
    await barrier(csms)
    assert len(sent(csms, "GetCertificateStatus")) == 9
    assert csms.violations == []


# ---- N01.FR.15/16, L01: the trust of firmware and log servers ------------------------------------------------------
@pytest.fixture
def files_pki(tmp_path):
    """A private CA (not the CSMS root, not a system CA) and a server certificate for 127.0.0.1 / localhost."""
    root = devpki.unknown_ca(tmp_path / "files-pki", "files-root")
    chain, key = devpki.server_certificate(tmp_path / "files-pki", "files-server", root)
    return root, chain, key


@pytest.mark.parametrize("trusted", [True, False])
async def test_n01_fr_15_16_l01_https_firmware_and_ftps_log_trusted_through_files_ca_file(
        csms, make_station, tmp_path, files_pki, trusted):
    """HTTPS firmware download (L01) and FTPS log upload (N01) from servers whose certificate chains to a private CA.
    Trusted only through ``[files] ca_file``: with it the firmware is Installed and the log Uploaded; without it both
    fail (DownloadFailed / UploadFailure) because neither the system CAs nor the CSMS roots know that CA."""
    root, chain, key = files_pki
    maker = devpki.manufacturer_root(tmp_path / "fw-pki")
    signer = devpki.firmware_signing_certificate(tmp_path / "fw-pki", maker)
    extra = {"files_ca_file": root.cert_file} if trusted else {}
    st = await booted_fw(csms, make_station, maker, **extra)
    for service in (st.station.firmware, st.station.logs):               # the same trust for both
        subjects = [dict(x[0] for x in c["subject"]).get("commonName") for c in service.ssl_context.get_ca_certs()]
        assert (root.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value in subjects) is trusted
        assert service.ssl_context.check_hostname and service.ssl_context.verify_mode == ssl.CERT_REQUIRED
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(chain, key)
    with FirmwareServer() as https, FtpServer(tmp_path / "ftps", tls=(chain, key)) as ftps:
        https.server.socket = server_ctx.wrap_socket(https.server.socket, server_side=True)
        url = https.serve("/fw.bin", b"image over https").replace("http://", "https://")
        n = len(csms.received)
        fw = firmware(url, signer, data=b"image over https")
        assert await csms.call(ID, "UpdateFirmware", {"requestId": 41, "retries": 0, "firmware": fw}) \
            == {"status": "Accepted"}
        await status_reached(csms, "Installed" if trusted else "DownloadFailed", 41, n)
        assert statuses(csms, n) == ([(s, 41) for s in INSTALLED_FLOW] if trusted
                                     else [("Downloading", 41), ("DownloadFailed", 41)])
        n = len(csms.received)
        res = await csms.call(ID, "GetLog", {"logType": "SecurityLog", "requestId": 42, "retries": 0,
                                             "log": {"remoteLocation": ftps.url("/", scheme="ftps")}})
        assert res["status"] == "Accepted"
        assert await final_status(csms, 42, n) == ("Uploaded" if trusted else "UploadFailure")
        assert log_statuses(csms, n)[0] == ("Uploading", 42)
        assert ((ftps.root / res["filename"]).is_file()) is trusted
    assert csms.violations == []


async def test_n01_fr_15_installed_csms_root_trusted_for_file_transfers(csms, make_station, tmp_path):
    """N01.FR.15 ("at least the CSMS trust chain"): a CSMSRootCertificate installed over OCPP (M05) is trusted by the
    firmware and log transfers from the next transfer on, and no longer once deleted (M04)."""
    pki = devpki.generate(tmp_path / "pki", identity=ID)
    st = await booted(csms, make_station)
    cn = pki.root.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value

    def trusted() -> list[bool]:
        return [cn in [dict(x[0] for x in c["subject"]).get("commonName") for c in s.ssl_context.get_ca_certs()]
                for s in (st.station.firmware, st.station.logs)]
    assert trusted() == [False, False]
    res = await csms.call(ID, "InstallCertificate", {"certificateType": "CSMSRootCertificate",
                                                      "certificate": pem(pki.root.cert)})
    assert res == {"status": "Accepted"}
    assert trusted() == [True, True]
    res = await csms.call(ID, "DeleteCertificate", {"certificateHashData": cert_id(pki.root.cert, pki.root.cert)})
    assert res == {"status": "Accepted"}
    assert trusted() == [False, False]
    assert csms.violations == []


def test_files_ca_file_configuration_resolved_and_checked(tmp_path, files_pki):
    """``[files] ca_file``: relative to the configuration file; a file without a certificate stops the start with a
    message naming the key."""
    root, _chain, _key = files_pki
    (tmp_path / "ca.pem").write_bytes(root.cert_file.read_bytes())
    base = f'[station]\nidentity = "CP1"\ndata_dir = "{tmp_path / "data"}"\n[csms]\nurl = "ws://127.0.0.1:9"\n'
    good = tmp_path / "good.toml"
    good.write_text(base + '[files]\nca_file = "ca.pem"\n')
    assert load(good).files_ca_file == tmp_path / "ca.pem"
    (tmp_path / "empty.pem").write_text("no certificate\n")
    bad = tmp_path / "bad.toml"
    bad.write_text(base + '[files]\nca_file = "empty.pem"\n')
    with pytest.raises(ConfigError, match="files.ca_file"):
        load(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text(base + '[files]\ncafile = "ca.pem"\n')
    with pytest.raises(ConfigError, match="files.cafile: unknown key"):
        load(unknown)


# ---- BootNotification triggered ------------------------------------------------------------------------------------
async def test_16_extended_trigger_boot_notification_while_accepted_updates_the_interval(csms, make_station):
    """Whitepaper ExtendedTriggerMessage BootNotification (MessageTriggerEnumType: "to trigger BootNotification.req"):
    Accepted, then (after the response, 1.6 §5.17) one BootNotification.req; its Accepted answer sets the heartbeat
    interval (1.6 §4.2: HeartbeatInterval from the interval). No reboot: the connectors are not reported again."""
    await booted16(csms, make_station)
    await csms.wait_for("SecurityEventNotification", identity=ID)      # the boot's StartupOfTheDevice
    await barrier16(csms)
    csms.boot_interval = 77
    n = len(csms.received)
    assert await csms.call(ID, "ExtendedTriggerMessage", {"requestedMessage": "BootNotification"}) \
        == {"status": "Accepted"}
    boot = await csms.wait_for("BootNotification", after=n, identity=ID)
    assert boot.payload["chargePointModel"] == "test"
    res = await csms.call(ID, "GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert res["configurationKey"][0]["value"] == "77"
    await barrier16(csms)
    assert [r.action for r in csms.received[n:]] == ["BootNotification"]
    assert csms.violations == []


async def test_16_extended_trigger_boot_notification_while_pending_sent_before_the_interval(csms, make_station):
    """1.6 §4.2: after Pending the next BootNotification waits for the interval (here an hour) "unless requested to
    do so with a TriggerMessage": the triggered one goes out at once; Accepted -> registered, connectors reported."""
    csms.boot_status, csms.boot_interval = "Pending", 3600
    st = await make_station(csms)
    await csms.wait_for("BootNotification", identity=ID)
    await eventually(lambda: st.station.adapter.registration == "pending", what="Pending")
    csms.boot_status, csms.boot_interval = "Accepted", 300
    n = len(csms.received)
    assert await csms.call(ID, "ExtendedTriggerMessage", {"requestedMessage": "BootNotification"}) \
        == {"status": "Accepted"}
    await csms.wait_for("BootNotification", after=n, identity=ID)
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1, after=n, identity=ID)
    assert st.station.adapter.registration == "accepted"
    assert csms.violations == []


async def test_f06_fr_17_201_trigger_boot_notification_only_while_not_accepted(csms, make_station):
    """2.0.1 F06.FR.17: TriggerMessage BootNotification after an Accepted boot -> Rejected, nothing sent; while
    Pending -> Accepted and a BootNotification with reason Triggered at once (TC_B_02_CS step 13-15)."""
    csms.boot_status, csms.boot_interval = "Pending", 3600
    st = await make_station(csms, protocols=["ocpp2.0.1"])
    await csms.wait_for("BootNotification", identity=ID)
    await eventually(lambda: st.station.adapter.registration == "pending", what="Pending")
    csms.boot_status, csms.boot_interval = "Accepted", 300
    n = len(csms.received)
    assert await csms.call(ID, "TriggerMessage", {"requestedMessage": "BootNotification"}) == {"status": "Accepted"}
    boot = await csms.wait_for("BootNotification", after=n, identity=ID)
    assert boot.payload["reason"] == "Triggered"
    await eventually(lambda: st.station.adapter.registration == "accepted", what="Accepted")
    n = len(csms.received)
    assert await csms.call(ID, "TriggerMessage", {"requestedMessage": "BootNotification"}) == {"status": "Rejected"}
    await barrier(csms)
    assert sent(csms, "BootNotification", n) == []
    assert csms.violations == []


# ---- TC_A_21_CS / TC_A_07_CS ---------------------------------------------------------------------------------------
def expired_station_certificate(pki: devpki.DevPki, out: Path) -> tuple[Path, Path]:
    """A station certificate (CN = identity, CPO sub-CA) that expired yesterday, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, ID), x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG)])).sign(
        key, hashes.SHA256())
    now = dt.datetime.now(dt.timezone.utc)
    chain = devpki.sign_csr(pki.cpo_ca, csr.public_bytes(serialization.Encoding.PEM).decode(),
                            not_before=now - dt.timedelta(days=10), not_after=now - dt.timedelta(days=1))
    out.mkdir(parents=True, exist_ok=True)
    (out / "expired-chain.pem").write_text(chain)
    return out / "expired-chain.pem", devpki.write_key(key, out / "expired.key")


@pytest.mark.parametrize("case", ["none", "expired"])
async def test_tc_a_21_cs_profile_3_without_valid_station_certificate_priority_rejected(tmp_path, make_station, case):
    """TC_A_21_CS (A05.FR.03): a station at profile 2 (valid CSMS root) without a valid ChargingStationCertificate
    (none, or only an expired one) accepts the profile-3 NetworkConnectionProfile (step 2) but Rejects the
    NetworkConfigurationPriority that would put it in use (step 4): SecurityProfile, priority and connection stay.
    Once A02 has installed a valid certificate, the same priority is accepted."""
    pki = devpki.generate(tmp_path / "pki", identity=ID)
    extra = {}
    if case == "expired":
        cert_file, key_file = expired_station_certificate(pki, tmp_path / "expired")
        extra = {"cert_file": cert_file, "key_file": key_file}
    mutual = Csms(ssl_context=tls.server_context(pki.server_cert, pki.server_key, client_ca=pki.ca_file,
                                                 require_client_cert=True))
    async with tls_csms(pki) as secure, mutual:
        st = await make_station(secure, protocols=["ocpp2.0.1"], security_profile=2, password=PASSWORD,
                                ca_file=pki.ca_file, ocpp={"CpoName": ORG},
                                keys=KeysConfig(backend="software", dir=tmp_path / "keys"), **extra)
        await secure.wait_for("StatusNotification", identity=ID)
        await eventually(lambda: st.station.model.get("SecurityCtrlr", "SecurityProfile") == "2", what="profile 2")
        assert (await set_network_profile(secure, 2, mutual.url, 3))["status"] == "Accepted"      # step 2
        assert (await set_variable(secure, *PRIORITY, "2,1"))["attributeStatus"] == "Rejected"   # step 4
        assert st.station.model.get(*PRIORITY) == "1"
        assert st.station.model.get("SecurityCtrlr", "SecurityProfile") == "2"
        assert st.station.transport.connected and mutual.received == []

        secure.certificate_signer = lambda csr, _type: devpki.sign_csr(pki.cpo_ca, csr)
        m = len(secure.responses)
        assert await secure.call(ID, "TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"}) \
            == {"status": "Accepted"}
        assert await signed_response(secure, m) == {"status": "Accepted"}
        assert (await set_variable(secure, *PRIORITY, "2,1"))["attributeStatus"] in ("Accepted", "RebootRequired")
        assert secure.violations == []


async def test_tc_a_07_cs_profile_3_boot_with_the_certificate_from_the_a02_store(tmp_path, make_station):
    """TC_A_07_CS (A00.FR.401/402/415/416/502/503/507/508/511) for the Advanced Security profile: the station's
    certificate comes from the certificate store (installed by A02, key in the key backend), not from the
    commissioning files. After a restart it boots (State Booting) over mutual TLS >= 1.2 presenting that certificate:
    a PEM-delivered X.509 with a serial number, an EC key of at least 224 bits, subject CN = the station's identity,
    O = OrganizationName, issued by the CPO sub-CA; step 9: the connector is reported Available."""
    pki = devpki.generate(tmp_path / "pki", identity=ID)
    ctx = tls.server_context(pki.server_cert, pki.server_key, client_ca=pki.ca_file, require_client_cert=True)
    config = dict(protocols=["ocpp2.0.1"], security_profile=3, ca_file=pki.ca_file, cert_file=pki.station_chain,
                  key_file=pki.station_key, ocpp={"CpoName": ORG},
                  keys=KeysConfig(backend="software", dir=tmp_path / "keys"), data_dir=tmp_path / "station")
    async with Csms(ssl_context=ctx) as csms:
        csms.certificate_signer = lambda csr, _type: devpki.sign_csr(pki.cpo_ca, csr)
        st = await make_station(csms, **config)
        await csms.wait_for("StatusNotification", identity=ID)
        commissioning = csms.client_certificates[ID]
        m = len(csms.responses)
        assert await csms.call(ID, "TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"}) \
            == {"status": "Accepted"}
        assert await signed_response(csms, m) == {"status": "Accepted"}
        await eventually(lambda: csms.client_certificates.get(ID) not in (None, commissioning),
                         what="reconnected with the A02 certificate")
        serial = st.station.cert_signing.active()["serial"]
        await st.stop()

        n = len(csms.received)
        await make_station(csms, **config)                                  # State Booting
        await csms.wait_for("BootNotification", after=n, identity=ID)
        status = await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1, after=n, identity=ID)
        assert status.payload["connectorStatus"] == "Available"                                    # step 9
        obj = ssl_object(csms)
        assert obj.version() in ("TLSv1.2", "TLSv1.3")                                           # step 4
        cert = x509.load_der_x509_certificate(csms.client_certificates[ID])
        assert format(cert.serial_number, "x") == serial and cert.serial_number > 0
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().key_size >= 224
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == ID
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == ORG
        assert cert.issuer == pki.cpo_ca.cert.subject
        assert "Authorization" not in csms._session(ID).ws.request.headers
        assert csms.violations == []
