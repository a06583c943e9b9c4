"""OCPP 2.0.1 network connection profiles (Part 2 B09 / B10): one profile per configuration slot, and the order in
which the station tries them.

Slots are the valuesList of OCPPCommCtrlr.NetworkConfigurationPriority (``"1".."n"``, n = the ``network_profile_slots``
station info, default 2: B09.FR.06 asks for at least two). Slot 1 (the first slot) holds the ``[csms]`` section of the
station configuration for as long as the CSMS has not stored a profile there: the configuration file is the initial
profile, and a URL changed there takes effect at the next start. A profile the CSMS sets (SetNetworkProfile, B09) is
stored in SQLite (KeyValue namespace ``netprofiles``) and survives restarts.

What the station connects with is decided at boot (B10.FR.04): the stored NetworkConfigurationPriority is read once
per boot, so a new priority takes effect after the next reboot (SetVariables answers RebootRequired; B10 = B09 +
SetVariables + Reset). ``ConnectionPlan`` then makes NetworkProfileConnectionAttempts attempts per entry (B10.FR.03),
moves on in priority order and wraps around; the slot that last connected is tried after the priority entries when
it is no longer among them (B10.FR.07 fallback). The NetworkConnectionProfileType of 2.0.1 has no password: the
Basic-auth password is SecurityCtrlr.BasicAuthPassword for every profile. Its secrets (APN password, SIM PIN, VPN
password and key) are never stored here, because APN and VPN profiles are rejected (see ``validate``).
"""
from __future__ import annotations

import dataclasses
import logging
import ssl
from dataclasses import dataclass
from typing import Callable

from ..devicemodel import DeviceModel
from ..devicemodel.model import split_list
from ..transport import TransportConfig

log = logging.getLogger("secure_cp.v201.netprofiles")

#: The highest security profile this stack can connect with (3: TLS with client certificates). What one station can
#: use depends on its files (a CSMS root for 2, a station certificate and key for 3): ``max_security_profile``.
MAX_SECURITY_PROFILE = 3
#: ocppVersion values this station speaks through a network profile (the 2.0.1 adapter handles SetNetworkProfile).
OCPP_VERSIONS = frozenset({"OCPP20"})
_PRIORITY = ("OCPPCommCtrlr", "NetworkConfigurationPriority")
_URL_CHECK_CONTEXT = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)    # never used for a connection


@dataclass(frozen=True)
class NetworkProfile:
    """The part of a NetworkConnectionProfileType the station uses (Part 2 §2.35)."""
    slot: int
    url: str
    security_profile: int
    message_timeout: int
    ocpp_version: str = "OCPP20"
    ocpp_interface: str = "Wired0"
    from_config: bool = False        # the [csms] section of the station configuration, not a stored profile

    def describe(self) -> str:
        """For logs: never contains a secret (a profile holds none)."""
        return f"slot {self.slot} ({self.url}, security profile {self.security_profile})"


