"""The TLS negative matrix and the station-certificate lifecycle around it, with real handshakes on 127.0.0.1 and the
development PKI (secure_cp.security.devpki) in tmp_path. Complements test_tls.py, which holds TC_A_04/05/06 (unknown
CA, expired, wrong host, TLS 1.1, CBC/SHA-1 suites), the profile-3 CSMS that requires a certificate (A00.FR.407) and
the profile up/downgrade cases (TC_A_19/20; TC_A_22 in test_v201_tc_a_d.py).

Added here: a not-yet-valid server certificate (A00.FR.309/413), CBC suites with SHA-2 MACs (A00.FR.318/319/322),
the 1.6 event names of the version and suite failures, a profile-3 CSMS that does not ask for the client certificate
(A00.FR.401-407), the fallback to the previous station certificate when the CSMS does not accept the new one
(errata A02.FR.28/10/29), and the CSR key generation off the event loop (DESIGN.md rule 7).
"""
from __future__ import annotations

import datetime as dt
import logging
import ssl
import threading

import pytest
from cryptography import x509

from helpers import eventually
from secure_cp.security import devpki, tls
from secure_cp.security.keys import KeysConfig
from secure_cp.sim.csms import Csms
from test_tls import ID, logged_events, profile2, profile3, refused_in_handshake, tls_csms, tls_failures


@pytest.fixture
def pki(tmp_path) -> devpki.DevPki:
    return devpki.generate(tmp_path / "pki", identity=ID)


# ---- server certificate not yet valid -----------------------------------------------------------------------------
@pytest.mark.parametrize("protocol, event", [("ocpp2.0.1", "InvalidCsmsCertificate"),
                                             ("ocpp1.6", "InvalidCentralSystemCertificate")])
async def test_tc_a_05_a00_fr_309_not_yet_valid_server_certificate_refused_once_per_outage(
        pki, make_station, tmp_path, caplog, protocol, event):
    """A00.FR.309/310 (TC_A_05_CS): a server certificate whose notBefore lies in the future fails path validation;
    every attempt is terminated in the handshake with one ERROR line naming the cause, the station keeps retrying with
    back-off, and the security event is stored once for the outage (no flooding)."""
    caplog.set_level(logging.INFO, logger="secure_cp")
    now = dt.datetime.now(dt.timezone.utc)
    cert = devpki.server_certificate(tmp_path / "bad", "future", pki.root, not_before=now + dt.timedelta(days=2),
                                     not_after=now + dt.timedelta(days=400))
    async with tls_csms(pki, cert=cert) as csms:
        st = await make_station(csms, protocols=[protocol], **profile2(pki))
        await eventually(lambda: tls_failures(caplog) >= 3, what="three refused handshakes")
        lines = [r.getMessage() for r in caplog.records if "TLS handshake with" in r.getMessage()]
        assert all("not yet valid" in line and "retrying in" in line for line in lines)
        events = logged_events(st, event)
        assert len(events) == 1 and "not yet valid" in events[0].tech_info
        assert csms.connected == {} and not any(r.identity == ID for r in csms.received)


# ---- suites and versions -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol, weakness, event", [
    ("ocpp2.0.1", "cbc-sha2", "InvalidTLSCipherSuite"),      # A00.FR.318/319/322: CBC is not allowed, SHA-2 or not
    ("ocpp1.6", "cbc-sha2", "InvalidTLSCipherSuite"),        # whitepaper A00.FR.322
    ("ocpp1.6", "tls1.1", "InvalidTLSVersion"),              # whitepaper A00.FR.315
])
async def test_a00_fr_315_322_no_permitted_version_or_suite_refused_with_event(pki, make_station, caplog, protocol,
                                                                              weakness, event):
    """A CSMS offering only suites outside A00.FR.318 (ECDHE-ECDSA with AES-CBC and SHA-256/384 MACs) or only TLS
    1.1 never completes a handshake with the station; the event is recorded once under the version's name and the
    station keeps retrying."""
    await refused_in_handshake(make_station, pki, caplog, protocol, weakness, event)


# ---- profile 3: a CSMS that does not ask for the client certificate ------------------------------------------------
async def test_a00_fr_401_407_profile_3_csms_not_requesting_client_certificate(pki, make_station):
    """Spec decision: A00.FR.403-407 put the request and the check of the client certificate on the CSMS; the station
    side (A00.FR.401/402) offers its certificate whenever asked. TLS gives a client no means to insist on sending one,
    and Appendix 1 has no event for it, so the station connects; what it must not do is fall back to another
    credential: no Authorization header (no password) goes to such a CSMS. The CSMS sees no client certificate."""
    ctx = tls.server_context(pki.server_cert, pki.server_key)          # no client_ca: no CertificateRequest
    async with Csms(ssl_context=ctx) as csms:
        st = await make_station(csms, protocols=["ocpp2.0.1"], **profile3(pki))
        await csms.wait_for("BootNotification", identity=ID)
        assert csms.client_certificates[ID] is None
        assert "Authorization" not in csms._session(ID).ws.request.headers
        assert st.station.transport.config.security_profile == 3
        assert not [e for e in st.station.security_events.log() if e.type.startswith("Invalid")]


# ---- A02.FR.28/10/29: the CSMS does not accept the new station certificate -----------------------------------------
def csms_trusting(pki: devpki.DevPki, issuer: devpki.Issuer) -> ssl.SSLContext:
    """A profile-3 CSMS that accepts only station certificates issued by ``issuer`` (a sub-CA as its trust anchor)."""
    ctx = tls.server_context(pki.server_cert, pki.server_key, client_ca=issuer.cert_file, require_client_cert=True)
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


