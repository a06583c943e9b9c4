"""Eichrecht (issue #5) over OCPP: signed begin and end readings of the simulated signing meter end to end against
the strict CSMS, for 1.6 (OCA application note "Signed Meter Values in OCPP" §3) and 2.0.1 (§4, Part 2 J02 /
signedMeterValue), the legal log, the export and audit tools, the end timeout and a power cut between the two
commits (legal log, then the queued end message)."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from secure_cp.eichrecht.legallog import LegalLog
from secure_cp.eichrecht.meterkeys import oca_public_key
from secure_cp.eichrecht.ocmf import OcmfRecord
from secure_cp.eichrecht.ocpp import EVENT_MISSING, EVENT_TOO_LONG
from secure_cp.store import Database

from helpers import barrier, booted, eventually

pyocmf = pytest.importorskip("pyocmf")

async def booted201(csms, make_station, **kw):
    """A 2.0.1 station that has booted and reported its connector."""
    kw.setdefault("eichrecht_mode", "meter")
    st = await make_station(csms, protocols=["ocpp2.0.1"], **kw)
    await csms.wait_for("BootNotification")
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1)
    return st


def signed_of(csms, action: str) -> list:
    return [v for v in csms.signed_values if v.action == action]


def security_types(st) -> list[str]:
    rows = st.station.db.query("SELECT type FROM security_log ORDER BY id")
    return [r[0] for r in rows]


async def session(csms, st, *, tag: str = "TAG1", seconds: float = 0.2) -> None:
    """Plug, tag, charge ``seconds``, tag again (stop)."""
    st.hw.ev_plug(1)
    st.hw.present_tag(tag)
    await eventually(lambda: st.station.engine.connectors[1].tx_key is not None, what="transaction start")
    await asyncio.sleep(seconds)
    st.hw.present_tag(tag)


def meter_fails_at(st, marker: str) -> None:
    """The simulated meter cannot sign the readings of ``marker`` (B begin, C intermediate, E end): a bus timeout."""
    real = st.hw.signed_reading

    def broken(cid, asked, **kw):
        if asked == marker:
            raise OSError("meter bus timeout")
        return real(cid, asked, **kw)
    st.hw.signed_reading = broken


@contextlib.contextmanager
def meter_slow_at(st, marker: str, wait: float) -> Iterator[None]:
    """Inside the block the simulated meter takes up to ``wait`` seconds (until the block is left) to sign a reading
    of ``marker``."""
    release = threading.Event()
    real = st.hw.signed_reading

    def slow(cid, asked, **kw):
        if asked == marker:
            release.wait(wait)
        return real(cid, asked, **kw)
    st.hw.signed_reading = slow
    try:
        yield
    finally:
        release.set()


async def meter_key_16(csms, ident: str = "CP1") -> str:
    """OCA note §3.3.1: the CSMS reads MeterPublicKey1 (read-only) and keeps it for values sent without a key."""
    conf = await csms.call(ident, "GetConfiguration", {"key": ["MeterPublicKey1"]})
    entry = conf["configurationKey"][0]
    assert entry["key"] == "MeterPublicKey1" and entry["readonly"] is True
    csms.meter_public_keys[ident] = entry["value"]
    return entry["value"]


async def test_16_signed_begin_and_end_values(csms, make_station):
    """OCA note §3.1.2/§3.1.4/§3.2.1/§3.3.1: MeterValues Transaction.Begin after StartTransaction, the signed begin
    and end values in StopTransaction.transactionData even with StopTxnSampledData empty; OCA JSON form by default,
    the public key once per transaction; MeterPublicKey1 read-only; every record verifies (CSMS check, pyocmf) and
    is the legal log's record byte for byte."""
    st = await booted(csms, make_station, eichrecht_mode="meter")
    key = await meter_key_16(csms)
    assert key == oca_public_key(st.hw.meter_public_key(1))
    change = await csms.call("CP1", "ChangeConfiguration", {"key": "MeterPublicKey1", "value": "x"})
    assert change["status"] == "Rejected"
    await session(csms, st)
    stop = await csms.wait_for("StopTransaction")
    begin_mv = [r for r in csms.received if r.action == "MeterValues"]
    assert begin_mv and begin_mv[0].payload["meterValue"][0]["sampledValue"][0]["context"] == "Transaction.Begin"
    svs = [sv for mv in stop.payload["transactionData"] for sv in mv["sampledValue"]]
    assert [sv["context"] for sv in svs] == ["Transaction.Begin", "Transaction.End"]
    assert all(sv["format"] == "SignedData" for sv in svs)
    obj = json.loads(svs[1]["value"])
    assert obj["encodingMethod"] == "OCMF" and obj["signingMethod"] == ""
    assert base64.b64decode(obj["signedMeterData"]).decode().startswith("OCMF|")
    # OncePerTransaction (default): the key went with the first signed value (the Transaction.Begin MeterValues)
    first = json.loads(begin_mv[0].payload["meterValue"][0]["sampledValue"][0]["value"])
    assert first["publicKey"] == key and obj["publicKey"] == ""
    checked = signed_of(csms, "StopTransaction")
    assert [v.context for v in checked] == ["Transaction.Begin", "Transaction.End"]
    assert all(v.verified for v in checked + signed_of(csms, "MeterValues")), checked
    records = LegalLog(st.station.db).of_transaction(stop.payload["transactionId"])
    assert [r.raw for r in records] == [v.ocmf for v in checked]
    assert [r.context for r in records] == ["Transaction.Begin", "Transaction.End"]
    key_hex = st.hw.meter_public_key(1).hex()
    for rec in records:
        assert pyocmf.OCMF.from_string(rec.raw).verify_signature(key_hex)
    assert OcmfRecord.parse(records[0].raw).readings[0].tx == "B"
    assert OcmfRecord.parse(records[1].raw).readings[0].tx == "E"
    assert csms.violations == []


