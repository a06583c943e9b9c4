"""What the OCPP 2.0.1 adapter reads from the device model (the variables the engine does not use).

The engine reads its settings through the runtime's ``EngineSettings`` object; the adapter needs a few more
2.0.1 variables (retries, offline threshold, the Started/Ended measurands, report limits). They are read on
every use, not cached, so a SetVariables (or a 1.6 ChangeConfiguration of a shared variable) takes effect at once.
A variable that is missing or unreadable falls back to the Part 2 default.
"""
from __future__ import annotations

from ..devicemodel import DeviceModel
from ..devicemodel.model import split_list


class Settings201:
    def __init__(self, model: DeviceModel):
        self._m = model

    def _int(self, component: str, variable: str, default: int, instance: str = "") -> int:
        raw = self._m.get(component, variable, variable_instance=instance)
        try:
            return int(raw) if raw is not None else default
        except ValueError:
            return default

    def _bool(self, component: str, variable: str, default: bool) -> bool:
        raw = self._m.get(component, variable)
        return default if raw is None else raw.strip().lower() == "true"

    def _list(self, component: str, variable: str) -> list[str]:
        raw = self._m.get(component, variable)
        return split_list(raw) if raw else []

    # OCPPCommCtrlr (Part 2 §2.1)
    heartbeat_interval = property(lambda s: s._int("OCPPCommCtrlr", "HeartbeatInterval", 300))
    message_attempts = property(lambda s: s._int("OCPPCommCtrlr", "MessageAttempts", 3, "TransactionEvent"))
    message_attempt_interval = property(
        lambda s: s._int("OCPPCommCtrlr", "MessageAttemptInterval", 60, "TransactionEvent"))
    offline_threshold = property(lambda s: s._int("OCPPCommCtrlr", "OfflineThreshold", 60))
    #: seconds; a larger clock change is the security event SettingSystemTime (0: not reported)
    time_adjustment_reporting_threshold = property(
        lambda s: s._int("ClockCtrlr", "TimeAdjustmentReportingThreshold", 20))
    # SampledDataCtrlr / AlignedDataCtrlr (Part 2 §2.7)
    tx_started_measurands = property(lambda s: s._list("SampledDataCtrlr", "TxStartedMeasurands"))
    tx_updated_measurands = property(lambda s: s._list("SampledDataCtrlr", "TxUpdatedMeasurands"))
    tx_ended_measurands = property(lambda s: s._list("SampledDataCtrlr", "TxEndedMeasurands"))
    tx_ended_interval = property(lambda s: s._int("SampledDataCtrlr", "TxEndedInterval", 0))
    aligned_tx_ended_measurands = property(lambda s: s._list("AlignedDataCtrlr", "TxEndedMeasurands"))
    aligned_measurands = property(lambda s: s._list("AlignedDataCtrlr", "Measurands"))
    # AuthCacheCtrlr (Part 2 §2.4)
    auth_cache_enabled = property(lambda s: s._bool("AuthCacheCtrlr", "Enabled", True))
    # DeviceDataCtrlr (Part 2 §2.1.16-§2.1.19): also the size of each NotifyReport part we send
    report_items_per_message = property(lambda s: max(1, s._int("DeviceDataCtrlr", "ItemsPerMessage", 100,
                                                                   "GetReport")))
    report_bytes_per_message = property(lambda s: max(1, s._int("DeviceDataCtrlr", "BytesPerMessage", 65536,
                                                                   "GetReport")))
