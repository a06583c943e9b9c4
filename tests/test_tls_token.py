"""Security profile 3 with the station key in a token (issue #4): real mutual-TLS handshakes against the strict CSMS,
the private key generated in SoftHSM2 and, once more, in a software TPM (swtpm + tpm2-abrmd + tpm2-pkcs11, set up
by hsm/swtpm-setup.sh), used by OpenSSL through pkcs11-provider.

OpenSSL loads the provider from OPENSSL_CONF when ssl is first imported, which this pytest process did long ago: the
station runs as ``python -m secure_cp run --config ...`` in a subprocess (the real service command). Part 2 /
1.6 whitepaper: A00.FR.401/402 (the station authenticates with its certificate; TC_A_07_CS-style handshake).
Everything here is installed by ``bash .ci/bootstrap test`` (softhsm2, pkcs11-provider, swtpm, tpm2-abrmd,
libtpm2-pkcs11): a missing part is a failure, not a skip.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import load_der_x509_certificate, load_pem_x509_csr
from pkcs11 import Attribute

from helpers import eventually
from secure_cp.security import devpki, p11provider, tls
from secure_cp.security.keys.base import KeyBackendUnavailable
from secure_cp.security.keys.pkcs11_backend import Pkcs11Backend
from secure_cp.sim.csms import Csms
from softhsm import init_token

ID = "CP1"
KEY = "station-tls"
ROOT = Path(__file__).resolve().parent.parent
STORE_LOCK_ATTEMPTS = 40     # tpm2-pkcs11 opening its store while the station process writes it
TPM2_MODULES = ("/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so",
                "/usr/lib/aarch64-linux-gnu/pkcs11/libtpm2_pkcs11.so")


@dataclass
class Token:
    """A PKCS#11 token with the station key on it, and what a station process needs to use it."""
    module: str
    label: str
    pin: str
    env: dict[str, str]
    backend: Pkcs11Backend
    #: the module shows objects that another process made or destroyed only after C_Initialize (tpm2-pkcs11 reads
    #: its store then; SoftHSM2 reads its files at each search - and its C_Finalize would unload the OpenSSL
    #: providers of this process, where the CSMS runs)
    reads_store_at_init: bool = False

    def current(self) -> Pkcs11Backend:
        """The backend, seeing what the station process did to the token (reopened when the module needs it)."""
        if self.reads_store_at_init:
            self.backend.close()        # the last user in this process: C_Finalize (no pkcs11-provider here)
            for attempt in range(STORE_LOCK_ATTEMPTS):
                try:
                    self.backend = Pkcs11Backend(self.module, self.label, self.pin)
                    break
                except KeyBackendUnavailable:   # "database is locked": the station is writing the SQLite store
                    if attempt == STORE_LOCK_ATTEMPTS - 1:
                        raise
                    time.sleep(0.05)
        return self.backend


@pytest.fixture
def softhsm_token(tmp_path, monkeypatch):
    t = init_token(tmp_path / "hsm", monkeypatch)
    token = Token(t.module, t.label, t.pin, {"SOFTHSM2_CONF": str(t.conf)}, Pkcs11Backend(t.module, t.label, t.pin))
    yield token
    token.backend.close()


@pytest.fixture
def swtpm_token(tmp_path, monkeypatch):
    """hsm/swtpm-setup.sh in tmp_path: swtpm, tpm2-abrmd on a private bus, a tpm2-pkcs11 token; stopped after."""
    directory = tmp_path / "tpm"
    done = subprocess.run(["bash", str(ROOT / "hsm" / "swtpm-setup.sh"), str(directory), "secure-cp-tpm"],
                          capture_output=True, text=True, timeout=120)
    try:
        assert done.returncode == 0, f"hsm/swtpm-setup.sh failed (bash .ci/bootstrap installs swtpm, tpm2-abrmd, " \
                                     f"libtpm2-pkcs11-1):\n{done.stderr}"
        env = {"TPM2_PKCS11_TCTI": "tabrmd:bus_type=session", "TPM2_PKCS11_STORE": str(directory / "store"),
               "DBUS_SESSION_BUS_ADDRESS": f"unix:path={directory / 'dbus.sock'}"}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        module = next(m for m in TPM2_MODULES if os.path.exists(m))
        pin = (directory / "token.pin").read_text().strip()
        token = Token(module, "secure-cp-tpm", pin, env, Pkcs11Backend(module, "secure-cp-tpm", pin),
                      reads_store_at_init=True)
        yield token
        token.backend.close()
    finally:
        subprocess.run(["bash", str(ROOT / "hsm" / "swtpm-setup.sh"), str(directory), "--stop"], timeout=30)


