"""OCPP 2.0.1 device model: the station's components/variables (devicemodel.v201) and the GetVariables (B06),
SetVariables (B05) and GetBaseReport/NotifyReport (B07) payload functions (v201.devmodel).

Spec references: OCPP 2.0.1 edition 3 Part 2 "Referenced Components and Variables" (P2 §2.x), Part 4 §8, the
appendix CSV dm_components_vars.csv v1.4, requirements B05.FR.xx, B06.FR.xx, B07.FR.xx. Every payload produced in
these tests is validated against the official OCA schema.
"""

from __future__ import annotations

import json
import logging
import math
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secure_cp.devicemodel import VENDOR_COMPONENT, Config16, DeviceModel, MemoryBackend, VariableDef
from secure_cp.devicemodel.v201 import define_v201, v201_definitions
from secure_cp.rpc import Call, ErrorKind, OcppError, SchemaRegistry, encode, error_code
from secure_cp.v201.devmodel import base_report, get_variables, set_variables

REG = SchemaRegistry("2.0.1")
ALL_PROFILES = ["Core", "FirmwareManagement", "LocalAuthListManagement", "Reservation", "SmartCharging",
                "RemoteTrigger"]
MEASURANDS = {"Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage", "SoC"}
EVSES = {1: 1, 2: 2}
INFO = {"vendor": "ExampleCorp", "model": "AC22", "serial": "SN0001", "firmware_version": "1.0",
        "identity": "CP-0001"}
GENERATED = "2024-05-06T12:00:00Z"
PASSWORD = "Abcdefghijklmnop1234"  # passwordString, 20 characters (P2 §2.2.1)


def v201_model(backend: MemoryBackend | None = None, **info) -> DeviceModel:
    model = DeviceModel(backend if backend is not None else MemoryBackend())
    define_v201(model, evses=EVSES, supported_measurands=MEASURANDS, station_info={**INFO, **info})
    return model


def shared_model(order: str, backend: MemoryBackend | None = None, **cfg_kw) -> tuple[DeviceModel, Config16]:
    """A model with both views; ``order`` says which is defined first."""
    model = DeviceModel(backend if backend is not None else MemoryBackend())
    cfg_kw.setdefault("supported_profiles", ALL_PROFILES)

    def make16() -> Config16:
        return Config16(model, number_of_connectors=3, supported_measurands=MEASURANDS, **cfg_kw)

    if order == "16-first":
        cfg = make16()
        define_v201(model, evses=EVSES, supported_measurands=MEASURANDS, station_info=INFO)
    else:
        define_v201(model, evses=EVSES, supported_measurands=MEASURANDS, station_info=INFO)
        cfg = make16()
    return model, cfg


def cv(component: str, variable: str, *, instance: str | None = None, evse: int | None = None,
       connector: int | None = None, var_instance: str | None = None) -> dict:
    comp: dict = {"name": component}
    if instance is not None:
        comp["instance"] = instance
    if evse is not None:
        comp["evse"] = {"id": evse} if connector is None else {"id": evse, "connectorId": connector}
    var: dict = {"name": variable}
    if var_instance is not None:
        var["instance"] = var_instance
    return {"component": comp, "variable": var}


def get(model: DeviceModel, *items: dict, **kw) -> list[dict]:
    request = {"getVariableData": list(items)}
    REG.validate_request("GetVariables", request)
    response = get_variables(model, request, **kw)
    REG.validate_response("GetVariables", response)
    assert len(response["getVariableResult"]) == len(items)  # B06.FR.01
    return response["getVariableResult"]


def get1(model: DeviceModel, component: str, variable: str, **kw) -> dict:
    attr = kw.pop("attributeType", None)
    item = cv(component, variable, **kw)
    if attr is not None:
        item["attributeType"] = attr
    return get(model, item)[0]


def setv(model: DeviceModel, *entries: tuple[dict, str] | tuple[dict, str, str]) -> tuple[list[dict], list]:
    data = []
    for entry in entries:
        item = {**entry[0], "attributeValue": entry[1]}
        if len(entry) == 3:
            item["attributeType"] = entry[2]
        data.append(item)
    request = {"setVariableData": data}
    REG.validate_request("SetVariables", request)
    response, changed = set_variables(model, request)
    REG.validate_response("SetVariables", response)
    assert len(response["setVariableResult"]) == len(entries)  # B05.FR.01
    return response["setVariableResult"], changed


def set1(model: DeviceModel, component: str, variable: str, value: str, **kw) -> dict:
    return setv(model, (cv(component, variable, **kw), value))[0][0]


def report(model: DeviceModel, base: str = "FullInventory", *, items: int = 10_000, size: int = 10_000_000,
           request_id: int = 7) -> list[dict]:
    messages = base_report(model, request_id, base, generated_at=GENERATED, items_per_message=items,
                           bytes_per_message=size)
    for message in messages:
        REG.validate_request("NotifyReport", message)
    return messages


def report_items(messages: list[dict]) -> list[dict]:
    return [item for m in messages for item in m.get("reportData", [])]


def ident(item: dict) -> tuple:
    c, v = item["component"], item["variable"]
    evse = c.get("evse", {})
    return (c["name"], c.get("instance", ""), evse.get("id", 0), evse.get("connectorId", 0), v["name"],
            v.get("instance", ""))


# -- the components and variables (P2 "Referenced Components and Variables") ---------------------------------------

