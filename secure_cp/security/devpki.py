"""A development and test PKI, made on demand (never committed): ``python -m secure_cp.security.devpki --out DIR``.

What it makes (ECDSA P-256, SHA-256 signatures, PEM files; private keys written with mode 0600):

* ``csms-root.pem`` / ``csms-root.key``: the CSMS root CA (what the station trusts: the 2.0.1 CSMSRootCertificate,
  1.6 CentralSystemRootCertificate);
* ``csms-server.pem`` / ``csms-server.key``: the CSMS server certificate, CN = the first host (A00.FR.510: the FQDN
  in the CN) and the hosts as subjectAltName (``localhost`` and ``127.0.0.1`` by default), issued by the root;
* ``cpo-ca.pem`` / ``cpo-ca.key``: a CPO sub-CA under the same root that signs station certificates;
* ``station.pem`` / ``station.key``: the station certificate, CN = the station identity (A00.FR.511: the serial /
  identity, not a URL or IP), O = the CPO name (A00.FR.509); ``station-chain.pem`` = station + CPO sub-CA, the chain
  a station presents under security profile 3.

Tests also need bad server certificates (TC_A_05): :func:`server_certificate` issues one with any validity, hosts
or issuer, and :func:`unknown_ca` makes a second, untrusted root. These keys are for development only: a real
station keeps its key in an HSM / secure element / TPM (issue #4, ``security/keys``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DevPki", "Issuer", "generate", "server_certificate", "unknown_ca", "write_key", "main"]

DEFAULT_HOSTS = ("localhost", "127.0.0.1")
CPO_NAME = "secure-cp development CPO"
_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Issuer:
    """A CA that can sign: its certificate and key (in memory) and where its certificate is on disk."""
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_file: Path


@dataclass(frozen=True)
class DevPki:
    """The files of one development PKI (see the module docstring)."""
    root: Issuer
    cpo_ca: Issuer
    server_cert: Path
    server_key: Path
    station_cert: Path
    station_key: Path
    station_chain: Path

    @property
    def ca_file(self) -> Path:
        """What a station trusts for its CSMS (the ``[security] ca_file`` setting)."""
        return self.root.cert_file


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    """Write a private key as unencrypted PKCS#8 PEM, created with mode 0600 (never readable by others, also not
    for the moment between create and chmod)."""
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _write_certs(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def _name(cn: str, org: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: Issuer | None, *, ca: bool,
           not_before: dt.datetime, not_after: dt.datetime, hosts: tuple[str, ...] = (),
           usage: ExtendedKeyUsageOID | None = None, path_length: int | None = None) -> x509.Certificate:
    """One certificate with the extensions strict (RFC 5280) path validation expects: basicConstraints, keyUsage,
    subject and authority key identifiers; a leaf gets its extended key usage and its hosts as subjectAltName."""
    public = key.public_key()
    signer_cert, signer_key = (issuer.cert, issuer.key) if issuer else (None, key)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(signer_cert.subject if signer_cert else subject)
               .public_key(public)
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before)
               .not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                                            crl_sign=ca, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))
    signer_public = signer_cert.public_key() if signer_cert else public
    builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_public),  # type: ignore[arg-type]
                                    critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if hosts:
        names: list[x509.GeneralName] = []
        for h in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                names.append(x509.DNSName(h))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def _new_ca(out: Path, stem: str, cn: str, org: str, parent: Issuer | None, days: int = 3650) -> Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = _issue(_name(cn, org), key, parent, ca=True, not_before=now - _DAY, not_after=now + days * _DAY,
                  path_length=None if parent is None else 0)
    write_key(key, out / f"{stem}.key")
    return Issuer(cert, key, _write_certs(out / f"{stem}.pem", cert))


def unknown_ca(out: Path, stem: str = "unknown-root") -> Issuer:
    """A root CA the station does not trust (TC_A_05: a server certificate from an unknown CA)."""
    out.mkdir(parents=True, exist_ok=True)
    return _new_ca(out, stem, "Unknown Root CA", "Not the CPO", None)


def server_certificate(out: Path, stem: str, issuer: Issuer, *, hosts: tuple[str, ...] = DEFAULT_HOSTS,
                       not_before: dt.datetime | None = None, not_after: dt.datetime | None = None
                       ) -> tuple[Path, Path]:
    """A CSMS server certificate (CN = first host, hosts in subjectAltName) as ``(chain file, key file)``. The
    chain file holds the certificate and, for a sub-CA issuer, that issuer. Expired, not-yet-valid or wrong-host
    certificates for tests come from the keyword arguments."""
    out.mkdir(parents=True, exist_ok=True)
    now = _now()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(_name(hosts[0], CPO_NAME), key, issuer, ca=False, not_before=not_before or now - _DAY,
                  not_after=not_after or now + 825 * _DAY, hosts=hosts, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    chain = (cert,) if issuer.cert.issuer == issuer.cert.subject else (cert, issuer.cert)
    key_file = write_key(key, out / f"{stem}.key")
    return _write_certs(out / f"{stem}.pem", *chain), key_file


def station_certificate(out: Path, stem: str, issuer: Issuer, identity: str, *, org: str = CPO_NAME,
                        days: int = 365) -> tuple[Path, Path, Path]:
    """A station (TLS client) certificate, CN = ``identity``: ``(certificate, key, chain = certificate + issuer)``."""
    now = _now()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(_name(identity, org), key, issuer, ca=False, not_before=now - _DAY, not_after=now + days * _DAY,
                  usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    key_file = write_key(key, out / f"{stem}.key")
    return _write_certs(out / f"{stem}.pem", cert), key_file, _write_certs(out / f"{stem}-chain.pem", cert, issuer.cert)


def generate(out: Path, identity: str = "CP1", hosts: tuple[str, ...] = DEFAULT_HOSTS) -> DevPki:
    """Make a complete development PKI in ``out`` (created if needed; existing files are replaced)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root = _new_ca(out, "csms-root", "secure-cp development CSMS root CA", CPO_NAME, None)
    cpo = _new_ca(out, "cpo-ca", "secure-cp development CPO sub-CA", CPO_NAME, root, days=1825)
    server_cert, server_key = server_certificate(out, "csms-server", root, hosts=hosts)
    station_cert, station_key, station_chain = station_certificate(out, "station", cpo, identity)
    return DevPki(root, cpo, server_cert, server_key, station_cert, station_key, station_chain)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m secure_cp.security.devpki",
                                     description="Make a development PKI (CSMS root + server, CPO sub-CA, station).")
    parser.add_argument("--out", required=True, type=Path, help="directory for the PEM files")
    parser.add_argument("--identity", default="CP1", help="station identity = CN of the station certificate")
    parser.add_argument("--host", action="append", dest="hosts",
                        help="CSMS host name or IP for the server certificate (repeatable; default localhost, 127.0.0.1)")
    args = parser.parse_args(argv)
    pki = generate(args.out, args.identity, tuple(args.hosts) if args.hosts else DEFAULT_HOSTS)
    for label, path in (("CSMS root (station ca_file)", pki.ca_file), ("CSMS server certificate", pki.server_cert),
                        ("CSMS server key", pki.server_key), ("station certificate chain", pki.station_chain),
                        ("station key (development only)", pki.station_key)):
        print(f"{label:32} {path}")
    return 0


