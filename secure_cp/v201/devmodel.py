"""OCPP 2.0.1 device-model messages: GetVariables (B06), SetVariables (B05), GetBaseReport / GetReport / NotifyReport
(B07, B08).

Pure functions from payload dicts to payload dicts, camelCase as on the wire. Requests are assumed to be valid
against the official schema (the RPC endpoint validates before a handler runs); every payload produced here is
valid against the official schema too. Values come from, and go to, the shared ``DeviceModel``; the model does the
dataType / limit / values-list validation, this module adds the 2.0.1 wire rules on top (Part 2 §2.1.4 primitive
datatypes) and the message-level limits of DeviceDataCtrlr.

Nothing here logs a value: BasicAuthPassword is WriteOnly (P2 §2.2.1) and never leaves the station.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import replace
from decimal import Decimal
from typing import Any

from ..devicemodel.model import DeviceModel, VariableDef, normalize
from ..devicemodel.v201 import REPORTING_VALUE_SIZE, VALUE_SIZE, is_constant
from ..rpc.errors import ErrorKind, OcppError
from ..rpc.frames import Call, encode

__all__ = ["get_variables", "set_variables", "base_report", "custom_report", "REPORT_BASES", "COMPONENT_CRITERIA"]

log = logging.getLogger(__name__)

#: ReportBaseEnumType (Part 2 §3.70).
REPORT_BASES = ("ConfigurationInventory", "FullInventory", "SummaryInventory")
#: ComponentCriterionEnumType (Part 2 §3.17): every value is supported (B08.FR.07-10). Criterion -> the component
#: variable it reads, and whether a component without that variable matches (Active / Available / Enabled: yes;
#: Problem: no).
COMPONENT_CRITERIA = {"Active": ("active", True), "Available": ("available", True), "Enabled": ("enabled", True),
                      "Problem": ("problem", False)}

#: Part 2 §2.1.4: integer "No leading 0's, No plus sign"; boolean "Only allowed values: false and true"; decimal sent
#: to the Charging Station "SHALL NOT have more than six decimal places"; dateTime fractional seconds at most 3.
_INTEGER_201 = re.compile(r"-?(?:0|[1-9][0-9]*)")
_DECIMAL_FRACTION = re.compile(r"\.([0-9]*)")
_DATETIME_FRACTION = re.compile(r"T[0-9]{2}:[0-9]{2}:[0-9]{2}\.([0-9]+)")
#: Appendix 5 reason codes (reason_codes.csv) used in attributeStatusInfo.
_READ_ONLY, _WRITE_ONLY, _INVALID, _OUT_OF_RANGE, _TOO_LARGE, _INTERNAL = (
    "ReadOnly", "WriteOnly", "InvalidValue", "ValueOutOfRange", "TooLargeElement", "InternalError")
#: A messageId of the maximum length (OCPP-J: string[36]): a frame measured with it is never shorter than the real one.
_LONGEST_ID = "0" * 36
#: Component variables of "abnormal State" for SummaryInventory (B07.FR.09 note: Problem, Tripped, Overload, Fallback).
_PROBLEM_VARIABLES = frozenset({"problem", "tripped", "overload", "fallback"})


# -- shared helpers ------------------------------------------------------------------------------------------------

def _int_value(model: DeviceModel, component: str, variable: str, instance: str = "") -> int | None:
    raw = model.get(component, variable, variable_instance=instance)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _limit(default: int, *values: int | None) -> int:
    return min([default, *(v for v in values if v is not None and v > 0)])


def _reporting_size(model: DeviceModel) -> int:
    """Maximum length of a reported value: ReportingValueSize (P2 §2.1.21) and ValueSize (CSV), at most 2500."""
    return _limit(REPORTING_VALUE_SIZE, _int_value(model, "DeviceDataCtrlr", "ReportingValueSize"),
                  _int_value(model, "DeviceDataCtrlr", "ValueSize"))


def _configuration_size(model: DeviceModel) -> int:
    """Maximum length of a value set or a valuesList: ConfigurationValueSize (P2 §2.1.20) and ValueSize, <= 1000."""
    return _limit(VALUE_SIZE, _int_value(model, "DeviceDataCtrlr", "ConfigurationValueSize"),
                  _int_value(model, "DeviceDataCtrlr", "ValueSize"))


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))  # encode() writes lone surrogates as \u escapes: always encodable


_EMPTY_OBJECT_FRAME = _utf8_len(encode(Call("", "A", {})))


def _json_size(obj: dict) -> int:
    """Bytes of ``obj`` as compact JSON, measured with the encoder that writes the frames."""
    return _utf8_len(encode(Call("", "A", obj))) - _EMPTY_OBJECT_FRAME + 2


def _check_message(model: DeviceModel, action: str, entries: list, message_size: int | None,
                   payload: dict) -> None:
    """ItemsPerMessage / BytesPerMessage [action] (B06.FR.16 / B06.FR.17; SetVariables by analogy)."""
    items = _int_value(model, "DeviceDataCtrlr", "ItemsPerMessage", action)
    if items is not None and len(entries) > items:
        raise OcppError(ErrorKind.OCCURRENCE_CONSTRAINT_VIOLATION,
                        f"{len(entries)} entries; ItemsPerMessage{action} is {items}")
    limit = _int_value(model, "DeviceDataCtrlr", "BytesPerMessage", action)
    if limit is not None:
        size = message_size if message_size is not None else _json_size(payload)
        if size > limit:
            raise OcppError(ErrorKind.FORMATION_VIOLATION,
                            f"message of {size} bytes; BytesPerMessage{action} is {limit}")


class _Resolver:
    """Finds the definition a ComponentType / VariableType pair names, or why there is none (B05.FR.04/05,
    B06.FR.06/07/14/15). Names and instances are case-insensitive (DeviceModel); an absent instance is ""."""

    def __init__(self, model: DeviceModel) -> None:
        self._model = model
        self._components: set[tuple[str, str, int, int]] | None = None

    def resolve(self, component: dict, variable: dict) -> tuple[VariableDef | None, str]:
        evse = component.get("evse") or {}
        ident = (component["name"], component.get("instance", ""), evse.get("id", 0), evse.get("connectorId", 0))
        d = self._model.definition(ident[0], variable["name"], component_instance=ident[1],
                                   variable_instance=variable.get("instance", ""), evse_id=ident[2],
                                   connector_id=ident[3])
        if d is not None:
            return d, "Accepted"
        if self._components is None:  # built once per message, only when something is unknown
            self._components = {(x.component.casefold(), x.component_instance.casefold(), x.evse_id, x.connector_id)
                                for x in self._model.definitions()}
        known = (ident[0].casefold(), ident[1].casefold(), ident[2], ident[3]) in self._components
        return None, "UnknownVariable" if known else "UnknownComponent"


def _status_info(reason: str) -> dict:
    return {"reasonCode": reason}


# -- B06 GetVariables ----------------------------------------------------------------------------------------------

def get_variables(model: DeviceModel, request: dict, *, message_size: int | None = None) -> dict:
    """GetVariablesResponse for a (schema-valid) GetVariablesRequest (Part 2 B06).

    One result per request entry, in order, echoing its component and variable (B06.FR.01-03/14). Statuses:
    UnknownComponent / UnknownVariable / NotSupportedAttributeType without a value (B06.FR.06-08); Rejected for a
    WriteOnly variable (B06.FR.09, reasonCode WriteOnly); Accepted with the value, "" if it has none (B06.FR.10/13),
    cut to ReportingValueSize. An absent attributeType is answered as Actual (B06.FR.11).

    Raises OcppError OCCURRENCE_CONSTRAINT_VIOLATION above ItemsPerMessage[GetVariables] (B06.FR.16) and
    FORMATION_VIOLATION (2.0.1 "FormatViolation") above BytesPerMessage[GetVariables] (B06.FR.17). ``message_size`` is
    the byte length of the received CALL frame if the caller knows it; otherwise the payload's compact JSON is
    measured (a lower bound).
    """
    entries = request["getVariableData"]
    _check_message(model, "GetVariables", entries, message_size, request)
    resolver = _Resolver(model)
    size = _reporting_size(model)
    results = []
    for item in entries:
        attribute = item.get("attributeType", "Actual")
        result: dict[str, Any] = {"component": copy.deepcopy(item["component"]),
                                  "variable": copy.deepcopy(item["variable"]), "attributeType": attribute}
        d, status = resolver.resolve(item["component"], item["variable"])
        if d is not None and attribute not in d.attributes:
            status = "NotSupportedAttributeType"
        elif d is not None and d.mutability == "WriteOnly":
            status = "Rejected"
            result["attributeStatusInfo"] = _status_info(_WRITE_ONLY)
        elif d is not None:
            value = model.get(d.component, d.variable, component_instance=d.component_instance,
                              variable_instance=d.variable_instance, evse_id=d.evse_id,
                              connector_id=d.connector_id, attribute=attribute)
            result["attributeValue"] = "" if value is None else value[:size]
        result["attributeStatus"] = status
        results.append(result)
    return {"getVariableResult": results}


# -- B05 SetVariables ----------------------------------------------------------------------------------------------

def _utf8_ok(value: str) -> bool:
    """Part 2 §2.1.4 string: UTF-8 characters. A lone surrogate (from a "\\ud800" escape) is none."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _wire_ok(d: VariableDef, value: str) -> bool:
    """The 2.0.1 primitive-datatype syntax (Part 2 §2.1.4), stricter than the model's (which also serves 1.6)."""
    if d.data_type == "integer":
        return _INTEGER_201.fullmatch(value) is not None
    if d.data_type == "boolean":
        return value in ("true", "false")
    if d.data_type == "decimal":
        m = _DECIMAL_FRACTION.search(value)
        return value == value.strip() and (m is None or len(m.group(1)) <= 6)
    if d.data_type == "dateTime":
        m = _DATETIME_FRACTION.search(value)
        return value == value.strip() and (m is None or len(m.group(1)) <= 3)
    return True