@pytest.fixture
def pki(tmp_path) -> devpki.DevPki:
    return devpki.generate(tmp_path / "pki", identity=ID)


def token_station_files(tmp_path: Path, pki: devpki.DevPki, token: Token, *, pin: str | None = None,
                        protocol: str = "ocpp2.0.1") -> Path:
    """The key generated on the token (not extractable), its certificate from the dev CPO CA, a PIN file (0600) and
    a station.toml for profile 3 with ``key_label`` (``protocol``, CpoName = the dev CPO); returns its path."""
    token.backend.generate(KEY, "ec-p256")
    chain = devpki.station_certificate_for_key(tmp_path / "pki", "token-station", pki.cpo_ca, ID,
                                               token.backend.private_key(KEY))
    pin_file = tmp_path / "token.pin"
    fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write((pin or token.pin) + "\n")
    return write_station_toml(tmp_path, pki, chain, token, pin_file, protocol=protocol)


def write_station_toml(tmp_path: Path, pki: devpki.DevPki, chain: Path, token: Token, pin_file: Path,
                       url: str = "wss://127.0.0.1:1/ocpp", protocol: str = "ocpp2.0.1") -> Path:
    conf = tmp_path / "station.toml"
    conf.write_text("\n".join((
        "[station]", f'identity = "{ID}"', f'data_dir = "{tmp_path / "data"}"',
        "[csms]", f'url = "{url}"', f'protocols = ["{protocol}"]', "security_profile = 3",
        "reconnect_min = 0.2", "reconnect_max = 0.5",
        "[security]", f'ca_file = "{pki.ca_file}"', f'cert_file = "{chain}"', f'key_label = "{KEY}"',
        "[keys]", 'backend = "pkcs11"', f'module = "{token.module}"', f'token = "{token.label}"',
        f'pin_file = "{pin_file}"', "[ocpp]", f'CpoName = "{devpki.CPO_NAME}"', "")))
    return conf


def mutual_csms(pki: devpki.DevPki) -> Csms:
    """The strict CSMS on wss://127.0.0.1, profile 3: it requires a station certificate from the dev PKI."""
    ctx = tls.server_context(pki.server_cert, pki.server_key, client_ca=pki.ca_file, require_client_cert=True)
    return Csms(ssl_context=ctx)


class StationProcess:
    """``python -m secure_cp run --config CONF`` with the test's token environment; its log in a file."""

    def __init__(self, conf: Path, env: dict[str, str], url: str):
        text = conf.read_text().replace("wss://127.0.0.1:1/ocpp", url)
        conf.write_text(text)
        self.log = conf.with_name("station.log")
        self._log_file = self.log.open("wb")
        full_env = {**os.environ, **env}
        full_env.pop("OPENSSL_CONF", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "secure_cp", "run", "--config", str(conf),
                                      "--log-level", "INFO"], stdout=self._log_file, stderr=subprocess.STDOUT,
                                     env=full_env, cwd=ROOT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log_file.close()
        return self.proc.returncode


