"""Certificate store (issue #4): OCPP 2.0.1 M03/M04/M05 (TC_M_*_CS of the Core profile) and the 1.6 Security
Whitepaper InstallCertificate / DeleteCertificate / GetInstalledCertificateIds.

Unit tests run the store on a real SQLite file; hash data is checked against cryptography's OCSP request builder
(RFC 6960 CertID), an implementation independent of the store's. Integration tests run a station against the strict
CSMS over real WebSockets (TLS with the development PKI where the trust store matters)."""
from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from helpers import eventually
from secure_cp.security import devpki
from secure_cp.security.certstore import CertificateStore
from secure_cp.sim.csms import Csms
from secure_cp.store import Database

ID = "CP1"
PASSWORD = "0123456789abcdef"


def pem(cert_or_issuer) -> str:
    cert = getattr(cert_or_issuer, "cert", cert_or_issuer)
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def certid(cert: x509.Certificate, issuer: x509.Certificate, algorithm: str) -> dict:
    """RFC 6960 CertID computed by cryptography's OCSP request builder."""
    algo = {"SHA256": hashes.SHA256(), "SHA384": hashes.SHA384(), "SHA512": hashes.SHA512()}[algorithm]
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algo).build()
    return {"hashAlgorithm": algorithm, "issuerNameHash": req.issuer_name_hash.hex(),
            "issuerKeyHash": req.issuer_key_hash.hex(), "serialNumber": format(req.serial_number, "x")}


@pytest.fixture
def pki(tmp_path) -> devpki.DevPki:
    return devpki.generate(tmp_path / "pki", identity=ID)


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "station.db")
    yield database
    database.close()


def make_store(db, tmp_path: Path, **kw) -> CertificateStore:
    return CertificateStore(db, tmp_path / "certs", **kw)


# ---- unit: the store ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["SHA256", "SHA384", "SHA512"])
def test_hash_data_is_rfc6960_certid(db, tmp_path, pki, algorithm):
    """M03.FR.04: hash data per RFC 6960 CertID for each hashAlgorithm; the sub-CA's issuerKeyHash is its installed
    issuer's key (the root), the root's its own (self-signed)."""
    store = make_store(db, tmp_path)
    assert store.install("CSMSRootCertificate", pem(pki.root)).status == "Accepted"
    assert store.install("V2GRootCertificate", pem(pki.cpo_ca)).status == "Accepted"
    got = {e["certificateType"]: e["certificateHashData"] for e in store.ids(None, algorithm)}
    assert got == {"CSMSRootCertificate": certid(pki.root.cert, pki.root.cert, algorithm),
                   "V2GRootCertificate": certid(pki.cpo_ca.cert, pki.root.cert, algorithm)}


def test_m05_fr_07_invalid_expired_and_non_ca_are_rejected(db, tmp_path, pki):
    """2.0.1 M05.FR.07 / 1.6 M05.FR.06: no PEM, two certificates, an expired CA, a leaf: Rejected, nothing stored."""
    store = make_store(db, tmp_path)
    leaf = x509.load_pem_x509_certificate(pki.station_cert.read_bytes())
    expired = devpki.expired_ca(tmp_path / "pki")
    cases = {"-----BEGIN CERTIFICATE-----\nZm9vYmFy\n-----END CERTIFICATE-----\n": "InvalidCertificate",
             pem(pki.root) + pem(pki.cpo_ca): "InvalidCertificate",
             pem(expired): "CertificateExpired",
             pem(leaf): "InvalidCertificate"}
    for text, reason in cases.items():
        result = store.install("CSMSRootCertificate", text)
        assert (result.status, result.reason) == ("Rejected", reason)
    assert len(store) == 0 and store.ids() == []
    assert [p for p in (tmp_path / "certs").iterdir()] == []


def test_m05_fr_06_full_store_rejects_and_m05_fr_17_same_certificate_replaces(db, tmp_path, pki):
    """M05.FR.06 (1.6 M05.FR.03): at CertificateEntries' limit a new certificate is Rejected; the one already
    installed, sent again, is Accepted and replaces itself (M05.FR.17) without taking a second place."""
    counts = []
    store = make_store(db, tmp_path, max_entries=lambda: 1, on_change=lambda t, n: counts.append((t, n)))
    assert store.install("ManufacturerRootCertificate", pem(pki.root)).status == "Accepted"
    full = store.install("ManufacturerRootCertificate", pem(pki.cpo_ca))
    assert (full.status, full.reason) == ("Rejected", "OutOfStorage")
    assert store.install("ManufacturerRootCertificate", pem(pki.root)).status == "Accepted"
    assert len(store) == 1 and store.roots("ManufacturerRootCertificate") == [pki.root.cert]
    assert counts == [("ManufacturerRootCertificate", 1)]