def _rejection_reason(d: VariableDef, value: str) -> str:
    """ValueOutOfRange when the value is well-formed but outside minLimit/maxLimit (B05.FR.08), else InvalidValue."""
    if d.data_type in ("integer", "decimal") and (d.min is not None or d.max is not None):
        unbounded = replace(d, min=None, max=None, validator=None)
        if normalize(unbounded, value) is not None:
            return _OUT_OF_RANGE
    return _INVALID


def set_variables(model: DeviceModel, request: dict, *,
                  message_size: int | None = None) -> tuple[dict, list[VariableDef]]:
    """SetVariablesResponse for a (schema-valid) SetVariablesRequest (Part 2 B05), and the definitions whose value
    was stored (in order, once each) so that the caller can apply them.

    Entries are processed in order, each on its own (B05.FR.01-03, attributeType Actual when absent: B05.FR.12).
    UnknownComponent / UnknownVariable / NotSupportedAttributeType (B05.FR.04-06); Rejected for a value that is not
    valid for the variable's dataType, values list or size (B05.FR.07, reasonCode InvalidValue / TooLargeElement),
    out of range (B05.FR.08, ValueOutOfRange), a ReadOnly variable or a storage failure (B05.FR.09, ReadOnly /
    InternalError); Accepted, or RebootRequired for a variable that takes effect after a reboot (B05.FR.10).

    Above ItemsPerMessage[SetVariables] / BytesPerMessage[SetVariables] raises OcppError like ``get_variables``: B05
    names no reaction (B05.FR.11 only binds the CSMS), so the GetVariables one (B06.FR.16/17) is applied.
    """
    entries = request["setVariableData"]
    _check_message(model, "SetVariables", entries, message_size, request)
    resolver = _Resolver(model)
    max_value = _configuration_size(model)
    results = []
    changed: list[VariableDef] = []
    for item in entries:
        attribute = item.get("attributeType", "Actual")
        result: dict[str, Any] = {"component": copy.deepcopy(item["component"]),
                                  "variable": copy.deepcopy(item["variable"]), "attributeType": attribute}
        d, status = resolver.resolve(item["component"], item["variable"])
        reason: str | None = None
        if d is not None:
            status, reason = _set_one(model, d, attribute, item["attributeValue"], max_value)
            if status in ("Accepted", "RebootRequired") and d not in changed:
                changed.append(d)
        result["attributeStatus"] = status
        if reason is not None:
            result["attributeStatusInfo"] = _status_info(reason)
        results.append(result)
    return {"setVariableResult": results}, changed


