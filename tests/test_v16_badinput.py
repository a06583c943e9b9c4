"""Property tests against a RUNNING OCPP 1.6 station over the real WebSocket: whatever the CSMS sends, the station
answers a broken CALL with a CALLERROR carrying an OCPP-J 1.6 Table 7 code, drops what it cannot answer, stays
connected, keeps answering valid requests, and changes no state.

Spec: OCPP-J 1.6 §4.1.3 (unknown MessageTypeNumber: ignored), §4.1.4 (messageId string[36]), §4.2.3 (CallError
and Table 7 error codes); OCPP 1.6 §5 / the official JSON schemas of the CS->CP Core requests (ChangeAvailability,
ChangeConfiguration, ClearCache, DataTransfer, GetConfiguration, RemoteStartTransaction, RemoteStopTransaction,
Reset, UnlockConnector).

Hypothesis runs in a worker thread (``asyncio.to_thread``) and hands each example to the event loop that runs the
CSMS and the station (``run_coroutine_threadsafe``), so the station keeps running between examples. Station
answers to raw frames are read from the station's frame log (``st.station.frames``); answers to our CALLs with
schema-violating payloads come back through ``csms.call(..., strict=False)``.
"""
from __future__ import annotations

import asyncio
import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ocpp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator

from secure_cp.sim.csms import CallErrorReceived, Csms

#: OCPP-J 1.6 §4.2.3 Table 7 (plus the spelling the errata keep, "OccurenceConstraintViolation").
TABLE7 = frozenset({
    "NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError", "FormationViolation",
    "PropertyConstraintViolation", "OccurenceConstraintViolation", "OccurrenceConstraintViolation",
    "TypeConstraintViolation", "GenericError",
})
#: The Table 7 codes that describe each kind of schema violation.
EXPECTED = {
    "missing": {"ProtocolError", "OccurenceConstraintViolation", "OccurrenceConstraintViolation"},  # incomplete
    "extra": {"FormationViolation"},                      # "not conform the PDU structure for Action"
    "enum": {"PropertyConstraintViolation"},              # "at least one field contains an invalid value"
    "type": {"TypeConstraintViolation"},                  # "violates data type constraints ("somestring": 12)"
    "too_long": {"TypeConstraintViolation", "PropertyConstraintViolation"},   # CiStringNN is a data type
    "huge": {"TypeConstraintViolation", "PropertyConstraintViolation"},
}
FUZZ = settings(max_examples=50, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

SCHEMA_DIR = Path(ocpp.__file__).resolve().parent / "v16" / "schemas"
#: A valid request per CS->CP Core action; mutations start from here.
CORE: dict[str, dict] = {
    "ChangeAvailability": {"connectorId": 1, "type": "Inoperative"},
    "ChangeConfiguration": {"key": "HeartbeatInterval", "value": "60"},
    "ClearCache": {},
    "DataTransfer": {"vendorId": "secure-cp", "messageId": "echo", "data": "x"},
    "GetConfiguration": {"key": ["HeartbeatInterval"]},
    "RemoteStartTransaction": {"connectorId": 1, "idTag": "TAG1"},
    "RemoteStopTransaction": {"transactionId": 1},
    "Reset": {"type": "Hard"},
    "UnlockConnector": {"connectorId": 1},
}
SCHEMAS = {a: json.loads((SCHEMA_DIR / f"{a}.json").read_text(encoding="utf-8-sig")) for a in CORE}
VALIDATORS = {a: Draft4Validator(s) for a, s in SCHEMAS.items()}
#: Known 1.6 actions that are not CS->CP Core (the station answers NotSupported / NotImplemented, executes nothing).
OTHER_ACTIONS = ["BootNotification", "Heartbeat", "StartTransaction", "ReserveNow", "TriggerMessage",
                 "SendLocalList", "SetChargingProfile", "UpdateFirmware", "Authorize", "FooBar", ""]


# ---- strategies -----------------------------------------------------------------------------------------------
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c,
                                                                                               max_size=3),
                           max_leaves=6)
printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def _props(action: str) -> dict[str, dict]:
    return {k: v for k, v in SCHEMAS[action]["properties"].items() if k != "chargingProfile"}


def _other_type(schema: dict) -> st.SearchStrategy:
    """A JSON value whose type differs from ``schema['type']`` (the oracle double-checks)."""
    t = schema["type"]
    options = {
        "string": st.one_of(st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False, allow_infinity=False),
                            st.lists(st.text(max_size=3), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                                       st.integers(), max_size=2)),
        "integer": st.one_of(st.text(max_size=8), st.booleans(), st.none(),
                             st.floats(allow_nan=False, allow_infinity=False), st.lists(st.integers(), max_size=2),
                             st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)),
        "array": st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none(),
                           st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
                           st.lists(st.one_of(st.integers(), st.booleans(), st.none()), min_size=1, max_size=3)),
    }
    return options[t]


