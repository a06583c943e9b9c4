"""Key backends (issue #4, "Keys"): private keys that never leave their backend.

* :mod:`.base`: the :class:`KeyBackend` interface, :class:`KeyAlgorithm`, :class:`KeyRef`, the errors;
* :mod:`.software`: PEM files, mode 0600: development only;
* :mod:`.pkcs11_backend`: PKCS#11 tokens (HSM, secure element, TPM through tpm2-pkcs11), via python-pkcs11;
* :mod:`.tpm2_backend`: TPM 2.0 directly through tpm2-pytss (optional extra ``secure-cp[tpm2]``);
* :mod:`.wrapper`: ``cryptography`` private-key objects that sign through a backend, :func:`sign_data` (async);
* :mod:`.config`: the ``[keys]`` configuration section and :func:`open_backend`.
"""
import importlib
from typing import Any

# Exported names -> the submodule that defines them. Imported at first use (PEP 562): the wrapper subclasses
# cryptography's key classes, and a station that has no [keys] section must not pay for cryptography at start-up.
_EXPORTS = {
    **dict.fromkeys(("KeyAlgorithm", "KeyAuthError", "KeyBackend", "KeyBackendError", "KeyBackendUnavailable",
                     "KeyExistsError", "KeyInfo", "KeyNotFoundError", "KeyRef"), ".base"),
    **dict.fromkeys(("KeysConfig", "open_backend", "parse_keys_section"), ".config"),
    "SoftwareBackend": ".software",
    **dict.fromkeys(("BackendECPrivateKey", "BackendRSAPrivateKey", "sign_data"), ".wrapper"),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


__all__ = ["KeyAlgorithm", "KeyAuthError", "KeyBackend", "KeyBackendError", "KeyBackendUnavailable", "KeyExistsError",
           "KeyInfo", "KeyNotFoundError", "KeyRef", "KeysConfig", "open_backend", "parse_keys_section",
           "SoftwareBackend", "BackendECPrivateKey", "BackendRSAPrivateKey", "sign_data"]
