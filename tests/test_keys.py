"""Key backends (issue #4, "Keys"): a real SoftHSM2 token initialised in tmp_path through the PKCS#11 backend
(python-pkcs11), and the software backend (PEM files, development only).

Checked: keys generated on the token sign digests with CKM_ECDSA (DER-encoded here) and RSA PKCS#1 v1.5 that
``cryptography`` verifies; the private key is sensitive and not extractable (attributes, and an export attempt on the
token fails); a CSR built with ``cryptography``'s builder and the backend-signing key wrapper verifies; delete; a
wrong PIN is a clear error; concurrent signing from threads is serialized on the one token session; asyncio signing
runs off the event loop; the software backend's file modes; the [keys] configuration section.
"""
from __future__ import annotations

import asyncio
import logging
import stat
import threading

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute

from secure_cp.config import ConfigError, parse
from secure_cp.security.keys import (BackendECPrivateKey, KeyAlgorithm, KeyAuthError, KeyBackendError,
                                     KeyBackendUnavailable, KeyExistsError, KeyNotFoundError, SoftwareBackend,
                                     open_backend, parse_keys_section, sign_data)
from secure_cp.security.keys.config import KeysConfigError
from secure_cp.security.keys.pkcs11_backend import Pkcs11Backend
from secure_cp.security.keys.wrapper import digest_of
from softhsm import init_token


@pytest.fixture
def token(tmp_path, monkeypatch):
    return init_token(tmp_path / "hsm", monkeypatch)


@pytest.fixture
def hsm(token):
    backend = Pkcs11Backend(token.module, token.label, token.pin)
    yield backend
    backend.close()


