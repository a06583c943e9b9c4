"""The ``[keys]`` section of the station configuration and :func:`open_backend`.

::

    [keys]
    backend = "pkcs11"                              # or "tpm2" (tpm2-pytss), "software" (development only)
    algorithm = "ec-p256"                           # new key pairs: ec-p256, ec-p384, rsa-2048, rsa-3072
    module = "/usr/lib/softhsm/libsofthsm2.so"      # pkcs11: the PKCS#11 module (HSM, SE, tpm2-pkcs11)
    token = "secure-cp"                             # pkcs11: token label
    pin_file = "/etc/secure-cp/token.pin"           # pkcs11: file holding the user PIN (mode 0600), or
    # pin = "1234"                                  #   the PIN inline (development)
    # dir = "keys"                                  # software: directory of the PEM files; tpm2: of the key
    #                                               #   blobs (default <data_dir>/tpm2-keys)
    # tcti = "device:/dev/tpmrm0"                   # tpm2: how to reach the TPM (tpm2-tools TCTI syntax)
    # parent = "0x81000001"                         # tpm2: persistent handle of the primary storage key (SRK)

Relative paths are relative to the configuration file. Errors are :class:`KeysConfigError` naming the key.
"""
from __future__ import annotations

import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .base import KeyAlgorithm, KeyBackend, KeyBackendError

__all__ = ["KeysConfig", "KeysConfigError", "KEYS_SECTION_KEYS", "parse_keys_section", "open_backend"]

KEYS_SECTION_KEYS = {"backend", "algorithm", "dir", "module", "token", "pin", "pin_file", "tcti", "parent"}
#: backend names of ``[keys] backend``
BACKENDS = ("software", "pkcs11", "tpm2")


class KeysConfigError(ValueError):
    """A bad ``[keys]`` setting: the message starts with ``keys.<name>:``."""


@dataclass(frozen=True)
class KeysConfig:
    backend: str = "software"
    algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256
    dir: Path = Path("keys")
    module: Path | None = None
    token: str | None = None
    pin: str | None = None
    pin_file: Path | None = None
    tcti: str = "device:/dev/tpmrm0"       # tpm2: the kernel resource manager by default
    parent: int = 0x81000001               # tpm2: the SRK's persistent handle (TCG provisioning guidance)


def _parent(section: dict) -> int | None:
    """``parent``: an owner persistent handle, as an integer or a "0x8100...." string."""
    value = section.get("parent")
    if value is None:
        return None
    try:
        handle = int(value, 0) if isinstance(value, str) else value
    except ValueError:
        handle = None
    if not isinstance(handle, int) or isinstance(handle, bool) or not 0x81000000 <= handle <= 0x817FFFFF:
        raise KeysConfigError(f"keys.parent: a persistent handle 0x81000000..0x817fffff, got {value!r}")
    return handle


def _str(section: dict, key: str) -> str | None:
    value = section.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise KeysConfigError(f"keys.{key}: expected a non-empty string, got {value!r}")
    return value


def _path(section: dict, key: str, base_dir: Path | None) -> Path | None:
    value = _str(section, key)
    if value is None:
        return None
    p = Path(value)
    return p if p.is_absolute() or base_dir is None else base_dir / p


def parse_keys_section(section: dict[str, Any], base_dir: Path | None = None,
                       data_dir: Path | None = None) -> KeysConfig:
    """Validate ``[keys]``. The software key directory defaults to ``<data_dir>/keys``."""
    for k in section:
        if k not in KEYS_SECTION_KEYS:
            raise KeysConfigError(f"keys.{k}: unknown key (known: {', '.join(sorted(KEYS_SECTION_KEYS))})")
    backend = _str(section, "backend") or "software"
    if backend not in BACKENDS:
        raise KeysConfigError(f"keys.backend: one of {', '.join(BACKENDS)}, got {backend!r}")
    algorithm = _str(section, "algorithm") or KeyAlgorithm.EC_P256.value
    if algorithm not in {a.value for a in KeyAlgorithm}:
        raise KeysConfigError(f"keys.algorithm: one of {', '.join(a.value for a in KeyAlgorithm)}, "
                              f"got {algorithm!r}")
    default_dir = (data_dir or Path(".")) / ("tpm2-keys" if backend == "tpm2" else "keys")
    cfg = KeysConfig(backend=backend, algorithm=KeyAlgorithm(algorithm),
                     dir=_path(section, "dir", base_dir) or default_dir,
                     module=_path(section, "module", base_dir), token=_str(section, "token"),
                     pin=_str(section, "pin"), pin_file=_path(section, "pin_file", base_dir),
                     tcti=_str(section, "tcti") or KeysConfig.tcti,
                     parent=_parent(section) or KeysConfig.parent)
    if backend == "pkcs11":
        if cfg.module is None:
            from .pkcs11_backend import default_module
            found = default_module()
            if found is None:
                raise KeysConfigError("keys.module: required for backend 'pkcs11' (the PKCS#11 module, e.g. "
                                      "/usr/lib/softhsm/libsofthsm2.so)")
            cfg = replace(cfg, module=Path(found))
        if cfg.token is None:
            raise KeysConfigError("keys.token: required for backend 'pkcs11' (the token label)")
        if (cfg.pin is None) == (cfg.pin_file is None):
            raise KeysConfigError("keys.pin_file: backend 'pkcs11' needs exactly one of pin_file and pin")
    return cfg


def _read_pin(path: Path) -> str:
    try:
        st = path.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeysConfigError(f"keys.pin_file: {path} is accessible by group/others "
                                  f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
        pin = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise KeysConfigError(f"keys.pin_file: cannot read {path}: {exc.strerror}") from None
    if not pin:
        raise KeysConfigError(f"keys.pin_file: {path} is empty")
    return pin


def open_backend(cfg: KeysConfig) -> KeyBackend:
    """The backend ``cfg`` describes, opened (PKCS#11: logged in; tpm2: TPM reached, primary key present). Raises KeysConfigError for a bad PIN file and
    KeyBackendError (KeyAuthError for a rejected PIN, KeyBackendUnavailable for a missing module or token)."""
    if cfg.backend == "software":
        from .software import SoftwareBackend
        return SoftwareBackend(cfg.dir)
    if cfg.backend == "tpm2":
        from .tpm2_backend import Tpm2Backend
        return Tpm2Backend(cfg.dir, cfg.tcti, cfg.parent)
    from .pkcs11_backend import Pkcs11Backend
    if cfg.module is None or cfg.token is None:
        raise KeyBackendError("PKCS#11 backend: module and token are required")
    pin = cfg.pin if cfg.pin is not None else _read_pin(cfg.pin_file)  # type: ignore[arg-type]
    return Pkcs11Backend(cfg.module, cfg.token, pin)