def test_m05_fr_03_write_failure_is_failed(db, tmp_path, pki):
    """M05.FR.03 (1.6 M05.FR.04): a certificate that cannot be written is Failed, and the index has no row."""
    store = make_store(db, tmp_path)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    store.directory = blocker
    assert store.install("CSMSRootCertificate", pem(pki.root)).status == "Failed"
    assert len(store) == 0


def test_m04_delete_statuses(db, tmp_path, pki):
    """M04.FR.02 Accepted (hex matched case-insensitively), M04.FR.04 NotFound, M04.FR.06 (1.6 M04.FR.05) the
    station certificate Failed, 1.6 M04.FR.06 the CSMS root that validated the current connection Failed."""
    station_chain = x509.load_pem_x509_certificates(pki.station_chain.read_bytes())
    store = make_store(db, tmp_path, station_chain=lambda: station_chain)
    for issuer in (pki.root, pki.cpo_ca):
        assert store.install("CSMSRootCertificate", pem(issuer)).status == "Accepted"
    sub_ca = certid(pki.cpo_ca.cert, pki.root.cert, "SHA384")
    upper = {k: (v.upper() if k != "hashAlgorithm" else v) for k, v in sub_ca.items()}
    assert store.delete(certid(station_chain[0], pki.cpo_ca.cert, "SHA256")) == "Failed"
    assert store.delete(upper) == "Accepted"
    assert store.delete(sub_ca) == "NotFound"
    server = x509.load_pem_x509_certificates(pki.server_cert.read_bytes())[0]
    store.set_server_certificate(server.public_bytes(serialization.Encoding.DER))
    root_id = certid(pki.root.cert, pki.root.cert, "SHA512")
    assert store.delete(root_id) == "Failed"
    store.set_server_certificate(None)
    assert store.delete(root_id) == "Accepted"
    assert store.roots("CentralSystemRootCertificate") == [] and list((tmp_path / "certs").iterdir()) == []


def test_store_survives_reopen_and_recovers_after_power_cut(db, tmp_path, pki):
    """Files written atomically and indexed in SQLite: a reopened store has the certificates; a file no row names
    (power cut before the commit) and a row whose file is gone are both cleaned up at open."""
    store = make_store(db, tmp_path)
    store.install("CSMSRootCertificate", pem(pki.root))
    store.install("MORootCertificate", pem(pki.cpo_ca))
    (tmp_path / "certs" / "orphan.pem").write_text(pem(pki.root))
    (tmp_path / "certs" / ".x.pem.1234.tmp").write_text("half")
    mo_file = db.query("SELECT file FROM certificates WHERE cert_type = 'MORootCertificate'")[0][0]
    (tmp_path / "certs" / mo_file).unlink()
    again = make_store(db, tmp_path)
    assert again.roots("CSMSRootCertificate") == [pki.root.cert]
    assert again.roots("MORootCertificate") == [] and len(again) == 1
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == \
        [db.query("SELECT file FROM certificates")[0][0]]


# ---- integration: OCPP 2.0.1 ----------------------------------------------------------------------------------
async def booted201(csms: Csms, make_station, **kw):
    st = await make_station(csms, protocols=["ocpp2.0.1"], **kw)
    await csms.wait_for("BootNotification", identity=ID)
    return st


async def install(csms: Csms, cert_type: str, text: str) -> dict:
    return await csms.call(ID, "InstallCertificate", {"certificateType": cert_type, "certificate": text})


