"""``cryptography`` private-key objects whose signing is done by a :class:`~.base.KeyBackend`.

``x509.CertificateSigningRequestBuilder().sign(key, hashes.SHA256())`` (and the certificate / OCSP builders) accept
any :class:`ec.EllipticCurvePrivateKey` or :class:`rsa.RSAPrivateKey`: they call its ``sign()``, which hashes in
software and hands the digest to the backend. The key material stays in the backend; everything that would reveal
it (``private_numbers``, ``private_bytes``) and ECDH / RSA decryption raise :class:`KeyBackendError`.

Signing blocks (a token may take 100 ms and more): from asyncio code use :func:`sign_data`, or run a builder's
``sign`` with ``asyncio.to_thread``.
"""
from __future__ import annotations

import asyncio

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .base import KeyBackend, KeyBackendError

__all__ = ["BackendECPrivateKey", "BackendRSAPrivateKey", "private_key_for", "sign_data", "digest_of"]


def digest_of(data: bytes, algorithm: hashes.HashAlgorithm | utils.Prehashed) -> tuple[bytes, hashes.HashAlgorithm]:
    """(digest, hash algorithm) of ``data``: hashed in software, or taken as is when ``algorithm`` is Prehashed."""
    if isinstance(algorithm, utils.Prehashed):
        return data, algorithm._algorithm
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize(), algorithm


class _BackendKey:
    """What both wrappers share: the backend, the label, the cached public key, and the refusals."""

    def __init__(self, backend: KeyBackend, label: str, public) -> None:
        self.backend = backend
        self.label = label
        self._public = public

    def public_key(self):
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def _not_extractable(self, *_args, **_kwargs):
        raise KeyBackendError(f"key {self.label!r} stays in the {self.backend.kind} backend: not exportable")

    private_numbers = _not_extractable
    private_bytes = _not_extractable

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label!r} on {self.backend.kind}>"


class BackendECPrivateKey(_BackendKey, ec.EllipticCurvePrivateKey):
    """An EC private key in a backend: ECDSA signing only."""

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise KeyBackendError(f"key {self.label!r}: only ECDSA signatures")
        digest, algorithm = digest_of(data, signature_algorithm.algorithm)
        return self.backend.sign_digest(self.label, digest, algorithm)

    def exchange(self, algorithm, peer_public_key) -> bytes:
        raise KeyBackendError(f"key {self.label!r}: signing key, no key agreement (ECDH)")


class BackendRSAPrivateKey(_BackendKey, rsa.RSAPrivateKey):
    """An RSA private key in a backend: PKCS#1 v1.5 signing only."""

    def sign(self, data: bytes, padding_: padding.AsymmetricPadding, algorithm) -> bytes:
        if not isinstance(padding_, padding.PKCS1v15):
            raise KeyBackendError(f"key {self.label!r}: only PKCS#1 v1.5 signatures")
        digest, hash_alg = digest_of(data, algorithm)
        return self.backend.sign_digest(self.label, digest, hash_alg)

    def decrypt(self, ciphertext: bytes, padding_: padding.AsymmetricPadding) -> bytes:
        raise KeyBackendError(f"key {self.label!r}: signing key, no decryption")


def private_key_for(backend: KeyBackend, label: str) -> BackendECPrivateKey | BackendRSAPrivateKey:
    """The wrapper matching the type of key ``label`` (KeyNotFoundError if absent)."""
    public = backend.public_key(label)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return BackendECPrivateKey(backend, label, public)
    if isinstance(public, rsa.RSAPublicKey):
        return BackendRSAPrivateKey(backend, label, public)
    raise KeyBackendError(f"key {label!r}: unsupported type {type(public).__name__}")


async def sign_data(backend: KeyBackend, label: str, data: bytes,
                    algorithm: hashes.HashAlgorithm | None = None) -> bytes:
    """Sign ``data`` with key ``label`` without blocking the event loop: hashed here (cheap), signed by the
    backend in a worker thread. SHA-256 unless ``algorithm`` says otherwise."""
    digest, hash_alg = digest_of(data, algorithm or hashes.SHA256())
    return await asyncio.to_thread(backend.sign_digest, label, digest, hash_alg)