class NetworkProfiles:
    """The profiles per slot, SetNetworkProfile validation (B09) and the NetworkConfigurationPriority check (B10).

    ``kv``: a ``KeyValue`` store; ``initial``: the profile of the station configuration, called on every use (the
    simulator API may change the configured URL at run time); ``identity``: the station identity (URL check);
    ``max_security_profile``: the highest profile the station has certificates for (default 1: no TLS files).
    """

    def __init__(self, kv, model: DeviceModel, initial: Callable[[], NetworkProfile], identity: str, *,
                 max_security_profile: Callable[[], int] = lambda: 1):
        self._max_security_profile = max_security_profile
        self._kv = kv
        self._model = model
        self._initial = initial
        self._identity = identity
        self._install_priority_check()

    # ---- slots and profiles ----------------------------------------------------------------------------------------
    def slots(self) -> list[int]:
        """The configuration slots: NetworkConfigurationPriority's valuesList (B09 scenario)."""
        d = self._model.definition(*_PRIORITY)
        return [int(s) for s in (d.values_list or ())] if d is not None else [self._initial().slot]

    def get(self, slot: int) -> NetworkProfile | None:
        """The profile in ``slot``: stored by the CSMS, else the configured one for the first slot, else None. The
        configured profile counts as removed while its security profile is below SecurityProfile (A05.FR.06: it
        cannot be deleted from the configuration file; a file edited to a high enough profile brings it back)."""
        data = self._kv.get(f"slot:{slot}")
        if data is not None:
            return NetworkProfile(slot=slot, url=data["ocppCsmsUrl"], security_profile=data["securityProfile"],
                                  message_timeout=data["messageTimeout"], ocpp_version=data["ocppVersion"],
                                  ocpp_interface=data["ocppInterface"])
        initial = self._initial()
        if slot != initial.slot or initial.security_profile < self.current_security_profile():
            return None
        return initial

    def priority(self) -> list[int]:
        """The stored NetworkConfigurationPriority, as slot numbers."""
        raw = self._model.get(*_PRIORITY)
        return [int(s) for s in split_list(raw or "")]

    @property
    def active_slot(self) -> int | None:
        """The slot of the last successful connection (B10.FR.07), persistent."""
        return self._kv.get("active")

    def connected_with(self, slot: int) -> None:
        if self._kv.get("active") != slot:
            self._kv.set("active", slot)

    def connected_at(self, profile: NetworkProfile) -> list[int]:
        """A connection with ``profile`` succeeded (A05.FR.06). SecurityProfile only goes up: when ``profile`` is
        above it, SecurityProfile becomes its security profile, the stored profiles below it are deleted and their
        slots leave NetworkConfigurationPriority (the configured profile is hidden by ``get``). A failed connection
        changes nothing, so a station that falls back (B10.FR.03/07) keeps its old SecurityProfile and profiles.
        Returns the slots removed."""
        self.connected_with(profile.slot)
        sp = profile.security_profile
        if sp <= self.current_security_profile():
            return []
        self._model.set("SecurityCtrlr", "SecurityProfile", str(sp), force=True)
        removed = []
        for slot in self.slots():
            stored = self._kv.get(f"slot:{slot}")
            if stored is not None:
                lower = stored["securityProfile"] < sp
                if lower:
                    self._kv.delete(f"slot:{slot}")
            else:
                initial = self._initial()
                lower = slot == initial.slot and initial.security_profile < sp
            if lower:
                removed.append(slot)
        priority = self.priority()
        kept = [s for s in priority if s not in removed] or [profile.slot]
        if kept != priority:
            self._model.set(*_PRIORITY, ",".join(str(s) for s in kept), force=True)
        if removed:
            log.warning("security profile %d in use: network profiles of slots %s removed (A05.FR.06)", sp,
                        ", ".join(map(str, removed)))
        return removed

    def current_security_profile(self) -> int:
        """SecurityCtrlr.SecurityProfile (B09.FR.04 compares a new profile with it)."""
        raw = self._model.get("SecurityCtrlr", "SecurityProfile")
        try:
            return int(raw) if raw is not None else 0
        except ValueError:
            return 0

    # ---- B09 ------------------------------------------------------------------------------------------------------
    def validate(self, slot: int, data: dict) -> str | None:
        """None if ``data`` (a schema-valid NetworkConnectionProfileType) can be stored in ``slot``, else the
        reasonCode of the Rejected answer (B09.FR.02/04/05)."""
        if slot not in self.slots():
            return "InvalidSlot"                         # B09.FR.05: not in NetworkConfigurationPriority's valuesList
        if data["ocppVersion"] not in OCPP_VERSIONS:
            return "UnsupportedVersion"
        if data["ocppTransport"] != "JSON":              # SOAP is not part of OCPP 2.0.1
            return "UnsupportedTransport"
        sp = data["securityProfile"]
        if sp < self.current_security_profile():
            return "NoSecurityDowngrade"                 # B09.FR.04
        if not 0 <= sp <= MAX_SECURITY_PROFILE:
            # B09 prerequisite: the data matches the station's abilities (this stack speaks profiles 0-3). Whether
            # the certificates for 2/3 are installed is no B09 check: A05.FR.02/03 refuse such a slot in
            # NetworkConfigurationPriority (TC_A_20 / TC_A_21 step 2: SetNetworkProfile Accepted, step 4 Rejected)
            return "UnsupportedSecurity"
        if "apn" in data or "vpn" in data:
            return "UnsupportedNetwork"                  # no modem or VPN client to configure
        if data["messageTimeout"] < 1:                   # MessageTimeout minLimit 1 (Part 2 §2.1.3)
            return "InvalidTimeout"
        try:
            # the URL check only: the real TLS context is built when the profile is used
            TransportConfig(url=data["ocppCsmsUrl"], identity=self._identity, subprotocols=["ocpp2.0.1"],
                            security_profile=sp, password=b"-" if sp in (1, 2) else None,
                            ssl_context=_URL_CHECK_CONTEXT if sp >= 2 else None).validate()
        except ValueError:
            return "InvalidURL"
        return None

    def store(self, slot: int, data: dict) -> None:
        """Store a validated profile (fields the station uses; customData is not kept)."""
        keep = ("ocppVersion", "ocppTransport", "ocppCsmsUrl", "messageTimeout", "securityProfile", "ocppInterface")
        self._kv.set(f"slot:{slot}", {k: data[k] for k in keep})

    # ---- B10.FR.01/02 ---------------------------------------------------------------------------------------------
    def _install_priority_check(self) -> None:
        """NetworkConfigurationPriority only accepts slots that hold a profile (B10.FR.02), and a profile above
        SecurityProfile only when the station has what it needs (A05.FR.02: a CSMS root for 2 and 3, A05.FR.03: a
        station certificate for 3); it answers RebootRequired (B10.FR.01): the connection order is read at boot
        (B10.FR.04). The default and the stored value are not checked again when the variable is (re)defined at boot
        (``current`` None there): a slot that became empty or unusable since is skipped by ``plan``."""
        d = self._model.definition(*_PRIORITY)
        if d is None:
            return

        def acceptable(value: str, current: str | None) -> bool:
            if current is None:
                return True
            # a profile at or below SecurityProfile is in use already; above it, the station must be able to use it
            allowed = max(self.current_security_profile(), min(MAX_SECURITY_PROFILE, self._max_security_profile()))
            profiles = [self.get(int(s)) for s in split_list(value)]
            return all(p is not None and p.security_profile <= allowed for p in profiles)
        self._model.define(dataclasses.replace(d, validator=acceptable, reboot_required=True))

    # ---- B10.FR.03/04/07 ------------------------------------------------------------------------------------------
    def plan(self, attempts: int, usable: Callable[[NetworkProfile], bool]) -> "ConnectionPlan":
        """The connection order of this boot: the priority entries that hold a usable profile, then the slot that
        connected last if it is not among them (B10.FR.07); the configured profile when nothing else is left."""
        order: list[NetworkProfile] = []
        for slot in self.priority() + ([self.active_slot] if self.active_slot is not None else []):
            profile = self.get(slot)
            if profile is not None and all(p.slot != slot for p in order) and usable(profile):
                order.append(profile)
        if not order:
            order.append(self._initial())
        return ConnectionPlan(order, attempts)


class ConnectionPlan:
    """Which profile the next connection attempt uses: ``attempts`` failed attempts per entry (B10.FR.03), then the
    next entry, wrapping around; a successful connection resets the count."""

    def __init__(self, order: list[NetworkProfile], attempts: int):
        if not order:
            raise ValueError("a connection plan needs at least one profile")
        self.order = list(order)
        self.attempts = max(1, attempts)
        self._index = 0
        self._failures = 0

    @property
    def current(self) -> NetworkProfile:
        return self.order[self._index]

    def failed(self) -> bool:
        """One connection attempt with ``current`` failed; True when the plan moved on to another profile."""
        self._failures += 1
        if self._failures < self.attempts or len(self.order) == 1:
            return False
        self._failures = 0
        self._index = (self._index + 1) % len(self.order)
        return True

    def connected(self) -> None:
        self._failures = 0