def _set_one(model: DeviceModel, d: VariableDef, attribute: str, value: str, max_value: int) -> tuple[str, str | None]:
    if attribute not in d.attributes:
        return "NotSupportedAttributeType", None
    if d.mutability == "ReadOnly":
        return "Rejected", _READ_ONLY
    if len(value) > max_value:
        return "Rejected", _TOO_LARGE
    if not _utf8_ok(value) or not _wire_ok(d, value):
        return "Rejected", _INVALID
    try:
        status = model.set(d.component, d.variable, value, component_instance=d.component_instance,
                           variable_instance=d.variable_instance, evse_id=d.evse_id, connector_id=d.connector_id,
                           attribute=attribute)
    except Exception:  # B05.FR.09: "setting the variable fails because of technical problems" -> Rejected
        log.exception("storing %s.%s failed", d.component, d.variable)  # never the value
        return "Rejected", _INTERNAL
    if status == "Rejected":
        return status, _rejection_reason(d, value)
    return status, None


# -- B07 GetBaseReport / NotifyReport ------------------------------------------------------------------------------

def _json_number(x: Decimal | int) -> Decimal | int:
    if isinstance(x, Decimal) and x == x.to_integral_value():
        return int(x)
    return x


def _characteristics(d: VariableDef, values_size: int) -> dict:
    """VariableCharacteristicsType (Part 2 §2.51). maxLimit of string/OptionList is its maximum length; a list's
    maximum is a number of members in ``VariableDef.max_length`` but a CSV string length in maxLimit, so lists
    report none."""
    out: dict[str, Any] = {"dataType": d.data_type}
    if d.unit:
        out["unit"] = d.unit
    if d.data_type in ("integer", "decimal"):
        if d.min is not None:
            out["minLimit"] = _json_number(d.min)
        if d.max is not None:
            out["maxLimit"] = _json_number(d.max)
    elif d.data_type in ("string", "OptionList") and d.max_length is not None:
        out["maxLimit"] = d.max_length
    if d.values_list is not None:
        text = ",".join(d.values_list)
        if text and len(text) <= values_size:  # optional field: left out rather than cut into a wrong list
            out["valuesList"] = text
    out["supportsMonitoring"] = False
    return out