def verify(public_key, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm) -> None:
    """Verify with cryptography (raises InvalidSignature)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(algorithm))
    else:
        public_key.verify(signature, data, padding.PKCS1v15(), algorithm)


def csr_for(key) -> x509.CertificateSigningRequest:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CP1"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ExampleCPO")])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())


def check_generate_sign_verify(backend, algorithm: KeyAlgorithm, hash_alg: hashes.HashAlgorithm, name: str) -> None:
    """Shared by the token backends (PKCS#11 here, TPM 2.0 in test_keys_tpm2.py): a generated key has the asked
    algorithm and size, signs a digest that ``cryptography`` verifies (and only over that data), and is listed."""
    info = backend.generate("station", algorithm)
    assert (info.label, info.algorithm, info.backend) == ("station", algorithm, name)
    public = backend.public_key("station")
    assert isinstance(public, ec.EllipticCurvePublicKey if algorithm.is_ec else rsa.RSAPublicKey)
    assert public.key_size == algorithm.key_size
    data = b"OCPP security event log line"
    digest, _ = digest_of(data, hash_alg)
    signature = backend.sign_digest("station", digest, hash_alg)
    verify(public, signature, data, hash_alg)      # DER ECDSA / PKCS#1 v1.5 that cryptography accepts
    with pytest.raises(InvalidSignature):           # and not over other data
        verify(public, signature, data + b"!", hash_alg)
    assert backend.list_keys() == [info]
    assert backend.info("station") == info


def check_digest_is_checked(backend) -> None:
    """A message instead of its digest, and a hash other than SHA-2, are refused with a clear error."""
    backend.generate("station", KeyAlgorithm.EC_P256)
    with pytest.raises(KeyBackendError, match="pass the hash, not the message"):
        backend.sign_digest("station", b"a message, not a digest", hashes.SHA256())
    with pytest.raises(KeyBackendError, match="only SHA-256, SHA-384 and SHA-512"):
        backend.sign_digest("station", bytes(20), hashes.SHA1())


def run_threads(worker, count: int) -> None:
    """``worker(n)`` for n in 0..count-1, each in its own thread, all started before any is joined."""
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# PKCS#11 (SoftHSM2)

@pytest.mark.parametrize("algorithm, hash_alg", [(KeyAlgorithm.EC_P256, hashes.SHA256()),
                                                 (KeyAlgorithm.EC_P384, hashes.SHA384()),
                                                 (KeyAlgorithm.RSA_2048, hashes.SHA256())])
def test_pkcs11_generate_sign_verify(hsm, algorithm, hash_alg):
    check_generate_sign_verify(hsm, algorithm, hash_alg, "pkcs11")


def test_pkcs11_digest_length_checked(hsm):
    check_digest_is_checked(hsm)


def test_pkcs11_key_is_sensitive_and_not_extractable(hsm):
    hsm.generate("station", KeyAlgorithm.EC_P256)
    attrs = hsm.private_attributes("station", [Attribute.TOKEN, Attribute.PRIVATE, Attribute.SENSITIVE,
                                               Attribute.EXTRACTABLE, Attribute.ALWAYS_SENSITIVE,
                                               Attribute.NEVER_EXTRACTABLE, Attribute.DERIVE, Attribute.DECRYPT])
    assert attrs == {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                     Attribute.EXTRACTABLE: False, Attribute.ALWAYS_SENSITIVE: True, Attribute.NEVER_EXTRACTABLE: True,
                     Attribute.DERIVE: False, Attribute.DECRYPT: False}
    # An export attempt on the token: reading the private value (CKA_VALUE) is refused by the token.
    with pytest.raises(KeyBackendError, match="AttributeSensitive"):
        hsm.private_attributes("station", [Attribute.VALUE])
    # ... and the cryptography wrapper has nothing to export either.
    key = hsm.private_key("station")
    with pytest.raises(KeyBackendError, match="not exportable"):
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(KeyBackendError, match="not exportable"):
        key.private_numbers()


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.EC_P256, KeyAlgorithm.EC_P384])
def test_pkcs11_csr_signed_in_token(hsm, algorithm):
    """A02/A03: the CSR for SignCertificate is built with cryptography's builder while the key stays in the token."""
    hsm.generate("station", algorithm)
    key = hsm.private_key("station")
    assert isinstance(key, BackendECPrivateKey) and isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == algorithm.curve.name
    csr = csr_for(key)
    assert csr.is_signature_valid
    assert csr.public_key() == hsm.public_key("station")
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP1"
    # The PEM round trip a SignCertificate request carries.
    again = x509.load_pem_x509_csr(csr.public_bytes(serialization.Encoding.PEM))
    assert again.is_signature_valid


def test_pkcs11_keys_persist_on_token_and_delete(hsm, token):
    hsm.generate("station", KeyAlgorithm.EC_P256)
    hsm.generate("v2g", KeyAlgorithm.EC_P256)
    with pytest.raises(KeyExistsError, match="'station' already exists"):
        hsm.generate("station", KeyAlgorithm.EC_P384)
    before = hsm.public_key_der("station")
    ref = hsm.key_ref("station")
    assert ref.backend == "pkcs11" and ref.module == token.module
    assert ref.uri.startswith(f"pkcs11:token={token.label};object=station;id=%") and ref.uri.endswith(";type=private")
    assert len(ref.uri.split(";id=")[1].split(";")[0]) == 16 * 3    # CKA_ID: 16 bytes, %-escaped
    hsm.close()
    with Pkcs11Backend(token.module, token.label, token.pin) as again:   # a new session (and C_Initialize)
        assert [k.label for k in again.list_keys()] == ["station", "v2g"]
        assert again.public_key_der("station") == before
        again.delete("station")
        assert [k.label for k in again.list_keys()] == ["v2g"]
        with pytest.raises(KeyNotFoundError, match="no key 'station'"):
            again.sign_digest("station", bytes(32), hashes.SHA256())
        with pytest.raises(KeyNotFoundError):
            again.delete("station")
        with pytest.raises(KeyNotFoundError):
            again.key_ref("station")
        again.generate("station", KeyAlgorithm.EC_P256)          # the label is free again, a new key
        assert again.public_key_der("station") != before


def test_pkcs11_list_keys_while_another_session_destroys_one(hsm, token, monkeypatch):
    """A key destroyed by another session (the station deleting its previous key, A02.FR.10) between the object
    search and the attribute reads is left out of the list, not an error (it was CKR_OBJECT_HANDLE_INVALID)."""
    for label in ("a", "b", "c"):
        hsm.generate(label, KeyAlgorithm.EC_P256)
    read = hsm._spki
    destroyed: list[str] = []
    # A second session of this process (logged in already: PKCS#11 login is per application).
    with hsm._lib.get_token(token_label=token.label).open(rw=True) as other:
        def spki_then_destroy(obj):
            if not destroyed:                 # after the first object's read, the others' handles are known
                destroyed.extend(label for label in ("a", "b", "c") if label != obj.label)
                for found in other.get_objects({Attribute.LABEL: destroyed[0]}):
                    found.destroy()
            return read(obj)
        monkeypatch.setattr(hsm, "_spki", spki_then_destroy)
        listed = [k.label for k in hsm.list_keys()]
    assert destroyed and destroyed[0] not in listed
    assert listed == sorted({"a", "b", "c"} - {destroyed[0]})


# python-pkcs11 finalises the failed object search on the dead session in __del__ and reports that as unraisable.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_pkcs11_session_lost_is_reopened(hsm):
    """A session the token dropped (C_CloseSession from elsewhere, token restart) is reopened once, logged in again."""
    hsm.generate("station", KeyAlgorithm.EC_P256)
    hsm._session.close()                      # the token forgets the session behind the backend's back
    signature = hsm.sign_digest("station", bytes(32), hashes.SHA256())
    hsm.public_key("station").verify(signature, bytes(32), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    hsm.close()
    with pytest.raises(KeyBackendUnavailable, match="backend closed"):
        hsm.list_keys()


def test_pkcs11_wrong_pin_is_a_clear_error(token):
    with pytest.raises(KeyAuthError, match=rf"token '{token.label}'.*user PIN was rejected"):
        Pkcs11Backend(token.module, token.label, "0000")
    with Pkcs11Backend(token.module, token.label, token.pin) as backend:   # the right PIN still works
        backend.generate("station", KeyAlgorithm.EC_P256)
        assert [k.label for k in backend.list_keys()] == ["station"]


def test_pkcs11_unknown_token_and_module(token, tmp_path):
    with pytest.raises(KeyBackendUnavailable, match="'no-such-token'.*no such token"):
        Pkcs11Backend(token.module, "no-such-token", token.pin)
    with pytest.raises(KeyBackendUnavailable, match="no such file"):
        Pkcs11Backend(tmp_path / "missing.so", token.label, token.pin)


def test_pkcs11_concurrent_signing_is_serialized(hsm):
    """A PKCS#11 session is not thread-safe: signatures from many threads at once all come out valid."""
    hsm.generate("station", KeyAlgorithm.EC_P256)
    public = hsm.public_key("station")
    errors: list[BaseException] = []
    results: list[tuple[bytes, bytes]] = []
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        start.wait()
        try:
            for i in range(15):
                data = f"thread {n} message {i}".encode()
                results.append((data, hsm.private_key("station").sign(data, ec.ECDSA(hashes.SHA256()))))
        except BaseException as exc:     # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    run_threads(worker, 8)
    assert errors == []
    assert len(results) == 8 * 15
    for data, signature in results:
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))

    # While another thread holds the session, a signer waits for it.
    done = threading.Event()
    signer = threading.Thread(target=lambda: (hsm.sign_digest("station", bytes(32), hashes.SHA256()), done.set()))
    with hsm.session_lock:
        signer.start()
        signer.join(0.2)
        assert not done.is_set()
    signer.join()
    assert done.is_set()


