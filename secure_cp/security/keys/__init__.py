"""Key backends (issue #4, "Keys"): private keys that never leave their backend.

* :mod:`.base`: the :class:`KeyBackend` interface, :class:`KeyAlgorithm`, :class:`KeyRef`, the errors;
* :mod:`.software`: PEM files, mode 0600: development only;
* :mod:`.pkcs11_backend`: PKCS#11 tokens (HSM, secure element, TPM through tpm2-pkcs11), via python-pkcs11;
* :mod:`.wrapper`: ``cryptography`` private-key objects that sign through a backend, :func:`sign_data` (async);
* :mod:`.config`: the ``[keys]`` configuration section and :func:`open_backend`.
"""
from .base import (KeyAlgorithm, KeyAuthError, KeyBackend, KeyBackendError, KeyBackendUnavailable, KeyExistsError,
                   KeyInfo, KeyNotFoundError, KeyRef)
from .config import KeysConfig, open_backend, parse_keys_section
from .software import SoftwareBackend
from .wrapper import BackendECPrivateKey, BackendRSAPrivateKey, sign_data

__all__ = ["KeyAlgorithm", "KeyAuthError", "KeyBackend", "KeyBackendError", "KeyBackendUnavailable", "KeyExistsError",
           "KeyInfo", "KeyNotFoundError", "KeyRef", "KeysConfig", "open_backend", "parse_keys_section",
           "SoftwareBackend", "BackendECPrivateKey", "BackendRSAPrivateKey", "sign_data"]
