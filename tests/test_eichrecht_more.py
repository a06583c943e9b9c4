"""Eichrecht (issue #5), the rest of the OCA application note "Signed Meter Values in OCPP" v1.0 end to end against
the strict CSMS with the simulated signing meter: signed intermediate readings (Table 20, §3.3.6/§3.3.8 and
§4.3.4/§4.3.7), 1.6 StartTxnSampledData (§3.3.4/§3.3.5), 2.0.1 TxStartPoint DataSigned (Part 2 §2.6.6.1, E01 S4,
TC_E_11_CS) and the time-range export (`secure-cp export --from/--to`) read back by `secure-cp audit`."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from secure_cp.eichrecht.legallog import LegalLog
from secure_cp.eichrecht.meterkeys import oca_public_key
from secure_cp.eichrecht.ocmf import OcmfRecord
from secure_cp.eichrecht.ocpp import EVENT_MISSING

from helpers import booted, eventually
from test_eichrecht_ocpp import booted201, meter_fails_at, meter_slow_at, security_types, session, signed_of
from test_v201_core import set_var

pyocmf = pytest.importorskip("pyocmf")


def meter_values(csms, context: str) -> list[dict]:
    """The sampledValues of every MeterValues.req with ``context``."""
    return [sv for r in csms.received if r.action == "MeterValues" for mv in r.payload["meterValue"]
            for sv in mv["sampledValue"] if sv.get("context") == context]


def know_key(csms, st) -> None:
    """The CSMS knows the meter's key (MeterPublicKey1 / FiscalMetering.PublicKey) for values sent without one."""
    csms.meter_public_keys["CP1"] = oca_public_key(st.hw.meter_public_key(1))


def pyocmf_ok(raw: str, st) -> bool:
    return bool(pyocmf.OCMF.from_string(raw).verify_signature(st.hw.meter_public_key(1).hex()))


async def test_16_signed_periodic_readings_sampled_data_sign_updated_readings(csms, make_station):
    """OCA note §3.1.3/§3.3.6, Table 20 column "Periodic Intermediate": with SampledDataSignReadings and
    SampledDataSignUpdatedReadings (now read-write) every MeterValues.req of context Sample.Periodic in the
    transaction carries the meter's signed value (format SignedData, TX C) next to the unsigned energy register; each
    is in the legal log (context Sample.Periodic) byte for byte and verifies (CSMS and pyocmf)."""
    st = await booted(csms, make_station, eichrecht_mode="meter",
                      ocpp={"MeterValueSampleInterval": "1", "MeterValuesSampledData": "Energy.Active.Import.Register"})
    res = await csms.call("CP1", "ChangeConfiguration", {"key": "SampledDataSignUpdatedReadings", "value": "true"})
    assert res["status"] == "Accepted"
    know_key(csms, st)
    await session(csms, st, seconds=2.5)
    stop = await csms.wait_for("StopTransaction")
    periodic = meter_values(csms, "Sample.Periodic")
    signed = [sv for sv in periodic if sv.get("format") == "SignedData"]
    unsigned = [sv for sv in periodic if sv.get("format") != "SignedData"]
    assert signed and len(unsigned) == len(signed)
    checks = [v for v in signed_of(csms, "MeterValues") if v.context == "Sample.Periodic"]
    assert len(checks) == len(signed) and all(v.verified for v in checks), checks
    logged = [r for r in LegalLog(st.station.db).of_transaction(stop.payload["transactionId"])
              if r.context == "Sample.Periodic"]
    assert [r.raw for r in logged] == [v.ocmf for v in checks]
    assert all(OcmfRecord.parse(r.raw).readings[0].tx == "C" and pyocmf_ok(r.raw, st) for r in logged)
    assert csms.violations == []


async def test_16_aligned_data_sign_updated_readings_false_keeps_clock_values_unsigned(csms, make_station):
    """Table 20: SampledDataSignUpdatedReadings false (default) leaves the periodic values unsigned; nothing but the
    begin and end records reaches the legal log."""
    st = await booted(csms, make_station, eichrecht_mode="meter",
                      ocpp={"MeterValueSampleInterval": "1", "MeterValuesSampledData": "Energy.Active.Import.Register"})
    await session(csms, st, seconds=1.5)
    stop = await csms.wait_for("StopTransaction")
    periodic = meter_values(csms, "Sample.Periodic")
    assert periodic and not [sv for sv in periodic if sv.get("format") == "SignedData"]
    contexts = [r.context for r in LegalLog(st.station.db).of_transaction(stop.payload["transactionId"])]
    assert contexts == ["Transaction.Begin", "Transaction.End"]


