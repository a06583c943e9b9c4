"""Tests of the device model (2.0.1 components/variables) and its OCPP 1.6 configuration-key view.

Spec references: OCPP 1.6 edition 2 §5.3 (ChangeConfiguration), §5.8 (GetConfiguration), §9 (standard keys);
Security Whitepaper edition 3 §7 (AuthorizationKey, SecurityProfile, ...), A01.FR.12; OCPP 2.0.1 Part 2 appendices
(dm_components_vars.csv) for the mapping.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from decimal import Decimal
from pathlib import Path

import fastjsonschema
import ocpp
import pytest

from secure_cp.devicemodel import (
    MEASURANDS_16,
    Config16,
    DeviceModel,
    MemoryBackend,
    TooManyKeys,
    VariableBackend,
    VariableDef,
    VarKey,
)

ALL_PROFILES = ["Core", "FirmwareManagement", "LocalAuthListManagement", "Reservation", "SmartCharging",
                "RemoteTrigger"]
MEASURANDS = {"Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage", "SoC",
              "Temperature"}
SECRET = "00112233445566778899AABBCCDDEEFF0123ABCD"  # 20 bytes as 40 hex digits (whitepaper §7.2)

#: Accessibility per the specifications, written down independently of the implementation's table:
#: True = read-only ("R"), False = writable ("RW", or "W" for AuthorizationKey).
SPEC_READONLY = {
    # OCPP 1.6 edition 2 §9.1 Core
    "AllowOfflineTxForUnknownId": False, "AuthorizationCacheEnabled": False, "AuthorizeRemoteTxRequests": False,
    "BlinkRepeat": False, "ClockAlignedDataInterval": False, "ConnectionTimeOut": False,
    "ConnectorPhaseRotation": False, "ConnectorPhaseRotationMaxLength": True, "GetConfigurationMaxKeys": True,
    "HeartbeatInterval": False, "LightIntensity": False, "LocalAuthorizeOffline": False, "LocalPreAuthorize": False,
    "MaxEnergyOnInvalidId": False, "MeterValuesAlignedData": False, "MeterValuesAlignedDataMaxLength": True,
    "MeterValuesSampledData": False, "MeterValuesSampledDataMaxLength": True, "MeterValueSampleInterval": False,
    "MinimumStatusDuration": False, "NumberOfConnectors": True, "ResetRetries": False,
    "StopTransactionOnEVSideDisconnect": False, "StopTransactionOnInvalidId": False, "StopTxnAlignedData": False,
    "StopTxnAlignedDataMaxLength": True, "StopTxnSampledData": False, "StopTxnSampledDataMaxLength": True,
    "SupportedFeatureProfiles": True, "SupportedFeatureProfilesMaxLength": True, "TransactionMessageAttempts": False,
    "TransactionMessageRetryInterval": False, "UnlockConnectorOnEVSideDisconnect": False,
    "WebSocketPingInterval": False,
    # §9.2 Local Auth List Management
    "LocalAuthListEnabled": False, "LocalAuthListMaxLength": True, "SendLocalListMaxLength": True,
    # §9.3 Reservation
    "ReserveConnectorZeroSupported": True,
    # §9.4 Smart Charging
    "ChargeProfileMaxStackLevel": True, "ChargingScheduleAllowedChargingRateUnit": True,
    "ChargingScheduleMaxPeriods": True, "ConnectorSwitch3to1PhaseSupported": True,
    "MaxChargingProfilesInstalled": True,
    # §8 file transfer
    "SupportedFileTransferProtocols": True,
    # Security whitepaper ed. 3 §7
    "AdditionalRootCertificateCheck": True, "AuthorizationKey": False, "CertificateSignedMaxChainSize": True,
    "CertificateStoreMaxLength": True, "CpoName": False, "SecurityProfile": False,
}
CORE_ONLY_ABSENT = {"LocalAuthListEnabled", "LocalAuthListMaxLength", "SendLocalListMaxLength",
                    "ReserveConnectorZeroSupported", "ChargeProfileMaxStackLevel",
                    "ChargingScheduleAllowedChargingRateUnit", "ChargingScheduleMaxPeriods",
                    "ConnectorSwitch3to1PhaseSupported", "MaxChargingProfilesInstalled",
                    "SupportedFileTransferProtocols"}

_SCHEMAS = Path(ocpp.__file__).parent / "v16" / "schemas"
validate_get_configuration_conf = fastjsonschema.compile(
    json.loads((_SCHEMAS / "GetConfigurationResponse.json").read_text()))


class SqliteBackend:
    """A minimal real-file backend for these tests (the store package provides the production one)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS var (c TEXT, ci TEXT, e INT, k INT, v TEXT, vi TEXT, a TEXT, "
                         "value TEXT, PRIMARY KEY (c, ci, e, k, v, vi, a))")

    def load_all(self) -> dict[VarKey, str]:
        return {tuple(r[:7]): r[7] for r in self._db.execute("SELECT * FROM var")}  # type: ignore[misc]

    def put(self, key: VarKey, value: str) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO var VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (*key, value))

    def close(self) -> None:
        self._db.close()


