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
  D01.FR.11 LocalAuthListCtrlr.ItemsPerMessage), a message larger than LocalAuthListCtrlr.BytesPerMessage (D01.FR.11;
  2.0.1 only: the adapter passes the size of the frame received), or a result larger than the list can hold
  (LocalAuthListMaxLength / LocalAuthListCtrlr.Entries maxLimit, D01.FR.12) leave the list unchanged: ``Failed``.
  D01 names no other status for a message over the limits; the reason travels as the 2.0.1 statusInfo reasonCode of
  the appendix (TooManyElements is the one listed for SendLocalList; OutOfStorage for a full list).
* Full: entries without idTagInfo cannot be on a list (they would have no status): ``Failed``. Differential:
  entries with idTagInfo are added or replaced, entries without are removed (1.6 §7.1, D01.FR.16/17); an empty
  differential update changes only the version (D01.FR.05).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

from ..store import LocalList, LocalListFull

ACCEPTED, FAILED, VERSION_MISMATCH = "Accepted", "Failed", "VersionMismatch"


class ListUpdate(NamedTuple):
    """The outcome of a SendLocalList: the status, and for a refusal a reason code (2.0.1 Part 2 appendix
    "Reason codes") with a human-readable detail (statusInfo.additionalInfo)."""
    status: str
    reason: str | None = None
    detail: str = ""


class LocalAuthList:
    """The list plus the settings that govern it; ``enabled``, ``max_entries``, ``items_per_message`` and
    ``bytes_per_message`` (None: no limit) are read on every use so that a ChangeConfiguration / SetVariables takes
    effect at once."""

    def __init__(self, store: LocalList, *, enabled: Callable[[], bool], max_entries: Callable[[], int],
                 items_per_message: Callable[[], int], on_change: Callable[[int], None] | None = None,
                 bytes_per_message: Callable[[], int | None] | None = None):
        self.store = store
        self.enabled = enabled
        self.max_entries = max_entries
        self.items_per_message = items_per_message
        self.bytes_per_message = bytes_per_message or (lambda: None)
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

    def apply(self, update_type: str, version: int, entries: Sequence[tuple[str, dict | None]], *,
              message_bytes: int | None = None) -> ListUpdate:
        """Apply a SendLocalList: Accepted | Failed | VersionMismatch (see the module docstring). ``message_bytes``:
        the size of the request as received, checked against ``bytes_per_message``."""
        if update_type == "Differential" and version <= self.store.version():
            return ListUpdate(VERSION_MISMATCH, "InvalidValue", f"version {version} <= {self.store.version()}")
        if version < 1:
            return ListUpdate(FAILED, "ValuePositiveOnly", "the version must be greater than 0")
        tags = [tag for tag, _ in entries]
        if len(set(tags)) != len(tags):
            return ListUpdate(FAILED, "InvalidValue", "duplicate identifiers")
        items = max(0, self.items_per_message())
        if len(entries) > items:
            return ListUpdate(FAILED, "TooManyElements", f"{len(entries)} entries; ItemsPerMessage is {items}")
        limit = self.bytes_per_message()
        if limit is not None and message_bytes is not None and message_bytes > limit:
            return ListUpdate(FAILED, "TooManyElements",
                              f"message of {message_bytes} bytes; BytesPerMessage is {limit}")
        if update_type == "Full" and any(info is None for _, info in entries):
            return ListUpdate(FAILED, "MissingParam", "a Full list entry without authorization data")
        capacity = self.max_entries()
        try:
            if update_type == "Full":
                self.store.replace(version, {tag: dict(info) for tag, info in entries if info is not None},
                                   max_entries=capacity)
            else:
                self.store.update(version, {tag: dict(info) for tag, info in entries if info is not None},
                                  [tag for tag, info in entries if info is None], max_entries=capacity)
        except LocalListFull:
            return ListUpdate(FAILED, "OutOfStorage", f"the list holds at most {capacity} entries")
        self.on_change(len(self.store))
        return ListUpdate(ACCEPTED)