async def test_16_raw_form_and_every_meter_value(csms, make_station):
    """[eichrecht] ocpp16_value = "raw": the OCMF string itself in value; PublicKeyWithSignedMeterValue
    EveryMeterValue (OCA note §3.3.2) is answered by the raw form through MeterPublicKey1 (the raw string has no
    room for a key), SampledDataSignStartedReadings false: the Transaction.Begin MeterValues of StartTxnSampledData
    is unsigned (§3.3.4/§3.3.5)."""
    st = await booted(csms, make_station, eichrecht_mode="meter", eichrecht_value_16="raw",
                      ocpp={"SampledDataSignStartedReadings": "false"})
    await meter_key_16(csms)
    await session(csms, st)
    stop = await csms.wait_for("StopTransaction")
    svs = [sv for mv in stop.payload["transactionData"] for sv in mv["sampledValue"]]
    assert [sv["value"][:5] for sv in svs] == ["OCMF|", "OCMF|"]
    begin = [sv for r in csms.received if r.action == "MeterValues" for mv in r.payload["meterValue"]
             for sv in mv["sampledValue"]]
    assert begin and all(sv["context"] == "Transaction.Begin" and sv.get("format") != "SignedData" for sv in begin)
    assert all(v.verified for v in signed_of(csms, "StopTransaction"))
    assert len(signed_of(csms, "StopTransaction")) == 2


@pytest.mark.parametrize("mode,keys", [("EveryMeterValue", [True, True]), ("Never", [False, False])])
async def test_16_public_key_with_signed_meter_value(csms, make_station, mode, keys):
    """OCA note §3.3.2: EveryMeterValue puts the key in every signed value (StopTransaction's too), Never in
    none (publicKey "")."""
    st = await booted(csms, make_station, eichrecht_mode="meter", ocpp={"PublicKeyWithSignedMeterValue": mode})
    await session(csms, st)
    stop = await csms.wait_for("StopTransaction")
    svs = [sv for mv in stop.payload["transactionData"] for sv in mv["sampledValue"]]
    assert [bool(json.loads(sv["value"])["publicKey"]) for sv in svs] == keys


