"""OCPP 1.6 configuration keys as a view onto the 2.0.1 device model.

Every standard key of OCPP 1.6 edition 2 §9 (Core §9.1, Local Auth List Management §9.2, Reservation §9.3, Smart
Charging §9.4), SupportedFileTransferProtocols (§8) and the keys of the Security Whitepaper edition 3 §7 is mapped
onto the component/variable that the OCPP 2.0.1 Part 2 appendices (dm_components_vars.csv v1.4) define for the same
concept, so that a 1.6 ChangeConfiguration and a later 2.0.1 GetVariables see one stored value. Where 2.0.1 has no
counterpart the key lives in the vendor component ``OCPP16Ctrlr`` under its 1.6 name.

Mapping choices that need a word:

* ``MinimumStatusDuration`` is a *generic* variable in 2.0.1 (no controller named); it is placed on the
  ``ChargingStation`` component because it governs the status reporting of the whole station.
* ``GetConfigurationMaxKeys`` -> ``DeviceDataCtrlr.ItemsPerMessage[GetVariables]`` (max. entries per get request).
* ``SendLocalListMaxLength`` -> ``LocalAuthListCtrlr.ItemsPerMessage`` (max. records in one SendLocalList).
* ``ReserveConnectorZeroSupported`` -> ``ReservationCtrlr.NonEvseSpecific`` (reservation without EVSE/connector).
* ``ChargingScheduleAllowedChargingRateUnit`` -> ``SmartChargingCtrlr.RateUnit``; stored in 2.0.1 form ("A", "W")
  and shown to 1.6 as "Current", "Power".
* The ``*MaxLength`` keys, ``NumberOfConnectors``, ``SupportedFeatureProfiles``, ``ConnectorPhaseRotation``,
  ``BlinkRepeat``, ``LightIntensity``, ``LocalAuthListMaxLength``, ``MaxChargingProfilesInstalled`` and
  ``CertificateStoreMaxLength`` have no 2.0.1 variable of their own (2.0.1 expresses most of them as the maxLimit
  characteristic of another variable, or per Connector component) and live in ``OCPP16Ctrlr``.
* ``AuthorizationKey`` -> ``SecurityCtrlr.BasicAuthPassword`` (WriteOnly in both versions). The 1.6 whitepaper
  (A00.FR.205, §7.2) defines the key as 16-20 bytes written as up to 40 hexadecimal digits, so ChangeConfiguration
  only accepts 32-40 hex digits (even count); the text is stored as is, which is also a valid 2.0.1 passwordString.
  Whether the Basic-auth password is the hex text or its decoded bytes is the transport's decision per protocol.
* ``SecurityProfile`` is RW in 1.6 (whitepaper §7.6, only increase) but ReadOnly in 2.0.1 (changed there through
  network profiles); the 1.6 view writes it with ``force``.

RebootRequired: only ``WebSocketPingInterval`` by default. The WebSocket keep-alive is a parameter of a connection
(websockets' ``ping_interval`` is given to ``connect()``), so a new value becomes effective with the next connection,
not now; OCPP 1.6 §5.3 "RebootRequired" (applied, but not yet effective) is the honest answer. Every other key is
read by the engine when it is used, or pushed to it through ``DeviceModel.subscribe``, so it is effective at once
("Accepted"). AuthorizationKey and SecurityProfile are "Accepted" as the whitepaper's A01 / §7.6 flows prescribe
(the station then reconnects). A station whose transport applies the ping interval live passes
``reboot_required_keys=()``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping, Sequence

from .model import DeviceModel, VariableDef, split_list

__all__ = [
    "Key16",
    "KEYS16",
    "Config16",
    "TooManyKeys",
    "VENDOR_COMPONENT",
    "MEASURANDS_16",
    "PHASES_16",
    "PHASE_ROTATIONS_16",
    "FEATURE_PROFILES_16",
    "FILE_TRANSFER_PROTOCOLS_16",
    "SIGNED_METER_KEYS16",
]

#: Component that holds 1.6 keys without a 2.0.1 counterpart (variable name = the 1.6 key name).
VENDOR_COMPONENT = "OCPP16Ctrlr"

#: OCPP 1.6 Measurand enumeration (§7.31; spelled as in the official JSON schema MeterValues.json).
MEASURANDS_16 = (
    "Energy.Active.Export.Register",
    "Energy.Active.Import.Register",
    "Energy.Reactive.Export.Register",
    "Energy.Reactive.Import.Register",
    "Energy.Active.Export.Interval",
    "Energy.Active.Import.Interval",
    "Energy.Reactive.Export.Interval",
    "Energy.Reactive.Import.Interval",
    "Power.Active.Export",
    "Power.Active.Import",
    "Power.Offered",
    "Power.Reactive.Export",
    "Power.Reactive.Import",
    "Power.Factor",
    "Current.Import",
    "Current.Export",
    "Current.Offered",
    "Voltage",
    "Frequency",
    "Temperature",
    "SoC",
    "RPM",
)
#: OCPP 1.6 Phase enumeration (§7.34).
PHASES_16 = ("L1", "L2", "L3", "N", "L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1")
#: Measurands that can carry a phase in a CSL entry ("Voltage.L1", §9.1.17). Temperature, SoC, RPM and Frequency
#: are not per-phase quantities (§7.34: "not all values of Phase are applicable to all Measurands").
_PHASEABLE = frozenset(m for m in MEASURANDS_16 if m.split(".")[0] in ("Energy", "Power", "Current", "Voltage"))
#: ConnectorPhaseRotation values (§9.1.7).
PHASE_ROTATIONS_16 = ("NotApplicable", "Unknown", "RST", "RTS", "SRT", "STR", "TRS", "TSR")
#: SupportedFeatureProfiles values (§9.1.29).
FEATURE_PROFILES_16 = (
    "Core",
    "FirmwareManagement",
    "LocalAuthListManagement",
    "Reservation",
    "SmartCharging",
    "RemoteTrigger",
)
#: SupportedFileTransferProtocols values (§8).
FILE_TRANSFER_PROTOCOLS_16 = ("FTP", "FTPS", "HTTP", "HTTPS")
#: 1.6 ChargingRateUnit (§9.4.2) <-> 2.0.1 SmartChargingCtrlr.RateUnit members.
_RATE_UNIT_TO_201 = {"Current": "A", "Power": "W"}
_RATE_UNIT_TO_16 = {v: k for k, v in _RATE_UNIT_TO_201.items()}

#: ChangeConfiguration.req value is CiString500Type (§6.9); GetConfiguration.conf value too (§7.29).
VALUE_MAX_16 = 500
#: RFC 5280 ub-organization-name: the CpoName goes into the CSR's O RDN (whitepaper A02.FR.13).
_ORG_NAME_MAX = 64
#: OCPP 2.0.1 passwordString characters (BasicAuthPassword).
_PASSWORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789*-_=:+|@.")  # 2.0.1 passwordString
_HEX_KEY_RE = re.compile(r"(?:[0-9A-Fa-f]{2}){16,20}")  # whitepaper §7.2: 16..20 bytes as hex digits
_DIGITS_RE = re.compile(r"[0-9]+")
_ROTATION_RE = re.compile(r"([0-9]+)\.(" + "|".join(PHASE_ROTATIONS_16) + r")")

_ACCESS_TO_MUTABILITY = {"R": "ReadOnly", "RW": "ReadWrite", "W": "WriteOnly"}
_UNIT_TO_201 = {"seconds": "s", "%": "Percent", "Wh": "Wh", "times": None}


@dataclass(frozen=True)
class Key16:
    """One OCPP 1.6 configuration key: its spec properties and its place in the device model."""

    name: str
    ref: str  # where the spec defines it
    profile: str  # 1.6 feature profile, or "Security" (whitepaper keys; always offered)
    required: bool  # required when its profile is supported
    access: str  # "R" | "RW" | "W" (Accessibility)
    type16: str  # "boolean" | "integer" | "CSL" | "string"
    component: str
    variable: str
    variable_instance: str = ""
    unit: str | None = None  # as written in the 1.6 spec
    min: int | None = None
    max: int | None = None
    default: str | None = None  # in 1.6 form; None = not set
    list_kind: str | None = None  # CSL content: measurands | phase_rotation | profiles | rate_units | file_protocols
    max_length_key: str | None = None  # the [KeyName]MaxLength key bounding this CSL (§5.3)
    reboot_required: bool = False
    mutability201: str | None = None  # 2.0.1 mutability when it differs from the 1.6 access


def _k(name: str, ref: str, profile: str, required: bool, access: str, type16: str, component: str, variable: str,
       **kw: object) -> Key16:
    return Key16(name, ref, profile, required, access, type16, component, variable, **kw)  # type: ignore[arg-type]


V = VENDOR_COMPONENT
_CORE, _LAL, _RES, _SC, _FW, _SEC = "Core", "LocalAuthListManagement", "Reservation", "SmartCharging", \
    "FirmwareManagement", "Security"
_SMV = "SignedMeterValues"   # not a 1.6 feature profile: the OCA application note's keys (see signed_meter_values)

#: Every key, in the order of the specifications.
KEYS16: tuple[Key16, ...] = (
    # -- OCPP 1.6 edition 2 §9.1 Core Profile --
    _k("AllowOfflineTxForUnknownId", "1.6 §9.1.1", _CORE, False, "RW", "boolean",
       "AuthCtrlr", "OfflineTxForUnknownIdEnabled", default="false"),
    _k("AuthorizationCacheEnabled", "1.6 §9.1.2", _CORE, False, "RW", "boolean",
       "AuthCacheCtrlr", "Enabled", default="true"),
    # §9.1.3: "R or RW. Choice is up to Charge Point implementation" -> RW.
    _k("AuthorizeRemoteTxRequests", "1.6 §9.1.3", _CORE, True, "RW", "boolean",
       "AuthCtrlr", "AuthorizeRemoteStart", default="false"),
    _k("BlinkRepeat", "1.6 §9.1.4", _CORE, False, "RW", "integer",
       V, "BlinkRepeat", unit="times", min=0, default="3"),
    # §9.1.5: 0 = no clock-aligned data.
    _k("ClockAlignedDataInterval", "1.6 §9.1.5", _CORE, True, "RW", "integer",
       "AlignedDataCtrlr", "Interval", unit="seconds", min=0, default="0"),
    _k("ConnectionTimeOut", "1.6 §9.1.6", _CORE, True, "RW", "integer",
       "TxCtrlr", "EVConnectionTimeOut", unit="seconds", min=0, default="60"),
    _k("ConnectorPhaseRotation", "1.6 §9.1.7", _CORE, True, "RW", "CSL",
       V, "ConnectorPhaseRotation", list_kind="phase_rotation", max_length_key="ConnectorPhaseRotationMaxLength"),
    _k("ConnectorPhaseRotationMaxLength", "1.6 §9.1.8", _CORE, False, "R", "integer",
       V, "ConnectorPhaseRotationMaxLength", min=0),
    _k("GetConfigurationMaxKeys", "1.6 §9.1.9", _CORE, True, "R", "integer",
       "DeviceDataCtrlr", "ItemsPerMessage", variable_instance="GetVariables", min=1, default="100"),
    _k("HeartbeatInterval", "1.6 §9.1.10", _CORE, True, "RW", "integer",
       "OCPPCommCtrlr", "HeartbeatInterval", unit="seconds", min=0, default="300"),
    _k("LightIntensity", "1.6 §9.1.11", _CORE, False, "RW", "integer",
       V, "LightIntensity", unit="%", min=0, max=100, default="100"),
    _k("LocalAuthorizeOffline", "1.6 §9.1.12", _CORE, True, "RW", "boolean",
       "AuthCtrlr", "LocalAuthorizeOffline", default="true"),
    _k("LocalPreAuthorize", "1.6 §9.1.13", _CORE, True, "RW", "boolean",
       "AuthCtrlr", "LocalPreAuthorize", default="false"),
    _k("MaxEnergyOnInvalidId", "1.6 §9.1.14", _CORE, False, "RW", "integer",
       "TxCtrlr", "MaxEnergyOnInvalidId", unit="Wh", min=0, default="0"),
    _k("MeterValuesAlignedData", "1.6 §9.1.15", _CORE, True, "RW", "CSL",
       "AlignedDataCtrlr", "Measurands", list_kind="measurands", max_length_key="MeterValuesAlignedDataMaxLength"),
    _k("MeterValuesAlignedDataMaxLength", "1.6 §9.1.16", _CORE, False, "R", "integer",
       V, "MeterValuesAlignedDataMaxLength", min=0, default="20"),
    _k("MeterValuesSampledData", "1.6 §9.1.17", _CORE, True, "RW", "CSL",
       "SampledDataCtrlr", "TxUpdatedMeasurands", list_kind="measurands",
       max_length_key="MeterValuesSampledDataMaxLength"),
    _k("MeterValuesSampledDataMaxLength", "1.6 §9.1.18", _CORE, False, "R", "integer",
       V, "MeterValuesSampledDataMaxLength", min=0, default="20"),
    # §9.1.19: 0 = no sampled data.
    _k("MeterValueSampleInterval", "1.6 §9.1.19", _CORE, True, "RW", "integer",
       "SampledDataCtrlr", "TxUpdatedInterval", unit="seconds", min=0, default="60"),
    _k("MinimumStatusDuration", "1.6 §9.1.20", _CORE, False, "RW", "integer",
       "ChargingStation", "MinimumStatusDuration", unit="seconds", min=0, default="0"),
    _k("NumberOfConnectors", "1.6 §9.1.21", _CORE, True, "R", "integer",
       V, "NumberOfConnectors", min=0),
    _k("ResetRetries", "1.6 §9.1.22", _CORE, True, "RW", "integer",
       "OCPPCommCtrlr", "ResetRetries", unit="times", min=0, default="3"),
    _k("StopTransactionOnEVSideDisconnect", "1.6 §9.1.23", _CORE, True, "RW", "boolean",
       "TxCtrlr", "StopTxOnEVSideDisconnect", default="true"),
    _k("StopTransactionOnInvalidId", "1.6 §9.1.24", _CORE, True, "RW", "boolean",
       "TxCtrlr", "StopTxOnInvalidId", default="true"),
    _k("StopTxnAlignedData", "1.6 §9.1.25", _CORE, True, "RW", "CSL",
       "AlignedDataCtrlr", "TxEndedMeasurands", list_kind="measurands", default="",
       max_length_key="StopTxnAlignedDataMaxLength"),
    _k("StopTxnAlignedDataMaxLength", "1.6 §9.1.26", _CORE, False, "R", "integer",
       V, "StopTxnAlignedDataMaxLength", min=0, default="20"),
    _k("StopTxnSampledData", "1.6 §9.1.27", _CORE, True, "RW", "CSL",
       "SampledDataCtrlr", "TxEndedMeasurands", list_kind="measurands", default="",
       max_length_key="StopTxnSampledDataMaxLength"),
    _k("StopTxnSampledDataMaxLength", "1.6 §9.1.28", _CORE, False, "R", "integer",
       V, "StopTxnSampledDataMaxLength", min=0, default="20"),
    _k("SupportedFeatureProfiles", "1.6 §9.1.29", _CORE, True, "R", "CSL",
       V, "SupportedFeatureProfiles", list_kind="profiles", max_length_key="SupportedFeatureProfilesMaxLength"),
    _k("SupportedFeatureProfilesMaxLength", "1.6 §9.1.30", _CORE, False, "R", "integer",
       V, "SupportedFeatureProfilesMaxLength", min=0, default=str(len(FEATURE_PROFILES_16))),
    _k("TransactionMessageAttempts", "1.6 §9.1.31", _CORE, True, "RW", "integer",
       "OCPPCommCtrlr", "MessageAttempts", variable_instance="TransactionEvent", unit="times", min=0, default="3"),
    _k("TransactionMessageRetryInterval", "1.6 §9.1.32", _CORE, True, "RW", "integer",
       "OCPPCommCtrlr", "MessageAttemptInterval", variable_instance="TransactionEvent", unit="seconds", min=0,
       default="60"),
    _k("UnlockConnectorOnEVSideDisconnect", "1.6 §9.1.33", _CORE, True, "RW", "boolean",
       "OCPPCommCtrlr", "UnlockOnEVSideDisconnect", default="true"),
    # §9.1.34: 0 disables client pings; negative values are not allowed (-> Rejected).
    _k("WebSocketPingInterval", "1.6 §9.1.34", _CORE, False, "RW", "integer",
       "OCPPCommCtrlr", "WebSocketPingInterval", unit="seconds", min=0, default="60", reboot_required=True),
    # -- §9.2 Local Auth List Management Profile --
    _k("LocalAuthListEnabled", "1.6 §9.2.1", _LAL, True, "RW", "boolean",
       "LocalAuthListCtrlr", "Enabled", default="true"),
    _k("LocalAuthListMaxLength", "1.6 §9.2.2", _LAL, True, "R", "integer",
       V, "LocalAuthListMaxLength", min=0, default="1000"),
    _k("SendLocalListMaxLength", "1.6 §9.2.3", _LAL, True, "R", "integer",
       "LocalAuthListCtrlr", "ItemsPerMessage", min=0, default="100"),
    # -- §9.3 Reservation Profile --
    _k("ReserveConnectorZeroSupported", "1.6 §9.3.1", _RES, False, "R", "boolean",
       "ReservationCtrlr", "NonEvseSpecific", default="false"),
    # -- §9.4 Smart Charging Profile --
    _k("ChargeProfileMaxStackLevel", "1.6 §9.4.1", _SC, True, "R", "integer",
       "SmartChargingCtrlr", "ProfileStackLevel", min=0, default="8"),
    _k("ChargingScheduleAllowedChargingRateUnit", "1.6 §9.4.2", _SC, True, "R", "CSL",
       "SmartChargingCtrlr", "RateUnit", list_kind="rate_units", default="Current,Power"),
    _k("ChargingScheduleMaxPeriods", "1.6 §9.4.3", _SC, True, "R", "integer",
       "SmartChargingCtrlr", "PeriodsPerSchedule", min=1, default="24"),
    _k("ConnectorSwitch3to1PhaseSupported", "1.6 §9.4.4", _SC, False, "R", "boolean",
       "SmartChargingCtrlr", "Phases3to1", default="false"),
    _k("MaxChargingProfilesInstalled", "1.6 §9.4.5", _SC, True, "R", "integer",
       V, "MaxChargingProfilesInstalled", min=0, default="32"),
    # -- §8 Firmware and Diagnostics File Transfer --
    _k("SupportedFileTransferProtocols", "1.6 §8", _FW, False, "R", "CSL",
       "OCPPCommCtrlr", "FileTransferProtocols", list_kind="file_protocols", default="FTP,FTPS,HTTP,HTTPS"),
    # -- Security Whitepaper edition 3, §7 Configuration Keys --
    _k("AdditionalRootCertificateCheck", "SWP ed3 §7.1", _SEC, False, "R", "boolean",
       "SecurityCtrlr", "AdditionalRootCertificateCheck", default="false"),
    _k("AuthorizationKey", "SWP ed3 §7.2", _SEC, False, "W", "string",
       "SecurityCtrlr", "BasicAuthPassword"),
    _k("CertificateSignedMaxChainSize", "SWP ed3 §7.3", _SEC, False, "R", "integer",
       "SecurityCtrlr", "MaxCertificateChainSize", min=0, max=10000, default="10000"),
    _k("CertificateStoreMaxLength", "SWP ed3 §7.4", _SEC, False, "R", "integer",
       V, "CertificateStoreMaxLength", min=0, default="20"),
    _k("CpoName", "SWP ed3 §7.5", _SEC, False, "RW", "string",
       "SecurityCtrlr", "OrganizationName"),
    # §7.6: only increase; default 0 when no security profile is configured yet.
    _k("SecurityProfile", "SWP ed3 §7.6", _SEC, False, "RW", "integer",
       "SecurityCtrlr", "SecurityProfile", min=0, max=3, default="0", mutability201="ReadOnly"),
    # -- OCA application note "Signed Meter Values in OCPP" v1.0 §3.3 (Eichrecht, issue #5): the 2.0.1 variables
    # of §4.3 under their 1.6 names. Offered when the station signs (the runtime excludes them otherwise);
    # MeterPublicKey<N> (§3.3.1, per connector) is answered by the 1.6 adapter from FiscalMetering.PublicKey.
    # Offered with Config16(signed_meter_values=True) only.
    _k("PublicKeyWithSignedMeterValue", "OCA SMV §3.3.2", _SMV, False, "RW", "string",
       "OCPPCommCtrlr", "PublicKeyWithSignedMeterValue", default="OncePerTransaction"),
    _k("SampledDataSignReadings", "OCA SMV §3.3.3", _SMV, False, "RW", "boolean",
       "SampledDataCtrlr", "SignReadings", default="true"),
    _k("StartTxnSampledData", "OCA SMV §3.3.4", _SMV, False, "RW", "CSL",
       "SampledDataCtrlr", "TxStartedMeasurands", list_kind="measurands", default="Energy.Active.Import.Register",
       max_length_key="StopTxnSampledDataMaxLength"),
    _k("SampledDataSignStartedReadings", "OCA SMV §3.3.5", _SMV, False, "RW", "boolean",
       "SampledDataCtrlr", "SignStartedReadings", default="true"),
    _k("SampledDataSignUpdatedReadings", "OCA SMV §3.3.6", _SMV, False, "RW", "boolean",
       "SampledDataCtrlr", "SignUpdatedReadings", default="false"),
    _k("AlignedDataSignReadings", "OCA SMV §3.3.7", _SMV, False, "RW", "boolean",
       "AlignedDataCtrlr", "SignReadings", default="true"),
    _k("AlignedDataSignUpdatedReadings", "OCA SMV §3.3.8", _SMV, False, "RW", "boolean",
       "AlignedDataCtrlr", "SignUpdatedReadings", default="false"),
)
#: The keys of the OCA signed-meter-values note (offered by a station that signs).
SIGNED_METER_KEYS16 = tuple(k.name for k in KEYS16 if k.profile == _SMV)

_BY_NAME: dict[str, Key16] = {k.name.casefold(): k for k in KEYS16}


class TooManyKeys(ValueError):
    """A GetConfiguration.req asked for more keys than GetConfigurationMaxKeys (1.6 §5.8, §9.1.9).

    The 1.6 spec lets the Charge Point limit the number of requested keys but does not say how to answer beyond the
    limit; the protocol adapter should reply with CALLERROR ``error_code`` ("OccurenceConstraintViolation", OCPP-J
    1.6 §4.2.3: a field violates occurrence constraints) rather than silently drop keys.
    """

    error_code = "OccurenceConstraintViolation"

    def __init__(self, requested: int, limit: int) -> None:
        super().__init__(f"GetConfiguration requested {requested} keys; GetConfigurationMaxKeys is {limit}")
        self.requested = requested
        self.limit = limit


def _measurand_ok(token: str, supported: frozenset[str]) -> bool:
    """A MeterValues*/StopTxn* CSL entry: a supported measurand, optionally ".<phase>" (1.6 §9.1.17)."""
    if token in supported:
        return True
    base, sep, phase = token.rpartition(".")
    return bool(sep) and base in supported and base in _PHASEABLE and phase in PHASES_16


def _password_ok(value: str, _current: str | None) -> bool:
    """OCPP 2.0.1 BasicAuthPassword: passwordString of 16..40 characters."""
    return 16 <= len(value) <= 40 and all(c in _PASSWORD_CHARS for c in value)


def _org_name_ok(value: str, _current: str | None) -> bool:
    return 1 <= len(value) <= _ORG_NAME_MAX and value.isprintable() and value.isascii()


class Config16:
    """The OCPP 1.6 view of a ``DeviceModel``: GetConfiguration / ChangeConfiguration and typed getters.

    Keys are offered when their profile is in ``supported_profiles`` (Security whitepaper keys always) and they
    are not in ``exclude_keys`` (e.g. ``{"BlinkRepeat", "LightIntensity"}`` for a station without lights: per 1.6
    §9 an optional key that is absent means the function is absent). Keys not offered are not defined in the model
    and answer "NotSupported" / unknownKey.

    ``overrides`` are station-configuration values in 1.6 form. For read-write keys they are defaults (a value the
    CSMS stored wins); read-only keys describe the station itself, so their configured (or built-in) value is
    re-asserted at every start. ``checks`` maps key names to extra acceptance tests run on ChangeConfiguration with
    the new value (stored form), e.g. ``{"SecurityProfile": prerequisites_met}`` for whitepaper §7.6 ("check if
    all the prerequisites for the new Security Profile are met"). Keys are case-insensitive (CiString50Type).
    """

    def __init__(
        self,
        model: DeviceModel,
        *,
        number_of_connectors: int,
        supported_measurands: set[str] | frozenset[str],
        supported_profiles: Sequence[str] = ("Core",),
        overrides: Mapping[str, str] | None = None,
        exclude_keys: Iterable[str] = (),
        checks: Mapping[str, Callable[[str], bool]] | None = None,
        reboot_required_keys: Iterable[str] | None = None,
        signed_meter_values: bool = False,
    ) -> None:
        if number_of_connectors < 1:
            raise ValueError("number_of_connectors must be at least 1")
        unknown_m = set(supported_measurands) - set(MEASURANDS_16)
        if unknown_m:
            raise ValueError(f"not OCPP 1.6 measurands: {sorted(unknown_m)}")
        profiles = list(supported_profiles)
        bad_p = [p for p in profiles if p not in FEATURE_PROFILES_16]
        if bad_p or len(set(profiles)) != len(profiles) or "Core" not in profiles:
            raise ValueError(f"supported_profiles must be distinct 1.6 feature profiles including Core: {profiles}")
        self._model = model
        self._list_memo: dict[str, tuple[int, tuple[str, ...]]] = {}   # get_list: key -> (model.changes, members)
        self._n = number_of_connectors
        self._measurands = frozenset(supported_measurands)
        self._profiles = profiles

        excluded = {self._spec_any(k).name for k in exclude_keys}
        # the OCA note's keys only on a station that signs (``signed_meter_values``: the runtime's [eichrecht])
        offered = [k for k in KEYS16 if (k.profile == _SEC or k.profile in profiles
                                         or (k.profile == _SMV and signed_meter_values)) and k.name not in excluded]
        for k in KEYS16:
            if k.name in excluded and k.required and k.profile in profiles:
                raise ValueError(f"{k.name} is required by the {k.profile} profile and cannot be excluded")
        if reboot_required_keys is not None:
            reboot = {self._spec_any(k).name for k in reboot_required_keys}
            offered = [replace(k, reboot_required=k.name in reboot) for k in offered]
        self._keys: dict[str, Key16] = {k.name.casefold(): k for k in offered}
        self._checks = {self._spec_any(k).name: f for k, f in (checks or {}).items()}

        ov = {self._spec_any(k).name: v for k, v in (overrides or {}).items()}
        for name in ov:
            if name.casefold() not in self._keys:
                raise ValueError(f"override for {name}, which this station does not offer")
        fixed = {"NumberOfConnectors": str(self._n), "SupportedFeatureProfiles": ",".join(profiles)}
        for name, value in fixed.items():
            if name in ov and split_list(ov[name]) != split_list(value):
                raise ValueError(f"{name} follows from the station's hardware/profiles and cannot be overridden")

        # Values in 1.6 form: override, else station-derived default, else built-in default.
        values16: dict[str, str | None] = {}
        for k in offered:
            values16[k.name] = ov.get(k.name, self._context_default(k))

        # List bounds come from the *MaxLength keys (§5.3: a CSL without one is limited to a safe 1 item).
        self._max_len: dict[str, int | None] = {}
        for k in offered:
            if k.type16 != "CSL":
                continue
            if k.max_length_key is None:
                self._max_len[k.name] = None
            elif k.max_length_key.casefold() in self._keys:
                raw = values16[k.max_length_key]
                if raw is None or not _DIGITS_RE.fullmatch(raw):
                    raise ValueError(f"{k.max_length_key}: invalid value")
                self._max_len[k.name] = int(raw)
            else:
                self._max_len[k.name] = 1

        for k in offered:
            d = self._variable_def(k, values16[k.name])
            model.define(d)
        # Read-only keys describe the station: re-assert them (a no-op write is skipped).
        for k in offered:
            if k.access == "R":
                stored = self._to_store(k, values16[k.name]) if values16[k.name] is not None else None
                if stored is not None and model.get(k.component, k.variable,
                                                    variable_instance=k.variable_instance) != stored:
                    res = model.set(k.component, k.variable, stored, variable_instance=k.variable_instance,
                                    force=True)
                    if res not in ("Accepted", "RebootRequired"):
                        raise ValueError(f"{k.name}: invalid configured value")

    # -- construction helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _spec_any(key: str) -> Key16:
        k = _BY_NAME.get(key.casefold())
        if k is None:
            raise ValueError(f"unknown OCPP 1.6 configuration key {key!r}")
        return k

    def _context_default(self, k: Key16) -> str | None:
        """Defaults that follow from the station: its connectors, measurands and profiles."""
        if k.name == "NumberOfConnectors":
            return str(self._n)
        if k.name == "SupportedFeatureProfiles":
            return ",".join(self._profiles)
        if k.name == "ConnectorPhaseRotation":
            return ",".join(f"{i}.Unknown" for i in range(1, self._n + 1))
        if k.name == "ConnectorPhaseRotationMaxLength":
            return str(self._n + 1)  # connectors 1..n plus the grid connection (index 0)
        if k.name in ("MeterValuesAlignedData", "MeterValuesSampledData"):
            return "Energy.Active.Import.Register" if "Energy.Active.Import.Register" in self._measurands else ""
        return k.default

    def _variable_def(self, k: Key16, value16: str | None) -> VariableDef:
        mutability = k.mutability201 or _ACCESS_TO_MUTABILITY[k.access]
        kw: dict[str, object] = {}
        validator = None
        if k.type16 == "boolean":
            data_type = "boolean"
        elif k.type16 == "integer":
            data_type = "integer"
            kw.update(min=k.min, max=k.max)
        elif k.type16 == "string":
            data_type = "string"
            if k.name == "AuthorizationKey":
                kw["max_length"] = 40
                validator = _password_ok
            elif k.name == "CpoName":
                kw["max_length"] = _ORG_NAME_MAX
                validator = _org_name_ok
            elif k.name == "PublicKeyWithSignedMeterValue":   # the 2.0.1 OptionList (OCA note §3.3.2 Table 5)
                data_type = "OptionList"
                kw["values_list"] = ("Never", "OncePerTransaction", "EveryMeterValue")
            else:  # pragma: no cover - no other string keys today
                kw["max_length"] = VALUE_MAX_16
        else:
            data_type = "MemberList"
            kw["max_length"] = self._max_len[k.name]
            if k.list_kind == "measurands":
                kw["values_list"] = tuple(m for m in MEASURANDS_16 if m in self._measurands)
                measurands = self._measurands
                kw["member_validator"] = lambda m: _measurand_ok(m, measurands)
            elif k.list_kind == "phase_rotation":
                n = self._n
                kw["member_validator"] = lambda m: bool((x := _ROTATION_RE.fullmatch(m)) and int(x[1]) <= n)
                # Reported to a 2.0.1 CSMS: a MemberList needs its valuesList (Part 6 TC_B_12/13/53_CS).
                kw["values_list"] = tuple(f"{c}.{r}" for c in range(n + 1) for r in PHASE_ROTATIONS_16)
                validator = _unique_rotation_indices
            elif k.list_kind == "profiles":
                kw["values_list"] = FEATURE_PROFILES_16
            elif k.list_kind == "rate_units":
                kw["values_list"] = tuple(_RATE_UNIT_TO_16)
            elif k.list_kind == "file_protocols":
                kw["values_list"] = FILE_TRANSFER_PROTOCOLS_16
            else:  # pragma: no cover
                raise AssertionError(k.list_kind)
        # Every mapped variable must stay showable through 1.6 (GetConfiguration value is CiString500).
        base = validator
        kw["validator"] = (lambda v, cur: len(v) <= VALUE_MAX_16 and (base is None or base(v, cur)))
        default = self._to_store(k, value16) if value16 is not None else None
        if value16 is not None and default is None:
            raise ValueError(f"{k.name}: invalid configured value")
        return VariableDef(
            component=k.component,
            variable=k.variable,
            variable_instance=k.variable_instance,
            data_type=data_type,
            mutability=mutability,
            default=default,
            unit=_UNIT_TO_201.get(k.unit) if k.unit else None,
            reboot_required=k.reboot_required,
            **kw,  # type: ignore[arg-type]
        )

    # -- 1.6 <-> stored form -----------------------------------------------------------------------------------

    @staticmethod
    def _to_store(k: Key16, value: str) -> str | None:
        """Parse a 1.6 value (syntax only; ranges and members are checked by the model). None = malformed."""
        if len(value) > VALUE_MAX_16:
            return None
        if k.type16 == "boolean":
            low = value.lower()
            return low if low in ("true", "false") else None
        if k.type16 == "integer":
            # 1.6 integers here are counts, sizes and intervals: decimal digits only, no sign, no fraction.
            return str(int(value)) if _DIGITS_RE.fullmatch(value) else None
        if k.type16 == "CSL":
            members = split_list(value)
            if any(m == "" for m in members):
                return None
            if k.list_kind == "rate_units":
                if any(m not in _RATE_UNIT_TO_201 for m in members):
                    return None
                members = [_RATE_UNIT_TO_201[m] for m in members]
            return ",".join(members)
        return value

    @staticmethod
    def _to_16(k: Key16, stored: str) -> str:
        if k.list_kind == "rate_units":
            return ",".join(_RATE_UNIT_TO_16.get(m, m) for m in split_list(stored))
        return stored

    def _spec(self, key: str) -> Key16:
        k = self._keys.get(key.casefold())
        if k is None:
            raise KeyError(key)
        return k

    @property
    def model(self) -> DeviceModel:
        """The device model the keys are a view onto."""
        return self._model

    def _stored(self, k: Key16) -> str | None:
        return self._model.get(k.component, k.variable, variable_instance=k.variable_instance)

    # -- OCPP 1.6 operations -----------------------------------------------------------------------------------

    def get_configuration(self, keys: list[str] | None) -> tuple[list[dict], list[str]]:
        """GetConfiguration.conf content: (configurationKey entries, unknownKey list) (1.6 §5.8, §6.24).

        No/empty ``keys`` = every offered key. Each entry is ``{"key", "readonly", "value"}``; "value" is omitted
        when the key is not set, and always for the write-only AuthorizationKey (whitepaper §7.2: write-only so
        that a CSMS reading all keys cannot store it in plaintext; it is listed, readonly false, without value).
        Raises ``TooManyKeys`` when more keys are requested than GetConfigurationMaxKeys.
        """
        if keys:
            limit = self.get_int("GetConfigurationMaxKeys")
            if len(keys) > limit:
                raise TooManyKeys(len(keys), limit)
            wanted: list[Key16] = []
            unknown: list[str] = []
            for name in keys:
                k = self._keys.get(name.casefold())
                if k is None:
                    if name not in unknown:
                        unknown.append(name)
                elif k not in wanted:
                    wanted.append(k)
        else:
            wanted, unknown = list(self._keys.values()), []
        entries: list[dict] = []
        for k in wanted:
            entry: dict = {"key": k.name, "readonly": k.access == "R"}
            stored = self._stored(k)
            if stored is not None and k.access != "W":
                entry["value"] = self._to_16(k, stored)
            entries.append(entry)
        return entries, unknown

    def change_configuration(self, key: str, value: str) -> str:
        """ChangeConfiguration.conf status (1.6 §5.3): Accepted | Rejected | RebootRequired | NotSupported."""
        k = self._keys.get(key.casefold())
        if k is None:
            return "NotSupported"
        if k.access == "R":
            return "Rejected"
        stored = self._to_store(k, value)
        if stored is None:
            return "Rejected"
        if k.name == "SecurityProfile":
            # Whitepaper §7.6 / A00.FR.005: a lower value than currently configured SHALL be rejected.
            current = self._stored(k)
            if current is not None and int(stored) < int(current):
                return "Rejected"
        if k.name == "AuthorizationKey" and not _HEX_KEY_RE.fullmatch(stored):
            return "Rejected"  # whitepaper §7.2 / A00.FR.205: 16..20 bytes, hexadecimal represented
        check = self._checks.get(k.name)
        if check is not None and not check(stored):
            return "Rejected"
        res = self._model.set(k.component, k.variable, stored, variable_instance=k.variable_instance,
                              force=k.mutability201 == "ReadOnly")
        if res in ("Accepted", "RebootRequired", "Rejected"):
            return res
        return "NotSupported"  # pragma: no cover - offered keys are always defined

    # -- typed access for the engine ---------------------------------------------------------------------------

    def get_int(self, key: str) -> int:
        """Integer value of an offered key (KeyError if not offered, ValueError if unset/not an integer)."""
        stored = self._stored(self._spec(key))
        if stored is None:
            raise ValueError(f"{key} is not set")
        return int(stored)

    def get_bool(self, key: str) -> bool:
        stored = self._stored(self._spec(key))
        if stored not in ("true", "false"):
            raise ValueError(f"{key} is not a set boolean")
        return stored == "true"

    def get_str(self, key: str) -> str:
        """Value in 1.6 form ("" if unset). For AuthorizationKey this is the secret: never log it."""
        k = self._spec(key)
        stored = self._stored(k)
        return "" if stored is None else self._to_16(k, stored)

    def get_list(self, key: str) -> list[str]:
        """Members of a CSL value, stripped (empty list if unset or empty)."""
        # read for every meter sample (the measurands): kept until a value of the model changes
        memo = self._list_memo.get(key)
        changes = self._model.changes
        if memo is None or memo[0] != changes:
            memo = self._list_memo[key] = (changes, tuple(split_list(self.get_str(key))))
        return list(memo[1])      # a new list: callers may change theirs

    def set_internal(self, key: str, value: str) -> None:
        """Station-side write (1.6 form), read-only keys included; still validated. Raises ValueError if invalid.

        Not subject to OCPP policy (SecurityProfile may be lowered here: whitepaper A00.FR.005 allows that only
        through means other than OCPP, and this is one).
        """
        k = self._spec(key)
        stored = self._to_store(k, value)
        res = None if stored is None else self._model.set(k.component, k.variable, stored,
                                                           variable_instance=k.variable_instance, force=True)
        if res not in ("Accepted", "RebootRequired"):
            raise ValueError(f"{k.name}: invalid value")  # never echo the value (AuthorizationKey)

    def keys(self) -> list[str]:
        """Names of the offered keys, in specification order."""
        return [k.name for k in self._keys.values()]

    def spec(self, key: str) -> Key16:
        """Properties of an offered key (KeyError if not offered)."""
        return self._spec(key)

    def readonly(self, key: str) -> bool:
        return self._spec(key).access == "R"

    @property
    def supported_profiles(self) -> list[str]:
        return list(self._profiles)

    @staticmethod
    def var_for(key: str) -> tuple[str, str, str]:
        """(component, variable, variable_instance) of any known 1.6 key (KeyError if unknown)."""
        k = _BY_NAME.get(key.casefold())
        if k is None:
            raise KeyError(key)
        return (k.component, k.variable, k.variable_instance)

    @staticmethod
    def key_for(component: str, variable: str, variable_instance: str = "") -> str | None:
        """The 1.6 key mapped onto a 2.0.1 variable, if any (case-insensitive)."""
        want = (component.casefold(), variable.casefold(), variable_instance.casefold())
        for k in KEYS16:
            if (k.component.casefold(), k.variable.casefold(), k.variable_instance.casefold()) == want:
                return k.name
        return None


def _unique_rotation_indices(value: str, _current: str | None) -> bool:
    """ConnectorPhaseRotation: at most one entry per connector index (§9.1.7 "0.RST, 1.RST, 2.RTS")."""
    idx = [m.split(".", 1)[0] for m in split_list(value)]
    return len({int(i) for i in idx}) == len(idx)
