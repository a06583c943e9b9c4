"""ISO 15118, the OCPP side (security.iso15118): the API an ISO 15118 stack calls, end to end over real WebSockets
against the strict CSMS, with real certificates (security.devpki) and real OCSP responses.

Part 2: M01/M02 (Get15118EVCertificate, M01.FR.01, M02.FR.01, error handling: failure to the EV), M06
(GetCertificateStatus, M06.FR.04/06/07/08/10: cached OCSP status), C07 (Authorize with contract certificates,
C07.FR.01/02/06/07/08/11/13/16). Part 6: TC_M_24..29_CS, TC_C_50..55_CS. ``csms.violations`` stays empty.
"""
from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from helpers import booted as booted16
from helpers import eventually
from secure_cp.security import devpki
from secure_cp.security.iso15118 import OCSP_MAX_AGE, Iso15118Error, ocsp_request_data
from test_v201_core import ID, barrier, booted, go_offline, go_online, set_var

EMAID = "DESCPC0000001A"
SCHEMA = "urn:iso:15118:2:2013:MsgDef"
EXI = base64.b64encode(b"\x80\x98\x02\x10 EXI CertificateInstallationReq").decode()
EXI_RES = base64.b64encode(b"\x80\x98\x02\x10 EXI CertificateInstallationRes").decode()


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sent(csms, action: str, after: int = 0) -> list[dict]:
    return [r.payload for r in csms.received[after:] if r.action == action]


@pytest.fixture
def mo(tmp_path):
    """The MO chain: root -> sub-CA 1 -> sub-CA 2 -> contract certificate (CN = the eMAID)."""
    return devpki.iso15118_chain(tmp_path / "pki", "mo", devpki.MO_NAME, EMAID)


@pytest.fixture
def v2g(tmp_path):
    """The V2G chain: root -> sub-CA 1 -> sub-CA 2 -> SECC certificate."""
    return devpki.iso15118_chain(tmp_path / "pki", "v2g", devpki.V2G_NAME, "SECC1")


def contract_chain(mo) -> str:
    return pem(load(mo.leaf_cert), mo.sub_ca2.cert, mo.sub_ca1.cert)


async def install_root(csms, cert_type: str, issuer) -> None:
    res = await csms.call(ID, "InstallCertificate", {"certificateType": cert_type, "certificate": pem(issuer.cert)})
    assert res["status"] == "Accepted", res


# ---- M01 / M02 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", ["Install", "Update"])
async def test_tc_m_26_tc_m_28_ev_certificate_forwarded_and_answer_returned(csms, make_station, action):
    """TC_M_26_CS (M01.FR.01, action Install) / TC_M_28_CS (M02.FR.01, action Update): the EXI request of the EV
    goes to the CSMS unchanged in a Get15118EVCertificateRequest; its status and exiResponse come back to the
    stack unchanged."""
    st = await booted(csms, make_station)
    csms.ev_certificate_answer = lambda req: {"status": "Accepted", "exiResponse": EXI_RES
                                              if req["exiRequest"] == EXI else ""}
    result = await st.station.iso15118.get_ev_certificate(EXI, action, SCHEMA)
    assert (result.status, result.exi_response) == ("Accepted", EXI_RES)
    assert sent(csms, "Get15118EVCertificate") == [{"iso15118SchemaVersion": SCHEMA, "action": action,
                                                    "exiRequest": EXI}]
    assert csms.violations == []