async def test_tc_j_201_signed_values_in_updated_and_ended(csms, make_station):
    """2.0.1 (OCA note §4.1.1/§4.1.2/§4.3.2, Part 2 J02 signedMeterValue): the signed begin value in TransactionEvent
    Updated with triggerReason SignedDataReceived, both values in Ended (contexts Transaction.Begin / .End); the
    key in FiscalMetering.PublicKey of EVSE 1; every record verifies with the CSMS and pyocmf; export of the
    transaction passes `secure-cp audit`."""
    st = await booted201(csms, make_station)
    got = await csms.call("CP1", "GetVariables", {"getVariableData": [
        {"component": {"name": "FiscalMetering", "evse": {"id": 1}}, "variable": {"name": "PublicKey"}}]})
    result = got["getVariableResult"][0]
    assert result["attributeStatus"] == "Accepted"
    assert result["attributeValue"] == oca_public_key(st.hw.meter_public_key(1))
    csms.meter_public_keys["CP1"] = result["attributeValue"]
    await session(csms, st)
    ended = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
    tx_id = ended.payload["transactionInfo"]["transactionId"]
    updated = [r.payload for r in csms.received if r.action == "TransactionEvent"
               and r.payload["triggerReason"] == "SignedDataReceived"]
    assert len(updated) == 1 and updated[0]["eventType"] == "Updated"
    signed = [sv for mv in ended.payload["meterValue"] for sv in mv["sampledValue"] if "signedMeterValue" in sv]
    assert [sv["context"] for sv in signed] == ["Transaction.Begin", "Transaction.End"]
    assert all(sv["signedMeterValue"]["encodingMethod"] == "OCMF" for sv in signed)
    checks = signed_of(csms, "TransactionEvent")     # the begin record of Ended repeats the one of Updated
    assert len(checks) == 2 and all(v.verified for v in checks), checks
    assert updated[0]["meterValue"][0]["sampledValue"][0]["signedMeterValue"]["publicKey"]   # OncePerTransaction
    assert not any(sv["signedMeterValue"]["publicKey"] for sv in signed)
    assert not csms.transactions201[tx_id].seq_gaps()
    records = LegalLog(st.station.db).of_transaction(tx_id)
    assert [r.raw for r in records] == [v.ocmf for v in checks]
    for rec in records:
        assert pyocmf.OCMF.from_string(rec.raw).verify_signature(st.hw.meter_public_key(1).hex())
    out = st.cfg.data_dir / "tx.xml"
    exported = subprocess.run([sys.executable, "-m", "secure_cp.cli", "export", "--data-dir", str(st.cfg.data_dir),
                               "--transaction", tx_id, "--out", str(out)], capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    audited = subprocess.run([sys.executable, "-m", "secure_cp.cli", "audit", str(out)], capture_output=True,
                             text=True)
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert csms.violations == []


@pytest.mark.filterwarnings("ignore:Tariff Text")    # pyocmf: the long TT is what makes the record too long
async def test_201_record_too_long_is_left_out_never_truncated(csms, make_station):
    """signedMeterData is string[0..2500]: a record whose base64 form is longer is not sent (never cut) and a
    security event says so; the record stays whole in the legal log."""
    st = await booted201(csms, make_station)
    hw = st.hw
    real = hw.signed_reading

    def long_reading(cid, marker, **kw):
        raw = real(cid, marker, **kw)
        if marker != "E":
            return raw
        payload, _, sig = raw[5:].rpartition("|")   # a meter with a long tariff text: still a valid record
        body = json.loads(payload)
        body["TT"] = "x" * 2000
        from secure_cp.eichrecht.ocmf import KeySigner, sign_payload
        return sign_payload(json.dumps(body, separators=(",", ":")), KeySigner(hw._meter_key(cid))).raw
    hw.signed_reading = long_reading
    await session(csms, st)
    ended = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
    contexts = [sv["context"] for mv in ended.payload["meterValue"] for sv in mv["sampledValue"]
                if "signedMeterValue" in sv]
    assert contexts == ["Transaction.Begin"]
    assert EVENT_TOO_LONG in security_types(st)
    tx_id = ended.payload["transactionInfo"]["transactionId"]
    end = [r for r in LegalLog(st.station.db).of_transaction(tx_id) if r.context == "Transaction.End"]
    assert len(end) == 1 and len(base64.b64encode(end[0].raw.encode())) > 2500
    assert pyocmf.OCMF.from_string(end[0].raw).verify_signature(hw.meter_public_key(1).hex())


async def test_16_end_timeout_ends_without_a_made_up_value(csms, make_station):
    """OCA note §2.3.1 NOTE: StopTransaction waits for the final signed reading, at most [eichrecht] end_timeout;
    a meter that does not answer: the transaction still ends, without a signed end value, and the security log
    says why."""
    st = await booted(csms, make_station, eichrecht_mode="meter", eichrecht_end_timeout=0.5)
    with meter_slow_at(st, "E", 5):
        await session(csms, st)
        stop = await csms.wait_for("StopTransaction")
    contexts = [sv["context"] for mv in stop.payload.get("transactionData", []) for sv in mv["sampledValue"]]
    assert contexts == ["Transaction.Begin"]
    assert EVENT_MISSING in security_types(st)
    await barrier(csms)
    tx_id = stop.payload["transactionId"]
    assert [r.context for r in LegalLog(st.station.db).of_transaction(tx_id)] == ["Transaction.Begin"]


async def test_16_meter_error_passes_through(csms, make_station):
    """A meter in an error state (OCMF ST/EF) still signs: the record goes out as the meter made it, with no value
    substituted."""
    st = await booted(csms, make_station, eichrecht_mode="meter")
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    st.hw.set_meter_state(1, "F", "E")
    await session(csms, st)
    await csms.wait_for("StopTransaction")
    end = signed_of(csms, "StopTransaction")[-1]
    rd = OcmfRecord.parse(end.ocmf).readings[0]
    assert rd.st == "F" and rd.ef == "E" and rd.rv is None
    assert end.verified is None or end.verified


async def test_pagination_gapless_over_sessions(csms, make_station):
    """OCMF PG: the meter's transaction pagination counts up by one per record over two sessions, as stored in
    the legal log (nothing lost, nothing repeated)."""
    st = await booted(csms, make_station, eichrecht_mode="meter")
    for _ in range(2):
        await session(csms, st)
        await eventually(lambda: st.station.engine.connectors[1].tx_key is None, what="stop")
        st.hw.ev_plug(1, False)
        await asyncio.sleep(0.1)
    await eventually(lambda: len([r for r in csms.received if r.action == "StopTransaction"]) == 2, what="2 stops")
    rows = st.station.db.query("SELECT pagination FROM legal_log ORDER BY id")
    numbers = [int(r[0][1:]) for r in rows]
    assert len(numbers) == 4 and numbers == list(range(numbers[0], numbers[0] + 4))


async def test_power_cut_between_legal_log_and_stop_loses_nothing(csms, make_station, tmp_path):
    """Never lost: the end record reached the legal log (its own durable commit), then the power went before the
    StopTransaction was queued. The restart finds the record in the log and the StopTransaction carries it."""
    data_dir = tmp_path / "cut"
    st = await booted(csms, make_station, eichrecht_mode="meter", eichrecht_end_timeout=30, data_dir=data_dir)
    gate = threading.Event()
    real = st.hw.signed_reading
    end_raw: list[str] = []

    def held(cid, marker, **kw):
        raw = real(cid, marker, **kw)
        if marker == "E":
            end_raw.append(raw)
            gate.wait(10)        # the power goes while the record is on its way
        return raw
    st.hw.signed_reading = held
    await session(csms, st)
    await eventually(lambda: bool(end_raw), what="the meter signed the end")
    tx = st.station.transactions.recent(1)[0]
    assert tx.stopped_at is not None and "Transaction.End" in tx.extra["sig_wait"]
    await st.stop()                       # the station is gone before the record came back (a power cut)
    gate.set()
    # what the runtime's first commit does: the record into the legal log
    db = Database(data_dir / "station.db")
    LegalLog(db).append(end_raw[0], tx_key=tx.tx_key, connector_id=1, evse_id=1, context="Transaction.End")
    db.close()
    assert not [r for r in csms.received if r.action == "StopTransaction"]
    st2 = await make_station(csms, eichrecht_mode="meter", data_dir=data_dir)
    stop = await csms.wait_for("StopTransaction", timeout=15)
    svs = [sv for mv in stop.payload["transactionData"] for sv in mv["sampledValue"]]
    assert [sv["context"] for sv in svs] == ["Transaction.Begin", "Transaction.End"]
    ocmf = base64.b64decode(json.loads(svs[1]["value"])["signedMeterData"]).decode()
    assert ocmf == end_raw[0]
    assert pyocmf.OCMF.from_string(ocmf).verify_signature(st2.hw.meter_public_key(1).hex())


async def test_201_gateway_mode_signs_with_the_key_backend(csms, make_station, tmp_path):
    """Gateway-signed ([eichrecht] mode = "gateway"): the station builds the OCMF record from the meter reading and
    signs it with a key of the key backend (software here; PKCS#11 / TPM alike); PG from the station's persisted
    counter, gapless; the key shown as FiscalMetering.PublicKey; records verify with pyocmf."""
    from secure_cp.security.keys.base import KeyAlgorithm
    from secure_cp.security.keys.config import KeysConfig, open_backend
    keys = KeysConfig(backend="software", dir=tmp_path / "keys")
    backend = open_backend(keys)
    backend.generate("ocmf-gw", KeyAlgorithm.EC_P256)
    der = backend.public_key_der("ocmf-gw")
    st = await booted201(csms, make_station, eichrecht_mode="gateway", eichrecht_key_label="ocmf-gw", keys=keys)
    await session(csms, st)
    ended = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
    tx_id = ended.payload["transactionInfo"]["transactionId"]
    records = LegalLog(st.station.db).of_transaction(tx_id)
    assert [r.context for r in records] == ["Transaction.Begin", "Transaction.End"]
    assert [OcmfRecord.parse(r.raw).pg for r in records] == ["T1", "T2"]
    for rec in records:
        assert pyocmf.OCMF.from_string(rec.raw).verify_signature(der.hex())
    assert st.station.model.get("FiscalMetering", "PublicKey", evse_id=1) == oca_public_key(der)
    csms.meter_public_keys["CP1"] = der.hex()
    assert all(v.verified is not False for v in signed_of(csms, "TransactionEvent"))


async def test_power_cut_before_the_end_record_arrived_asks_the_meter_again(csms, make_station, tmp_path):
    """The power went while the meter was still signing the end (nothing in the legal log): the restart asks the
    meter again (the power path is open, its register holds the end) and the StopTransaction carries that record;
    the begin and end records verify and the meter's pagination has no repeat."""
    data_dir = tmp_path / "cut2"
    st = await booted(csms, make_station, eichrecht_mode="meter", eichrecht_end_timeout=30, data_dir=data_dir)
    gate = threading.Event()
    real = st.hw.signed_reading
    asked: list[str] = []

    def held(cid, marker, **kw):
        if marker == "E":
            asked.append(marker)
            gate.wait(10)
            raise RuntimeError("power gone")
        return real(cid, marker, **kw)
    st.hw.signed_reading = held
    await session(csms, st)
    await eventually(lambda: bool(asked), what="the meter asked for the end")
    await st.stop()
    gate.set()
    st2 = await make_station(csms, eichrecht_mode="meter", data_dir=data_dir)
    stop = await csms.wait_for("StopTransaction", timeout=15)
    svs = [sv for mv in stop.payload["transactionData"] for sv in mv["sampledValue"]]
    assert [sv["context"] for sv in svs] == ["Transaction.Begin", "Transaction.End"]
    raws = [base64.b64decode(json.loads(sv["value"])["signedMeterData"]).decode() for sv in svs]
    for raw in raws:
        assert pyocmf.OCMF.from_string(raw).verify_signature(st2.hw.meter_public_key(1).hex())
    pages = [OcmfRecord.parse(raw).pg for raw in raws]
    assert pages[0] != pages[1]


async def test_session_begun_while_the_meter_keys_register_ends_once_with_its_own_reason(csms, make_station):
    """A driver faster than the meter's public key (register_keys waits for it at every start): the engine has
    booted before that wait, so the transaction started meanwhile is a running one, not one a power cut
    interrupted (boot() would end it PowerLoss while its connector still runs it). One StopTransaction, with the
    reason and time the station recorded (1.6 §4.10), and the signed readings asked for meanwhile name the
    registered meter key (OCA note §3.3.1)."""
    st = await make_station(csms, eichrecht_mode="meter", eichrecht_end_timeout=10, start=False,
                            ocpp={"AllowOfflineTxForUnknownId": "true"})
    asked, release = threading.Event(), threading.Event()
    real = st.hw.meter_public_key

    def slow_key(cid):
        asked.set()
        release.wait(10)
        return real(cid)
    st.hw.meter_public_key = slow_key
    await st.start()
    try:
        await eventually(asked.is_set, what="the station asks the meter for its key")
        st.hw.ev_plug(1)
        st.hw.present_tag("TAG1")      # offline yet: AllowOfflineTxForUnknownId starts it
        await eventually(lambda: st.station.engine.connectors[1].tx_key is not None, what="transaction start")
    finally:
        release.set()
    await csms.wait_for("StartTransaction")
    st.hw.present_tag("TAG1")
    stop = await csms.wait_for("StopTransaction", timeout=15)
    await barrier(csms)
    stops = [r for r in csms.received if r.action == "StopTransaction"]
    assert len(stops) == 1
    tx = st.station.transactions.recent(1)[0]
    assert tx.stop_reason == "Local" and stop.payload.get("reason", "Local") == "Local"
    assert stop.payload["timestamp"] == tx.stopped_at
    records = LegalLog(st.station.db).of_transaction(tx.tx_key)
    assert [r.context for r in records] == ["Transaction.Begin", "Transaction.End"]
    assert all(r.meter_key_id is not None for r in records)
