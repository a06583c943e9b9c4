"""Unit tests of the pure station engine: injected clock, simulated hardware, real SQLite store, no sleeps."""
from __future__ import annotations

from datetime import datetime, timezone

import hypothesis
import hypothesis.strategies as st
import pytest

from secure_cp.engine import (Authorizer, AuthorizeRequest, Engine, StaticSettings, Status, StatusChanged,
                              TxMeterValues, TxStarted, TxStopped)
from secure_cp.hal.simulated import SimulatedHardware
from secure_cp.store import AuthCache, Database, KeyValue, Transactions

T0 = 1_800_000_000.0   # 2027-01-15T08:00:00Z


class World:
    def __init__(self, path, connectors=1, evse_of=None, **settings):
        self.t = T0
        self.evse_of = evse_of
        self.hw = SimulatedHardware(connectors, clock=lambda: self.t, max_power_w=3600.0)
        self.path = path
        self.settings = StaticSettings(**settings)
        self.open()

    def open(self):
        self.db = Database(self.path / "s.db")
        self.tx = Transactions(self.db)
        self.engine = Engine(self.hw, self.settings, self.tx, KeyValue(self.db, "engine"),
                             Authorizer(self.settings, AuthCache(self.db)), evse_of=self.evse_of)
        self.hw.set_listener(lambda ev: self.engine.on_hal(ev, self.t))
        self.engine.boot(self.t)
        self.engine.set_online(True, self.t)

    def advance(self, seconds):
        self.t += seconds
        self.engine.tick(self.t)

    def effects(self, kind=None):
        out = self.engine.drain()
        return [e for e in out if kind is None or isinstance(e, kind)]

    def statuses(self, cid=1):
        return [e.status for e in self.effects(StatusChanged) if e.connector_id == cid]


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.db.close()


def start_tx(w, tag="T1", cid=1):
    w.hw.ev_plug(cid)
    w.hw.present_tag(tag)
    assert [e.id_tag for e in w.effects(AuthorizeRequest)] == [tag]
    w.engine.on_authorize_result(tag, {"status": "Accepted"}, w.t)
    started = w.effects(TxStarted)
    assert len(started) == 1
    return started[0].tx_key


def test_boot_reports_every_connector(world):
    eff = world.effects(StatusChanged)
    assert [(e.connector_id, e.status) for e in eff] == [(1, Status.AVAILABLE), (0, Status.AVAILABLE)]


def test_session_energy_and_periodic_samples(tmp_path):
    w = World(tmp_path, sample_interval=10)
    key = start_tx(w)
    assert w.hw.connectors[1].permitted and w.hw.connectors[1].locked
    w.advance(9)
    assert w.effects(TxMeterValues) == []
    w.advance(1)
    mv = w.effects(TxMeterValues)
    assert len(mv) == 1 and mv[0].tx_key == key and mv[0].samples[0].context == "Sample.Periodic"
    assert mv[0].samples[0].values[0].value == 10   # 3.6 kW for 10 s = 10 Wh
    assert w.engine.next_deadline() == pytest.approx(w.t + 10)
    w.hw.present_tag("T1")
    stopped = w.effects(TxStopped)
    rec = w.tx.get(key)
    assert stopped and rec.stop_reason == "Local" and rec.meter_stop_wh == 10
    assert not w.hw.connectors[1].permitted and not w.hw.connectors[1].locked


def test_connection_timeout_clears_authorization(tmp_path):
    w = World(tmp_path, connection_timeout=30)
    w.effects()
    w.hw.present_tag("T1")
    w.engine.on_authorize_result("T1", {"status": "Accepted"}, w.t)
    assert w.statuses() == [Status.PREPARING]
    assert w.engine.next_deadline() == pytest.approx(w.t + 30)
    w.advance(29)
    assert w.statuses() == []
    w.advance(1)
    assert w.statuses() == [Status.AVAILABLE]
    w.hw.ev_plug(1)   # too late: no transaction
    assert w.effects(TxStarted) == []


def test_clock_aligned_samples_on_interval_boundaries(tmp_path):
    w = World(tmp_path, aligned_interval=900)
    # T0 is 08:00:00 UTC: the next boundary is 08:15:00
    assert w.engine.next_deadline() == pytest.approx(T0 + 900)
    w.advance(899)
    assert w.effects(TxMeterValues) == []
    w.advance(1)
    mv = w.effects(TxMeterValues)
    assert mv and mv[0].tx_key is None and mv[0].samples[0].context == "Sample.Clock"