#: Written down from P2 §2.1-§2.13 and P4 §8, independently of the implementation:
#: (component, variable, variable instance, evse, connector) -> (dataType, mutability, unit).
SPEC = {
    ("ChargingStation", "Available", "", 0, 0): ("boolean", "ReadOnly", None),               # §2.13.1
    ("ChargingStation", "AvailabilityState", "", 0, 0): ("OptionList", "ReadOnly", None),    # §2.13.2
    ("ChargingStation", "SupplyPhases", "", 0, 0): ("integer", "ReadOnly", None),            # §2.13.6
    ("EVSE", "Available", "", 2, 0): ("boolean", "ReadOnly", None),
    ("EVSE", "AvailabilityState", "", 2, 0): ("OptionList", "ReadOnly", None),
    ("EVSE", "SupplyPhases", "", 2, 0): ("integer", "ReadOnly", None),
    ("EVSE", "Power", "", 2, 0): ("decimal", "ReadOnly", "W"),                                # §2.13.7
    ("Connector", "Available", "", 2, 2): ("boolean", "ReadOnly", None),
    ("Connector", "ConnectorType", "", 2, 2): ("string", "ReadOnly", None),                  # §2.13.4
    ("Connector", "SupplyPhases", "", 2, 2): ("integer", "ReadOnly", None),
    ("OCPPCommCtrlr", "HeartbeatInterval", "", 0, 0): ("integer", "ReadWrite", "s"),          # §2.1.5
    ("OCPPCommCtrlr", "MessageTimeout", "Default", 0, 0): ("integer", "ReadOnly", "s"),       # §2.1.3
    ("OCPPCommCtrlr", "FileTransferProtocols", "", 0, 0): ("MemberList", "ReadOnly", None),  # §2.1.4
    ("OCPPCommCtrlr", "NetworkConfigurationPriority", "", 0, 0): ("SequenceList", "ReadWrite", None),  # §2.1.6
    ("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", "", 0, 0): ("integer", "ReadWrite", None),  # §2.1.7
    ("OCPPCommCtrlr", "OfflineThreshold", "", 0, 0): ("integer", "ReadWrite", "s"),           # §2.1.8
    ("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent", 0, 0): ("integer", "ReadWrite", None),  # §2.1.10
    ("OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent", 0, 0): ("integer", "ReadWrite", "s"),  # §2.1.11
    ("OCPPCommCtrlr", "UnlockOnEVSideDisconnect", "", 0, 0): ("boolean", "ReadWrite", None),  # §2.1.12
    ("OCPPCommCtrlr", "ResetRetries", "", 0, 0): ("integer", "ReadWrite", None),              # §2.1.14
    ("OCPPCommCtrlr", "RetryBackOffRepeatTimes", "", 0, 0): ("integer", "ReadWrite", None),   # P4 §8.1
    ("OCPPCommCtrlr", "RetryBackOffRandomRange", "", 0, 0): ("integer", "ReadWrite", "s"),    # P4 §8.2
    ("OCPPCommCtrlr", "RetryBackOffWaitMinimum", "", 0, 0): ("integer", "ReadWrite", "s"),    # P4 §8.3
    ("OCPPCommCtrlr", "WebSocketPingInterval", "", 0, 0): ("integer", "ReadWrite", "s"),      # P4 §8.4
    ("DeviceDataCtrlr", "ItemsPerMessage", "GetReport", 0, 0): ("integer", "ReadOnly", None),  # §2.1.16
    ("DeviceDataCtrlr", "ItemsPerMessage", "GetVariables", 0, 0): ("integer", "ReadOnly", None),
    ("DeviceDataCtrlr", "ItemsPerMessage", "SetVariables", 0, 0): ("integer", "ReadOnly", None),
    ("DeviceDataCtrlr", "BytesPerMessage", "GetReport", 0, 0): ("integer", "ReadOnly", None),
    ("DeviceDataCtrlr", "BytesPerMessage", "GetVariables", 0, 0): ("integer", "ReadOnly", None),
    ("DeviceDataCtrlr", "BytesPerMessage", "SetVariables", 0, 0): ("integer", "ReadOnly", None),
    ("DeviceDataCtrlr", "ConfigurationValueSize", "", 0, 0): ("integer", "ReadOnly", None),  # §2.1.20
    ("DeviceDataCtrlr", "ReportingValueSize", "", 0, 0): ("integer", "ReadOnly", None),      # §2.1.21
    ("ClockCtrlr", "DateTime", "", 0, 0): ("dateTime", "ReadOnly", None),                    # §2.1.24
    ("ClockCtrlr", "TimeSource", "", 0, 0): ("SequenceList", "ReadWrite", None),             # §2.1.30
    ("SecurityCtrlr", "BasicAuthPassword", "", 0, 0): ("string", "WriteOnly", None),         # §2.2.1
    ("SecurityCtrlr", "Identity", "", 0, 0): ("string", "ReadOnly", None),                   # §2.2.2
    ("SecurityCtrlr", "OrganizationName", "", 0, 0): ("string", "ReadWrite", None),          # §2.2.3
    ("SecurityCtrlr", "CertificateEntries", "", 0, 0): ("integer", "ReadOnly", None),        # §2.2.4
    ("SecurityCtrlr", "SecurityProfile", "", 0, 0): ("integer", "ReadOnly", None),           # §2.2.5
    ("SecurityCtrlr", "AdditionalRootCertificateCheck", "", 0, 0): ("boolean", "ReadOnly", None),  # §2.2.6
    ("SecurityCtrlr", "MaxCertificateChainSize", "", 0, 0): ("integer", "ReadOnly", None),   # §2.2.7
    ("AuthCtrlr", "Enabled", "", 0, 0): ("boolean", "ReadWrite", None),                      # §2.3.1
    ("AuthCtrlr", "OfflineTxForUnknownIdEnabled", "", 0, 0): ("boolean", "ReadWrite", None),  # §2.3.3
    ("AuthCtrlr", "AuthorizeRemoteStart", "", 0, 0): ("boolean", "ReadWrite", None),         # §2.3.4
    ("AuthCtrlr", "LocalAuthorizeOffline", "", 0, 0): ("boolean", "ReadWrite", None),        # §2.3.5
    ("AuthCtrlr", "LocalPreAuthorize", "", 0, 0): ("boolean", "ReadWrite", None),            # §2.3.6
    ("AuthCtrlr", "DisableRemoteAuthorization", "", 0, 0): ("boolean", "ReadWrite", None),   # §2.3.8
    ("AuthCacheCtrlr", "Enabled", "", 0, 0): ("boolean", "ReadWrite", None),                 # §2.4.1
    ("AuthCacheCtrlr", "Available", "", 0, 0): ("boolean", "ReadOnly", None),                # §2.4.2
    ("AuthCacheCtrlr", "LifeTime", "", 0, 0): ("integer", "ReadWrite", "s"),                 # §2.4.3
    ("AuthCacheCtrlr", "Storage", "", 0, 0): ("integer", "ReadOnly", "B"),                   # §2.4.4
    ("AuthCacheCtrlr", "Policy", "", 0, 0): ("OptionList", "ReadWrite", None),               # §2.4.5
    ("LocalAuthListCtrlr", "Enabled", "", 0, 0): ("boolean", "ReadWrite", None),             # §2.5.1
    ("LocalAuthListCtrlr", "Entries", "", 0, 0): ("integer", "ReadOnly", None),              # §2.5.2
    ("LocalAuthListCtrlr", "Available", "", 0, 0): ("boolean", "ReadOnly", None),            # §2.5.3
    ("LocalAuthListCtrlr", "ItemsPerMessage", "", 0, 0): ("integer", "ReadOnly", None),      # §2.5.4
    ("LocalAuthListCtrlr", "BytesPerMessage", "", 0, 0): ("integer", "ReadOnly", None),      # §2.5.5
    ("TxCtrlr", "EVConnectionTimeOut", "", 0, 0): ("integer", "ReadWrite", "s"),             # §2.6.1
    ("TxCtrlr", "StopTxOnEVSideDisconnect", "", 0, 0): ("boolean", "ReadWrite", None),       # §2.6.2
    ("TxCtrlr", "TxStartPoint", "", 0, 0): ("MemberList", "ReadWrite", None),                # §2.6.4
    ("TxCtrlr", "TxStopPoint", "", 0, 0): ("MemberList", "ReadWrite", None),                 # §2.6.5
    ("TxCtrlr", "MaxEnergyOnInvalidId", "", 0, 0): ("integer", "ReadWrite", "Wh"),           # §2.6.7
    ("TxCtrlr", "StopTxOnInvalidId", "", 0, 0): ("boolean", "ReadWrite", None),              # §2.6.8
    ("SampledDataCtrlr", "Enabled", "", 0, 0): ("boolean", "ReadWrite", None),               # §2.7.1
    ("SampledDataCtrlr", "Available", "", 0, 0): ("boolean", "ReadOnly", None),              # §2.7.2
    ("SampledDataCtrlr", "TxEndedMeasurands", "", 0, 0): ("MemberList", "ReadWrite", None),  # §2.7.4
    ("SampledDataCtrlr", "TxEndedInterval", "", 0, 0): ("integer", "ReadWrite", "s"),        # §2.7.5
    ("SampledDataCtrlr", "TxStartedMeasurands", "", 0, 0): ("MemberList", "ReadWrite", None),  # §2.7.6
    ("SampledDataCtrlr", "TxUpdatedMeasurands", "", 0, 0): ("MemberList", "ReadWrite", None),  # §2.7.7
    ("SampledDataCtrlr", "TxUpdatedInterval", "", 0, 0): ("integer", "ReadWrite", "s"),      # §2.7.8
    ("AlignedDataCtrlr", "Enabled", "", 0, 0): ("boolean", "ReadWrite", None),               # §2.7.9
    ("AlignedDataCtrlr", "Available", "", 0, 0): ("boolean", "ReadOnly", None),              # §2.7.10
    ("AlignedDataCtrlr", "Measurands", "", 0, 0): ("MemberList", "ReadWrite", None),         # §2.7.11
    ("AlignedDataCtrlr", "Interval", "", 0, 0): ("integer", "ReadWrite", "s"),               # §2.7.12
    ("AlignedDataCtrlr", "SendDuringIdle", "", 0, 0): ("boolean", "ReadWrite", None),        # §2.7.13
    ("AlignedDataCtrlr", "TxEndedMeasurands", "", 0, 0): ("MemberList", "ReadWrite", None),  # §2.7.15
    ("AlignedDataCtrlr", "TxEndedInterval", "", 0, 0): ("integer", "ReadWrite", "s"),        # §2.7.16
    ("OCPPCommCtrlr", "PublicKeyWithSignedMeterValue", "", 0, 0): ("OptionList", "ReadWrite", None),  # §2.7.17
    ("ReservationCtrlr", "Enabled", "", 0, 0): ("boolean", "ReadWrite", None),               # §2.8.1
    ("ReservationCtrlr", "Available", "", 0, 0): ("boolean", "ReadOnly", None),              # §2.8.2
    ("ReservationCtrlr", "NonEvseSpecific", "", 0, 0): ("boolean", "ReadOnly", None),        # §2.8.3
    ("SmartChargingCtrlr", "Enabled", "", 0, 0): ("boolean", "ReadWrite", None),             # §2.9.1
    ("SmartChargingCtrlr", "Available", "", 0, 0): ("boolean", "ReadOnly", None),            # §2.9.2
}