@st.composite
def bad_calls(draw) -> tuple[str, str, dict]:
    """(action, kind, payload): a CS->CP Core request with one schema violation of ``kind``."""
    action = draw(st.sampled_from(sorted(CORE)))
    props = _props(action)
    required = SCHEMAS[action].get("required", [])
    kinds = ["extra"]
    if props:
        kinds.append("type")
    if required:
        kinds.append("missing")
    if any("enum" in p for p in props.values()):
        kinds.append("enum")
    if any("maxLength" in p or "maxLength" in p.get("items", {}) for p in props.values()):
        kinds.append("too_long")
    if any(p["type"] == "integer" for p in props.values()):
        kinds.append("huge")
    kind = draw(st.sampled_from(kinds))
    payload = copy.deepcopy(CORE[action])
    if kind == "extra":
        name = draw(st.text(min_size=1, max_size=15).filter(lambda n: n not in SCHEMAS[action]["properties"]))
        payload[name] = draw(json_values)
    elif kind == "missing":
        del payload[draw(st.sampled_from(required))]
    elif kind == "type":
        name = draw(st.sampled_from(sorted(props)))
        payload[name] = draw(_other_type(props[name]))
    elif kind == "enum":
        name = draw(st.sampled_from(sorted(n for n, p in props.items() if "enum" in p)))
        payload[name] = draw(st.text(max_size=20).filter(lambda v, e=props[name]["enum"]: v not in e))
    elif kind == "too_long":
        name = draw(st.sampled_from(sorted(n for n, p in props.items()
                                           if "maxLength" in p or "maxLength" in p.get("items", {}))))
        limit = props[name].get("maxLength") or props[name]["items"]["maxLength"]
        text = draw(st.text(alphabet=printable, min_size=limit + 1, max_size=limit + 40))
        payload[name] = [text] if props[name]["type"] == "array" else text
    else:  # huge
        name = draw(st.sampled_from(sorted(n for n, p in props.items() if p["type"] == "integer")))
        payload[name] = draw(st.one_of(st.integers(min_value=2**31, max_value=10**30),
                                       st.integers(min_value=-10**30, max_value=-2**31),
                                       st.sampled_from([1e300, -1e300, 1.7976931348623157e308, 4294967296.5])))
    return action, kind, payload


def _fixed_bad_calls() -> list[tuple[str, str, dict]]:
    """One deterministic example of every applicable violation kind for every Core action (coverage floor)."""
    out = []
    for action, base in CORE.items():
        props = _props(action)
        out.append((action, "extra", {**base, "unexpectedField": 1}))
        for name in SCHEMAS[action].get("required", []):
            p = dict(base)
            del p[name]
            out.append((action, "missing", p))
        for name, spec in props.items():
            wrong = {"string": 12, "integer": "somestring", "array": "HeartbeatInterval"}[spec["type"]]
            out.append((action, "type", {**base, name: wrong}))
            if "enum" in spec:
                out.append((action, "enum", {**base, name: spec["enum"][0].lower() + "X"}))
            limit = spec.get("maxLength") or spec.get("items", {}).get("maxLength")
            if limit:
                long = "A" * (limit + 1)
                out.append((action, "too_long", {**base, name: [long] if spec["type"] == "array" else long}))
            if spec["type"] == "integer":
                out.append((action, "huge", {**base, name: 10**20}))
                out.append((action, "huge", {**base, name: 1e300}))
    return out


def _valid_frame(action: str, payload: dict, mid: str = "trunc-1") -> str:
    return json.dumps([2, mid, action, payload], separators=(",", ":"))


