"""OCPP 2.0.1 B08 Get Custom Report (GetReport -> NotifyReport) end to end: a real station over WebSockets against
the strict CSMS (schema-validated frames). Test names carry the Part 6 TC_B_*_CS test case or the Part 2 B08 FR.
"""
from __future__ import annotations

import pytest

from secure_cp.sim.csms import CallErrorReceived, Csms
from test_v201_core import ID, barrier, booted

AVAILABILITY_STATES = "Available,Occupied,Reserved,Unavailable,Faulted"


def parts_of(csms: Csms, request_id: int) -> list[dict]:
    return [r.payload for r in csms.received if r.action == "NotifyReport" and r.payload["requestId"] == request_id]


def names(data: list[dict]) -> list[tuple]:
    """(component, evse id, variable, variable instance) of each reportData entry, in report order."""
    return [(d["component"]["name"], d["component"].get("evse", {}).get("id"), d["variable"]["name"],
             d["variable"].get("instance")) for d in data]


async def report(csms: Csms, request_id: int, **request) -> list[dict]:
    assert await csms.call(ID, "GetReport", {"requestId": request_id, **request}) == {"status": "Accepted"}
    data = await csms.wait_report(ID, request_id)
    parts = parts_of(csms, request_id)
    assert sorted(p["seqNo"] for p in parts) == list(range(len(parts)))   # B08.FR.14
    assert all("variableCharacteristics" in d for d in data)             # B08.FR.12
    return data


def component_key(d: dict) -> tuple:
    c = d["component"]
    return c["name"], c.get("instance"), c.get("evse", {}).get("id"), c.get("evse", {}).get("connectorId")


async def test_tc_b_16_custom_report_with_component_criteria_enabled(csms, make_station):
    """TC_B_16_CS (B08.FR.01/03/04/09/12-14): componentCriteria {Enabled} reports every component whose Enabled is
    true or that has no Enabled variable, never one whose Enabled is false; every Enabled=true of the FullInventory
    is in it, and GetVariables confirms the reported values (step 5/6)."""
    await booted(csms, make_station)
    # AuthCacheCtrlr.Enabled false: that component must drop out of the report
    res = await csms.call(ID, "SetVariables", {"setVariableData": [
        {"component": {"name": "AuthCacheCtrlr"}, "variable": {"name": "Enabled"}, "attributeValue": "false"}]})
    assert res["setVariableResult"][0]["attributeStatus"] == "Accepted"
    assert await csms.call(ID, "GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"}) == \
        {"status": "Accepted"}
    full = await csms.wait_report(ID, 1)
    data = await report(csms, 16, componentCriteria=["Enabled"])
    enabled = {component_key(d): d["variableAttribute"][0].get("value") for d in full
               if d["variable"]["name"] == "Enabled"}
    reported = {component_key(d) for d in data}
    assert ("AuthCacheCtrlr", None, None, None) not in reported
    assert {k for k, v in enabled.items() if v == "true"} <= reported                 # post scenario validation
    assert all(enabled.get(k, "true") == "true" for k in reported)                  # B08.FR.09
    assert ("OCPPCommCtrlr", None, None, None) in reported                          # no Enabled variable: reported
    reported_enabled = [d for d in data if d["variable"]["name"] == "Enabled"]
    assert reported_enabled and all(d["variableAttribute"][0]["value"] == "true" for d in reported_enabled)
    res = await csms.call(ID, "GetVariables", {"getVariableData": [
        {"component": d["component"], "variable": d["variable"]} for d in reported_enabled]})
    assert [(r["attributeStatus"], r["attributeValue"]) for r in res["getVariableResult"]] == \
        [("Accepted", "true")] * len(reported_enabled)
    assert csms.violations == []