async def test_tc_m_01_tc_m_02_tc_m_12_tc_m_13_install_and_retrieve_roots(csms, make_station, pki, tmp_path):
    """TC_M_01_CS / TC_M_02_CS (M05.FR.01/02): CSMSRootCertificate and ManufacturerRootCertificate Accepted;
    TC_M_12_CS / TC_M_13_CS (M03.FR.01/03/04): each type reported with its hash data; CertificateEntries counts."""
    st = await booted201(csms, make_station)
    mfr = devpki.unknown_ca(tmp_path / "pki", "mfr-root")
    assert await install(csms, "CSMSRootCertificate", pem(pki.root)) == {"status": "Accepted"}
    assert await install(csms, "ManufacturerRootCertificate", pem(mfr)) == {"status": "Accepted"}
    for cert_type, cert in (("CSMSRootCertificate", pki.root.cert), ("ManufacturerRootCertificate", mfr.cert)):
        assert await csms.call(ID, "GetInstalledCertificateIds", {"certificateType": [cert_type]}) == {
            "status": "Accepted", "certificateHashDataChain": [
                {"certificateType": cert_type, "certificateHashData": certid(cert, cert, "SHA256")}]}
    assert st.station.model.get("SecurityCtrlr", "CertificateEntries") == "2"
    assert st.station.certificates.roots("ManufacturerRootCertificate") == [mfr.cert]
    assert csms.violations == []


async def test_tc_m_07_install_invalid_certificate_rejected(csms, make_station, pki, tmp_path):
    """TC_M_07_CS (M05.FR.07): an expired root and a non-CA certificate are Rejected with a reasonCode."""
    st = await booted201(csms, make_station)
    expired = await install(csms, "CSMSRootCertificate", pem(devpki.expired_ca(tmp_path / "pki")))
    assert expired["status"] == "Rejected" and expired["statusInfo"]["reasonCode"] == "CertificateExpired"
    leaf = await install(csms, "V2GRootCertificate", pki.station_cert.read_text())
    assert leaf["status"] == "Rejected" and leaf["statusInfo"]["reasonCode"] == "InvalidCertificate"
    assert len(st.station.certificates) == 0
    assert csms.violations == []


async def test_tc_m_17_tc_m_18_tc_m_19_retrieve_filters_all_and_none(csms, make_station, pki, tmp_path):
    """TC_M_19_CS (M03.FR.02): nothing installed -> NotFound without hash data; TC_M_17_CS: two requested types;
    TC_M_18_CS: certificateType omitted -> every installed certificate."""
    await booted201(csms, make_station)
    assert await csms.call(ID, "GetInstalledCertificateIds", {}) == {"status": "NotFound"}
    mfr = devpki.unknown_ca(tmp_path / "pki", "mfr-root")
    await install(csms, "CSMSRootCertificate", pem(pki.root))
    await install(csms, "ManufacturerRootCertificate", pem(mfr))
    await install(csms, "V2GRootCertificate", pem(pki.cpo_ca))
    both = await csms.call(ID, "GetInstalledCertificateIds",
                           {"certificateType": ["CSMSRootCertificate", "ManufacturerRootCertificate"]})
    assert sorted(e["certificateType"] for e in both["certificateHashDataChain"]) == \
        ["CSMSRootCertificate", "ManufacturerRootCertificate"]
    every = await csms.call(ID, "GetInstalledCertificateIds", {})
    assert {e["certificateType"] for e in every["certificateHashDataChain"]} == \
        {"CSMSRootCertificate", "ManufacturerRootCertificate", "V2GRootCertificate"}
    assert await csms.call(ID, "GetInstalledCertificateIds", {"certificateType": ["MORootCertificate"]}) == \
        {"status": "NotFound"}
    assert csms.violations == []


async def test_tc_m_20_tc_m_22_delete_success_and_not_found(csms, make_station, pki):
    """TC_M_20_CS (M04.FR.02): the reported hash data deletes the certificate (Accepted), and it is gone;
    TC_M_22_CS (M04.FR.04): the same again is NotFound."""
    st = await booted201(csms, make_station)
    await install(csms, "ManufacturerRootCertificate", pem(pki.root))
    ids = await csms.call(ID, "GetInstalledCertificateIds", {"certificateType": ["ManufacturerRootCertificate"]})
    hash_data = ids["certificateHashDataChain"][0]["certificateHashData"]
    assert await csms.call(ID, "DeleteCertificate", {"certificateHashData": hash_data}) == {"status": "Accepted"}
    assert st.station.certificates.roots("ManufacturerRootCertificate") == []
    assert await csms.call(ID, "DeleteCertificate", {"certificateHashData": hash_data}) == {"status": "NotFound"}
    assert st.station.model.get("SecurityCtrlr", "CertificateEntries") == "0"
    assert csms.violations == []