async def handshake_with_token_key(tmp_path: Path, pki: devpki.DevPki, token: Token) -> None:
    """A00.FR.401/402: the station boots over mutual TLS; the certificate the CSMS saw carries the token's public
    key (so the handshake signature came from the token); the private key is sensitive and not extractable."""
    conf = token_station_files(tmp_path, pki, token)
    attrs = token.backend.private_attributes(KEY, [Attribute.SENSITIVE, Attribute.EXTRACTABLE])
    assert attrs == {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}
    async with mutual_csms(pki) as csms:
        station = StationProcess(conf, token.env, csms.url)
        try:
            await csms.wait_for("BootNotification", identity=ID, timeout=30)
            ssl_obj = csms._session(ID).ws.transport.get_extra_info("ssl_object")
            peer = load_der_x509_certificate(ssl_obj.getpeercert(binary_form=True))
            assert peer.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo) \
                == token.backend.public_key_der(KEY)
            assert "Authorization" not in csms._session(ID).ws.request.headers
            assert csms.violations == []
        finally:
            rc = station.stop()
        assert rc == 0, station.text()
    key_file = tmp_path / "data" / "pkcs11" / f"{KEY}.uri.pem"
    assert key_file.read_bytes().startswith(b"-----BEGIN PKCS#11 PROVIDER URI-----")
    assert b"PRIVATE KEY" not in key_file.read_bytes()
    assert (tmp_path / "data" / "pkcs11" / "openssl.cnf").stat().st_mode & 0o077 == 0


async def test_a00_fr_401_402_profile_3_station_key_in_softhsm(tmp_path, pki, softhsm_token):
    await handshake_with_token_key(tmp_path, pki, softhsm_token)


async def test_a00_fr_401_402_profile_3_station_key_in_swtpm_via_tpm2_pkcs11(tmp_path, pki, swtpm_token):
    await handshake_with_token_key(tmp_path, pki, swtpm_token)


@pytest.mark.parametrize("token_fixture", ["softhsm_token", "swtpm_token"])
async def test_a00_fr_307_401_402_reconnects_sign_in_token_verify_csms_chain_in_software(tmp_path, pki, request,
                                                                                        token_fixture):
    """Three handshakes of one station process (boot, two reconnects after the CSMS closed the connection): each
    is signed by the token, and the CSMS chain (A00.FR.307/411) is verified by OpenSSL's default provider, never
    in the token. Before, OpenSSL's method cache handed certificate verification to pkcs11-provider from the
    second handshake on: SoftHSM2 verified in the token (a session object per CSMS key), tpm2-pkcs11 refused the
    session object and every reconnect failed with "certificate signature failure". The PKCS#11 calls are read
    from pkcs11-provider's debug log (PKCS11_PROVIDER_DEBUG: "Calling C_...")."""
    token = request.getfixturevalue(token_fixture)
    conf = token_station_files(tmp_path, pki, token)
    debug_log = tmp_path / "pkcs11-provider.log"
    async with mutual_csms(pki) as csms:
        station = StationProcess(conf, {**token.env, "PKCS11_PROVIDER_DEBUG": f"file:{debug_log}"}, csms.url)
        try:
            await csms.wait_for("BootNotification", identity=ID, timeout=30)
            for _ in range(2):
                await csms.disconnect(ID)
                assert await csms.wait_connected(ID, timeout=30) == "ocpp2.0.1", station.text()
            assert csms.client_certificates[ID] is not None and csms.violations == []
        finally:
            rc = station.stop()
        assert rc == 0, station.text()
    assert "certificate signature failure" not in station.text()
    calls = debug_log.read_text(errors="replace")
    assert calls.count("Calling C_SignInit") >= 3                # every handshake signed with the token key
    assert "Calling C_VerifyInit" not in calls and "Calling C_CreateObject" not in calls