def make(backend: VariableBackend | None = None, **kw) -> tuple[DeviceModel, Config16]:
    model = DeviceModel(backend if backend is not None else MemoryBackend())
    kw.setdefault("number_of_connectors", 2)
    kw.setdefault("supported_measurands", MEASURANDS)
    kw.setdefault("supported_profiles", ALL_PROFILES)
    return model, Config16(model, **kw)


def value_of(cfg: Config16, key: str) -> str | None:
    entries, unknown = cfg.get_configuration([key])
    assert unknown == []
    return entries[0].get("value")


# -- the 1.6 key set ---------------------------------------------------------------------------------------------

def test_every_standard_key_offered_with_spec_readonly_flag_ocpp16_s9():
    _, cfg = make()
    entries, unknown = cfg.get_configuration(None)
    assert unknown == []
    got = {e["key"]: e["readonly"] for e in entries}
    assert got == SPEC_READONLY
    assert cfg.keys() == [e["key"] for e in entries]
    validate_get_configuration_conf({"configurationKey": entries})
    # An empty key list means "all keys" too (1.6 §5.8).
    assert cfg.get_configuration([])[0] == entries


def test_core_only_station_leaves_out_other_profiles_keys_ocpp16_s9():
    _, cfg = make(supported_profiles=["Core"])
    names = set(cfg.keys())
    assert names == set(SPEC_READONLY) - CORE_ONLY_ABSENT
    assert value_of(cfg, "SupportedFeatureProfiles") == "Core"
    entries, unknown = cfg.get_configuration(["ChargeProfileMaxStackLevel", "HeartbeatInterval"])
    assert [e["key"] for e in entries] == ["HeartbeatInterval"] and unknown == ["ChargeProfileMaxStackLevel"]
    assert cfg.change_configuration("LocalAuthListEnabled", "false") == "NotSupported"


def test_supported_feature_profiles_reflects_configured_profiles_and_is_read_only():
    _, cfg = make(supported_profiles=["Core", "SmartCharging", "RemoteTrigger"])
    assert cfg.get_list("SupportedFeatureProfiles") == ["Core", "SmartCharging", "RemoteTrigger"]
    assert cfg.change_configuration("SupportedFeatureProfiles", "Core") == "Rejected"
    assert "ChargeProfileMaxStackLevel" in cfg.keys() and "LocalAuthListEnabled" not in cfg.keys()


def test_get_configuration_specific_and_unknown_keys_validates_against_schema_ocpp16_s5_8():
    _, cfg = make()
    entries, unknown = cfg.get_configuration(["heartbeatinterval", "NoSuchKey", "NumberOfConnectors", "NoSuchKey"])
    assert entries == [{"key": "HeartbeatInterval", "readonly": False, "value": "300"},
                       {"key": "NumberOfConnectors", "readonly": True, "value": "2"}]
    assert unknown == ["NoSuchKey"]
    validate_get_configuration_conf({"configurationKey": entries, "unknownKey": unknown})


def test_get_configuration_max_keys_limits_requested_keys_ocpp16_s9_1_9():
    _, cfg = make(overrides={"GetConfigurationMaxKeys": "3"})
    assert len(cfg.get_configuration(["HeartbeatInterval", "ResetRetries", "Nope"])[0]) == 2
    with pytest.raises(TooManyKeys) as exc:
        cfg.get_configuration(["HeartbeatInterval", "ResetRetries", "Nope", "LightIntensity"])
    assert exc.value.limit == 3 and exc.value.requested == 4
    assert exc.value.error_code == "OccurenceConstraintViolation"
    # The limit is on the request's key count, not on the full report.
    assert len(cfg.get_configuration(None)[0]) == len(SPEC_READONLY)


