"""CSMS root rotation under AdditionalRootCertificateCheck (2.0.1 M05.FR.09-16, 1.6 Security Whitepaper ed. 3
M05.FR.08-13) and the refusal of wildcard CSMS certificates (2.0.1 SecurityCtrlr.AllowCSMSTLSWildcards, errata
2025-02), over real TLS handshakes: a real station (or the real transport) against the strict embedded CSMS.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from helpers import eventually
from secure_cp.security import devpki, tls
from secure_cp.sim.csms import Csms
from secure_cp.transport import Transport, TransportConfig

ID = "CP1"
PASSWORD = "0123456789abcdef"
#: per OCPP version: subprotocol, the root type's name, the InvalidCsmsCertificate event's name
VERSIONS = {"ocpp2.0.1": ("CSMSRootCertificate", "InvalidCsmsCertificate"),
            "ocpp1.6": ("CentralSystemRootCertificate", "InvalidCentralSystemCertificate")}


def root_pem(issuer: devpki.Issuer) -> str:
    return Path(issuer.cert_file).read_text()


async def install(csms: Csms, protocol: str, pem: str) -> str:
    res = await csms.call(ID, "InstallCertificate", {"certificateType": VERSIONS[protocol][0], "certificate": pem})
    return res["status"]


async def installed_roots(csms: Csms, protocol: str) -> int:
    if protocol == "ocpp1.6":
        res = await csms.call(ID, "GetInstalledCertificateIds", {"certificateType": VERSIONS[protocol][0]})
    else:
        res = await csms.call(ID, "GetInstalledCertificateIds", {"certificateType": [VERSIONS[protocol][0]]})
    return len(res.get("certificateHashData" if protocol == "ocpp1.6" else "certificateHashDataChain", []))


async def reconnected(csms: Csms, st, until, what: str) -> None:
    """Drop the connection; wait until ``until()`` holds and the station is connected again."""
    st.station.transport.reconnect_now()
    await eventually(lambda: until() and st.station.transport.connected, 10, what)
    await csms.wait_connected(ID)


@pytest.mark.parametrize("protocol", list(VERSIONS))
async def test_m05_fr_09_to_13_new_root_cross_signed_fallback_until_connected_with_it(tmp_path, make_station,
                                                                                     protocol):
    """2.0.1 M05.FR.09-14 / 1.6 whitepaper M05.FR.08-13 with AdditionalRootCertificateCheck true (read-only,
    from the station configuration): a root not signed by the current CSMS root (the configured ca_file) is Rejected
    and nothing is installed; a root cross-signed by it is Accepted, the old one kept as the fallback (two roots
    reported). Reconnecting to a CSMS that still presents a server certificate of the old root: the handshake with
    the new root fails (InvalidCsmsCertificate), the next attempt verifies with the fallback and connects, the
    fallback stays. Once the CSMS presents a certificate of the new root, the station connects with it and removes
    the fallback (one root left)."""
    root_type, event = VERSIONS[protocol]
    pki = devpki.generate(tmp_path / "pki", identity=ID)
    server_ctx = tls.server_context(pki.server_cert, pki.server_key)
    async with Csms(ssl_context=server_ctx, basic_auth={ID: PASSWORD.encode()}) as csms:
        st = await make_station(csms, protocols=[protocol], security_profile=2, password=PASSWORD,
                                ca_file=pki.ca_file, ocpp={"AdditionalRootCertificateCheck": "true"})
        await csms.wait_for("StatusNotification", identity=ID)
        store = st.station.certificates
        assert store.root_check

        stranger = devpki.unknown_ca(tmp_path / "other")
        assert await install(csms, protocol, root_pem(stranger)) == "Rejected"       # M05.FR.11 / 1.6 M05.FR.10
        assert await installed_roots(csms, protocol) == 0

        new_root = devpki.cross_signed_root(tmp_path / "root2", "root2", pki.root)
        assert await install(csms, protocol, root_pem(new_root)) == "Accepted"       # M05.FR.12 / 1.6 M05.FR.11
        assert await installed_roots(csms, protocol) == 2                            # the new root + the fallback
        assert store.fallback_root() == pki.root.cert
        assert store.csms_roots() == [new_root.cert]
        assert await install(csms, protocol, root_pem(stranger)) == "Rejected"       # not signed by the new root

        events = st.station.security_events
        await reconnected(csms, st, lambda: event in [e.type for e in events.log()],
                          "the new root to fail and the fallback to connect")        # M05.FR.14 / 1.6 M05.FR.13
        assert st.station._fallback_used                                             # connected via the fallback
        assert store.fallback_root() == pki.root.cert

        chain, key = devpki.server_certificate(tmp_path / "srv2", "srv2", new_root)
        server_ctx.load_cert_chain(str(chain), str(key))
        await reconnected(csms, st, lambda: store.fallback_root() is None,
                          "a connection with the new root and the fallback removed")  # M05.FR.13 / 1.6 M05.FR.12
        assert not st.station._fallback_used
        assert store.csms_roots() == [new_root.cert]
        assert await installed_roots(csms, protocol) == 1
        assert csms.violations == []


@pytest.mark.parametrize("protocol", list(VERSIONS))
async def test_additional_root_certificate_check_is_read_only_and_reported(csms, make_station, protocol):
    """1.6 whitepaper §7.1 AdditionalRootCertificateCheck (GetConfiguration, read-only boolean) and 2.0.1
    SecurityCtrlr.AdditionalRootCertificateCheck (ReadOnly): the configured value is reported; a write is refused.
    2.0.1 SecurityCtrlr.AllowCSMSTLSWildcards (errata 2025-02): ReadWrite boolean, false by default."""
    st = await make_station(csms, protocols=[protocol], ocpp={"AdditionalRootCertificateCheck": "true"})
    await csms.wait_for("StatusNotification", identity=ID)
    if protocol == "ocpp1.6":
        res = await csms.call(ID, "GetConfiguration", {"key": ["AdditionalRootCertificateCheck"]})
        assert res["configurationKey"] == [{"key": "AdditionalRootCertificateCheck", "readonly": True,
                                            "value": "true"}]
        res = await csms.call(ID, "ChangeConfiguration", {"key": "AdditionalRootCertificateCheck", "value": "false"})
        assert res["status"] == "Rejected"
    else:
        def get(name: str) -> dict:
            return {"component": {"name": "SecurityCtrlr"}, "variable": {"name": name}}
        res = await csms.call(ID, "GetVariables", {"getVariableData": [get("AdditionalRootCertificateCheck"),
                                                                       get("AllowCSMSTLSWildcards")]})
        assert [r.get("attributeValue") for r in res["getVariableResult"]] == ["true", "false"]
        res = await csms.call(ID, "SetVariables", {"setVariableData": [
            {**get("AdditionalRootCertificateCheck"), "attributeValue": "false"},
            {**get("AllowCSMSTLSWildcards"), "attributeValue": "true"}]})
        assert [r["attributeStatus"] for r in res["setVariableResult"]] == ["Rejected", "Accepted"]
        assert st.station.model.get("SecurityCtrlr", "AllowCSMSTLSWildcards") == "true"
    assert st.station.certificates.root_check
    assert csms.violations == []


async def test_allow_csms_tls_wildcards_false_refuses_a_wildcard_certificate(tmp_path, caplog):
    """AllowCSMSTLSWildcards absent or false (2.0.1 errata 2025-02, TC_A_05_CS before steps): a CSMS presenting a
    wildcard server certificate (*.test.example, valid for the host csms.test.example and issued by the trusted
    root) is refused right after the TLS handshake, before the WebSocket upgrade: an invalid CSMS certificate
    (InvalidCsmsCertificate), one clear log line, retried with back-off. With the variable true the same
    certificate connects."""
    pki = devpki.generate(tmp_path / "pki", identity=ID)
    chain, key = devpki.server_certificate(tmp_path / "wild", "wild", pki.root, hosts=("*.test.example",))
    allowed = False
    ctx = tls.client_context(2, pki.ca_file)
    tls.refuse_wildcards(ctx, lambda: allowed)
    errors: list[Exception] = []
    opened: list[str] = []
    async with Csms(ssl_context=tls.server_context(chain, key), basic_auth={ID: PASSWORD.encode()}) as csms:
        config = TransportConfig(url=f"wss://csms.test.example:{csms.port}", identity=ID, subprotocols=["ocpp2.0.1"],
                                 security_profile=2, password=PASSWORD.encode(), ssl_context=ctx,
                                 connect_host="127.0.0.1", reconnect_min=0.05, reconnect_max=0.2)
        transport = Transport(config, on_open=opened.append, on_message=lambda _: None, on_close=lambda _: None,
                              on_connect_error=errors.append)
        task = asyncio.create_task(transport.run())
        try:
            with caplog.at_level(logging.ERROR, logger="secure_cp"):
                await eventually(lambda: len(errors) >= 2, 10, "two refused attempts (retried)")
            failure = tls.classify_failure(errors[0], "2.0.1")
            assert failure is not None and failure.event == "InvalidCsmsCertificate"
            assert "wildcard" in failure.text and "*.test.example" in failure.text
            assert opened == [] and ID not in csms.connected                  # no WebSocket upgrade took place
            assert any("AllowCSMSTLSWildcards" in r.getMessage() for r in caplog.records)
            allowed = True
            await eventually(lambda: opened == ["ocpp2.0.1"], 10, "the connection with wildcards allowed")
            await csms.wait_connected(ID)
        finally:
            await transport.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def test_wildcard_names_of_a_peer_certificate():
    """The names the refusal looks at: DNS subjectAltNames, or the CN when there is none."""
    assert tls.wildcard_names({"subjectAltName": (("DNS", "*.a.example"), ("DNS", "b.example"))}) == ["*.a.example"]
    assert tls.wildcard_names({"subjectAltName": (("DNS", "b.example"),),
                               "subject": ((("commonName", "*.b.example"),),)}) == []
    assert tls.wildcard_names({"subject": ((("commonName", "*.b.example"),),)}) == ["*.b.example"]
