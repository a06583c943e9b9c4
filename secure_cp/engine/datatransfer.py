"""Vendor DataTransfer handlers (1.6 §4.3/§5.6, 2.0.1 P01/P02): one registry for both protocol versions."""
from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger("secure_cp.datatransfer")

# handler(message_id, data) -> (status, response data or None); status "Accepted" | "Rejected" | "UnknownMessageId"
Handler = Callable[[str | None, str | None], tuple[str, str | None]]


class DataTransferRegistry:
    def __init__(self) -> None:
        self._vendors: dict[str, Handler] = {}

    def register(self, vendor_id: str, handler: Handler) -> None:
        self._vendors[vendor_id] = handler

    def handle(self, vendor_id: str, message_id: str | None, data: str | None) -> tuple[str, str | None]:
        """The spec's answers: UnknownVendorId (no data) for an unknown vendor; the handler decides the rest."""
        handler = self._vendors.get(vendor_id)
        if handler is None:
            return "UnknownVendorId", None
        try:
            return handler(message_id, data)
        except Exception:  # a vendor extension must not take the station down
            log.exception("DataTransfer handler for %s failed", vendor_id)
            return "Rejected", None


def echo_handler(message_id: str | None, data: str | None) -> tuple[str, str | None]:
    """The built-in "secure-cp" vendor: messageId "echo" returns the data (a connectivity check for CSMS developers)."""
    if message_id == "echo":
        return "Accepted", data
    return "UnknownMessageId", None