def test_minimum_status_duration_suppresses_short_status(tmp_path):
    w = World(tmp_path, minimum_status_duration=5)
    w.effects()
    w.hw.ev_plug(1)
    w.hw.ev_plug(1, False)       # Preparing for 0 s: never reported
    w.advance(10)
    assert w.statuses() == []
    w.hw.ev_plug(1)
    w.advance(4)
    assert w.statuses() == []
    w.advance(1)
    assert w.statuses() == [Status.PREPARING]


def test_power_loss_ends_transaction_with_last_persisted_meter(tmp_path):
    w = World(tmp_path, sample_interval=10)
    key = start_tx(w)
    w.advance(10)                # sample persisted: 10 Wh
    w.t += 5                     # 5 more seconds of charging, never persisted: "power cut" now
    w.db.close()
    w.open()                     # reboot: no clean-shutdown mark
    stopped = w.effects(TxStopped)
    rec = w.tx.get(key)
    assert [s.tx_key for s in stopped] == [key]
    assert rec.stop_reason == "PowerLoss" and rec.meter_stop_wh == 10
    w.db.close()
    w.open()                     # its StopTransaction never reached the outbox: the engine asks again
    assert [s.tx_key for s in w.effects(TxStopped)] == [key]
    rec = w.tx.get(key)
    rec.extra.update(q_start=True, q_stop=True)   # what the protocol adapter records when it queues them
    w.tx.update(key, extra=rec.extra)
    w.db.close()
    w.open()                     # queued: a further boot leaves it alone
    assert w.effects(TxStopped) == [] and w.effects(TxStarted) == []


def test_clean_shutdown_ends_transaction_as_reboot(tmp_path):
    w = World(tmp_path)
    key = start_tx(w)
    w.engine.shutdown(w.t)
    w.db.close()
    w.open()
    assert w.tx.get(key).stop_reason == "Reboot"


def test_invalid_id_in_start_confirmation_stops_or_suspends(tmp_path):
    w = World(tmp_path, stop_on_invalid_id=True)
    key = start_tx(w)
    w.engine.on_tx_confirmed(key, {"status": "Blocked"}, w.t)
    assert w.tx.get(key).stop_reason == "DeAuthorized"
    w.db.close()
    w2 = World(tmp_path / "b", stop_on_invalid_id=False) if (tmp_path / "b").mkdir() is None else None
    key = start_tx(w2)
    w2.effects()
    w2.engine.on_tx_confirmed(key, {"status": "Invalid"}, w2.t)
    assert w2.statuses() == [Status.SUSPENDED_EVSE]
    assert not w2.hw.connectors[1].permitted and w2.tx.get(key).stopped_at is None
    w2.db.close()


def test_offline_rules(tmp_path):
    w = World(tmp_path, local_authorize_offline=True, allow_offline_tx_for_unknown_id=False)
    start_tx(w, "T1")                      # learned into the cache as Accepted
    w.hw.present_tag("T1")
    w.hw.ev_plug(1, False)
    w.effects()
    w.engine.set_online(False, w.t)
    w.hw.ev_plug(1)
    w.hw.present_tag("UNKNOWN")
    assert w.effects(TxStarted) == []      # unknown tag offline: refused
    w.hw.present_tag("T1")
    assert len(w.effects(TxStarted)) == 1  # cached tag offline: accepted without asking


def test_scheduled_unavailable_applies_after_transaction(tmp_path):
    w = World(tmp_path)
    key = start_tx(w)
    assert w.engine.change_availability(1, False, w.t) == "Scheduled"
    assert w.engine.status_of(1) == Status.CHARGING
    w.engine.remote_stop(key, w.t)
    assert w.engine.status_of(1) == Status.UNAVAILABLE
    assert w.engine.remote_start("T2", 1, w.t) is False


def test_emergency_stop_ends_all_transactions(tmp_path):
    w = World(tmp_path, connectors=2)
    k1 = start_tx(w, "T1", 1)
    w.hw.emergency_stop(True)
    assert w.tx.get(k1).stop_reason == "EmergencyStop"
    assert w.engine.status_of(1) == Status.FAULTED and w.engine.status_of(2) == Status.FAULTED
    assert w.engine.remote_start("T2", 2, w.t) is False
    w.hw.emergency_stop(False)
    assert w.engine.status_of(2) == Status.AVAILABLE


