"""ISO 15118 on the OCPP side: the small API a station's ISO 15118 stack (the SECC talking to the EV) calls.

The station does not speak ISO 15118 itself. The SECC stack hands over what OCPP must carry and gets the CSMS's
answer back (``await api.<method>(...)``):

* :meth:`Iso15118Api.get_ev_certificate`: 2.0.1 M01 / M02. The EXI CertificateInstallationReq /
  CertificateUpdateReq of the EV, base64, goes to the CSMS as Get15118EVCertificateRequest (action Install /
  Update, M01.FR.01, M02.FR.01); the CSMS's status and exiResponse come back. Offline, or without an answer within
  the timeout, the result is Failed at once: the stack indicates failure to the EV (M01 / M02 error handling).
* :meth:`Iso15118Api.certificate_status`: 2.0.1 M06. The OCSP response for one certificate (OCSPRequestDataType
  -> GetCertificateStatusRequest, one certificate per request), from a persistent cache while fresh: ISO 15118
  timeouts are too short to ask the CSMS during the EV's TLS handshake. A cached response is used until its
  nextUpdate, at most ``max_age`` seconds (a week: M06.FR.10). :meth:`Iso15118Api.refresh` fetches the status of
  the station's V2G certificates (leaf and sub-CAs, M06.FR.06 / M06.FR.07) ahead of time; the runtime calls it
  after connecting and whenever :meth:`Iso15118Api.next_refresh` is due.
* :meth:`Iso15118Api.authorize_contract`: 2.0.1 C07 Plug & Charge. The eMAID and the contract certificate chain
  (PEM, leaf first) or its OCSP request data: online an Authorize with iso15118CertificateHashData (up to 4,
  C07.FR.02), or with the chain itself when the station has no root to validate it and
  ISO15118Ctrlr.CentralContractValidationAllowed is true (C07.FR.06); the CSMS's certificateStatus and
  idTokenInfo decide. Offline: refused unless ISO15118Ctrlr.ContractValidationOffline is true (C07.FR.07); then
  the chain is validated locally and the eMAID goes through the offline rules of the local list / cache /
  unknown identifiers (C07.FR.08-12). The verdict feeds the engine like any authorization: an accepted eMAID
  authorizes the EVSE (the transaction starts per TxStartPoint), a refused one does not.

Malformed input from the stack raises :class:`Iso15118Error` (a ValueError) before anything is sent. OCPP 1.6 has
no ISO 15118 messages in its core: under 1.6 every call is answered Failed / not authorized with that reason.
Persistence: the OCSP cache lives in the key-value store (namespace ``ocsp``), no table of its own.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable

from .. import lazy
from .certstore import HASH_ALGORITHMS, hash_data

x509 = lazy.module("cryptography.x509")
ocsp = lazy.module("cryptography.x509.ocsp")
_exceptions = lazy.module("cryptography.exceptions")

__all__ = ["Iso15118Api", "Iso15118Error", "EvCertificateResult", "CertificateStatusResult", "ContractAuthorization",
           "OcspCache", "ocsp_request_data", "CERTIFICATE_ACTIONS"]

log = logging.getLogger("secure_cp.security.iso15118")

#: CertificateActionEnumType (Get15118EVCertificateRequest.action).
CERTIFICATE_ACTIONS = ("Install", "Update")
MAX_EXI_REQUEST = 5600          # Get15118EVCertificateRequest.exiRequest string[0..5600]
MAX_SCHEMA_VERSION = 50         # .iso15118SchemaVersion string[0..50]
MAX_HASH_ENTRIES = 4            # AuthorizeRequest.iso15118CertificateHashData 0..4
MAX_CERTIFICATE_PEM = 5500      # AuthorizeRequest.certificate string[0..5500]
MAX_ID_TOKEN = 36               # IdTokenType.idToken string[0..36]
MAX_RESPONDER_URL = 512         # OCSPRequestDataType.responderURL string[0..512]
OCSP_MAX_AGE = 7 * 24 * 3600.0  # M06.FR.10: refreshed at least once a week
OCSP_CACHE_ENTRIES = 64         # the V2G chain has a few certificates; the rest is what the stack asked for
REFRESH_RETRY = 3600.0          # s before asking again after a failed refresh (M06.FR.04 Failed, offline)
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_HEX_LENGTHS = {"SHA256": 64, "SHA384": 96, "SHA512": 128}
ISO15118_COMPONENT = "ISO15118Ctrlr"


class Iso15118Error(ValueError):
    """Input from the ISO 15118 stack that OCPP cannot carry (the text says what); nothing was sent."""


@dataclass(frozen=True)
class EvCertificateResult:
    """M01 / M02: ``status`` Accepted / Failed (Iso15118EVCertificateStatusEnumType); ``exi_response`` the base64
    EXI response for the EV (empty when Failed); ``reason`` why the station failed it without an answer."""
    status: str
    exi_response: str = ""
    reason: str = ""


@dataclass(frozen=True)
class CertificateStatusResult:
    """M06: ``status`` Accepted / Failed (GetCertificateStatusEnumType); ``ocsp_result`` the base64 DER
    OCSPResponse (Accepted only); ``cached`` True when it came from the cache without asking the CSMS."""
    status: str
    ocsp_result: str = ""
    cached: bool = False
    reason: str = ""


@dataclass(frozen=True)
class ContractAuthorization:
    """C07: ``authorized`` whether the EV may charge; ``status`` the idToken's AuthorizationStatusEnumType (the
    CSMS's, or the offline decision); ``certificate_status`` the CSMS's AuthorizeCertificateStatusEnumType (or the
    station's local verdict, None when nobody judged the certificate); ``online`` whether the CSMS decided."""
    authorized: bool
    status: str
    certificate_status: str | None = None
    online: bool = False
    reason: str = ""


# ---- OCSP request data and responses ---------------------------------------------------------------------------
def responder_url(cert: x509.Certificate) -> str:
    """The OCSP responder URL of the certificate's authorityInfoAccess ("" when it names none)."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return ""
    for desc in aia:
        if desc.access_method == x509.AuthorityInformationAccessOID.OCSP:
            return str(desc.access_location.value)[:MAX_RESPONDER_URL]
    return ""


def ocsp_request_data(cert: x509.Certificate, issuer: x509.Certificate, algorithm: str = "SHA256") -> dict:
    """OCSPRequestDataType of ``cert`` issued by ``issuer``: the RFC 6960 CertID (certstore.hash_data) and the
    responder URL of the certificate (M06 remark: required in OCPP; "" when the certificate names none)."""
    return {**hash_data(cert, issuer, algorithm), "responderURL": responder_url(cert)}


def _check_request_data(data: object) -> dict:
    """One OCSPRequestDataType from the stack, checked (Iso15118Error) and normalised (hex in lower case)."""
    if not isinstance(data, dict):
        raise Iso15118Error("OCSP request data must be an object")
    required = ("hashAlgorithm", "issuerNameHash", "issuerKeyHash", "serialNumber", "responderURL")
    missing = [k for k in required if k not in data]
    extra = [k for k in data if k not in required]
    if missing or extra:
        raise Iso15118Error(f"OCSP request data: missing {missing}, unknown {extra}")
    algorithm = data["hashAlgorithm"]
    if algorithm not in HASH_ALGORITHMS:
        raise Iso15118Error(f"hashAlgorithm {algorithm!r} is not one of {', '.join(HASH_ALGORITHMS)}")
    out = {"hashAlgorithm": algorithm}
    for key in ("issuerNameHash", "issuerKeyHash"):
        value = data[key]
        if not isinstance(value, str) or len(value) != _HEX_LENGTHS[algorithm] or not _HEX.match(value):
            raise Iso15118Error(f"{key} must be the hex {algorithm} digest ({_HEX_LENGTHS[algorithm]} digits)")
        out[key] = value.lower()
    serial = data["serialNumber"]
    if not isinstance(serial, str) or not 0 < len(serial) <= 40 or not _HEX.match(serial):
        raise Iso15118Error("serialNumber must be 1 to 40 hex digits")
    out["serialNumber"] = serial.lower()
    url = data["responderURL"]
    if not isinstance(url, str) or len(url) > MAX_RESPONDER_URL:
        raise Iso15118Error(f"responderURL must be a string of at most {MAX_RESPONDER_URL} characters")
    out["responderURL"] = url
    return out


def _cache_key(data: dict) -> str:
    """The certificate an OCSP request is about (RFC 6960 CertID; serial without leading zeros)."""
    return "|".join((data["hashAlgorithm"], data["issuerNameHash"].lower(), data["issuerKeyHash"].lower(),
                     data["serialNumber"].lower().lstrip("0") or "0"))


def _next_update(ocsp_result: str) -> float | None:
    """nextUpdate of a base64 DER OCSPResponse (M06.FR.08/09) as epoch seconds, None when it has none. Raises
    ValueError for anything that is not a successful OCSPResponse."""
    try:
        der = base64.b64decode(ocsp_result, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"ocspResult is not base64: {exc}") from None
    response = ocsp.load_der_ocsp_response(der)
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise ValueError(f"OCSP response status {response.response_status.name}")
    nxt = response.next_update_utc
    return nxt.timestamp() if nxt is not None else None


class OcspCache:
    """OCSP responses by certificate (RFC 6960 CertID), persisted in a KeyValue namespace (``kv()`` gives it: the
    store is reopened after a reset). An entry is fresh until its expiry: the response's nextUpdate, at most
    ``max_age`` seconds after it was fetched."""

    def __init__(self, kv: Callable[[], Any], *, max_age: Callable[[], float] = lambda: OCSP_MAX_AGE,
                 entries: int = OCSP_CACHE_ENTRIES) -> None:
        self._kv = kv
        self._max_age = max_age
        self._entries = entries

    def get(self, data: dict, now: float) -> dict | None:
        """The fresh entry ``{"ocspResult", "fetchedAt", "expiresAt"}`` for the certificate, else None."""
        entry = self._kv().get(_cache_key(data))
        return entry if entry is not None and entry["expiresAt"] > now else None

    def forget(self, data: dict) -> None:
        self._kv().delete(_cache_key(data))

    def expiry(self, data: dict) -> float | None:
        entry = self._kv().get(_cache_key(data))
        return None if entry is None else float(entry["expiresAt"])

    def put(self, data: dict, ocsp_result: str, now: float) -> float:
        """Keep a response (ValueError if it is no successful OCSPResponse); returns when it expires."""
        next_update = _next_update(ocsp_result)
        expires = now + self._max_age()
        if next_update is not None:
            expires = min(expires, next_update)
        if expires <= now:
            raise ValueError("OCSP response is past its nextUpdate")
        self._kv().set(_cache_key(data), {"ocspResult": ocsp_result, "fetchedAt": now, "expiresAt": expires})
        self._prune(now)
        return expires

    def _prune(self, now: float) -> None:
        items = self._kv().items()
        for key, entry in items.items():
            if entry["expiresAt"] <= now:
                self._kv().delete(key)
        live = sorted((e["fetchedAt"], k) for k, e in items.items() if e["expiresAt"] > now)
        for _, key in live[:max(0, len(live) - self._entries)]:
            self._kv().delete(key)


# ---- contract certificate chains ----------------------------------------------------------------------------------
def _load_chain(pem: str) -> list[x509.Certificate]:
    if not isinstance(pem, str) or not pem.strip():
        raise Iso15118Error("the contract certificate chain must be PEM text")
    if len(pem) > MAX_CERTIFICATE_PEM:
        raise Iso15118Error(f"the contract certificate chain is longer than {MAX_CERTIFICATE_PEM} characters")
    try:
        chain = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise Iso15118Error(f"the contract certificate chain is not PEM certificates: {exc}") from None
    if not chain:
        raise Iso15118Error("the contract certificate chain holds no certificate")
    return chain


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (_exceptions.InvalidSignature, ValueError, TypeError):
        return False
    return True


def _chain_verdict(chain: list[x509.Certificate], roots: Iterable[x509.Certificate], now: float
                   ) -> tuple[str, x509.Certificate | None]:
    """Local validation of a contract certificate chain (leaf first) against the installed roots:
    (AuthorizeCertificateStatusEnumType-like verdict, the root it chains to). NoCertificateAvailable: no
    installed root issued its top; CertChainError: a link does not verify; CertificateExpired: one is outside its
    validity."""
    for cert, issuer in zip(chain, chain[1:]):
        if not _issued_by(cert, issuer):
            return "CertChainError", None
    root = next((r for r in roots if _issued_by(chain[-1], r) or r == chain[-1]), None)
    if root is None:
        return "NoCertificateAvailable", None
    for cert in chain + [root]:
        if not cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp():
            return "CertificateExpired", root
    return "Accepted", root


# ---- the API ------------------------------------------------------------------------------------------------------
class Iso15118Api:
    """What an ISO 15118 stack calls (see the module docstring). Built by the runtime from:

    ``call(action, payload)``: sends a station->CSMS CALL over the active OCPP connection, returns the response
    payload or None (offline, CALLERROR, timeout, connection lost); ``unsupported()``: why the active OCPP version
    cannot carry ISO 15118 (None when it can); ``online()``; ``variable(name)``: an ISO15118Ctrlr variable;
    ``roots(type)``: installed root certificates (V2GRootCertificate, MORootCertificate); ``v2g_chain()``: the
    station's V2G certificate chain, leaf first (empty without one); ``feed(emaid, id_token_info | None,
    evse_id)``: applies a contract authorization to the engine (None: decide offline) and returns the status it
    applied; ``clock``; ``timeout``: seconds the stack is kept waiting for the CSMS at most."""

    def __init__(self, *, call: Callable[[str, dict], Awaitable[dict | None]], unsupported: Callable[[], str | None],
                 online: Callable[[], bool], variable: Callable[[str], str | None],
                 roots: Callable[[str], list], v2g_chain: Callable[[], list],
                 feed: Callable[[str, dict | None, int], str], cache: OcspCache, clock: Callable[[], float],
                 timeout: float = 30.0) -> None:
        self._call = call
        self._unsupported = unsupported
        self._online = online
        self._variable = variable
        self._roots = roots
        self._v2g_chain = v2g_chain
        self._feed = feed
        self.cache = cache
        self._clock = clock
        self.timeout = timeout
        self._retry_at = 0.0

    def _flag(self, name: str) -> bool:
        return (self._variable(name) or "false").strip().lower() == "true"

    def available(self) -> bool:
        """Whether a CALL can go out now (OCPP 2.0.1, connected, registered)."""
        return self._unavailable() is None

    def _unavailable(self) -> str | None:
        """Why no CALL can go out now (None: it can)."""
        reason = self._unsupported()
        if reason is not None:
            return reason
        return None if self._online() else "offline: no connection to the CSMS"

    async def _ask(self, action: str, payload: dict) -> dict | None:
        """The CSMS's answer, or None when there is none within ``timeout`` (nothing hangs)."""
        try:
            return await asyncio.wait_for(self._call(action, payload), self.timeout)
        except asyncio.TimeoutError:
            log.warning("%s: no answer from the CSMS within %.0f s", action, self.timeout)
            return None

    # ---- M01 / M02 --------------------------------------------------------------------------------------------
    async def get_ev_certificate(self, exi_request_b64: str, action: str, schema_version: str
                                 ) -> EvCertificateResult:
        """M01 (action Install) / M02 (Update): forward the EV's EXI request, return the CSMS's answer."""
        if action not in CERTIFICATE_ACTIONS:
            raise Iso15118Error(f"action must be one of {', '.join(CERTIFICATE_ACTIONS)}, not {action!r}")
        if not isinstance(schema_version, str) or not 0 < len(schema_version) <= MAX_SCHEMA_VERSION:
            raise Iso15118Error(f"iso15118SchemaVersion must be 1 to {MAX_SCHEMA_VERSION} characters")
        if not isinstance(exi_request_b64, str) or not 0 < len(exi_request_b64) <= MAX_EXI_REQUEST:
            raise Iso15118Error(f"exiRequest must be 1 to {MAX_EXI_REQUEST} characters of base64")
        try:
            base64.b64decode(exi_request_b64, validate=True)
        except (binascii.Error, ValueError):
            raise Iso15118Error("exiRequest is not base64") from None
        reason = self._unavailable()
        if reason is not None:
            return EvCertificateResult("Failed", reason=reason)
        answer = await self._ask("Get15118EVCertificate", {"iso15118SchemaVersion": schema_version,
                                                           "action": action, "exiRequest": exi_request_b64})
        if answer is None:
            return EvCertificateResult("Failed", reason="no answer from the CSMS")
        if answer["status"] != "Accepted":
            info = answer.get("statusInfo") or {}
            return EvCertificateResult("Failed", reason=f"CSMS: Failed {info.get('reasonCode', '')}".strip())
        return EvCertificateResult("Accepted", answer.get("exiResponse", ""))

    # ---- M06 ------------------------------------------------------------------------------------------------------
    async def certificate_status(self, ocsp_request_data: dict) -> CertificateStatusResult:
        """M06: the OCSP response for one certificate: from the cache while fresh, else from the CSMS (and kept)."""
        data = _check_request_data(ocsp_request_data)
        now = self._clock()
        cached = self.cache.get(data, now)
        if cached is not None:
            return CertificateStatusResult("Accepted", cached["ocspResult"], cached=True)
        reason = self._unavailable()
        if reason is not None:
            return CertificateStatusResult("Failed", reason=reason)
        answer = await self._ask("GetCertificateStatus", {"ocspRequestData": data})
        if answer is None:
            return CertificateStatusResult("Failed", reason="no answer from the CSMS")
        if answer["status"] != "Accepted":       # M06.FR.04: the CSMS could not get the status
            return CertificateStatusResult("Failed", reason="CSMS: Failed")
        result = answer.get("ocspResult", "")
        try:
            self.cache.put(data, result, self._clock())
        except ValueError as exc:               # M06.FR.08/09: a DER OCSPResponse, base64; else useless to the EV
            log.warning("GetCertificateStatus: unusable ocspResult from the CSMS (%s)", exc)
            return CertificateStatusResult("Failed", reason=f"unusable ocspResult: {exc}")
        return CertificateStatusResult("Accepted", result)

    def _v2g_requests(self) -> list[dict]:
        """OCSP request data of the station's V2G certificates: the leaf and each sub-CA (M06.FR.06/07); the issuer
        of the last one is an installed V2G root."""
        chain = list(self._v2g_chain())
        if not chain:
            return []
        roots = self._roots("V2GRootCertificate")
        out = []
        for i, cert in enumerate(chain):
            issuer = chain[i + 1] if i + 1 < len(chain) else next((r for r in roots if _issued_by(cert, r)), None)
            if issuer is None or issuer.subject == cert.subject and cert.issuer == cert.subject:
                continue                        # the root itself, or no installed issuer to name
            out.append(ocsp_request_data(cert, issuer))
        return out

    async def refresh(self, *, force: bool = False) -> dict[str, int]:
        """M06.FR.06/07/10: ask for the status of every V2G certificate whose cached response is missing or stale
        (every one with ``force``, e.g. after the V2G certificate was renewed). Returns counts by outcome."""
        counts = {"cached": 0, "Accepted": 0, "Failed": 0}
        for data in self._v2g_requests():
            if not force and self.cache.get(data, self._clock()) is not None:
                counts["cached"] += 1
                continue
            if force:
                self.cache.forget(data)
            result = await self.certificate_status(data)
            counts[result.status] += 1
        self._retry_at = self._clock() + REFRESH_RETRY if counts["Failed"] else 0.0
        return counts

    def next_refresh(self) -> float | None:
        """When :meth:`refresh` has work: the earliest expiry of a V2G certificate's cached status (0.0 when one
        has none; after a failure not before REFRESH_RETRY), None without a V2G chain."""
        requests = self._v2g_requests()
        if not requests:
            return None
        expiries = [self.cache.expiry(d) or 0.0 for d in requests]
        return max(min(expiries), self._retry_at)

    # ---- C07 ------------------------------------------------------------------------------------------------------
    async def authorize_contract(self, id_token: str, certificate_chain_pem: str | None = None,
                                 hash_data: list[dict] | None = None, *, evse_id: int = 0
                                 ) -> ContractAuthorization:
        """C07: authorize the eMAID ``id_token`` with its contract certificate chain (PEM, leaf first, without the
        root) and/or its OCSP request data (1 to 4 entries). ``evse_id`` the EVSE of the ISO 15118 session (0:
        any)."""
        if not isinstance(id_token, str) or not 0 < len(id_token) <= MAX_ID_TOKEN:
            raise Iso15118Error(f"the eMAID must be 1 to {MAX_ID_TOKEN} characters")
        if certificate_chain_pem is None and not hash_data:
            raise Iso15118Error("a contract certificate chain or its OCSP request data is required")
        if hash_data is not None and not (isinstance(hash_data, list) and 0 < len(hash_data) <= MAX_HASH_ENTRIES):
            raise Iso15118Error(f"iso15118CertificateHashData takes 1 to {MAX_HASH_ENTRIES} entries")
        requests = [_check_request_data(d) for d in hash_data or []]
        chain = _load_chain(certificate_chain_pem) if certificate_chain_pem is not None else None
        if not isinstance(evse_id, int) or evse_id < 0:
            raise Iso15118Error("evse_id must be an EVSE id (0: any)")
        now = self._clock()
        verdict, root = None, None
        if chain is not None:
            roots = self._roots("V2GRootCertificate") + self._roots("MORootCertificate")
            verdict, root = _chain_verdict(chain, roots, now)
            if verdict in ("CertChainError", "CertificateExpired"):   # invalid whatever the CSMS says
                return ContractAuthorization(False, "Invalid", verdict, reason="contract certificate chain invalid")
            if not requests and root is not None:
                full = chain + [root]
                requests = [ocsp_request_data(c, i) for c, i in zip(full, full[1:])][:MAX_HASH_ENTRIES]
        reason = self._unavailable()
        if reason is None:
            payload: dict = {"idToken": {"idToken": id_token, "type": "eMAID"}}
            if verdict == "NoCertificateAvailable":
                # C07.FR.06: no root here to validate it: the CSMS may, when allowed
                if not self._flag("CentralContractValidationAllowed"):
                    return ContractAuthorization(False, "Invalid", verdict, reason="no root to validate the "
                                                 "contract certificate and CentralContractValidationAllowed is false")
                payload["certificate"] = certificate_chain_pem
            if requests:
                payload["iso15118CertificateHashData"] = requests
            answer = await self._ask("Authorize", payload)
            if answer is not None:
                info = dict(answer["idTokenInfo"])
                cert_status = answer.get("certificateStatus")
                if cert_status not in (None, "Accepted") and info.get("status") == "Accepted":
                    info["status"] = "Invalid"       # C07.FR.13-17: no charging on a refused certificate
                applied = self._feed(id_token, info, evse_id)
                return ContractAuthorization(applied == "Accepted", info["status"], cert_status, online=True)
            reason = "no answer from the CSMS"
        # offline (or the CSMS did not answer): C07.FR.07-12
        if not self._flag("ContractValidationOffline"):
            return ContractAuthorization(False, "Invalid", verdict, reason=f"{reason}; ContractValidationOffline "
                                         "is false (C07.FR.07)")
        if verdict != "Accepted":
            return ContractAuthorization(False, "Invalid", verdict, reason=f"{reason}; the contract certificate "
                                         "cannot be validated locally (C07.FR.08)")
        applied = self._feed(id_token, None, evse_id)
        return ContractAuthorization(applied == "Accepted", applied, verdict, reason=reason)