async def trigger_sign(csms: Csms, protocol: str) -> dict:
    """2.0.1 TriggerMessage SignChargingStationCertificate (A02), 1.6 ExtendedTriggerMessage
    SignChargePointCertificate (whitepaper A02)."""
    if protocol == "ocpp1.6":
        return await csms.call(ID, "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"})
    return await csms.call(ID, "TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})


def station_labels(token: Token) -> set[str]:
    """The key labels on the token (seen from this process, through a new session of its own)."""
    return {k.label for k in token.current().list_keys()}


async def renew_on_token(csms: Csms, station: StationProcess, token: Token, protocol: str) -> tuple[str, bytes]:
    """One A02 round: trigger, SignCertificate with a CSR made on the token, CertificateSigned Accepted, the station
    reconnects over mutual TLS with the new certificate. Returns the new key's label and the new certificate (DER)."""
    before = csms.client_certificates[ID]
    labels = station_labels(token)
    n_received, n_responses = len(csms.received), len(csms.responses)
    assert await trigger_sign(csms, protocol) == {"status": "Accepted"}
    req = await csms.wait_for("SignCertificate", identity=ID, after=n_received, timeout=30)
    csr = load_pem_x509_csr(req.payload["csr"].encode())
    assert csr.is_signature_valid
    await eventually(lambda: any(r.action == "CertificateSigned" for r in csms.responses[n_responses:]),
                     timeout=30, what="CertificateSigned answered")
    answer = next(r.payload for r in csms.responses[n_responses:] if r.action == "CertificateSigned")
    assert answer == {"status": "Accepted"}, station.text()
    await eventually(lambda: csms.client_certificates.get(ID) not in (None, before), timeout=30,
                     what="reconnected with the new certificate")
    new_cert = csms.client_certificates[ID]
    assert new_cert is not None
    spki = load_der_x509_certificate(new_cert).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert spki == csr.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    (label,) = station_labels(token) - labels                   # A02.FR.02: one new key pair, on the token
    assert token.backend.public_key_der(label) == spki          # ... and the CSMS saw its public key
    assert token.backend.private_attributes(label, [Attribute.SENSITIVE, Attribute.EXTRACTABLE]) == \
        {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}   # A02.FR.05: it never leaves the token
    assert load_der_x509_certificate(new_cert).issuer == load_der_x509_certificate(before).issuer
    return label, new_cert


async def a02_with_token_key(tmp_path: Path, pki: devpki.DevPki, token: Token, protocol: str) -> None:
    """A02 (TC_A_11_CS; 1.6 whitepaper A02) in the real station process, its TLS key in the token through
    pkcs11-provider while python-pkcs11 makes the new keys in the same token, same process (one PKCS#11 module
    loaded by both). Two renewals: the second one's previous certificate is a signed one, whose key is deleted from
    the token once the new certificate has connected (A02.FR.10); the configured key ([security] key_label) stays."""
    conf = token_station_files(tmp_path, pki, token, protocol=protocol)
    async with mutual_csms(pki) as csms:
        csms.certificate_signer = lambda csr, _type: devpki.sign_csr(pki.cpo_ca, csr)
        station = StationProcess(conf, token.env, csms.url)
        try:
            await csms.wait_for("BootNotification", identity=ID, timeout=30)
            configured = csms.client_certificates[ID]
            first, _ = await renew_on_token(csms, station, token, protocol)
            assert station_labels(token) == {KEY, first}
            second, cert = await renew_on_token(csms, station, token, protocol)
            await eventually(lambda: first not in station_labels(token), timeout=30,
                             what="A02.FR.10: the previous key deleted")
            assert station_labels(token) == {KEY, second}
            assert cert != configured and csms.client_certificates[ID] == cert
            assert csms.violations == []
        finally:
            rc = station.stop()
        assert rc == 0, station.text()
    assert "already initialized" not in station.text().lower()
    assert (tmp_path / "data" / "station-certs" / f"{second}.uri.pem").read_bytes().startswith(
        b"-----BEGIN PKCS#11 PROVIDER URI-----")


@pytest.mark.parametrize("protocol", ["ocpp2.0.1", "ocpp1.6"])
async def test_tc_a_11_a02_fr_02_05_08_10_new_key_on_softhsm_used_for_profile_3(tmp_path, pki, softhsm_token,
                                                                                 protocol):
    await a02_with_token_key(tmp_path, pki, softhsm_token, protocol)


@pytest.mark.parametrize("protocol", ["ocpp2.0.1", "ocpp1.6"])
async def test_tc_a_11_a02_fr_02_05_08_10_new_key_in_swtpm_via_tpm2_pkcs11_used_for_profile_3(tmp_path, pki,
                                                                                              swtpm_token, protocol):
    await a02_with_token_key(tmp_path, pki, swtpm_token, protocol)


def test_swtpm_key_backend_generates_signs_and_key_ref(swtpm_token):
    """The PKCS#11 backend against tpm2-pkcs11: an ECDSA P-256 key generated in the TPM signs; the signature
    verifies with cryptography; key_ref names token, object and CKA_ID for OpenSSL."""
    b = swtpm_token.backend
    b.generate("tpm-key", "ec-p256")
    data = b"OCPP over a TPM"
    sig = b.sign_digest("tpm-key", hashlib.sha256(data).digest(), hashes.SHA256())
    public = b.public_key("tpm-key")
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    public.verify(sig, data, ec.ECDSA(hashes.SHA256()))
    assert b.private_attributes("tpm-key", [Attribute.SENSITIVE, Attribute.EXTRACTABLE]) == \
        {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}
    ref = b.key_ref("tpm-key")
    assert ref.module == swtpm_token.module
    assert ref.uri.startswith("pkcs11:token=secure-cp-tpm;object=tpm-key;id=%") and ref.uri.endswith(";type=private")


async def test_wrong_pin_clear_error_no_connection_station_keeps_running(tmp_path, pki, softhsm_token):
    """A PIN the token refuses: each connection attempt fails with a message that says so (no interactive prompt),
    the CSMS never sees a connection, and the station process keeps running (and stops cleanly)."""
    conf = token_station_files(tmp_path, pki, softhsm_token, pin="999999")
    async with mutual_csms(pki) as csms:
        station = StationProcess(conf, softhsm_token.env, csms.url)
        try:
            await eventually(lambda: station.text().count("refused the configured PIN") >= 2, timeout=30,
                             what="two failed attempts")
            await asyncio.sleep(0.3)
            assert station.proc.poll() is None, station.text()
            assert csms.connected == {} and csms.received == []
        finally:
            rc = station.stop()
        assert rc == 0, station.text()


def test_pkcs11_credential_without_provider_is_a_clear_error(tmp_path, pki, softhsm_token):
    """In a process whose OpenSSL has no pkcs11 provider (this one), the credential says so instead of failing
    with OpenSSL's 'PEM lib'."""
    softhsm_token.backend.generate(KEY, "ec-p256")
    chain = devpki.station_certificate_for_key(tmp_path, "st", pki.cpo_ca, ID, softhsm_token.backend.private_key(KEY))
    cred = tls.Pkcs11Credential(chain, KEY, softhsm_token.label, Path(softhsm_token.module), tmp_path / "p11")
    with pytest.raises(tls.TlsConfigError, match="pkcs11-provider is not loaded"):
        tls.client_context(3, pki.ca_file, cred)
    renewed = cred.for_key(tmp_path / "new-chain.pem", "station-tls-2")
    assert renewed.key_label == "station-tls-2" and renewed.token == cred.token and renewed.module == cred.module
    assert renewed.uri == "pkcs11:token=secure-cp-test;object=station-tls-2;type=private"


def test_uri_pem_is_the_provider_format():
    """The key file: PEM 'PKCS#11 PROVIDER URI' around SEQUENCE { VisibleString, UTF8String uri }."""
    import base64
    pem = p11provider.uri_pem("pkcs11:token=t;object=k;type=private").decode()
    lines = pem.strip().splitlines()
    assert lines[0] == "-----BEGIN PKCS#11 PROVIDER URI-----" and lines[-1] == "-----END PKCS#11 PROVIDER URI-----"
    der = base64.b64decode("".join(lines[1:-1]))
    assert der[0] == 0x30 and der[2] == 0x1A and b"PKCS#11 Provider URI v1.0" in der
    uri = b"pkcs11:token=t;object=k;type=private"
    assert der.endswith(bytes([0x0C, len(uri)]) + uri)
    with pytest.raises(ValueError):
        p11provider.uri_pem("file:/etc/passwd")
