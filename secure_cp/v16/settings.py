"""EngineSettings read from the OCPP 1.6 configuration keys (which live in the shared device model)."""
from __future__ import annotations


class Settings16:
    def __init__(self, config):
        self._c = config

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
    auth_cache_enabled = property(lambda s: s._bool("AuthorizationCacheEnabled", True))
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
