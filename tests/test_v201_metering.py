"""OCPP 2.0.1 J. Meter Values end to end: a real station (engine + 2.0.1 adapter + SQLite + websockets, simulated
hardware) against the strict CSMS, with intervals of a second.

Test names carry the OCA test case (Part 6 ``TC_J_*_CS``) or the Part 2 requirement (J01.FR.*, J02.FR.*). J03
(Charging Loop with metering information exchange) is ISO 15118 only (J03.FR.04) and does not apply to this
station, which has no ISO 15118 communication. Signed readings (TC_J_04_CS, TC_J_11_CS) are not implemented.
"""
from __future__ import annotations

import asyncio

from helpers import eventually
from secure_cp.engine.model import drop_intermediate, parse_rfc3339
from secure_cp.sim.csms import Csms
from test_v201_core import barrier, booted, ended, set_var, started

ENERGY = "Energy.Active.Import.Register"


def measurands(mv: dict) -> set[str]:
    """The measurands of a meterValue (an absent measurand is the energy register: Part 2 §2.50 SampledValueType)."""
    return {sv.get("measurand", ENERGY) for sv in mv["sampledValue"]}


def contexts(mv: dict) -> set[str]:
    return {sv.get("context", "Sample.Periodic") for sv in mv["sampledValue"]}


def meter_values(csms: Csms, after: int = 0, evse_id: int | None = None) -> list[dict]:
    return [r.payload for r in csms.received[after:] if r.action == "MeterValues"
            and (evse_id is None or r.payload["evseId"] == evse_id)]


def updated(csms: Csms, after: int = 0, trigger: str | None = None) -> list[dict]:
    return [r.payload for r in csms.received[after:] if r.action == "TransactionEvent"
            and r.payload["eventType"] == "Updated" and (trigger is None or r.payload["triggerReason"] == trigger)]


def on_boundary(timestamp: str, interval: int) -> bool:
    """A clock-aligned reading carries its interval boundary (counted from midnight UTC), not the send time."""
    t = parse_rfc3339(timestamp)
    return t == int(t) and int(t) % interval == 0


def kept(st, tx_id: str, context: str) -> int:
    """How many readings of ``context`` the transaction record holds for its Ended event (E06.FR.11)."""
    return sum(s["c"] == context for s in st.station.transactions.get(tx_id).extra.get("samples", []))


async def configure(csms: Csms, settings: list[tuple[str, str, str]]) -> None:
    for component, variable, value in settings:
        assert await set_var(csms, component, variable, value) == "Accepted", (component, variable, value)


async def charging(csms: Csms, st, connector: int = 1, tag: str = "TAG1") -> str:
    n = len(csms.received)
    st.hw.ev_plug(connector)
    st.hw.present_tag(tag, connector)
    return (await started(csms, after=n))["transactionInfo"]["transactionId"]


# ---- J01 Sending Meter Values not related to a transaction ---------------------------------------------------------
async def test_tc_j_01_clock_aligned_meter_values_no_transaction(csms, make_station):
    """TC_J_01_CS, J01.FR.02/05/06/07/08/14/17: with AlignedDataCtrlr.Interval > 0 and no transaction, a MeterValues
    per EVSE (evseId 1 and 2; this station has no main meter for evseId 0) at every interval, context Sample.Clock,
    one sampledValue per configured measurand, the timestamp on the interval boundary."""
    st = await booted(csms, make_station, connectors=2)
    await configure(csms, [("AlignedDataCtrlr", "Measurands", f"{ENERGY},Voltage,Current.Offered"),
                           ("AlignedDataCtrlr", "Interval", "1")])
    n = len(csms.received)
    await eventually(lambda: len(meter_values(csms, n, 1)) >= 3 and len(meter_values(csms, n, 2)) >= 3, 10,
                     "three clock-aligned MeterValues per EVSE")
    for evse in (1, 2):
        sent = meter_values(csms, n, evse)
        stamps = [p["meterValue"][0]["timestamp"] for p in sent]
        assert stamps == sorted(set(stamps)) and all(on_boundary(s, 1) for s in stamps), stamps
        for p in sent:
            assert len(p["meterValue"]) == 1
            assert measurands(p["meterValue"][0]) == {ENERGY, "Voltage", "Current.Offered"}
            assert contexts(p["meterValue"][0]) == {"Sample.Clock"}
    assert {p["evseId"] for p in meter_values(csms, n)} == {1, 2}
    assert not any(r.action == "TransactionEvent" for r in csms.received[n:])
    assert csms.violations == []
    await st.stop()