def test_referenced_components_and_variables_match_part2_tables():
    model = v201_model()
    for (component, variable, vinst, evse, conn), (data_type, mutability, unit) in SPEC.items():
        d = model.definition(component, variable, variable_instance=vinst, evse_id=evse, connector_id=conn)
        assert d is not None, (component, variable, vinst)
        assert (d.data_type, d.mutability, d.unit) == (data_type, mutability, unit), (component, variable)
        # Part 2 §2 "All variables that are writable SHALL have ... persistence = true".
        if mutability != "ReadOnly":
            assert d.persistent, (component, variable)


def test_evse_and_connector_components_exist_on_their_tiers():
    model = v201_model()
    for evse_id, n in EVSES.items():
        assert model.get("EVSE", "AvailabilityState", evse_id=evse_id) == "Available"
        for connector_id in range(1, n + 1):
            assert model.get("Connector", "ConnectorType", evse_id=evse_id, connector_id=connector_id) == "sType2"
        assert model.definition("Connector", "Available", evse_id=evse_id, connector_id=n + 1) is None
    assert model.definition("EVSE", "Available", evse_id=3) is None
    assert model.definition("EVSE", "Available") is None  # EVSE lives on tier "evse = n" only (P2 §2.13.1 note)
    power = model.definition("EVSE", "Power", evse_id=1)
    assert power.max == Decimal(22000) and power.unit == "W"


def test_station_values_and_limits_from_station_info():
    model = v201_model(evse_power_w={1: 11000, 2: 7400.5}, connector_type={(1, 1): "cType2", (2, 1): "sType2",
                                                                           (2, 2): "cCCS2"},
                       supply_phases=1, time_sources=("NTP", "Heartbeat"), signed_meter_values=True)
    assert model.get("ChargingStation", "Model") == "AC22"
    assert model.get("ChargingStation", "VendorName") == "ExampleCorp"
    assert model.get("ChargingStation", "SerialNumber") == "SN0001"
    assert model.get("SecurityCtrlr", "Identity") == "CP-0001"
    assert model.definition("EVSE", "Power", evse_id=2).max == Decimal("7400.5")
    assert model.get("Connector", "ConnectorType", evse_id=2, connector_id=2) == "cCCS2"
    assert model.get("Connector", "SupplyPhases", evse_id=2, connector_id=2) == "1"
    assert model.get("ClockCtrlr", "TimeSource") == "NTP,Heartbeat"
    assert model.get("SampledDataCtrlr", "SignReadings") == "true"
    assert model.get("OCPPCommCtrlr", "PublicKeyWithSignedMeterValue") == "OncePerTransaction"
    # P2 §2.7.3: without signed meter values the variable SHALL NOT be reported.
    plain = v201_model()
    assert plain.definition("SampledDataCtrlr", "SignReadings") is None
    assert plain.definition("AlignedDataCtrlr", "SignReadings") is None


def test_measurand_lists_offer_only_supported_201_measurands():
    model = DeviceModel(MemoryBackend())
    define_v201(model, evses={1: 1}, supported_measurands={"Energy.Active.Import.Register", "Voltage", "Temperature"},
                station_info=INFO)
    d = model.definition("SampledDataCtrlr", "TxStartedMeasurands")
    assert d.values_list == ("Energy.Active.Import.Register", "Voltage")  # Temperature is 1.6 only
    assert model.get("SampledDataCtrlr", "TxStartedMeasurands") == "Energy.Active.Import.Register"


@pytest.mark.parametrize("kw", [
    {"evses": {}},
    {"evses": {0: 1}},
    {"evses": {1: 0}},
    {"supported_measurands": {"Humidity"}},
    {"station_info": {"model": "AC22"}},  # vendor missing
    {"station_info": {**INFO, "model": "M" * 21}},  # BootNotification model is string[20]
    {"station_info": {**INFO, "colour": "red"}},
    {"station_info": {**INFO, "connector_type": "Type2"}},
    {"station_info": {**INFO, "supply_phases": 2}},
    {"station_info": {**INFO, "evse_power_w": -1}},
    {"station_info": {**INFO, "evse_power_w": {2: 7000}}},
    {"station_info": {**INFO, "identity": "CP:1"}},  # ':' separates the Basic-auth user name (P2 §2.2.2)
    {"station_info": {**INFO, "time_sources": ("Sundial",)}},
    {"station_info": {**INFO, "reservation": "yes"}},
])
def test_bad_arguments_raise_and_define_nothing(kw):
    model = DeviceModel(MemoryBackend())
    args = {"evses": {1: 1}, "supported_measurands": MEASURANDS, "station_info": INFO, **kw}
    with pytest.raises(ValueError):
        define_v201(model, **args)
    assert model.definitions() == []


def test_conflicting_existing_definition_is_refused():
    model = DeviceModel(MemoryBackend())
    model.define(VariableDef("OCPPCommCtrlr", "HeartbeatInterval", "string", mutability="ReadWrite"))
    with pytest.raises(ValueError, match="HeartbeatInterval"):
        define_v201(model, evses={1: 1}, supported_measurands=MEASURANDS, station_info=INFO)
    assert len(model.definitions()) == 1


