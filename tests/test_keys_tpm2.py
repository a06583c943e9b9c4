"""The TPM 2.0 key backend through tpm2-pytss (issue #4, "TPM 2.0 directly"), against a real swtpm started in tmp_path
and reached with the direct ``swtpm:`` TCTI (no resource manager: the backend flushes every object it loads).

Checked: keys created by the TPM under a persistent primary (created on first use) sign digests with TPM2_Sign
(ECDSA with the digest's hash, DER-encoded here; RSASSA PKCS#1 v1.5) that ``cryptography`` verifies; blobs are
0600 files that hold only the TPM-wrapped private part and survive a backend reopen (the primary stays persistent);
delete, unknown and taken labels, a damaged blob; a CSR built with the backend-signing key wrapper; OCMF records
signed through BackendSigner verify with pyocmf; key_ref refuses TLS with a clear message; the [keys] section.
tpm2-pytss and swtpm are installed by ``bash .ci/bootstrap test``: a missing part is a failure, not a skip.
"""
from __future__ import annotations

import stat

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from secure_cp.config import ConfigError, parse
from secure_cp.eichrecht.legallog import LegalLog
from secure_cp.eichrecht.ocmf import BackendSigner, OcmfRecord
from secure_cp.security.keys import (BackendECPrivateKey, KeyAlgorithm, KeyBackendError, KeyBackendUnavailable,
                                     KeyExistsError, KeyNotFoundError, open_backend, parse_keys_section)
from secure_cp.security.keys.config import KeysConfigError
from secure_cp.security.keys.tpm2_backend import DEFAULT_PARENT, Tpm2Backend
from secure_cp.security.keys.wrapper import digest_of
from secure_cp.store import Database
from swtpm import start_swtpm
from test_keys import check_digest_is_checked, check_generate_sign_verify, csr_for, run_threads, verify
from test_ocmf import gateway_transaction, pyocmf_ok


@pytest.fixture
def swtpm(tmp_path):
    tpm = start_swtpm(tmp_path / "swtpm")
    yield tpm
    tpm.stop()


@pytest.fixture
def tpm(swtpm, tmp_path):
    backend = Tpm2Backend(tmp_path / "tpm2-keys", swtpm.tcti)
    yield backend
    backend.close()


@pytest.mark.parametrize("algorithm, hash_alg", [(KeyAlgorithm.EC_P256, hashes.SHA256()),
                                                 (KeyAlgorithm.EC_P256, hashes.SHA384()),
                                                 (KeyAlgorithm.EC_P384, hashes.SHA384()),
                                                 (KeyAlgorithm.RSA_2048, hashes.SHA256())])
def test_tpm2_generate_sign_verify(tpm, algorithm, hash_alg):
    check_generate_sign_verify(tpm, algorithm, hash_alg, "tpm2")


def test_tpm2_digest_length_and_hash_checked(tpm):
    check_digest_is_checked(tpm)


def test_tpm2_blob_is_private_and_holds_no_plain_key(tpm, tmp_path):
    tpm.generate("station", KeyAlgorithm.EC_P256)
    blob = tpm.path("station")
    assert blob == tmp_path / "tpm2-keys" / "station.tpm2"
    assert stat.S_IMODE(blob.stat().st_mode) == 0o600
    assert stat.S_IMODE(blob.parent.stat().st_mode) == 0o700
    assert b"PRIVATE KEY" not in blob.read_bytes()
    key = tpm.private_key("station")
    with pytest.raises(KeyBackendError, match="not exportable"):
        key.private_numbers()


def test_tpm2_keys_persist_across_reopen_and_delete(swtpm, tmp_path):
    directory = tmp_path / "tpm2-keys"
    with Tpm2Backend(directory, swtpm.tcti) as first:
        first.generate("ocmf", KeyAlgorithm.EC_P256)
        first.generate("station", KeyAlgorithm.EC_P384)
        spki = first.public_key_der("ocmf")
    with Tpm2Backend(directory, swtpm.tcti) as second:      # the primary is persistent: the blobs load again
        assert [k.label for k in second.list_keys()] == ["ocmf", "station"]
        assert second.public_key_der("ocmf") == spki
        digest, _ = digest_of(b"after reopen", hashes.SHA256())
        verify(second.public_key("ocmf"), second.sign_digest("ocmf", digest, hashes.SHA256()), b"after reopen",
               hashes.SHA256())
        second.delete("ocmf")
        assert [k.label for k in second.list_keys()] == ["station"]
        with pytest.raises(KeyNotFoundError, match="no key 'ocmf'"):
            second.sign_digest("ocmf", digest, hashes.SHA256())
        with pytest.raises(KeyNotFoundError):
            second.delete("ocmf")


