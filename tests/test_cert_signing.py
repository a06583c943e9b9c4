"""Station certificate signing end to end (OCPP 2.0.1 A02/A03, 1.6 Security Whitepaper ed. 3 A02/A03): a real station,
the strict CSMS signing CSRs with the development CPO sub-CA (devpki.sign_csr), real WebSockets, mutual TLS
(security profile 3) with the new certificate, keys in the software backend and in a real SoftHSM2 token.

Part 6: TC_A_11_CS (ChargingStationCertificate), TC_A_14_CS (invalid certificate: Rejected +
InvalidChargingStationCertificate), TC_A_15_CS (SignCertificate Rejected), TC_A_23_CS (CertificateSigned timeout:
resend with back-off).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from helpers import barrier, eventually
from secure_cp.security import devpki, tls
from secure_cp.security.keys import KeysConfig
from secure_cp.sim.csms import Csms
from softhsm import init_token

ID = "CP1"
ORG = devpki.CPO_NAME


@pytest.fixture
def pki(tmp_path) -> devpki.DevPki:
    return devpki.generate(tmp_path / "pki", identity=ID)


def spki(cert_or_key) -> bytes:
    key = cert_or_key.public_key() if hasattr(cert_or_key, "public_key") else cert_or_key
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


async def trigger_201(csms: Csms, what: str = "SignChargingStationCertificate") -> dict:
    return await csms.call(ID, "TriggerMessage", {"requestedMessage": what})


async def signed_response(csms: Csms, after: int = 0) -> dict:
    """The station's answer to the (first after ``after``) CertificateSigned the CSMS sent."""
    await eventually(lambda: any(r.action == "CertificateSigned" for r in csms.responses[after:]),
                     what="CertificateSignedResponse")
    return next(r.payload for r in csms.responses[after:] if r.action == "CertificateSigned")


async def station_201(make_station, csms, tmp_path, **kw):
    kw.setdefault("keys", KeysConfig(backend="software", dir=tmp_path / "keys"))
    ocpp = {"CpoName": ORG, **kw.pop("ocpp", {})}
    st = await make_station(csms, protocols=["ocpp2.0.1"], ocpp=ocpp, **kw)
    await csms.wait_for("BootNotification", identity=ID)
    await eventually(lambda: st.station.adapter.registration == "accepted", what="Accepted")
    return st


# ---- the full A02 flow ------------------------------------------------------------------------------------------
async def test_tc_a_11_a02_fr_02_03_06_08_10_new_certificate_used_for_the_next_profile_3_connection(
        pki, make_station, tmp_path):
    """TC_A_11_CS over mutual TLS: TriggerMessage -> new key pair (software backend) -> CSR (CN = identity, O =
    OrganizationName, A02.FR.03 / whitepaper A02.FR.13) -> signed by the CPO sub-CA -> Accepted; the station
    reconnects (A02.FR.08) and the CSMS sees the new certificate; afterwards the configured one is not in use and
    the state has no fallback left (A02.FR.10)."""
    ctx = tls.server_context(pki.server_cert, pki.server_key, client_ca=pki.ca_file, require_client_cert=True)
    async with Csms(ssl_context=ctx) as csms:
        csms.certificate_signer = lambda csr, _type: devpki.sign_csr(pki.cpo_ca, csr)
        st = await station_201(make_station, csms, tmp_path, security_profile=3, ca_file=pki.ca_file,
                               cert_file=pki.station_chain, key_file=pki.station_key)
        first = x509.load_der_x509_certificate(csms.client_certificates[ID])
        assert first.serial_number == x509.load_pem_x509_certificate(pki.station_cert.read_bytes()).serial_number

        assert await trigger_201(csms) == {"status": "Accepted"}
        req = await csms.wait_for("SignCertificate", identity=ID)
        assert req.payload["certificateType"] == "ChargingStationCertificate"      # A02.FR.13
        csr = x509.load_pem_x509_csr(req.payload["csr"].encode())
        assert csr.is_signature_valid
        assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == ID
        assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == ORG
        assert await signed_response(csms) == {"status": "Accepted"}

        signing = st.station.cert_signing
        await eventually(lambda: csms.client_certificates.get(ID) not in (None, first.public_bytes(
            serialization.Encoding.DER)), what="reconnect with the new certificate")
        now_cert = x509.load_der_x509_certificate(csms.client_certificates[ID])
        assert spki(now_cert) == spki(csr)                                   # the key of the CSR
        assert spki(now_cert) == signing.backend.public_key_der(signing.active()["label"])
        assert now_cert.issuer == pki.cpo_ca.cert.subject
        assert signing.pending("ChargingStationCertificate") is None
        assert signing._get("previous") == {}


