"""The attributes of :class:`secure_cp.runtime.Station` that both of its mixins read
(:class:`secure_cp.runtime_security.StationSecurity`, :class:`secure_cp.runtime_files.StationFiles`), typed once.

Declarations only: Station sets them (``Station.__init__`` / ``_open_store``); nothing here runs or is imported from
``secure_cp.runtime`` at run time.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import StationConfig
    from .devicemodel import DeviceModel
    from .runtime import Clock
    from .security.certstore import CertificateStore
    from .securityevents import SecurityEvents
    from .store import Database
    from .v16.adapter import Ocpp16Adapter
    from .v201.adapter import Ocpp201Adapter


class StationParts:
    """Station's attributes shared by its mixins (annotations only)."""

    cfg: StationConfig
    clock: Clock
    db: Database
    model: DeviceModel
    adapter: Ocpp16Adapter | Ocpp201Adapter
    security_events: SecurityEvents
    certificates: CertificateStore
