"""The station's one configuration store: OCPP 2.0.1 components and variables.

Every setting of the station lives here, addressed the 2.0.1 way (component, variable, their instances, EVSE and
connector, attribute type). OCPP 1.6 configuration keys are a *view* onto the same variables (see ``keys16``), so a
1.6 ChangeConfiguration and a later 2.0.1 GetVariables see one stored value.

The model is pure: no I/O except through a ``VariableBackend`` whose ``put`` is durable when it returns (the store
package provides an SQLite one; ``MemoryBackend`` serves unit tests).

Validation follows OCPP 2.0.1 Part 2 (DataEnumType, VariableCharacteristicsType, VariableAttributeType): the value
must parse as its data type, respect min/max (``minLimit``/``maxLimit``), the values list for OptionList and
MemberList/SequenceList members, and the maximum number of list members. Names of components and variables are case
insensitive in 2.0.1 (ComponentType.name, VariableType.name), so look-ups here are too.

WriteOnly values (e.g. SecurityCtrlr.BasicAuthPassword) are returned by ``get`` for internal use only; nothing in
this module ever logs a value.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Callable, Protocol, runtime_checkable

from rfc3339_validator import validate_rfc3339

__all__ = [
    "VarKey",
    "VariableBackend",
    "MemoryBackend",
    "VariableDef",
    "DeviceModel",
    "DATA_TYPES",
    "MUTABILITIES",
    "ATTRIBUTE_TYPES",
    "SET_STATUSES",
]

log = logging.getLogger(__name__)

#: (component, component_instance, evse_id, connector_id, variable, variable_instance, attribute_type);
#: "" = no instance, 0 = no EVSE/connector. The backend's primary key.
VarKey = tuple[str, str, int, int, str, str, str]

#: OCPP 2.0.1 DataEnumType values this model validates (passwordString/identifierString are stored as "string").
DATA_TYPES = ("integer", "decimal", "boolean", "dateTime", "string", "OptionList", "MemberList", "SequenceList")
#: OCPP 2.0.1 MutabilityEnumType.
MUTABILITIES = ("ReadOnly", "WriteOnly", "ReadWrite")
#: OCPP 2.0.1 AttributeEnumType.
ATTRIBUTE_TYPES = ("Actual", "Target", "MinSet", "MaxSet")
#: Results of ``DeviceModel.set``: SetVariableStatusEnumType of OCPP 2.0.1.
SET_STATUSES = (
    "Accepted",
    "Rejected",
    "RebootRequired",
    "UnknownComponent",
    "UnknownVariable",
    "NotSupportedAttributeType",
)

_LIST_TYPES = ("MemberList", "SequenceList")
_INTEGER_RE = re.compile(r"[+-]?[0-9]+")
_DECIMAL_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
#: Largest value of an OCPP integer (JSON schema "integer" is used for int32 fields throughout OCPP).
INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)


@runtime_checkable
class VariableBackend(Protocol):
    """Persistent storage of variable values, keyed by ``VarKey``."""

    def load_all(self) -> dict[VarKey, str]:
        """Every stored value (called once when a ``DeviceModel`` is created)."""
        ...

    def put(self, key: VarKey, value: str) -> None:
        """Store one value; durable when it returns (raise on failure, never swallow)."""
        ...


class MemoryBackend:
    """Dict-based ``VariableBackend`` for unit tests (and for ``persistent=False`` style experiments).

    Pass the same instance to a second ``DeviceModel`` to simulate a restart.
    """

    def __init__(self, initial: dict[VarKey, str] | None = None) -> None:
        self.data: dict[VarKey, str] = dict(initial or {})
        self.puts = 0  # number of writes, so tests can check that no-op writes are avoided where promised

    def load_all(self) -> dict[VarKey, str]:
        return dict(self.data)

    def put(self, key: VarKey, value: str) -> None:
        self.data[key] = value
        self.puts += 1


#: Whole-value check: (new normalized value, current value or None) -> acceptable?
ValueValidator = Callable[[str, "str | None"], bool]
#: Check of one list member (used instead of ``values_list`` membership when given).
MemberValidator = Callable[[str], bool]


@dataclass(frozen=True)
class VariableDef:
    """Definition of one variable (2.0.1 VariableCharacteristics + VariableAttribute mutability/persistence).

    ``min``/``max`` bound integer/decimal values (maxLimit/minLimit). ``max_length`` is the maximum number of members
    for MemberList/SequenceList and the maximum number of characters for string/OptionList values.
    ``validator`` (extra, optional) runs last on the normalized value; ``member_validator`` (extra, optional)
    replaces the ``values_list`` membership test for list members whose valid set is open-ended (e.g. 1.6
    measurands with a phase suffix) while ``values_list`` stays what is reported to a CSMS.
    ``attributes`` lists the attribute types this variable supports (only "Actual" unless told otherwise).
    """

    component: str
    variable: str
    data_type: str
    mutability: str = "ReadWrite"
    default: str | None = None
    unit: str | None = None
    min: Decimal | int | None = None
    max: Decimal | int | None = None
    values_list: tuple[str, ...] | None = None
    max_length: int | None = None
    reboot_required: bool = False
    persistent: bool = True
    component_instance: str = ""
    variable_instance: str = ""
    evse_id: int = 0
    connector_id: int = 0
    attributes: tuple[str, ...] = ("Actual",)
    validator: ValueValidator | None = field(default=None, compare=False, repr=False)
    member_validator: MemberValidator | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.data_type not in DATA_TYPES:
            raise ValueError(f"{self.component}.{self.variable}: unknown data type {self.data_type!r}")
        if self.mutability not in MUTABILITIES:
            raise ValueError(f"{self.component}.{self.variable}: unknown mutability {self.mutability!r}")
        if not self.attributes or any(a not in ATTRIBUTE_TYPES for a in self.attributes):
            raise ValueError(f"{self.component}.{self.variable}: bad attribute types {self.attributes!r}")
        if self.evse_id < 0 or self.connector_id < 0:
            raise ValueError(f"{self.component}.{self.variable}: evse/connector id must be >= 0")

    def key(self, attribute: str = "Actual") -> VarKey:
        """The backend key of this variable's ``attribute`` (names as defined, i.e. canonical case)."""
        return (
            self.component,
            self.component_instance,
            self.evse_id,
            self.connector_id,
            self.variable,
            self.variable_instance,
            attribute,
        )