async def test_a02_fr_05_csr_key_in_softhsm2_and_certificate_installed(pki, make_station, csms, tmp_path, monkeypatch):
    """A02.FR.02/05 with a PKCS#11 token (SoftHSM2): the key pair is generated in the token and the CSR signed there;
    the signed certificate is Accepted and its key reference is a pkcs11: URI (no PEM file). TLS with a token key is
    not part of this test (pkcs11-provider work in security/tls.py)."""
    token = init_token(tmp_path / "hsm", monkeypatch)
    keys = KeysConfig(backend="pkcs11", module=Path(token.module), token=token.label, pin=token.pin)
    csms.certificate_signer = lambda csr, _type: devpki.sign_csr(pki.cpo_ca, csr)
    st = await station_201(make_station, csms, tmp_path, keys=keys, ca_file=pki.ca_file)
    assert await trigger_201(csms) == {"status": "Accepted"}
    req = await csms.wait_for("SignCertificate", identity=ID)
    assert await signed_response(csms) == {"status": "Accepted"}
    signing = st.station.cert_signing
    label = signing.active()["label"]
    assert label in [k.label for k in signing.backend.list_keys()]
    assert signing.backend.public_key_der(label) == spki(x509.load_pem_x509_csr(req.payload["csr"].encode()))
    chain_file, ref, _label = signing.credential(st.station.clock.now())
    assert ref.backend == "pkcs11" and ref.uri.startswith("pkcs11:") and "pin" not in ref.uri
    assert x509.load_pem_x509_certificates(chain_file.read_bytes())[1].subject == pki.cpo_ca.cert.subject


# ---- TC_A_14: invalid certificates --------------------------------------------------------------------------------
def _foreign_csr() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, ID), x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG)])).sign(
        key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


BAD_CHAINS = {
    "wrong_key": lambda pki, csr, tmp: devpki.sign_csr(pki.cpo_ca, _foreign_csr()),
    "expired": lambda pki, csr, tmp: devpki.sign_csr(pki.cpo_ca, csr, not_before=_now() - dt.timedelta(days=10),
                                                     not_after=_now() - dt.timedelta(days=1)),
    "unknown_ca": lambda pki, csr, tmp: devpki.sign_csr(devpki.unknown_ca(tmp), csr),
    "garbage_pem": lambda pki, csr, tmp: "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    "chain_too_long": lambda pki, csr, tmp: devpki.sign_csr(pki.cpo_ca, csr),   # MaxCertificateChainSize 1000
}


@pytest.mark.parametrize("case", sorted(BAD_CHAINS))
async def test_tc_a_14_a02_fr_07_16_invalid_certificate_rejected_event_sent_state_intact(
        case, pki, make_station, csms, tmp_path):
    """TC_A_14_CS / A02.FR.07 (A02.FR.16 for the chain size): Rejected, SecurityEventNotification
    InvalidChargingStationCertificate, nothing installed, the pending request kept without back-off (A02.FR.20); a
    valid chain for the same CSR is still Accepted afterwards."""
    ocpp = {"CertificateSignedMaxChainSize": "1000"} if case == "chain_too_long" else {}
    st = await station_201(make_station, csms, tmp_path, ca_file=pki.ca_file, ocpp=ocpp)
    assert await trigger_201(csms) == {"status": "Accepted"}
    csr = (await csms.wait_for("SignCertificate", identity=ID)).payload["csr"]
    answer = await csms.call(ID, "CertificateSigned", {"certificateChain": BAD_CHAINS[case](pki, csr, tmp_path / "x"),
                                                       "certificateType": "ChargingStationCertificate"})
    assert answer["status"] == "Rejected"
    await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "InvalidChargingStationCertificate",
                        identity=ID)
    signing = st.station.cert_signing
    assert signing.active() is None and not list(signing.directory.glob("*.pem"))
    pending = signing.pending("ChargingStationCertificate")
    assert pending is not None and pending["stopped"] and pending["next_at"] is None
    if case != "chain_too_long":
        ok = await csms.call(ID, "CertificateSigned", {"certificateChain": devpki.sign_csr(pki.cpo_ca, csr)})
        assert ok == {"status": "Accepted"}
        assert signing.active() is not None


