"""The Local Authorization List as both protocols see it: lookups for the Authorizer, updates from SendLocalList.

OCPP 1.6 §3.5.2 / §5.10 / §5.15 and OCPP 2.0.1 D01 / D02 describe the same list; the only differences are the names
of the fields and of the statuses, which the adapters translate. Entries are kept as 1.6-style idTagInfo (the form
the Authorizer and the authorization cache use), keyed by idTag / idToken value.

Rules applied here (the adapters answer NotSupported / Failed for a disabled list before calling ``apply``):

* A differential update whose version is not greater than the current one is refused: ``VersionMismatch``
  (1.6 §7.47 UpdateStatus, 2.0.1 D01.FR.19).
* A version below 1 is refused (``Failed``): 2.0.1 D01.FR.18 reserves 0 for "no list"; 1.6 gives 0 the same
  meaning (§5.10 "0 = empty") and -1 the meaning "not supported", so neither can name a list that was sent.
* Duplicate identifiers (1.6 §6.41, D01.FR.06), more entries than fit in one message (1.6 SendLocalListMaxLength,
  D01.FR.11 ItemsPerMessage), or a result larger than the list can hold (LocalAuthListMaxLength /
  LocalAuthListCtrlr.Entries maxLimit) leave the list unchanged: ``Failed``.
* Full: entries without idTagInfo cannot be on a list (they would have no status): ``Failed``. Differential:
  entries with idTagInfo are added or replaced, entries without are removed (1.6 §7.1, D01.FR.16/17); an empty
  differential update changes only the version (D01.FR.05).
"""
from __future__ import annotations

from typing import Callable, Sequence

from ..store import LocalList, LocalListFull

ACCEPTED, FAILED, VERSION_MISMATCH = "Accepted", "Failed", "VersionMismatch"


class LocalAuthList:
    """The list plus the settings that govern it; ``enabled``, ``max_entries`` and ``items_per_message`` are read
    on every use so that a ChangeConfiguration / SetVariables takes effect at once."""

    def __init__(self, store: LocalList, *, enabled: Callable[[], bool], max_entries: Callable[[], int],
                 items_per_message: Callable[[], int], on_change: Callable[[int], None] | None = None):
        self.store = store
        self.enabled = enabled
        self.max_entries = max_entries
        self.items_per_message = items_per_message
        self.on_change = on_change or (lambda count: None)

    def lookup(self, id_tag: str) -> dict | None:
        """The idTagInfo of ``id_tag`` on the list, or None (also while the list is disabled: LocalAuthListEnabled)."""
        if not self.enabled():
            return None
        return self.store.get(id_tag)

    def version(self) -> int:
        return self.store.version()

    def __len__(self) -> int:
        return len(self.store)

    def apply(self, update_type: str, version: int, entries: Sequence[tuple[str, dict | None]]) -> str:
        """Apply a SendLocalList: Accepted | Failed | VersionMismatch (see the module docstring)."""
        if update_type == "Differential" and version <= self.store.version():
            return VERSION_MISMATCH
        if version < 1:
            return FAILED
        tags = [tag for tag, _ in entries]
        if len(set(tags)) != len(tags) or len(entries) > max(0, self.items_per_message()):
            return FAILED
        try:
            if update_type == "Full":
                if any(info is None for _, info in entries):
                    return FAILED
                self.store.replace(version, {tag: dict(info) for tag, info in entries if info is not None},
                                   max_entries=self.max_entries())
            else:
                self.store.update(version, {tag: dict(info) for tag, info in entries if info is not None},
                                  [tag for tag, info in entries if info is None], max_entries=self.max_entries())
        except LocalListFull:
            return FAILED
        self.on_change(len(self.store))
        return ACCEPTED
