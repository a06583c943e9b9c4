"""TLS security profiles 2 and 3, end to end: real TLS handshakes on 127.0.0.1 with real certificates from the
development PKI (secure_cp.security.devpki) made in tmp_path, a real station and the strict CSMS.

Part 6: TC_A_04_CS (valid server certificate), TC_A_05_CS (invalid server certificate: terminated, security event
InvalidCsmsCertificate sent once a good connection exists), TC_A_06_CS (TLS version too low), TC_A_07_CS-style
mutual TLS (security profile 3), TC_A_19_CS (upgrade 1 -> 2, A05.FR.06, fallback when the new
profile fails), TC_A_20_CS (A05.FR.02). Part 2 / 1.6 whitepaper: A00.FR.307-322 (profile 2),
A00.FR.401-426 (profile 3).
"""
from __future__ import annotations

import datetime as dt
import logging
import socket
import ssl
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import eventually
from secure_cp.config import ConfigError, load
from secure_cp.security import devpki, tls
from secure_cp.sim.csms import Csms

ID = "CP1"
PASSWORD = "0123456789abcdef"          # the AuthorizationKey / BasicAuthPassword (hex-string form)


@pytest.fixture
def pki(tmp_path) -> devpki.DevPki:
    return devpki.generate(tmp_path / "pki", identity=ID)


def tls_csms(pki: devpki.DevPki, *, mutual: bool = False, cert: tuple[Path, Path] | None = None) -> Csms:
    """A CSMS on wss://127.0.0.1 with the dev PKI's server certificate (or ``cert``): profile 2 (Basic auth) or,
    ``mutual``, profile 3 (a station certificate from the PKI is required, no password)."""
    cert_file, key_file = cert or (pki.server_cert, pki.server_key)
    ctx = tls.server_context(cert_file, key_file, client_ca=pki.ca_file if mutual else None,
                             require_client_cert=mutual)
    return Csms(ssl_context=ctx, basic_auth=None if mutual else {ID: PASSWORD.encode()})


def profile2(pki: devpki.DevPki) -> dict:
    return {"security_profile": 2, "password": PASSWORD, "ca_file": pki.ca_file}


def profile3(pki: devpki.DevPki) -> dict:
    return {"security_profile": 3, "ca_file": pki.ca_file, "cert_file": pki.station_chain,
            "key_file": pki.station_key}


def ssl_object(csms: Csms) -> ssl.SSLObject:
    return csms._session(ID).ws.transport.get_extra_info("ssl_object")


def tls_failures(caplog) -> int:
    return sum("TLS handshake with" in r.getMessage() for r in caplog.records if r.name == "secure_cp.transport")


def logged_events(st, event_type: str) -> list:
    return [e for e in st.station.security_events.log() if e.type == event_type]


class HandshakeOnlyServer:
    """A TLS listener that only handshakes, in a thread with blocking sockets: unlike an asyncio server it sends
    OpenSSL's alert (protocol_version, handshake_failure) before closing, as a real old or weak CSMS would."""

    def __init__(self, ctx: ssl.SSLContext):
        self.ctx = ctx
        self.errors: list[str] = []
        self.completed = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self._sock.getsockname()[1]}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(5)
            try:
                with self.ctx.wrap_socket(conn, server_side=True):
                    self.completed += 1
            except (ssl.SSLError, OSError) as exc:
                self.errors.append(getattr(exc, "reason", None) or str(exc))
            finally:
                conn.close()

    def __enter__(self) -> "HandshakeOnlyServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