async def test_a02_certificate_signed_without_request_rejected(pki, make_station, csms, tmp_path):
    """A CertificateSigned nobody asked for (no pending key) cannot match: Rejected + security event."""
    await station_201(make_station, csms, tmp_path, ca_file=pki.ca_file)
    answer = await csms.call(ID, "CertificateSigned", {"certificateChain": devpki.sign_csr(pki.cpo_ca, _foreign_csr())})
    assert answer["status"] == "Rejected"
    await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "InvalidChargingStationCertificate",
                        identity=ID)


async def test_a02_trigger_rejected_without_organization_name(pki, make_station, csms, tmp_path):
    """A02 prerequisite: OrganizationName must be set; without it no CSR can be made: TriggerMessage Rejected."""
    st = await make_station(csms, protocols=["ocpp2.0.1"], keys=KeysConfig(backend="software", dir=tmp_path / "k"))
    await eventually(lambda: st.station.adapter.registration == "accepted", what="Accepted")
    assert await trigger_201(csms) == {"status": "Rejected"}
    await barrier_201(csms)
    assert not [r for r in csms.received if r.action == "SignCertificate"]


async def barrier_201(csms: Csms) -> None:
    await csms.call(ID, "GetVariables", {"getVariableData": [
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "OrganizationName"}}]})


# ---- TC_A_15 / TC_A_23: SignCertificate rejected, CertificateSigned timeout ----------------------------------------
async def test_tc_a_15_sign_certificate_rejected_ends_the_request(pki, make_station, csms, tmp_path):
    """TC_A_15_CS: the CSMS rejects the SignCertificateRequest: the request ends, its key is deleted, no resend."""
    csms.sign_certificate_status = "Rejected"
    st = await station_201(make_station, csms, tmp_path, ca_file=pki.ca_file)
    assert await trigger_201(csms) == {"status": "Accepted"}
    await csms.wait_for("SignCertificate", identity=ID)
    signing = st.station.cert_signing
    await eventually(lambda: signing.pending("ChargingStationCertificate") is None, what="request dropped")
    assert signing.backend.list_keys() == []
    assert signing.deadline() is None


async def test_tc_a_23_a02_fr_17_18_19_resend_with_back_off_then_stop(pki, make_station, csms, tmp_path):
    """TC_A_23_CS with CertSigningWaitMinimum 1 s, CertSigningRepeatTimes 1: the same CSR is sent again after the
    wait (A02.FR.17), then no more (A02.FR.19: the back-off stops); the chain for it is still Accepted."""
    st = await station_201(make_station, csms, tmp_path, ca_file=pki.ca_file)
    result = await csms.call(ID, "SetVariables", {"setVariableData": [
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "CertSigningWaitMinimum"}, "attributeValue": "1"},
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "CertSigningRepeatTimes"}, "attributeValue": "1"},
    ]})
    assert [r["attributeStatus"] for r in result["setVariableResult"]] == ["Accepted", "Accepted"]
    assert await trigger_201(csms) == {"status": "Accepted"}
    first = await csms.wait_for("SignCertificate", identity=ID)
    index = csms.received.index(first)
    second = await csms.wait_for("SignCertificate", identity=ID, after=index + 1, timeout=15)
    assert second.payload == first.payload                                   # the same CSR again
    signing = st.station.cert_signing
    await eventually(lambda: signing.pending("ChargingStationCertificate")["attempt"] == 1, what="attempt 1")
    await barrier_201(csms)
    assert signing.pending("ChargingStationCertificate")["next_at"] is None  # A02.FR.19: no third one
    ok = await csms.call(ID, "CertificateSigned", {"certificateChain": devpki.sign_csr(pki.cpo_ca,
                                                                                       first.payload["csr"])})
    assert ok == {"status": "Accepted"}
    assert signing.deadline() is None                                        # nothing pending: no wake-ups


