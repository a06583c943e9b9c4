"""Strict validation of OCPP payloads against the official OCA JSON schemas (no I/O after loading a schema).

The schemas are read from the installed ``ocpp`` package (``ocpp/v16/schemas`` - which also carries the 1.6
security-extension messages - and ``ocpp/v201/schemas``); nothing is copied into this repository. Each
(action, request|response) schema is compiled with ``fastjsonschema`` on first use and cached.

Three places where plain ``fastjsonschema`` is not strict or exact enough, fixed by a small code-generator
subclass (covered by tests, so a change in fastjsonschema's generator shows up as a failing test):

* ``type``: ``number`` accepts int, float and :class:`~decimal.Decimal` (what :func:`..frames.decode` produces)
  but not bool, NaN or infinities; ``integer`` accepts int only - not bool, and not ``1.0`` even under draft-06:
  the engine gets the Python int that an OCPP integer is.
* ``multipleOf``: checked exactly in decimal arithmetic. ``Decimal("21.45")`` is not a multiple of 0.1; a float is
  taken at its shortest repr (``Decimal(repr(x))``), so ``21.4`` is.
* ``format: date-time``: RFC 3339 ``date-time`` (see :func:`is_rfc3339_date_time`).

``default`` keywords (2.0.1 schemas have them) are never applied: validation does not modify the payload.
"""

from __future__ import annotations

import datetime
import functools
import importlib.resources
import json
import re
import threading
from decimal import Decimal
from typing import Any, Callable

from fastjsonschema.draft04 import CodeGeneratorDraft04
from fastjsonschema.draft06 import CodeGeneratorDraft06
from fastjsonschema.exceptions import JsonSchemaValueException
from fastjsonschema.ref_resolver import RefResolver

from .errors import ErrorKind, check_version
from .fastcheck import compile_fast_check

__all__ = ["SchemaError", "SchemaRegistry", "is_rfc3339_date_time", "shared_registry"]


class SchemaError(Exception):
    """A payload that breaks its schema. ``description`` names the JSON path and the rule."""

    def __init__(self, kind: ErrorKind, description: str, path: str = "$", rule: str = "") -> None:
        super().__init__(description)
        self.kind = kind
        self.description = description
        self.path = path
        self.rule = rule


# --- date-time ------------------------------------------------------------------------------------------

# RFC 3339 §5.6: full-date "T" full-time, time-secfrac optional, time-offset "Z" or +hh:mm / -hh:mm.
# ASCII digits only ([0-9], not \d which also matches other scripts' digits); T and Z case-insensitive as the
# ABNF literals are.
_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-]([0-9]{2}):([0-9]{2}))\Z"
)


def is_rfc3339_date_time(value: str) -> bool:
    """True if ``value`` is an RFC 3339 date-time that names a real instant.

    Rejects e.g. ``2024-13-01T00:00:00Z``, ``2024-02-30T00:00:00Z``, ``2024-01-01 00:00:00Z`` (space),
    ``2024-01-01T00:00:00`` (no offset), ``2024-01-01T00:00:00+0100`` (offset without colon), ``...T24:00:00Z``.
    Leap seconds (``:60``) are rejected as well: no OCPP peer sends them and Python's datetime, which every
    consumer of these values uses, cannot represent them. Any number of fraction digits is accepted (OCPP 2.0.1
    Part 2 limits senders to 3; a receiver gains nothing from refusing more).
    """
    match = _DATE_TIME.match(value)
    if match is None:
        return False
    year, month, day, hour, minute, second, off_h, off_m = match.groups()
    try:
        datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        return False
    if off_h is not None and (int(off_h) > 23 or int(off_m) > 59):
        return False
    return True


# --- exact number checks used by the generated code --------------------------------------------------------


def _is_number(value: Any) -> bool:
    if isinstance(value, int):
        return not isinstance(value, bool)
    if isinstance(value, Decimal):
        return value.is_finite()
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    return False