def expired_ca(out: Path, stem: str = "expired-root") -> Issuer:
    """A self-signed root CA whose validity ended yesterday (TC_M_07: an invalid certificate is Rejected)."""
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = _issue(_name("Expired Root CA", CPO_NAME), key, None, ca=True, not_before=now - 30 * _DAY,
                  not_after=now - _DAY)
    write_key(key, out / f"{stem}.key")
    return Issuer(cert, key, _write_certs(out / f"{stem}.pem", cert))


# ---- secure firmware update (OCPP 2.0.1 L01, 1.6 whitepaper L01) --------------------------------------------------
MANUFACTURER_NAME = "secure-cp development manufacturer"


@dataclass(frozen=True)
class FirmwareSigner:
    """A firmware signing certificate (issued directly by a manufacturer root: no intermediates, L01 remark), its
    key, and the PEM text an UpdateFirmwareRequest carries as signingCertificate."""
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_file: Path

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, data: bytes) -> str:
        """See :func:`sign_file`."""
        return sign_file(data, self.key)


def manufacturer_root(out: Path, stem: str = "manufacturer-root") -> Issuer:
    """The manufacturer root CA (2.0.1 / 1.6 ManufacturerRootCertificate): what firmware signers chain to."""
    out.mkdir(parents=True, exist_ok=True)
    return _new_ca(out, stem, "secure-cp development manufacturer root CA", MANUFACTURER_NAME, None)


def firmware_signing_certificate(out: Path, issuer: Issuer, stem: str = "firmware-signing", *,
                                 not_before: dt.datetime | None = None, not_after: dt.datetime | None = None
                                 ) -> FirmwareSigner:
    """A firmware signing certificate (extended key usage codeSigning) issued by ``issuer``; expired or
    not-yet-valid ones for tests come from the keyword arguments."""
    out.mkdir(parents=True, exist_ok=True)
    now = _now()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(_name("secure-cp development firmware signing", MANUFACTURER_NAME), key, issuer, ca=False,
                  not_before=not_before or now - _DAY, not_after=not_after or now + 365 * _DAY,
                  usage=ExtendedKeyUsageOID.CODE_SIGNING)
    write_key(key, out / f"{stem}.key")
    return FirmwareSigner(cert, key, _write_certs(out / f"{stem}.pem", cert))


def sign_file(data: bytes | Path, key: ec.EllipticCurvePrivateKey) -> str:
    """The base64 ECDSA (SHA-256) signature over a whole firmware file (``data`` or the file at that path), as an
    UpdateFirmwareRequest carries it in firmware.signature (L01.FR.04)."""
    import base64
    raw = Path(data).read_bytes() if isinstance(data, Path) else data
    return base64.b64encode(key.sign(raw, ec.ECDSA(hashes.SHA256()))).decode()


if __name__ == "__main__":
    raise SystemExit(main())