# ---- the TLS context on its own -------------------------------------------------------------------------------------
def test_a00_fr_312_318_320_client_context_versions_ciphers_compression(pki):
    """A00.FR.312/416 TLS >= 1.2; A00.FR.318/319: only the AES-GCM suites (plus TLS 1.3's AEAD suites), nothing
    weaker; A00.FR.320: no compression; A00.FR.307/308: verification against the configured root, host name."""
    ctx = tls.client_context(2, pki.ca_file)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.options & ssl.OP_NO_COMPRESSION
    names = {c["name"] for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3"}
    assert names == set(tls.TLS12_CIPHERS.split(":"))
    assert all("GCM" in c["name"] or "CHACHA20" in c["name"] for c in ctx.get_ciphers())
    roots = ctx.get_ca_certs()
    assert len(roots) == 1                                 # the CSMS root only, no system bundle
    assert dict(x[0] for x in roots[0]["subject"])["commonName"] == "secure-cp development CSMS root CA"


def test_devpki_files_keys_private_and_chain_valid(pki, tmp_path):
    """The dev PKI: private keys mode 0600, station CN = identity, server certificate for localhost/127.0.0.1."""
    for key in (pki.server_key, pki.station_key, tmp_path / "pki" / "csms-root.key", tmp_path / "pki" / "cpo-ca.key"):
        assert key.stat().st_mode & 0o777 == 0o600
    from cryptography import x509
    station = x509.load_pem_x509_certificate(pki.station_cert.read_bytes())
    assert station.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == ID
    server = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert devpki.main(["--out", str(tmp_path / "cli"), "--identity", "CP-9"]) == 0
    assert (tmp_path / "cli" / "station-chain.pem").exists()


# ---- TC_A_04: valid server certificate ----------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["ocpp2.0.1", "ocpp1.6"])
async def test_tc_a_04_valid_server_certificate_boots(pki, make_station, protocol):
    """TC_A_04_CS / A00.FR.307-312: profile 2 connects over TLS >= 1.2 to a CSMS whose certificate chains to the
    configured root and names the host; HTTP Basic auth is still sent (A00.FR.302); the station boots."""
    async with tls_csms(pki) as csms:
        assert csms.url.startswith("wss://")
        st = await make_station(csms, protocols=[protocol], **profile2(pki))
        await csms.wait_for("BootNotification", identity=ID)
        assert ssl_object(csms).version() in ("TLSv1.2", "TLSv1.3")
        assert csms._session(ID).ws.request.headers["Authorization"].startswith("Basic ")
        assert csms.refused == [] and csms.violations == []
        if protocol == "ocpp2.0.1":
            await eventually(lambda: st.station.model.get("SecurityCtrlr", "SecurityProfile") == "2",
                             what="SecurityProfile 2")


# ---- TC_A_05: invalid server certificate --------------------------------------------------------------------------
def bad_server_cert(kind: str, pki: devpki.DevPki, out: Path) -> tuple[Path, Path]:
    now = dt.datetime.now(dt.timezone.utc)
    if kind == "unknown-ca":
        return devpki.server_certificate(out, kind, devpki.unknown_ca(out))
    if kind == "expired":
        return devpki.server_certificate(out, kind, pki.root, not_before=now - dt.timedelta(days=30),
                                         not_after=now - dt.timedelta(days=1))
    return devpki.server_certificate(out, kind, pki.root, hosts=("csms.example.org",))   # wrong host


@pytest.mark.parametrize("kind", ["unknown-ca", "expired", "wrong-host"])
async def test_tc_a_05_invalid_server_certificate_terminated_and_event_sent_later(pki, make_station, tmp_path,
                                                                                 caplog, kind):
    """TC_A_05_CS / A00.FR.309-310 (2.0.1: InvalidCsmsCertificate, critical): each attempt is terminated in the
    handshake, the event is stored once for the whole outage (no flooding while retrying with back-off) and is sent
    in a SecurityEventNotification as soon as the CSMS presents a valid certificate."""
    caplog.set_level(logging.INFO, logger="secure_cp")
    csms = tls_csms(pki, cert=bad_server_cert(kind, pki, tmp_path / "bad"))
    async with csms:
        st = await make_station(csms, protocols=["ocpp2.0.1"], **profile2(pki))
        await eventually(lambda: tls_failures(caplog) >= 3, what="three refused handshakes")
        assert csms.connected == {} and not any(r.action == "BootNotification" for r in csms.received)
        events = logged_events(st, "InvalidCsmsCertificate")
        assert len(events) == 1 and events[0].critical
        assert "invalid CSMS certificate" in events[0].tech_info
        # the CSMS gets a valid certificate: new handshakes use it
        csms.ssl_context.load_cert_chain(pki.server_cert, pki.server_key)
        await csms.wait_for("BootNotification", identity=ID)
        sent = await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "InvalidCsmsCertificate",
                                   identity=ID)
        assert sent.payload["techInfo"] == events[0].tech_info
        await eventually(lambda: not st.station.security_events.pending(10) or all(
            e.type != "InvalidCsmsCertificate" for e in st.station.security_events.pending(10)), what="delivered")
        assert csms.violations == []