def _as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if _is_number(value) else None
    return None


def _digits_mod(digits: tuple[int, ...], modulus: int) -> int:
    remainder = 0
    for digit in digits:
        remainder = (remainder * 10 + digit) % modulus
    return remainder


def _is_multiple_of(value: Any, divisor: Decimal) -> bool:
    """Exact ``value % divisor == 0`` for int / float / Decimal values; True for non-numbers (``type`` rules).

    Works on the digits and exponents with small-integer arithmetic, so neither the precision of the decimal
    context, nor huge exponents (``1E+999999999``), nor thousands of digits can make it wrong, slow or raise.
    """
    number = _as_decimal(value)
    if number is None:
        # NaN and infinities are never multiples; any other non-number is left to the "type" rule.
        return not isinstance(value, (Decimal, float))
    _, digits, exponent = number.as_tuple()
    if not any(digits):
        return True  # zero
    _, d_digits, d_exponent = divisor.as_tuple()
    d_coefficient = int("".join(map(str, d_digits)))
    assert isinstance(exponent, int) and isinstance(d_exponent, int)
    if exponent >= d_exponent:
        # value = c * 10^e = (c * 10^(e - de)) * 10^de: a multiple iff c * 10^(e - de) = 0 (mod dc).
        return _digits_mod(digits, d_coefficient) * pow(10, exponent - d_exponent, d_coefficient) % d_coefficient == 0
    # value = c * 10^e with e < de: a multiple iff dc * 10^(de - e) divides c, i.e. c ends in (de - e) zeros
    # and what is left before them is a multiple of dc.
    shift = d_exponent - exponent
    if shift >= len(digits) or any(digits[-shift:]):
        return False
    return _digits_mod(digits[:-shift], d_coefficient) == 0


# --- code generator ------------------------------------------------------------------------------------------

_TYPE_TESTS = {
    "string": "isinstance({v}, str)",
    "integer": "(isinstance({v}, int) and not isinstance({v}, bool))",
    "number": "_ocpp_is_number({v})",
    "boolean": "isinstance({v}, bool)",
    "object": "isinstance({v}, dict)",
    "array": "isinstance({v}, (list, tuple))",
    "null": "{v} is None",
}


class _StrictTypes:
    """Mixin over a fastjsonschema generator: strict ``type``, exact ``multipleOf`` (see module docstring), and
    string enums as set lookups."""

    _definition: Any
    _variable: str

    def _ocpp_constants(self) -> dict[str, Any]:
        constants = self.__dict__.get("_ocpp_divisors")
        if constants is None:
            constants = self.__dict__["_ocpp_divisors"] = {}
        return constants

    def generate_type(self) -> None:
        types = self._definition["type"]
        types = types if isinstance(types, list) else [types]
        tests = " or ".join(_TYPE_TESTS[t].format(v=self._variable) for t in types)
        with self.l("if not ({}):", tests):  # type: ignore[attr-defined]
            self.exc("{name} must be {}", " or ".join(types), rule="type")  # type: ignore[attr-defined]

    def generate_enum(self) -> None:
        # fastjsonschema tests an enum value by value (25 comparisons for a 2.0.1 measurand); the OCA enums are
        # all strings, so one set lookup does the same job.
        values = self._definition["enum"]
        if not (isinstance(values, list) and values and all(isinstance(value, str) for value in values)):
            super().generate_enum()  # type: ignore[misc]
            return
        constants = self._ocpp_constants()
        name = f"_ocpp_enum_{len(constants)}"
        constants[name] = frozenset(values)
        with self.l("if not (isinstance({variable}, str) and {variable} in {}):", name):  # type: ignore[attr-defined]
            self.exc("{name} must be one of {}", self.e(values), rule="enum")  # type: ignore[attr-defined]

    def generate_multiple_of(self) -> None:
        divisor = self._definition["multipleOf"]
        exact = Decimal(repr(divisor)) if isinstance(divisor, float) else Decimal(divisor)
        if not exact.is_finite() or exact <= 0:
            raise ValueError(f"bad multipleOf {divisor!r} in schema")
        constants = self._ocpp_constants()
        name = f"_ocpp_divisor_{len(constants)}"
        constants[name] = exact
        with self.l("if not _ocpp_multiple_of({variable}, {}):", name):  # type: ignore[attr-defined]
            self.exc("{name} must be multiple of {multipleOf}", rule="multipleOf")  # type: ignore[attr-defined]

    @property
    def global_state(self) -> dict[str, Any]:
        state = super().global_state  # type: ignore[misc]
        state.update(self._ocpp_constants())
        state["_ocpp_is_number"] = _is_number
        state["_ocpp_multiple_of"] = _is_multiple_of
        return state


