"""The OCPP 2.0.1 components and variables of this station, defined on the shared ``DeviceModel``.

``define_v201`` registers what the 2.0.1 Core certification profile needs (Part 2 "Referenced Components and
Variables" §2.1-§2.13, Part 4 §8) plus the controllers of the blocks this station implements: the station itself
(ChargingStation), each EVSE and Connector on its own tier, and the controllers OCPPCommCtrlr, DeviceDataCtrlr,
AuthCtrlr, AuthCacheCtrlr, LocalAuthListCtrlr, TxCtrlr, SampledDataCtrlr, AlignedDataCtrlr, ClockCtrlr,
SecurityCtrlr, ReservationCtrlr and SmartChargingCtrlr.

Sources, cited per group below: "P2 §x.y" = OCPP 2.0.1 edition 3 Part 2, chapter "Referenced Components and
Variables" (mutability, dataType, unit, limits, values lists); "P4 §8.x" = Part 4 (WebSocket variables); "CSV" = the
row ``Component;Variable;Instance`` of Appendices_CSV_v1.4/dm_components_vars.csv (dataType and unit where Part 2 has
no table). Where Part 2 and the CSV disagree, Part 2 wins (it is the normative text; the CSV summarises):
NetworkConfigurationPriority is a SequenceList (P2 §2.1.6; CSV says string) and AuthCacheCtrlr.LifeTime has unit s
(P2 §2.4.3).

Sharing with OCPP 1.6 (``keys16.Config16``): both views put their definitions on the same model, so a value written
through one is read through the other. A variable is defined once: whoever comes first defines it, except that
``Config16`` always re-defines the variables it maps (its definitions carry the 1.6 constraints, e.g. the
``*MaxLength`` bounds and the CiString500 limit). ``define_v201`` therefore leaves an existing definition alone and
only checks that it agrees on dataType and mutability (ValueError otherwise). The defaults of shared variables here
equal the 1.6 defaults, so the result is the same whichever is called first.

Read-only variables that describe the station (Model, VendorName, limits, ...) are re-asserted at every start, as
``Config16`` does for its read-only keys: a value stored by an older software version must not outlive the change.
Read-only values the station changes at run time (counts, AvailabilityState, DateTime, Power) are not persistent and
are set by the engine with ``DeviceModel.set(..., force=True)``; SecurityProfile is persistent and changed at run
time (``RUNTIME_READONLY``), so it is neither re-asserted nor reported as constant.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

from .keys16 import FILE_TRANSFER_PROTOCOLS_16, MEASURANDS_16
from .model import DeviceModel, VariableDef, normalize

__all__ = [
    "MEASURANDS_201",
    "CONNECTOR_TYPES_201",
    "AVAILABILITY_STATES",
    "TX_START_POINTS",
    "TX_STOP_POINTS",
    "TIME_SOURCES",
    "RUNTIME_READONLY",
    "STATION_INFO_KEYS",
    "define_v201",
    "v201_definitions",
    "is_constant",
]

#: MeasurandEnumType of OCPP 2.0.1 (Part 2 §3.50; spelled as in the official MeterValuesRequest schema).
MEASURANDS_201 = (
    "Current.Export",
    "Current.Import",
    "Current.Offered",
    "Energy.Active.Export.Register",
    "Energy.Active.Import.Register",
    "Energy.Reactive.Export.Register",
    "Energy.Reactive.Import.Register",
    "Energy.Active.Export.Interval",
    "Energy.Active.Import.Interval",
    "Energy.Active.Net",
    "Energy.Reactive.Export.Interval",
    "Energy.Reactive.Import.Interval",
    "Energy.Reactive.Net",
    "Energy.Apparent.Net",
    "Energy.Apparent.Import",
    "Energy.Apparent.Export",
    "Frequency",
    "Power.Active.Export",
    "Power.Active.Import",
    "Power.Factor",
    "Power.Offered",
    "Power.Reactive.Export",
    "Power.Reactive.Import",
    "SoC",
    "Voltage",
)
#: Connector.ConnectorType values: ConnectorEnumType (Part 2 §3.22) "plus additionally: cGBT, cChaoJi, OppCharge"
#: (P2 §2.13.4).
CONNECTOR_TYPES_201 = (
    "cCCS1", "cCCS2", "cG105", "cTesla", "cType1", "cType2", "s309-1P-16A", "s309-1P-32A", "s309-3P-16A",
    "s309-3P-32A", "sBS1361", "sCEE-7-7", "sType2", "sType3", "Other1PhMax16A", "Other1PhOver16A", "Other3Ph", "Pan",
    "wInductive", "wResonant", "Undetermined", "Unknown", "cGBT", "cChaoJi", "OppCharge",
)
#: AvailabilityState valuesList (P2 §2.13.2).
AVAILABILITY_STATES = ("Available", "Occupied", "Reserved", "Unavailable", "Faulted")
#: TxStartPoint values (P2 §2.6.6.1).
TX_START_POINTS = ("ParkingBayOccupancy", "EVConnected", "Authorized", "DataSigned", "PowerPathClosed",
                   "EnergyTransfer")
#: TxStopPoint values (P2 §2.6.6.2): the same list without DataSigned, which "has no meaning as a TxStopPoint and
#: should not be used as such" - offering it would invite a configuration that never ends a transaction.
TX_STOP_POINTS = tuple(p for p in TX_START_POINTS if p != "DataSigned")
#: ClockCtrlr.TimeSource possible values (P2 §2.1.30); a station offers those it implements.
TIME_SOURCES = ("Heartbeat", "NTP", "GPS", "RealTimeClock", "MobileNetwork", "RadioTimeTransmitter")
#: (component, variable), casefolded: ReadOnly for the CSMS, persistent, but changed by the station at run time.
RUNTIME_READONLY = frozenset({("securityctrlr", "securityprofile")})

#: The ``station_info`` keys ``define_v201`` understands (others raise ValueError, to catch typos).
#: vendor, model (required): as sent in BootNotification (chargingStation.vendorName string[50], model string[20]).
STATION_INFO_KEYS = frozenset({
    "vendor", "model", "serial", "firmware_version", "meter_type", "meter_serial",  # as runtime._station_info
    "identity",               # SecurityCtrlr.Identity (identifierString, max 48, no ':')
    "supply_phases",          # 0 (DC), 1 or 3; default 3
    "evse_power_w",           # EVSE.Power maxLimit in W: a number, or {evse_id: number}; default 22000
    "connector_type",         # a CONNECTOR_TYPES_201 value, or {(evse_id, connector_id): value}; default sType2
    "time_sources",           # implemented TIME_SOURCES, in default priority order; default ("Heartbeat",)
    "network_profile_slots",  # number of NetworkConnectionProfile slots (1..n); default 2
    "message_timeout",        # OCPPCommCtrlr.MessageTimeout[Default] in s; default 30
    "max_certificates",       # SecurityCtrlr.CertificateEntries maxLimit; default 20
    "local_auth_list_max",    # LocalAuthListCtrlr.Entries maxLimit; default 1000
    "auth_cache_max_bytes",   # AuthCacheCtrlr.Storage maxLimit; default 1000000
    "signed_meter_values",    # SignReadings exists only if true (P2 §2.7.3); default False
    "reservation",            # ReservationCtrlr.Available; default True
    "local_auth_list",        # LocalAuthListCtrlr.Available; default True
    "auth_cache",             # AuthCacheCtrlr.Available; default True
    "smart_charging",         # SmartChargingCtrlr.Available; default False
})

_RO, _RW, _WO = "ReadOnly", "ReadWrite", "WriteOnly"
#: passwordString (Part 2 §2.1.4): a-z, A-Z, 0-9 and * - _ = : + | @ .
_PASSWORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789*-_=:+|@.")
#: Identity: identifierString without ':' (P2 §2.2.2: the identity is the Basic-auth user name).
_IDENTITY_CHARS = _PASSWORD_CHARS - {":"}
#: RFC 5280 ub-organization-name: OrganizationName goes into the O RDN of the CSR (A00.FR.509 via P2 §2.2.3).
_ORG_NAME_MAX = 64
#: DeviceDataCtrlr sizes: SetVariableData.attributeValue is string[1000], GetVariableResult.attributeValue and
#: VariableAttribute.value are string[2500] (official schemas; P2 §2.1.20 maxLimit 1000, §2.1.21 maxLimit 2500).
VALUE_SIZE = 1000
REPORTING_VALUE_SIZE = 2500
#: Default size limit of incoming GetReport/GetVariables/SetVariables/SendLocalList messages, far below the
#: transport's 1 MiB frame limit: 100 GetVariableData of the largest legal shape (about 300 bytes each without
#: customData) fit twice over; 100 SetVariableData of 1000-character values do not, and the CSMS learns so here.
_BYTES_PER_MESSAGE = 65536
_ITEMS_PER_MESSAGE = 100


def _password_ok(value: str, _current: str | None) -> bool:
    """BasicAuthPassword: passwordString of 16..40 characters (P2 §2.2.1)."""
    return 16 <= len(value) <= 40 and all(c in _PASSWORD_CHARS for c in value)


def _org_name_ok(value: str, _current: str | None) -> bool:
    return 1 <= len(value) <= _ORG_NAME_MAX and value.isprintable()


def _not_enabled_unless(available: bool):
    """Enabled of a feature this station does not have: only "false" is a truthful value ("Available cannot be
    false if Enabled is true", CSV <generic>;Enabled)."""
    return lambda value, _current: available or value == "false"


def _d(component: str, variable: str, data_type: str, mutability: str, default: str | None = None,
       **kw: Any) -> VariableDef:
    return VariableDef(component=component, variable=variable, data_type=data_type, mutability=mutability,
                       default=default, **kw)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _check_station_info(info: Mapping[str, Any]) -> None:
    unknown = set(info) - STATION_INFO_KEYS
    if unknown:
        raise ValueError(f"station_info: unknown keys {sorted(unknown)}")
    for key, limit in (("vendor", 50), ("model", 20)):
        value = info.get(key)
        if not isinstance(value, str) or not (1 <= len(value) <= limit):
            raise ValueError(f"station_info[{key!r}]: a string of 1..{limit} characters is required")
    serial = info.get("serial", "")
    if not isinstance(serial, str) or len(serial) > 25:
        raise ValueError("station_info['serial']: a string of at most 25 characters")
    identity = info.get("identity")
    if identity is not None and (not isinstance(identity, str) or not (1 <= len(identity) <= 48)
                                 or any(c not in _IDENTITY_CHARS for c in identity)):
        raise ValueError("station_info['identity']: an identifierString of 1..48 characters without ':'")
    if info.get("supply_phases", 3) not in (0, 1, 3) or isinstance(info.get("supply_phases"), bool):
        raise ValueError("station_info['supply_phases']: 0 (DC), 1 or 3")
    for key in ("network_profile_slots", "message_timeout", "max_certificates", "local_auth_list_max",
                "auth_cache_max_bytes"):
        value = info.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or not (1 <= value <= 2**31 - 1):
            raise ValueError(f"station_info[{key!r}]: a positive integer")
    sources = info.get("time_sources", ("Heartbeat",))
    if (isinstance(sources, str) or not sources or any(s not in TIME_SOURCES for s in sources)
            or len(set(sources)) != len(sources)):
        raise ValueError(f"station_info['time_sources']: distinct values of {TIME_SOURCES}")
    for key in ("signed_meter_values", "reservation", "local_auth_list", "auth_cache", "smart_charging"):
        if key in info and not isinstance(info[key], bool):
            raise ValueError(f"station_info[{key!r}]: a boolean")


def _power(info: Mapping[str, Any], evse_id: int) -> Decimal:
    raw = info.get("evse_power_w", 22000)
    if isinstance(raw, Mapping):
        if evse_id not in raw:
            raise ValueError(f"station_info['evse_power_w']: no value for EVSE {evse_id}")
        raw = raw[evse_id]
    if isinstance(raw, bool) or not isinstance(raw, (int, float, Decimal)):
        raise ValueError("station_info['evse_power_w']: a number of watts")
    value = Decimal(str(raw))
    if not value.is_finite() or value <= 0:
        raise ValueError("station_info['evse_power_w']: a positive number of watts")
    return value


def _connector_type(info: Mapping[str, Any], evse_id: int, connector_id: int) -> str:
    raw = info.get("connector_type", "sType2")
    if isinstance(raw, Mapping):
        raw = raw.get((evse_id, connector_id))
    if raw not in CONNECTOR_TYPES_201:
        raise ValueError(f"station_info['connector_type'] for EVSE {evse_id} connector {connector_id}: one of "
                         f"{CONNECTOR_TYPES_201}")
    return raw


def v201_definitions(*, evses: Mapping[int, int], supported_measurands: set[str] | frozenset[str],
                     station_info: Mapping[str, Any]) -> list[VariableDef]:
    """Every definition ``define_v201`` would make, in order (pure: raises ValueError on bad arguments)."""
    if not evses:
        raise ValueError("evses: at least one EVSE")
    for evse_id, n in evses.items():
        if (not isinstance(evse_id, int) or isinstance(evse_id, bool) or evse_id < 1
                or not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise ValueError("evses: {evse id >= 1: number of connectors >= 1}")
    unknown = set(supported_measurands) - set(MEASURANDS_201) - set(MEASURANDS_16)
    if unknown:
        raise ValueError(f"supported_measurands: not OCPP measurands: {sorted(unknown)}")
    _check_station_info(station_info)
    info = station_info
    phases = str(info.get("supply_phases", 3))
    measurands = tuple(m for m in MEASURANDS_201 if m in supported_measurands)
    energy = "Energy.Active.Import.Register" if "Energy.Active.Import.Register" in measurands else ""
    signed = info.get("signed_meter_values", False)
    sources = tuple(info.get("time_sources", ("Heartbeat",)))
    slots = tuple(str(i) for i in range(1, info.get("network_profile_slots", 2) + 1))
    has_reservation = info.get("reservation", True)
    has_local_list = info.get("local_auth_list", True)
    has_cache = info.get("auth_cache", True)
    has_smart = info.get("smart_charging", False)

    def mlist(component: str, variable: str, default: str) -> VariableDef:
        # Measurand MemberLists: valuesList = the measurands this station can measure (P2 §2.7.4-§2.7.15).
        return _d(component, variable, "MemberList", _RW, default, values_list=measurands)

    defs: list[VariableDef] = [
        # -- Charging infrastructure (P2 §2.13) --
        # P2 §2.13.1 Available (RO boolean), §2.13.2 AvailabilityState (RO OptionList), §2.13.6 SupplyPhases (RO
        # integer); CSV ChargingStation;Model / ChargingStation;VendorName (string; RO: "as reported in
        # BootNotification"), <generic>;SerialNumber (string).
        _d("ChargingStation", "Available", "boolean", _RO, "true"),
        _d("ChargingStation", "AvailabilityState", "OptionList", _RO, "Available", values_list=AVAILABILITY_STATES,
           persistent=False),
        _d("ChargingStation", "SupplyPhases", "integer", _RO, phases, min=0, max=3),
        _d("ChargingStation", "VendorName", "string", _RO, info["vendor"], max_length=50),
        _d("ChargingStation", "Model", "string", _RO, info["model"], max_length=20),
        # Appendix ChargingStation;AllowNewSessionsPendingFirmwareUpdate (boolean, not required): true lets new
        # sessions start while a firmware installation waits for the running transactions; false (the default,
        # like "does not exist") makes the idle EVSEs Unavailable meanwhile (L01.FR.07).
        _d("ChargingStation", "AllowNewSessionsPendingFirmwareUpdate", "boolean", _RW, "false"),
    ]
    if info.get("serial"):
        defs.append(_d("ChargingStation", "SerialNumber", "string", _RO, info["serial"], max_length=25))
    for evse_id in sorted(evses):
        power = _power(info, evse_id)
        defs += [
            _d("EVSE", "Available", "boolean", _RO, "true", evse_id=evse_id),
            _d("EVSE", "AvailabilityState", "OptionList", _RO, "Available", values_list=AVAILABILITY_STATES,
               persistent=False, evse_id=evse_id),
            _d("EVSE", "SupplyPhases", "integer", _RO, phases, min=0, max=3, evse_id=evse_id),
            # P2 §2.13.7: maxLimit (the EVSE's maximum power) is required; Actual (instantaneous power) desired.
            # CSV EVSE;Power: unit "W, kW" -> W.
            _d("EVSE", "Power", "decimal", _RO, "0", unit="W", min=Decimal(0), max=power, persistent=False,
               evse_id=evse_id),
        ]
        for connector_id in range(1, evses[evse_id] + 1):
            ids = {"evse_id": evse_id, "connector_id": connector_id}
            defs += [
                _d("Connector", "Available", "boolean", _RO, "true", **ids),
                # CSV Connector;AvailabilityState (no): P2 §2.13.2 allows it for a connector with a state of its
                # own; same valuesList.
                _d("Connector", "AvailabilityState", "OptionList", _RO, "Available", values_list=AVAILABILITY_STATES,
                   persistent=False, **ids),
                # P2 §2.13.4 ConnectorType: RO string.
                _d("Connector", "ConnectorType", "string", _RO, _connector_type(info, evse_id, connector_id), **ids),
                _d("Connector", "SupplyPhases", "integer", _RO, phases, min=0, max=3, **ids),
            ]

    defs += [
        # -- OCPPCommCtrlr (P2 §2.1, P4 §8) --
        # P2 §2.1.5 HeartbeatInterval: RW integer, unit s, minLimit 1. Default as 1.6 §9.1.10 (Config16).
        _d("OCPPCommCtrlr", "HeartbeatInterval", "integer", _RW, "300", unit="s", min=1),
        # P2 §2.1.3 MessageTimeout[Default]: RO integer s (set through the network connection profile).
        _d("OCPPCommCtrlr", "MessageTimeout", "integer", _RO, str(info.get("message_timeout", 30)), unit="s", min=1,
           variable_instance="Default"),
        # P2 §2.1.10 MessageAttempts[TransactionEvent]: RW integer. §2.1.11 MessageAttemptInterval[TransactionEvent]:
        # RW integer s.
        _d("OCPPCommCtrlr", "MessageAttempts", "integer", _RW, "3", min=0, variable_instance="TransactionEvent"),
        _d("OCPPCommCtrlr", "MessageAttemptInterval", "integer", _RW, "60", unit="s", min=0,
           variable_instance="TransactionEvent"),
        # P2 §2.1.6 NetworkConfigurationPriority: RW SequenceList, valuesList = the available profile slots.
        _d("OCPPCommCtrlr", "NetworkConfigurationPriority", "SequenceList", _RW, slots[0], values_list=slots),
        # Appendix 3.1.12 ActiveNetworkProfile: integer, the slot of the current connection (B09 scenario); RO, set
        # by the runtime when a connection opens (not persistent: unknown until then).
        _d("OCPPCommCtrlr", "ActiveNetworkProfile", "integer", _RO, persistent=False),
        # P2 §2.1.7 NetworkProfileConnectionAttempts: RW integer. §2.1.8 OfflineThreshold: RW integer s.
        _d("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", "integer", _RW, "3", min=1),
        _d("OCPPCommCtrlr", "OfflineThreshold", "integer", _RW, "60", unit="s", min=0),
        # P2 §2.1.14 ResetRetries: RW integer.
        _d("OCPPCommCtrlr", "ResetRetries", "integer", _RW, "3", min=0),
        # P4 §8.1-§8.3: RetryBackOffRepeatTimes RW integer; RetryBackOffRandomRange, RetryBackOffWaitMinimum RW
        # integer s.
        _d("OCPPCommCtrlr", "RetryBackOffRepeatTimes", "integer", _RW, "3", min=0),
        _d("OCPPCommCtrlr", "RetryBackOffRandomRange", "integer", _RW, "10", unit="s", min=0),
        _d("OCPPCommCtrlr", "RetryBackOffWaitMinimum", "integer", _RW, "3", unit="s", min=0),
        # P2 §2.1.12 UnlockOnEVSideDisconnect: RW boolean (RO false only for fixed-cable-only EVSEs).
        _d("OCPPCommCtrlr", "UnlockOnEVSideDisconnect", "boolean", _RW, "true"),
        # P4 §8.4 WebSocketPingInterval: RW integer s, negative values Rejected. RebootRequired as in Config16: the
        # keep-alive is a parameter of a connection, effective with the next one.
        _d("OCPPCommCtrlr", "WebSocketPingInterval", "integer", _RW, "60", unit="s", min=0, reboot_required=True),
        # P2 §2.1.4 FileTransferProtocols: RO MemberList. Same values and default as 1.6 §8
        # SupportedFileTransferProtocols (Config16).
        _d("OCPPCommCtrlr", "FileTransferProtocols", "MemberList", _RO, "FTP,FTPS,HTTP,HTTPS",
           values_list=FILE_TRANSFER_PROTOCOLS_16),
        # P2 §2.7.17 PublicKeyWithSignedMeterValue: RW OptionList Never, OncePerTransaction, EveryMeterValue. Once
        # per transaction lets transparency software verify every signed reading (Eichrecht) at little cost.
        _d("OCPPCommCtrlr", "PublicKeyWithSignedMeterValue", "OptionList", _RW,
           "OncePerTransaction" if signed else "Never", values_list=("Never", "OncePerTransaction", "EveryMeterValue")),

        # -- DeviceDataCtrlr (P2 §2.1.16-§2.1.23; CSV DeviceDataCtrlr;ValueSize) --
        # ItemsPerMessage / BytesPerMessage [GetReport|GetVariables|SetVariables]: RO integer.
        *(_d("DeviceDataCtrlr", "ItemsPerMessage", "integer", _RO, str(_ITEMS_PER_MESSAGE), min=1,
             variable_instance=inst) for inst in ("GetReport", "GetVariables", "SetVariables")),
        *(_d("DeviceDataCtrlr", "BytesPerMessage", "integer", _RO, str(_BYTES_PER_MESSAGE), min=1,
             variable_instance=inst) for inst in ("GetReport", "GetVariables", "SetVariables")),
        # §2.1.20 ConfigurationValueSize (RO integer, maxLimit 1000), §2.1.21 ReportingValueSize (RO integer,
        # maxLimit 2500), CSV ValueSize (integer). They equal the schema limits; DeviceModel(value_size=1000).
        _d("DeviceDataCtrlr", "ConfigurationValueSize", "integer", _RO, str(VALUE_SIZE), min=1, max=VALUE_SIZE),
        _d("DeviceDataCtrlr", "ReportingValueSize", "integer", _RO, str(REPORTING_VALUE_SIZE), min=1,
           max=REPORTING_VALUE_SIZE),
        _d("DeviceDataCtrlr", "ValueSize", "integer", _RO, str(VALUE_SIZE), min=1, max=VALUE_SIZE),

        # -- AuthCtrlr (P2 §2.3) -- all RW boolean; AuthorizeRemoteStart "ReadOnly or ReadWrite" -> RW as in 1.6.
        _d("AuthCtrlr", "Enabled", "boolean", _RW, "true"),
        _d("AuthCtrlr", "AuthorizeRemoteStart", "boolean", _RW, "false"),
        _d("AuthCtrlr", "LocalAuthorizeOffline", "boolean", _RW, "true"),
        _d("AuthCtrlr", "LocalPreAuthorize", "boolean", _RW, "false"),
        _d("AuthCtrlr", "OfflineTxForUnknownIdEnabled", "boolean", _RW, "false"),
        _d("AuthCtrlr", "DisableRemoteAuthorization", "boolean", _RW, "false"),

        # -- AuthCacheCtrlr (P2 §2.4) --
        # Enabled RW boolean; Available RO boolean; LifeTime RW integer s; Storage RO integer (CSV unit B, maxLimit =
        # maximum bytes); Policy RW OptionList LRU, LFU, FIFO, CUSTOM.
        _d("AuthCacheCtrlr", "Enabled", "boolean", _RW, "true", validator=_not_enabled_unless(has_cache)),
        _d("AuthCacheCtrlr", "Available", "boolean", _RO, _bool(has_cache)),
        _d("AuthCacheCtrlr", "LifeTime", "integer", _RW, "86400", unit="s", min=0),
        _d("AuthCacheCtrlr", "Storage", "integer", _RO, "0", unit="B", min=0,
           max=info.get("auth_cache_max_bytes", 1_000_000), persistent=False),
        _d("AuthCacheCtrlr", "Policy", "OptionList", _RW, "LRU", values_list=("LRU", "LFU", "FIFO", "CUSTOM")),

        # -- LocalAuthListCtrlr (P2 §2.5) --
        # Enabled RW boolean; Available RO boolean; Entries RO integer (maxLimit = maximum ids); ItemsPerMessage and
        # BytesPerMessage RO integer. Defaults as 1.6 §9.2 (LocalAuthListEnabled, SendLocalListMaxLength).
        _d("LocalAuthListCtrlr", "Enabled", "boolean", _RW, "true", validator=_not_enabled_unless(has_local_list)),
        _d("LocalAuthListCtrlr", "Available", "boolean", _RO, _bool(has_local_list)),
        _d("LocalAuthListCtrlr", "Entries", "integer", _RO, "0", min=0, max=info.get("local_auth_list_max", 1000),
           persistent=False),
        _d("LocalAuthListCtrlr", "ItemsPerMessage", "integer", _RO, "100", min=0),
        _d("LocalAuthListCtrlr", "BytesPerMessage", "integer", _RO, str(_BYTES_PER_MESSAGE), min=1),

        # -- TxCtrlr (P2 §2.6) --
        # EVConnectionTimeOut RW integer s; StopTxOnEVSideDisconnect RW boolean; StopTxOnInvalidId RW boolean;
        # MaxEnergyOnInvalidId RW integer Wh; TxBeforeAcceptedEnabled RW boolean; TxStartPoint / TxStopPoint
        # MemberList ("ReadOnly or ReadWrite" -> RW). Start/stop defaults: a transaction is the time the EV is
        # connected and authorized, as in OCPP 1.6 (PowerPathClosed = EVConnected AND Authorized; stop on either
        # ending, P2 §2.6.6.2).
        _d("TxCtrlr", "EVConnectionTimeOut", "integer", _RW, "60", unit="s", min=0),
        _d("TxCtrlr", "StopTxOnEVSideDisconnect", "boolean", _RW, "true"),
        _d("TxCtrlr", "StopTxOnInvalidId", "boolean", _RW, "true"),
        _d("TxCtrlr", "MaxEnergyOnInvalidId", "integer", _RW, "0", unit="Wh", min=0),
        _d("TxCtrlr", "TxBeforeAcceptedEnabled", "boolean", _RW, "false"),
        _d("TxCtrlr", "TxStartPoint", "MemberList", _RW, "PowerPathClosed", values_list=TX_START_POINTS),
        _d("TxCtrlr", "TxStopPoint", "MemberList", _RW, "EVConnected,Authorized", values_list=TX_STOP_POINTS),

        # -- SampledDataCtrlr (P2 §2.7.1-§2.7.8) --
        # Enabled RW, Available RO boolean; Tx{Started,Updated,Ended}Measurands RW MemberList; TxUpdatedInterval,
        # TxEndedInterval RW integer s. Defaults of the shared ones as 1.6 (MeterValuesSampledData,
        # MeterValueSampleInterval, StopTxnSampledData).
        _d("SampledDataCtrlr", "Enabled", "boolean", _RW, "true"),
        _d("SampledDataCtrlr", "Available", "boolean", _RO, "true"),
        mlist("SampledDataCtrlr", "TxStartedMeasurands", energy),
        mlist("SampledDataCtrlr", "TxUpdatedMeasurands", energy),
        _d("SampledDataCtrlr", "TxUpdatedInterval", "integer", _RW, "60", unit="s", min=0),
        mlist("SampledDataCtrlr", "TxEndedMeasurands", ""),
        _d("SampledDataCtrlr", "TxEndedInterval", "integer", _RW, "0", unit="s", min=0),

        # -- AlignedDataCtrlr (P2 §2.7.9-§2.7.16) --
        # Enabled RW, Available RO boolean; Measurands, TxEndedMeasurands RW MemberList; Interval, TxEndedInterval RW
        # integer s (0 = no clock-aligned data); SendDuringIdle RW boolean. Shared defaults as 1.6
        # (MeterValuesAlignedData, ClockAlignedDataInterval, StopTxnAlignedData).
        _d("AlignedDataCtrlr", "Enabled", "boolean", _RW, "true"),
        _d("AlignedDataCtrlr", "Available", "boolean", _RO, "true"),
        mlist("AlignedDataCtrlr", "Measurands", energy),
        _d("AlignedDataCtrlr", "Interval", "integer", _RW, "0", unit="s", min=0),
        mlist("AlignedDataCtrlr", "TxEndedMeasurands", ""),
        _d("AlignedDataCtrlr", "TxEndedInterval", "integer", _RW, "0", unit="s", min=0),
        _d("AlignedDataCtrlr", "SendDuringIdle", "boolean", _RW, "false"),

        # -- ClockCtrlr (P2 §2.1.24, §2.1.30) --
        # DateTime RO dateTime (the engine keeps it current); TimeSource RW SequenceList of the implemented sources.
        _d("ClockCtrlr", "DateTime", "dateTime", _RO, persistent=False),
        _d("ClockCtrlr", "TimeSource", "SequenceList", _RW, ",".join(sources), values_list=sources),
        # optional: a clock change above it is the critical security event SettingSystemTime (A04, Appendix 1)
        _d("ClockCtrlr", "TimeAdjustmentReportingThreshold", "integer", _RW, "20", unit="s", min=0),

        # -- SecurityCtrlr (P2 §2.2) --
        # §2.2.5 SecurityProfile RO integer (1.6 whitepaper §7.6 default 0); §2.2.3 OrganizationName RW string
        # (no default: the CSMS or the station configuration sets it); §2.2.1 BasicAuthPassword WriteOnly string,
        # maxLimit 40; §2.2.4 CertificateEntries RO integer, maxLimit = max. installed certificates; §2.2.6
        # AdditionalRootCertificateCheck RO boolean; §2.2.7 MaxCertificateChainSize RO integer, maxLimit 10000;
        # §2.2.8/9 CertSigningWaitMinimum RW integer s, CertSigningRepeatTimes RW integer (A02/A03 retries).
        _d("SecurityCtrlr", "SecurityProfile", "integer", _RO, "0", min=0, max=3),
        _d("SecurityCtrlr", "OrganizationName", "string", _RW, max_length=_ORG_NAME_MAX, validator=_org_name_ok),
        _d("SecurityCtrlr", "BasicAuthPassword", "string", _WO, max_length=40, validator=_password_ok),
        _d("SecurityCtrlr", "CertificateEntries", "integer", _RO, "0", min=0, max=info.get("max_certificates", 20),
           persistent=False),
        _d("SecurityCtrlr", "AdditionalRootCertificateCheck", "boolean", _RO, "false"),
        # errata 2025-02 (Part 2 p. 456): AllowCSMSTLSWildcards, ReadWrite when present; false = the compliant
        # refusal of a wildcard CSMS server certificate (security.tls.refuse_wildcards)
        _d("SecurityCtrlr", "AllowCSMSTLSWildcards", "boolean", _RW, "false"),
        _d("SecurityCtrlr", "MaxCertificateChainSize", "integer", _RO, "10000", min=0, max=10000),
        _d("SecurityCtrlr", "CertSigningWaitMinimum", "integer", _RW, "60", unit="s", min=0),
        _d("SecurityCtrlr", "CertSigningRepeatTimes", "integer", _RW, "3", min=0),

        # -- ReservationCtrlr (P2 §2.8) -- Enabled RW, Available RO, NonEvseSpecific RO boolean (1.6 §9.3.1 default
        # false).
        _d("ReservationCtrlr", "Available", "boolean", _RO, _bool(has_reservation)),
        _d("ReservationCtrlr", "Enabled", "boolean", _RW, _bool(has_reservation),
           validator=_not_enabled_unless(has_reservation)),
        _d("ReservationCtrlr", "NonEvseSpecific", "boolean", _RO, "false"),

        # -- SmartChargingCtrlr (P2 §2.9.1/§2.9.2) -- Enabled RW, Available RO boolean. Not implemented yet.
        _d("SmartChargingCtrlr", "Available", "boolean", _RO, _bool(has_smart)),
        _d("SmartChargingCtrlr", "Enabled", "boolean", _RW, _bool(has_smart),
           validator=_not_enabled_unless(has_smart)),

        # -- ISO15118Ctrlr (P2 §2.15; the OCPP side of ISO 15118, security.iso15118) -- C07 Plug & Charge:
        # ContractValidationOffline RW boolean (required): offline, validate the contract certificate locally
        # (C07.FR.07/08); CentralContractValidationAllowed RW boolean: send the chain to the CSMS when no root here
        # can validate it (C07.FR.06). Both false: without a CSMS nobody checks revocation.
        _d("ISO15118Ctrlr", "ContractValidationOffline", "boolean", _RW, "false"),
        _d("ISO15118Ctrlr", "CentralContractValidationAllowed", "boolean", _RW, "false"),
        # SeccId (Appendix 3: optional string, "the ID of the SECC in string format as defined by ISO15118"): the CN of
        # the V2G (SECC) certificate's CSR (A02/A03 certificateType V2GCertificate); unset: SignV2GCertificate Rejected
        _d("ISO15118Ctrlr", "SeccId", "string", _RW, max_length=64),
    ]
    if info.get("identity") is not None:
        # P2 §2.2.2 Identity: "ReadOnly or ReadWrite" string, maxLimit 48. RO: the identity is part of the connection
        # URL and the Basic-auth user name, which the station configuration owns.
        defs.append(_d("SecurityCtrlr", "Identity", "string", _RO, info["identity"], max_length=48))
    if signed:
        # P2 §2.7.3 / §2.7.14: RW boolean, and "when a Charging Station does not support signed meter values it
        # SHALL NOT report this variable".
        defs += [_d("SampledDataCtrlr", "SignReadings", "boolean", _RW, "true"),
                 _d("AlignedDataCtrlr", "SignReadings", "boolean", _RW, "true"),
                 # OCA note "Signed Meter Values in OCPP" §4.3.4/§4.3.6/§4.3.7: the signed begin value in Started
                 # (or the first Updated, triggerReason SignedDataReceived); signed intermediate values (Updated
                 # MeterValuePeriodic / MeterValueClock with a signedMeterValue) when SignUpdatedReadings is true
                 _d("SampledDataCtrlr", "SignStartedReadings", "boolean", _RW, "true"),
                 _d("SampledDataCtrlr", "SignUpdatedReadings", "boolean", _RW, "false"),
                 _d("AlignedDataCtrlr", "SignUpdatedReadings", "boolean", _RW, "false")]
        # §4.3.2 FiscalMetering.PublicKey per EVSE (RO string, the §3.2.2 form): set by the runtime from the meter
        # at every start (eichrecht.meterkeys); not persistent: the meter is the source
        defs += [_d("FiscalMetering", "PublicKey", "string", _RO, None, max_length=2500, persistent=False,
                    evse_id=evse_id) for evse_id in sorted(evses)]
    return defs


def is_constant(d: VariableDef) -> bool:
    """VariableAttribute.constant: the station never changes the value at run time (ReadOnly, persistent, and not
    one of ``RUNTIME_READONLY``)."""
    return (d.mutability == _RO and d.persistent
            and (d.component.casefold(), d.variable.casefold()) not in RUNTIME_READONLY)


def _same_var(model: DeviceModel, d: VariableDef) -> VariableDef | None:
    return model.definition(d.component, d.variable, component_instance=d.component_instance,
                            variable_instance=d.variable_instance, evse_id=d.evse_id, connector_id=d.connector_id)


def define_v201(model: DeviceModel, *, evses: dict[int, int], supported_measurands: set[str],
                station_info: dict) -> None:
    """Define this station's OCPP 2.0.1 components and variables on ``model``.

    ``evses``: EVSE id -> number of connectors (connectors are numbered 1..n per EVSE, Part 2 EVSEType).
    ``supported_measurands``: what the meter can measure (2.0.1 MeasurandEnumType; 1.6-only names are accepted and
    left out of the 2.0.1 values lists). ``station_info``: see ``STATION_INFO_KEYS``.

    Safe before or after ``Config16`` on the same model, and idempotent. Raises ValueError (and defines nothing) on
    bad arguments or when an existing definition disagrees on dataType or mutability.
    """
    defs = v201_definitions(evses=evses, supported_measurands=supported_measurands, station_info=station_info)
    new: list[VariableDef] = []
    for d in defs:
        existing = _same_var(model, d)
        if existing is None:
            new.append(d)
        elif existing.data_type != d.data_type or existing.mutability != d.mutability:
            raise ValueError(f"{d.component}.{d.variable}[{d.variable_instance}] is already defined as "
                             f"{existing.data_type}/{existing.mutability}; OCPP 2.0.1 needs "
                             f"{d.data_type}/{d.mutability}")
    for d in new:
        model.define(d)
    for d in new:
        # Re-assert what describes the station (see module docstring); a no-op write is skipped.
        if d.default is None or not is_constant(d):
            continue
        want = normalize(d, d.default)
        if want is not None and model.get(d.component, d.variable, component_instance=d.component_instance,
                                          variable_instance=d.variable_instance, evse_id=d.evse_id,
                                          connector_id=d.connector_id) != want:
            model.set(d.component, d.variable, want, component_instance=d.component_instance,
                      variable_instance=d.variable_instance, evse_id=d.evse_id, connector_id=d.connector_id,
                      force=True)