async def test_a00_fr_309_v16_names_the_event_invalid_central_system_certificate(pki, make_station, tmp_path,
                                                                                caplog):
    """1.6 whitepaper A00.FR.309: the 1.6 name of the event is InvalidCentralSystemCertificate."""
    caplog.set_level(logging.INFO, logger="secure_cp")
    async with tls_csms(pki, cert=bad_server_cert("expired", pki, tmp_path / "bad")) as csms:
        st = await make_station(csms, protocols=["ocpp1.6"], **profile2(pki))
        await eventually(lambda: tls_failures(caplog) >= 2, what="refused handshakes")
        assert [e.type for e in st.station.security_events.log() if e.type.startswith("Invalid")] == [
            "InvalidCentralSystemCertificate"]
        assert csms.connected == {}


# ---- TC_A_06: TLS version too low / weak cipher suites ------------------------------------------------------------
# suites outside A00.FR.318 (AES-GCM only): CBC with SHA-1 MACs, and CBC with SHA-2 MACs
WEAK_CIPHERS = {"cbc-sha1": "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0",
                "cbc-sha2": "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384"}


async def refused_in_handshake(make_station, pki: devpki.DevPki, caplog, protocol: str, weakness: str,
                               event: str) -> None:
    """A CSMS that offers only TLS 1.1 (``weakness`` "tls1.1") or only the WEAK_CIPHERS suites never completes a
    handshake with a profile-2 station speaking ``protocol``: the station refuses every attempt, keeps retrying, stays
    disconnected, and records the security ``event`` once (A00.FR.315/322, whitepaper names for 1.6)."""
    caplog.set_level(logging.INFO, logger="secure_cp")
    if weakness == "tls1.1":
        ctx = tls.server_context(pki.server_cert, pki.server_key, maximum_version=ssl.TLSVersion.TLSv1_1,
                                 ciphers="DEFAULT:@SECLEVEL=0")
    else:
        ctx = tls.server_context(pki.server_cert, pki.server_key, maximum_version=ssl.TLSVersion.TLSv1_2,
                                 ciphers=WEAK_CIPHERS[weakness])
    with HandshakeOnlyServer(ctx) as server:
        st = await make_station(SimpleNamespace(url=server.url), protocols=[protocol], **profile2(pki))
        await eventually(lambda: tls_failures(caplog) >= 3 and len(server.errors) >= 3, what="refused handshakes")
        assert server.completed == 0
        assert [e.type for e in st.station.security_events.log() if e.type.startswith("InvalidTLS")] == [event]
        assert not st.station.transport.connected


@pytest.mark.parametrize("weakness, event", [
    ("tls1.1", "InvalidTLSVersion"),           # A00.FR.315 / 419, TC_A_06_CS
    ("cbc-sha1", "InvalidTLSCipherSuite"),     # A00.FR.322 / 426
])
async def test_tc_a_06_csms_with_old_tls_or_weak_ciphers_refused(pki, make_station, caplog, weakness, event):
    """TC_A_06_CS: a CSMS that offers only TLS 1.1 or lower (or only CBC/SHA-1 suites) is refused by the station
    in the handshake (the CSMS never completes one), with the security event, and the station keeps retrying."""
    await refused_in_handshake(make_station, pki, caplog, "ocpp2.0.1", weakness, event)


# ---- security profile 3: mutual TLS -------------------------------------------------------------------------------
async def test_a00_fr_401_402_profile_3_mutual_tls_boots_without_password(pki, make_station):
    """A00.FR.401/402 (TC_A_07_CS): the station authenticates with its certificate (CN = identity, chain through the
    CPO sub-CA); no Authorization header is sent under profile 3."""
    async with tls_csms(pki, mutual=True) as csms:
        st = await make_station(csms, protocols=["ocpp2.0.1"], **profile3(pki))
        await csms.wait_for("BootNotification", identity=ID)
        peer = ssl_object(csms).getpeercert()
        assert dict(x[0] for x in peer["subject"])["commonName"] == ID
        assert "Authorization" not in csms._session(ID).ws.request.headers
        await eventually(lambda: st.station.model.get("SecurityCtrlr", "SecurityProfile") == "3",
                         what="SecurityProfile 3")
        assert csms.violations == []


