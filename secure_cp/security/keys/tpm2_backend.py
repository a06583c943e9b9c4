"""TPM 2.0 keys directly through ``tpm2-pytss`` (ESAPI), for targets without tpm2-pkcs11. Optional extra:
``pip install secure-cp[tpm2]`` (needs the libtss2 libraries: Debian ``libtss2-dev`` to build it).

Keys are created by the TPM (TPM2_Create) under a persistent primary storage key in the owner hierarchy (the
"SRK", ECC P-256, restricted decrypt, at :data:`DEFAULT_PARENT` unless configured; created and made persistent on
first use when the handle is free). TPM2_Create returns the public area and the private area *encrypted by the
SRK*: the private key is only ever wrapped by this TPM (``fixedTPM``, ``fixedParent``, ``sensitiveDataOrigin``), so
it is non-extractable by construction. The pair is kept as a blob ``<dir>/<label>.tpm2`` (mode 0600, written
atomically: marshalled TPM2B_PUBLIC followed by TPM2B_PRIVATE) and loaded into the TPM for each operation
(TPM2_Load, TPM2_Sign, TPM2_FlushContext): no transient object stays loaded, so the backend also works over a TCTI
without resource manager (the direct ``swtpm:`` TCTI in tests, where the TPM has only three object slots).

Keys carry no scheme of their own (TPM_ALG_NULL): TPM2_Sign gets ECDSA / RSASSA with the hash of the digest, so one
P-256 key signs SHA-256 and SHA-384 digests. The key's authValue is empty (``noDA``, ``userWithAuth``): access
control is the TPM device's permissions (``/dev/tpmrm0``, group ``tss``) plus the blob directory (0700) - a blob is
useless on another TPM. ECDSA results are DER-encoded here; RSA signs PKCS#1 v1.5 (the TPM builds the DigestInfo).

TLS: this backend has no :meth:`key_ref` - OpenSSL cannot use these blobs. A station whose TLS key lives in a TPM
uses the ``pkcs11`` backend with tpm2-pkcs11 and pkcs11-provider (see hsm/README.md).

One ESAPI context per backend, opened at construction (an unreachable TPM fails at start), every TPM command under
:attr:`Tpm2Backend.lock` (ESAPI contexts are not thread-safe; signing runs in worker threads).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, TypeVar

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .base import (KeyAlgorithm, KeyBackend, KeyBackendError, KeyBackendUnavailable, KeyExistsError, KeyInfo,
                   KeyNotFoundError, KeyRef, algorithm_of_public_key, check_digest, check_label)
from ...fsutil import fsync_dir
from .software import create_key_file

try:    # the optional extra: secure-cp[tpm2]
    from tpm2_pytss import (ESAPI, ESYS_TR, TPM2_ALG, TPM2_CAP, TPM2B_PRIVATE, TPM2B_PUBLIC, TPMA_OBJECT,
                            TPMT_SIG_SCHEME, TSS2_Exception)
except ImportError:      # pragma: no cover - reported when the backend is opened
    ESAPI = None

__all__ = ["Tpm2Backend", "DEFAULT_TCTI", "DEFAULT_PARENT"]

log = logging.getLogger("secure_cp.security.keys.tpm2")

#: The kernel's resource manager: what a target uses (user in group ``tss``).
DEFAULT_TCTI = "device:/dev/tpmrm0"
#: The TCG's SRK handle (TCG TPM v2.0 Provisioning Guidance, persistent storage primary key).
DEFAULT_PARENT = 0x81000001

_SUFFIX = ".tpm2"
_MAGIC = b"SCPTPM2\x01"         # blob format version: marshalled TPM2B_PUBLIC || TPM2B_PRIVATE follow

# The key is created in the TPM, bound to it and to its parent, signing only, no dictionary-attack lockout for the
# empty authValue.
_KEY_ATTRS = ("FIXEDTPM", "FIXEDPARENT", "SENSITIVEDATAORIGIN", "USERWITHAUTH", "SIGN_ENCRYPT", "NODA")
# The primary storage key: a restricted decryption key (what a parent must be).
_SRK_ATTRS = ("FIXEDTPM", "FIXEDPARENT", "SENSITIVEDATAORIGIN", "USERWITHAUTH", "NODA", "RESTRICTED", "DECRYPT")
_TEMPLATES = {KeyAlgorithm.EC_P256: "ecc256", KeyAlgorithm.EC_P384: "ecc384", KeyAlgorithm.RSA_2048: "rsa2048",
              KeyAlgorithm.RSA_3072: "rsa3072"}

T = TypeVar("T")


def _attrs(names: tuple[str, ...]) -> int:
    value = 0
    for name in names:
        value |= getattr(TPMA_OBJECT, name)
    return value


class Tpm2Backend(KeyBackend):
    """Key blobs in ``directory`` under the persistent primary ``parent`` of the TPM reached through ``tcti``
    (tpm2-tools syntax: ``device:/dev/tpmrm0``, ``swtpm:host=127.0.0.1,port=2321``, ``tabrmd:bus_type=session``)."""

    kind = "tpm2"

    def __init__(self, directory: str | Path, tcti: str = DEFAULT_TCTI, parent: int = DEFAULT_PARENT) -> None:
        if ESAPI is None:
            raise KeyBackendUnavailable("TPM 2.0 backend: tpm2-pytss is not installed (pip install "
                                        "'secure-cp[tpm2]'; it needs Debian's libtss2-dev to build)")
        if not 0x81000000 <= parent <= 0x817FFFFF:
            raise KeyBackendError(f"TPM 2.0 backend: parent {parent:#x} is not an owner persistent handle "
                                  f"(0x81000000..0x817fffff)")
        self.directory = Path(directory)
        self.tcti = tcti
        self.parent = parent
        #: Held around every TPM command sequence (re-entrant).
        self.lock = threading.RLock()
        self._where = f"TPM 2.0 ({tcti})"
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise KeyBackendUnavailable(f"{self._where}: key directory {self.directory}: {exc.strerror}") from None
        try:
            self._esys = ESAPI(tcti)
        except TSS2_Exception as exc:
            raise KeyBackendUnavailable(f"{self._where}: cannot open the TCTI ({exc})") from None
        try:
            with self.lock:
                self._parent_tr = self._tpm("opening the primary key", self._ensure_parent)
        except BaseException:
            self._esys.close()
            raise
        self._closed = False
        log.info("TPM 2.0 key backend: %s, parent %#x, blobs in %s", tcti, parent, self.directory)

    # TPM access.

    def _tpm(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` under the lock; a TSS error becomes KeyBackendError naming ``what``."""
        with self.lock:
            if getattr(self, "_closed", False):
                raise KeyBackendUnavailable(f"{self._where}: backend closed")
            try:
                return fn()
            except TSS2_Exception as exc:
                raise KeyBackendError(f"{self._where}: {what} failed ({exc})") from None

    def _ensure_parent(self):
        """The ESYS_TR of the persistent primary; created (SRK template) and made persistent when absent. An object
        at the handle that cannot be a parent is refused, never replaced."""
        _, data = self._esys.get_capability(TPM2_CAP.HANDLES, self.parent, 1)
        handles = list(data.data.handles.handle)[:data.data.handles.count]
        if self.parent not in handles:
            template = TPM2B_PUBLIC.parse("ecc256:aes128cfb", objectAttributes=_attrs(_SRK_ATTRS))
            transient = self._esys.create_primary(None, template, ESYS_TR.OWNER)[0]
            try:
                self._esys.evict_control(ESYS_TR.OWNER, transient, self.parent)
            finally:
                self._esys.flush_context(transient)
            log.info("%s: primary storage key created at persistent handle %#x", self._where, self.parent)
        tr = self._esys.tr_from_tpmpublic(self.parent)
        attrs = int(self._esys.read_public(tr)[0].publicArea.objectAttributes)
        need = _attrs(("RESTRICTED", "DECRYPT", "FIXEDTPM"))
        if attrs & need != need or attrs & TPMA_OBJECT.SIGN_ENCRYPT:
            self._esys.tr_close(tr)
            raise KeyBackendUnavailable(f"{self._where}: the object at {self.parent:#x} is not a storage key "
                                        f"(restricted decrypt); configure another keys.parent")
        return tr

    def close(self) -> None:
        with self.lock:
            if getattr(self, "_closed", True):
                return
            self._closed = True
            self._esys.close()

    # Blobs.

    def path(self, label: str) -> Path:
        """The blob file of ``label``."""
        return self.directory / (check_label(label) + _SUFFIX)

    def _read_blob(self, label: str) -> tuple[TPM2B_PUBLIC, TPM2B_PRIVATE]:
        path = self.path(label)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyNotFoundError(f"{self._where}: no key {label!r} ({path})") from None
        except OSError as exc:
            raise KeyBackendError(f"{self._where}: key {label!r}: cannot read {path}: {exc.strerror}") from None
        try:
            if not data.startswith(_MAGIC):
                raise ValueError("not a secure-cp TPM key blob")
            public, used = TPM2B_PUBLIC.unmarshal(data[len(_MAGIC):])
            private, used2 = TPM2B_PRIVATE.unmarshal(data[len(_MAGIC) + used:])
            if len(_MAGIC) + used + used2 != len(data):
                raise ValueError("trailing bytes")
        except (ValueError, TSS2_Exception) as exc:
            raise KeyBackendError(f"{self._where}: key {label!r}: {path} is damaged ({exc})") from None
        return public, private

    # Operations.

    def generate(self, label: str, algorithm: KeyAlgorithm) -> KeyInfo:
        algorithm = KeyAlgorithm(algorithm)
        path = self.path(label)
        if path.exists():     # checked again, atomically, when the blob is linked into place
            raise KeyExistsError(f"{self._where}: key {label!r} already exists ({path})")
        template = TPM2B_PUBLIC.parse(_TEMPLATES[algorithm], objectAttributes=_attrs(_KEY_ATTRS))
        private, public = self._tpm(f"generating {algorithm.value} key {label!r}",
                                    lambda: self._esys.create(self._parent_tr, None, template)[:2])
        create_key_file(path, _MAGIC + public.marshal() + private.marshal(), f"{self._where}: key {label!r}")
        log.info("%s: %s key %r created by the TPM (fixedTPM, private part wrapped by %#x) in %s", self._where,
                 algorithm.value, label, self.parent, path)
        return KeyInfo(label, algorithm, self.kind)

    def public_key_der(self, label: str) -> bytes:
        public, _ = self._read_blob(label)
        try:
            return public.to_der()
        except ValueError as exc:
            raise KeyBackendError(f"{self._where}: key {label!r}: unsupported public area ({exc})") from None

    def sign_digest(self, label: str, digest: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
        check_digest(digest, algorithm)
        public, private = self._read_blob(label)
        is_ec = public.publicArea.type == TPM2_ALG.ECC
        scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.ECDSA if is_ec else TPM2_ALG.RSASSA)
        scheme.details.any.hashAlg = getattr(TPM2_ALG, algorithm.name.upper())

        def sign():
            handle = self._esys.load(self._parent_tr, private, public)
            try:
                return self._esys.sign(handle, digest, scheme)
            finally:
                self._esys.flush_context(handle)    # nothing stays loaded (direct TCTI: three object slots)
        signature = self._tpm(f"signing with key {label!r}", sign)
        if is_ec:
            return encode_dss_signature(int.from_bytes(bytes(signature.signature.ecdsa.signatureR), "big"),
                                        int.from_bytes(bytes(signature.signature.ecdsa.signatureS), "big"))
        return bytes(signature.signature.rsassa.sig)

    def delete(self, label: str) -> None:
        path = self.path(label)
        try:
            path.unlink()     # the TPM holds nothing of the key: without its blob it is gone
        except FileNotFoundError:
            raise KeyNotFoundError(f"{self._where}: no key {label!r} ({path})") from None
        except OSError as exc:
            raise KeyBackendError(f"{self._where}: key {label!r}: cannot delete {path}: {exc.strerror}") from None
        fsync_dir(self.directory)
        log.info("%s: key %r deleted", self._where, label)

    def list_keys(self) -> list[KeyInfo]:
        out = []
        for path in sorted(self.directory.glob("*" + _SUFFIX)):
            label = path.name[:-len(_SUFFIX)]
            try:
                der = self.public_key_der(label)
                out.append(KeyInfo(label, algorithm_of_public_key(serialization.load_der_public_key(der)),
                                   self.kind))
            except KeyBackendError as exc:
                log.warning("%s: key blob %s skipped: %s", self._where, path, exc)
        return out

    def key_ref(self, label: str) -> KeyRef:
        """Not available: OpenSSL cannot load these blobs. TLS with a TPM key goes through tpm2-pkcs11 and
        pkcs11-provider ([keys] backend = "pkcs11", hsm/README.md)."""
        self.path(label)
        raise KeyBackendError(f"{self._where}: key {label!r}: the tpm2 backend signs CSRs, OCMF records and "
                              f"certificates but cannot serve TLS; for a TLS key in the TPM use [keys] backend = "
                              f"\"pkcs11\" with tpm2-pkcs11 (module libtpm2_pkcs11.so) and pkcs11-provider")