async def test_tc_j_02_clock_aligned_meter_values_transaction_ongoing(csms, make_station):
    """TC_J_02_CS, J01.FR.14/22: during a transaction the clock-aligned readings of its EVSE go as TransactionEvent
    Updated with triggerReason MeterValueClock and context Sample.Clock (no MeterValues for that EVSE any more);
    the idle EVSE keeps sending MeterValues."""
    st = await booted(csms, make_station, connectors=2)
    await configure(csms, [("AlignedDataCtrlr", "Measurands", f"{ENERGY},Power.Active.Import"),
                           ("AlignedDataCtrlr", "SendDuringIdle", "false"),
                           ("AlignedDataCtrlr", "Interval", "1")])
    tx_id = await charging(csms, st)
    await barrier(csms)
    n = len(csms.received)
    await eventually(lambda: len(updated(csms, n, "MeterValueClock")) >= 2 and len(meter_values(csms, n, 2)) >= 2,
                     10, "clock-aligned Updated events and MeterValues of the idle EVSE")
    before_stop = len(csms.received)
    st.hw.present_tag("TAG1", 1)
    await ended(csms, tx_id)
    # J02 §2.1 note: the EVSE of the transaction reports in TransactionEvent only
    assert not any(
        r.action == "MeterValues" and r.payload["evseId"] == 1 for r in csms.received[n:before_stop])
    clock = updated(csms, n, "MeterValueClock")
    for p in clock:
        assert p["transactionInfo"]["transactionId"] == tx_id
        assert len(p["meterValue"]) == 1 and on_boundary(p["timestamp"], 1)
        assert p["meterValue"][0]["timestamp"] == p["timestamp"]
        assert measurands(p["meterValue"][0]) == {ENERGY, "Power.Active.Import"}
        assert contexts(p["meterValue"][0]) == {"Sample.Clock"}
    stamps = [p["timestamp"] for p in clock]
    assert stamps == sorted(set(stamps))
    assert csms.violations == []


async def test_tc_j_06_send_during_idle_no_meter_values_during_transaction(csms, make_station):
    """TC_J_06_CS, J01.FR.20: AlignedDataCtrlr.SendDuringIdle true (a station-wide variable here): clock-aligned
    MeterValues while idle; while a transaction runs none at all (no MeterValues for any EVSE, no TransactionEvent
    with meterValue); after it ended they come back."""
    st = await booted(csms, make_station, connectors=2)
    await configure(csms, [("SampledDataCtrlr", "TxStartedMeasurands", ""),
                           ("SampledDataCtrlr", "TxUpdatedInterval", "0"),
                           ("AlignedDataCtrlr", "SendDuringIdle", "true"),
                           ("AlignedDataCtrlr", "Interval", "1")])
    n = len(csms.received)
    await eventually(lambda: len(meter_values(csms, n, 1)) >= 1, 10, "clock-aligned MeterValues while idle")
    tx_id = await charging(csms, st)
    await barrier(csms)
    during = len(csms.received)
    await asyncio.sleep(2.5)    # at least two interval boundaries with the transaction running
    st.hw.present_tag("TAG1", 1)
    end = await ended(csms, tx_id)
    stopped = len(csms.received)
    assert all(r.action != "MeterValues" for r in csms.received[during:stopped]), "MeterValues during the transaction"
    assert not any(r.action == "TransactionEvent" and "meterValue" in r.payload and r.payload is not end
                   for r in csms.received[during:stopped])
    await eventually(lambda: len(meter_values(csms, stopped, 1)) >= 1 and len(meter_values(csms, stopped, 2)) >= 1,
                     10, "clock-aligned MeterValues after the transaction")
    assert csms.violations == []


# ---- J02 Sending transaction related Meter Values -------------------------------------------------------------------
async def test_tc_j_07_started_carries_tx_started_measurands(csms, make_station):
    """TC_J_07_CS, E02.FR.09 / E01 / J02.FR.02/03/04: the Started event carries one meterValue, context
    Transaction.Begin, with exactly the SampledDataCtrlr.TxStartedMeasurands (here measurands that no other list
    asks for: the begin reading is taken for them)."""
    st = await booted(csms, make_station)
    await configure(csms, [("SampledDataCtrlr", "TxStartedMeasurands", f"{ENERGY},Voltage,Current.Offered"),
                           ("SampledDataCtrlr", "TxEndedMeasurands", "")])
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1", 1)
    start = await started(csms)
    assert len(start["meterValue"]) == 1
    mv = start["meterValue"][0]
    assert measurands(mv) == {ENERGY, "Voltage", "Current.Offered"}
    assert contexts(mv) == {"Transaction.Begin"}
    assert mv["timestamp"] == start["timestamp"]
    assert csms.violations == []


