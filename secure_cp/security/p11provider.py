"""OpenSSL 3's pkcs11-provider for this process: TLS with a private key that stays in a PKCS#11 token.

Python's ``ssl`` loads a key from a file. A "PKCS#11 PROVIDER URI" PEM file holds only the RFC 7512 URI of the key;
when the pkcs11 provider is loaded, OpenSSL's decoder turns it into a key handle whose signatures the token makes.
The provider is loaded from an application-private OpenSSL configuration (default + pkcs11 providers, the PKCS#11
module, the PIN as a ``file:`` source), named by ``OPENSSL_CONF``. OpenSSL reads that configuration once, when
``_ssl`` or ``_hashlib`` is first imported (``import asyncio`` does it): :func:`activate` must run before. ``secure-cp
run`` writes the configuration for ``[keys] backend = "pkcs11"`` (:func:`prepare_for_config`) and, as asyncio is
imported by then, executes itself again (same PID, so systemd's sd_notify is unaffected) with ``OPENSSL_CONF`` set.

Nothing here imports ``ssl``, ``hashlib`` or ``cryptography``.

Notes (measured with pkcs11-provider 1.0 on OpenSSL 3.0):

* the ``no-deinit`` quirk is set: without it the provider finalizes SoftHSM2 while OpenSSL tears down at process
  exit, and the process ends with a segmentation fault;
* a PIN the token rejects makes the provider fall back to OpenSSL's password callback; :class:`~.tls.Pkcs11Credential`
  installs one that refuses at once (a station has nobody to type a PIN);
* the python-pkcs11 backend and the provider share the module in one process: the backend must load it first (the
  provider loads it at first use and tolerates that), and must not finalize it while the provider uses it
  (:func:`active_module` tells the backend so);
* public-key operations on certificates (verifying the CSMS chain) must stay in OpenSSL's default provider. The
  provider would do them in the token: import the CSMS public key as a session object (C_CreateObject) and
  C_Verify there. SoftHSM2 does that silently; tpm2-pkcs11 creates objects only in read/write sessions and refuses
  (CKR_SESSION_READ_ONLY in the provider's read-only session), so the handshake fails with "certificate signature
  failure". They got there although ``default = ...`` comes first because of OpenSSL 3.0's method cache: signing
  with a token key fetches the provider's ECDSA for that provider alone, OpenSSL caches it under the same (empty)
  property query as an unrestricted fetch, and its cache matches an unrestricted look-up with an entry of any
  provider - so, depending on the order of earlier fetches, every later certificate verification of the process got
  the provider's ECDSA (from the second handshake on: a reconnect, or A02 with the new certificate). Property
  preferences are not consulted on a cache hit, so the configuration's ``default_properties =
  ?provider=default`` (:data:`DEFAULT_PROPERTIES`) alone does not help; :func:`reset_method_cache` empties the cache
  around each handshake with a token key (:class:`~.tls.Pkcs11Credential`), after which the preference decides.
"""
from __future__ import annotations

import base64
import ctypes
import glob
import logging
import os
import stat
import sys
import tomllib
from pathlib import Path

__all__ = ["PROVIDER_GLOBS", "DEFAULT_PROPERTIES", "ProviderError", "provider_module", "uri_pem", "write_uri_pem",
           "write_openssl_conf", "activate", "active_module", "prepare_for_config", "reset_method_cache"]

log = logging.getLogger("secure_cp.security.p11provider")

#: Where Debian installs the provider (first match is used).
PROVIDER_GLOBS = ("/usr/lib/*-linux-gnu/ossl-modules/pkcs11.so", "/usr/lib64/ossl-modules/pkcs11.so",
                  "/usr/lib/ossl-modules/pkcs11.so")

#: OpenSSL's default property query in the configuration: prefer the default provider; the pkcs11 provider serves
#: only what the default one cannot (keys in the token: their store, decoder, key management and signatures).
DEFAULT_PROPERTIES = "?provider=default"