def test_define_is_idempotent():
    model = v201_model()
    before = {(d.key(), d) for d in model.definitions()}
    assert set_1_ok(model, "OCPPCommCtrlr", "OfflineThreshold", "120")
    define_v201(model, evses=EVSES, supported_measurands=MEASURANDS, station_info=INFO)
    assert {(d.key(), d) for d in model.definitions()} == before
    assert model.get("OCPPCommCtrlr", "OfflineThreshold") == "120"


def set_1_ok(model: DeviceModel, component: str, variable: str, value: str, **kw) -> bool:
    return set1(model, component, variable, value, **kw)["attributeStatus"] == "Accepted"


def test_values_survive_a_restart_and_station_facts_are_reasserted():
    backend = MemoryBackend()
    model = v201_model(backend)
    assert set_1_ok(model, "OCPPCommCtrlr", "OfflineThreshold", "900")
    # A stale value of a read-only fact (e.g. from an older software version) must not outlive the change.
    backend.data[("ChargingStation", "", 0, 0, "Model", "", "Actual")] = "OldModel"
    model.set("SecurityCtrlr", "SecurityProfile", "2", force=True)  # changed at run time (A05): kept
    model.set("EVSE", "AvailabilityState", "Unavailable", evse_id=1, force=True)  # not persistent
    again = v201_model(backend)
    assert again.get("OCPPCommCtrlr", "OfflineThreshold") == "900"
    assert again.get("ChargingStation", "Model") == "AC22"
    assert backend.data[("ChargingStation", "", 0, 0, "Model", "", "Actual")] == "AC22"
    assert again.get("SecurityCtrlr", "SecurityProfile") == "2"
    assert again.get("EVSE", "AvailabilityState", evse_id=1) == "Available"


# -- one store, two views: OCPP 1.6 keys and 2.0.1 variables ---------------------------------------------------------

def _model_state(model: DeviceModel) -> dict:
    out = {}
    for d in model.definitions():
        attrs = {a: model.get(d.component, d.variable, component_instance=d.component_instance,
                              variable_instance=d.variable_instance, evse_id=d.evse_id, connector_id=d.connector_id,
                              attribute=a) for a in d.attributes}
        out[d.key()] = (d, attrs)
    return out


@pytest.mark.parametrize("profiles", [ALL_PROFILES, ["Core"]])
def test_define_order_with_config16_does_not_matter(profiles):
    a, _ = shared_model("16-first", supported_profiles=profiles)
    b, _ = shared_model("v201-first", supported_profiles=profiles)
    sa, sb = _model_state(a), _model_state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key] == sb[key], key  # same definition (validators aside) and same values
    # ... and so the same reports (items are sorted, not in definition order).
    assert report(a) == report(b)


@pytest.mark.parametrize("order", ["16-first", "v201-first"])
def test_shared_definitions_agree_on_data_type_and_mutability(order):
    model, cfg = shared_model(order)
    mine = {d.key(): d for d in v201_definitions(evses=EVSES, supported_measurands=MEASURANDS, station_info=INFO)}
    shared = 0
    for key in cfg.keys():
        k = cfg.spec(key)
        if k.component == VENDOR_COMPONENT:
            continue
        d16 = model.definition(k.component, k.variable, variable_instance=k.variable_instance)
        ours = mine.get(d16.key())
        if ours is None:
            continue  # e.g. SmartChargingCtrlr.ProfileStackLevel: defined by Config16 only
        shared += 1
        assert (ours.data_type, ours.mutability) == (d16.data_type, d16.mutability), key
        assert ours.default == d16.default, key  # so the order of definition does not change values
    assert shared >= 30


@pytest.mark.parametrize("order", ["16-first", "v201-first"])
def test_a_16_write_is_seen_by_201_and_vice_versa(order):
    model, cfg = shared_model(order)
    assert cfg.change_configuration("HeartbeatInterval", "120") == "Accepted"
    assert get1(model, "OCPPCommCtrlr", "HeartbeatInterval")["attributeValue"] == "120"
    assert set_1_ok(model, "OCPPCommCtrlr", "HeartbeatInterval", "77")
    assert cfg.get_int("HeartbeatInterval") == 77
    assert cfg.change_configuration("MeterValuesSampledData", "Voltage,SoC") == "Accepted"
    assert get1(model, "SampledDataCtrlr", "TxUpdatedMeasurands")["attributeValue"] == "Voltage,SoC"
    assert set_1_ok(model, "OCPPCommCtrlr", "MessageAttempts", "5", var_instance="TransactionEvent")
    assert cfg.get_int("TransactionMessageAttempts") == 5
    assert set_1_ok(model, "TxCtrlr", "StopTxOnInvalidId", "false")
    assert cfg.get_bool("StopTransactionOnInvalidId") is False
    # The 1.6 *MaxLength bound applies to a 2.0.1 write too (Config16's definition is the one in force).
    many = ",".join(["Voltage", "SoC", "Current.Import"] + [f"Voltage.L{i}" for i in (1, 2, 3)] * 7)
    assert set1(model, "SampledDataCtrlr", "TxUpdatedMeasurands", many)["attributeStatus"] == "Rejected"
    # Read-only in both: GetConfigurationMaxKeys is ItemsPerMessage[GetVariables].
    assert get1(model, "DeviceDataCtrlr", "ItemsPerMessage", var_instance="GetVariables")["attributeValue"] == \
        str(cfg.get_int("GetConfigurationMaxKeys"))


@pytest.mark.parametrize("order", ["16-first", "v201-first"])
def test_authorization_key_and_basic_auth_password_are_one_write_only_value(order, caplog):
    caplog.set_level(logging.DEBUG)
    model, cfg = shared_model(order)
    secret16 = "00112233445566778899AABBCCDDEEFF0123ABCD"
    assert cfg.change_configuration("AuthorizationKey", secret16) == "Accepted"
    result = get1(model, "SecurityCtrlr", "BasicAuthPassword")
    assert result["attributeStatus"] == "Rejected" and "attributeValue" not in result  # B06.FR.09
    assert set_1_ok(model, "SecurityCtrlr", "BasicAuthPassword", PASSWORD)
    assert cfg.get_str("AuthorizationKey") == PASSWORD
    frames = json.dumps([report(model, base) for base in ("FullInventory", "ConfigurationInventory")])
    assert PASSWORD not in frames and secret16 not in frames and PASSWORD not in caplog.text


# -- B06 GetVariables ----------------------------------------------------------------------------------------------

def test_get_variables_accepted_echoes_request_b06_fr_01_to_04_10_11():
    model = v201_model()
    items = [
        cv("OCPPCommCtrlr", "HeartbeatInterval"),
        {**cv("ocppcommctrlr", "heartbeatinterval"), "attributeType": "Actual"},  # names are case-insensitive
        cv("OCPPCommCtrlr", "MessageAttempts", var_instance="TransactionEvent"),
        cv("EVSE", "AvailabilityState", evse=2),
        cv("Connector", "ConnectorType", evse=2, connector=2),
    ]
    results = get(model, *items)
    for item, result in zip(items, results):
        assert result["component"] == item["component"] and result["variable"] == item["variable"]  # B06.FR.02/14
        assert result["attributeType"] == "Actual"  # B06.FR.03 / B06.FR.11
        assert result["attributeStatus"] == "Accepted"  # B06.FR.10
    assert [r["attributeValue"] for r in results] == ["300", "300", "3", "Available", "sType2"]