class _Draft04(_StrictTypes, CodeGeneratorDraft04):
    pass


class _Draft06(_StrictTypes, CodeGeneratorDraft06):
    pass


def _refuse_remote(uri: str) -> Any:
    # fastjsonschema would fetch a non-local $ref over the network; the OCA schemas only use local refs.
    raise ValueError(f"remote $ref not allowed: {uri}")


_NO_REMOTE = {scheme: _refuse_remote for scheme in ("http", "https", "file", "ftp", "urn", "")}
# The validators check date-times through a small cache: a message usually carries the same instant more than once
# (a 2.0.1 TransactionEvent's timestamp and its meterValue's), and a station sends the same ones again on retries.
_date_time = functools.lru_cache(maxsize=128)(is_rfc3339_date_time)
_FORMATS: dict[str, Callable[[str], bool]] = {"date-time": _date_time}

Validator = Callable[[Any], Any]

_SUBSCHEMA_MAPS = ("properties", "patternProperties", "definitions", "$defs", "dependencies")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SUBSCHEMAS = ("items", "additionalItems", "additionalProperties", "not", "contains", "propertyNames")


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace local ``$ref``s by the schema they point to.

    fastjsonschema turns every ``$ref`` into a function call that also builds the path string for error
    messages; inlined, a 2.0.1 MeterValues request validates about twice as fast. The OCA schemas are not
    recursive; a recursive ref (none exists) would simply be left for fastjsonschema to resolve.
    """

    def resolve(ref: str) -> Any:
        if not ref.startswith("#/"):
            raise ValueError(f"non-local $ref {ref!r}")
        node: Any = schema
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def walk(node: Any, active: tuple[str, ...]) -> Any:
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref in active:
                return node
            return walk(resolve(ref), active + (ref,))
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _SUBSCHEMA_MAPS and isinstance(value, dict):
                out[key] = {name: walk(sub, active) for name, sub in value.items()}
            elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
                out[key] = [walk(sub, active) for sub in value]
            elif key in _SUBSCHEMAS:
                out[key] = [walk(sub, active) for sub in value] if isinstance(value, list) else walk(value, active)
            else:
                out[key] = value
        return out

    return walk(schema, ())


def _compile(schema: dict[str, Any]) -> Validator:
    draft = str(schema.get("$schema", ""))
    if "draft-04" in draft:
        generator_class: type = _Draft04
    elif "draft-06" in draft:
        generator_class = _Draft06
    else:
        raise ValueError(f"unexpected JSON schema draft {draft!r}")
    schema = _inline_refs(schema)
    resolver = RefResolver.from_schema(schema, handlers=_NO_REMOTE, store={})
    generator = generator_class(
        schema,
        resolver=resolver,
        formats=_FORMATS,
        use_default=False,  # never write defaults into the payload
        use_formats=True,
        detailed_exceptions=True,
        fast_fail=True,
    )
    code = generator.func_code
    state = generator.global_state
    exec(code, state)  # noqa: S102 - code generated from the OCA schemas shipped in the ocpp package
    function = state[resolver.get_scope_name()]
    # The short check first: it accepts (nearly) every valid payload at a fraction of the cost; anything it is not
    # sure about, and every invalid payload, goes through fastjsonschema, which gives the exact error (fastcheck.py).
    certainly_valid = compile_fast_check(schema, date_time=_date_time, multiple_of=_is_multiple_of)
    full = functools.partial(function, custom_formats=_FORMATS)

    def validate(payload: Any) -> Any:
        try:
            if certainly_valid(payload):
                return payload
        except Exception:  # noqa: BLE001 - e.g. an unhashable value in an enum test: let the full validator judge
            pass
        return full(payload)

    # for tests: the two halves on their own
    validate.certainly_valid = certainly_valid  # type: ignore[attr-defined]
    validate.full = full  # type: ignore[attr-defined]
    return validate


# --- error mapping -------------------------------------------------------------------------------------------

# OCPP-J 1.6 §4.2.3 Table 7 / OCPP 2.0.1 Part 4 §4.3 Table 8 definitions:
#   OccurrenceConstraintViolation: "at least one of the fields violates occurrence constraints" (cardinality:
#     a required field missing, too few / too many list items);
#   TypeConstraintViolation: "violates data type constraints (e.g. "somestring": 12)";
#   PropertyConstraintViolation: "at least one field contains an invalid value" (enum, lengths, ranges, format);
#   1.6 FormationViolation: "syntactically incorrect or not conform the PDU structure for Action";
#   2.0.1 ProtocolError: "not conform the PDU structure" (2.0.1 narrowed FormatViolation to "syntactically
#     incorrect"). A member the PDU does not define is a structure violation: FormationViolation in 1.6,
#     ProtocolError in 2.0.1.
_RULE_KINDS = {
    "required": ErrorKind.OCCURRENCE_CONSTRAINT_VIOLATION,
    "minItems": ErrorKind.OCCURRENCE_CONSTRAINT_VIOLATION,
    "maxItems": ErrorKind.OCCURRENCE_CONSTRAINT_VIOLATION,
    "type": ErrorKind.TYPE_CONSTRAINT_VIOLATION,
    "enum": ErrorKind.PROPERTY_CONSTRAINT_VIOLATION,
    "const": ErrorKind.PROPERTY_CONSTRAINT_VIOLATION,
    "maxLength": ErrorKind.PROPERTY_CONSTRAINT_VIOLATION,
    "minLength": ErrorKind.PROPERTY_CONSTRAINT_VIOLATION,
    "pattern": ErrorKind.PROPERTY_CONSTRAINT_VIOLATION,
    "minimum": ErrorKind.PROPERTY_CONSTRAINT_VIOLATION,
    "maximum": ErrorKind.PROPERTY_CONSTRAINT_VIOLATION,
    "exclusiveMinimum": ErrorKind.PROPERTY_CONSTRAINT_VIOLATION,
    "exclusiveMaximum": ErrorKind.PROPERTY_CONSTRAINT_VIOLATION,
    "multipleOf": ErrorKind.PROPERTY_CONSTRAINT_VIOLATION,
    "format": ErrorKind.PROPERTY_CONSTRAINT_VIOLATION,
}
_STRUCTURE_KIND = {"1.6": ErrorKind.FORMATION_VIOLATION, "2.0.1": ErrorKind.PROTOCOL_ERROR}


def _json_path(name: str | None) -> str:
    name = name or "data"
    return "$" + name[4:] if name.startswith("data") else name


# --- registry ------------------------------------------------------------------------------------------------

# Folders inside the `ocpp` package. Resolved from the top package on purpose: importing ocpp.v16 / ocpp.v201
# would load jsonschema and ~130 dataclasses (about 120 ms of cold start) just to find a folder.
_FOLDERS = {"1.6": "v16", "2.0.1": "v201"}
_ACTION = re.compile(r"[A-Za-z0-9]+\Z")


class SchemaRegistry:
    """The OCA schemas of one OCPP version, compiled lazily and cached per (action, direction)."""

    def __init__(self, version: str) -> None:
        self.version = check_version(version)
        self._directory = importlib.resources.files("ocpp").joinpath(_FOLDERS[version], "schemas")
        request_suffix = ".json" if version == "1.6" else "Request.json"
        names = {entry.name for entry in self._directory.iterdir() if entry.name.endswith(".json")}
        actions = set()
        for name in names:
            if name.endswith("Response.json") and version == "1.6":
                continue
            if name.endswith(request_suffix):
                action = name[: -len(request_suffix)]
                if _ACTION.match(action) and f"{action}Response.json" in names:
                    actions.add(action)
        self._actions = frozenset(actions)
        self._request_suffix = request_suffix
        self._validators: dict[tuple[str, bool], Validator] = {}
        self._lock = threading.Lock()
        self._structure_kind = _STRUCTURE_KIND[version]

    @property
    def actions(self) -> frozenset[str]:
        """Every action with a request and a response schema."""
        return self._actions

    def knows(self, action: str) -> bool:
        """True if a schema exists for ``action`` (e.g. "BootNotification")."""
        return action in self._actions

    def validate_request(self, action: str, payload: dict) -> None:
        """Raise :class:`SchemaError` unless ``payload`` is a valid ``action`` request."""
        self._validate(action, False, payload)

    def validate_response(self, action: str, payload: dict) -> None:
        """Raise :class:`SchemaError` unless ``payload`` is a valid response to ``action``."""
        self._validate(action, True, payload)

    def schema(self, action: str, *, response: bool = False) -> dict[str, Any]:
        """A fresh copy of the OCA schema for ``action`` with its local ``$ref``s inlined (for tools and tests)."""
        if action not in self._actions:
            raise KeyError(action)
        return _inline_refs(self._read(action, response))

    def _read(self, action: str, response: bool) -> dict[str, Any]:
        filename = f"{action}Response.json" if response else f"{action}{self._request_suffix}"
        schema = json.loads(self._directory.joinpath(filename).read_text(encoding="utf-8-sig"))
        if not isinstance(schema, dict):
            raise ValueError(f"{filename} is not a JSON schema object")
        return schema

    def _validate(self, action: str, response: bool, payload: Any) -> None:
        validator = self._validators.get((action, response))
        if validator is None:
            validator = self._load(action, response)
        try:
            validator(payload)
        except JsonSchemaValueException as exc:
            raise self._schema_error(exc) from None
        except RecursionError:
            raise SchemaError(ErrorKind.FORMATION_VIOLATION, "$: payload is nested too deeply") from None

    def _load(self, action: str, response: bool) -> Validator:
        if action not in self._actions:
            raise SchemaError(ErrorKind.NOT_IMPLEMENTED, f"no OCPP {self.version} schema for action {action[:60]!r}")
        with self._lock:
            validator = self._validators.get((action, response))
            if validator is None:
                validator = _compile(self._read(action, response))
                self._validators[(action, response)] = validator
        return validator

    def _schema_error(self, exc: JsonSchemaValueException) -> SchemaError:
        rule = exc.rule or ""
        path = _json_path(exc.name)
        message = exc.message
        if exc.name and message.startswith(exc.name):
            message = message[len(exc.name) :].strip()
        if rule == "additionalProperties":
            kind = self._structure_kind
        else:
            kind = _RULE_KINDS.get(rule, self._structure_kind)
        return SchemaError(kind, f"{path}: {rule}: {message}", path=path, rule=rule)


_SHARED: dict[str, SchemaRegistry] = {}
_SHARED_LOCK = threading.Lock()


def shared_registry(version: str) -> SchemaRegistry:
    """One registry per version for the whole process, so many endpoints share compiled validators."""
    registry = _SHARED.get(version)
    if registry is None:
        with _SHARED_LOCK:
            registry = _SHARED.get(version)
            if registry is None:
                registry = _SHARED[check_version(version)] = SchemaRegistry(version)
    return registry