_URI_PEM_LABEL = "PKCS#11 PROVIDER URI"
_URI_PEM_DESC = b"PKCS#11 Provider URI v1.0"

_active: tuple[str, str] | None = None     # (OPENSSL_CONF path, PKCS#11 module) this process was started with


class ProviderError(RuntimeError):
    """The provider cannot be set up (not installed, ``ssl`` already imported, files not writable)."""


def provider_module() -> str:
    """The pkcs11-provider shared object; ProviderError naming the package when it is not installed."""
    for pattern in PROVIDER_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise ProviderError("OpenSSL's pkcs11-provider is not installed (Debian 13: apt-get install pkcs11-provider; "
                        "Debian 12: from bookworm-backports; `bash .ci/bootstrap` does both)")


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + body


def uri_pem(uri: str) -> bytes:
    """The PEM key file pkcs11-provider decodes: SEQUENCE { VisibleString description, UTF8String uri }."""
    if not uri.startswith("pkcs11:") or "\n" in uri:
        raise ValueError(f"not a pkcs11: URI: {uri!r}")
    der = _der(0x30, _der(0x1A, _URI_PEM_DESC) + _der(0x0C, uri.encode()))
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN {_URI_PEM_LABEL}-----\n{body}-----END {_URI_PEM_LABEL}-----\n".encode("ascii")