# ---- A03: renewal -------------------------------------------------------------------------------------------------
async def test_a03_fr_02_certificate_near_expiry_renewed_once(pki, make_station, csms, tmp_path):
    """A03.FR.02/03: a configured station certificate that expires within renew_days (here: 365 d > its 365 d
    validity) makes the station send a SignCertificateRequest by itself after boot, once (a Rejected answer does not
    make it loop)."""
    csms.sign_certificate_status = "Rejected"
    st = await station_201(make_station, csms, tmp_path, ca_file=pki.ca_file, cert_file=pki.station_chain,
                           key_file=pki.station_key, renew_days=365)
    req = await csms.wait_for("SignCertificate", identity=ID)
    assert req.payload["certificateType"] == "ChargingStationCertificate"
    await eventually(lambda: st.station.cert_signing.pending("ChargingStationCertificate") is None, what="dropped")
    await barrier_201(csms)
    assert len([r for r in csms.received if r.action == "SignCertificate"]) == 1
    assert st.station.cert_signing.renewal_at(st.station.clock.now()) is None


# ---- OCPP 1.6 Security Whitepaper ---------------------------------------------------------------------------------
async def test_16_a02_extended_trigger_sign_charge_point_certificate(pki, make_station, csms, tmp_path):
    """Whitepaper A02: ExtendedTriggerMessage SignChargePointCertificate -> SignCertificate.req (csr only, O =
    CpoName, A02.FR.13) -> CertificateSigned.req Accepted; a bad chain Rejected + InvalidChargePointCertificate."""
    st = await make_station(csms, protocols=["ocpp1.6"], ocpp={"CpoName": ORG}, ca_file=pki.ca_file,
                            keys=KeysConfig(backend="software", dir=tmp_path / "keys"))
    await eventually(lambda: st.station.adapter.registration == "accepted", what="Accepted")
    answer = await csms.call(ID, "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"})
    assert answer == {"status": "Accepted"}
    req = await csms.wait_for("SignCertificate", identity=ID)
    assert set(req.payload) == {"csr"}
    csr = x509.load_pem_x509_csr(req.payload["csr"].encode())
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == ORG
    bad = await csms.call(ID, "CertificateSigned", {"certificateChain": devpki.sign_csr(pki.cpo_ca, _foreign_csr())})
    assert bad == {"status": "Rejected"}
    await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "InvalidChargePointCertificate",
                        identity=ID)
    good = await csms.call(ID, "CertificateSigned", {"certificateChain": devpki.sign_csr(pki.cpo_ca,
                                                                                         req.payload["csr"])})
    assert good == {"status": "Accepted"}
    assert st.station.cert_signing.active()["serial"]


async def test_16_extended_trigger_status_and_meter_values(make_station, csms, tmp_path):
    """Whitepaper ExtendedTriggerMessage: StatusNotification for the connector given (sent although unchanged),
    MeterValues (a reading now), an unknown connectorId Rejected; BootNotification Accepted (its flow:
    test_security_leftovers.py::test_16_extended_trigger_*)."""
    st = await make_station(csms, protocols=["ocpp1.6"], ocpp={"MeterValuesSampledData": "Energy.Active.Import.Register"})
    await eventually(lambda: st.station.adapter.registration == "accepted", what="Accepted")
    for cid in (0, 1):      # the boot's own StatusNotifications first: the next one must be the triggered one
        await csms.wait_for("StatusNotification", lambda p, c=cid: p["connectorId"] == c, identity=ID)
    await barrier(csms)
    n = len(csms.received)
    assert await csms.call(ID, "ExtendedTriggerMessage",
                           {"requestedMessage": "StatusNotification", "connectorId": 1}) == {"status": "Accepted"}
    status = await csms.wait_for("StatusNotification", identity=ID, after=n)
    assert status.payload["connectorId"] == 1 and status.payload["status"] == "Available"
    assert await csms.call(ID, "ExtendedTriggerMessage",
                           {"requestedMessage": "MeterValues", "connectorId": 1}) == {"status": "Accepted"}
    mv = await csms.wait_for("MeterValues", identity=ID, after=n)
    assert mv.payload["connectorId"] == 1
    assert await csms.call(ID, "ExtendedTriggerMessage",
                           {"requestedMessage": "StatusNotification", "connectorId": 9}) == {"status": "Rejected"}
    assert await csms.call(ID, "ExtendedTriggerMessage",
                           {"requestedMessage": "BootNotification"}) == {"status": "Accepted"}