frame_texts = st.one_of(
    # arbitrary text (no lone surrogates: a WebSocket text frame must be UTF-8)
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=120),
    # arbitrary JSON
    json_values.map(json.dumps),
    # array-shaped frames with plausible and implausible MessageTypeIds, ids and tails
    st.tuples(st.sampled_from([2, 2, 2, 3, 4, 5, 0, -1, 2.0, "2", True, None]),
              st.one_of(st.text(max_size=40), st.integers(), st.none()),
              st.lists(json_values, max_size=4)).map(lambda t: json.dumps([t[0], t[1], *t[2]])),
    # CALL-shaped frames for actions a station does not execute (unknown, CP->CSMS, non-Core), and broken
    # CALLs whose message id is readable
    st.tuples(st.text(alphabet=printable, max_size=36), st.lists(json_values, max_size=5))
      .map(lambda t: json.dumps([2, t[0], *t[1]])),
    st.tuples(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=36),
              st.one_of(st.sampled_from(OTHER_ACTIONS), st.text(max_size=20)),
              st.one_of(st.dictionaries(st.text(max_size=8), json_values, max_size=3), json_values))
      .map(lambda t: json.dumps([2, t[0], t[1], t[2]])),
    # a valid harmless CALL cut short: never valid JSON
    st.integers(min_value=0, max_value=55).map(
        lambda k: _valid_frame("GetConfiguration", {"key": ["HeartbeatInterval"]})[:k]),
)


# ---- what the spec expects for a raw frame ----------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")
    return dict(pairs)


_CALL_PREFIX = re.compile(r'\A\s*\[\s*[0-9]{1,3}\s*,\s*"([^"\\]*)"')


def _has_surrogate(s: str) -> bool:
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in s)


def expectation(text: str) -> tuple[str, str | None]:
    """("reply", id): exactly one CALLERROR for id; ("none", None): no answer; ("either", id|None): an answer is
    optional (the spec leaves it open); ("skip", None): a valid request that would be executed."""
    try:
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
        strict = True
    except (ValueError, RecursionError):
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            # not JSON: without a message id there is nobody to answer (OCPP-J 1.6 §4.2.3); a station MAY still
            # read the id of a CALL from the intact start of the wrapper and answer it
            prefix = _CALL_PREFIX.match(text)
            return ("either", prefix.group(1)) if prefix else ("none", None)
        strict = False
    if not isinstance(obj, list) or not obj:
        return "none", None
    t = obj[0]
    mid = obj[1] if len(obj) > 1 and isinstance(obj[1], str) else None
    if type(t) is int and t in (3, 4):
        return "none", None               # never answer an answer
    if type(t) is int and t != 2:
        return "either", mid              # §4.1.3: the payload of an unknown MessageTypeNumber is ignored
    if type(t) is not int:
        return ("either", mid) if isinstance(t, float) and t == 2 else ("none", None)
    if mid is None:
        return "none", None
    if len(obj) == 4 and isinstance(obj[2], str) and obj[2] in CORE and isinstance(obj[3], (dict, type(None))) and \
            VALIDATORS[obj[2]].is_valid(obj[3] or {}):
        return "skip", None
    if not strict or len(mid) > 36 or _has_surrogate(mid):
        return "either", mid
    return "reply", mid