async def test_16_signed_periodic_meter_too_slow_sends_unsigned_values(csms, make_station):
    """A meter that does not sign an intermediate reading within [eichrecht] end_timeout: the unsigned values go out
    without a signed one (nothing made up) and the security log says why (SignedMeterValueMissing)."""
    st = await booted(csms, make_station, eichrecht_mode="meter", eichrecht_end_timeout=0.3,
                      ocpp={"MeterValueSampleInterval": "1", "MeterValuesSampledData": "Energy.Active.Import.Register",
                            "SampledDataSignUpdatedReadings": "true"})
    with meter_slow_at(st, "C", 3):
        await session(csms, st, seconds=1.6)
        await csms.wait_for("StopTransaction")
    periodic = meter_values(csms, "Sample.Periodic")
    assert periodic and not [sv for sv in periodic if sv.get("format") == "SignedData"]
    assert EVENT_MISSING in security_types(st)


async def test_16_start_txn_sampled_data_one_begin_message_signed_and_unsigned(csms, make_station):
    """OCA note §3.3.4/§3.3.5: StartTxnSampledData with the energy register and the power: ONE MeterValues.req after
    StartTransaction.req, context Transaction.Begin, the energy register as the meter's signed value (SignedData,
    verified) and the power unsigned; no unsigned energy value beside the signed one."""
    st = await booted(csms, make_station, eichrecht_mode="meter",
                      ocpp={"StartTxnSampledData": "Energy.Active.Import.Register,Power.Active.Import"})
    await session(csms, st)
    stop = await csms.wait_for("StopTransaction")
    begin_msgs = [r for r in csms.received if r.action == "MeterValues"]
    assert len(begin_msgs) == 1
    start = next(i for i, r in enumerate(csms.received) if r.action == "StartTransaction")
    assert csms.received.index(begin_msgs[0]) > start
    svs = [sv for mv in begin_msgs[0].payload["meterValue"] for sv in mv["sampledValue"]]
    assert {sv["context"] for sv in svs} == {"Transaction.Begin"}
    assert sorted((sv.get("measurand"), sv.get("format", "Raw")) for sv in svs) == [
        ("Energy.Active.Import.Register", "SignedData"), ("Power.Active.Import", "Raw")]
    begin = [v for v in signed_of(csms, "MeterValues") if v.context == "Transaction.Begin"]
    assert len(begin) == 1 and begin[0].verified
    assert len(signed_of(csms, "StopTransaction")) == 2
    assert stop.payload["transactionId"] == begin_msgs[0].payload["transactionId"]


async def test_16_start_txn_sampled_data_unsigned_when_the_meter_fails(csms, make_station):
    """§3.3.4 with a meter that fails the begin reading: the Transaction.Begin MeterValues.req still goes out, with
    the unsigned energy register only (no signed value made up)."""
    st = await booted(csms, make_station, eichrecht_mode="meter")
    meter_fails_at(st, "B")
    await session(csms, st)
    await csms.wait_for("StopTransaction")
    svs = meter_values(csms, "Transaction.Begin")
    assert len(svs) == 1 and svs[0].get("format", "Raw") == "Raw"
    assert svs[0]["measurand"] == "Energy.Active.Import.Register"
    assert EVENT_MISSING in security_types(st)


async def test_tc_j_201_signed_periodic_updated_sign_updated_readings(csms, make_station):
    """2.0.1 (OCA note §4.1.1/§4.3.7, Part 2 J02 signedMeterValue): SampledDataCtrlr.SignUpdatedReadings true: the
    Updated MeterValuePeriodic events carry a signedMeterValue on the energy register sampledValue (the unsigned
    value beside it), verified by the CSMS and pyocmf, logged as Sample.Periodic."""
    st = await booted201(csms, make_station)
    assert await set_var(csms, "SampledDataCtrlr", "SignUpdatedReadings", "true") == "Accepted"
    assert await set_var(csms, "SampledDataCtrlr", "TxUpdatedInterval", "1") == "Accepted"
    know_key(csms, st)
    await session(csms, st, seconds=2.5)
    ended = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
    periodic = [r.payload for r in csms.received if r.action == "TransactionEvent"
                and r.payload["triggerReason"] == "MeterValuePeriodic"]
    signed = [sv for p in periodic for mv in p["meterValue"] for sv in mv["sampledValue"] if "signedMeterValue" in sv]
    assert signed and all(sv["context"] == "Sample.Periodic" and "value" in sv for sv in signed)
    checks = [v for v in signed_of(csms, "TransactionEvent") if v.context == "Sample.Periodic"]
    assert len(checks) == len(signed) and all(v.verified for v in checks), checks
    tx_id = ended.payload["transactionInfo"]["transactionId"]
    logged = [r for r in LegalLog(st.station.db).of_transaction(tx_id) if r.context == "Sample.Periodic"]
    assert [r.raw for r in logged] == [v.ocmf for v in checks]
    assert all(pyocmf_ok(r.raw, st) for r in logged)
    assert not csms.transactions201[tx_id].seq_gaps()
    assert csms.violations == []