def test_tpm2_wrong_label_taken_label_and_damaged_blob(tpm):
    digest, _ = digest_of(b"x", hashes.SHA256())
    with pytest.raises(KeyNotFoundError, match="no key 'absent'"):
        tpm.sign_digest("absent", digest, hashes.SHA256())
    with pytest.raises(KeyNotFoundError):
        tpm.public_key_der("absent")
    with pytest.raises(KeyBackendError, match="key label"):
        tpm.generate("../escape", KeyAlgorithm.EC_P256)
    tpm.generate("station", KeyAlgorithm.EC_P256)
    spki = tpm.public_key_der("station")
    with pytest.raises(KeyExistsError, match="already exists"):
        tpm.generate("station", KeyAlgorithm.EC_P384)
    assert tpm.public_key_der("station") == spki           # never overwritten
    tpm.path("broken").write_bytes(b"SCPTPM2\x01\x00\x10 not a public area")
    with pytest.raises(KeyBackendError, match="damaged"):
        tpm.sign_digest("broken", digest, hashes.SHA256())
    assert [k.label for k in tpm.list_keys()] == ["station"]     # the damaged blob is skipped, not fatal


def test_tpm2_key_ref_refuses_tls_with_the_way_to_do_it(tpm):
    tpm.generate("station-tls", KeyAlgorithm.EC_P256)
    with pytest.raises(KeyBackendError, match="cannot serve TLS.*tpm2-pkcs11.*pkcs11-provider"):
        tpm.key_ref("station-tls")


def test_tpm2_csr_signed_in_the_tpm(tpm):
    tpm.generate("station", KeyAlgorithm.EC_P256)
    key = tpm.private_key("station")
    assert isinstance(key, BackendECPrivateKey)
    csr = csr_for(key)
    assert csr.is_signature_valid
    assert csr.public_key() == tpm.public_key("station")


def test_tpm2_ocmf_records_verify_with_pyocmf(tpm, tmp_path):
    tpm.generate("ocmf", KeyAlgorithm.EC_P256)
    signer = BackendSigner(tpm, "ocmf")
    assert signer.signature_method == "ECDSA-secp256r1-SHA256"
    db = Database(tmp_path / "station.db")
    try:
        begin, end = gateway_transaction(LegalLog(db), signer)
    finally:
        db.close()
    pyocmf_ok(begin, end, signer.public_key_der())
    assert [OcmfRecord.parse(r).pg for r in (begin, end)] == ["T1", "T2"]


def test_tpm2_concurrent_signing_is_serialized(tpm):
    tpm.generate("station", KeyAlgorithm.EC_P256)
    public = tpm.public_key("station")
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(5):
                data = f"{n}/{i}".encode()
                digest, _ = digest_of(data, hashes.SHA256())
                public.verify(tpm.sign_digest("station", digest, hashes.SHA256()), digest,
                              ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        except BaseException as exc:        # collected: asserted below
            errors.append(exc)
    run_threads(worker, 4)
    assert errors == []


def test_tpm2_parent_handle_must_be_a_storage_key(swtpm, tmp_path):
    with Tpm2Backend(tmp_path / "a", swtpm.tcti, parent=DEFAULT_PARENT):
        pass
    with pytest.raises(KeyBackendError, match="not an owner persistent handle"):
        Tpm2Backend(tmp_path / "b", swtpm.tcti, parent=0x80000001)


def test_tpm2_unreachable_tpm_is_unavailable(tmp_path):
    with pytest.raises(KeyBackendUnavailable, match="TPM 2.0"):
        Tpm2Backend(tmp_path / "keys", "device:/nonexistent/tpmrm0")


def test_tpm2_keys_config_opens_the_backend(swtpm, tmp_path):
    cfg = parse_keys_section({"backend": "tpm2", "tcti": swtpm.tcti, "parent": "0x81000002"},
                             data_dir=tmp_path / "data")
    assert (cfg.dir, cfg.parent) == (tmp_path / "data" / "tpm2-keys", 0x81000002)
    with open_backend(cfg) as backend:
        assert isinstance(backend, Tpm2Backend)
        backend.generate("k", KeyAlgorithm.EC_P256)
        assert (tmp_path / "data" / "tpm2-keys" / "k.tpm2").exists()
    default = parse_keys_section({"backend": "tpm2"})
    assert (default.tcti, default.parent) == ("device:/dev/tpmrm0", 0x81000001)


@pytest.mark.parametrize("section, message", [
    ({"backend": "tpm2", "parent": "0x80000001"}, "keys.parent"),
    ({"backend": "tpm2", "parent": "srk"}, "keys.parent"),
    ({"backend": "tpm2", "tcti": ""}, "keys.tcti"),
    ({"backend": "tpm3"}, "keys.backend"),
])
def test_tpm2_keys_config_errors_name_the_key(section, message):
    with pytest.raises(KeysConfigError, match=message):
        parse_keys_section(section)


def test_tpm2_key_label_for_tls_is_a_config_error(tmp_path):
    (tmp_path / "ca.pem").write_text("")
    data = {"station": {"identity": "CP1", "data_dir": "d"},
            "csms": {"url": "wss://localhost/ocpp", "security_profile": 3},
            "keys": {"backend": "tpm2"},
            "security": {"ca_file": "ca.pem", "cert_file": "cert.pem", "key_label": "station-tls"}}
    with pytest.raises(ConfigError, match="security.key_label: the \\[keys\\] backend 'tpm2' cannot serve TLS"):
        parse(data, tmp_path)