def test_get_variables_unknown_component_and_variable_b06_fr_06_07_15():
    model = v201_model()
    results = get(model,
                  cv("NoSuchCtrlr", "Enabled"),
                  cv("OCPPCommCtrlr", "NoSuchVariable"),
                  cv("EVSE", "AvailabilityState"),  # EVSE without evse: no such component
                  cv("EVSE", "AvailabilityState", evse=9),
                  cv("Connector", "ConnectorType", evse=1, connector=2),
                  cv("OCPPCommCtrlr", "HeartbeatInterval", instance="left"),  # B06.FR.15: no such instance
                  cv("OCPPCommCtrlr", "MessageAttempts"),  # exists only with instance TransactionEvent
                  cv("OCPPCommCtrlr", "HeartbeatInterval", var_instance="x"))
    assert [r["attributeStatus"] for r in results] == [
        "UnknownComponent", "UnknownVariable", "UnknownComponent", "UnknownComponent", "UnknownComponent",
        "UnknownComponent", "UnknownVariable", "UnknownVariable"]
    assert all("attributeValue" not in r for r in results)


def test_get_variables_not_supported_attribute_type_b06_fr_08():
    model = v201_model()
    result = get1(model, "OCPPCommCtrlr", "HeartbeatInterval", attributeType="MaxSet")
    assert result["attributeStatus"] == "NotSupportedAttributeType" and result["attributeType"] == "MaxSet"
    assert "attributeValue" not in result


def test_get_variables_write_only_is_rejected_b06_fr_09():
    model = v201_model()
    assert set_1_ok(model, "SecurityCtrlr", "BasicAuthPassword", PASSWORD)
    result = get1(model, "SecurityCtrlr", "BasicAuthPassword")
    assert result["attributeStatus"] == "Rejected"
    assert result["attributeStatusInfo"] == {"reasonCode": "WriteOnly"}
    assert "attributeValue" not in result


def test_get_variables_unset_value_is_empty_string_b06_fr_13():
    model = v201_model()
    result = get1(model, "SecurityCtrlr", "OrganizationName")  # no default
    assert result["attributeStatus"] == "Accepted" and result["attributeValue"] == ""
    assert get1(model, "ClockCtrlr", "DateTime")["attributeValue"] == ""
    model.set("ClockCtrlr", "DateTime", "2024-05-06T12:00:00Z", force=True)
    assert get1(model, "ClockCtrlr", "DateTime")["attributeValue"] == "2024-05-06T12:00:00Z"


def test_get_variables_value_cut_to_reporting_value_size_p2_2_1_21():
    model = v201_model()
    assert set_1_ok(model, "SecurityCtrlr", "OrganizationName", "Example Charging Services B.V.")
    model.set("DeviceDataCtrlr", "ReportingValueSize", "7", force=True)
    assert get1(model, "SecurityCtrlr", "OrganizationName")["attributeValue"] == "Example"
    (item,) = [i for i in report_items(report(model)) if i["variable"]["name"] == "OrganizationName"]
    assert item["variableAttribute"][0]["value"] == "Example"


def test_get_variables_more_items_than_items_per_message_is_occurrence_violation_b06_fr_16():
    model = v201_model()
    model.set("DeviceDataCtrlr", "ItemsPerMessage", "3", variable_instance="GetVariables", force=True)
    assert len(get(model, *[cv("OCPPCommCtrlr", "HeartbeatInterval")] * 3)) == 3
    with pytest.raises(OcppError) as exc:
        get_variables(model, {"getVariableData": [cv("OCPPCommCtrlr", "HeartbeatInterval")] * 4})
    assert exc.value.kind is ErrorKind.OCCURRENCE_CONSTRAINT_VIOLATION
    assert error_code(exc.value.kind, "2.0.1") == "OccurrenceConstraintViolation"


def test_get_variables_bigger_than_bytes_per_message_is_format_violation_b06_fr_17():
    model = v201_model()
    request = {"getVariableData": [cv("OCPPCommCtrlr", "HeartbeatInterval")] * 5}
    payload_size = len(json.dumps(request, separators=(",", ":")))
    model.set("DeviceDataCtrlr", "BytesPerMessage", str(payload_size), variable_instance="GetVariables", force=True)
    assert len(get_variables(model, request)["getVariableResult"]) == 5
    # The frame as received (given by the caller) is what counts when known.
    frame = encode(Call("a-message-id", "GetVariables", request))
    with pytest.raises(OcppError) as exc:
        get_variables(model, request, message_size=len(frame.encode()))
    assert error_code(exc.value.kind, "2.0.1") == "FormatViolation"
    with pytest.raises(OcppError):
        get_variables(model, {"getVariableData": [cv("OCPPCommCtrlr", "HeartbeatInterval")] * 6})


# -- B05 SetVariables ----------------------------------------------------------------------------------------------

def test_set_variables_statuses_b05_fr_04_to_10_12():
    model = v201_model()
    results, changed = setv(
        model,
        (cv("OCPPCommCtrlr", "OfflineThreshold"), "300"),
        (cv("OCPPCommCtrlr", "WebSocketPingInterval"), "30"),
        (cv("NoSuchCtrlr", "Enabled"), "true"),
        (cv("OCPPCommCtrlr", "NoSuchVariable"), "1"),
        (cv("OCPPCommCtrlr", "OfflineThreshold"), "300", "Target"),
        (cv("OCPPCommCtrlr", "OfflineThreshold"), "soon"),
        (cv("OCPPCommCtrlr", "HeartbeatInterval"), "0"),  # P2 §2.1.5 minLimit 1
        (cv("ChargingStation", "Model"), "Other"),
        (cv("SecurityCtrlr", "SecurityProfile"), "3"),
    )
    assert [(r["attributeStatus"], r.get("attributeStatusInfo", {}).get("reasonCode")) for r in results] == [
        ("Accepted", None),                 # B05.FR.10
        ("RebootRequired", None),           # effective with the next connection
        ("UnknownComponent", None),         # B05.FR.04
        ("UnknownVariable", None),          # B05.FR.05
        ("NotSupportedAttributeType", None),  # B05.FR.06
        ("Rejected", "InvalidValue"),       # B05.FR.07
        ("Rejected", "ValueOutOfRange"),    # B05.FR.08
        ("Rejected", "ReadOnly"),           # B05.FR.09
        ("Rejected", "ReadOnly"),
    ]
    assert [r["attributeType"] for r in results] == ["Actual"] * 4 + ["Target"] + ["Actual"] * 4  # B05.FR.03/12
    assert [(d.component, d.variable) for d in changed] == [("OCPPCommCtrlr", "OfflineThreshold"),
                                                            ("OCPPCommCtrlr", "WebSocketPingInterval")]
    assert model.get("OCPPCommCtrlr", "OfflineThreshold") == "300"
    assert model.get("OCPPCommCtrlr", "WebSocketPingInterval") == "30"
    assert model.get("OCPPCommCtrlr", "HeartbeatInterval") == "300"
    assert model.get("ChargingStation", "Model") == "AC22"


def test_set_variables_echoes_component_and_variable_b05_fr_02():
    model = v201_model()
    entry = cv("connector", "ConnectorType", evse=1, connector=1)
    results, changed = setv(model, (entry, "cType2"))
    assert results[0]["component"] == entry["component"] and results[0]["variable"] == entry["variable"]
    assert results[0]["attributeStatus"] == "Rejected" and changed == []