async def test_sign_data_runs_off_the_event_loop(hsm):
    """Signing from asyncio code does not block the loop: while this (loop) thread holds the token session the
    signature cannot finish, yet the loop keeps running; once released it completes and verifies."""
    hsm.generate("station", KeyAlgorithm.EC_P256)
    hsm.session_lock.acquire()
    try:
        task = asyncio.create_task(sign_data(hsm, "station", b"payload"))
        ticks = 0
        for _ in range(10):
            await asyncio.sleep(0.01)
            ticks += 1
        assert not task.done() and ticks == 10
    finally:
        hsm.session_lock.release()
    signature = await task
    hsm.public_key("station").verify(signature, b"payload", ec.ECDSA(hashes.SHA256()))


# Software backend (development only)

def test_software_backend_files_are_private(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="secure_cp.security.keys.software")
    backend = SoftwareBackend(tmp_path / "keys")
    assert any("DEVELOPMENT ONLY" in r.getMessage() for r in caplog.records)
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    backend.generate("station", KeyAlgorithm.EC_P256)
    path = backend.path("station")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert backend.key_ref("station").uri == str(path)
    assert [p.name for p in (tmp_path / "keys").iterdir()] == ["station.key.pem"]   # no temporary file left
    csr = csr_for(backend.private_key("station"))
    assert csr.is_signature_valid
    with pytest.raises(KeyExistsError):
        backend.generate("station", KeyAlgorithm.EC_P384)
    assert backend.list_keys()[0].algorithm is KeyAlgorithm.EC_P256     # not overwritten
    path.chmod(0o644)
    with pytest.raises(KeyBackendError, match="accessible by group/others.*chmod 600"):
        backend.sign_digest("station", bytes(32), hashes.SHA256())
    path.chmod(0o600)
    backend.delete("station")
    assert backend.list_keys() == []
    with pytest.raises(KeyBackendError, match="key label"):
        backend.generate("../escape", KeyAlgorithm.EC_P256)