def _ident(component: str, component_instance: str, evse_id: int, connector_id: int) -> tuple[str, str, int, int]:
    """Case-insensitive identity of a component (2.0.1 names are case insensitive)."""
    return (component.casefold(), component_instance.casefold(), evse_id, connector_id)


# Settings are read on every frame (e.g. the measurands of each meter sample): the two pure functions below keep
# their recent answers. Bounded: names and values may come from the CSMS.
@functools.lru_cache(maxsize=512)
def _lookup_key(key: VarKey) -> VarKey:
    c, ci, e, k, v, vi, a = key
    return (c.casefold(), ci.casefold(), e, k, v.casefold(), vi.casefold(), a)


@functools.lru_cache(maxsize=512)
def _members(value: str) -> tuple[str, ...]:
    return () if value.strip() == "" else tuple([m.strip() for m in value.split(",")])


def split_list(value: str) -> list[str]:
    """Members of a comma-separated list value; "" is the empty list; spaces around members are dropped."""
    return list(_members(value))     # a new list: callers may change theirs


def normalize(d: VariableDef, value: str, current: str | None = None, *, value_size: int | None = None) -> str | None:
    """The normalized form of ``value`` for ``d``, or None if the value is invalid for it.

    Normal forms: booleans lowercase, integers without sign/leading zeros noise, list members stripped and joined
    with "," (the 2.0.1 list format). Exposed so that callers can pre-check values (e.g. configured defaults).
    """
    if not isinstance(value, str):
        return None
    if value_size is not None and len(value) > value_size:
        return None
    t = d.data_type
    out: str
    if t == "boolean":
        low = value.strip().lower()
        if low not in ("true", "false"):
            return None
        out = low
    elif t == "integer":
        s = value.strip()
        if not _INTEGER_RE.fullmatch(s):
            return None
        n = int(s)
        if not (INT32_MIN <= n <= INT32_MAX):
            return None
        if (d.min is not None and n < d.min) or (d.max is not None and n > d.max):
            return None
        out = str(n)
    elif t == "decimal":
        s = value.strip()
        if not _DECIMAL_RE.fullmatch(s):
            return None
        try:
            x = Decimal(s)
        except InvalidOperation:  # pragma: no cover - the regex already excludes this
            return None
        if (d.min is not None and x < Decimal(d.min)) or (d.max is not None and x > Decimal(d.max)):
            return None
        out = s
    elif t == "dateTime":
        s = value.strip()
        if not validate_rfc3339(s):
            return None
        out = s
    elif t == "string":
        if d.max_length is not None and len(value) > d.max_length:
            return None
        out = value
    elif t == "OptionList":
        s = value.strip()
        if d.values_list is not None and s not in d.values_list:
            return None
        if d.max_length is not None and len(s) > d.max_length:
            return None
        out = s
    else:  # MemberList / SequenceList
        members = split_list(value)
        if any(m == "" for m in members):
            return None
        if t == "MemberList" and len(set(members)) != len(members):
            return None  # a MemberList is a set: duplicates are a malformed value
        if d.max_length is not None and len(members) > d.max_length:
            return None
        for m in members:
            if d.member_validator is not None:
                if not d.member_validator(m):
                    return None
            elif d.values_list is not None and m not in d.values_list:
                return None
        out = ",".join(members)
    if d.validator is not None and not d.validator(out, current):
        return None
    return out