@pytest.mark.parametrize(
    "component, variable, value, ok",
    [
        # integer (P2 §2.1.4: no leading zeros, no plus sign, 32 bit)
        ("OCPPCommCtrlr", "OfflineThreshold", "0", True),
        ("OCPPCommCtrlr", "OfflineThreshold", "86400", True),
        ("OCPPCommCtrlr", "OfflineThreshold", "007", False),
        ("OCPPCommCtrlr", "OfflineThreshold", "+5", False),
        ("OCPPCommCtrlr", "OfflineThreshold", " 5", False),
        ("OCPPCommCtrlr", "OfflineThreshold", "1.5", False),
        ("OCPPCommCtrlr", "OfflineThreshold", "", False),
        ("OCPPCommCtrlr", "OfflineThreshold", "-1", False),  # minLimit 0
        ("OCPPCommCtrlr", "OfflineThreshold", "2147483648", False),
        # boolean (only "true" and "false")
        ("AuthCtrlr", "LocalPreAuthorize", "true", True),
        ("AuthCtrlr", "LocalPreAuthorize", "TRUE", False),
        ("AuthCtrlr", "LocalPreAuthorize", "1", False),
        # decimal: see test_set_variables_decimal_and_date_time_p2_2_1_4
        # string (OrganizationName: RFC 5280 ub-organization-name 64)
        ("SecurityCtrlr", "OrganizationName", "Example CPO", True),
        ("SecurityCtrlr", "OrganizationName", "x" * 65, False),
        ("SecurityCtrlr", "OrganizationName", "", False),
        # passwordString of 16..40 (P2 §2.2.1), '@' allowed (P2 §2.1.4)
        ("SecurityCtrlr", "BasicAuthPassword", "abc@DEF.123_456-789", True),
        ("SecurityCtrlr", "BasicAuthPassword", "short", False),
        ("SecurityCtrlr", "BasicAuthPassword", "with space in it 1234", False),
        ("SecurityCtrlr", "BasicAuthPassword", "x" * 41, False),
        # OptionList (P2 §2.4.5)
        ("AuthCacheCtrlr", "Policy", "FIFO", True),
        ("AuthCacheCtrlr", "Policy", "MRU", False),
        ("AuthCacheCtrlr", "Policy", "LRU,LFU", False),
        # MemberList (P2 §2.6.4/§2.6.6)
        ("TxCtrlr", "TxStartPoint", "EVConnected,Authorized", True),
        ("TxCtrlr", "TxStartPoint", "DataSigned", True),
        ("TxCtrlr", "TxStartPoint", "", True),
        ("TxCtrlr", "TxStartPoint", "Authorized,Authorized", False),
        ("TxCtrlr", "TxStartPoint", "Plugged", False),
        ("TxCtrlr", "TxStopPoint", "DataSigned", False),  # no meaning as a stop point (P2 §2.6.6.2)
        ("SampledDataCtrlr", "TxStartedMeasurands", "Voltage,SoC", True),
        ("SampledDataCtrlr", "TxStartedMeasurands", "Power.Reactive.Import", False),  # not measurable here
        # SequenceList: ordered, from the values list (P2 §2.1.6, §2.1.30)
        ("OCPPCommCtrlr", "NetworkConfigurationPriority", "2,1", True),
        ("OCPPCommCtrlr", "NetworkConfigurationPriority", "3", False),
        ("ClockCtrlr", "TimeSource", "Heartbeat", True),
        ("ClockCtrlr", "TimeSource", "GPS", False),
        # Enabled of a feature the station lacks can only be false
        ("SmartChargingCtrlr", "Enabled", "false", True),
        ("SmartChargingCtrlr", "Enabled", "true", False),
    ],
)
def test_set_variables_validates_data_type_b05_fr_07(component, variable, value, ok):
    model = v201_model()
    before = model.get(component, variable)
    result = set1(model, component, variable, value)
    if ok:
        assert result["attributeStatus"] == "Accepted"
        read = get1(model, component, variable)
        if variable == "BasicAuthPassword":
            assert read["attributeStatus"] == "Rejected" and model.get(component, variable) == value
        else:
            assert read["attributeValue"] == value
    else:
        assert result["attributeStatus"] == "Rejected"
        assert result["attributeStatusInfo"]["reasonCode"] in ("InvalidValue", "ValueOutOfRange")
        assert model.get(component, variable) == before


def test_set_variables_decimal_and_date_time_p2_2_1_4():
    model = v201_model()
    model.define(VariableDef("SmartChargingCtrlr", "LimitChangeSignificance", "decimal", unit="Percent",
                             min=Decimal(0), max=Decimal(100), default="5"))  # P2 §2.9.11
    model.define(VariableDef("ClockCtrlr", "NextTimeOffsetTransitionDateTime", "dateTime"))  # P2 §2.1.28
    cases = [
        ("LimitChangeSignificance", "2.5", "Accepted"), ("LimitChangeSignificance", "0.123456", "Accepted"),
        ("LimitChangeSignificance", "0.1234567", "Rejected"), ("LimitChangeSignificance", "100.5", "Rejected"),
        ("LimitChangeSignificance", "1,5", "Rejected"), ("LimitChangeSignificance", "abc", "Rejected"),
    ]
    for variable, value, status in cases:
        assert set1(model, "SmartChargingCtrlr", variable, value)["attributeStatus"] == status, value
    assert set1(model, "SmartChargingCtrlr", "LimitChangeSignificance", "100.5")["attributeStatusInfo"] == \
        {"reasonCode": "ValueOutOfRange"}
    for value, status in [("2024-10-27T01:00:00Z", "Accepted"), ("2024-10-27T01:00:00.123+02:00", "Accepted"),
                          ("2024-10-27T01:00:00.1234Z", "Rejected"), ("2024-10-27 01:00", "Rejected")]:
        assert set1(model, "ClockCtrlr", "NextTimeOffsetTransitionDateTime", value)["attributeStatus"] == status


def test_set_variables_value_longer_than_configuration_value_size_is_rejected():
    model = v201_model()
    model.set("DeviceDataCtrlr", "ConfigurationValueSize", "10", force=True)
    result = set1(model, "SecurityCtrlr", "OrganizationName", "Eleven char")
    assert result["attributeStatus"] == "Rejected"
    assert result["attributeStatusInfo"] == {"reasonCode": "TooLargeElement"}
    assert set_1_ok(model, "SecurityCtrlr", "OrganizationName", "Ten chars!")


def test_set_variables_storage_failure_is_rejected_b05_fr_09(caplog):
    class Failing(MemoryBackend):
        fail = False

        def put(self, key, value):
            if self.fail:
                raise OSError("disk full")
            super().put(key, value)

    backend = Failing()
    model = v201_model(backend)
    backend.fail = True
    results, changed = setv(model, (cv("SecurityCtrlr", "BasicAuthPassword"), PASSWORD),
                            (cv("OCPPCommCtrlr", "OfflineThreshold"), "5"))
    assert [r["attributeStatus"] for r in results] == ["Rejected", "Rejected"]
    assert results[0]["attributeStatusInfo"] == {"reasonCode": "InternalError"}
    assert changed == [] and model.get("OCPPCommCtrlr", "OfflineThreshold") == "60"
    assert PASSWORD not in caplog.text


