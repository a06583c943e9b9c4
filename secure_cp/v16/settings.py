"""EngineSettings read from the OCPP 1.6 configuration keys (which live in the shared device model).

The runtime gives the engine this one settings object whatever protocol is active. Only the transaction start /
stop points differ by protocol: 1.6 has a fixed transaction (starts when plugged AND authorized, ends on
de-authorization and, with StopTransactionOnEVSideDisconnect, on unplug), 2.0.1 configures it in
TxCtrlr.TxStartPoint / TxStopPoint. The engine tells this object which protocol is active through
``use_protocol`` (called by the ``Engine.protocol`` setter, which the runtime sets on every connection), so
the choice follows the negotiated version without the runtime or the adapters knowing about it.
"""
from __future__ import annotations

from ..devicemodel.model import split_list

#: The 2.0.1 default of TxCtrlr.TxStartPoint / TxStopPoint when the variable cannot be read.
DEFAULT_START_201 = frozenset({"PowerPathClosed"})
DEFAULT_STOP_201 = frozenset({"EVConnected", "Authorized"})


class Settings16:
    def __init__(self, config, *, protocol: str = "1.6"):
        self._c = config
        self.protocol = protocol

    def use_protocol(self, protocol: str) -> None:
        """The active protocol ("1.6" / "2.0.1"): decides where tx_start_points / tx_stop_points come from."""
        self.protocol = protocol

    def _get_201(self, component: str, variable: str) -> str | None:
        """A 2.0.1 variable without a 1.6 key (None: not defined or unreadable)."""
        model = getattr(self._c, "model", None) or getattr(self._c, "_model", None)
        return model.get(component, variable) if model is not None else None

    def _points_201(self, variable: str, default: frozenset[str]) -> set[str]:
        raw = self._get_201("TxCtrlr", variable)
        return set(split_list(raw)) if raw is not None else set(default)

    def _int_201(self, component: str, variable: str, default: int) -> int:
        try:
            return int(self._get_201(component, variable) or default)
        except ValueError:
            return default

    # Metering that differs by protocol (Part 2 J §2.1/§2.2): 2.0.1 keeps the readings for the end of a transaction
    # at intervals of their own and knows TxStartedMeasurands and SendDuringIdle; 1.6 takes StopTxn*Data at
    # MeterValueSampleInterval / ClockAlignedDataInterval (1.6 §9.1.25-§9.1.28) and always sends aligned data.
    @property
    def stop_txn_sampled_interval(self) -> int:
        if self.protocol == "2.0.1":
            return self._int_201("SampledDataCtrlr", "TxEndedInterval", 0)
        return self.sample_interval

    @property
    def stop_txn_aligned_interval(self) -> int:
        if self.protocol == "2.0.1":
            return self._int_201("AlignedDataCtrlr", "TxEndedInterval", 0)
        return self.aligned_interval

    @property
    def tx_started_measurands(self) -> list[str]:
        if self.protocol == "2.0.1":
            return split_list(self._get_201("SampledDataCtrlr", "TxStartedMeasurands") or "")
        # 1.6: StartTxnSampledData (OCA note §3.3.4, offered by a station that signs), the same variable
        if "StartTxnSampledData" in self._c.keys():
            return self._c.get_list("StartTxnSampledData")
        return []

    @property
    def aligned_send_during_idle(self) -> bool:
        if self.protocol == "2.0.1":
            return (self._get_201("AlignedDataCtrlr", "SendDuringIdle") or "").strip().lower() == "true"
        return False

    @property
    def tx_start_points(self) -> set[str]:
        if self.protocol == "2.0.1":
            return self._points_201("TxStartPoint", DEFAULT_START_201)
        return {"PowerPathClosed"}

    @property
    def tx_stop_points(self) -> set[str]:
        if self.protocol == "2.0.1":
            return self._points_201("TxStopPoint", DEFAULT_STOP_201)
        return {"Authorized"} | ({"EVConnected"} if self.stop_on_ev_side_disconnect else set())

    def _int(self, key: str, default: int) -> int:
        try:
            return self._c.get_int(key)
        except (KeyError, ValueError, TypeError):
            return default

    def _bool(self, key: str, default: bool) -> bool:
        try:
            return self._c.get_bool(key)
        except (KeyError, ValueError, TypeError):
            return default

    def _list(self, key: str) -> list[str]:
        try:
            return self._c.get_list(key)
        except (KeyError, ValueError, TypeError):
            return []

    connection_timeout = property(lambda s: s._int("ConnectionTimeOut", 60))
    stop_on_ev_side_disconnect = property(lambda s: s._bool("StopTransactionOnEVSideDisconnect", True))
    unlock_on_ev_side_disconnect = property(lambda s: s._bool("UnlockConnectorOnEVSideDisconnect", True))
    stop_on_invalid_id = property(lambda s: s._bool("StopTransactionOnInvalidId", True))
    max_energy_on_invalid_id = property(lambda s: s._int("MaxEnergyOnInvalidId", 0))
    authorize_remote_tx = property(lambda s: s._bool("AuthorizeRemoteTxRequests", True))
    local_authorize_offline = property(lambda s: s._bool("LocalAuthorizeOffline", True))
    local_pre_authorize = property(lambda s: s._bool("LocalPreAuthorize", False))
    allow_offline_tx_for_unknown_id = property(lambda s: s._bool("AllowOfflineTxForUnknownId", False))

    @property
    def disable_remote_authorization(self) -> bool:
        """2.0.1 AuthCtrlr.DisableRemoteAuthorization (no 1.6 key: a 1.6 connection always asks the Central System)."""
        raw = self._get_201("AuthCtrlr", "DisableRemoteAuthorization") if self.protocol == "2.0.1" else None
        return (raw or "").strip().lower() == "true"

    auth_cache_enabled = property(lambda s: s._bool("AuthorizationCacheEnabled", True))

    @property
    def auth_cache_lifetime(self) -> int | None:
        """2.0.1 AuthCacheCtrlr.LifeTime in s (C10.FR.08); 1.6 has no such key (§3.5.1: entries stay until evicted)."""
        if self.protocol != "2.0.1":
            return None
        raw = self._get_201("AuthCacheCtrlr", "LifeTime")
        try:
            return max(int(raw), 0) if raw is not None else None
        except ValueError:
            return None

    @property
    def auth_enabled(self) -> bool:
        """2.0.1 AuthCtrlr.Enabled ("If set to false, no authorization is done before starting a transaction or when
        reading an idToken"); a 1.6 connection always authorizes."""
        raw = self._get_201("AuthCtrlr", "Enabled") if self.protocol == "2.0.1" else None
        return (raw or "true").strip().lower() != "false"

    sample_interval = property(lambda s: s._int("MeterValueSampleInterval", 60))
    aligned_interval = property(lambda s: s._int("ClockAlignedDataInterval", 0))
    sampled_measurands = property(lambda s: s._list("MeterValuesSampledData"))
    aligned_measurands = property(lambda s: s._list("MeterValuesAlignedData"))
    stop_txn_sampled_measurands = property(lambda s: s._list("StopTxnSampledData"))
    stop_txn_aligned_measurands = property(lambda s: s._list("StopTxnAlignedData"))
    minimum_status_duration = property(lambda s: s._int("MinimumStatusDuration", 0))
    heartbeat_interval = property(lambda s: s._int("HeartbeatInterval", 300))
    transaction_message_attempts = property(lambda s: s._int("TransactionMessageAttempts", 3))
    transaction_message_retry_interval = property(lambda s: s._int("TransactionMessageRetryInterval", 60))
    websocket_ping_interval = property(lambda s: s._int("WebSocketPingInterval", 0))
