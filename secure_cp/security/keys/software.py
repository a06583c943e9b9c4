"""Software keys: PEM files (PKCS#8, unencrypted) in one directory, mode 0600. DEVELOPMENT ONLY.

The private key is a plain file this process (and root) can read: nothing stops a copy. A charger in the field uses
:class:`~.pkcs11_backend.Pkcs11Backend`. Every backend instance says so in the log at WARNING level.

Files are written atomically (temporary file created 0600, fsync, rename, fsync of the directory), so a power cut
leaves either the whole key or none; a key file that others can read is refused.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from ...fsutil import fsync_dir
from .base import (KeyAlgorithm, KeyBackend, KeyBackendError, KeyBackendUnavailable, KeyExistsError, KeyInfo,
                   KeyNotFoundError, KeyRef, algorithm_of_public_key, check_digest, check_label)

__all__ = ["SoftwareBackend", "create_key_file"]

log = logging.getLogger("secure_cp.security.keys.software")

_SUFFIX = ".key.pem"


def create_key_file(path: Path, data: bytes, what: str) -> None:
    """Write ``data`` to the new file ``path``, mode 0600, atomically (temporary file, fsync, link, fsync of the
    directory): a power cut leaves the whole file or none. KeyExistsError if ``path`` exists (a key is never
    overwritten), KeyBackendError naming ``what`` on an I/O error. Shared with the TPM backend's key blobs."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)     # whatever the umask or an older leftover's mode
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)       # atomic and refuses to replace: a key is never overwritten
        except FileExistsError:
            raise KeyExistsError(f"{what} already exists ({path})") from None
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)
    except OSError as exc:
        raise KeyBackendError(f"{what}: cannot write {path}: {exc.strerror}") from None


class SoftwareBackend(KeyBackend):
    """Key pairs as ``<directory>/<label>.key.pem`` (mode 0600, directory 0700)."""

    kind = "software"

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise KeyBackendUnavailable(f"software key directory {self.directory}: {exc.strerror}") from None
        log.warning("software key backend in %s: DEVELOPMENT ONLY - private keys are plain files on disk; "
                    "use the pkcs11 backend (HSM, secure element, TPM) on a real charger", self.directory)

    def path(self, label: str) -> Path:
        """The PEM file of ``label``."""
        return self.directory / (check_label(label) + _SUFFIX)

    def generate(self, label: str, algorithm: KeyAlgorithm) -> KeyInfo:
        algorithm = KeyAlgorithm(algorithm)
        path = self.path(label)
        key = (ec.generate_private_key(algorithm.curve) if algorithm.is_ec
               else rsa.generate_private_key(public_exponent=65537, key_size=algorithm.key_size))
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        create_key_file(path, pem, f"software key {label!r}")
        log.info("software key %r generated (%s) in %s", label, algorithm.value, path)
        return KeyInfo(label, algorithm, self.kind)

    def _load(self, label: str):
        path = self.path(label)
        try:
            st = path.stat()
            if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyBackendError(f"software key {label!r}: {path} is accessible by group/others "
                                      f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyNotFoundError(f"software key {label!r}: no file {path}") from None
        except OSError as exc:
            raise KeyBackendError(f"software key {label!r}: cannot read {path}: {exc.strerror}") from None
        try:
            return serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyBackendError(f"software key {label!r}: {path} is not an unencrypted PEM private key "
                                  f"({exc})") from None

    def public_key_der(self, label: str) -> bytes:
        return self._load(label).public_key().public_bytes(serialization.Encoding.DER,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign_digest(self, label: str, digest: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
        check_digest(digest, algorithm)
        key = self._load(label)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(digest, ec.ECDSA(utils.Prehashed(algorithm)))
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(algorithm))
        raise KeyBackendError(f"software key {label!r}: unsupported key type {type(key).__name__}")

    def delete(self, label: str) -> None:
        path = self.path(label)
        try:
            path.unlink()
        except FileNotFoundError:
            raise KeyNotFoundError(f"software key {label!r}: no file {path}") from None
        self._sync_dir()
        log.info("software key %r deleted", label)

    def list_keys(self) -> list[KeyInfo]:
        out = []
        for path in sorted(self.directory.glob("*" + _SUFFIX)):
            label = path.name[:-len(_SUFFIX)]
            try:
                out.append(KeyInfo(label, algorithm_of_public_key(self._load(label).public_key()), self.kind))
            except KeyBackendError as exc:
                log.warning("software key file %s skipped: %s", path, exc)
        return out

    def key_ref(self, label: str) -> KeyRef:
        path = self.path(label)
        if not path.exists():
            raise KeyNotFoundError(f"software key {label!r}: no file {path}")
        return KeyRef(self.kind, str(path))

    def _sync_dir(self) -> None:
        fsync_dir(self.directory)