# -- ChangeConfiguration statuses -----------------------------------------------------------------------------------

def test_unknown_key_is_not_supported_ocpp16_s5_3():
    _, cfg = make()
    assert cfg.change_configuration("NoSuchKey", "1") == "NotSupported"
    assert cfg.change_configuration("", "1") == "NotSupported"


def test_keys_are_case_insensitive_cistring50():
    model, cfg = make()
    assert cfg.change_configuration("heartbeatINTERVAL", "120") == "Accepted"
    assert cfg.get_int("HeartbeatInterval") == 120


@pytest.mark.parametrize("key", sorted(k for k, ro in SPEC_READONLY.items() if ro))
def test_read_only_key_change_is_rejected_ocpp16_s5_3(key):
    _, cfg = make()
    before = value_of(cfg, key)
    assert cfg.change_configuration(key, before or "1") == "Rejected"
    assert cfg.change_configuration(key, "5") == "Rejected"
    assert value_of(cfg, key) == before


@pytest.mark.parametrize(
    "key, value",
    [
        # boolean
        ("LocalPreAuthorize", "yes"), ("LocalPreAuthorize", "1"), ("LocalPreAuthorize", ""),
        ("LocalPreAuthorize", " true"),
        # integer: decimal digits only, non-negative, int32, range
        ("HeartbeatInterval", "-1"), ("HeartbeatInterval", "1.5"), ("HeartbeatInterval", "abc"),
        ("HeartbeatInterval", ""), ("HeartbeatInterval", "+5"), ("HeartbeatInterval", "1e3"),
        ("HeartbeatInterval", "99999999999"), ("HeartbeatInterval", " 5"),
        ("WebSocketPingInterval", "-10"),  # §9.1.34: negative values not allowed -> REJECTED
        ("LightIntensity", "101"), ("SecurityProfile", "4"), ("TransactionMessageAttempts", "-3"),
        # CSL of measurands (§9.1.15/17/25/27)
        ("MeterValuesSampledData", "Energy.Active.Import.Registe"),
        ("MeterValuesSampledData", "Power.Reactive.Import"),  # a 1.6 measurand the station cannot measure
        ("MeterValuesSampledData", "Voltage.L4"), ("MeterValuesSampledData", "SoC.L1"),
        ("MeterValuesSampledData", "Voltage,,SoC"), ("MeterValuesSampledData", "Voltage,Voltage"),
        ("StopTxnSampledData", "energy.active.import.register"),
        ("MeterValuesAlignedData", "Energy.Active.Import.Register;Voltage"),
        # ConnectorPhaseRotation (§9.1.7) with 2 connectors
        ("ConnectorPhaseRotation", "3.RST"), ("ConnectorPhaseRotation", "1.XYZ"),
        ("ConnectorPhaseRotation", "RST"), ("ConnectorPhaseRotation", "1.RST,1.RTS"),
        ("ConnectorPhaseRotation", "1.rst"),
        # strings
        ("CpoName", "x" * 65), ("CpoName", ""), ("CpoName", "a" * 501),
        # AuthorizationKey: 16..20 bytes as hex digits (whitepaper §7.2)
        ("AuthorizationKey", "0011223344556677"), ("AuthorizationKey", "not-hex-not-hex-not-hex-not-hex!!"),
        ("AuthorizationKey", SECRET + "00"), ("AuthorizationKey", SECRET[:-1]),
    ],
)
def test_bad_values_are_rejected_and_leave_value_unchanged_ocpp16_s5_3(key, value):
    model, cfg = make()
    before = cfg.get_str(key)
    assert cfg.change_configuration(key, value) == "Rejected"
    assert cfg.get_str(key) == before


def test_values_longer_than_cistring500_are_rejected():
    _, cfg = make(supported_measurands=set(MEASURANDS_16), overrides={"MeterValuesSampledDataMaxLength": "100"})
    long_csl = ",".join(MEASURANDS_16) + ",Voltage.L1,Voltage.L2,Voltage.L3,Current.Import.L1,Current.Import.L2"
    assert len(long_csl) > 500 and len(long_csl.split(",")) <= 100
    assert cfg.change_configuration("MeterValuesSampledData", long_csl) == "Rejected"
    short = ",".join(MEASURANDS_16[:5])
    assert cfg.change_configuration("MeterValuesSampledData", short) == "Accepted"