class DeviceModel:
    """Components and variables with validation, persistence and change notification.

    ``define`` registers a variable; a value already in the backend wins over the definition's default (so a
    setting survives restarts and software updates), unless it no longer validates under the new definition, in
    which case the default is used and a warning (without the value) is logged.
    """

    def __init__(self, backend: VariableBackend, *, value_size: int = 1000) -> None:
        # value_size: OCPP 2.0.1 SetVariableData.attributeValue is string[0..1000]; DeviceDataCtrlr.ValueSize may
        # lower it.
        self._backend = backend
        self._value_size = value_size
        self._stored: dict[VarKey, str] = {_lookup_key(k): v for k, v in backend.load_all().items()}
        self._defs: dict[VarKey, VariableDef] = {}  # lookup key with attribute "" -> def
        self._components: set[tuple[str, str, int, int]] = set()
        self._values: dict[VarKey, str] = {}  # lookup key (with attribute) -> current value
        #: counts the changes of current values (define, set): what a reader derived from values stays valid as
        #: long as this does not move
        self.changes = 0
        self._subscribers: list[Callable[[VariableDef, str], None]] = []

    # -- definitions -------------------------------------------------------------------------------------------

    @staticmethod
    def _def_key(component: str, component_instance: str, evse_id: int, connector_id: int, variable: str,
                 variable_instance: str) -> VarKey:
        return _lookup_key((component, component_instance, evse_id, connector_id, variable, variable_instance, ""))

    def define(self, d: VariableDef) -> None:
        """Register ``d`` (re-defining replaces the definition). Raises ValueError if its default is invalid."""
        if d.default is not None and normalize(d, d.default, None) is None:
            raise ValueError(f"{d.component}.{d.variable}: invalid default")
        dk = self._def_key(d.component, d.component_instance, d.evse_id, d.connector_id, d.variable,
                           d.variable_instance)
        self._defs[dk] = d
        self._components.add(_ident(d.component, d.component_instance, d.evse_id, d.connector_id))
        for attr in d.attributes:
            lk = _lookup_key(d.key(attr))
            stored = self._stored.get(lk) if d.persistent else None
            value: str | None = None
            if stored is not None:
                value = normalize(d, stored, None)
                if value is None:
                    log.warning("stored value of %s.%s[%s] is no longer valid; using the default",
                                d.component, d.variable, attr)
            if value is None and attr == "Actual" and d.default is not None:
                value = normalize(d, d.default, None)
            if value is None:
                self._values.pop(lk, None)
            else:
                self._values[lk] = value
            self.changes += 1

    def definition(self, component: str, variable: str, *, component_instance: str = "", variable_instance: str = "",
                   evse_id: int = 0, connector_id: int = 0) -> VariableDef | None:
        """The definition of a variable, or None."""
        return self._defs.get(self._def_key(component, component_instance, evse_id, connector_id, variable,
                                            variable_instance))

    def definitions(self) -> list[VariableDef]:
        """All definitions, in definition order."""
        return list(self._defs.values())

    # -- values ------------------------------------------------------------------------------------------------

    def get(self, component: str, variable: str, *, component_instance: str = "", variable_instance: str = "",
            evse_id: int = 0, connector_id: int = 0, attribute: str = "Actual") -> str | None:
        """The raw current value (WriteOnly values included: internal use only), or None if unknown or unset."""
        return self._values.get(_lookup_key((component, component_instance, evse_id, connector_id, variable,
                                             variable_instance, attribute)))

    def is_stored(self, component: str, variable: str, *, component_instance: str = "", variable_instance: str = "",
                  evse_id: int = 0, connector_id: int = 0, attribute: str = "Actual") -> bool:
        """True once a value of the variable has been written (and persisted), False while it has its default."""
        return _lookup_key((component, component_instance, evse_id, connector_id, variable, variable_instance,
                            attribute)) in self._stored

    def set(self, component: str, variable: str, value: str, *, component_instance: str = "",
            variable_instance: str = "", evse_id: int = 0, connector_id: int = 0, attribute: str = "Actual",
            force: bool = False) -> str:
        """Validate and store a value; returns a SetVariableStatusEnumType value.

        ReadOnly variables are "Rejected" unless ``force`` (station-internal writes). On success the value is
        persisted through the backend (unless the definition is not persistent) *before* it becomes visible, then
        subscribers are called. "RebootRequired" means stored, effective after a reboot.
        """
        if _ident(component, component_instance, evse_id, connector_id) not in self._components:
            return "UnknownComponent"
        d = self._defs.get(self._def_key(component, component_instance, evse_id, connector_id, variable,
                                         variable_instance))
        if d is None:
            return "UnknownVariable"
        if attribute not in d.attributes:
            return "NotSupportedAttributeType"
        if d.mutability == "ReadOnly" and not force:
            return "Rejected"
        lk = _lookup_key(d.key(attribute))
        new = normalize(d, value, self._values.get(lk), value_size=self._value_size)
        if new is None:
            return "Rejected"
        if d.persistent:
            self._backend.put(d.key(attribute), new)
            self._stored[lk] = new      # a later re-definition must not revert to the value loaded at start
        self._values[lk] = new
        self.changes += 1
        for cb in list(self._subscribers):
            try:
                cb(d, new)
            except Exception:  # a faulty listener must not turn a stored change into an error for the caller
                log.exception("device-model subscriber failed for %s.%s", d.component, d.variable)
        return "RebootRequired" if d.reboot_required else "Accepted"

    def check(self, d: VariableDef, value: str, *, attribute: str = "Actual") -> str | None:
        """Normalized ``value`` if ``set`` would accept it for ``d`` (ignoring mutability), else None."""
        lk = _lookup_key(d.key(attribute))
        return normalize(d, value, self._values.get(lk), value_size=self._value_size)

    def subscribe(self, callback: Callable[[VariableDef, str], None]) -> None:
        """Call ``callback(definition, new_value)`` after each accepted change.

        The value of a WriteOnly variable is passed too (e.g. the transport needs a new Basic-auth password):
        listeners must never log it.
        """
        self._subscribers.append(callback)