async def test_m04_fr_06_station_certificate_cannot_be_deleted(csms, make_station, pki):
    """M04.FR.06 (TC_M_23_CS): hash data of the station's own certificate -> Failed."""
    await booted201(csms, make_station, cert_file=pki.station_chain, key_file=pki.station_key, ca_file=pki.ca_file)
    leaf = x509.load_pem_x509_certificate(pki.station_cert.read_bytes())
    answer = await csms.call(ID, "DeleteCertificate",
                             {"certificateHashData": certid(leaf, pki.cpo_ca.cert, "SHA256")})
    assert answer == {"status": "Failed"}
    assert csms.violations == []


async def test_installed_csms_root_is_trusted_by_the_next_tls_connection(make_station, pki, tmp_path):
    """M05 + A00.FR.307: a CSMSRootCertificate installed over TLS drops the cached TLS context; the next context
    trusts it besides ca_file. The installed root that validated the connection cannot be deleted (1.6 M04.FR.06;
    2.0.1 M04.FR.03 allows the refusal)."""
    from secure_cp.security import tls
    other = devpki.generate(tmp_path / "other", identity=ID)
    ctx = tls.server_context(pki.server_cert, pki.server_key)
    async with Csms(ssl_context=ctx, basic_auth={ID: PASSWORD.encode()}) as secure:
        st = await make_station(secure, protocols=["ocpp2.0.1"], security_profile=2, password=PASSWORD,
                                ca_file=pki.ca_file)
        await secure.wait_for("BootNotification", identity=ID)
        assert 2 in st.station._tls_contexts
        assert await install(secure, "CSMSRootCertificate", pem(other.root)) == {"status": "Accepted"}
        assert st.station._tls_contexts == {}
        serials = {int(c["serialNumber"], 16) for c in st.station._tls_context(2).get_ca_certs()}
        assert serials == {pki.root.cert.serial_number, other.root.cert.serial_number}
        assert await install(secure, "CSMSRootCertificate", pem(pki.root)) == {"status": "Accepted"}
        in_use = certid(pki.root.cert, pki.root.cert, "SHA256")
        assert await secure.call(ID, "DeleteCertificate", {"certificateHashData": in_use}) == {"status": "Failed"}
        unused = certid(other.root.cert, other.root.cert, "SHA256")
        assert await secure.call(ID, "DeleteCertificate", {"certificateHashData": unused}) == {"status": "Accepted"}
        assert secure.violations == []


# ---- integration: OCPP 1.6 Security Whitepaper ------------------------------------------------------------------
async def test_16_whitepaper_install_get_delete_certificates(csms, make_station, pki, tmp_path):
    """1.6 whitepaper M05.FR.02 (Accepted), M05.FR.06 (expired: Rejected), M05.FR.03 (CertificateStoreMaxLength:
    Rejected), M03.FR.02/03/04 (NotFound / Accepted with hash data), M04.FR.02/04 (Accepted / NotFound). The
    CentralSystemRootCertificate is the store's CSMSRootCertificate."""
    st = await make_station(csms, protocols=["ocpp1.6"], ocpp={"CertificateStoreMaxLength": "1"})
    await csms.wait_for("BootNotification", identity=ID)
    kind = {"certificateType": "CentralSystemRootCertificate"}
    assert await csms.call(ID, "GetInstalledCertificateIds", kind) == {"status": "NotFound"}
    expired = devpki.expired_ca(tmp_path / "pki")
    assert await csms.call(ID, "InstallCertificate", {**kind, "certificate": pem(expired)}) == {"status": "Rejected"}
    assert await csms.call(ID, "InstallCertificate", {**kind, "certificate": pem(pki.root)}) == {"status": "Accepted"}
    assert await csms.call(ID, "InstallCertificate", {"certificateType": "ManufacturerRootCertificate",
                                                      "certificate": pem(pki.cpo_ca)}) == {"status": "Rejected"}
    await eventually(lambda: st.station.certificates.roots("CSMSRootCertificate") == [pki.root.cert])
    ids = await csms.call(ID, "GetInstalledCertificateIds", kind)
    assert ids == {"status": "Accepted", "certificateHashData": [certid(pki.root.cert, pki.root.cert, "SHA256")]}
    hash_data = ids["certificateHashData"][0]
    assert await csms.call(ID, "DeleteCertificate", {"certificateHashData": hash_data}) == {"status": "Accepted"}
    assert await csms.call(ID, "DeleteCertificate", {"certificateHashData": hash_data}) == {"status": "NotFound"}
    assert csms.violations == []