def test_software_backend_rsa_and_p384(tmp_path):
    backend = SoftwareBackend(tmp_path / "keys")
    for label, algorithm, hash_alg in (("tls", KeyAlgorithm.RSA_2048, hashes.SHA256()),
                                       ("v2g", KeyAlgorithm.EC_P384, hashes.SHA384())):
        backend.generate(label, algorithm)
        digest, _ = digest_of(b"data", hash_alg)
        verify(backend.public_key(label), backend.sign_digest(label, digest, hash_alg), b"data", hash_alg)
    assert [(k.label, k.algorithm) for k in backend.list_keys()] == [("tls", KeyAlgorithm.RSA_2048),
                                                                    ("v2g", KeyAlgorithm.EC_P384)]


# [keys] configuration

def test_keys_config_opens_the_configured_backend(token, tmp_path):
    pin_file = tmp_path / "token.pin"
    pin_file.write_text(token.pin + "\n")
    pin_file.chmod(0o600)
    cfg = parse_keys_section({"backend": "pkcs11", "module": token.module, "token": token.label,
                              "pin_file": "token.pin", "algorithm": "ec-p384"}, base_dir=tmp_path)
    assert cfg.pin_file == pin_file and cfg.algorithm is KeyAlgorithm.EC_P384
    with open_backend(cfg) as backend:
        assert isinstance(backend, Pkcs11Backend)
        backend.generate("station", cfg.algorithm)
    pin_file.chmod(0o644)
    with pytest.raises(KeysConfigError, match="keys.pin_file: .*chmod 600"):
        open_backend(cfg)
    soft = parse_keys_section({}, base_dir=tmp_path, data_dir=tmp_path / "data")
    assert soft.backend == "software" and soft.dir == tmp_path / "data" / "keys"


@pytest.mark.parametrize("section, message", [
    ({"backend": "tpm"}, "keys.backend: one of software, pkcs11, tpm2"),
    ({"algorithm": "ec-p521"}, "keys.algorithm: one of"),
    ({"backend": "pkcs11", "pin": "1"}, "keys.token: required"),
    ({"backend": "pkcs11", "token": "t"}, "keys.pin_file: .*exactly one of pin_file and pin"),
    ({"colour": "red"}, "keys.colour: unknown key"),
])
def test_keys_config_errors_name_the_key(section, message):
    with pytest.raises(ConfigError, match=message):
        parse({"station": {"identity": "CP1"}, "keys": section})


def test_station_config_keys_default_to_software_in_data_dir(tmp_path):
    cfg = parse({"station": {"identity": "CP1", "data_dir": "data"}}, base_dir=tmp_path)
    assert cfg.keys.backend == "software" and cfg.keys.dir == tmp_path / "data" / "keys"
