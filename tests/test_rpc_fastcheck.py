"""The fast acceptance check (secure_cp/rpc/fastcheck.py) against the full validator, on every OCA schema.

Soundness: whenever the check says "certainly valid", fastjsonschema (with the strict types) accepts the payload -
on generated valid payloads and on payloads broken at random places. Usefulness: it does say so for valid payloads
(else every message would pay for both validators), and the registry takes its answer without the full validator.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import lru_cache
from typing import Any

import pytest
from fastjsonschema.exceptions import JsonSchemaValueException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secure_cp.rpc import SchemaError, shared_registry
from secure_cp.rpc.fastcheck import compile_fast_check
from secure_cp.rpc.schemas import _is_multiple_of, is_rfc3339_date_time

PROPERTY = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                              HealthCheck.data_too_large])
SCHEMAS = sorted((version, action, response) for version in ("1.6", "2.0.1")
                 for action in shared_registry(version).actions for response in (False, True))

junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True), st.just(Decimal("NaN")),
                 st.decimals(places=1, allow_nan=False, allow_infinity=False, min_value=-5, max_value=5),
                 st.text(max_size=3), st.just("x" * 2000), st.just([]), st.just({}), st.lists(st.integers(), max_size=2),
                 st.just(("tuple",)))


def values(schema: dict[str, Any], broken: bool) -> st.SearchStrategy[Any]:
    """Payloads for ``schema``: valid ones, or (``broken``) valid ones with junk at random places."""
    strategy = _valid(schema, broken)
    return st.one_of(strategy, junk) if broken else strategy


def _valid(schema: dict[str, Any], broken: bool) -> st.SearchStrategy[Any]:
    kind = schema.get("type")
    if kind == "string":
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        if schema.get("format") == "date-time":
            return st.sampled_from(["2024-05-01T12:00:00Z", "2024-02-29T23:59:59.123+01:00", "1999-12-31t00:00:00z"])
        if schema.get("format") == "uri":
            return st.just("https://csms.example/x")
        top = schema.get("maxLength", 8)
        return st.text(min_size=schema.get("minLength", 0), max_size=min(top, 8)) | st.just("y" * top)
    if kind == "integer":
        low, high = int(schema.get("minimum", -(10**12))), int(schema.get("maximum", 10**12))
        return st.integers(low, high) | st.sampled_from([low, high])
    if kind == "number":
        step = Decimal(repr(schema["multipleOf"])) if "multipleOf" in schema else Decimal("0.001")
        low = Decimal(repr(schema.get("minimum", -(10**6))))
        high = Decimal(repr(schema.get("maximum", 10**6)))
        return st.integers(int(low / step) + 1, int(high / step) - 1).map(lambda k: k * step) | st.integers(0, 5) | \
            st.sampled_from([low, high])
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        low = schema.get("minItems", 0)
        return st.lists(values(schema["items"], broken), min_size=low, max_size=max(low, min(schema.get("maxItems", 3),
                                                                                             3)))
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        members = {name: values(sub, broken) for name, sub in properties.items()}

        @st.composite
        def build(draw: st.DrawFn) -> dict[str, Any]:
            out = {name: draw(strategy) for name, strategy in members.items()
                   if name in required or draw(st.booleans())}
            if broken and draw(st.integers(0, 9)) == 0:
                if out and draw(st.booleans()):
                    out.pop(draw(st.sampled_from(sorted(out))))   # maybe a required member
                else:
                    out[draw(st.sampled_from(["extra", *properties]))] = draw(junk)
            return out
        return build()
    return junk  # no type: anything goes


@lru_cache(maxsize=None)
def schema_of(version: str, action: str, response: bool) -> dict[str, Any]:
    return shared_registry(version).schema(action, response=response)


def full_accepts(version: str, action: str, response: bool, payload: Any) -> bool:
    try:
        shared_registry(version)._load(action, response).full(payload)
    except JsonSchemaValueException:
        return False
    return True


def fast(version: str, action: str, response: bool) -> Any:
    return shared_registry(version)._load(action, response).certainly_valid


def nodes(value: Any, schema: dict[str, Any], path: tuple = ()) -> Any:
    """(path, value, subschema) for every value in a valid payload."""
    yield path, value, schema
    # (a member without a type, e.g. DataTransfer data, holds any JSON: nothing below it has a schema)
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            yield from nodes(item, schema["properties"][key], path + (key,))
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from nodes(item, schema["items"], path + (index,))


def replaced(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


@st.composite
def broken_payloads(draw: st.DrawFn, schema: dict[str, Any]) -> Any:
    """A valid payload with one thing changed: mostly into something invalid, sometimes into something still valid."""
    payload = draw(values(schema, broken=False))
    found = list(nodes(payload, schema))
    # numeric bounds are rare in the schemas: pick such a node whenever the payload has one, half of the time
    bounded = [node for node in found if {"minimum", "maximum", "multipleOf"} & set(node[2])]
    pick_bounded = bool(bounded) and draw(st.booleans())
    path, value, sub = draw(st.sampled_from(bounded if pick_bounded else found))
    choices = [] if pick_bounded else [junk]
    if isinstance(value, dict):
        if value:
            choices.append(st.sampled_from(sorted(value)).map(lambda k: {n: v for n, v in value.items() if n != k}))
        choices.append(junk.map(lambda j: {**value, "extra": j}))
    if isinstance(value, str):
        choices += [st.just(value + "x" * (sub.get("maxLength", 0) + 1 - len(value))), st.just(value + "x"),
                    st.just(value.upper()), st.just(value.replace("T", " ")), st.just(value[:-1])]
    if isinstance(value, list):
        choices += [st.just([]), st.just(value * 30)]
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        choices += [st.just(value + Decimal("0.05")), st.just(-value)]
        choices += [st.just(type(value)(sub[k]) + d) for k, d in (("maximum", 1), ("minimum", -1)) if k in sub]
        if "multipleOf" in sub:
            choices.append(st.just(value + Decimal(repr(sub["multipleOf"])) / 2))
    return replaced(payload, path, draw(st.one_of(choices)))


@PROPERTY
@given(data=st.data(), which=st.sampled_from(SCHEMAS))
def test_certainly_valid_only_for_payloads_the_full_validator_accepts(data: st.DataObject,
                                                                      which: tuple[str, str, bool]) -> None:
    payload = data.draw(broken_payloads(schema_of(*which)))
    try:
        verdict = fast(*which)(payload)
    except Exception:  # noqa: BLE001 - an exception means "not sure", as False does
        verdict = False
    if verdict:
        assert full_accepts(*which, payload), (which, payload)


BOUNDED = [which for which in SCHEMAS if any(f'"{k}"' in json.dumps(schema_of(*which))
                                            for k in ("minimum", "maximum", "multipleOf"))]


@PROPERTY
@given(data=st.data(), which=st.sampled_from(BOUNDED))
def test_numeric_bounds(data: st.DataObject, which: tuple[str, str, bool]) -> None:
    """The same on the few schemas with minimum / maximum / multipleOf, which random picks would rarely reach."""
    test_certainly_valid_only_for_payloads_the_full_validator_accepts.hypothesis.inner_test(data, which)


@PROPERTY
@given(data=st.data(), which=st.sampled_from(SCHEMAS))
def test_valid_payloads_are_recognised(data: st.DataObject, which: tuple[str, str, bool]) -> None:
    payload = data.draw(values(schema_of(*which), broken=False))
    assert full_accepts(*which, payload), (which, payload)   # the generator makes valid payloads
    source = fast(*which).source
    # only a member with a format the check leaves to the full validator (format: uri) may make it unsure
    unsure = [line.split("'")[1] for line in source.splitlines() if line.strip().startswith("if '")
              and " in " in line and " not in " not in line]
    if not any(_has_member(payload, name) for name in unsure):
        assert fast(*which)(payload) is True, (which, payload, source)


def _has_member(value: Any, name: str) -> bool:
    if isinstance(value, dict):
        return name in value or any(_has_member(item, name) for item in value.values())
    if isinstance(value, list):
        return any(_has_member(item, name) for item in value)
    return False


def test_nearly_every_schema_is_checked_in_full() -> None:
    """Only members with format uri are left to the full validator (1.6 GetDiagnostics / UpdateFirmware location)."""
    partial = sorted((version, action) for version, action, response in SCHEMAS
                     if "' in payload: return False" in fast(version, action, response).source)
    assert partial == [("1.6", "GetDiagnostics"), ("1.6", "UpdateFirmware")]


def test_the_registry_trusts_the_check_and_falls_back_on_doubt(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = shared_registry("1.6")
    payload = {"connectorId": 1, "meterValue": [{"timestamp": "2024-05-01T12:00:00Z",
                                                "sampledValue": [{"value": "1", "measurand": "Voltage"}]}]}
    assert registry._load("MeterValues", False).certainly_valid(payload) is True
    as_float = {"connectorId": 1, "meterValue": [{"timestamp": "2024-05-01T12:00:00Z", "sampledValue": [
        {"value": "1"}]}], "transactionId": 5}
    registry.validate_request("MeterValues", as_float)       # valid: accepted
    with pytest.raises(SchemaError) as caught:
        registry.validate_request("MeterValues", {**payload, "connectorId": "1"})
    assert caught.value.rule == "type" and caught.value.path == "$.connectorId"   # the full validator's answer


@pytest.mark.parametrize("value, certain", [(1, True), (Decimal("0.5"), True), (Decimal("NaN"), False),
                                            (Decimal("Infinity"), False), (0.5, False), (True, False), ("1", False)])
def test_numbers(value: Any, certain: bool) -> None:
    check = compile_fast_check({"type": "object", "properties": {"n": {"type": "number", "minimum": 0}},
                                "required": ["n"], "additionalProperties": False},
                               date_time=is_rfc3339_date_time, multiple_of=_is_multiple_of)
    assert check({"n": value}) is certain


def test_json_null_is_not_an_absent_member() -> None:
    check = compile_fast_check({"type": "object", "properties": {"e": {"type": "string", "enum": ["A"]},
                                                                 "f": {"type": "string", "enum": ["B", "C"]},
                                                                 "s": {"type": "string"}}},
                               date_time=is_rfc3339_date_time, multiple_of=_is_multiple_of)
    assert check({}) is True and check({"e": "A", "s": ""}) is True and check({"f": "C"}) is True
    assert check({"e": None}) is False and check({"s": None}) is False and check({"e": "B"}) is False
    assert check({"f": None}) is False and check({"e": "A", "f": "A"}) is False


def test_unsupported_keywords_mean_not_sure() -> None:
    check = compile_fast_check({"type": "object", "properties": {"p": {"type": "string", "pattern": "^a"}}},
                               date_time=is_rfc3339_date_time, multiple_of=_is_multiple_of)
    assert check({}) is True and check({"p": "abc"}) is False
    whole = compile_fast_check({"anyOf": [{"type": "object"}]}, date_time=is_rfc3339_date_time,
                               multiple_of=_is_multiple_of)
    assert whole({}) is False