async def test_a02_fr_28_10_29_new_certificate_refused_by_csms_falls_back_and_is_discarded(
        pki, make_station, tmp_path, caplog):
    """Errata A02.FR.28: the new station certificate is valid for the station (it chains to the CSMS root through
    another CPO sub-CA) but this CSMS trusts only the usual sub-CA. After a whole round of the connection plan fails
    with it (NetworkProfileConnectionAttempts on the one profile), the station falls back to the previous certificate
    and connects; A02.FR.10 then discards the certificate not in use (the new one, key included) and A02.FR.29 sends
    DiscardedRenewedClientCertificate. A second CSMS configuration that trusts the other sub-CA accepts the same
    kind of certificate and keeps it (the fallback is about trust, not about the certificate being broken)."""
    caplog.set_level(logging.INFO, logger="secure_cp")
    other = devpki.sub_ca(tmp_path / "other", "cpo2", pki.root)
    async with Csms(ssl_context=csms_trusting(pki, pki.cpo_ca)) as csms:
        csms.certificate_signer = lambda csr, _type: devpki.sign_csr(other, csr)
        st = await make_station(csms, protocols=["ocpp2.0.1"], ocpp={"CpoName": devpki.CPO_NAME},
                                keys=KeysConfig(backend="software", dir=tmp_path / "keys"), **profile3(pki))
        await csms.wait_for("BootNotification", identity=ID)
        first = csms.client_certificates[ID]
        signing = st.station.cert_signing
        assert (await csms.call(ID, "TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})) == {
            "status": "Accepted"}
        await csms.wait_for("SignCertificate", identity=ID)
        await eventually(lambda: signing.active() is not None, what="new certificate installed")
        new = signing.active()
        new_key = signing.backend.key_ref(new["label"])
        await eventually(lambda: any("falling back to the previous" in r.getMessage() for r in caplog.records),
                         what="fallback after a failed round")
        ev = await csms.wait_for("SecurityEventNotification",
                                 lambda p: p["type"] == "DiscardedRenewedClientCertificate", identity=ID)
        assert new["serial"] in ev.payload["techInfo"]
        assert csms.client_certificates[ID] == first                       # back on the previous certificate
        assert signing.active() is None and signing._get("previous") == {}   # A02.FR.10: the new one is gone
        assert not signing.using_fallback()
        assert new["label"] not in [k.label for k in signing.backend.list_keys()]
        assert not (signing.directory / new["file"]).exists()
        refused = sum("TLS handshake with" in r.getMessage() or "cannot connect" in r.getMessage()
                      for r in caplog.records if r.name == "secure_cp.transport")
        assert refused >= 3                                                  # one round: 3 attempts on 1 profile
        assert new_key.backend == "software"

        # second trust configuration: the CSMS now trusts the other sub-CA too; a new certificate from it is kept
        csms.ssl_context.load_verify_locations(cafile=str(other.cert_file))
        mark = len(csms.received)
        assert (await csms.call(ID, "TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})) == {
            "status": "Accepted"}
        await eventually(lambda: signing.active() is not None, what="second certificate installed")
        second = signing.active()
        await eventually(lambda: csms.client_certificates.get(ID) not in (None, first), what="reconnect with it")
        assert f"{x509.load_der_x509_certificate(csms.client_certificates[ID]).serial_number:x}" == second["serial"]
        await eventually(lambda: signing.active().get("confirmed"), what="confirmed by the connection")
        assert signing.active()["serial"] == second["serial"] and not signing.using_fallback()
        assert not signing.has_fallback(st.station.clock.now())      # confirmed: a later outage keeps it
        assert not any(r.action == "SecurityEventNotification" and r.payload["type"] ==
                       "DiscardedRenewedClientCertificate" for r in csms.received[mark:])
        assert csms.violations == []


# ---- DESIGN.md rule 7: the CSR key generation runs off the event loop ---------------------------------------------
async def test_a02_fr_02_csr_key_generation_runs_in_a_worker_thread(pki, make_station, csms, tmp_path):
    """The key pair of a CSR (A02.FR.02) is made through Hooks.run_blocking: in a worker thread, never in the event
    loop's thread; the SignCertificate goes out after the TriggerMessageResponse. No timing is asserted."""
    st = await make_station(csms, protocols=["ocpp2.0.1"], ocpp={"CpoName": devpki.CPO_NAME},
                            keys=KeysConfig(backend="software", dir=tmp_path / "keys"), ca_file=pki.ca_file)
    await csms.wait_for("BootNotification", identity=ID)
    await eventually(lambda: st.station.adapter.registration == "accepted", what="Accepted")
    backend = st.station.cert_signing.backend
    threads: list[threading.Thread] = []
    real_generate = backend.generate

    def generate(label, algorithm):
        threads.append(threading.current_thread())
        return real_generate(label, algorithm)
    backend.generate = generate
    loop_thread = threading.current_thread()
    assert (await csms.call(ID, "TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})) == {
        "status": "Accepted"}
    req = await csms.wait_for("SignCertificate", identity=ID)
    assert len(threads) == 1 and threads[0] is not loop_thread
    csr = x509.load_pem_x509_csr(req.payload["csr"].encode())
    pending = st.station.cert_signing.pending("ChargingStationCertificate")
    assert pending["csr"] == req.payload["csr"] and csr.is_signature_valid
