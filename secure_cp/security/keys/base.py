"""The key-backend interface: every private-key operation of the station goes through one :class:`KeyBackend`.

A backend holds named key pairs (``label``) and offers: generate a pair on the backend, the public key as DER
SubjectPublicKeyInfo, sign a digest that was computed in software, delete, list, and a :class:`KeyRef` that tells
TLS (OpenSSL) where the key is without exporting it. Signatures come back in the form X.509 and TLS use: ECDSA as
a DER ``Ecdsa-Sig-Value`` (RFC 3279), RSA as PKCS#1 v1.5 over the DER DigestInfo.

Backends: :class:`~.software.SoftwareBackend` (PEM files, development only),
:class:`~.pkcs11_backend.Pkcs11Backend` (HSMs, secure elements, TPMs through tpm2-pkcs11) and
:class:`~.tpm2_backend.Tpm2Backend` (TPM 2.0 directly through tpm2-pytss; no TLS key reference).
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum

from typing import TYPE_CHECKING

from ... import lazy

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

hashes = lazy.module("cryptography.hazmat.primitives.hashes")
serialization = lazy.module("cryptography.hazmat.primitives.serialization")
ec = lazy.module("cryptography.hazmat.primitives.asymmetric.ec")
rsa = lazy.module("cryptography.hazmat.primitives.asymmetric.rsa")

__all__ = ["KeyAlgorithm", "KeyInfo", "KeyRef", "KeyBackend", "KeyBackendError", "KeyNotFoundError",
           "KeyExistsError", "KeyAuthError", "KeyBackendUnavailable", "check_label", "check_digest", "pkcs11_uri",
           "algorithm_of_public_key"]


class KeyBackendError(Exception):
    """A key operation failed; the message says which key, on which backend, and why."""


class KeyNotFoundError(KeyBackendError):
    """No key with that label on the backend."""


class KeyExistsError(KeyBackendError):
    """A key with that label already exists (keys are never overwritten: delete first)."""


class KeyAuthError(KeyBackendError):
    """The backend refused the credentials (wrong or locked PIN)."""


class KeyBackendUnavailable(KeyBackendError):
    """The backend cannot be reached (PKCS#11 module missing, token absent, key directory unusable)."""


class KeyAlgorithm(str, Enum):
    """Key types a backend generates: ECDSA P-256 / P-384 (OCPP's TLS suites and CSRs), RSA where a CSMS needs it."""
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"

    @property
    def is_ec(self) -> bool:
        return self in (KeyAlgorithm.EC_P256, KeyAlgorithm.EC_P384)

    @property
    def curve(self) -> ec.EllipticCurve:
        """The cryptography curve of an EC algorithm."""
        if self is KeyAlgorithm.EC_P256:
            return ec.SECP256R1()
        if self is KeyAlgorithm.EC_P384:
            return ec.SECP384R1()
        raise ValueError(f"{self.value} is not an elliptic-curve algorithm")

    @property
    def key_size(self) -> int:
        """Bits: the curve size or the RSA modulus length."""
        return int(self.value.split("-")[1].lstrip("p"))


@dataclass(frozen=True)
class KeyInfo:
    """One key pair held by a backend."""
    label: str
    algorithm: KeyAlgorithm
    backend: str          # "software", "pkcs11" or "tpm2"


@dataclass(frozen=True)
class KeyRef:
    """Where TLS finds a private key without this process reading it.

    ``backend == "software"``: ``uri`` is the path of the PEM file. ``backend == "pkcs11"``: ``uri`` is the RFC 7512
    ``pkcs11:`` URI of the private key object (token and object label, never the PIN) and ``module`` the PKCS#11
    module, for OpenSSL 3's pkcs11-provider (a "PKCS#11 PROVIDER URI" key file holds the URI)."""
    backend: str
    uri: str
    module: str | None = None


_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def pkcs11_uri(token: str, label: str, key_id: bytes | None = None) -> str:
    """The RFC 7512 URI of the private key ``label`` (and CKA_ID ``key_id``) on token ``token``; never a PIN."""
    from urllib.parse import quote
    uri = f"pkcs11:token={quote(token, safe='')};object={quote(label, safe='')}"
    if key_id:
        uri += ";id=" + "".join(f"%{b:02x}" for b in key_id)
    return uri + ";type=private"


def check_label(label: str) -> str:
    """A key label is 1..64 characters of letters, digits, '.', '_' and '-', starting with a letter or digit: safe
    as a file name and in a pkcs11: URI without escaping surprises."""
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise KeyBackendError(f"key label {label!r}: 1..64 of A-Z a-z 0-9 . _ -, starting with a letter or digit")
    return label


def check_digest(digest: bytes, algorithm: hashes.HashAlgorithm) -> None:
    """Refuse a digest whose length does not match its hash algorithm (a caller passing the message by mistake)."""
    if not isinstance(algorithm, (hashes.SHA256, hashes.SHA384, hashes.SHA512)):
        raise KeyBackendError(f"hash {algorithm.name}: only SHA-256, SHA-384 and SHA-512 are signed")
    if len(digest) != algorithm.digest_size:
        raise KeyBackendError(f"digest of {len(digest)} bytes given for {algorithm.name} "
                              f"({algorithm.digest_size} bytes expected): pass the hash, not the message")


def algorithm_of_public_key(key: PublicKeyTypes) -> KeyAlgorithm:
    """The :class:`KeyAlgorithm` of a public key; KeyBackendError for any other kind."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        for alg in (KeyAlgorithm.EC_P256, KeyAlgorithm.EC_P384):
            if key.curve.name == alg.curve.name:
                return alg
    if isinstance(key, rsa.RSAPublicKey) and key.key_size in (2048, 3072):
        return KeyAlgorithm(f"rsa-{key.key_size}")
    raise KeyBackendError(f"unsupported key type {type(key).__name__}")


class KeyBackend(ABC):
    """Key pairs that never leave their backend. Implementations are thread-safe: every method may be called from
    worker threads (signing runs off the event loop, see :func:`~.wrapper.sign_data`)."""

    #: "software", "pkcs11" or "tpm2": recorded in :class:`KeyInfo` and :class:`KeyRef`.
    kind: str = ""

    @abstractmethod
    def generate(self, label: str, algorithm: KeyAlgorithm) -> KeyInfo:
        """Generate a key pair on the backend under ``label``; KeyExistsError if the label is taken."""

    @abstractmethod
    def public_key_der(self, label: str) -> bytes:
        """The public key as DER SubjectPublicKeyInfo."""

    @abstractmethod
    def sign_digest(self, label: str, digest: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
        """Sign ``digest`` (already hashed with ``algorithm``): DER ECDSA signature, or RSA PKCS#1 v1.5."""

    @abstractmethod
    def delete(self, label: str) -> None:
        """Destroy the key pair; KeyNotFoundError if there is none."""

    @abstractmethod
    def list_keys(self) -> list[KeyInfo]:
        """Every key pair on the backend, sorted by label."""

    @abstractmethod
    def key_ref(self, label: str) -> KeyRef:
        """Where TLS finds the private key (see :class:`KeyRef`)."""

    def close(self) -> None:
        """Release the backend (sessions, module). The default holds nothing."""

    # Shared on top of the abstract operations.

    def public_key(self, label: str) -> PublicKeyTypes:
        """The public key as a ``cryptography`` object."""
        return serialization.load_der_public_key(self.public_key_der(label))

    def info(self, label: str) -> KeyInfo:
        """The :class:`KeyInfo` of one key; KeyNotFoundError if absent."""
        return KeyInfo(label, algorithm_of_public_key(self.public_key(label)), self.kind)

    def private_key(self, label: str):
        """A ``cryptography`` private-key object whose signing is done by this backend (for CSR and certificate
        builders): :class:`~.wrapper.BackendECPrivateKey` or :class:`~.wrapper.BackendRSAPrivateKey`."""
        from .wrapper import private_key_for
        return private_key_for(self, label)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