@pytest.mark.parametrize("action", ["Install", "Update"])
async def test_tc_m_27_tc_m_29_csms_failure_is_failure_to_the_ev(csms, make_station, action):
    """TC_M_27_CS / TC_M_29_CS: the CSMS answers Failed without exiResponse -> Failed for the stack (which tells
    the EV), and the station sends nothing more (no Authorize); a CALLERROR is a failure too."""
    st = await booted(csms, make_station)
    csms.ev_certificate_answer = {"status": "Failed", "statusInfo": {"reasonCode": "NoPool"}}
    result = await st.station.iso15118.get_ev_certificate(EXI, action, SCHEMA)
    assert result.status == "Failed" and result.exi_response == "" and "NoPool" in result.reason
    csms.fail_next("Get15118EVCertificate")
    result = await st.station.iso15118.get_ev_certificate(EXI, action, SCHEMA)
    assert result.status == "Failed" and result.reason == "no answer from the CSMS"
    await barrier(csms)
    assert sent(csms, "Authorize") == []
    assert csms.violations == []


async def test_m01_offline_fails_at_once_and_the_request_is_not_kept(csms, make_station):
    """M01/M02 prerequisite "online connection" and error handling: offline the stack gets Failed at once (the EV
    would time out otherwise), and the request is not sent after the reconnect (the EV's session is over)."""
    st = await booted(csms, make_station)
    await go_offline(csms, st)
    result = await st.station.iso15118.get_ev_certificate(EXI, "Install", SCHEMA)
    assert result.status == "Failed" and result.reason.startswith("offline")
    n = len(csms.received)
    await go_online(csms, st)
    await barrier(csms)
    assert sent(csms, "Get15118EVCertificate", n) == []
    assert csms.violations == []


async def test_m01_no_answer_within_the_timeout_is_failure(csms, make_station):
    """M01 error handling: "In case the CSMS is not able to respond within the specified time, the Charging
    Station SHALL indicate failure to the EV": an answer that never comes ends in Failed, nothing hangs."""
    st = await booted(csms, make_station)
    csms.drop_next("Get15118EVCertificate")
    result = await st.station.iso15118.get_ev_certificate(EXI, "Update", SCHEMA)
    assert result.status == "Failed" and result.exi_response == ""
    # the line is free again afterwards
    csms.ev_certificate_answer = {"status": "Accepted", "exiResponse": EXI_RES}
    assert (await st.station.iso15118.get_ev_certificate(EXI, "Update", SCHEMA)).status == "Accepted"


async def test_m01_malformed_input_from_the_stack_is_refused_clearly(csms, make_station):
    """Bad input from the ISO 15118 stack raises Iso15118Error (a ValueError saying what is wrong) and sends
    nothing: an unknown action, an EXI request that is no base64 or too long, an empty schema version."""
    st = await booted(csms, make_station)
    api = st.station.iso15118
    for args, words in (((EXI, "Delete", SCHEMA), "action"), (("not base64!", "Install", SCHEMA), "base64"),
                        (("QUJD" * 1401, "Install", SCHEMA), "5600"), ((EXI, "Install", ""), "SchemaVersion"),
                        (("", "Install", SCHEMA), "exiRequest")):
        with pytest.raises(Iso15118Error, match=words):
            await api.get_ev_certificate(*args)
    await barrier(csms)
    assert sent(csms, "Get15118EVCertificate") == []
    assert csms.violations == []


async def test_ocpp16_has_no_iso15118_flows(csms, make_station):
    """OCPP 1.6 has no ISO 15118 messages in its core: the API answers Failed / not authorized with the reason."""
    st = await booted16(csms, make_station, protocols=["ocpp1.6"])
    result = await st.station.iso15118.get_ev_certificate(EXI, "Install", SCHEMA)
    assert result.status == "Failed" and "OCPP 1.6" in result.reason
    auth = await st.station.iso15118.authorize_contract(EMAID, hash_data=[{
        "hashAlgorithm": "SHA256", "issuerNameHash": "a" * 64, "issuerKeyHash": "b" * 64, "serialNumber": "1f",
        "responderURL": ""}])
    assert not auth.authorized and "OCPP 1.6" in auth.reason
    assert csms.violations == []