async def test_a00_fr_407_csms_requiring_client_certificate_refuses_station_without_one(pki, make_station, caplog):
    """A00.FR.407: a CSMS of profile 3 terminates the connection of a station that presents no certificate (here a
    profile 2 station): no WebSocket connection, no boot; the station keeps retrying."""
    caplog.set_level(logging.INFO, logger="secure_cp")
    async with tls_csms(pki, mutual=True) as csms:
        st = await make_station(csms, protocols=["ocpp2.0.1"], **profile2(pki))
        await eventually(lambda: sum("cannot connect" in r.getMessage() or "TLS handshake" in r.getMessage()
                                     for r in caplog.records if r.name == "secure_cp.transport") >= 3,
                         what="refused connections")
        assert csms.connected == {} and csms.received == []
        assert not st.station.transport.connected


# ---- TC_A_19: upgrade from profile 1 to 2 -------------------------------------------------------------------------
async def test_tc_a_19_upgrade_security_profile_1_to_2(pki, make_station):
    """TC_A_19_CS (A05 with B09/B10): at profile 1 the CSMS stores a profile-2 network profile (accepted: the
    station has a CSMS root), moves it first in NetworkConfigurationPriority and resets; the station reconnects
    over TLS and reports SecurityProfile 2."""
    async with Csms(basic_auth={ID: PASSWORD.encode()}) as plain, tls_csms(pki) as secure:
        st = await make_station(plain, protocols=["ocpp2.0.1"], security_profile=1, password=PASSWORD,
                                ca_file=pki.ca_file)
        await plain.wait_for("BootNotification", identity=ID)

        def conn(url: str, sp: int) -> dict:
            return {"configurationSlot": 2, "connectionData": {
                "ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": url, "messageTimeout": 30,
                "securityProfile": sp, "ocppInterface": "Wired0"}}
        res = await plain.call(ID, "SetNetworkProfile", conn(secure.url, 2))
        assert res["status"] == "Accepted"
        res = await plain.call(ID, "SetVariables", {"setVariableData": [{
            "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NetworkConfigurationPriority"},
            "attributeValue": "2,1"}]})
        assert res["setVariableResult"][0]["attributeStatus"] == "RebootRequired"
        assert (await plain.call(ID, "Reset", {"type": "OnIdle"}))["status"] == "Accepted"
        await secure.wait_for("BootNotification", identity=ID)
        assert ssl_object(secure).version() in ("TLSv1.2", "TLSv1.3")
        await eventually(lambda: st.station.model.get("SecurityCtrlr", "SecurityProfile") == "2",
                         what="SecurityProfile 2")
        # step 13 / A05.FR.06: the profile-1 slot is gone from NetworkConfigurationPriority, and cannot come back
        got = await secure.call(ID, "GetVariables", {"getVariableData": [
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NetworkConfigurationPriority"}}]})
        assert got["getVariableResult"][0]["attributeValue"] == "2"
        assert st.station.network.get(1) is None
        res = await secure.call(ID, "SetVariables", {"setVariableData": [{
            "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NetworkConfigurationPriority"},
            "attributeValue": "2,1"}]})
        assert res["setVariableResult"][0]["attributeStatus"] == "Rejected"
        assert plain.violations == [] and secure.violations == []


async def test_tc_a_19_a05_fr_06_b10_fr_03_new_profile_fails_fallback_keeps_security_profile(pki, make_station,
                                                                                             tmp_path, caplog):
    """TC_A_19_CS when the new connection fails (A05 with B10.FR.03): the profile-2 CSMS presents a certificate of an
    unknown CA, so every TLS handshake of slot 2 is refused (InvalidCsmsCertificate); after
    NetworkProfileConnectionAttempts attempts the station falls back to slot 1 (the previous, working profile) and
    boots there. SecurityProfile stays 1 and no profile is removed: A05.FR.06 only applies after a successful
    connection with the new profile."""
    caplog.set_level(logging.INFO, logger="secure_cp")
    async with Csms(basic_auth={ID: PASSWORD.encode()}) as plain, \
            tls_csms(pki, cert=bad_server_cert("unknown-ca", pki, tmp_path / "bad")) as secure:
        st = await make_station(plain, protocols=["ocpp2.0.1"], security_profile=1, password=PASSWORD,
                                ca_file=pki.ca_file)
        await plain.wait_for("StatusNotification", identity=ID)
        assert st.station.model.get("SecurityCtrlr", "SecurityProfile") == "1"

        async def set_var(variable: str, value: str) -> str:
            res = await plain.call(ID, "SetVariables", {"setVariableData": [{
                "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": variable}, "attributeValue": value}]})
            return res["setVariableResult"][0]["attributeStatus"]
        assert await set_var("NetworkProfileConnectionAttempts", "2") == "Accepted"
        res = await plain.call(ID, "SetNetworkProfile", {"configurationSlot": 2, "connectionData": {
            "ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": secure.url, "messageTimeout": 30,
            "securityProfile": 2, "ocppInterface": "Wired0"}})
        assert res["status"] == "Accepted"
        assert await set_var("NetworkConfigurationPriority", "2,1") == "RebootRequired"
        mark = len(plain.received)
        assert (await plain.call(ID, "Reset", {"type": "OnIdle"}))["status"] == "Accepted"
        boot = await plain.wait_for("BootNotification", identity=ID, after=mark, timeout=20)
        assert boot.payload["reason"] == "RemoteReset"
        refused = [r for r in caplog.records if r.name == "secure_cp.transport"
                   and "TLS handshake with" in r.getMessage() and secure.url.split("//")[1] in r.getMessage()]
        assert len(refused) == 2                                   # NetworkProfileConnectionAttempts on slot 2
        assert secure.connected == {} and not any(r.identity == ID for r in secure.received)
        station = st.station
        assert station.plan.current.slot == 1 and station.network.active_slot == 1
        assert station.model.get("SecurityCtrlr", "SecurityProfile") == "1"          # only up on success
        assert station.model.get("OCPPCommCtrlr", "NetworkConfigurationPriority") == "2,1"
        assert station.network.get(1) is not None and station.network.get(2).security_profile == 2
        assert [e.type for e in logged_events(st, "InvalidCsmsCertificate")] == ["InvalidCsmsCertificate"]
        assert plain.violations == []


async def test_tc_a_20_a05_fr_02_priority_with_profile_2_rejected_without_csms_root(pki, make_station):
    """TC_A_20_CS / A05.FR.02: the profile-2 slot was stored while the station had a CSMS root (installed by the
    CSMS, M05); once that root is deleted (M04), a NetworkConfigurationPriority that puts the profile-2 slot in use
    is Rejected, SecurityProfile stays 1 and the station stays on its connection."""
    async with Csms(basic_auth={ID: PASSWORD.encode()}) as plain, tls_csms(pki) as secure:
        st = await make_station(plain, protocols=["ocpp2.0.1"], security_profile=1, password=PASSWORD)
        await plain.wait_for("StatusNotification", identity=ID)
        res = await plain.call(ID, "InstallCertificate", {"certificateType": "CSMSRootCertificate",
                                                           "certificate": Path(pki.ca_file).read_text()})
        assert res["status"] == "Accepted"
        res = await plain.call(ID, "SetNetworkProfile", {"configurationSlot": 2, "connectionData": {
            "ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": secure.url, "messageTimeout": 30,
            "securityProfile": 2, "ocppInterface": "Wired0"}})
        assert res["status"] == "Accepted"
        ids = await plain.call(ID, "GetInstalledCertificateIds", {"certificateType": ["CSMSRootCertificate"]})
        hash_data = ids["certificateHashDataChain"][0]["certificateHashData"]
        assert (await plain.call(ID, "DeleteCertificate", {"certificateHashData": hash_data}))["status"] == "Accepted"
        res = await plain.call(ID, "SetVariables", {"setVariableData": [{
            "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NetworkConfigurationPriority"},
            "attributeValue": "2,1"}]})
        assert res["setVariableResult"][0]["attributeStatus"] == "Rejected"
        assert st.station.model.get("OCPPCommCtrlr", "NetworkConfigurationPriority") == "1"
        assert st.station.model.get("SecurityCtrlr", "SecurityProfile") == "1"
        assert st.station.transport.connected and secure.received == []
        assert plain.violations == []