async def test_tc_e_11_cs_tx_start_point_data_signed(csms, make_station):
    """TC_E_11_CS / Part 2 §2.6.6.1 (E01 S4): TxStartPoint DataSigned: the transaction starts when the signed begin
    value has been received: TransactionEvent Started with triggerReason SignedDataReceived and the signed value
    (context Transaction.Begin) in its meterValue; no separate Updated SignedDataReceived; Ended carries the begin
    and end values. DataSigned stays refused as a TxStopPoint (§2.6.6.2: no meaning there)."""
    st = await booted201(csms, make_station)
    assert await set_var(csms, "TxCtrlr", "TxStartPoint", "DataSigned") == "Accepted"
    assert await set_var(csms, "TxCtrlr", "TxStopPoint", "DataSigned") == "Rejected"
    know_key(csms, st)
    await session(csms, st)
    ended = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
    events = [r.payload for r in csms.received if r.action == "TransactionEvent"]
    started = [p for p in events if p["eventType"] == "Started"]
    assert len(started) == 1 and started[0]["triggerReason"] == "SignedDataReceived"
    assert started[0]["seqNo"] == 0
    signed = [sv for mv in started[0]["meterValue"] for sv in mv["sampledValue"] if "signedMeterValue" in sv]
    assert [sv["context"] for sv in signed] == ["Transaction.Begin"]
    assert not [p for p in events if p["eventType"] == "Updated" and p["triggerReason"] == "SignedDataReceived"]
    contexts = [sv["context"] for mv in ended.payload["meterValue"] for sv in mv["sampledValue"]
                if "signedMeterValue" in sv]
    assert contexts == ["Transaction.Begin", "Transaction.End"]
    checks = signed_of(csms, "TransactionEvent")
    assert len(checks) == 2 and all(v.verified for v in checks), checks
    assert csms.violations == []


async def test_tc_e_11_cs_data_signed_meter_fails_still_starts(csms, make_station):
    """TxStartPoint DataSigned with a meter that cannot sign the begin reading: the Started goes out without a signed
    value (triggerReason of the start the engine saw, nothing made up) and the security log says why."""
    st = await booted201(csms, make_station)
    assert await set_var(csms, "TxCtrlr", "TxStartPoint", "DataSigned") == "Accepted"
    meter_fails_at(st, "B")
    await session(csms, st)
    await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
    started = [r.payload for r in csms.received if r.action == "TransactionEvent"
               and r.payload["eventType"] == "Started"]
    assert len(started) == 1 and started[0]["triggerReason"] != "SignedDataReceived"
    assert not [sv for mv in started[0].get("meterValue", []) for sv in mv["sampledValue"] if "signedMeterValue" in sv]
    assert EVENT_MISSING in security_types(st)


async def test_export_time_range_reads_back_in_audit(csms, make_station):
    """`secure-cp export --from ISO --to ISO` (legal log by time, issue #5 "exportable per transaction or time
    range"): two 2.0.1 transactions in one transparency file, each numbered on its own so that `secure-cp audit`
    pairs begin and end; a range before them finds nothing (exit 1); a bad time is exit 2."""
    st = await booted201(csms, make_station)
    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    for _ in range(2):
        await session(csms, st)
        await eventually(lambda: st.station.engine.connectors[1].tx_key is None, what="transaction stop")
        st.hw.ev_plug(1, False)
    await eventually(lambda: LegalLog(st.station.db).count() == 4, what="four records in the legal log")
    after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    out = st.cfg.data_dir / "range.xml"
    cli = [sys.executable, "-m", "secure_cp.cli", "export", "--data-dir", str(st.cfg.data_dir)]
    exported = subprocess.run(cli + ["--from", before.isoformat(), "--to", after.isoformat(), "--out", str(out)],
                              capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    text = out.read_text()
    assert text.count("<value ") == 4 and 'transactionId="1"' in text and 'transactionId="2"' in text
    audited = subprocess.run([sys.executable, "-m", "secure_cp.cli", "audit", "--json", str(out)],
                             capture_output=True, text=True)
    assert audited.returncode == 0, audited.stdout + audited.stderr
    empty = subprocess.run(cli + ["--from", "2000-01-01", "--to", "2000-01-02"], capture_output=True, text=True)
    assert empty.returncode == 1 and "no signed records" in empty.stderr
    bad = subprocess.run(cli + ["--from", "yesterday"], capture_output=True, text=True)
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr
    both = subprocess.run(cli + ["--transaction", "1", "--from", "2000-01-01"], capture_output=True, text=True)
    assert both.returncode == 2