# ---- M06 ----------------------------------------------------------------------------------------------------
async def test_tc_m_24_m06_status_fetched_once_then_served_from_the_persistent_cache(csms, make_station, v2g,
                                                                                     tmp_path):
    """TC_M_24_CS (M06.FR.06): the station asks the CSMS for the OCSP status of a certificate (the RFC 6960 CertID
    as OCSPRequestData) and gets the base64 DER OCSPResponse; while the response is fresh the same question is
    answered from the cache without a second request, also after a restart (the cache is in the store)."""
    st = await booted(csms, make_station)
    leaf = load(v2g.leaf_cert)
    data = ocsp_request_data(leaf, v2g.sub_ca2.cert)
    good = devpki.ocsp_response(leaf, v2g.sub_ca2)
    csms.certificate_status_answer = {"status": "Accepted", "ocspResult": good}
    first = await st.station.iso15118.certificate_status(data)
    assert (first.status, first.ocsp_result, first.cached) == ("Accepted", good, False)
    assert sent(csms, "GetCertificateStatus") == [{"ocspRequestData": data}]
    second = await st.station.iso15118.certificate_status(data)
    assert (second.status, second.ocsp_result, second.cached) == ("Accepted", good, True)
    await st.stop()
    st2 = await booted(csms, make_station, data_dir=tmp_path / ID)
    third = await st2.station.iso15118.certificate_status(data)
    assert third.cached and third.ocsp_result == good
    assert len(sent(csms, "GetCertificateStatus")) == 1
    assert csms.violations == []


async def test_m06_fr_10_cached_status_expires_at_next_update_and_after_a_week(csms, make_station, v2g):
    """M06.FR.10: the cached status is asked for again once its nextUpdate has passed, and at the latest a week
    after it was fetched (the station's clock is moved forward, not waited for)."""
    from datetime import datetime, timedelta, timezone
    st = await booted(csms, make_station)
    leaf = load(v2g.leaf_cert)
    data = ocsp_request_data(leaf, v2g.sub_ca2.cert)
    soon = devpki.ocsp_response(leaf, v2g.sub_ca2, next_update=datetime.now(timezone.utc) + timedelta(hours=1))
    csms.certificate_status_answer = {"status": "Accepted", "ocspResult": soon}
    api = st.station.iso15118
    assert not (await api.certificate_status(data)).cached
    st.station.clock.offset += 2 * 3600                      # past nextUpdate
    later = devpki.ocsp_response(leaf, v2g.sub_ca2, next_update=datetime.now(timezone.utc) + timedelta(days=30))
    csms.certificate_status_answer = {"status": "Accepted", "ocspResult": later}
    again = await api.certificate_status(data)
    assert not again.cached and again.ocsp_result == later
    assert (await api.certificate_status(data)).cached
    st.station.clock.offset += OCSP_MAX_AGE                  # a week later: nextUpdate still ahead, max age not
    assert not (await api.certificate_status(data)).cached
    assert len(sent(csms, "GetCertificateStatus")) == 3


async def test_tc_m_25_failed_status_is_not_cached_and_bad_input_refused(csms, make_station, v2g):
    """TC_M_25_CS (M06.FR.04): Failed without ocspResult -> Failed for the stack, nothing cached (the next
    question goes to the CSMS again); an ocspResult that is no DER OCSPResponse (M06.FR.08/09) is not used;
    offline with nothing cached -> Failed at once; malformed OCSPRequestData -> Iso15118Error, nothing sent."""
    st = await booted(csms, make_station)
    api = st.station.iso15118
    leaf = load(v2g.leaf_cert)
    data = ocsp_request_data(leaf, v2g.sub_ca2.cert)
    csms.certificate_status_answer = {"status": "Failed"}
    assert (await api.certificate_status(data)).status == "Failed"
    csms.certificate_status_answer = {"status": "Accepted", "ocspResult": base64.b64encode(b"junk").decode()}
    bad = await api.certificate_status(data)
    assert bad.status == "Failed" and "ocspResult" in bad.reason
    assert len(sent(csms, "GetCertificateStatus")) == 2
    for broken, words in (({**data, "issuerNameHash": "zz"}, "issuerNameHash"),
                          ({**data, "hashAlgorithm": "MD5"}, "hashAlgorithm"),
                          ({k: v for k, v in data.items() if k != "responderURL"}, "missing"),
                          ({**data, "serialNumber": "0" * 41}, "serialNumber")):
        with pytest.raises(Iso15118Error, match=words):
            await api.certificate_status(broken)
    await go_offline(csms, st)
    offline = await api.certificate_status(data)
    assert offline.status == "Failed" and offline.reason.startswith("offline")
    await go_online(csms, st)
    await barrier(csms)
    assert len(sent(csms, "GetCertificateStatus")) == 2
    assert csms.violations == []