def test_good_values_are_accepted_and_normalized():
    model, cfg = make()
    assert cfg.change_configuration("LocalPreAuthorize", "TRUE") == "Accepted"
    assert value_of(cfg, "LocalPreAuthorize") == "true" and cfg.get_bool("LocalPreAuthorize") is True
    assert cfg.change_configuration("ConnectionTimeOut", "007") == "Accepted"
    assert cfg.get_int("ConnectionTimeOut") == 7
    assert cfg.change_configuration("MeterValuesSampledData", "Voltage.L1 , Current.Import.L2,SoC") == "Accepted"
    assert cfg.get_list("MeterValuesSampledData") == ["Voltage.L1", "Current.Import.L2", "SoC"]
    assert cfg.change_configuration("StopTxnSampledData", "") == "Accepted"
    assert cfg.get_list("StopTxnSampledData") == []
    assert cfg.change_configuration("ConnectorPhaseRotation", "0.RST, 1.RST, 2.RTS") == "Accepted"
    assert cfg.get_list("ConnectorPhaseRotation") == ["0.RST", "1.RST", "2.RTS"]
    assert cfg.change_configuration("ConnectorPhaseRotation", "1.NotApplicable,2.Unknown") == "Accepted"
    assert cfg.change_configuration("LightIntensity", "100") == "Accepted"
    assert cfg.change_configuration("CpoName", "Example CPO B.V.") == "Accepted"
    assert cfg.get_str("CpoName") == "Example CPO B.V."
    assert cfg.change_configuration("WebSocketPingInterval", "0") == "RebootRequired"  # 0 disables pings


def test_csl_is_bounded_by_its_max_length_key_ocpp16_s5_3():
    _, cfg = make(overrides={"MeterValuesSampledDataMaxLength": "2"})
    assert cfg.change_configuration("MeterValuesSampledData", "Voltage,SoC") == "Accepted"
    assert cfg.change_configuration("MeterValuesSampledData", "Voltage,SoC,Temperature") == "Rejected"
    assert cfg.get_list("MeterValuesSampledData") == ["Voltage", "SoC"]
    # The bound also holds for a 2.0.1 write of the same variable.
    assert cfg._model.set("SampledDataCtrlr", "TxUpdatedMeasurands", "Voltage,SoC,Temperature") == "Rejected"


def test_csl_without_max_length_key_is_limited_to_one_item_ocpp16_s5_3():
    _, cfg = make(exclude_keys={"StopTxnSampledDataMaxLength"})
    assert "StopTxnSampledDataMaxLength" not in cfg.keys()
    assert cfg.change_configuration("StopTxnSampledData", "Voltage") == "Accepted"
    assert cfg.change_configuration("StopTxnSampledData", "Voltage,SoC") == "Rejected"


def test_reboot_required_for_websocket_ping_interval_only_by_default():
    _, cfg = make()
    assert cfg.change_configuration("WebSocketPingInterval", "30") == "RebootRequired"
    assert cfg.get_int("WebSocketPingInterval") == 30  # stored although not yet effective
    assert cfg.change_configuration("HeartbeatInterval", "30") == "Accepted"
    _, live = make(reboot_required_keys=())
    assert live.change_configuration("WebSocketPingInterval", "30") == "Accepted"


# -- security whitepaper keys --------------------------------------------------------------------------------------

def test_authorization_key_is_write_only_and_never_reported_swp_7_2(caplog):
    model, cfg = make()
    caplog.set_level(logging.DEBUG)
    assert cfg.change_configuration("AuthorizationKey", SECRET) == "Accepted"
    for entries in (cfg.get_configuration(None)[0], cfg.get_configuration(["AuthorizationKey"])[0]):
        ak = [e for e in entries if e["key"] == "AuthorizationKey"]
        assert ak == [{"key": "AuthorizationKey", "readonly": False}]
        assert SECRET not in json.dumps(entries)
    # Internal users (the transport) get it; the 2.0.1 variable is WriteOnly.
    assert cfg.get_str("AuthorizationKey") == SECRET
    assert model.get("SecurityCtrlr", "BasicAuthPassword") == SECRET
    assert model.definition("SecurityCtrlr", "BasicAuthPassword").mutability == "WriteOnly"
    # A01.FR.12: never disclosed in logging, not even in error messages.
    with pytest.raises(ValueError) as exc:
        cfg.set_internal("AuthorizationKey", "short-" + SECRET[:4])
    assert SECRET[:4] not in str(exc.value)
    assert SECRET not in caplog.text