async def test_tc_b_17_custom_report_with_component_variable(csms, make_station):
    """TC_B_17_CS (B08.FR.01/03/04/11/12/14): EVSE #1 AvailabilityState only, with its characteristics and the
    Actual ReadOnly attribute."""
    await booted(csms, make_station, connectors=2)
    data = await report(csms, 17, componentVariable=[
        {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityState"}}])
    assert names(data) == [("EVSE", 1, "AvailabilityState", None)]
    (item,) = data
    assert item["variableCharacteristics"]["dataType"] == "OptionList"
    assert item["variableCharacteristics"]["valuesList"] == AVAILABILITY_STATES
    assert [(a["type"], a["mutability"], a["value"]) for a in item["variableAttribute"]] == \
        [("Actual", "ReadOnly", "Available")]
    (part,) = parts_of(csms, 17)
    assert part["seqNo"] == 0 and part["tbc"] is False and part["generatedAt"]
    assert csms.violations == []


async def test_tc_b_18_custom_report_with_criteria_and_component_variable(csms, make_station):
    """TC_B_18_CS (B08.FR.05/15): {Available} AND EVSE #1 AvailabilityState -> that variable (EVSE.Available is
    true); {Problem} AND the same variable -> EmptyResultSet and no NotifyReport. An unknown component is an empty
    result too."""
    await booted(csms, make_station)
    wanted = [{"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityState"}}]
    data = await report(csms, 180, componentCriteria=["Available"], componentVariable=wanted)
    assert names(data) == [("EVSE", 1, "AvailabilityState", None)]
    assert await csms.call(ID, "GetReport", {"requestId": 181, "componentCriteria": ["Problem"],
                                             "componentVariable": wanted}) == {"status": "EmptyResultSet"}
    assert await csms.call(ID, "GetReport", {"requestId": 182, "componentVariable": [
        {"component": {"name": "NoSuchComponent"}}]}) == {"status": "EmptyResultSet"}
    await barrier(csms)
    assert parts_of(csms, 181) == [] and parts_of(csms, 182) == []
    assert csms.violations == []


async def test_tc_b_19_unknown_component_criterion_is_a_call_error(csms, make_station):
    """TC_B_19_CS (B08.FR.02): every ComponentCriterionEnumType value is supported, so an unsupported criterion
    can only be a value outside the enum; the TC's note: the JSON parser catches it -> CALLERROR, no report, and the
    station keeps answering."""
    await booted(csms, make_station)
    with pytest.raises(CallErrorReceived) as exc:
        await csms.call(ID, "GetReport", {"requestId": 19, "componentCriteria": ["Available", "Broken"]},
                        strict=False)
    assert exc.value.code in ("PropertyConstraintViolation", "FormationViolation", "FormatViolation",
                              "TypeConstraintViolation")
    await report(csms, 190, componentCriteria=["Available"])
    assert parts_of(csms, 19) == []
    assert csms.violations == []


async def test_tc_b_54_custom_report_variable_without_instance_reports_every_instance(csms, make_station):
    """TC_B_54_CS (B08.FR.21): DeviceDataCtrlr ItemsPerMessage without instance -> every instance."""
    await booted(csms, make_station)
    data = await report(csms, 54, componentVariable=[
        {"component": {"name": "DeviceDataCtrlr"}, "variable": {"name": "ItemsPerMessage"}}])
    assert sorted(names(data)) == [("DeviceDataCtrlr", None, "ItemsPerMessage", i)
                                   for i in ("GetReport", "GetVariables", "SetVariables")]
    assert csms.violations == []


async def test_tc_b_55_custom_report_variable_with_instance_reports_that_instance(csms, make_station):
    """TC_B_55_CS (B08.FR.11): DeviceDataCtrlr ItemsPerMessage instance GetReport -> only that one; a component
    without its variable (B08.FR.20) -> every variable of the component."""
    await booted(csms, make_station)
    data = await report(csms, 55, componentVariable=[
        {"component": {"name": "DeviceDataCtrlr"}, "variable": {"name": "ItemsPerMessage", "instance": "GetReport"}}])
    assert names(data) == [("DeviceDataCtrlr", None, "ItemsPerMessage", "GetReport")]
    assert data[0]["variableAttribute"][0]["value"] == "100"
    whole = await report(csms, 550, componentVariable=[{"component": {"name": "DeviceDataCtrlr"}}])
    assert {n[2] for n in names(whole)} >= {"ItemsPerMessage", "BytesPerMessage"} and len(whole) > 3
    assert {n[0] for n in names(whole)} == {"DeviceDataCtrlr"}
    assert csms.violations == []


async def test_tc_b_56_custom_report_without_evse_id_reports_every_evse(csms, make_station):
    """TC_B_56_CS (B08.FR.22/23): EVSE AvailabilityState without evse -> one entry per EVSE; Connector
    AvailabilityState with evse.id but no connectorId -> every connector of that EVSE."""
    await booted(csms, make_station, connectors=2)
    data = await report(csms, 56, componentVariable=[
        {"component": {"name": "EVSE"}, "variable": {"name": "AvailabilityState"}}])
    assert names(data) == [("EVSE", 1, "AvailabilityState", None), ("EVSE", 2, "AvailabilityState", None)]
    connectors = await report(csms, 560, componentVariable=[
        {"component": {"name": "Connector", "evse": {"id": 2}}, "variable": {"name": "AvailabilityState"}}])
    assert [d["component"]["evse"] for d in connectors] == [{"id": 2, "connectorId": 1}]
    assert csms.violations == []


async def test_b08_fr_17_items_per_message_get_report_limits_request_and_report_parts(csms, make_station):
    """B08.FR.17: more componentVariable entries than ItemsPerMessageGetReport -> CALLERROR
    OccurrenceConstraintViolation, nothing sent; the same limit splits the report into parts (seqNo 0.., tbc)."""
    st = await booted(csms, make_station)
    st.station.model.set("DeviceDataCtrlr", "ItemsPerMessage", "2", variable_instance="GetReport", force=True)
    wanted = {"component": {"name": "DeviceDataCtrlr"}, "variable": {"name": "ItemsPerMessage"}}
    with pytest.raises(CallErrorReceived) as exc:
        await csms.call(ID, "GetReport", {"requestId": 170, "componentVariable": [wanted] * 3})
    assert exc.value.code == "OccurrenceConstraintViolation"
    data = await report(csms, 171, componentVariable=[wanted])
    assert len(data) == 3
    parts = sorted(parts_of(csms, 171), key=lambda p: p["seqNo"])
    assert [(len(p["reportData"]), p["tbc"]) for p in parts] == [(2, True), (1, False)]
    assert parts_of(csms, 170) == []
    assert csms.violations == []