async def test_m06_fr_06_fr_07_refresh_fetches_the_status_of_every_v2g_certificate(csms, make_station, v2g):
    """M06.FR.06/07: the station asks for the status of its V2G certificate and of each sub-CA (one request per
    certificate, the last issuer an installed V2GRootCertificate); a second refresh while fresh sends nothing; the
    next refresh is due when the first cached status expires."""
    st = await booted(csms, make_station)
    await install_root(csms, "V2GRootCertificate", v2g.root)
    chain = [load(v2g.leaf_cert), v2g.sub_ca2.cert, v2g.sub_ca1.cert]
    issuers = {v2g.sub_ca2.cert.serial_number: v2g.sub_ca1, load(v2g.leaf_cert).serial_number: v2g.sub_ca2,
               v2g.sub_ca1.cert.serial_number: v2g.root}
    by_serial = {format(c.serial_number, "x"): c for c in chain}

    def answer(req: dict) -> dict:
        cert = by_serial[req["ocspRequestData"]["serialNumber"]]
        return {"status": "Accepted", "ocspResult": devpki.ocsp_response(cert, issuers[cert.serial_number])}
    csms.certificate_status_answer = answer
    api = st.station.make_iso15118_api(v2g_chain=lambda: chain)
    assert api.next_refresh() == 0.0                          # nothing cached: due now
    assert await api.refresh() == {"cached": 0, "Accepted": 3, "Failed": 0}
    asked = [p["ocspRequestData"]["serialNumber"] for p in sent(csms, "GetCertificateStatus")]
    assert sorted(asked) == sorted(by_serial)
    assert await api.refresh() == {"cached": 3, "Accepted": 0, "Failed": 0}
    assert len(sent(csms, "GetCertificateStatus")) == 3
    assert api.next_refresh() > st.station.clock.now()
    assert await api.refresh(force=True) == {"cached": 0, "Accepted": 3, "Failed": 0}   # M06.FR.07: renewed
    assert csms.violations == []


# ---- C07 ----------------------------------------------------------------------------------------------------
async def test_tc_c_50_contract_validated_locally_and_authorized_with_hash_data(csms, make_station, mo):
    """TC_C_50_CS (C07.FR.01/02, C07.FR.14): with the MO root installed the station validates the contract chain
    and sends Authorize with the eMAID (type eMAID) and the OCSP request data of the chain (no certificate); the
    CSMS's Accepted / certificateStatus Accepted authorizes the EVSE: the transaction carries the eMAID."""
    st = await booted(csms, make_station)
    await install_root(csms, "MORootCertificate", mo.root)
    csms.authorize[EMAID] = {"status": "Accepted"}
    st.hw.ev_plug(1)
    n = len(csms.received)
    result = await st.station.iso15118.authorize_contract(EMAID, contract_chain(mo), evse_id=1)
    assert (result.authorized, result.status, result.certificate_status, result.online) == (
        True, "Accepted", "Accepted", True)
    (auth,) = sent(csms, "Authorize", n)
    assert auth["idToken"] == {"idToken": EMAID, "type": "eMAID"} and "certificate" not in auth
    leaf = load(mo.leaf_cert)
    assert auth["iso15118CertificateHashData"][0] == ocsp_request_data(leaf, mo.sub_ca2.cert)
    assert len(auth["iso15118CertificateHashData"]) == 3
    tx = await csms.wait_for("TransactionEvent", lambda p: p.get("idToken", {}).get("idToken") == EMAID, after=n)
    assert tx.payload["idToken"]["type"] == "eMAID"
    await eventually(lambda: st.hw.connectors[1].permitted, 5, "energy offered")
    assert csms.violations == []