def test_authorization_key_change_notifies_subscriber_with_new_value():
    model, cfg = make()
    seen: list[tuple[str, str]] = []
    model.subscribe(lambda d, v: seen.append((d.variable, v)))
    assert cfg.change_configuration("AuthorizationKey", SECRET.lower()) == "Accepted"
    assert seen == [("BasicAuthPassword", SECRET.lower())]


def test_security_profile_can_only_be_increased_swp_7_6():
    model, cfg = make(overrides={"SecurityProfile": "1"})
    assert cfg.get_int("SecurityProfile") == 1
    assert cfg.change_configuration("SecurityProfile", "0") == "Rejected"
    assert cfg.change_configuration("SecurityProfile", "1") == "Accepted"
    assert cfg.change_configuration("SecurityProfile", "2") == "Accepted"
    assert cfg.change_configuration("SecurityProfile", "1") == "Rejected"
    assert cfg.get_int("SecurityProfile") == 2
    # ReadOnly on the 2.0.1 side (changed there through network profiles).
    assert model.set("SecurityCtrlr", "SecurityProfile", "3") == "Rejected"
    # Lowering is allowed through means other than OCPP (A00.FR.005), e.g. local station configuration.
    cfg.set_internal("SecurityProfile", "1")
    assert cfg.get_int("SecurityProfile") == 1


def test_security_profile_prerequisite_check_swp_7_6():
    ready = {"3": False}
    _, cfg = make(checks={"SecurityProfile": lambda v: ready.get(v, True)})
    assert cfg.change_configuration("SecurityProfile", "3") == "Rejected"
    assert cfg.get_int("SecurityProfile") == 0
    ready["3"] = True
    assert cfg.change_configuration("SecurityProfile", "3") == "Accepted"


# -- one store, two views ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "key, var",
    [
        ("HeartbeatInterval", ("OCPPCommCtrlr", "HeartbeatInterval", "")),
        ("MeterValueSampleInterval", ("SampledDataCtrlr", "TxUpdatedInterval", "")),
        ("MeterValuesSampledData", ("SampledDataCtrlr", "TxUpdatedMeasurands", "")),
        ("StopTxnSampledData", ("SampledDataCtrlr", "TxEndedMeasurands", "")),
        ("MeterValuesAlignedData", ("AlignedDataCtrlr", "Measurands", "")),
        ("StopTxnAlignedData", ("AlignedDataCtrlr", "TxEndedMeasurands", "")),
        ("ClockAlignedDataInterval", ("AlignedDataCtrlr", "Interval", "")),
        ("AuthorizationCacheEnabled", ("AuthCacheCtrlr", "Enabled", "")),
        ("LocalAuthorizeOffline", ("AuthCtrlr", "LocalAuthorizeOffline", "")),
        ("LocalPreAuthorize", ("AuthCtrlr", "LocalPreAuthorize", "")),
        ("AuthorizeRemoteTxRequests", ("AuthCtrlr", "AuthorizeRemoteStart", "")),
        ("AllowOfflineTxForUnknownId", ("AuthCtrlr", "OfflineTxForUnknownIdEnabled", "")),
        ("TransactionMessageAttempts", ("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent")),
        ("TransactionMessageRetryInterval", ("OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent")),
        ("ConnectionTimeOut", ("TxCtrlr", "EVConnectionTimeOut", "")),
        ("StopTransactionOnEVSideDisconnect", ("TxCtrlr", "StopTxOnEVSideDisconnect", "")),
        ("StopTransactionOnInvalidId", ("TxCtrlr", "StopTxOnInvalidId", "")),
        ("UnlockConnectorOnEVSideDisconnect", ("OCPPCommCtrlr", "UnlockOnEVSideDisconnect", "")),
        ("WebSocketPingInterval", ("OCPPCommCtrlr", "WebSocketPingInterval", "")),
        ("ResetRetries", ("OCPPCommCtrlr", "ResetRetries", "")),
        ("LocalAuthListEnabled", ("LocalAuthListCtrlr", "Enabled", "")),
        ("AuthorizationKey", ("SecurityCtrlr", "BasicAuthPassword", "")),
        ("CpoName", ("SecurityCtrlr", "OrganizationName", "")),
        ("SecurityProfile", ("SecurityCtrlr", "SecurityProfile", "")),
        ("BlinkRepeat", ("OCPP16Ctrlr", "BlinkRepeat", "")),
    ],
)
def test_var_for_maps_to_the_201_variable_of_the_same_concept(key, var):
    assert Config16.var_for(key) == var
    assert Config16.key_for(*var) == key


