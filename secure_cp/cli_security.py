"""``secure-cp keys ...`` and ``secure-cp certs ...``: commissioning a charger's keys and certificate store.

* ``keys list | generate LABEL [--algorithm A] | csr LABEL [--cn CN] [--o ORG] [--out FILE] | delete LABEL``
  work on the ``[keys]`` backend of the station configuration (software keys or a PKCS#11 token: HSM, secure
  element, TPM through tpm2-pkcs11). A CSR is signed inside the backend: the private key never leaves it.
* ``certs list | show [--hash ID] | install TYPE FILE | delete --hash ID`` work on the station's certificate
  store (``<data_dir>/certs`` and its index in ``station.db``), the one InstallCertificate / DeleteCertificate use
  over OCPP, with the same rules (security.certstore). The store is locked by a running station: stop it first.
  ``ID`` is the certificate's RFC 6960 CertID as ``list`` prints it: ``ALG:issuerNameHash:issuerKeyHash:serial``.

Exit codes: 0 done; 1 the operation was refused or failed (no such key, label taken, certificate rejected, wrong
PIN, token missing); 2 bad input or configuration; 3 the station store is locked or unusable.
"""
from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .config import ConfigError, StationConfig, load

#: exit codes (see the module docstring)
REFUSED, BAD_INPUT, STORE_ERROR = 1, 2, 3
#: certificate types ``certs install`` accepts: the 2.0.1 names and the 1.6 CentralSystemRootCertificate
INSTALL_CHOICES = ("CSMSRootCertificate", "CentralSystemRootCertificate", "ManufacturerRootCertificate",
                   "V2GRootCertificate", "MORootCertificate")
ALGORITHMS = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072")


class CliError(Exception):
    """A clear message for stderr and the exit code to return."""

    def __init__(self, message: str, code: int = REFUSED) -> None:
        super().__init__(message)
        self.code = code


def _config(args) -> StationConfig:
    try:
        return load(args.config)
    except ConfigError as exc:
        raise CliError(f"configuration error: {exc}", BAD_INPUT) from None
    except OSError as exc:
        raise CliError(f"cannot read {args.config}: {exc.strerror}", BAD_INPUT) from None


def _run(handler, args) -> int:
    """Run one command; every expected failure becomes one line on stderr and an exit code (no traceback)."""
    try:
        return handler(args)
    except CliError as exc:
        print(f"secure-cp: {exc}", file=sys.stderr)
        return exc.code


# ---- keys -------------------------------------------------------------------------------------------------------
@contextmanager
def _backend(args) -> Iterator:
    from .security.keys.base import KeyBackendError
    from .security.keys.config import KeysConfigError, open_backend
    cfg = _config(args)
    try:
        backend = open_backend(cfg.keys)
    except KeysConfigError as exc:
        raise CliError(f"configuration error: {exc}", BAD_INPUT) from None
    except KeyBackendError as exc:
        raise CliError(str(exc)) from None
    try:
        yield backend
    except KeyBackendError as exc:
        raise CliError(str(exc)) from None
    finally:
        backend.close()


def _label(label: str) -> str:
    from .security.keys.base import KeyBackendError, check_label
    try:
        return check_label(label)
    except KeyBackendError as exc:
        raise CliError(str(exc), BAD_INPUT) from None


def _keys_list(args) -> int:
    with _backend(args) as backend:
        keys = backend.list_keys()
        for k in keys:
            print(f"{k.label}\t{k.algorithm.value}\t{k.backend}")
    print(f"# {len(keys)} key(s) on the {backend.kind} backend", file=sys.stderr)
    return 0


def _keys_generate(args) -> int:
    from .security.keys.base import KeyAlgorithm
    label = _label(args.label)
    with _backend(args) as backend:
        algorithm = KeyAlgorithm(args.algorithm) if args.algorithm else _config(args).keys.algorithm
        info = backend.generate(label, algorithm)
        ref = backend.key_ref(label)
    print(f"generated {info.algorithm.value} key {info.label!r} on the {info.backend} backend ({ref.uri})")
    return 0