async def test_tc_j_09_updated_meter_value_periodic(csms, make_station):
    """TC_J_09_CS, J02.FR.10/11: SampledDataCtrlr.TxUpdatedInterval > 0 -> TransactionEvent Updated, triggerReason
    MeterValuePeriodic, one meterValue (timestamp = the event's) with context Sample.Periodic and exactly the
    TxUpdatedMeasurands; 0 stops them."""
    st = await booted(csms, make_station)
    await configure(csms, [("SampledDataCtrlr", "TxUpdatedMeasurands", f"{ENERGY},Power.Active.Import,SoC"),
                           ("SampledDataCtrlr", "TxUpdatedInterval", "1")])
    tx_id = await charging(csms, st)
    n = len(csms.received)
    await eventually(lambda: len(updated(csms, n, "MeterValuePeriodic")) >= 2, 10, "two periodic Updated events")
    for p in updated(csms, n, "MeterValuePeriodic"):
        assert p["transactionInfo"]["transactionId"] == tx_id and len(p["meterValue"]) == 1
        assert p["meterValue"][0]["timestamp"] == p["timestamp"]
        assert measurands(p["meterValue"][0]) == {ENERGY, "Power.Active.Import", "SoC"}
        assert contexts(p["meterValue"][0]) == {"Sample.Periodic"}
    energy = [sv["value"] for p in updated(csms, n, "MeterValuePeriodic") for sv in p["meterValue"][0]["sampledValue"]
              if sv.get("measurand", ENERGY) == ENERGY]
    assert energy == sorted(energy)   # J02.FR.16: registers never run backwards
    await configure(csms, [("SampledDataCtrlr", "TxUpdatedInterval", "0")])
    await barrier(csms)
    off = len(csms.received)
    await asyncio.sleep(1.5)
    await barrier(csms)
    assert updated(csms, off, "MeterValuePeriodic") == []
    st.hw.present_tag("TAG1", 1)
    await ended(csms, tx_id)
    assert csms.violations == []


async def test_tc_j_10_ended_carries_tx_ended_interval_samples(csms, make_station):
    """TC_J_10_CS, E06.FR.11, J02 §2.1: SampledDataCtrlr.TxEndedMeasurands taken every TxEndedInterval from the
    start, sent only in the Ended event: the begin reading, Sample.Periodic readings TxEndedInterval apart, and the
    Transaction.End one -- each with exactly the TxEndedMeasurands; nothing of it in Updated events (TxUpdatedInterval
    is 0). The Ended event carries every reading the transaction record kept."""
    st = await booted(csms, make_station)
    await configure(csms, [("SampledDataCtrlr", "TxUpdatedInterval", "0"),
                           ("SampledDataCtrlr", "TxEndedMeasurands", f"{ENERGY},Current.Import"),
                           ("SampledDataCtrlr", "TxEndedInterval", "1")])
    tx_id = await charging(csms, st)
    await eventually(lambda: kept(st, tx_id, "Sample.Periodic") >= 3, 10, "three TxEndedInterval readings kept")
    n_kept = len(st.station.transactions.get(tx_id).extra["samples"])
    st.hw.present_tag("TAG1", 1)
    end = await ended(csms, tx_id)
    values = end["meterValue"]
    kinds = [contexts(mv) for mv in values]
    assert kinds[0] == {"Transaction.Begin"} and kinds[-1] == {"Transaction.End"}
    assert all(k == {"Sample.Periodic"} for k in kinds[1:-1]) and len(values) - 2 >= 3
    assert len(values) in (n_kept + 1, n_kept + 2)   # + the end reading (and one more periodic one before it)
    assert all(measurands(mv) == {ENERGY, "Current.Import"} for mv in values)
    times = [parse_rfc3339(mv["timestamp"]) for mv in values]
    assert times == sorted(times)
    gaps = [round(b - a) for a, b in zip(times[:-2], times[1:-1])]
    assert gaps and all(g >= 1 for g in gaps)   # one reading per TxEndedInterval, no burst
    assert not any(p["triggerReason"] == "MeterValuePeriodic" for p in updated(csms))
    assert csms.violations == []