def test_16_change_and_201_variable_are_one_stored_value():
    model, cfg = make()
    assert cfg.change_configuration("MeterValueSampleInterval", "30") == "Accepted"
    assert model.get("SampledDataCtrlr", "TxUpdatedInterval") == "30"
    assert cfg.change_configuration("TransactionMessageAttempts", "5") == "Accepted"
    assert model.get("OCPPCommCtrlr", "MessageAttempts", variable_instance="TransactionEvent") == "5"
    # ... and the other way round: a 2.0.1 SetVariables is seen by 1.6 GetConfiguration.
    assert model.set("OCPPCommCtrlr", "HeartbeatInterval", "120") == "Accepted"
    assert value_of(cfg, "HeartbeatInterval") == "120"
    assert model.set("authcachectrlr", "enabled", "false") == "Accepted"  # 2.0.1 names are case-insensitive
    assert cfg.get_bool("AuthorizationCacheEnabled") is False
    # The 2.0.1 side validates with the same rules (unknown measurand).
    assert model.set("SampledDataCtrlr", "TxUpdatedMeasurands", "Voltage,Bogus") == "Rejected"


def test_rate_unit_is_stored_in_201_form_and_shown_in_16_form():
    model, cfg = make()
    assert model.get("SmartChargingCtrlr", "RateUnit") == "A,W"
    assert value_of(cfg, "ChargingScheduleAllowedChargingRateUnit") == "Current,Power"
    _, cur_only = make(overrides={"ChargingScheduleAllowedChargingRateUnit": "Current"})
    assert cur_only.get_list("ChargingScheduleAllowedChargingRateUnit") == ["Current"]


# -- persistence ---------------------------------------------------------------------------------------------------

def test_values_persist_and_a_new_model_sees_them(tmp_path):
    db = tmp_path / "config.sqlite"
    backend = SqliteBackend(db)
    _, cfg = make(backend)
    assert cfg.change_configuration("HeartbeatInterval", "42") == "Accepted"
    assert cfg.change_configuration("MeterValuesSampledData", "Voltage,SoC") == "Accepted"
    assert cfg.change_configuration("AuthorizationKey", SECRET) == "Accepted"
    backend.close()

    backend2 = SqliteBackend(db)
    # Station configuration defaults for RW keys do not override what the CSMS stored.
    _, cfg2 = make(backend2, overrides={"HeartbeatInterval": "900"})
    assert cfg2.get_int("HeartbeatInterval") == 42
    assert cfg2.get_list("MeterValuesSampledData") == ["Voltage", "SoC"]
    assert cfg2.get_str("AuthorizationKey") == SECRET
    assert cfg2.get_int("ClockAlignedDataInterval") == 0  # never set: default
    backend2.close()


def test_read_only_station_values_are_reasserted_from_configuration():
    backend = MemoryBackend()
    _, cfg = make(backend, number_of_connectors=2)
    assert cfg.get_int("NumberOfConnectors") == 2
    _, cfg2 = make(backend, number_of_connectors=3, overrides={"GetConfigurationMaxKeys": "10"})
    assert cfg2.get_int("NumberOfConnectors") == 3
    assert cfg2.get_int("GetConfigurationMaxKeys") == 10
    assert cfg2.change_configuration("ConnectorPhaseRotation", "3.RST") == "Accepted"
    puts = backend.puts
    make(backend, number_of_connectors=3, overrides={"GetConfigurationMaxKeys": "10"})
    assert backend.puts == puts  # nothing changed: no writes at start-up


def test_set_internal_writes_read_only_key_and_validates():
    _, cfg = make()
    cfg.set_internal("NumberOfConnectors", "4")
    assert cfg.get_int("NumberOfConnectors") == 4
    with pytest.raises(ValueError):
        cfg.set_internal("NumberOfConnectors", "four")
    with pytest.raises(KeyError):
        cfg.set_internal("NoSuchKey", "1")