# ---- transaction start / stop points (OCPP 2.0.1 E01-E06, engine side; the 1.6 transaction is the default) -------
from secure_cp.engine.model import StopReason, TxUpdated   # noqa: E402
from secure_cp.v16.settings import Settings16              # noqa: E402


def accept(w, tag="T1"):
    """Answer the Authorize the engine asked for."""
    assert [e.id_tag for e in w.effects(AuthorizeRequest)] == [tag]
    w.engine.on_authorize_result(tag, {"status": "Accepted"}, w.t)


def updates(effects):
    return [e.trigger for e in effects if isinstance(e, TxUpdated)]


@pytest.mark.parametrize("point,trigger", [("EVConnected", "CablePluggedIn"), ("ParkingBayOccupancy", "EVDetected")])
def test_e01_fr_01_02_start_on_plug_then_authorized_update(tmp_path, point, trigger):
    """E01 S1/S2, E02: the plug starts the transaction without an identifier and without power; the identifier
    later is an update (Authorized) that closes the power path."""
    w = World(tmp_path, tx_start_points={point})
    w.effects()
    w.hw.ev_plug(1)
    started = w.effects(TxStarted)
    assert len(started) == 1
    rec = w.tx.get(started[0].tx_key)
    assert rec.id_tag == "" and rec.extra["trigger"] == trigger
    assert not w.hw.connectors[1].permitted and w.hw.connectors[1].locked
    assert w.engine.status_of(1) == Status.PREPARING
    w.hw.present_tag("T1")
    accept(w)
    eff = w.effects()
    assert updates(eff) == ["Authorized"] and not [e for e in eff if isinstance(e, TxStarted)]
    assert w.tx.get(rec.tx_key).id_tag == "T1" and w.hw.connectors[1].permitted
    assert w.engine.status_of(1) == Status.CHARGING


def test_e01_fr_03_start_on_authorized_then_cable_update(tmp_path):
    """E01 S3, E03: the identifier starts the transaction before the cable; the plug is an update
    (CablePluggedIn) that closes the power path and locks the cable."""
    w = World(tmp_path, tx_start_points={"Authorized"})
    w.hw.present_tag("T1")
    accept(w)
    started = w.effects(TxStarted)
    assert len(started) == 1 and w.tx.get(started[0].tx_key).id_tag == "T1"
    assert w.tx.get(started[0].tx_key).extra["trigger"] == "Authorized"
    assert not w.hw.connectors[1].permitted and not w.hw.connectors[1].locked
    w.advance(5)
    w.hw.ev_plug(1)
    assert updates(w.effects()) == ["CablePluggedIn"]
    assert w.hw.connectors[1].permitted and w.hw.connectors[1].locked


def test_e03_no_cable_within_connection_timeout_ends_the_transaction(tmp_path):
    w = World(tmp_path, tx_start_points={"Authorized"}, connection_timeout=30)
    w.hw.present_tag("T1")
    accept(w)
    key = w.effects(TxStarted)[0].tx_key
    assert w.engine.next_deadline() == pytest.approx(w.t + 30)
    w.advance(29)
    assert w.effects(TxStopped) == []
    w.advance(1)
    assert [e.tx_key for e in w.effects(TxStopped)] == [key]
    assert w.tx.get(key).stop_reason == StopReason.TIMEOUT.value


@pytest.mark.parametrize("point", ["PowerPathClosed", "EnergyTransfer", "DataSigned"])
def test_e01_fr_04_05_06_start_needs_plug_and_authorization(tmp_path, point):
    w = World(tmp_path, tx_start_points={point})
    w.hw.ev_plug(1)
    assert w.effects(TxStarted) == []
    w.hw.present_tag("T1")
    accept(w)
    started = w.effects(TxStarted)
    assert len(started) == 1 and w.tx.get(started[0].tx_key).extra["trigger"] == "Authorized"
    assert w.hw.connectors[1].permitted


