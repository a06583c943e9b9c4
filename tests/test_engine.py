"""Unit tests of the pure station engine: injected clock, simulated hardware, real SQLite store, no sleeps."""
from __future__ import annotations

import pytest

from secure_cp.engine import (Authorizer, AuthorizeRequest, Engine, StaticSettings, Status, StatusChanged,
                              TxMeterValues, TxStarted, TxStopped)
from secure_cp.hal.simulated import SimulatedHardware
from secure_cp.store import AuthCache, Database, KeyValue, Transactions

T0 = 1_800_000_000.0   # 2027-01-15T08:00:00Z


class World:
    def __init__(self, path, connectors=1, **settings):
        self.t = T0
        self.hw = SimulatedHardware(connectors, clock=lambda: self.t, max_power_w=3600.0)
        self.path = path
        self.settings = StaticSettings(**settings)
        self.open()

    def open(self):
        self.db = Database(self.path / "s.db")
        self.tx = Transactions(self.db)
        self.engine = Engine(self.hw, self.settings, self.tx, KeyValue(self.db, "engine"),
                             Authorizer(self.settings, AuthCache(self.db)))
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