@pytest.mark.parametrize("case", ["tc_c_51_contract_cancelled", "tc_c_53_certificate_revoked"])
async def test_tc_c_51_tc_c_53_refused_contract_starts_nothing(csms, make_station, mo, case):
    """TC_C_51_CS (idToken Invalid, certificateStatus ContractCancelled, C07.FR.13) and TC_C_53_CS / C07.FR.16
    (certificateStatus CertificateRevoked, idToken Invalid): not authorized; no transaction is authorized and no
    energy is offered (post scenario validation of both). Here with the hash data given by the stack."""
    st = await booted(csms, make_station)
    if case.startswith("tc_c_51"):
        csms.authorize[EMAID] = {"status": "Invalid"}
    else:
        csms.authorize[EMAID] = {"status": "Accepted"}
        csms.contract_certificate_status = "CertificateRevoked"
    st.hw.ev_plug(1)
    n = len(csms.received)
    hashes = [ocsp_request_data(load(mo.leaf_cert), mo.sub_ca2.cert)]
    result = await st.station.iso15118.authorize_contract(EMAID, hash_data=hashes, evse_id=1)
    assert not result.authorized and result.status == "Invalid"
    assert result.certificate_status == ("ContractCancelled" if case.startswith("tc_c_51") else "CertificateRevoked")
    (auth,) = sent(csms, "Authorize", n)
    assert auth["iso15118CertificateHashData"] == hashes
    await barrier(csms)
    for p in sent(csms, "TransactionEvent", n):
        assert p["triggerReason"] != "Authorized" and p.get("transactionInfo", {}).get("chargingState") != "Charging"
    c = st.station.engine.connectors[1]
    assert c.auth is None and not c.tx_authorized and not st.hw.connectors[1].permitted
    assert csms.violations == []


async def test_tc_c_52_central_contract_validation_sends_the_chain(csms, make_station, mo):
    """TC_C_52_CS (C07.FR.06): no MO / V2G root here to validate the chain and CentralContractValidationAllowed
    true: the chain goes to the CSMS in Authorize.certificate (PEM) and its answer decides. With the variable false
    the station refuses at once (NoCertificateAvailable) and sends nothing."""
    st = await booted(csms, make_station)
    csms.authorize[EMAID] = {"status": "Accepted"}
    st.hw.ev_plug(1)
    n = len(csms.received)
    refused = await st.station.iso15118.authorize_contract(EMAID, contract_chain(mo), evse_id=1)
    assert not refused.authorized and refused.certificate_status == "NoCertificateAvailable"
    assert sent(csms, "Authorize", n) == []
    assert await set_var(csms, "ISO15118Ctrlr", "CentralContractValidationAllowed", "true") == "Accepted"
    result = await st.station.iso15118.authorize_contract(EMAID, contract_chain(mo), evse_id=1)
    assert result.authorized and result.certificate_status == "Accepted"
    (auth,) = sent(csms, "Authorize", n)
    assert auth["certificate"] == contract_chain(mo) and "iso15118CertificateHashData" not in auth
    await csms.wait_for("TransactionEvent", lambda p: p.get("idToken", {}).get("idToken") == EMAID, after=n)
    assert csms.violations == []


