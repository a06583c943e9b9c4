"""Modules imported at their first use, not at start-up.

``cryptography`` (and ``asn1crypto``) cost about 50 ms and 10 MB of a station's start and resident memory, yet a
station on security profile 0/1 with no certificates and no firmware update running never needs them. The modules
that use them bind module proxies from here at import time; the real import happens at the first attribute access
(a TLS context, a certificate, a signature check), and costs nothing after that.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module ``name`` and imports it at the first attribute access."""

    __slots__ = ("_name", "_module")

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r} ({'imported' if self._module else 'not imported yet'})>"


def module(name: str) -> Any:
    """A proxy for the module ``name`` (see the module docstring)."""
    return LazyModule(name)
