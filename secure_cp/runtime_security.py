"""Certificate, TLS and key glue of the runtime: the CA certificate store (M03-M05), the station's own certificates
and keys (A02/A03), the TLS client contexts of security profiles 2 and 3 with the fallback root (M05.FR.14), TLS
handshake failures as security events (A00), the V2G certificate chain (M06) and the trusted manufacturer roots (L01).

:class:`StationSecurity` is a mixin of :class:`secure_cp.runtime.Station`, the only class that uses it. The attributes
it reads are Station's (set in ``Station.__init__`` / ``_open_store``), typed in runtime_parts.StationParts and below;
nothing here is imported from ``secure_cp.runtime`` at run time.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from . import lazy
from .config import tls_context
from .devicemodel.keys16 import VENDOR_COMPONENT
from .engine import rfc3339
from .firmware import load_roots
from .runtime_parts import StationParts
from .security import p11provider
from .security.certsigning import CertSigning, station_credential
from .security.certstore import CertificateStore
from .security.keys.base import KeyBackendError
from .security.keys.config import KeysConfigError, open_backend
from .security.tls import certificate_event, classify_failure, client_context, refuse_wildcards
from .store import KeyValue, StoreError

if TYPE_CHECKING:
    import asyncio

    from .transport import Transport
    from .v201.netprofiles import ConnectionPlan, NetworkProfiles

x509 = lazy.module("cryptography.x509")
log = logging.getLogger("secure_cp.runtime")   # the Station's logger: these are its methods


class StationSecurity(StationParts):
    """Station's certificate / TLS / key methods (see the module docstring)."""

    cert_signing: CertSigning
    network: NetworkProfiles
    plan: ConnectionPlan
    transport: Transport
    _tls_contexts: dict
    _fallback_next: bool
    _fallback_used: bool
    _cert_round_failures: int
    _last_tls_event: str | None
    _ocsp_force: bool
    _ocsp_wake: asyncio.Event

    if TYPE_CHECKING:   # Station's (runtime) and StationFiles' (runtime_files)
        def _int_variable(self, component: str, variable: str, default: int) -> int: ...

        def _refresh_transfer_context(self) -> None: ...

    def _certificate_store(self) -> CertificateStore:
        """M03-M05: CA certificates installed by the CSMS in ``<data_dir>/certs``. Capacity: the smaller of 2.0.1
        SecurityCtrlr.CertificateEntries maxLimit and 1.6 CertificateStoreMaxLength; CertificateEntries shows the
        current amount. A change of the CSMS roots drops the cached TLS contexts (the next connection trusts them)."""
        model = self.model

        def max_entries() -> int:
            limits = [self._int_variable(VENDOR_COMPONENT, "CertificateStoreMaxLength", 20)]
            entries = model.definition("SecurityCtrlr", "CertificateEntries")
            if entries is not None and entries.max is not None:
                limits.append(int(entries.max))
            return min(limits)

        def changed(cert_type: str, count: int) -> None:
            if cert_type:                   # an install or a delete, not the count at opening ("")
                self.security_events.record("ReconfigurationOfSecurityParameters", rfc3339(self.clock.now()),
                                            f"{cert_type} installed or deleted ({count} CA certificates)")
            if model.definition("SecurityCtrlr", "CertificateEntries") is not None:
                model.set("SecurityCtrlr", "CertificateEntries", str(count), force=True)
            if cert_type == "CSMSRootCertificate":
                self._tls_contexts.clear()
                self._refresh_transfer_context()

        def station_chain() -> list:
            try:
                return x509.load_pem_x509_certificates(self.cfg.cert_file.read_bytes()) if self.cfg.cert_file else []
            except (OSError, ValueError):
                return []

        store = CertificateStore(self.db, self.cfg.data_dir / "certs", max_entries=max_entries,
                                 station_chain=station_chain, now=self.clock.now, on_change=changed,
                                 v2g_chains=lambda: self.cert_signing.installed_chains("V2GCertificate"),
                                 root_check=lambda: self._bool_variable("SecurityCtrlr",
                                                                        "AdditionalRootCertificateCheck"),
                                 configured_roots=self._configured_csms_roots)
        changed("", len(store))
        return store

    def _configured_csms_roots(self) -> list:
        """The CSMS roots of ``[security] ca_file`` (empty when none is configured or it is unreadable)."""
        if self.cfg.ca_file is None:
            return []
        try:
            return x509.load_pem_x509_certificates(self.cfg.ca_file.read_bytes())
        except (OSError, ValueError) as exc:
            log.error("ca_file %s unusable: %s", self.cfg.ca_file, exc)
            return []

    def _bool_variable(self, component: str, variable: str) -> bool:
        return (self.model.get(component, variable) or "").strip().lower() == "true"

    def _cert_signing(self) -> CertSigning:
        """A02/A03: the station's own certificates in ``<data_dir>/station-certs``, keys in the ``[keys]`` backend
        (opened at first use). CSR subject: O = SecurityCtrlr.OrganizationName (= 1.6 CpoName), CN = the station
        identity, for a V2GCertificate ISO15118Ctrlr.SeccId. Chains must lead to a CSMS root (ca_file or installed)
        or, for V2G, an installed V2GRootCertificate; size limit MaxCertificateChainSize (= 1.6
        CertificateSignedMaxChainSize)."""
        old = getattr(self, "cert_signing", None)
        if old is not None:
            old.close()
        model = self.model

        def roots(root_type: str) -> list:
            found = list(self.certificates.roots(root_type))
            if root_type == "CSMSRootCertificate":
                found += self._configured_csms_roots()
            return found

        def common_name(cert_type: str) -> str | None:
            if cert_type == "V2GCertificate":
                return model.get("ISO15118Ctrlr", "SeccId")
            return self.cfg.identity

        def configured_chain() -> list:
            try:
                return x509.load_pem_x509_certificates(self.cfg.cert_file.read_bytes()) if self.cfg.cert_file else []
            except (OSError, ValueError):
                return []

        def record(event: str, info: str) -> None:
            self.security_events.record(event, rfc3339(self.clock.now()), info)

        signing = CertSigning(KeyValue(self.db, "certsigning"), self.cfg.data_dir / "station-certs",
                              lambda: open_backend(self.cfg.keys),
                              organization=lambda: model.get("SecurityCtrlr", "OrganizationName"),
                              common_name=common_name, roots=roots,
                              max_chain_size=lambda: self._int_variable("SecurityCtrlr", "MaxCertificateChainSize",
                                                                        0),
                              record_event=record, algorithm=self.cfg.keys.algorithm,
                              configured_chain=configured_chain, renew_before=self.cfg.renew_days * 86400.0)
        self._open_token_first(signing)
        return signing

    def _open_token_first(self, signing: CertSigning) -> None:
        """When OpenSSL's pkcs11-provider does this station's TLS with the key token (``secure-cp run``), open the key
        backend now, before the first TLS context: python-pkcs11 must initialise the PKCS#11 module before the
        provider does (the provider tolerates a module initialised already, python-pkcs11 does not: "already
        initialized"), and the module then stays initialised for the process (pkcs11_backend._release_module). A
        failure (e.g. a PIN the token refuses) is logged; the TLS attempts and a later CSR report it again."""
        keys = self.cfg.keys
        if keys.backend != "pkcs11" or keys.module is None or p11provider.active_module() != str(keys.module):
            return
        try:
            signing.backend
        except (KeyBackendError, KeysConfigError) as exc:
            log.error("key backend (PKCS#11 token %r) cannot be opened: %s", keys.token, exc)

    def _tls_context(self, security_profile: int, *, attempt: bool = False):
        """One TLS client context per security profile, built from the files at first use and kept: a handshake
        with a shared context reuses its loaded roots and key. (Certificate installation, A02/A05, must drop it.)

        Trusted: the installed CSMS roots and ``ca_file``. Under AdditionalRootCertificateCheck an installed root
        replaces ``ca_file`` and the fallback root is trusted only on the attempt after the new root failed
        (M05.FR.14, 1.6 M05.FR.13; ``attempt``: this is a connection attempt, which records the choice). A wildcard
        server certificate is refused unless SecurityCtrlr.AllowCSMSTLSWildcards is true."""
        store = self.certificates
        fallback = store.fallback_root() if store.root_check else None
        use_fallback = fallback is not None and self._fallback_next
        if attempt:
            self._fallback_used = use_fallback
        key = (security_profile, "fallback") if use_fallback else security_profile
        ctx = self._tls_contexts.get(key)
        if ctx is None:
            if store.root_check:
                roots = [fallback] if use_fallback else store.csms_roots()
            else:
                roots = store.roots("CSMSRootCertificate")
            cfg = dataclasses.replace(self.cfg, ca_file=None) if store.root_check and roots else self.cfg
            signed = self.cert_signing.credential(self.clock.now()) if security_profile == 3 else None
            if signed is not None:      # A02/A03: the newest signed station certificate (A02.FR.09)
                ctx = client_context(3, cfg.ca_file, station_credential(
                    *signed, token=self.cfg.keys.token, key_dir=self.cert_signing.directory), roots)
            else:
                ctx = tls_context(cfg, security_profile, roots)
            refuse_wildcards(ctx, lambda: self._bool_variable("SecurityCtrlr", "AllowCSMSTLSWildcards"))
            self._tls_contexts[key] = ctx
        return ctx

    def _root_fallback_after(self, exc: Exception) -> None:
        """M05.FR.14 (1.6 M05.FR.13): the CSMS certificate did not verify with the new CSMS root while reconnecting
        to the CSMS last connected (not migrating with B10: M05.FR.15/16 leave that to the connection plan): the
        next attempt verifies with the fallback root; after a failure with the fallback, the new root again."""
        failure = classify_failure(exc, self.adapter.version)
        if failure is None or failure.event != certificate_event(self.adapter.version):
            return
        if self._fallback_used:
            self._fallback_next = False
        elif self.certificates.root_check and self.certificates.fallback_root() is not None \
                and self.plan.current.slot == self.network.active_slot:
            log.warning("the CSMS certificate does not verify with the new CSMS root: the next attempt uses the "
                        "fallback root (M05.FR.14)")
            self._fallback_next = True

    def _max_security_profile(self) -> int:
        """The highest security profile this station has what it needs for: a CSMS root for 2, plus a station
        certificate valid now and its key for 3 (A05.FR.02/03: NetworkConfigurationPriority refuses a slot above it;
        TC_A_21_CS: "no valid ChargingStationCertificate installed")."""
        if self.cfg.ca_file is None and not self.certificates.roots("CSMSRootCertificate"):
            return 1
        now = self.clock.now()
        installed = self.cert_signing.credential(now) is not None
        if not installed and (self.cfg.cert_file is None or (self.cfg.key_file or self.cfg.key_label) is None):
            return 2
        chain = self.cert_signing.current_chain(now)   # the installed chain (A02/A03), else the configured one
        if not chain:
            return 2
        leaf = chain[0]
        return 3 if leaf.not_valid_before_utc.timestamp() <= now <= leaf.not_valid_after_utc.timestamp() else 2

    def _record_tls_failure(self, exc: Exception) -> None:
        """A00.FR.309/315/322 (413/419/426): a TLS handshake failure becomes its security event. The station retries
        with back-off; to keep a long outage from flooding the security log and the CSMS queue, an event is recorded
        once per kind of failure until a connection succeeds again."""
        failure = classify_failure(exc, self.adapter.version)
        if failure is None or failure.event is None or failure.event == self._last_tls_event:
            return
        self._last_tls_event = failure.event
        log.error("security event %s: %s", failure.event, failure.text)
        try:
            self.security_events.record(failure.event, rfc3339(self.clock.now()), failure.text)
        except StoreError as exc_store:
            log.critical("cannot store security event %s (%s)", failure.event, exc_store)

    def _station_certificate_failed(self) -> None:
        """A02.FR.28: under security profile 3, a whole round of the connection plan (every network profile, its
        NetworkProfileConnectionAttempts each) failed with a new station certificate that still has a previous one:
        the next attempts use the other certificate (see CertSigning.round_failed)."""
        now = self.clock.now()
        if self.transport.config.security_profile != 3 or not self.cert_signing.has_fallback(now):
            self._cert_round_failures = 0
            return
        self._cert_round_failures += 1
        if self._cert_round_failures >= self.plan.attempts * len(self.plan.order):
            self._cert_round_failures = 0
            if self.cert_signing.round_failed(now):
                self._tls_contexts.clear()

    def _v2g_chain(self) -> list:
        """The station's V2G (SECC) certificate chain, leaf first, installed through A02/A03 (empty: none)."""
        cred = self.cert_signing.credential(self.clock.now(), "V2GCertificate")
        if cred is None:
            return []
        try:
            return x509.load_pem_x509_certificates(cred[0].read_bytes())
        except (OSError, ValueError) as exc:
            log.error("V2G certificate chain %s unusable: %s", cred[0], exc)
            return []

    def _v2g_certificate_changed(self) -> None:
        """M06.FR.07: a new V2G certificate is in use: the refresher asks for its status and its sub-CAs' again."""
        self._ocsp_force = True
        self._ocsp_wake.set()

    def _manufacturer_roots(self) -> list:
        """The trusted manufacturer roots: ManufacturerRootCertificate in the certificate store (when the station
        has one) and the ``[security] manufacturer_root_file``."""
        roots = []
        certstore = getattr(self, "certstore", None) or getattr(self, "certificates", None)
        if certstore is not None and hasattr(certstore, "roots"):
            roots.extend(certstore.roots("ManufacturerRootCertificate"))
        try:
            roots.extend(load_roots(self.cfg.manufacturer_root_file))
        except (OSError, ValueError) as exc:
            log.error("manufacturer_root_file %s unusable: %s", self.cfg.manufacturer_root_file, exc)
        return roots