# ---- configuration ------------------------------------------------------------------------------------------------
def write_config(tmp_path: Path, profile: int, security: dict[str, str]) -> Path:
    lines = ["[station]", f'identity = "{ID}"', "[csms]", 'url = "wss://127.0.0.1:9443/ocpp"',
             f"security_profile = {profile}", f'password = "{PASSWORD}"', "[security]"]
    lines += [f'{k} = "{v}"' for k, v in security.items()]
    p = tmp_path / "station.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_config_profile_3_good_files_load(pki, tmp_path):
    cfg = load(write_config(tmp_path, 3, {"ca_file": pki.ca_file, "cert_file": pki.station_chain,
                                          "key_file": pki.station_key}))
    assert cfg.security_profile == 3 and cfg.ca_file == pki.ca_file and cfg.key_file == pki.station_key


@pytest.mark.parametrize("case, key, text", [
    ("no-ca", "security.ca_file", "required"),
    ("missing-ca", "security.ca_file", "does not exist"),
    ("broken-ca", "security.ca_file", "no valid PEM certificate"),
    ("no-key", "security.key_file", "required"),
    ("broken-cert", "security.cert_file", "no valid PEM certificate"),
    ("broken-key", "security.key_file", "no usable unencrypted PEM private key"),
    ("wrong-key", "security.key_file", "does not match"),
])
def test_config_bad_tls_files_are_clear_errors(pki, tmp_path, case, key, text):
    """A missing or broken certificate / key file stops the start with a ConfigError naming the key and the file."""
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    sec = {"ca_file": pki.ca_file, "cert_file": pki.station_chain, "key_file": pki.station_key}
    if case == "no-ca":
        del sec["ca_file"]
    elif case == "missing-ca":
        sec["ca_file"] = tmp_path / "nope.pem"
    elif case == "broken-ca":
        sec["ca_file"] = junk
    elif case == "no-key":
        del sec["key_file"]
    elif case == "broken-cert":
        sec["cert_file"] = junk
    elif case == "broken-key":
        sec["key_file"] = junk
    elif case == "wrong-key":
        sec["key_file"] = pki.server_key
    with pytest.raises(ConfigError) as e:
        load(write_config(tmp_path, 3, sec))
    assert str(e.value).startswith(key) and text in str(e.value)


