"""What the engine needs to know from configuration, as one typed protocol.

The 1.6 adapter implements it on top of the 1.6 configuration keys, the 2.0.1 adapter on top of the device
model; both read the same stored variables, so a value set in one protocol holds in the other.
"""
from __future__ import annotations

from typing import Protocol


class EngineSettings(Protocol):
    connection_timeout: int            # s: authorized/plugged but the other half never came
    stop_on_ev_side_disconnect: bool
    unlock_on_ev_side_disconnect: bool
    stop_on_invalid_id: bool
    max_energy_on_invalid_id: int      # Wh (0 = none)
    authorize_remote_tx: bool
    local_authorize_offline: bool
    local_pre_authorize: bool
    allow_offline_tx_for_unknown_id: bool
    # 2.0.1 AuthCtrlr.DisableRemoteAuthorization: no AuthorizeRequest at all, only the cache and the local list
    # decide (overrules C01.FR.02/05, Part 6 TC_E_52_CS); 1.6 has no such key: always False
    disable_remote_authorization: bool
    auth_cache_enabled: bool
    # 2.0.1 AuthCacheCtrlr.LifeTime (C10.FR.08): s an entry without cacheExpiryDateTime stays in the cache after
    # its last use; None: no such limit (1.6)
    auth_cache_lifetime: int | None
    # 2.0.1 AuthCtrlr.Enabled: False = no authorization at all, every presented identifier is accepted as it is
    # (Part 2 appendix §2.3); 1.6 has no such key: always True
    auth_enabled: bool
    sample_interval: int               # s, 0 = off
    aligned_interval: int              # s, 0 = off
    sampled_measurands: list[str]
    aligned_measurands: list[str]
    stop_txn_sampled_measurands: list[str]
    stop_txn_aligned_measurands: list[str]
    # The readings kept for the end of a transaction (1.6 StopTransaction transactionData, 2.0.1 TransactionEvent
    # Ended): every stop_txn_sampled_interval s from the start and at every stop_txn_aligned_interval clock boundary
    # (0 = none). 1.6 takes them at MeterValueSampleInterval / ClockAlignedDataInterval, 2.0.1 has
    # SampledDataCtrlr.TxEndedInterval / AlignedDataCtrlr.TxEndedInterval.
    stop_txn_sampled_interval: int
    stop_txn_aligned_interval: int
    tx_started_measurands: list[str]   # the begin reading of a transaction (2.0.1 TxStartedMeasurands; 1.6: none)
    # 2.0.1 AlignedDataCtrlr.SendDuringIdle: no clock-aligned values are sent while any transaction runs
    # (J01.FR.20); 1.6 always sends them
    aligned_send_during_idle: bool
    minimum_status_duration: int       # s
    # Transaction start/stop points (OCPP 2.0.1 TxCtrlr.TxStartPoint / TxStopPoint member names, Part 2 E §1.1.2).
    # A transaction starts when ANY start point holds and ends when a stop point's condition ends. The OCPP 1.6
    # transaction is {"PowerPathClosed"} / {"Authorized"} (+ "EVConnected" with StopTransactionOnEVSideDisconnect).
    tx_start_points: set[str]
    tx_stop_points: set[str]


class StaticSettings:
    """Plain-attribute settings (defaults as a fresh 1.6 station would have them); handy for unit tests."""

    def __init__(self, **overrides):
        self.connection_timeout = 60
        self.stop_on_ev_side_disconnect = True
        self.unlock_on_ev_side_disconnect = True
        self.stop_on_invalid_id = True
        self.max_energy_on_invalid_id = 0
        self.authorize_remote_tx = True
        self.local_authorize_offline = True
        self.local_pre_authorize = False
        self.allow_offline_tx_for_unknown_id = False
        self.disable_remote_authorization = False
        self.auth_cache_enabled = True
        self.auth_cache_lifetime: int | None = None
        self.auth_enabled = True
        self.sample_interval = 60
        self.aligned_interval = 0
        self.sampled_measurands = ["Energy.Active.Import.Register"]
        self.aligned_measurands = ["Energy.Active.Import.Register"]
        self.stop_txn_sampled_measurands = []
        self.stop_txn_aligned_measurands = []
        self._stop_txn_sampled_interval: int | None = None   # None: as in 1.6, sample_interval
        self._stop_txn_aligned_interval: int | None = None   # None: as in 1.6, aligned_interval
        self.tx_started_measurands = []
        self.aligned_send_during_idle = False
        self.minimum_status_duration = 0
        self.tx_start_points = {"PowerPathClosed"}
        self._tx_stop_points: set[str] | None = None     # None: the 1.6 rule, from stop_on_ev_side_disconnect
        for k, v in overrides.items():
            if not hasattr(self, k):
                raise AttributeError(k)
            setattr(self, k, v)

    @property
    def tx_stop_points(self) -> set[str]:
        if self._tx_stop_points is not None:
            return set(self._tx_stop_points)
        return {"Authorized"} | ({"EVConnected"} if self.stop_on_ev_side_disconnect else set())

    @tx_stop_points.setter
    def tx_stop_points(self, value: set[str]) -> None:
        self._tx_stop_points = set(value)

    @property
    def stop_txn_sampled_interval(self) -> int:
        return self.sample_interval if self._stop_txn_sampled_interval is None else self._stop_txn_sampled_interval

    @stop_txn_sampled_interval.setter
    def stop_txn_sampled_interval(self, value: int) -> None:
        self._stop_txn_sampled_interval = value

    @property
    def stop_txn_aligned_interval(self) -> int:
        return self.aligned_interval if self._stop_txn_aligned_interval is None else self._stop_txn_aligned_interval

    @stop_txn_aligned_interval.setter
    def stop_txn_aligned_interval(self, value: int) -> None:
        self._stop_txn_aligned_interval = value
