"""Authorization decisions: cache, local list, offline rules. Pure: no messages, no I/O beyond the store.

OCPP 1.6 §3.5 (Local authorization & offline behaviour) and the keys AuthorizationCacheEnabled,
LocalPreAuthorize, LocalAuthorizeOffline, AllowOfflineTxForUnknownId; 2.0.1 C10-C14 follow the same rules.
"""
from __future__ import annotations

from typing import Callable, Protocol

from .model import parse_rfc3339
from .settings import EngineSettings


class CacheStore(Protocol):
    def get(self, id_tag: str, *, now: float | None = None, lifetime: float | None = None) -> dict | None: ...
    def put(self, id_tag: str, info: dict, now: float) -> None: ...
    def clear(self) -> None: ...


def info_valid(info: dict | None, now: float) -> bool:
    """An idTagInfo that says Accepted and has not expired."""
    if not info or info.get("status") != "Accepted":
        return False
    expiry = info.get("expiryDate")
    if expiry:
        try:
            if parse_rfc3339(expiry) <= now:
                return False
        except ValueError:
            return False
    return True


def _verdict(info: dict, now: float) -> str:
    """An idTagInfo's status as a verdict on validity: ConcurrentTx is Accepted (in use elsewhere), an Accepted one
    whose expiryDate has passed is Expired."""
    status = info.get("status") or "Invalid"
    if status in ("Accepted", "ConcurrentTx"):
        return "Accepted" if info_valid({**info, "status": "Accepted"}, now) else "Expired"
    return status


class Authorizer:
    def __init__(self, settings: EngineSettings, cache: CacheStore,
                 local_list: Callable[[str], dict | None] | None = None):
        self.settings = settings
        self.cache = cache
        self.local_list = local_list or (lambda tag: None)

    def local_info(self, id_tag: str, now: float | None = None) -> tuple[dict | None, str]:
        """What the station knows locally: (idTagInfo, source) with source "list", "cache" or "". The list has
        priority over the cache (2.0.1 C13.FR.01 / C14.FR.01). With ``now`` the lookup is a use of the cache entry:
        expiry and AuthCacheCtrlr.LifeTime apply (C10.FR.08/10/13)."""
        info = self.local_list(id_tag)
        if info is not None:
            return info, "list"
        if self.settings.auth_cache_enabled:
            lifetime = self.settings.auth_cache_lifetime if now is not None else None
            info = self.cache.get(id_tag, now=now, lifetime=lifetime)
            if info is not None:
                return info, "cache"
        return None, ""

    def decide_online(self, id_tag: str, now: float) -> dict | None:
        """Online: an immediate local answer under LocalPreAuthorize, or None = ask the CSMS. With 2.0.1
        DisableRemoteAuthorization the local answer is final: the cache or the local list, else Unknown."""
        if self.settings.local_pre_authorize or self.settings.disable_remote_authorization:
            info, _ = self.local_info(id_tag, now)
            if info_valid(info, now):
                return info
            if self.settings.disable_remote_authorization:
                return {"status": _verdict(info, now)} if info is not None else {"status": "Unknown"}
        return None

    def decide_offline(self, id_tag: str, now: float) -> dict:
        """Offline (or the CSMS did not answer): LocalAuthorizeOffline, then AllowOfflineTxForUnknownId."""
        info, _ = self.local_info(id_tag, now)
        if info is not None:
            if self.settings.local_authorize_offline and info_valid(info, now):
                return info
            return {"status": info.get("status", "Invalid") if info.get("status") != "Accepted" else "Expired"}
        if self.settings.allow_offline_tx_for_unknown_id:
            return {"status": "Accepted"}
        return {"status": "Invalid"}

    def list_conflict(self, id_tag: str, info: dict, now: float) -> str | None:
        """1.6 §3.5.2: whether the CSMS's idTagInfo for ``id_tag`` conflicts with its (enabled) Local Authorization
        List entry; returns "list <verdict>, CSMS <verdict>" for the report, or None. Verdicts compare validity:
        Accepted and ConcurrentTx are both "valid" (§3.5.2), an entry past its expiryDate counts as Expired."""
        entry = self.local_list(id_tag)
        if entry is None:
            return None
        mine, theirs = _verdict(entry, now), _verdict(info, now)
        return None if mine == theirs else f"list {mine}, CSMS {theirs}"

    def learn(self, id_tag: str, info: dict, now: float) -> None:
        """Update the cache from an Authorize/Start/Stop answer (never for tags on the local list)."""
        if self.settings.auth_cache_enabled and self.local_list(id_tag) is None:
            self.cache.put(id_tag, dict(info), now)