def _report_data(model: DeviceModel, d: VariableDef, value_size: int, values_size: int) -> dict:
    component: dict[str, Any] = {"name": d.component}
    if d.component_instance:
        component["instance"] = d.component_instance
    if d.evse_id:
        component["evse"] = {"id": d.evse_id, **({"connectorId": d.connector_id} if d.connector_id else {})}
    variable: dict[str, Any] = {"name": d.variable}
    if d.variable_instance:
        variable["instance"] = d.variable_instance
    attributes = []
    constant = is_constant(d)
    for attribute in d.attributes:  # B07.FR.11: every supported attribute type, set or not
        entry: dict[str, Any] = {"type": attribute}
        if d.mutability != "WriteOnly":
            value = model.get(d.component, d.variable, component_instance=d.component_instance,
                              variable_instance=d.variable_instance, evse_id=d.evse_id,
                              connector_id=d.connector_id, attribute=attribute)
            if value is not None:
                entry["value"] = value[:value_size]
        entry.update(mutability=d.mutability, persistent=d.persistent, constant=constant)
        attributes.append(entry)
    return {"component": component, "variable": variable, "variableAttribute": attributes,
            "variableCharacteristics": _characteristics(d, values_size)}


def _summary(model: DeviceModel, defs: list[VariableDef]) -> list[VariableDef]:
    """B07.FR.09: AvailabilityState of the station and every EVSE, of a Connector if known and different from its
    EVSE's, and the Problem/Tripped/Overload/Fallback variables that are true."""
    def value(d: VariableDef) -> str | None:
        return model.get(d.component, d.variable, component_instance=d.component_instance,
                         variable_instance=d.variable_instance, evse_id=d.evse_id, connector_id=d.connector_id)

    evse_state = {d.evse_id: value(d) for d in defs
                  if d.component.casefold() == "evse" and d.variable.casefold() == "availabilitystate"}
    out = []
    for d in defs:
        component, variable = d.component.casefold(), d.variable.casefold()
        if variable == "availabilitystate" and component in ("chargingstation", "evse"):
            out.append(d)
        elif variable == "availabilitystate" and component == "connector":
            state = value(d)
            if state is not None and state != evse_state.get(d.evse_id):
                out.append(d)
        elif variable in _PROBLEM_VARIABLES and d.data_type == "boolean" and value(d) == "true":
            out.append(d)
    return out