def test_e06_stop_point_evconnected_only_deauthorize_keeps_transaction_until_unplug(tmp_path):
    """TxStopPoint EVConnected: the same tag again opens the power path (Updated Deauthorized) but the transaction
    goes on; the unplug ends it (EVDisconnected)."""
    w = World(tmp_path, tx_stop_points={"EVConnected"})
    key = start_tx(w)
    w.hw.present_tag("T1")
    eff = w.effects()
    assert updates(eff) == ["Deauthorized"] and not [e for e in eff if isinstance(e, TxStopped)]
    assert not w.hw.connectors[1].permitted and w.engine.tx_on(1).tx_key == key
    assert w.engine.status_of(1) == Status.PREPARING
    w.hw.ev_plug(1, False)
    assert [e.tx_key for e in w.effects(TxStopped)] == [key]
    assert w.tx.get(key).stop_reason == "EVDisconnected"


def test_e06_stop_point_authorized_only_unplug_keeps_transaction_tag_ends_it(tmp_path):
    # E10: StopTxOnEVSideDisconnect false keeps the transaction (true deauthorizes it, E09: see the next test)
    w = World(tmp_path, tx_stop_points={"Authorized"}, stop_on_ev_side_disconnect=False)
    key = start_tx(w)
    w.hw.ev_plug(1, False)
    eff = w.effects()
    assert updates(eff) == ["EVCommunicationLost"] and not [e for e in eff if isinstance(e, TxStopped)]
    w.hw.ev_plug(1)
    assert updates(w.effects()) == ["CablePluggedIn"]
    w.hw.present_tag("T1")
    assert [e.tx_key for e in w.effects(TxStopped)] == [key]
    assert w.tx.get(key).stop_reason == "Local"


def test_e09_stop_point_authorized_stop_tx_on_ev_side_disconnect_ends_on_unplug(tmp_path):
    """E09 / TC_E_17_CS: StopTxOnEVSideDisconnect deauthorizes the transaction; with Authorized as stop point that
    ends it (EVDisconnected), and UnlockOnEVSideDisconnect false keeps the cable locked (E09.FR.03)."""
    w = World(tmp_path, tx_stop_points={"Authorized"}, stop_on_ev_side_disconnect=True,
              unlock_on_ev_side_disconnect=False)
    key = start_tx(w)
    w.hw.ev_plug(1, False)
    assert [e.tx_key for e in w.effects(TxStopped)] == [key]
    assert w.tx.get(key).stop_reason == "EVDisconnected"
    assert w.hw.connectors[1].locked


@pytest.mark.parametrize("how", ["unplug", "tag"])
def test_e06_stop_point_power_path_closed_ends_on_either(tmp_path, how):
    w = World(tmp_path, tx_stop_points={"PowerPathClosed"})
    key = start_tx(w)
    if how == "unplug":
        w.hw.ev_plug(1, False)
    else:
        w.hw.present_tag("T1")
    assert [e.tx_key for e in w.effects(TxStopped)] == [key]


def test_e06_remote_stop_always_ends(tmp_path):
    w = World(tmp_path, tx_start_points={"EVConnected"}, tx_stop_points={"EVConnected"})
    w.hw.ev_plug(1)
    key = w.effects(TxStarted)[0].tx_key
    assert w.engine.remote_stop(key, w.t)
    assert w.tx.get(key).stop_reason == "Remote"


def test_remote_start_authorizes_a_transaction_waiting_for_its_identifier(tmp_path):
    w = World(tmp_path, tx_start_points={"EVConnected"}, authorize_remote_tx=False)
    w.hw.ev_plug(1)
    key = w.effects(TxStarted)[0].tx_key
    assert w.engine.remote_start("R1", 1, w.t)
    assert updates(w.effects()) == ["RemoteStart"]
    assert w.tx.get(key).id_tag == "R1" and w.hw.connectors[1].permitted


def test_e01_fr_14_one_transaction_per_evse(tmp_path):
    """Two connectors of one EVSE: while connector 1 has a transaction, connector 2 starts none."""
    w = World(tmp_path, connectors=2, evse_of={1: 1, 2: 1})
    start_tx(w, cid=1)
    w.hw.ev_plug(2)
    assert not w.engine.remote_start("T2", 2, w.t)
    w.hw.present_tag("T2", 2)
    assert w.effects(TxStarted) == [] and w.engine.tx_on(2) is None
    w.db.close()


def test_trigger_meter_with_measurands(world):
    world.engine.trigger_meter(1, world.t, measurands=["Energy.Active.Import.Register"])
    mv = world.effects(TxMeterValues)
    assert len(mv) == 1 and mv[0].samples[0].context == "Trigger"
    assert [v.measurand for v in mv[0].samples[0].values] == ["Energy.Active.Import.Register"]
    world.engine.trigger_meter(1, world.t, measurands=[])
    assert world.effects(TxMeterValues) == []