def test_config_profile_2_needs_wss_and_password(pki, tmp_path):
    p = write_config(tmp_path, 2, {"ca_file": pki.ca_file})
    p.write_text(p.read_text().replace("wss://", "ws://"))
    with pytest.raises(ConfigError, match="csms.url: security_profile 2 needs a wss:// url"):
        load(p)
    p = write_config(tmp_path, 2, {"ca_file": pki.ca_file})
    p.write_text(p.read_text().replace(f'password = "{PASSWORD}"\n', ""))
    with pytest.raises(ConfigError, match="csms.password"):
        load(p)


async def test_tls_files_gone_after_configuration_station_runs_offline_and_connects_once_back(pki, make_station,
                                                                                              tmp_path, caplog):
    """Bad input loses nothing: a CA file that disappears after the configuration was checked makes every connection
    attempt fail with a clear error (no crash, the station keeps running offline); once the file is back, the next
    attempt connects and boots."""
    ca_copy = tmp_path / "csms-root.pem"
    ca_copy.write_bytes(Path(pki.ca_file).read_bytes())
    async with tls_csms(pki) as csms:
        ca_copy.unlink()
        st = await make_station(csms, **{**profile2(pki), "ca_file": ca_copy})
        await eventually(lambda: any("TLS settings" in r.getMessage() and "unusable" in r.getMessage()
                                     for r in caplog.records), what="a clear log line about the TLS settings")
        assert not st.task.done() and not st.station.transport.connected     # running offline, not crashed
        assert not any(r.identity == ID for r in csms.received)
        ca_copy.write_bytes(Path(pki.ca_file).read_bytes())
        await csms.wait_for("BootNotification", identity=ID, timeout=15)