def _sorted_definitions(model: DeviceModel) -> list[VariableDef]:
    """Every definition in report order: by EVSE, connector, component, instance, variable, instance."""
    return sorted(model.definitions(), key=lambda d: (d.evse_id, d.connector_id, d.component.casefold(),
                                                      d.component_instance.casefold(), d.variable.casefold(),
                                                      d.variable_instance.casefold()))


def _select(model: DeviceModel, report_base: str) -> list[VariableDef]:
    defs = _sorted_definitions(model)
    if report_base == "FullInventory":  # B07.FR.08
        return defs
    if report_base == "ConfigurationInventory":  # B07.FR.07: what the operator can set
        return [d for d in defs if d.mutability in ("ReadWrite", "WriteOnly")]
    if report_base == "SummaryInventory":
        return _summary(model, defs)
    raise ValueError(f"unknown reportBase {report_base!r}")


def _frame_size(payload: dict) -> int:
    return _utf8_len(encode(Call(_LONGEST_ID, "NotifyReport", payload)))


def base_report(model: DeviceModel, request_id: int, report_base: str, *, generated_at: str, items_per_message: int,
                bytes_per_message: int) -> list[dict]:
    """The NotifyReportRequest payloads answering an accepted GetBaseReportRequest (Part 2 B07).

    ConfigurationInventory: the variables the operator can set (ReadWrite, WriteOnly; B07.FR.07); FullInventory:
    all (B07.FR.08); SummaryInventory: availability and problem conditions (B07.FR.09). Each reportData carries
    every supported attribute type (B07.FR.11; no value when unset or WriteOnly) and its variableCharacteristics.
    Messages carry the requestId (B07.FR.04), seqNo from 0 (B07.FR.10), tbc true on all but the last; each holds at
    most ``items_per_message`` reportData and its whole CALL frame, encoded as sent (messageId of the maximum 36
    characters), at most ``bytes_per_message`` bytes. An empty report is one message without reportData.

    Raises ValueError for an unknown report_base, limits below 1, or an entry that cannot fit in
    ``bytes_per_message`` on its own.
    """
    return _notify_report(model, request_id, _select(model, report_base), generated_at=generated_at,
                          items_per_message=items_per_message, bytes_per_message=bytes_per_message)


def _notify_report(model: DeviceModel, request_id: int, defs: list[VariableDef], *, generated_at: str,
                   items_per_message: int, bytes_per_message: int) -> list[dict]:
    """The NotifyReportRequest payloads reporting ``defs`` (B07 and B08 alike): see ``base_report``."""
    if items_per_message < 1 or bytes_per_message < 1:
        raise ValueError("items_per_message and bytes_per_message must be positive")
    value_size, values_size = _reporting_size(model), _configuration_size(model)
    items = [_report_data(model, d, value_size, values_size) for d in defs]
    sizes = [_json_size(item) for item in items]

    def payload(seq_no: int, chunk: list[dict], tbc: bool) -> dict:
        out: dict[str, Any] = {"requestId": request_id, "generatedAt": generated_at}
        if chunk:
            out["reportData"] = chunk
        out.update(tbc=tbc, seqNo=seq_no)
        return out

    if not items:
        return [payload(0, [], False)]
    messages: list[dict] = []
    i = 0
    while i < len(items):
        seq_no = len(messages)
        # The frame without items, with tbc false (one byte longer than true), plus each item and its comma.
        size = _frame_size(payload(seq_no, [], False)) + len(',"reportData":[]')
        start = i
        while i < len(items) and i - start < items_per_message:
            extra = sizes[i] + (1 if i > start else 0)
            if size + extra > bytes_per_message:
                break
            size += extra
            i += 1
        message = payload(seq_no, items[start:i], i < len(items))
        # The sum above is exact, except when a value the encoder must write with \u escapes (a lone surrogate)
        # turns the whole frame into ASCII: then give items back until the frame as sent fits.
        while i > start and _frame_size(message) > bytes_per_message:
            i -= 1
            message = payload(seq_no, items[start:i], True)
        if i == start:
            raise ValueError(f"bytes_per_message={bytes_per_message} cannot hold report item {start} "
                             f"({items[start]['component']['name']}.{items[start]['variable']['name']})")
        messages.append(message)
    return messages