def test_c02_fr_03_answer_not_cached_when_asked(world):
    world.hw.present_tag("N1")
    world.effects()
    world.engine.on_authorize_result("N1", {"status": "Accepted"}, world.t, cache=False)
    assert world.engine.auth.cache.get("N1") is None
    world.hw.present_tag("N1")      # cancels the pending authorization
    world.hw.present_tag("C1")
    world.effects()
    world.engine.on_authorize_result("C1", {"status": "Accepted"}, world.t)
    assert world.engine.auth.cache.get("C1") is not None


class _FakeModel:
    def __init__(self, values):
        self.values = values

    def get(self, component, variable, **_):
        return self.values.get((component, variable))


class _FakeConfig:
    def __init__(self, model, bools):
        self.model, self.bools = model, bools

    def get_bool(self, key):
        return self.bools[key]

    def get_int(self, key):
        raise KeyError(key)

    def get_list(self, key):
        raise KeyError(key)


def test_settings16_points_follow_the_active_protocol():
    """1.6: the fixed 1.6 transaction; 2.0.1 (Engine.protocol -> use_protocol): TxCtrlr.TxStartPoint/TxStopPoint."""
    model = _FakeModel({("TxCtrlr", "TxStartPoint"): "EVConnected,Authorized", ("TxCtrlr", "TxStopPoint"): "EVConnected"})
    s = Settings16(_FakeConfig(model, {"StopTransactionOnEVSideDisconnect": False}))
    assert s.tx_start_points == {"PowerPathClosed"} and s.tx_stop_points == {"Authorized"}
    s.use_protocol("2.0.1")
    assert s.tx_start_points == {"EVConnected", "Authorized"} and s.tx_stop_points == {"EVConnected"}
    s.use_protocol("1.6")
    s._c.bools["StopTransactionOnEVSideDisconnect"] = True
    assert s.tx_stop_points == {"Authorized", "EVConnected"}


def test_engine_protocol_is_passed_to_the_settings(tmp_path):
    calls = []
    w = World(tmp_path)
    w.settings.use_protocol = calls.append
    w.engine.protocol = "2.0.1"
    assert calls == ["2.0.1"] and w.engine.protocol == "2.0.1"
    w.db.close()


# ------------------------------------------------------------------------------------ rfc3339 formatting
def _rfc3339_reference(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@hypothesis.settings(max_examples=500, deadline=None)
@hypothesis.given(st.lists(st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False),
                           min_size=1, max_size=8))
def test_rfc3339_matches_datetime_formatting(stamps: list[float]) -> None:
    """The per-second cached formatter gives exactly what datetime gives (ms truncated, µs rounded like it),
    whatever the order of the calls (the cache holds one second)."""
    from secure_cp.engine.model import rfc3339
    for ts in stamps + [s + 0.0004 for s in stamps] + [float(int(s)) + 0.9999996 for s in stamps]:
        assert rfc3339(ts) == _rfc3339_reference(ts)


def test_engine_refuses_inputs_before_boot(tmp_path):
    """DESIGN §1 (the engine is pure, boot() restores state first): inputs before boot() change nothing and start
    nothing; boot() then reads the input state itself (the car plugged in meanwhile: Preparing)."""
    w = World.__new__(World)
    w.t, w.evse_of, w.path = T0, None, tmp_path
    w.hw = SimulatedHardware(1, clock=lambda: w.t)
    w.settings = StaticSettings()
    w.db = Database(tmp_path / "s.db")
    w.tx = Transactions(w.db)
    w.engine = Engine(w.hw, w.settings, w.tx, KeyValue(w.db, "engine"), Authorizer(w.settings, AuthCache(w.db)))
    w.hw.set_listener(lambda ev: w.engine.on_hal(ev, w.t))
    assert not w.engine.booted
    w.hw.ev_plug(1)
    w.hw.present_tag("T1", 1)
    w.engine.trigger_meter(0, w.t)
    assert w.effects() == [] and w.tx.recent(10) == []
    w.engine.boot(w.t)
    assert w.engine.booted
    assert [(e.connector_id, e.status) for e in w.effects(StatusChanged)] == [(1, Status.PREPARING), (0, Status.AVAILABLE)]
    w.db.close()
