"""``secure-cp keys ...`` / ``secure-cp certs ...`` (issue #4 "Tooling around it") and the one-command development
PKI (certs/make-dev-pki.sh).

The commands run in-process through ``secure_cp.cli.main`` (and once as a subprocess, to see what an operator
sees) against a software key directory, a real SoftHSM2 token, and the station's real certificate store (SQLite +
PEM files in tmp_path). Bad input must give one clear line on stderr and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from secure_cp.cli import main
from secure_cp.security import devpki
from secure_cp.security.certstore import hash_data
from secure_cp.store import Database
from softhsm import init_token

ROOT = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, keys: str = "") -> Path:
    path = tmp_path / "station.toml"
    path.write_text(f'[station]\nidentity = "CP-0042"\ndata_dir = "data"\n{keys}')
    return path


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> devpki.DevPki:
    return devpki.generate(tmp_path_factory.mktemp("pki"), identity="CP-0042")


# ---- certs/ ---------------------------------------------------------------------------------------------------
def _verify_chain(leaf_file: Path, *issuers: x509.Certificate) -> x509.Certificate:
    """The leaf of ``leaf_file`` checked link by link up to the last of ``issuers`` (its root)."""
    cert = x509.load_pem_x509_certificates(leaf_file.read_bytes())[0]
    for issuer in issuers:
        cert.verify_directly_issued_by(issuer)
        cert = issuer
    assert issuers[-1].issuer == issuers[-1].subject     # ends in a self-signed root
    return x509.load_pem_x509_certificates(leaf_file.read_bytes())[0]


def test_make_dev_pki_script_makes_the_complete_pki(tmp_path):
    out = tmp_path / "pki"
    done = subprocess.run([str(ROOT / "certs" / "make-dev-pki.sh"), str(out), "--identity", "CP-9"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    load = lambda name: x509.load_pem_x509_certificate((out / name).read_bytes())   # noqa: E731
    root, cpo = load("csms-root.pem"), load("cpo-ca.pem")
    server = _verify_chain(out / "csms-server.pem", root)
    assert x509.DNSName("localhost") in server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    station = _verify_chain(out / "station-chain.pem", cpo, root)
    assert station.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP-9"
    _verify_chain(out / "firmware-signing.pem", load("manufacturer-root.pem"))
    for prefix in ("v2g", "mo"):
        sub1, sub2 = load(f"{prefix}-sub-ca1.pem"), load(f"{prefix}-sub-ca2.pem")
        _verify_chain(out / f"{prefix}-leaf.pem", sub2, sub1, load(f"{prefix}-root.pem"))
        chain = x509.load_pem_x509_certificates((out / f"{prefix}-leaf-chain.pem").read_bytes())
        assert [c.subject for c in chain[1:]] == [sub2.subject, sub1.subject]
        assert sub1.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1
    assert all((p.stat().st_mode & 0o077) == 0 for p in out.glob("*.key"))


def test_devpki_needs_exactly_one_output_directory(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        devpki.main([str(tmp_path / "a"), "--out", str(tmp_path / "b")])
    assert exc.value.code == 2 and "once" in capsys.readouterr().err


# ---- keys: software backend -------------------------------------------------------------------------------------
def test_keys_generate_list_csr_delete_software(tmp_path, capsys):
    cfg = str(_config(tmp_path))
    assert cli(capsys, "keys", "list", "--config", cfg)[1] == ""
    code, out, _ = cli(capsys, "keys", "generate", "station", "--algorithm", "ec-p384", "--config", cfg)
    assert code == 0 and "ec-p384" in out
    assert (tmp_path / "data" / "keys" / "station.key.pem").stat().st_mode & 0o077 == 0
    code, out, _ = cli(capsys, "keys", "list", "--config", cfg)
    assert (code, out.split()) == (0, ["station", "ec-p384", "software"])
    code, out, _ = cli(capsys, "keys", "csr", "station", "--o", "ACME CPO", "--config", cfg)
    csr = x509.load_pem_x509_csr(out.encode())
    assert code == 0 and csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=CP-0042,O=ACME CPO"       # A00.FR.511 / A00.FR.509
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA384)
    public = serialization.load_pem_private_key((tmp_path / "data/keys/station.key.pem").read_bytes(), None)
    assert csr.public_key() == public.public_key()
    assert cli(capsys, "keys", "delete", "station", "--config", cfg)[0] == 0
    assert cli(capsys, "keys", "list", "--config", cfg)[1] == ""


def test_keys_csr_to_file_with_explicit_cn(tmp_path, capsys):
    cfg = str(_config(tmp_path))
    cli(capsys, "keys", "generate", "k", "--config", cfg)
    target = tmp_path / "k.csr"
    code, out, _ = cli(capsys, "keys", "csr", "k", "--cn", "SN-77", "--out", str(target), "--config", cfg)
    assert code == 0 and str(target) in out
    csr = x509.load_pem_x509_csr(target.read_bytes())
    assert csr.subject.rfc4514_string() == "CN=SN-77"
    assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey) and csr.public_key().curve.name == "secp256r1"


@pytest.mark.parametrize("args, code, message", [
    (("keys", "generate", "bad label"), 2, "key label"),
    (("keys", "delete", "missing"), 1, "no file"),
    (("keys", "csr", "missing"), 1, "no file"),
])
def test_keys_bad_input_is_a_clear_error(tmp_path, capsys, args, code, message):
    got, out, err = cli(capsys, *args, "--config", str(_config(tmp_path)))
    assert (got, out) == (code, "")
    assert err.startswith("secure-cp: ") and message in err and "Traceback" not in err


def test_keys_generate_refuses_to_overwrite(tmp_path, capsys):
    cfg = str(_config(tmp_path))
    cli(capsys, "keys", "generate", "k", "--config", cfg)
    before = (tmp_path / "data/keys/k.key.pem").read_bytes()
    code, _, err = cli(capsys, "keys", "generate", "k", "--config", cfg)
    assert code == 1 and "already exists" in err
    assert (tmp_path / "data/keys/k.key.pem").read_bytes() == before


def test_keys_bad_config_and_unknown_algorithm(tmp_path, capsys):
    cfg = _config(tmp_path, '[keys]\nbackend = "tpm"\n')
    code, _, err = cli(capsys, "keys", "list", "--config", str(cfg))
    assert code == 2 and "keys.backend" in err
    with pytest.raises(SystemExit) as exc:
        main(["keys", "generate", "k", "--algorithm", "dsa", "--config", str(cfg)])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert cli(capsys, "keys", "list", "--config", str(tmp_path / "none.toml"))[0] == 2


def test_cli_error_without_traceback_as_a_process(tmp_path):
    done = subprocess.run([sys.executable, "-m", "secure_cp.cli", "keys", "delete", "nope", "--config",
                           str(_config(tmp_path))], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1
    assert "secure-cp: software key 'nope'" in done.stderr and "Traceback" not in done.stderr


# ---- keys: SoftHSM2 ---------------------------------------------------------------------------------------------
def _pkcs11_config(tmp_path: Path, token, pin: str) -> Path:
    return _config(tmp_path, f'[keys]\nbackend = "pkcs11"\nmodule = "{token.module}"\ntoken = "{token.label}"\n'
                             f'pin = "{pin}"\n')


def test_keys_on_softhsm_token(tmp_path, capsys, monkeypatch):
    token = init_token(tmp_path / "hsm", monkeypatch)
    cfg = str(_pkcs11_config(tmp_path, token, token.pin))
    code, out, _ = cli(capsys, "keys", "generate", "tls", "--config", cfg)
    assert code == 0 and "(pkcs11:token=secure-cp-test;object=tls;" in out and "type=private" in out
    cli(capsys, "keys", "generate", "rsa", "--algorithm", "rsa-2048", "--config", cfg)
    code, out, _ = cli(capsys, "keys", "list", "--config", cfg)
    assert out.splitlines() == ["rsa\trsa-2048\tpkcs11", "tls\tec-p256\tpkcs11"]
    code, out, _ = cli(capsys, "keys", "csr", "tls", "--o", "ACME", "--config", cfg)
    csr = x509.load_pem_x509_csr(out.encode())
    assert code == 0 and csr.is_signature_valid and csr.subject.rfc4514_string() == "CN=CP-0042,O=ACME"
    assert cli(capsys, "keys", "delete", "rsa", "--config", cfg)[0] == 0
    assert cli(capsys, "keys", "list", "--config", cfg)[1].split() == ["tls", "ec-p256", "pkcs11"]


def test_keys_wrong_pin_is_a_clear_error(tmp_path, capsys, monkeypatch):
    token = init_token(tmp_path / "hsm", monkeypatch)
    code, out, err = cli(capsys, "keys", "list", "--config", str(_pkcs11_config(tmp_path, token, "9999")))
    assert code == 1 and out == ""
    assert err.startswith("secure-cp: ") and "PIN" in err and "Traceback" not in err


# ---- certs -------------------------------------------------------------------------------------------------------
def test_certs_install_list_show_delete(tmp_path, capsys, pki):
    cfg = str(_config(tmp_path))
    code, out, _ = cli(capsys, "certs", "install", "CentralSystemRootCertificate", str(pki.ca_file), "--config", cfg)
    assert code == 0 and "installed" in out
    assert pki.v2g is not None and pki.manufacturer_root is not None
    assert cli(capsys, "certs", "install", "V2GRootCertificate", str(pki.v2g.root.cert_file), "--config", cfg)[0] == 0
    code, out, _ = cli(capsys, "certs", "list", "--config", cfg)
    rows = [line.split("\t") for line in out.splitlines()]
    assert [r[0] for r in rows] == ["CSMSRootCertificate", "V2GRootCertificate"]
    h = hash_data(pki.root.cert, pki.root.cert)                   # RFC 6960 CertID of a self-signed root
    expected = f"SHA256:{h['issuerNameHash']}:{h['issuerKeyHash']}:{h['serialNumber']}"
    assert rows[0][3] == expected
    code, out, _ = cli(capsys, "certs", "show", "--hash", expected, "--config", cfg)
    assert code == 0 and x509.load_pem_x509_certificate(out.encode()) == pki.root.cert
    code, out, _ = cli(capsys, "certs", "show", "--config", cfg)
    assert code == 0 and "2 of at most 20 certificates" in out
    code, out, _ = cli(capsys, "certs", "delete", "--hash", expected, "--config", cfg)
    assert code == 0
    assert [line.split("\t")[0] for line in cli(capsys, "certs", "list", "--config", cfg)[1].splitlines()] \
        == ["V2GRootCertificate"]
    code, _, err = cli(capsys, "certs", "delete", "--hash", expected, "--config", cfg)
    assert code == 1 and "no installed certificate" in err


def test_certs_install_refusals_keep_the_store_intact(tmp_path, capsys, pki):
    """M05 rules through the CLI: a leaf (not a CA) and a non-PEM file are refused; nothing is installed."""
    cfg = str(_config(tmp_path))
    code, _, err = cli(capsys, "certs", "install", "CSMSRootCertificate", str(pki.station_cert), "--config", cfg)
    assert code == 1 and "not a CA certificate" in err
    der = tmp_path / "root.der"
    der.write_bytes(pki.root.cert.public_bytes(serialization.Encoding.DER))
    code, _, err = cli(capsys, "certs", "install", "CSMSRootCertificate", str(der), "--config", cfg)
    assert code == 2 and "not a PEM file" in err
    code, _, err = cli(capsys, "certs", "install", "MORootCertificate", str(tmp_path / "none.pem"), "--config", cfg)
    assert code == 2 and "cannot read" in err
    assert cli(capsys, "certs", "list", "--config", cfg)[1] == ""


@pytest.mark.parametrize("bad", ["abc", "MD5:aa:bb:01", "SHA256:zz:bb:01", "SHA256::bb:01"])
def test_certs_delete_bad_hash_id(tmp_path, capsys, pki, bad):
    cfg = str(_config(tmp_path))
    cli(capsys, "certs", "install", "CSMSRootCertificate", str(pki.ca_file), "--config", cfg)
    code, _, err = cli(capsys, "certs", "delete", "--hash", bad, "--config", cfg)
    assert code == 2 and ("ALG:issuerNameHash" in err or "hexadecimal" in err)
    assert len(cli(capsys, "certs", "list", "--config", cfg)[1].splitlines()) == 1


def test_certs_without_store_and_with_running_station(tmp_path, capsys, pki):
    cfg = str(_config(tmp_path))
    code, _, err = cli(capsys, "certs", "list", "--config", cfg)
    assert code == 2 and "no station store" in err
    assert not (tmp_path / "data" / "station.db").exists()      # a mistyped data_dir creates nothing
    db = Database(tmp_path / "data" / "station.db")              # what a running station holds
    try:
        code, _, err = cli(capsys, "certs", "install", "CSMSRootCertificate", str(pki.ca_file), "--config", cfg)
        assert code == 3 and err.startswith("secure-cp: store error")
    finally:
        db.close()