# -- B08 GetReport / NotifyReport ----------------------------------------------------------------------------------

_ComponentKey = tuple[str, str, int, int]
_CRITERION_VARIABLES = frozenset(variable for variable, _ in COMPONENT_CRITERIA.values())


def _component_key(d: VariableDef) -> _ComponentKey:
    return d.component.casefold(), d.component_instance.casefold(), d.evse_id, d.connector_id


def _meets_criteria(model: DeviceModel, defs: list[VariableDef], criteria: list[str]) -> set[_ComponentKey]:
    """The components that meet at least one of ``criteria`` (B08.FR.13, logical OR): the criterion's variable
    (without instance) is "true", or, for Active / Available / Enabled, the component has no such variable
    (B08.FR.07-10)."""
    flags: dict[_ComponentKey, dict[str, str | None]] = {}
    for d in defs:
        names = flags.setdefault(_component_key(d), {})
        if d.variable_instance == "" and d.variable.casefold() in _CRITERION_VARIABLES:
            names[d.variable.casefold()] = model.get(d.component, d.variable, component_instance=d.component_instance,
                                                     evse_id=d.evse_id, connector_id=d.connector_id)
    out = set()
    for key, values in flags.items():
        for criterion in criteria:
            variable, when_absent = COMPONENT_CRITERIA[criterion]
            if variable not in values:
                met = when_absent
            else:
                met = (values[variable] or "").strip().casefold() == "true"
            if met:
                out.add(key)
                break
    return out


def _matches(d: VariableDef, wanted: dict) -> bool:
    """Whether ``d`` is named by one ComponentVariableType (B08.FR.20-25): a component name always; its instance,
    evse.id and evse.connectorId only when given (absent: every instance, every EVSE including none, every
    connector); the variable only when given, and its instance only when given."""
    component, variable = wanted["component"], wanted.get("variable")
    if d.component.casefold() != component["name"].casefold():
        return False
    if "instance" in component and d.component_instance.casefold() != component["instance"].casefold():
        return False
    evse = component.get("evse")
    if evse is not None and (d.evse_id != evse["id"] or
                             ("connectorId" in evse and d.connector_id != evse["connectorId"])):
        return False
    if variable is None:
        return True
    if d.variable.casefold() != variable["name"].casefold():
        return False
    return "instance" not in variable or d.variable_instance.casefold() == variable["instance"].casefold()


def custom_report(model: DeviceModel, request: dict, *, generated_at: str, items_per_message: int,
                  bytes_per_message: int, message_size: int | None = None) -> list[dict]:
    """The NotifyReportRequest payloads answering a (schema-valid) GetReportRequest (Part 2 B08).

    componentVariable selects variables (B08.FR.11, B08.FR.20-25), componentCriteria selects components
    (B08.FR.07-10, OR between criteria: B08.FR.13); with both, a variable is reported when it is selected by
    both (B08.FR.05); with neither, every variable. Entries, requestId, seqNo / tbc and message sizes as in
    ``base_report`` (B08.FR.04/12/14). An empty selection is one message without reportData: the caller answers
    EmptyResultSet (B08.FR.15) and sends nothing.

    Raises OcppError OCCURRENCE_CONSTRAINT_VIOLATION above ItemsPerMessage[GetReport] componentVariable entries
    (B08.FR.17) and FORMATION_VIOLATION above BytesPerMessage[GetReport] (B08.FR.18); ValueError like
    ``base_report``. Criteria outside COMPONENT_CRITERIA are the caller's NotSupported (B08.FR.02).
    """
    wanted = request.get("componentVariable") or []
    _check_message(model, "GetReport", wanted, message_size, request)
    defs = _sorted_definitions(model)
    if wanted:
        defs = [d for d in defs if any(_matches(d, w) for w in wanted)]
    criteria = request.get("componentCriteria") or []
    if criteria:
        meeting = _meets_criteria(model, _sorted_definitions(model), criteria)
        defs = [d for d in defs if _component_key(d) in meeting]
    return _notify_report(model, request["requestId"], defs, generated_at=generated_at,
                          items_per_message=items_per_message, bytes_per_message=bytes_per_message)
