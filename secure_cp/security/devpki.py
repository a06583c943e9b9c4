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

__all__ = ["DevPki", "Issuer", "Iso15118Chain", "generate", "server_certificate", "station_certificate",
           "unknown_ca", "cross_signed_root", "manufacturer_root", "firmware_signing_certificate", "iso15118_chain",
           "ocsp_responder_certificate", "ocsp_response", "crl",
           "write_key", "main"]

DEFAULT_HOSTS = ("localhost", "127.0.0.1")
CPO_NAME = "secure-cp development CPO"
V2G_NAME = "secure-cp development V2G"       # ISO 15118 V2G PKI (SECC certificates)
MO_NAME = "secure-cp development MO"         # ISO 15118 mobility operator PKI (contract certificates)
DEFAULT_EMAID = "DESCPC000000001"           # CN of the development contract certificate
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
    manufacturer_root: Issuer | None = None      # firmware trust anchor (ManufacturerRootCertificate)
    firmware_signer: FirmwareSigner | None = None
    v2g: Iso15118Chain | None = None             # V2G root -> sub-CA 1 -> sub-CA 2 -> SECC leaf
    mo: Iso15118Chain | None = None              # MO root -> sub-CA 1 -> sub-CA 2 -> contract leaf

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
           usage: ExtendedKeyUsageOID | None = None, path_length: int | None = None,
           ocsp_url: str | None = None, crl_url: str | None = None) -> x509.Certificate:
    """One certificate with the extensions strict (RFC 5280) path validation expects: basicConstraints, keyUsage,
    subject and authority key identifiers; a leaf gets its extended key usage and its hosts as subjectAltName;
    ``ocsp_url`` becomes the OCSP responder of its authorityInfoAccess, ``crl_url`` its CRL distribution point."""
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
    if ocsp_url is not None:
        builder = builder.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url))]), critical=False)
    if crl_url is not None:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(crl_url)], None, None, None)]), critical=False)
    if hosts:
        names: list[x509.GeneralName] = []
        for h in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                names.append(x509.DNSName(h))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def _new_ca(out: Path, stem: str, cn: str, org: str, parent: Issuer | None, days: int = 3650,
            path_length: int = 0) -> Issuer:
    """A CA in ``out``: self-signed when ``parent`` is None (no path length limit), else a sub-CA of ``parent``
    with at most ``path_length`` CAs below it."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = _issue(_name(cn, org), key, parent, ca=True, not_before=now - _DAY, not_after=now + days * _DAY,
                  path_length=None if parent is None else path_length)
    write_key(key, out / f"{stem}.key")
    return Issuer(cert, key, _write_certs(out / f"{stem}.pem", cert))


def sub_ca(out: Path, stem: str, parent: Issuer, cn: str = "Other CPO sub-CA") -> Issuer:
    """Another sub-CA under ``parent`` (tests: a station certificate the station accepts, as it chains to the CSMS
    root, but a CSMS trusting only the usual CPO sub-CA refuses; A02.FR.28)."""
    out.mkdir(parents=True, exist_ok=True)
    return _new_ca(out, stem, cn, CPO_NAME, parent)


def cross_signed_root(out: Path, stem: str, old: Issuer, cn: str = "secure-cp development CSMS root CA 2") -> Issuer:
    """A new CSMS root (its own key and name) whose certificate is signed by the ``old`` root: what a CSMS installs
    under AdditionalRootCertificateCheck (2.0.1 M05.FR.10, 1.6 M05.FR.09). No path length limit, like a root."""
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = _issue(_name(cn, CPO_NAME), key, old, ca=True, not_before=now - _DAY, not_after=now + 3650 * _DAY)
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


def sign_csr(issuer: Issuer, csr_pem: str, *, not_before: dt.datetime | None = None,
             not_after: dt.datetime | None = None) -> str:
    """A02/A03 as a CA does it: the certificate for a station's CSR (subject and key from the CSR, client-auth
    usage) issued by ``issuer`` (the CPO sub-CA), as the PEM chain a CertificateSigned carries: certificate first,
    then the issuer unless it is a root. The CSR's self-signature is checked (ValueError if it fails). Expired or
    not-yet-valid certificates for tests come from the keyword arguments."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    if not csr.is_signature_valid:
        raise ValueError("CSR signature does not verify")
    now = _now()
    public = csr.public_key()
    builder = (x509.CertificateBuilder()
               .subject_name(csr.subject).issuer_name(issuer.cert.subject).public_key(public)
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or now - dt.timedelta(minutes=5))
               .not_valid_after(not_after or now + 365 * _DAY)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)  # type: ignore[arg-type]
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.cert.public_key()),  # type: ignore[arg-type]
                              critical=False)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    cert = builder.sign(issuer.key, hashes.SHA256())
    chain = (cert,) if issuer.cert.issuer == issuer.cert.subject else (cert, issuer.cert)
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain).decode()