async def test_c07_invalid_chain_or_input_is_refused_locally(csms, make_station, mo, tmp_path):
    """An expired or broken contract chain (a link that does not verify) is refused by the station itself
    (CertChainError / CertificateExpired), without an Authorize; malformed input raises Iso15118Error."""
    st = await booted(csms, make_station)
    await install_root(csms, "MORootCertificate", mo.root)
    other = devpki.iso15118_chain(tmp_path / "other", "mo", devpki.MO_NAME, EMAID)
    broken = pem(load(mo.leaf_cert), other.sub_ca2.cert, mo.sub_ca1.cert)
    api = st.station.iso15118
    n = len(csms.received)
    result = await api.authorize_contract(EMAID, broken)
    assert not result.authorized and result.certificate_status == "CertChainError"
    st.station.clock.offset += 400 * 86400                   # the contract certificate (1 year) has expired
    result = await api.authorize_contract(EMAID, contract_chain(mo))
    assert not result.authorized and result.certificate_status == "CertificateExpired"
    st.station.clock.offset = 0.0
    hd = {"hashAlgorithm": "SHA256", "issuerNameHash": "a" * 64, "issuerKeyHash": "b" * 64, "serialNumber": "1f",
          "responderURL": ""}
    for kwargs, words in (({"id_token": "X" * 37, "hash_data": [hd]}, "eMAID"),
                          ({"id_token": EMAID}, "required"),
                          ({"id_token": EMAID, "hash_data": [hd] * 5}, "1 to 4"),
                          ({"id_token": EMAID, "certificate_chain_pem": "-----BEGIN CERTIFICATE-----\nxx"}, "PEM")):
        with pytest.raises(Iso15118Error, match=words):
            await api.authorize_contract(**kwargs)
    await barrier(csms)
    assert sent(csms, "Authorize", n) == []
    assert csms.violations == []


async def test_tc_c_55_offline_contract_validation_offline_false_refuses(csms, make_station, mo):
    """TC_C_55_CS (C07.FR.07): offline with ISO15118Ctrlr.ContractValidationOffline false (the default) the EV is
    not authorized and nothing starts charging."""
    st = await booted(csms, make_station)
    await install_root(csms, "MORootCertificate", mo.root)
    await go_offline(csms, st)
    st.hw.ev_plug(1)
    result = await st.station.iso15118.authorize_contract(EMAID, contract_chain(mo), evse_id=1)
    assert not result.authorized and "ContractValidationOffline" in result.reason
    c = st.station.engine.connectors[1]
    assert c.auth is None and not c.tx_authorized and not st.hw.connectors[1].permitted


async def test_tc_c_54_offline_contract_validated_locally_and_cached_emaid_authorized(csms, make_station, mo):
    """TC_C_54_CS (C07.FR.08/09/11): offline with ContractValidationOffline true the station validates the chain
    against the installed MO root and looks the eMAID up in its authorization cache (accepted online before):
    authorized; the transaction is reported offline with the eMAID once the CSMS is back."""
    st = await booted(csms, make_station, connectors=2)
    await install_root(csms, "MORootCertificate", mo.root)
    assert await set_var(csms, "ISO15118Ctrlr", "ContractValidationOffline", "true") == "Accepted"
    csms.authorize[EMAID] = {"status": "Accepted"}
    st.hw.ev_plug(1)
    assert (await st.station.iso15118.authorize_contract(EMAID, contract_chain(mo), evse_id=1)).authorized
    await go_offline(csms, st)
    st.hw.ev_plug(2)
    result = await st.station.iso15118.authorize_contract(EMAID, contract_chain(mo), evse_id=2)
    assert (result.authorized, result.online, result.certificate_status) == (True, False, "Accepted")
    await eventually(lambda: st.hw.connectors[2].permitted, 5, "energy offered on EVSE 2")
    n = len(csms.received)
    await go_online(csms, st)
    tx = await csms.wait_for("TransactionEvent", lambda p: p.get("offline") is True
                             and p.get("idToken", {}).get("idToken") == EMAID, after=n)
    assert tx.payload["idToken"]["type"] == "eMAID" and tx.payload["evse"]["id"] == 2
    assert csms.violations == []