def _write_private(path: Path, data: bytes) -> Path:
    """Write ``data`` atomically, mode 0600 from the start."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def write_uri_pem(path: Path, uri: str) -> Path:
    """Write the URI key file of ``uri`` to ``path`` (rewritten only when it changed)."""
    data = uri_pem(uri)
    try:
        if path.read_bytes() == data:
            return path
    except OSError:
        pass
    return _write_private(path, data)


def write_openssl_conf(directory: Path, module: str | Path, pin_file: Path) -> Path:
    """``<directory>/openssl.cnf``: the default provider and the pkcs11 provider for ``module``, the user PIN read
    from ``pin_file`` (which must be mode 0600), the default provider preferred (:data:`DEFAULT_PROPERTIES`).
    Returns its path."""
    st = pin_file.stat()
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ProviderError(f"PIN file {pin_file} is accessible by group/others (mode "
                            f"{stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
    text = "\n".join((
        "# Written by secure-cp: OpenSSL configuration of the station process only (OPENSSL_CONF).",
        "openssl_conf = secure_cp_init",
        "[secure_cp_init]",
        "providers = secure_cp_providers",
        "alg_section = secure_cp_algorithms",
        "[secure_cp_algorithms]",
        f"default_properties = {DEFAULT_PROPERTIES}",
        "[secure_cp_providers]",
        "default = secure_cp_default",
        "pkcs11 = secure_cp_pkcs11",
        "[secure_cp_default]",
        "activate = 1",
        "[secure_cp_pkcs11]",
        f"module = {provider_module()}",
        f"pkcs11-module-path = {module}",
        f"pkcs11-module-token-pin = file:{pin_file}",
        "pkcs11-module-quirks = no-deinit",
        "activate = 1",
        ""))
    for value in (str(module), str(pin_file)):
        if "\n" in value or "$" in value:
            raise ProviderError(f"unusable path for the OpenSSL configuration: {value!r}")
    return _write_private(directory / "openssl.cnf", text.encode())


def activate(conf: Path, module: str | Path) -> None:
    """Point ``OPENSSL_CONF`` at ``conf`` for this process (and its children). ProviderError if OpenSSL has been
    initialised already (``ssl`` or ``hashlib`` imported): the configuration would be ignored."""
    global _active
    if os.environ.get("OPENSSL_CONF") != str(conf) and ({"_ssl", "_hashlib"} & set(sys.modules)):
        raise ProviderError("OpenSSL is initialised already (ssl or hashlib imported): the pkcs11 provider can only "
                            "be set up before (secure-cp run does it first thing)")
    os.environ["OPENSSL_CONF"] = str(conf)
    _active = (str(conf), str(module))


def active_module() -> str | None:
    """The PKCS#11 module the provider of this process uses, or None when :func:`activate` did not run. A child
    started with the environment of :func:`activate` (OPENSSL_CONF naming a secure-cp configuration) counts too."""
    if _active is None:
        conf = os.environ.get("OPENSSL_CONF")
        if conf and Path(conf).name == "openssl.cnf":
            try:
                for line in Path(conf).read_text().splitlines():
                    if line.startswith("pkcs11-module-path = "):
                        return line.split(" = ", 1)[1]
            except OSError:
                return None
        return None
    return _active[1]


def prepare_for_config(config_path: str | Path) -> tuple[Path, str] | None:
    """For ``secure-cp run``: if the configuration's ``[keys]`` backend is pkcs11, write the provider
    configuration to ``<data_dir>/pkcs11/openssl.cnf`` (an inline PIN goes to a 0600 file there) and return it with
    the PKCS#11 module, for :func:`activate`. None for other configurations; any problem with the file is left to
    the full configuration check that follows."""
    path = Path(config_path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    keys = data.get("keys")
    if not isinstance(keys, dict) or keys.get("backend") != "pkcs11":
        return None
    from .keys.config import KeysConfigError, parse_keys_section
    station = data.get("station") if isinstance(data.get("station"), dict) else {}
    data_dir = Path(station.get("data_dir", "/var/lib/secure-cp"))    # the default of config.StationConfig
    if not data_dir.is_absolute():
        data_dir = path.parent / data_dir
    try:
        cfg = parse_keys_section(keys, path.parent, data_dir)
    except KeysConfigError:
        return None
    directory = data_dir / "pkcs11"
    pin_file = cfg.pin_file
    if pin_file is None:
        pin_file = _write_private(directory / "token.pin", (cfg.pin or "").encode() + b"\n")
    return write_openssl_conf(directory, cfg.module, pin_file), str(cfg.module)  # type: ignore[arg-type]


_libcrypto: ctypes.CDLL | None = None
_libcrypto_failed = False


def _ssl_libcrypto() -> ctypes.CDLL | None:
    """The libcrypto that ``ssl`` uses (loaded by ``_ssl``; the dynamic loader hands out the loaded copy for its
    soname), or None - logged once - when it cannot be reached or is another version."""
    global _libcrypto, _libcrypto_failed
    if _libcrypto is not None or _libcrypto_failed:
        return _libcrypto
    ssl_module = sys.modules.get("ssl")
    try:
        lib = ctypes.CDLL("libcrypto.so.3")
        lib.OpenSSL_version_num.restype = ctypes.c_ulong
        lib.EVP_set_default_properties.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.EVP_set_default_properties.restype = ctypes.c_int
        if ssl_module is None or lib.OpenSSL_version_num() != ssl_module.OPENSSL_VERSION_NUMBER:
            raise OSError("libcrypto.so.3 is not the library of the ssl module")
    except (OSError, AttributeError) as exc:
        _libcrypto_failed = True
        log.warning("OpenSSL's method cache cannot be reset (%s): certificate checks may be sent to the PKCS#11 "
                    "token", exc)
        return None
    _libcrypto = lib
    return lib


def reset_method_cache() -> None:
    """Empty OpenSSL's algorithm cache of this process (libctx of ``ssl``) by setting :data:`DEFAULT_PROPERTIES`
    again, so that the next fetches choose by property - the default provider - instead of finding the pkcs11
    provider's implementation cached for a token key (see the module notes). Cheap: a few algorithms are fetched
    again. Does nothing before ``ssl`` is imported or when :func:`activate` did not run."""
    if active_module() is None or "ssl" not in sys.modules:
        return
    lib = _ssl_libcrypto()
    if lib is not None and lib.EVP_set_default_properties(None, DEFAULT_PROPERTIES.encode()) != 1:
        log.warning("OpenSSL refused the default properties %r", DEFAULT_PROPERTIES)