def test_set_variables_limits_items_and_bytes_per_message():
    model = v201_model()
    model.set("DeviceDataCtrlr", "ItemsPerMessage", "2", variable_instance="SetVariables", force=True)
    entry = {**cv("OCPPCommCtrlr", "OfflineThreshold"), "attributeValue": "10"}
    with pytest.raises(OcppError) as exc:
        set_variables(model, {"setVariableData": [entry] * 3})
    assert exc.value.kind is ErrorKind.OCCURRENCE_CONSTRAINT_VIOLATION
    assert model.get("OCPPCommCtrlr", "OfflineThreshold") == "60"  # nothing applied
    model.set("DeviceDataCtrlr", "BytesPerMessage", "50", variable_instance="SetVariables", force=True)
    with pytest.raises(OcppError) as exc:
        set_variables(model, {"setVariableData": [entry]})
    assert exc.value.kind is ErrorKind.FORMATION_VIOLATION


def test_set_variables_changed_definitions_are_listed_once():
    model = v201_model()
    seen: list[str] = []
    model.subscribe(lambda d, v: seen.append(d.variable))
    _, changed = setv(model, (cv("AuthCtrlr", "Enabled"), "false"), (cv("AuthCtrlr", "Enabled"), "true"),
                      (cv("AuthCtrlr", "LocalPreAuthorize"), "maybe"))
    assert [d.variable for d in changed] == ["Enabled"]
    assert seen == ["Enabled", "Enabled"] and model.get("AuthCtrlr", "Enabled") == "true"


# -- B07 GetBaseReport / NotifyReport ------------------------------------------------------------------------------

def test_full_inventory_reports_every_variable_with_characteristics_b07_fr_08_11():
    model, _ = shared_model("16-first")
    messages = report(model)
    assert len(messages) == 1
    assert messages[0]["requestId"] == 7 and messages[0]["seqNo"] == 0 and messages[0]["tbc"] is False
    items = report_items(messages)
    assert len(items) == len(model.definitions())
    assert len({ident(i) for i in items}) == len(items)
    by_id = {ident(i): i for i in items}
    hb = by_id[("OCPPCommCtrlr", "", 0, 0, "HeartbeatInterval", "")]
    assert hb["variableAttribute"] == [{"type": "Actual", "value": "300", "mutability": "ReadWrite",
                                        "persistent": True, "constant": False}]
    # minLimit: Config16's definition is the one in force on a shared model (1.6 allows 0; P2 §2.1.5 says 1).
    assert hb["variableCharacteristics"] == {"dataType": "integer", "unit": "s",
                                             "minLimit": model.definition("OCPPCommCtrlr", "HeartbeatInterval").min,
                                             "supportsMonitoring": False}
    alone = {ident(i): i for i in report_items(report(v201_model()))}
    assert alone[("OCPPCommCtrlr", "", 0, 0, "HeartbeatInterval", "")]["variableCharacteristics"]["minLimit"] == 1
    power = by_id[("EVSE", "", 2, 0, "Power", "")]
    assert power["component"] == {"name": "EVSE", "evse": {"id": 2}}
    assert power["variableCharacteristics"]["maxLimit"] == 22000  # P2 §2.13.7: required
    assert power["variableAttribute"][0]["persistent"] is False
    conn = by_id[("Connector", "", 2, 2, "ConnectorType", "")]
    assert conn["component"] == {"name": "Connector", "evse": {"id": 2, "connectorId": 2}}
    assert conn["variableAttribute"][0] == {"type": "Actual", "value": "sType2", "mutability": "ReadOnly",
                                            "persistent": True, "constant": True}
    policy = by_id[("AuthCacheCtrlr", "", 0, 0, "Policy", "")]
    assert policy["variableCharacteristics"]["valuesList"] == "LRU,LFU,FIFO,CUSTOM"
    pwd = by_id[("SecurityCtrlr", "", 0, 0, "BasicAuthPassword", "")]
    assert pwd["variableCharacteristics"]["maxLimit"] == 40
    org = by_id[("SecurityCtrlr", "", 0, 0, "OrganizationName", "")]
    assert "value" not in org["variableAttribute"][0]  # unset, still reported (B07.FR.11)
    profile = by_id[("SecurityCtrlr", "", 0, 0, "SecurityProfile", "")]
    assert profile["variableAttribute"][0]["constant"] is False  # changed at run time (A05)
    assert by_id[("DeviceDataCtrlr", "", 0, 0, "ItemsPerMessage", "GetVariables")]["variable"] == \
        {"name": "ItemsPerMessage", "instance": "GetVariables"}


def test_every_supported_attribute_type_is_reported_b07_fr_11():
    model = v201_model()
    model.define(VariableDef("EVSE", "ACCurrent", "decimal", mutability="ReadWrite", unit="A", evse_id=1,
                             attributes=("Actual", "MaxSet")))
    assert setv(model, (cv("EVSE", "ACCurrent", evse=1), "16", "MaxSet"))[0][0]["attributeStatus"] == "Accepted"
    (item,) = [i for i in report_items(report(model)) if i["variable"]["name"] == "ACCurrent"]
    assert item["variableAttribute"] == [
        {"type": "Actual", "mutability": "ReadWrite", "persistent": True, "constant": False},
        {"type": "MaxSet", "value": "16", "mutability": "ReadWrite", "persistent": True, "constant": False}]
    assert get1(model, "EVSE", "ACCurrent", evse=1, attributeType="MaxSet")["attributeValue"] == "16"


def test_configuration_inventory_has_only_settable_variables_b07_fr_07():
    model, _ = shared_model("v201-first")
    assert set_1_ok(model, "SecurityCtrlr", "BasicAuthPassword", PASSWORD)
    items = report_items(report(model, "ConfigurationInventory"))
    settable = [d for d in model.definitions() if d.mutability in ("ReadWrite", "WriteOnly")]
    assert len(items) == len(settable) > 40
    assert all(a["mutability"] in ("ReadWrite", "WriteOnly") for i in items for a in i["variableAttribute"])
    (pwd,) = [i for i in items if i["variable"]["name"] == "BasicAuthPassword"]
    assert pwd["variableAttribute"] == [{"type": "Actual", "mutability": "WriteOnly", "persistent": True,
                                         "constant": False}]  # never a value
    assert PASSWORD not in json.dumps(items)


def test_summary_inventory_reports_availability_and_problems_b07_fr_09():
    model = v201_model()
    model.define(VariableDef("Connector", "Problem", "boolean", mutability="ReadOnly", default="false",
                             persistent=False, evse_id=2, connector_id=1))
    items = report_items(report(model, "SummaryInventory"))
    assert sorted(ident(i) for i in items) == [
        ("ChargingStation", "", 0, 0, "AvailabilityState", ""),
        ("EVSE", "", 1, 0, "AvailabilityState", ""),
        ("EVSE", "", 2, 0, "AvailabilityState", ""),
    ]  # connectors as their EVSE: left out
    model.set("Connector", "AvailabilityState", "Faulted", evse_id=2, connector_id=1, force=True)
    model.set("Connector", "Problem", "true", evse_id=2, connector_id=1, force=True)
    items = report_items(report(model, "SummaryInventory"))
    assert ("Connector", "", 2, 1, "AvailabilityState", "") in {ident(i) for i in items}
    assert ("Connector", "", 2, 1, "Problem", "") in {ident(i) for i in items}
    assert len(items) == 5


