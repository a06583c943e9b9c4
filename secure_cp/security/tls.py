"""TLS for OCPP security profiles 2 and 3 (1.6 Security Whitepaper ed. 3 §2.4/§2.5, 2.0.1 Part 2 A00.FR.3xx/4xx).

:func:`client_context` builds the station's ``ssl.SSLContext``:

* TLS 1.2 or newer only (A00.FR.312/416: TLS 1.0/1.1 are not allowed in OCPP 2.0.1, and a charger built today has
  no reason to use them under 1.6 either);
* TLS 1.2 cipher suites: the four A00.FR.317/318 name (ECDHE-ECDSA and RSA with AES-GCM) plus their ECDHE-RSA
  counterparts (same AES-GCM, with forward secrecy), nothing else: no CBC, no SHA-1 MAC, no RC4/3DES/NULL/anon
  (A00.FR.319/423). TLS 1.3 uses OpenSSL's default TLS 1.3 suites, all AEAD (AES-GCM, ChaCha20-Poly1305);
* no TLS compression (A00.FR.320/424);
* the CSMS certificate verified against the configured CSMS root(s) only, never a system bundle (A00.FR.307/411,
  RFC 5280 path validation, strict X.509 checks), and its host name against the URL (A00.FR.308/412). The CN is
  accepted when the certificate has no subjectAltName: OCPP puts the FQDN in the CN (A00.FR.510);
* profile 3: the station certificate (chain) and its key as the TLS client certificate (A00.FR.401/402).

The private key comes from a :class:`ClientCredential`. :class:`SoftwareCredential` loads PEM files (development
only); :class:`Pkcs11Credential` (HSM, secure element, TPM through tpm2-pkcs11) loads a "PKCS#11 PROVIDER URI" key
file through OpenSSL 3's pkcs11-provider (:mod:`.p11provider`), so the key never enters this process.

:func:`classify_failure` maps a failed handshake to its security event (A00.FR.309/413 InvalidCsmsCertificate /
InvalidCentralSystemCertificate, A00.FR.315/419 InvalidTLSVersion, A00.FR.322/426 InvalidTLSCipherSuite).
:func:`server_context` is the CSMS side, for the embedded CSMS and the tests.
"""
from __future__ import annotations

import logging
import ssl
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Protocol, Sequence

from .. import lazy
from . import p11provider
from .keys.base import pkcs11_uri

x509 = lazy.module("cryptography.x509")
serialization = lazy.module("cryptography.hazmat.primitives.serialization")

__all__ = ["TLS12_CIPHERS", "TlsConfigError", "TlsFailure", "ClientCredential", "SoftwareCredential",
           "Pkcs11Credential", "client_context", "server_context", "classify_failure", "certificate_event",
           "refuse_wildcards", "wildcard_names"]

log = logging.getLogger("secure_cp.security.tls")

#: OpenSSL names of the permitted TLS 1.2 suites, most preferred first.
TLS12_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256",    # TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (A00.FR.318)
    "ECDHE-ECDSA-AES256-GCM-SHA384",    # TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 (A00.FR.318)
    "ECDHE-RSA-AES128-GCM-SHA256",      # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    "ECDHE-RSA-AES256-GCM-SHA384",      # TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    "AES128-GCM-SHA256",                # TLS_RSA_WITH_AES_128_GCM_SHA256 (A00.FR.317/318; no forward secrecy)
    "AES256-GCM-SHA384",                # TLS_RSA_WITH_AES_256_GCM_SHA384 (A00.FR.317/318; no forward secrecy)
))


class TlsConfigError(ValueError):
    """A TLS setting cannot be used (missing or broken file, key does not match certificate). The message names the
    file; ``setting`` names the [security] key it came from (ca_file, cert_file, key_file) for the config layer."""

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class ClientCredential(Protocol):
    """The station's TLS client certificate and the key that signs for it (security profile 3)."""

    def apply(self, ctx: ssl.SSLContext) -> None:
        """Load the certificate chain and the key reference into ``ctx``; raise TlsConfigError if unusable."""