def test_constructor_rejects_bad_station_configuration():
    with pytest.raises(ValueError):
        make(overrides={"NoSuchKey": "1"})
    with pytest.raises(ValueError):
        make(supported_profiles=["Core"], overrides={"ChargeProfileMaxStackLevel": "3"})
    with pytest.raises(ValueError):
        make(overrides={"HeartbeatInterval": "-5"})
    with pytest.raises(ValueError):
        make(overrides={"NumberOfConnectors": "7"})
    with pytest.raises(ValueError):
        make(supported_measurands={"Energy.Active.Import.Register", "Humidity"})
    with pytest.raises(ValueError):
        make(supported_profiles=["SmartCharging"])  # Core is always implemented
    with pytest.raises(ValueError):
        make(exclude_keys={"HeartbeatInterval"})  # required key
    _, cfg = make(exclude_keys={"BlinkRepeat", "LightIntensity"})  # a station without lights
    assert cfg.change_configuration("BlinkRepeat", "2") == "NotSupported"


def test_typed_getters():
    _, cfg = make()
    assert cfg.get_int("HeartbeatInterval") == 300
    assert cfg.get_bool("StopTransactionOnInvalidId") is True
    assert cfg.get_str("CpoName") == ""
    assert cfg.get_list("SupportedFeatureProfiles") == ALL_PROFILES
    with pytest.raises(KeyError):
        cfg.get_int("NoSuchKey")
    with pytest.raises(ValueError):
        cfg.get_int("SupportedFeatureProfiles")


# -- DeviceModel on its own ----------------------------------------------------------------------------------------

def _model_with(*defs: VariableDef, backend: MemoryBackend | None = None) -> DeviceModel:
    m = DeviceModel(backend or MemoryBackend())
    for d in defs:
        m.define(d)
    return m


def test_device_model_set_statuses_201():
    m = _model_with(
        VariableDef("ClockCtrlr", "DateTime", "dateTime", mutability="ReadOnly", persistent=False),
        VariableDef("EVSE", "Power", "decimal", evse_id=1, min=Decimal("0"), max=Decimal("22000.5"),
                    attributes=("Actual", "MaxSet")),
    )
    assert m.set("NoSuchCtrlr", "X", "1") == "UnknownComponent"
    assert m.set("EVSE", "Power", "1") == "UnknownComponent"  # EVSE component exists only with evse_id=1
    assert m.set("ClockCtrlr", "Nope", "1") == "UnknownVariable"
    assert m.set("ClockCtrlr", "DateTime", "2024-01-01T00:00:00Z", attribute="Target") == \
        "NotSupportedAttributeType"
    assert m.set("ClockCtrlr", "DateTime", "2024-01-01T00:00:00Z") == "Rejected"  # ReadOnly
    assert m.set("ClockCtrlr", "DateTime", "2024-01-01T00:00:00Z", force=True) == "Accepted"
    assert m.set("ClockCtrlr", "DateTime", "yesterday", force=True) == "Rejected"
    assert m.set("EVSE", "Power", "11000.25", evse_id=1, attribute="MaxSet") == "Accepted"
    assert m.get("EVSE", "Power", evse_id=1, attribute="MaxSet") == "11000.25"
    assert m.get("EVSE", "Power", evse_id=1) is None  # Actual never set, no default
    assert m.set("EVSE", "Power", "22000.6", evse_id=1) == "Rejected"
    assert m.set("EVSE", "Power", "-1", evse_id=1) == "Rejected"
    assert m.set("EVSE", "Power", "1,5", evse_id=1) == "Rejected"