def _keys_csr(args) -> int:
    """A PKCS#10 request (CN = --cn or the station identity, A00.FR.511; O = --o, A00.FR.509) signed by the key in
    the backend: SHA-256 for P-256 and RSA, SHA-384 for P-384."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
    label = _label(args.label)
    cfg = _config(args)
    cn = args.cn or cfg.identity
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if args.o:
        names.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, args.o))
    with _backend(args) as backend:
        key = backend.private_key(label)
        algorithm = hashes.SHA384() if getattr(key, "key_size", 0) == 384 else hashes.SHA256()
        try:
            csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names)).sign(key, algorithm)
        except ValueError as exc:          # e.g. an attribute value cryptography refuses (empty, too long)
            raise CliError(f"cannot build the CSR: {exc}", BAD_INPUT) from None
    pem = csr.public_bytes(serialization.Encoding.PEM)
    if args.out:
        try:
            Path(args.out).write_bytes(pem)
        except OSError as exc:
            raise CliError(f"cannot write {args.out}: {exc.strerror}", BAD_INPUT) from None
        print(f"CSR for key {label!r} ({csr.subject.rfc4514_string()}) written to {args.out}")
    else:
        sys.stdout.write(pem.decode())
    return 0


def _keys_delete(args) -> int:
    label = _label(args.label)
    with _backend(args) as backend:
        backend.delete(label)
    print(f"deleted key {label!r}")
    return 0


# ---- certs ------------------------------------------------------------------------------------------------------
@contextmanager
def _certificate_store(args, *, create: bool) -> Iterator:
    """The station's CertificateStore (as runtime.Station opens it: ``<data_dir>/certs``, the capacity of the stored
    CertificateStoreMaxLength, the configured station chain). ``create``: make the store of a station that has not
    run yet (commissioning); else a missing store is an error (a mistyped data_dir must not create one)."""
    from .devicemodel import DeviceModel
    from .devicemodel.keys16 import VENDOR_COMPONENT
    from .security.certstore import CertificateStore
    from .store import Database, SqliteVariableBackend, StoreError
    cfg = _config(args)
    db_path = cfg.data_dir / "station.db"
    if not create and not db_path.exists():
        raise CliError(f"no station store at {db_path} (data_dir of {args.config})", BAD_INPUT)
    try:
        db = Database(db_path)
    except StoreError as exc:
        raise CliError(f"store error: {exc}", STORE_ERROR) from None
    try:
        model = DeviceModel(SqliteVariableBackend(db))

        def max_entries() -> int:
            raw = model.get(VENDOR_COMPONENT, "CertificateStoreMaxLength")
            return int(raw) if raw is not None and raw.isdigit() else 20

        yield CertificateStore(db, cfg.data_dir / "certs", max_entries=max_entries,
                               station_chain=lambda: _station_chain(cfg))
    finally:
        db.close()


def _station_chain(cfg: StationConfig) -> list:
    """The station certificate chain of ``[security] cert_file`` (leaf first); none when unset or unreadable."""
    from cryptography import x509
    try:
        return x509.load_pem_x509_certificates(cfg.cert_file.read_bytes()) if cfg.cert_file else []
    except (OSError, ValueError):
        return []


def _hash_id(hash_data: dict) -> str:
    return ":".join((hash_data["hashAlgorithm"], hash_data["issuerNameHash"], hash_data["issuerKeyHash"],
                     hash_data["serialNumber"]))


def _parse_hash_id(text: str) -> dict:
    from .security.certstore import HASH_ALGORITHMS
    parts = text.split(":")
    if len(parts) != 4 or parts[0] not in HASH_ALGORITHMS or not all(parts[1:]):
        raise CliError(f"--hash {text!r}: expected ALG:issuerNameHash:issuerKeyHash:serialNumber as `secure-cp "
                       f"certs list` prints it (ALG one of {', '.join(HASH_ALGORITHMS)})", BAD_INPUT)
    try:
        for part in parts[1:]:
            int(part, 16)
    except ValueError:
        raise CliError(f"--hash {text!r}: the hashes and the serial number are hexadecimal", BAD_INPUT) from None
    return dict(zip(("hashAlgorithm", "issuerNameHash", "issuerKeyHash", "serialNumber"), parts))


def _certs_list(args) -> int:
    with _certificate_store(args, create=False) as store:
        rows = store.installed()
    for cert_type, cert, hash_data in rows:
        print(f"{cert_type}\t{cert.subject.rfc4514_string()}\tuntil {cert.not_valid_after_utc:%Y-%m-%d}\t"
              f"{_hash_id(hash_data)}")
    print(f"# {len(rows)} certificate(s)", file=sys.stderr)
    return 0


def _certs_show(args) -> int:
    from cryptography.hazmat.primitives import serialization
    cfg = _config(args)
    with _certificate_store(args, create=False) as store:
        if args.hash:
            wanted = _parse_hash_id(args.hash)
            for cert_type, cert, hash_data in store.installed(wanted["hashAlgorithm"]):
                if _hash_id(hash_data).lower() == _hash_id(wanted).lower():
                    print(f"# {cert_type}: {cert.subject.rfc4514_string()}, issuer "
                          f"{cert.issuer.rfc4514_string()}, valid {cert.not_valid_before_utc:%Y-%m-%d} .. "
                          f"{cert.not_valid_after_utc:%Y-%m-%d}")
                    sys.stdout.write(cert.public_bytes(serialization.Encoding.PEM).decode())
                    return 0
            raise CliError(f"no installed certificate with hash {args.hash}")
        count, capacity = len(store), store.capacity
    chain = _station_chain(cfg)
    print(f"certificate store: {cfg.data_dir / 'certs'} ({count} of at most {capacity} certificates)")
    for setting, value in (("ca_file", cfg.ca_file), ("cert_file", cfg.cert_file), ("key_file", cfg.key_file),
                           ("manufacturer_root_file", cfg.manufacturer_root_file)):
        print(f"[security] {setting}: {value or '-'}")
    if chain:
        leaf = chain[0]
        print(f"station certificate: {leaf.subject.rfc4514_string()}, issuer {leaf.issuer.rfc4514_string()}, "
              f"valid until {leaf.not_valid_after_utc:%Y-%m-%d}")
    print(f"[keys] backend: {cfg.keys.backend}" + (" (development only)" if cfg.keys.backend == "software" else ""))
    return 0


def _certs_install(args) -> int:
    try:
        pem = Path(args.file).read_text(encoding="ascii")
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}", BAD_INPUT) from None
    except UnicodeDecodeError:
        raise CliError(f"{args.file} is not a PEM file (binary content; convert DER with `openssl x509 -inform der`)",
                       BAD_INPUT) from None
    with _certificate_store(args, create=True) as store:
        result = store.install(args.type, pem)
    if result.status != "Accepted":
        raise CliError(f"{args.type} from {args.file}: {result.status} ({result.reason}: {result.detail})")
    print(f"installed {args.type} from {args.file}")
    return 0


def _certs_delete(args) -> int:
    wanted = _parse_hash_id(args.hash)
    with _certificate_store(args, create=False) as store:
        status = store.delete(wanted)
    if status == "NotFound":
        raise CliError(f"no installed certificate with hash {args.hash}")
    if status != "Accepted":
        raise CliError(f"deleting {args.hash}: {status} (the station's own certificate, or the store could not "
                       "be written)")
    print(f"deleted certificate {args.hash}")
    return 0


# ---- parsers ----------------------------------------------------------------------------------------------------
def add_parsers(sub) -> None:
    """Add ``keys`` and ``certs`` to the ``secure-cp`` sub-command parsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", required=True, help="station TOML file ([keys], [station] data_dir, [security])")

    def command(parent, name: str, handler, help_: str) -> argparse.ArgumentParser:
        p = parent.add_parser(name, parents=[common], help=help_)
        p.set_defaults(func=lambda args: _run(handler, args))
        return p

    keys = sub.add_parser("keys", help="list, generate, delete key pairs; CSRs (the [keys] backend)")
    ks = keys.add_subparsers(dest="keys_cmd", required=True)
    command(ks, "list", _keys_list, "the key pairs on the backend")
    g = command(ks, "generate", _keys_generate, "generate a key pair on the backend")
    g.add_argument("label")
    g.add_argument("--algorithm", choices=ALGORITHMS, help="default: [keys] algorithm")
    c = command(ks, "csr", _keys_csr, "a PKCS#10 certificate signing request signed by the key")
    c.add_argument("label")
    c.add_argument("--cn", help="subject CN (default: the station identity)")
    c.add_argument("--o", help="subject O (the CPO / organization name)")
    c.add_argument("--out", help="write the PEM here instead of stdout")
    d = command(ks, "delete", _keys_delete, "destroy a key pair")
    d.add_argument("label")

    certs = sub.add_parser("certs", help="list, show, install, delete certificates (the station's store)")
    cs = certs.add_subparsers(dest="certs_cmd", required=True)
    command(cs, "list", _certs_list, "installed certificates with their hash ids")
    s = command(cs, "show", _certs_show, "store summary, or one certificate as PEM (--hash)")
    s.add_argument("--hash", help="hash id of a certificate (from `certs list`)")
    i = command(cs, "install", _certs_install, "install a CA certificate (PEM file)")
    i.add_argument("type", choices=INSTALL_CHOICES)
    i.add_argument("file")
    r = command(cs, "delete", _certs_delete, "delete an installed certificate")
    r.add_argument("--hash", required=True, help="hash id of the certificate (from `certs list`)")