def station_certificate_for_key(out: Path, stem: str, issuer: Issuer, identity: str, key, *, org: str = CPO_NAME,
                                days: int = 365) -> Path:
    """A station certificate for a key held elsewhere (``key``: e.g. ``backend.private_key(label)``, a key in a
    PKCS#11 token): only its public key is used. Returns the chain file (certificate + issuer)."""
    now = _now()
    cert = _issue(_name(identity, org), key, issuer, ca=False, not_before=now - _DAY, not_after=now + days * _DAY,
                  usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return _write_certs(out / f"{stem}-chain.pem", cert, issuer.cert)


def generate(out: Path, identity: str = "CP1", hosts: tuple[str, ...] = DEFAULT_HOSTS, *,
             emaid: str = DEFAULT_EMAID) -> DevPki:
    """Make a complete development PKI in ``out`` (created if needed; existing files are replaced): CSMS root and
    server certificate, CPO sub-CA and station certificate, manufacturer root and firmware signer, and the ISO
    15118 V2G and MO chains."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root = _new_ca(out, "csms-root", "secure-cp development CSMS root CA", CPO_NAME, None)
    cpo = _new_ca(out, "cpo-ca", "secure-cp development CPO sub-CA", CPO_NAME, root, days=1825)
    server_cert, server_key = server_certificate(out, "csms-server", root, hosts=hosts)
    station_cert, station_key, station_chain = station_certificate(out, "station", cpo, identity)
    manufacturer = manufacturer_root(out)
    return DevPki(root, cpo, server_cert, server_key, station_cert, station_key, station_chain,
                  manufacturer_root=manufacturer, firmware_signer=firmware_signing_certificate(out, manufacturer),
                  v2g=iso15118_chain(out, "v2g", V2G_NAME, identity), mo=iso15118_chain(out, "mo", MO_NAME, emaid))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m secure_cp.security.devpki",
                                     description="Make a development PKI: CSMS root + server, CPO sub-CA + station, "
                                                 "manufacturer root + firmware signer, ISO 15118 V2G and MO chains.")
    parser.add_argument("outdir", nargs="?", type=Path, help="directory for the PEM files (or --out)")
    parser.add_argument("--out", type=Path, help="directory for the PEM files")
    parser.add_argument("--identity", default="CP1", help="station identity = CN of the station certificate")
    parser.add_argument("--host", action="append", dest="hosts",
                        help="CSMS host name or IP for the server certificate (repeatable; default localhost, 127.0.0.1)")
    parser.add_argument("--emaid", default=DEFAULT_EMAID, help="CN of the contract certificate (MO chain)")
    args = parser.parse_args(argv)
    if (args.outdir is None) == (args.out is None):
        parser.error("give the output directory once: OUTDIR or --out OUTDIR")
    pki = generate(args.outdir or args.out, args.identity, tuple(args.hosts) if args.hosts else DEFAULT_HOSTS,
                   emaid=args.emaid)
    assert pki.manufacturer_root and pki.firmware_signer and pki.v2g and pki.mo
    for label, path in (("CSMS root (station ca_file)", pki.ca_file), ("CSMS server certificate", pki.server_cert),
                        ("CSMS server key", pki.server_key), ("CPO sub-CA (signs stations)", pki.cpo_ca.cert_file),
                        ("station certificate chain", pki.station_chain),
                        ("station key (development only)", pki.station_key),
                        ("manufacturer root", pki.manufacturer_root.cert_file),
                        ("firmware signing certificate", pki.firmware_signer.cert_file),
                        ("V2G root", pki.v2g.root.cert_file), ("SECC certificate chain", pki.v2g.leaf_chain),
                        ("MO root", pki.mo.root.cert_file), ("contract certificate chain", pki.mo.leaf_chain)):
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
                                 not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
                                 ocsp_url: str | None = None, crl_url: str | None = None) -> FirmwareSigner:
    """A firmware signing certificate (extended key usage codeSigning) issued by ``issuer``; expired or
    not-yet-valid ones for tests come from the keyword arguments; ``ocsp_url`` names the OCSP responder the station
    asks about its revocation (authorityInfoAccess), ``crl_url`` the CRL it reads otherwise."""
    out.mkdir(parents=True, exist_ok=True)
    now = _now()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(_name("secure-cp development firmware signing", MANUFACTURER_NAME), key, issuer, ca=False,
                  not_before=not_before or now - _DAY, not_after=not_after or now + 365 * _DAY,
                  usage=ExtendedKeyUsageOID.CODE_SIGNING, ocsp_url=ocsp_url, crl_url=crl_url)
    write_key(key, out / f"{stem}.key")
    return FirmwareSigner(cert, key, _write_certs(out / f"{stem}.pem", cert))


def ocsp_responder_certificate(out: Path, issuer: Issuer, stem: str = "ocsp-responder") -> Issuer:
    """A delegated OCSP responder of ``issuer`` (extended key usage OCSPSigning, RFC 6960 §4.2.2.2): pass it as
    ``ocsp_response(..., responder=)`` to sign responses in the issuer's name."""
    out.mkdir(parents=True, exist_ok=True)
    now = _now()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(_name(f"{issuer.cert.subject.rfc4514_string()} OCSP responder"[:64], MANUFACTURER_NAME), key,
                  issuer, ca=False, not_before=now - _DAY, not_after=now + 30 * _DAY,
                  usage=ExtendedKeyUsageOID.OCSP_SIGNING)
    write_key(key, out / f"{stem}.key")
    return Issuer(cert, key, _write_certs(out / f"{stem}.pem", cert))


def sign_file(data: bytes | Path, key: ec.EllipticCurvePrivateKey) -> str:
    """The base64 ECDSA (SHA-256) signature over a whole firmware file (``data`` or the file at that path), as an
    UpdateFirmwareRequest carries it in firmware.signature (L01.FR.04)."""
    import base64
    raw = Path(data).read_bytes() if isinstance(data, Path) else data
    return base64.b64encode(key.sign(raw, ec.ECDSA(hashes.SHA256()))).decode()


# ---- ISO 15118 (the OCPP side: V2GRootCertificate, MORootCertificate, V2GCertificateChain) ------------------------


@dataclass(frozen=True)
class Iso15118Chain:
    """An ISO 15118-2 style chain: root -> sub-CA 1 -> sub-CA 2 -> leaf. ``leaf_chain`` holds leaf, sub-CA 2 and
    sub-CA 1 (what a V2GCertificateChain or a contract certificate chain carries; the root is installed apart)."""
    root: Issuer
    sub_ca1: Issuer
    sub_ca2: Issuer
    leaf_cert: Path
    leaf_key: Path
    leaf_chain: Path


def iso15118_chain(out: Path, prefix: str, org: str, leaf_cn: str) -> Iso15118Chain:
    """Files ``<prefix>-root``, ``<prefix>-sub-ca1``, ``<prefix>-sub-ca2`` and ``<prefix>-leaf`` (+ ``-chain``):
    the V2G chain (``prefix="v2g"``, leaf = the SECC certificate) or the MO chain (``"mo"``, leaf = a contract
    certificate, CN = eMAID). Sub-CA 1 allows one CA below it, sub-CA 2 none (ISO 15118-2 Annex F)."""
    out.mkdir(parents=True, exist_ok=True)
    root = _new_ca(out, f"{prefix}-root", f"{org} root CA", org, None)
    sub1 = _new_ca(out, f"{prefix}-sub-ca1", f"{org} sub-CA 1", org, root, days=1825, path_length=1)
    sub2 = _new_ca(out, f"{prefix}-sub-ca2", f"{org} sub-CA 2", org, sub1, days=730)
    now = _now()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(_name(leaf_cn, org), key, sub2, ca=False, not_before=now - _DAY, not_after=now + 365 * _DAY)
    key_file = write_key(key, out / f"{prefix}-leaf.key")
    return Iso15118Chain(root, sub1, sub2, _write_certs(out / f"{prefix}-leaf.pem", cert), key_file,
                         _write_certs(out / f"{prefix}-leaf-chain.pem", cert, sub2.cert, sub1.cert))


def crl(issuer: Issuer, revoked: tuple[int, ...] = (), *, this_update: dt.datetime | None = None,
        next_update: dt.datetime | None = None) -> bytes:
    """A DER CRL signed by ``issuer`` listing the serial numbers ``revoked`` (revoked a day ago); valid from
    ``this_update`` (default: an hour ago) to ``next_update`` (default: in a week)."""
    now = _now()
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.cert.subject)
               .last_update(this_update or now - dt.timedelta(hours=1)).next_update(next_update or now + 7 * _DAY))
    for serial in revoked:
        builder = builder.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                                  .revocation_date(now - _DAY).build())
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def ocsp_response(cert: x509.Certificate, issuer: Issuer, *, revoked: bool = False,
                  this_update: dt.datetime | None = None, next_update: dt.datetime | None = None,
                  responder: Issuer | None = None) -> str:
    """A signed RFC 6960 OCSPResponse about ``cert``, the issuer itself responding (or the delegated ``responder``,
    see ocsp_responder_certificate, whose certificate the response then carries), DER then base64: what a CSMS
    returns as GetCertificateStatusResponse.ocspResult (2.0.1 M06.FR.03/08/09) and what a responder answers to a
    station asking about a firmware signer. Good unless ``revoked``; valid from ``this_update`` (default: an hour
    ago) to ``next_update`` (default: in a week)."""
    import base64

    from cryptography.x509 import ocsp
    now = _now()
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=cert, issuer=issuer.cert, algorithm=hashes.SHA256(),
        cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
        this_update=this_update or now - dt.timedelta(hours=1), next_update=next_update or now + 7 * _DAY,
        revocation_time=now - _DAY if revoked else None, revocation_reason=None,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, (responder or issuer).cert)
    if responder is not None:
        builder = builder.certificates([responder.cert])
    response = builder.sign((responder or issuer).key, hashes.SHA256())
    return base64.b64encode(response.public_bytes(serialization.Encoding.DER)).decode()


if __name__ == "__main__":
    raise SystemExit(main())