async def test_j02_tx_ended_samples_survive_a_restart(csms, make_station):
    """E06.FR.11 with TxEndedInterval, DESIGN §3: the readings for the Ended event live on the transaction record in
    SQLite; a station that goes down during the transaction ends it at the next boot, and that Ended event still
    carries the Sample.Periodic readings taken before."""
    st = await booted(csms, make_station)
    await configure(csms, [("SampledDataCtrlr", "TxUpdatedInterval", "0"),
                           ("SampledDataCtrlr", "TxEndedMeasurands", ENERGY),
                           ("SampledDataCtrlr", "TxEndedInterval", "1")])
    tx_id = await charging(csms, st)
    await eventually(lambda: kept(st, tx_id, "Sample.Periodic") >= 2, 10, "two TxEndedInterval readings kept")
    await st.stop()
    n = len(csms.received)
    await make_station(csms, protocols=["ocpp2.0.1"], data_dir=st.cfg.data_dir)
    end = await ended(csms, tx_id, after=n)
    kinds = [contexts(mv) for mv in end["meterValue"]]
    assert kinds[0] == {"Transaction.Begin"} and sum(k == {"Sample.Periodic"} for k in kinds) >= 2
    assert csms.violations == []


async def test_tc_j_03_ended_carries_clock_aligned_tx_ended_samples(csms, make_station):
    """TC_J_03_CS, J01 & E06.FR.11: AlignedDataCtrlr.TxEndedMeasurands every AlignedDataCtrlr.TxEndedInterval
    (clock-aligned: on the boundaries) go into the Ended event with context Sample.Clock; with
    AlignedDataCtrlr.Interval 0 and SampledDataCtrlr.TxEndedMeasurands empty nothing else is sampled."""
    st = await booted(csms, make_station)
    await configure(csms, [("SampledDataCtrlr", "TxUpdatedInterval", "0"),
                           ("SampledDataCtrlr", "TxEndedMeasurands", ""),
                           ("AlignedDataCtrlr", "Interval", "0"),
                           ("AlignedDataCtrlr", "SendDuringIdle", "false"),
                           ("AlignedDataCtrlr", "TxEndedMeasurands", f"{ENERGY},Voltage"),
                           ("AlignedDataCtrlr", "TxEndedInterval", "1")])
    tx_id = await charging(csms, st)
    await eventually(lambda: kept(st, tx_id, "Sample.Clock") >= 2, 10, "two clock-aligned TxEnded readings kept")
    n_clock = kept(st, tx_id, "Sample.Clock")
    st.hw.present_tag("TAG1", 1)
    end = await ended(csms, tx_id)
    clock = [mv for mv in end["meterValue"] if contexts(mv) == {"Sample.Clock"}]
    assert len(clock) in (n_clock, n_clock + 1)
    assert all(measurands(mv) == {ENERGY, "Voltage"} and on_boundary(mv["timestamp"], 1) for mv in clock)
    assert [mv["timestamp"] for mv in clock] == sorted({mv["timestamp"] for mv in clock})
    assert contexts(end["meterValue"][-1]) == {"Transaction.End"}
    assert meter_values(csms) == [] and updated(csms, trigger="MeterValueClock") == []
    assert csms.violations == []


# ---- device model: what the meter can measure -----------------------------------------------------------------------
async def test_b05_measurands_the_meter_cannot_provide_are_rejected(csms, make_station):
    """J01.FR.01/J02.FR.01 configured with SetVariables (B05.FR.02): a measurand list naming a measurand the
    simulated meter does not have (Frequency, RPM) is Rejected and the variable keeps its value; every list of the
    meter's measurands is Accepted."""
    await booted(csms, make_station)
    for component, variable in (("SampledDataCtrlr", "TxUpdatedMeasurands"), ("SampledDataCtrlr", "TxStartedMeasurands"),
                                ("SampledDataCtrlr", "TxEndedMeasurands"), ("AlignedDataCtrlr", "Measurands"),
                                ("AlignedDataCtrlr", "TxEndedMeasurands")):
        assert await set_var(csms, component, variable, f"{ENERGY},SoC") == "Accepted"
        assert await set_var(csms, component, variable, "Frequency") == "Rejected"
        assert await set_var(csms, component, variable, f"{ENERGY},RPM") == "Rejected"
        res = await csms.call("CP1", "GetVariables", {"getVariableData": [
            {"component": {"name": component}, "variable": {"name": variable}}]})
        assert res["getVariableResult"][0]["attributeValue"] == f"{ENERGY},SoC"
    assert csms.violations == []


def test_j02_fr_20_intermediate_samples_removed_first():
    """J02.FR.20: readings that do not fit are removed intermediate ones first (2nd, 4th, ...), the first and the last
    (Transaction.Begin / Transaction.End) always stay; without intermediate ones nothing changes."""
    assert drop_intermediate(["b", 1, 2, 3, 4, "e"]) == ["b", 2, 4, "e"]
    assert drop_intermediate(["b", 1, "e"]) == ["b", "e"]
    assert drop_intermediate(["b", "e"]) == ["b", "e"]
    assert drop_intermediate(["b", 1, 2, 3], keep_last=False) == ["b", 2]
