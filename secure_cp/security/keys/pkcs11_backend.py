"""PKCS#11 keys through ``python-pkcs11``: HSMs, secure elements, and TPM 2.0 through tpm2-pkcs11.

Keys are generated on the token (``CKA_TOKEN``, ``CKA_PRIVATE``, ``CKA_SENSITIVE``, not ``CKA_EXTRACTABLE``, sign
only): the private key never exists outside it. Signing is portable across tokens: the digest is computed in
software and the token signs it with plain ``CKM_ECDSA`` (SoftHSM2 and tpm2-pkcs11 lack ``CKM_ECDSA_SHA256`` /
``_SHA384``), the raw ``r || s`` result is DER-encoded here; RSA signs the DER DigestInfo with ``CKM_RSA_PKCS``.

One logged-in session is opened at construction (so a wrong PIN fails at start with a clear message) and used by
every operation under :attr:`Pkcs11Backend.session_lock`: a PKCS#11 session is not thread-safe, and signing runs in
worker threads. A session that the token invalidated (token removed, module restarted) is reopened once.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, TypeVar

import pkcs11
from pkcs11 import DEFAULT, Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .base import (KeyAlgorithm, KeyBackend, KeyBackendError, KeyBackendUnavailable, KeyAuthError, KeyExistsError,
                   KeyInfo, KeyNotFoundError, KeyRef, algorithm_of_public_key, check_digest, check_label, pkcs11_uri)

__all__ = ["Pkcs11Backend", "DEFAULT_MODULES", "default_module"]

log = logging.getLogger("secure_cp.security.keys.pkcs11")

#: Where Debian puts the modules this project is tested with (first existing one is the default).
DEFAULT_MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                   "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so")

_CURVE_OID = {KeyAlgorithm.EC_P256: "secp256r1", KeyAlgorithm.EC_P384: "secp384r1"}

# DER DigestInfo prefixes (RFC 8017 §9.2 note 1): CKM_RSA_PKCS signs DigestInfo || digest.
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}

# The private-key template: generated on and kept in the token, never readable, only for signing.
_PRIVATE_TEMPLATE = {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                     Attribute.EXTRACTABLE: False, Attribute.SIGN: True, Attribute.DECRYPT: False,
                     Attribute.UNWRAP: False, Attribute.DERIVE: False}
_PUBLIC_TEMPLATE = {Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.VERIFY: True}
# tpm2-pkcs11 refuses a template that sets usage flags the TPM object does not carry (ENCRYPT/DECRYPT, WRAP/UNWRAP,
# DERIVE = false: "User specified and TPM specified attr mismatch"): for such a token these flags are left to the
# token (DEFAULT drops them from the template); sensitive, not extractable and sign stay required.
_TOKEN_DEFINED = {Attribute.ENCRYPT: DEFAULT, Attribute.WRAP: DEFAULT, Attribute.DECRYPT: DEFAULT,
                  Attribute.UNWRAP: DEFAULT, Attribute.DERIVE: DEFAULT}

# Errors after which the session is gone and reopening it may help.
_LIST_ATTEMPTS = 3      # searches in list_keys when objects vanish under it
_SESSION_LOST = (p11e.SessionHandleInvalid, p11e.SessionClosed, p11e.DeviceRemoved, p11e.TokenNotPresent,
                 p11e.UserNotLoggedIn)

# The module is loaded once per process (C_Initialize); backends count their uses so the last close() finalizes it.
_modules_lock = threading.Lock()
_module_users: dict[str, int] = {}

T = TypeVar("T")


def _load_module(module: str):
    with _modules_lock:
        try:
            lib = pkcs11.lib(module)
        except p11e.PKCS11Error as exc:
            raise KeyBackendUnavailable(f"PKCS#11 module {module}: cannot load ({exc or type(exc).__name__})") from None
        _module_users[module] = _module_users.get(module, 0) + 1
        return lib


def _release_module(module: str) -> None:
    with _modules_lock:
        left = _module_users.get(module, 0) - 1
        if left > 0:
            _module_users[module] = left
            return
        _module_users.pop(module, None)
        from ..p11provider import active_module
        if active_module() == module:    # OpenSSL's pkcs11-provider works with it too: C_Finalize would end its
            return                       # sessions (the module stays loaded until the process exits)
        pkcs11.unload(module)    # C_Finalize: the next backend re-reads the module's configuration


def default_module() -> str | None:
    """The first of :data:`DEFAULT_MODULES` that exists."""
    return next((m for m in DEFAULT_MODULES if os.path.exists(m)), None)


class Pkcs11Backend(KeyBackend):
    """Key pairs on the PKCS#11 token labelled ``token`` of ``module``, logged in with the user PIN."""

    kind = "pkcs11"

    def __init__(self, module: str | Path, token: str, pin: str) -> None:
        self.module = str(module)
        self.token_label = token
        if not Path(self.module).is_file():
            raise KeyBackendUnavailable(f"PKCS#11 module {self.module}: no such file")
        #: Held while the token session is in use (re-entrant: a caller may hold it around several operations).
        self.session_lock = threading.RLock()
        self._pin = pin
        self._lib = _load_module(self.module)
        self._session = None
        self._closed = False
        try:
            with self.session_lock:
                self._open()
        except BaseException:
            _release_module(self.module)
            raise
        log.info("PKCS#11 key backend: token %r of %s", token, self.module)

    # Session handling.

    def _open(self) -> None:
        where = f"PKCS#11 token {self.token_label!r} ({self.module})"
        try:
            token = self._lib.get_token(token_label=self.token_label)
        except p11e.NoSuchToken:
            raise KeyBackendUnavailable(f"{where}: no such token (initialised? softhsm2-util --show-slots)") from None
        except p11e.MultipleTokensReturned:
            raise KeyBackendUnavailable(f"{where}: several tokens have this label") from None
        try:
            self._session = token.open(user_pin=self._pin, rw=True)
        except p11e.PinIncorrect:
            raise KeyAuthError(f"{where}: the user PIN was rejected (CKR_PIN_INCORRECT); check the configured PIN "
                               f"- repeated failures lock the token") from None
        except p11e.PinLocked:
            raise KeyAuthError(f"{where}: the user PIN is locked (CKR_PIN_LOCKED); the security officer must "
                               f"reset it") from None
        except (p11e.PinLenRange, p11e.PinInvalid, p11e.PinExpired, p11e.UserPinNotInitialized) as exc:
            raise KeyAuthError(f"{where}: login refused ({type(exc).__name__})") from None
        except p11e.PKCS11Error as exc:
            raise KeyBackendUnavailable(f"{where}: cannot open a session ({type(exc).__name__})") from None

    def _with_session(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(session)`` under the lock; reopen the session once if the token dropped it; map the token's
        errors to KeyBackendError naming ``what``."""
        with self.session_lock:
            if self._closed:
                raise KeyBackendUnavailable(f"PKCS#11 token {self.token_label!r}: backend closed")
            try:
                if self._session is None:     # lost earlier and not reopened then
                    self._open()
                try:
                    return fn(self._session)
                except _SESSION_LOST as exc:
                    log.warning("PKCS#11 token %r: session lost (%s), reopening", self.token_label,
                                type(exc).__name__)
                    self._session = None
                    self._open()
                    return fn(self._session)
            except KeyBackendError:
                raise
            except p11e.PKCS11Error as exc:
                raise KeyBackendError(f"PKCS#11 token {self.token_label!r}: {what} failed "
                                      f"({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})") from None

    def close(self) -> None:
        with self.session_lock:
            if self._closed:
                return
            self._closed = True
            if self._session is not None:
                try:
                    self._session.close()
                except p11e.PKCS11Error:
                    pass
                self._session = None
        _release_module(self.module)

    # Objects.

    def _find(self, session, label: str, object_class: ObjectClass):
        try:
            return session.get_key(object_class=object_class, label=check_label(label))
        except p11e.NoSuchKey:
            raise KeyNotFoundError(f"PKCS#11 token {self.token_label!r}: no key {label!r}") from None
        except p11e.MultipleObjectsReturned:
            raise KeyBackendError(f"PKCS#11 token {self.token_label!r}: several keys labelled {label!r}") from None

    def private_attributes(self, label: str, names: list[Attribute]) -> dict[Attribute, Any]:
        """Attributes of the private-key object (for audits: SENSITIVE, EXTRACTABLE, ...)."""
        def read(session):
            key = self._find(session, label, ObjectClass.PRIVATE_KEY)
            return {name: key[name] for name in names}
        return self._with_session(f"reading key {label!r}", read)

    def generate(self, label: str, algorithm: KeyAlgorithm) -> KeyInfo:
        algorithm = KeyAlgorithm(algorithm)
        check_label(label)

        def gen(session):
            for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                if any(True for _ in session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: label})):
                    raise KeyExistsError(f"PKCS#11 token {self.token_label!r}: key {label!r} already exists")
            key_id = os.urandom(16)    # CKA_ID pairs the two objects (and a certificate stored later)
            for relaxed in (False, True):
                common = dict(store=True, label=label, id=key_id,
                              capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                              public_template={**_PUBLIC_TEMPLATE, **(_TOKEN_DEFINED if relaxed else {})},
                              private_template={**_PRIVATE_TEMPLATE, **(_TOKEN_DEFINED if relaxed else {})})
                try:
                    if algorithm.is_ec:
                        params = session.create_domain_parameters(
                            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(_CURVE_OID[algorithm])},
                            local=True)
                        params.generate_keypair(**common)
                    else:
                        session.generate_keypair(KeyType.RSA, algorithm.key_size, **common)
                    return
                except (p11e.GeneralError, p11e.TemplateInconsistent, p11e.AttributeValueInvalid) as exc:
                    if relaxed:
                        raise
                    log.info("PKCS#11 token %r refused the strict key template (%s): usage flags other than "
                             "sign are left to the token", self.token_label, type(exc).__name__)
        self._with_session(f"generating {algorithm.value} key {label!r}", gen)
        log.info("PKCS#11 token %r: %s key %r generated on the token (sensitive, not extractable)",
                 self.token_label, algorithm.value, label)
        return KeyInfo(label, algorithm, self.kind)

    def _spki(self, public_key) -> bytes:
        if public_key.key_type == KeyType.EC:
            return encode_ec_public_key(public_key)
        if public_key.key_type == KeyType.RSA:
            numbers = rsa.RSAPublicNumbers(int.from_bytes(public_key[Attribute.PUBLIC_EXPONENT], "big"),
                                           int.from_bytes(public_key[Attribute.MODULUS], "big"))
            return numbers.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        raise KeyBackendError(f"PKCS#11 token {self.token_label!r}: unsupported key type {public_key.key_type!r}")

    def public_key_der(self, label: str) -> bytes:
        return self._with_session(f"reading public key {label!r}",
                                  lambda s: self._spki(self._find(s, label, ObjectClass.PUBLIC_KEY)))

    def sign_digest(self, label: str, digest: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
        check_digest(digest, algorithm)

        def sign(session):
            key = self._find(session, label, ObjectClass.PRIVATE_KEY)
            if key.key_type == KeyType.EC:
                raw = key.sign(digest, mechanism=Mechanism.ECDSA)    # r || s, each the curve's size
                half = len(raw) // 2
                return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
            if key.key_type == KeyType.RSA:
                return key.sign(_DIGEST_INFO[algorithm.name] + digest, mechanism=Mechanism.RSA_PKCS)
            raise KeyBackendError(f"PKCS#11 token {self.token_label!r}: key {label!r} has unsupported type "
                                  f"{key.key_type!r}")
        return self._with_session(f"signing with key {label!r}", sign)

    def delete(self, label: str) -> None:
        def destroy(session):
            found = [obj for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY)
                     for obj in session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: check_label(label)})]
            if not found:
                raise KeyNotFoundError(f"PKCS#11 token {self.token_label!r}: no key {label!r}")
            for obj in found:
                obj.destroy()
        self._with_session(f"deleting key {label!r}", destroy)
        log.info("PKCS#11 token %r: key %r destroyed", self.token_label, label)

    def list_keys(self) -> list[KeyInfo]:
        def search(session):
            out = []
            for obj in session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY}):
                label = obj.label
                try:
                    alg = algorithm_of_public_key(serialization.load_der_public_key(self._spki(obj)))
                except (KeyBackendError, ValueError) as exc:
                    log.warning("PKCS#11 token %r: object %r skipped: %s", self.token_label, label, exc)
                    continue
                out.append(KeyInfo(label, alg, self.kind))
            return sorted(out, key=lambda k: k.label)

        def collect(session):
            # An object destroyed by another session (the station deleting its previous key, A02.FR.10) after the
            # search found it: python-pkcs11's search stops on CKR_OBJECT_HANDLE_INVALID; search again.
            for _ in range(_LIST_ATTEMPTS - 1):
                try:
                    return search(session)
                except p11e.ObjectHandleInvalid:
                    continue
            return search(session)
        return self._with_session("listing keys", collect)

    def key_ref(self, label: str) -> KeyRef:
        """The key's RFC 7512 URI (token label, object label, CKA_ID) and the module: what a "PKCS#11 PROVIDER URI"
        key file and OpenSSL's pkcs11-provider need (see :class:`~secure_cp.security.tls.Pkcs11Credential`)."""
        key_id = self._with_session(f"finding key {label!r}",
                                    lambda s: self._find(s, label, ObjectClass.PRIVATE_KEY)[Attribute.ID])
        return KeyRef(self.kind, pkcs11_uri(self.token_label, label, key_id), self.module)