@dataclass(frozen=True)
class SoftwareCredential:
    """Certificate chain and private key in PEM files: for development only (the key is readable by this process).

    :class:`Pkcs11Credential` is the production form: same ``apply``, the key stays in the token."""
    cert_file: Path
    key_file: Path

    def apply(self, ctx: ssl.SSLContext) -> None:
        # Each file is parsed on its own first, so that the error names the file that is broken.
        _check_cert_file(self.cert_file)
        try:
            serialization.load_pem_private_key(_readable(self.key_file, "station private key", "key_file"), None)
        except (ValueError, TypeError) as exc:   # TypeError: the key is encrypted (no passphrase support here)
            raise TlsConfigError(f"station private key file {self.key_file} holds no usable unencrypted PEM "
                                 f"private key: {exc}", "key_file") from None
        try:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        except ssl.SSLError as exc:             # KEY_VALUES_MISMATCH: the key does not belong to the certificate
            raise TlsConfigError(f"station private key {self.key_file} does not match certificate "
                                 f"{self.cert_file}: {exc.reason or exc}", "key_file") from None
        if self.key_file not in _WARNED:
            _WARNED.add(self.key_file)
            log.warning("security profile 3 uses a SOFTWARE private key (%s): for development only", self.key_file)


_WARNED: set[Path] = set()    # software key files already announced in the log (once per process)


class _PinPrompt(Exception):
    """OpenSSL asked for a password: the token refused the configured PIN (see Pkcs11Credential.apply)."""


def _refuse_prompt() -> bytes:
    raise _PinPrompt()


@dataclass(frozen=True)
class Pkcs11Credential:
    """The station certificate chain (PEM file) and its private key ``key_label`` on a PKCS#11 token: the key never
    enters this process. OpenSSL's pkcs11-provider signs the handshake through the token (A00.FR.401/402 with the key
    in an HSM, secure element or TPM). The provider must be active in the process (:mod:`.p11provider`, set up by
    ``secure-cp run`` before ``ssl`` is imported).

    ``key_dir`` receives the "PKCS#11 PROVIDER URI" key file (``<label>.uri.pem``: the URI only, no secret).
    Certificate installation (A02/A03) switches to a new key with :meth:`for_key`."""
    cert_file: Path
    key_label: str
    token: str
    module: Path
    key_dir: Path

    def for_key(self, cert_file: Path, key_label: str) -> "Pkcs11Credential":
        """The same token with another certificate chain and key (e.g. after a signed certificate was installed)."""
        return replace(self, cert_file=cert_file, key_label=key_label)

    @property
    def uri(self) -> str:
        """The RFC 7512 URI of the private key (same form as ``Pkcs11Backend.key_ref``, without CKA_ID)."""
        return pkcs11_uri(self.token, self.key_label)

    @property
    def key_file(self) -> Path:
        return self.key_dir / f"{self.key_label}.uri.pem"

    def check(self) -> None:
        """What can be checked without the token: the certificate file (TlsConfigError naming it)."""
        _check_cert_file(self.cert_file)

    def apply(self, ctx: ssl.SSLContext) -> None:
        self.check()
        where = f"PKCS#11 token {self.token!r} ({self.module})"
        if p11provider.active_module() != str(self.module):
            raise TlsConfigError(f"{where}: OpenSSL's pkcs11-provider is not loaded for this module in this process "
                                 "(secure-cp run sets OPENSSL_CONF before ssl is imported)", "key_label")
        try:
            key_file = p11provider.write_uri_pem(self.key_file, self.uri)
        except OSError as exc:
            raise TlsConfigError(f"cannot write the key reference {self.key_file}: {exc.strerror}",
                                 "key_label") from None
        try:
            ctx.load_cert_chain(str(self.cert_file), str(key_file), password=_refuse_prompt)
        except _PinPrompt:
            raise TlsConfigError(f"{where}: the token refused the configured PIN (keys.pin_file / keys.pin); "
                                 "repeated failures lock the token", "pin_file") from None
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise TlsConfigError(f"{where}: key {self.key_label!r} does not match certificate "
                                     f"{self.cert_file}", "key_label") from None
            raise TlsConfigError(f"{where}: key {self.key_label!r} cannot be used ({exc.reason or exc}): is there "
                                 f"a private key with this label on the token?", "key_label") from None
        ctx.sslobject_class = _TokenSSLObject
        ctx.sslsocket_class = _TokenSSLSocket
        log.info("security profile 3: station key %r stays in %s", self.key_label, where)


class _KeepVerificationInSoftware:
    """Handshakes with a token key: OpenSSL's algorithm cache is reset before and after each handshake step, so that
    the CSMS certificate chain is verified by the default provider, not in the token (where tpm2-pkcs11 cannot do
    it; see :mod:`.p11provider`). The token signs the handshake all the same: its key is the provider's."""

    def do_handshake(self, *args: bool) -> None:     # SSLSocket: block; SSLObject: none
        p11provider.reset_method_cache()
        try:
            super().do_handshake(*args)     # type: ignore[misc]
        finally:
            p11provider.reset_method_cache()


class _TokenSSLObject(_KeepVerificationInSoftware, ssl.SSLObject):
    """asyncio's TLS (the OCPP WebSocket)."""