def test_report_is_split_by_items_per_message_b07_fr_10():
    model, _ = shared_model("16-first")
    full = report_items(report(model))
    messages = report(model, items=7, request_id=42)
    assert len(messages) == math.ceil(len(full) / 7)
    assert [m["seqNo"] for m in messages] == list(range(len(messages)))  # B07.FR.10
    assert [m["tbc"] for m in messages] == [True] * (len(messages) - 1) + [False]
    assert all(m["requestId"] == 42 for m in messages)  # B07.FR.04
    assert all(len(m["reportData"]) <= 7 for m in messages)
    assert report_items(messages) == full  # concatenation = the full report


# 900: the largest item (OCPP16Ctrlr.ConnectorPhaseRotation with its valuesList, 3 connectors) must fit
@pytest.mark.parametrize("size", [900, 1000, 2500])
def test_report_is_split_by_bytes_per_message_measured_on_the_call_frame(size):
    model, _ = shared_model("16-first")
    full = report_items(report(model))
    messages = report(model, size=size)
    assert len(messages) > 5
    for m in messages:
        # The frame as it will be sent, with the longest possible messageId, fits.
        assert len(encode(Call("x" * 36, "NotifyReport", m)).encode()) <= size
    assert report_items(messages) == full
    # Greedy packing: no message could have taken the next item.
    for m, nxt in zip(messages, messages[1:]):
        bigger = {**m, "reportData": m["reportData"] + nxt["reportData"][:1], "tbc": False}
        assert len(encode(Call("x" * 36, "NotifyReport", bigger)).encode()) > size


def test_report_fits_at_every_byte_limit():
    # A sweep over consecutive limits hits the case where the last message (tbc false, one byte longer than true)
    # is exactly at the limit.
    model = v201_model()
    full = report_items(report(model))
    for size in range(640, 840):
        messages = base_report(model, 1, "FullInventory", generated_at=GENERATED, items_per_message=50,
                               bytes_per_message=size)
        assert all(len(encode(Call("x" * 36, "NotifyReport", m)).encode()) <= size for m in messages), size
        assert report_items(messages) == full


def test_report_exactly_at_the_limit_is_one_message():
    model = v201_model()
    (single,) = report(model)
    exact = len(encode(Call("x" * 36, "NotifyReport", single)).encode())
    assert report(model, size=exact) == [single]
    split = report(model, size=exact - 1)
    assert len(split) == 2 and report_items(split) == single["reportData"]


def test_report_with_a_value_that_forces_ascii_escapes_still_fits():
    model = v201_model()
    for variable in ("ICCID", "NetworkAddress"):
        model.define(VariableDef("DataLink", variable, "string", mutability="ReadWrite"))
    # One lone surrogate makes the encoder write the whole frame with \u escapes, so the "é"s of the item next to
    # it take 6 bytes instead of 2.
    model.set("DataLink", "ICCID", "é" * 100)
    model.set("DataLink", "NetworkAddress", "bad\ud800")
    full = report_items(report(model))
    for size in range(900, 1000):
        messages = report(model, size=size)
        assert all(len(encode(Call("x" * 36, "NotifyReport", m)).encode()) <= size for m in messages)
        assert report_items(messages) == full
    # The 2.0.1 side never stores such a value: a string is UTF-8 characters (P2 §2.1.4).
    result = set1(model, "DataLink", "NetworkAddress", "CPO\ud800")
    assert result["attributeStatus"] == "Rejected" and model.get("DataLink", "NetworkAddress") == "bad\ud800"
    assert set_1_ok(model, "DataLink", "NetworkAddress", "Straße 1")


def test_report_items_and_bytes_limits_together():
    model = v201_model()
    messages = report(model, items=3, size=900)
    assert all(len(m["reportData"]) <= 3 for m in messages)
    assert all(len(encode(Call("x" * 36, "NotifyReport", m)).encode()) <= 900 for m in messages)
    assert report_items(messages) == report_items(report(model))


def test_report_entry_too_big_for_bytes_per_message_raises():
    model = v201_model()
    with pytest.raises(ValueError, match="cannot hold"):
        base_report(model, 1, "FullInventory", generated_at=GENERATED, items_per_message=10, bytes_per_message=200)
    with pytest.raises(ValueError):
        base_report(model, 1, "FullInventory", generated_at=GENERATED, items_per_message=0, bytes_per_message=9999)
    with pytest.raises(ValueError):
        base_report(model, 1, "PartialInventory", generated_at=GENERATED, items_per_message=1,
                    bytes_per_message=9999)


def test_empty_report_is_one_message_without_report_data():
    model = DeviceModel(MemoryBackend())
    model.define(VariableDef("ChargingStation", "Model", "string", mutability="ReadOnly", default="X"))
    messages = report(model, "ConfigurationInventory")
    assert messages == [{"requestId": 7, "generatedAt": GENERATED, "tbc": False, "seqNo": 0}]


def test_values_list_longer_than_the_limit_is_left_out():
    model = v201_model()
    model.set("DeviceDataCtrlr", "ConfigurationValueSize", "15", force=True)  # "LRU,LFU,FIFO,CUSTOM" is 19
    by_id = {ident(i): i for i in report_items(report(model))}
    assert "valuesList" not in by_id[("AuthCacheCtrlr", "", 0, 0, "Policy", "")]["variableCharacteristics"]
    assert by_id[("ClockCtrlr", "", 0, 0, "TimeSource", "")]["variableCharacteristics"]["valuesList"] == "Heartbeat"


# -- robustness: arbitrary (schema-valid) requests give schema-valid answers ------------------------------------------

_NAMES = st.sampled_from(["OCPPCommCtrlr", "EVSE", "Connector", "SecurityCtrlr", "TxCtrlr", "Nope", "evse"])
_VARS = st.sampled_from(["HeartbeatInterval", "AvailabilityState", "ConnectorType", "BasicAuthPassword",
                         "TxStartPoint", "MessageAttempts", "Nope", "Power"])
_ITEM = st.fixed_dictionaries(
    {"component": st.fixed_dictionaries({"name": _NAMES}, optional={
        "instance": st.sampled_from(["", "x"]),
        "evse": st.fixed_dictionaries({"id": st.integers(-1, 3)}, optional={"connectorId": st.integers(-1, 3)})}),
     "variable": st.fixed_dictionaries({"name": _VARS}, optional={"instance": st.sampled_from(["", "Default",
                                                                                               "TransactionEvent"])})},
    optional={"attributeType": st.sampled_from(["Actual", "Target", "MinSet", "MaxSet"])})
_FUZZ_MODEL = v201_model()


@settings(max_examples=150, deadline=None)
@given(items=st.lists(_ITEM, min_size=1, max_size=8),
       values=st.lists(st.text(max_size=45), min_size=8, max_size=8))
def test_any_request_gets_a_schema_valid_answer(items, values):
    results = get(_FUZZ_MODEL, *items)
    assert all(("attributeValue" in r) == (r["attributeStatus"] == "Accepted") for r in results)
    entries = []
    for item, value in zip(items, values):
        bare = {"component": item["component"], "variable": item["variable"]}
        entries.append((bare, value, item["attributeType"]) if "attributeType" in item else (bare, value))
    set_results, changed = setv(_FUZZ_MODEL, *entries)
    stored = sum(r["attributeStatus"] in ("Accepted", "RebootRequired") for r in set_results)
    assert len(changed) <= stored
    assert all(d.mutability != "ReadOnly" for d in changed)