# ---- the running station ----------------------------------------------------------------------------------------
@dataclass
class Harness:
    csms: Csms
    st: Any
    loop: asyncio.AbstractEventLoop
    ident: str = "CP1"
    baseline: dict = field(default_factory=dict)
    n0: int = 0
    session: Any = None

    def run(self, coro, timeout: float = 20.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def state_unchanged(self) -> None:
        """A valid request is still answered, and nothing changed (config, transactions, statuses, cache)."""
        conf = await self.csms.call(self.ident, "GetConfiguration", {}, timeout=5)
        assert conf == self.baseline, "GetConfiguration changed"
        assert self.csms.connected.get(self.ident) == "ocpp1.6"
        assert self.csms._sessions.get(self.ident) is self.session, "the station reconnected"
        station = self.st.station
        assert station.transport.connected
        assert self.csms.received[self.n0:] == [], [r.action for r in self.csms.received[self.n0:]]
        assert self.csms.transactions == {}
        assert station.transactions.recent(5) == []
        eng = station.engine
        assert eng.connectors[1].tx_key is None and eng.connectors[1].auth is None
        assert eng.status_of(0).value == "Available" and eng.status_of(1).value == "Available"
        assert self.st.hw.resets == []
        assert self.st.task is not None and not self.st.task.done()
        assert station.cache.get("TAG1") is not None, "the authorization cache was cleared"
        assert [v for v in self.csms.violations
                if "answer to unknown message id" not in v and "message id longer than" not in v] == []

    async def send_raw_and_check(self, text: str, kind: str, mid: str | None) -> None:
        marker = self.st.station.frames[-1]
        await self.csms.send_raw(self.ident, text)
        await self.state_unchanged()                      # also the barrier: the station is done with `text`
        frames = list(self.st.station.frames)
        since = next(i for i in range(len(frames) - 1, -1, -1) if frames[i] is marker)
        sent = [json.loads(f.text) for f in frames[since + 1:] if f.direction == "tx"]
        errors = [f for f in sent if f[0] == 4]
        results = [f for f in sent if f[0] == 3]
        assert len(results) == 1, f"unexpected CALLRESULT(s) for {text!r}: {results}"   # only our GetConfiguration
        for e in errors:
            assert len(e) == 5 and isinstance(e[3], str) and isinstance(e[4], dict), e
            assert e[2] in TABLE7, f"{e[2]!r} is not an OCPP-J 1.6 error code"
        if kind == "reply":
            assert [e[1] for e in errors] == [mid], f"{text!r}: expected one CALLERROR for {mid!r}, got {errors}"
        elif kind == "none":
            assert errors == [], f"{text!r} has no answerable message id but got {errors}"
        else:
            assert len(errors) <= 1 and all(e[1] == mid for e in errors), (text, errors)

    async def call_and_check(self, action: str, kind: str, payload: dict) -> None:
        valid = VALIDATORS[action].is_valid(payload)
        try:
            res = await self.csms.call(self.ident, action, payload, timeout=5, strict=False)
        except CallErrorReceived as exc:
            assert exc.code in TABLE7, f"{exc.code!r} is not an OCPP-J 1.6 error code"
            if not valid:
                assert exc.code in EXPECTED[kind], \
                    f"{action} {kind} {payload!r}: {exc.code} ({exc.description}); expected one of {EXPECTED[kind]}"
        else:
            assert valid, f"{action} with a schema-violating payload {payload!r} ({kind}) was executed: {res}"
        await self.state_unchanged()


async def running(csms: Csms, make_station) -> Harness:
    st_ = await make_station(csms)
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    # put one tag in the authorization cache (authorize without cable, then cancel) to see that it survives
    st_.hw.present_tag("TAG1")
    await csms.wait_for("Authorize")
    await csms.call("CP1", "GetConfiguration", {"key": ["HeartbeatInterval"]})
    st_.hw.present_tag("TAG1")
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Available",
                        after=len(csms.received) - 1)
    h = Harness(csms, st_, asyncio.get_running_loop())
    h.baseline = await csms.call("CP1", "GetConfiguration", {})
    h.n0 = len(csms.received)
    h.session = csms._sessions["CP1"]
    await h.state_unchanged()
    return h


# ---- tests ------------------------------------------------------------------------------------------------------
async def test_random_text_frames_get_a_callerror_or_nothing_and_change_nothing(csms, make_station):
    """OCPP-J 1.6 §4.1.3/§4.1.4/§4.2.3: random text, random JSON and broken or unknown CALLs: a CALL whose
    message id can be read gets exactly one CALLERROR (Table 7 code) with that id; anything else (not JSON, no id,
    CALLRESULT/CALLERROR with unknown ids) is dropped; the station stays connected and its state is unchanged."""
    h = await running(csms, make_station)
    seen: list[str] = []

    @FUZZ
    @given(text=frame_texts)
    def prop(text: str) -> None:
        kind, mid = expectation(text)
        assume(kind != "skip")
        h.run(h.send_raw_and_check(text, kind, mid))
        seen.append(kind)

    await asyncio.to_thread(prop)
    assert len(seen) >= 40 and {"reply", "none"} <= set(seen), seen


async def test_every_core_action_with_each_kind_of_schema_violation_gets_a_callerror(csms, make_station):
    """OCPP-J 1.6 §4.2.3 Table 7 / OCPP 1.6 JSON schemas: one fixed example of every violation kind (missing
    required field, extra field, wrong type, bad enum, too-long string, huge number) for every CS->CP Core action:
    a CALLERROR with the matching code, nothing executed."""
    h = await running(csms, make_station)
    for action, kind, payload in _fixed_bad_calls():
        await h.call_and_check(action, kind, payload)


async def test_random_schema_violating_core_calls_get_a_callerror_and_change_nothing(csms, make_station):
    """OCPP-J 1.6 §4.2.3 (Hypothesis): CS->CP Core requests with one random schema violation each get a CALLERROR
    with a Table 7 code matching the violation (a huge but schema-valid integer may instead get a normal answer);
    the station stays connected, still answers GetConfiguration identically, and nothing is executed."""
    h = await running(csms, make_station)
    seen: list[tuple[str, str]] = []

    @FUZZ
    @given(call=bad_calls())
    def prop(call: tuple[str, str, dict]) -> None:
        action, kind, payload = call
        if kind != "huge":
            assume(not VALIDATORS[action].is_valid(payload))
        h.run(h.call_and_check(action, kind, payload))
        seen.append((action, kind))

    await asyncio.to_thread(prop)
    assert len(seen) >= 40, seen