class _TokenSSLSocket(_KeepVerificationInSoftware, ssl.SSLSocket):
    """Blocking sockets."""


def _check_cert_file(cert_file: Path) -> None:
    try:
        x509.load_pem_x509_certificates(_readable(cert_file, "station certificate", "cert_file"))
    except ValueError as exc:
        raise TlsConfigError(f"station certificate file {cert_file} holds no valid PEM certificate: {exc}",
                             "cert_file") from None


def _readable(path: Path, what: str, setting: str) -> bytes:
    """The file's bytes, or a TlsConfigError naming it."""
    if not path.is_file():
        raise TlsConfigError(f"{what} file {path} does not exist", setting)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"{what} file {path} cannot be read: {exc.strerror}", setting) from None


def _harden(ctx: ssl.SSLContext) -> None:
    """What both ends share: TLS >= 1.2, the permitted suites, no compression, no renegotiation."""
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION


def client_context(security_profile: int, ca_file: Path | None, credential: ClientCredential | None = None,
                   extra_roots: Sequence[x509.Certificate] = ()) -> ssl.SSLContext:
    """The station's TLS context for ``security_profile`` 2 or 3 (see the module docstring).

    ``ca_file``: PEM file with the CSMS root certificate(s) the station trusts; ``extra_roots``: CSMS roots
    installed by the CSMS (certstore, M05), trusted as well (either may be empty, not both). ``credential``:
    required for profile 3, ignored for 2. Raises TlsConfigError with a message naming the file on any unusable
    input."""
    if security_profile not in (2, 3):
        raise TlsConfigError(f"security profile {security_profile} does not use TLS", "ca_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)     # check_hostname on, CERT_REQUIRED, no system roots
    _harden(ctx)
    ctx.hostname_checks_common_name = True           # A00.FR.510: the CSMS FQDN is in the CN
    # Every certificate the station trusts is a trust anchor, also one that is not self-signed: a new CSMS root
    # installed under AdditionalRootCertificateCheck is signed by the old root (M05.FR.10), which goes (M05.FR.13).
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
    if ca_file is not None or not extra_roots:
        if ca_file is None:
            raise TlsConfigError("no CSMS root certificate configured or installed", "ca_file")
        _readable(ca_file, "CSMS root certificate", "ca_file")
        try:
            ctx.load_verify_locations(cafile=str(ca_file))
        except ssl.SSLError as exc:
            raise TlsConfigError(f"CSMS root certificate file {ca_file} holds no valid PEM certificate: "
                                 f"{exc.reason or exc}", "ca_file") from None
    if extra_roots:
        ctx.load_verify_locations(cadata="".join(
            c.public_bytes(serialization.Encoding.PEM).decode() for c in extra_roots))
    if not ctx.get_ca_certs():
        raise TlsConfigError(f"CSMS root certificate file {ca_file} holds no CA certificate", "ca_file")
    if security_profile == 3:
        if credential is None:
            raise TlsConfigError("security profile 3 needs the station certificate and key", "cert_file")
        credential.apply(ctx)
    return ctx


def wildcard_names(peer: dict) -> list[str]:
    """The wildcard DNS names (subjectAltName, or the CN when there is no DNS name) of a certificate in the form of
    ``SSLObject.getpeercert()``."""
    names = [value for kind, value in peer.get("subjectAltName", ()) if kind == "DNS"]
    if not names:
        names = [value for rdn in peer.get("subject", ()) for key, value in rdn if key == "commonName"]
    return [n for n in names if "*" in n]


def refuse_wildcards(ctx: ssl.SSLContext, allowed: Callable[[], bool]) -> None:
    """2.0.1 SecurityCtrlr.AllowCSMSTLSWildcards (errata 2025-02, absent or false: the OCPP-compliant behaviour):
    a CSMS that presents a wildcard server certificate is refused. OpenSSL's host name check accepts wildcards and
    cannot be told otherwise, so the check runs right after the handshake, before a byte of HTTP is sent: it fails
    the handshake like any invalid certificate (SSLCertVerificationError, the InvalidCsmsCertificate event, the
    connection terminated). ``allowed()`` is asked at each handshake (the variable is ReadWrite). Extends the
    context's SSLObject class (a token credential has its own, see :class:`Pkcs11Credential`)."""
    base: type[ssl.SSLObject] = ctx.sslobject_class

    class _NoWildcards(base):  # type: ignore[valid-type,misc]
        def do_handshake(self) -> None:
            super().do_handshake()
            wildcards = [] if allowed() else wildcard_names(self.getpeercert() or {})
            if wildcards:
                err = ssl.SSLCertVerificationError(1, "wildcard CSMS certificate refused")
                err.verify_code = 0
                err.verify_message = (f"wildcard server certificate ({', '.join(wildcards)}) refused: "
                                      "SecurityCtrlr.AllowCSMSTLSWildcards is false")
                raise err

    ctx.sslobject_class = _NoWildcards


def server_context(cert_file: Path, key_file: Path, *, client_ca: Path | None = None,
                   require_client_cert: bool = False, maximum_version: ssl.TLSVersion | None = None,
                   ciphers: str | None = None) -> ssl.SSLContext:
    """A CSMS (TLS server) context: hardened like the station's unless a test asks for an old version
    (``maximum_version``) or other suites (``ciphers``, OpenSSL syntax). ``client_ca`` + ``require_client_cert``:
    security profile 3, the CSMS terminates connections without a valid station certificate (A00.FR.407)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx)
    if maximum_version is not None:
        with warnings.catch_warnings():      # TLS 1.0/1.1 are deprecated: asked for on purpose (TC_A_06 tests)
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = maximum_version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    ctx.load_cert_chain(str(cert_file), str(key_file))
    if client_ca is not None:
        ctx.load_verify_locations(cafile=str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


# ---- failures -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TlsFailure:
    """A handshake failure the station reports: the security event type (None: log only) and a clear text."""
    event: str | None
    text: str


def certificate_event(ocpp_version: str) -> str:
    """The event name for an invalid CSMS certificate: 1.6 whitepaper InvalidCentralSystemCertificate
    (A00.FR.309/413), 2.0.1 InvalidCsmsCertificate (Appendix 1)."""
    return "InvalidCentralSystemCertificate" if ocpp_version.startswith("1.6") else "InvalidCsmsCertificate"


#: OpenSSL reason codes (``SSLError.reason``) -> (event type, what it means).
_VERSION_REASONS = {"UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "WRONG_SSL_VERSION",
                    "NO_PROTOCOLS_AVAILABLE", "WRONG_VERSION_NUMBER"}
_CIPHER_REASONS = {"SSLV3_ALERT_HANDSHAKE_FAILURE", "NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE",
                   "TLSV1_ALERT_INSUFFICIENT_SECURITY", "WRONG_CIPHER_RETURNED"}
_CLIENT_CERT_REASONS = {"TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE",
                        "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_EXPIRED", "SSLV3_ALERT_CERTIFICATE_REVOKED",
                        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
                        "TLSV1_ALERT_ACCESS_DENIED"}


def _ssl_error(exc: BaseException | None) -> ssl.SSLError | None:
    """The SSLError behind a connect failure (websockets / asyncio may wrap it), if any."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ssl.SSLError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def classify_failure(exc: BaseException, ocpp_version: str) -> TlsFailure | None:
    """What a failed connection attempt means in TLS terms, or None when TLS was not the cause.

    * the CSMS certificate fails verification (unknown CA, expired, not yet valid, wrong host name, bad chain):
      InvalidCsmsCertificate / InvalidCentralSystemCertificate (A00.FR.309/413; 2.0.1 A00.FR.3xx, TC_A_05);
    * the CSMS offers only TLS < 1.2 (or SSL): InvalidTLSVersion (A00.FR.315/419, TC_A_06);
    * no common cipher suite (the CSMS offers only weak ones): InvalidTLSCipherSuite (A00.FR.322/426). Under TLS
      1.2 a CSMS that insists on a client certificate the station did not send answers with the same
      handshake_failure alert; the text says so;
    * the CSMS refused the station certificate (profile 3): FailedToAuthenticateAtCsms (Appendix 1, not critical).
    The handshake is aborted by OpenSSL in every case: the connection is terminated (A00.FR.310/414)."""
    err = _ssl_error(exc)
    if err is None:
        return None
    reason = getattr(err, "reason", None) or ""
    if isinstance(err, ssl.SSLCertVerificationError):
        detail = err.verify_message or reason or str(err)
        return TlsFailure(certificate_event(ocpp_version), f"invalid CSMS certificate: {detail}")
    if reason in _VERSION_REASONS:
        return TlsFailure("InvalidTLSVersion", f"the CSMS offers no TLS version >= 1.2 ({reason})")
    if reason in _CIPHER_REASONS:
        return TlsFailure("InvalidTLSCipherSuite",
                          f"no permitted cipher suite in common with the CSMS ({reason}; under TLS 1.2 also the "
                          "answer of a CSMS that requires a client certificate)")
    if reason in _CLIENT_CERT_REASONS:
        return TlsFailure("FailedToAuthenticateAtCsms", f"the CSMS refused the station certificate ({reason})")
    return TlsFailure(None, f"TLS failure: {reason or err}")