def test_device_model_list_and_option_types_201():
    m = _model_with(
        VariableDef("TxCtrlr", "TxStartPoint", "MemberList",
                    values_list=("EVConnected", "Authorized", "PowerPathClosed"), max_length=2, default="EVConnected"),
        VariableDef("ClockCtrlr", "TimeSource", "SequenceList", values_list=("NTP", "GPS", "Heartbeat"),
                    default="Heartbeat"),
        VariableDef("AuthCacheCtrlr", "Policy", "OptionList", values_list=("LRU", "LFU")),
        VariableDef("ChargingStation", "Model", "string", max_length=5),
    )
    assert m.set("TxCtrlr", "TxStartPoint", "Authorized, EVConnected") == "Accepted"
    assert m.get("TxCtrlr", "TxStartPoint") == "Authorized,EVConnected"
    assert m.set("TxCtrlr", "TxStartPoint", "Authorized,Authorized") == "Rejected"
    assert m.set("TxCtrlr", "TxStartPoint", "Authorized,EVConnected,PowerPathClosed") == "Rejected"
    assert m.set("TxCtrlr", "TxStartPoint", "ParkingBayOccupancy") == "Rejected"
    assert m.set("ClockCtrlr", "TimeSource", "NTP,Heartbeat,NTP") == "Accepted"  # ordered, repeats allowed
    assert m.set("AuthCacheCtrlr", "Policy", "LRU") == "Accepted"
    assert m.set("AuthCacheCtrlr", "Policy", "LRU,LFU") == "Rejected"
    assert m.set("ChargingStation", "Model", "ABCDE") == "Accepted"
    assert m.set("ChargingStation", "Model", "ABCDEF") == "Rejected"
    assert m.set("ChargingStation", "Model", "x" * 1001) == "Rejected"


def test_device_model_stored_value_wins_over_default_and_invalid_stored_falls_back():
    backend = MemoryBackend()
    d = VariableDef("OCPPCommCtrlr", "HeartbeatInterval", "integer", min=0, default="300")
    m = _model_with(d, backend=backend)
    assert m.set("OCPPCommCtrlr", "HeartbeatInterval", "60") == "Accepted"
    assert _model_with(d, backend=backend).get("OCPPCommCtrlr", "HeartbeatInterval") == "60"
    stricter = VariableDef("OCPPCommCtrlr", "HeartbeatInterval", "integer", min=100, default="300")
    assert _model_with(stricter, backend=backend).get("OCPPCommCtrlr", "HeartbeatInterval") == "300"
    with pytest.raises(ValueError):
        _model_with(VariableDef("X", "Y", "integer", default="abc"))


def test_device_model_non_persistent_values_are_not_written():
    backend = MemoryBackend()
    m = _model_with(VariableDef("ChargingStation", "AvailabilityState", "OptionList",
                                values_list=("Available", "Unavailable"), persistent=False), backend=backend)
    assert m.set("ChargingStation", "AvailabilityState", "Unavailable") == "Accepted"
    assert m.get("ChargingStation", "AvailabilityState") == "Unavailable"
    assert backend.data == {}


class FailingBackend(MemoryBackend):
    def put(self, key: VarKey, value: str) -> None:
        raise OSError("disk full")


def test_device_model_value_not_visible_when_persisting_fails():
    m = _model_with(VariableDef("OCPPCommCtrlr", "HeartbeatInterval", "integer", default="300"),
                    backend=FailingBackend())
    seen: list[str] = []
    m.subscribe(lambda d, v: seen.append(v))
    with pytest.raises(OSError):
        m.set("OCPPCommCtrlr", "HeartbeatInterval", "60")
    assert m.get("OCPPCommCtrlr", "HeartbeatInterval") == "300"
    assert seen == []


def test_subscribe_fires_after_accepted_changes_only():
    model, cfg = make()
    seen: list[tuple[str, str, str]] = []
    model.subscribe(lambda d, v: seen.append((d.component, d.variable, v)))
    assert cfg.change_configuration("HeartbeatInterval", "abc") == "Rejected"
    assert cfg.change_configuration("NumberOfConnectors", "3") == "Rejected"
    assert seen == []
    assert cfg.change_configuration("HeartbeatInterval", "77") == "Accepted"
    assert cfg.change_configuration("WebSocketPingInterval", "15") == "RebootRequired"
    assert seen == [("OCPPCommCtrlr", "HeartbeatInterval", "77"), ("OCPPCommCtrlr", "WebSocketPingInterval", "15")]


def test_a_failing_subscriber_does_not_undo_or_hide_the_change():
    model, cfg = make()
    seen: list[str] = []

    def broken(d, v):
        raise RuntimeError("listener bug")

    model.subscribe(broken)
    model.subscribe(lambda d, v: seen.append(v))
    assert cfg.change_configuration("HeartbeatInterval", "61") == "Accepted"
    assert cfg.get_int("HeartbeatInterval") == 61 and seen == ["61"]


def test_memory_backend_satisfies_protocol():
    assert isinstance(MemoryBackend(), VariableBackend)
    assert isinstance(SqliteBackend.__new__(SqliteBackend), VariableBackend)
