"""Eichrecht core (issue #5): OCMF records byte-exact, gateway signing (software and SoftHSM2 keys), the simulated
signing meter, pagination across power cuts, the legal log, `secure-cp audit` / `export` / `meter-key`.

Every record the station produces is checked by `pyocmf`, an independent verifier (signature and its Eichrecht
check), not only by our own verifier."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyocmf
import pytest

from secure_cp.cli import main as cli
from secure_cp.eichrecht.legallog import LegalLog
from secure_cp.eichrecht.meterkeys import MeterKeys, display_public_key, load_public_key, oca_public_key
from secure_cp.eichrecht.ocmf import (BackendSigner, MeterIdentity, OcmfError, OcmfRecord, ReadingValue, build_payload,
                                      identification_for_token, sign_payload)
from secure_cp.eichrecht.pagination import Pagination
from secure_cp.eichrecht.verify import audit_text
from secure_cp.hal import signed_meter_of
from secure_cp.hal.simulated import MeterFault, SimulatedHardware
from secure_cp.security.keys import KeyAlgorithm, SoftwareBackend
from secure_cp.security.keys.pkcs11_backend import Pkcs11Backend
from secure_cp.store import Database
from softhsm import init_token

DATA = Path(__file__).parent / "data" / "ocmf"   # a real KEBA KCP30 record and its key (see its README.md)
KEBA = (DATA / "keba-kcp30.ocmf").read_text(encoding="utf-8")
KEBA_KEY = (DATA / "keba-kcp30.pubkey.hex").read_text().strip()
IDENTITY = MeterIdentity(gi="secure-cp gateway", gs="GW-0001", gv="0.1", mv="Example", mm="EM-1", ms="M-0001")
T0 = dt.datetime(2024, 5, 2, 10, 0, 0, 123000, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def pyocmf_ok(begin: str, end: str, key_der: bytes) -> None:
    """Both records verify with pyocmf and the pair passes its Eichrecht check (errors only)."""
    b, e = pyocmf.OCMF.from_string(begin), pyocmf.OCMF.from_string(end)
    assert b.verify_signature(key_der.hex()) is True
    assert e.verify_signature(key_der.hex()) is True
    assert b.check_eichrecht(e, errors_only=True) == []


def readings(begin: str, end: str) -> tuple[list[ReadingValue], list[ReadingValue]]:
    return ([ReadingValue(T0, Decimal(begin), tx="B")],
            [ReadingValue(T0 + dt.timedelta(minutes=42), Decimal(end), tx="E")])


def gateway_transaction(log: LegalLog, signer, tx_key: str = "tx1") -> tuple[str, str]:
    ident = identification_for_token("04A2B3C4D5E6F7", "ISO14443", source="authorize", tls=True)
    rb, re_ = readings("2935.6", "2965.1004")
    recs = [log.sign_and_append(signer=signer, identity=IDENTITY, readings=r, identification=ident, tx_key=tx_key,
                                evse_id=1, connector_id=1, context=ctx, ct="EVSEID", ci="DE*ABC*E1234*1")
            for r, ctx in ((rb, "Transaction.Begin"), (re_, "Transaction.End"))]
    return recs[0].raw, recs[1].raw


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "station.db")
    yield database
    database.close()


# ------------------------------------------------------------------------------------------ record handling


def test_keba_record_parses_byte_exact():
    rec = OcmfRecord.parse(KEBA)
    assert rec.raw == KEBA and str(rec) == KEBA
    assert f"OCMF|{rec.payload_text}|{rec.signature_text}" == KEBA
    assert rec.pagination == ("T", 32) and rec.gs == "17619300" and rec.is_ is False
    assert [r.rv for r in rec.readings] == [Decimal("0.2596"), Decimal("0.2597")]
    assert [(r.tx, r.sync, r.ri) for r in rec.readings] == [("B", "I", "1-b:1.8.0"), ("E", "R", "1-b:1.8.0")]
    assert rec.sa == "ECDSA-secp256r1-SHA256"    # absent: the spec's default


def test_trailing_zeros_survive_the_legal_log(db, tmp_path):
    """Opaque stays opaque: "2935.600" is stored and read back as written, never re-serialized as 2935.6."""
    backend = SoftwareBackend(tmp_path / "keys")
    backend.generate("meter", KeyAlgorithm.EC_P256)
    payload = '{"FV":"1.0","PG":"T1","MS":"X1","IS":false,"IT":"NONE","RD":[{"TM":"2018-07-24T13:22:04,000+0200 S",' \
              '"TX":"B","RV":2935.600,"RI":"1-b:1.8.0","RU":"kWh","ST":"G"}]}'
    raw = sign_payload(payload, BackendSigner(backend, "meter")).raw
    stored = LegalLog(db).append(raw, tx_key="t")
    assert stored.raw == raw and '"RV":2935.600' in LegalLog(db).get(stored.id).raw
    assert OcmfRecord.parse(stored.raw).readings[0].rv.as_tuple().exponent == -3


def test_builder_writes_fixed_decimals_time_format_and_passes_meter_errors():
    payload = build_payload(pagination="T7", identity=IDENTITY, identification=identification_for_token(None),
                            readings=[ReadingValue(T0, Decimal("12.3"), tx="B", decimals=3),
                                      ReadingValue(T0, None, tx="X", st="F", ef="E", sync="U")])
    rd = json.loads(payload, parse_float=Decimal)["RD"]
    assert '"RV":12.300' in payload
    assert rd[0]["TM"] == "2024-05-02T10:00:00,123+0200 S"
    assert rd[1] == {"TM": "2024-05-02T10:00:00,123+0200 U", "TX": "X", "EF": "E", "ST": "F"}   # no invented RV
    with pytest.raises(OcmfError, match="ST 'Q'"):
        build_payload(pagination="T1", identity=IDENTITY, identification=identification_for_token(None),
                      readings=[ReadingValue(T0, Decimal(1), tx="B", st="Q")])


@pytest.mark.parametrize("token, token_type, it", [("04A2B3C4", None, "ISO14443"), ("ABC-123", None, "CENTRAL"),
                                                  ("x1", "Central", "CENTRAL"), ("DEABC123", "eMAID", "EMAID")])
def test_identification_from_authorization(token, token_type, it):
    ident = identification_for_token(token, token_type, source="authorize")
    assert (ident.type, ident.data, ident.status, ident.level) == (it, token, True, "TRUSTED")


# --------------------------------------------------------------------------------- gateway signing backends


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.EC_P256, KeyAlgorithm.EC_P384])
def test_gateway_records_software_key_verify_with_pyocmf(db, tmp_path, algorithm):
    backend = SoftwareBackend(tmp_path / "keys")
    backend.generate("ocmf", algorithm)
    signer = BackendSigner(backend, "ocmf")
    begin, end = gateway_transaction(LegalLog(db), signer)
    pyocmf_ok(begin, end, signer.public_key_der())
    assert [OcmfRecord.parse(r).pg for r in (begin, end)] == ["T1", "T2"]
    assert '"RV":2965.100' in end             # kWh with the meter's 3 decimals, truncated
    assert audit_text(f"{begin}\n{end}\n", signer.public_key_der().hex()).ok


def test_gateway_records_softhsm_key_verify_with_pyocmf(db, tmp_path, monkeypatch):
    token = init_token(tmp_path / "hsm", monkeypatch)
    with Pkcs11Backend(token.module, token.label, token.pin) as hsm:
        hsm.generate("ocmf", KeyAlgorithm.EC_P256)
        signer = BackendSigner(hsm, "ocmf")
        begin, end = gateway_transaction(LegalLog(db), signer)
        pyocmf_ok(begin, end, signer.public_key_der())


async def test_gateway_signing_async_runs_in_a_thread(db, tmp_path):
    backend = SoftwareBackend(tmp_path / "keys")
    backend.generate("ocmf", KeyAlgorithm.EC_P256)
    rec = await LegalLog(db).sign_and_append_async(
        signer=BackendSigner(backend, "ocmf"), identity=IDENTITY, readings=readings("1", "2")[0],
        identification=identification_for_token(None), tx_key="a")
    assert OcmfRecord.parse(rec.raw).pg == "T1"


# ------------------------------------------------------------------------------------ simulated signing meter


def test_simulated_meter_records_verify_with_pyocmf(tmp_path):
    hw = SimulatedHardware(2, state_file=tmp_path / "meter.json", clock=lambda: 0.0)
    meter = signed_meter_of(hw)
    assert meter is hw
    ident = identification_for_token("04A2B3C4", source="local_list")
    begin = meter.signed_reading(2, "B", identification=ident, transaction_ref="CP1 2")
    hw.connectors[2].energy_wh = 1234.9
    end = meter.signed_reading(2, "E", identification=ident, transaction_ref="CP1 2")
    pyocmf_ok(begin, end, meter.meter_public_key(2))
    assert OcmfRecord.parse(end).readings[0].rv == Decimal("1.234")
    # the meter's key and counters survive a restart
    again = SimulatedHardware(2, state_file=tmp_path / "meter.json")
    assert again.meter_public_key(2) == hw.meter_public_key(2)
    assert OcmfRecord.parse(again.signed_reading(2, "B")).pg == "T3"


def test_simulated_meter_signs_in_a_worker_thread_while_the_loop_reads_it(tmp_path):
    """The station fetches signed records in a worker thread while its event loop keeps reading the meter (both save
    the meter's state file): no failed save, and the pagination numbers handed out are 1..n, each once."""
    import threading
    hw = SimulatedHardware(1, state_file=tmp_path / "meter.json")
    errors: list[BaseException] = []
    numbers: list[str] = []

    def sign() -> None:
        try:
            for _ in range(150):
                numbers.append(OcmfRecord.parse(hw.signed_reading(1, "B")).pg)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    signer = threading.Thread(target=sign)
    signer.start()
    reads = 0
    while signer.is_alive():
        hw.read_meter(1)
        reads += 1
    signer.join()
    assert errors == [] and reads > 0
    assert numbers == [f"T{i}" for i in range(1, 151)]
    assert json.loads((tmp_path / "meter.json").read_text())["pagination"]["1"]["T"] == 151


def test_simulated_meter_errors_pass_through_and_fail_the_audit():
    hw = SimulatedHardware(1)
    hw.set_meter_state(1, "F", "E")
    rec = OcmfRecord.parse(hw.signed_reading(1, "X"))
    r = rec.readings[0]
    assert (r.st, r.ef, r.tx, r.rv) == ("F", "E", "X", None)
    report = audit_text(rec.raw, hw.meter_public_key(1).hex())
    assert not report.ok and {"meter-state", "error-flags", "transaction-error"} <= {f.code for f in report.errors}
    hw.fail_meter(1)
    with pytest.raises(MeterFault):
        hw.signed_reading(1, "E")


# ------------------------------------------------------------------------------------------------ pagination

_CRASH = """
import os, sys
from decimal import Decimal
import datetime as dt
sys.path.insert(0, {tests!r})
from secure_cp.store import Database
from secure_cp.eichrecht.pagination import Pagination
db = Database({path!r})
with db.tx():
    pg = Pagination(db).reserve("T")
    print(pg, flush=True)
    os._exit(9)      # power cut after reserving, before the record is stored
"""


def test_pagination_gapless_across_power_cut(tmp_path):
    path = tmp_path / "station.db"
    with Database(path) as db:
        backend = SoftwareBackend(tmp_path / "keys")
        backend.generate("ocmf", KeyAlgorithm.EC_P256)
        first = gateway_transaction(LegalLog(db), BackendSigner(backend, "ocmf"))
        assert Pagination(db).peek("T") == 3
    done = subprocess.run([sys.executable, "-c", _CRASH.format(tests=str(Path(__file__).parent), path=str(path))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 9 and done.stdout.strip() == "T3"
    with Database(path) as db:
        assert Pagination(db).peek("T") == 3          # the number was never used: handed out again
        second = gateway_transaction(LegalLog(db), BackendSigner(backend, "ocmf"), tx_key="tx2")
        assert Pagination(db).peek("F") == 1
    pages = [OcmfRecord.parse(r).pagination[1] for r in (*first, *second)]
    assert pages == [1, 2, 3, 4]
    report = audit_text("\n".join((*first, *second)), BackendSigner(backend, "ocmf").public_key_der().hex())
    assert report.ok and not [f for f in report.findings if f.code == "pagination"]


def test_pagination_reuse_and_gap_are_reported(tmp_path):
    backend = SoftwareBackend(tmp_path / "keys")
    backend.generate("ocmf", KeyAlgorithm.EC_P256)
    signer = BackendSigner(backend, "ocmf")
    ident = identification_for_token(None)

    def rec(pg: str, r: list) -> str:
        return sign_payload(build_payload(pagination=pg, identity=IDENTITY, readings=r, identification=ident),
                            signer).raw
    rb, re_ = readings("1", "2")
    key = signer.public_key_der().hex()
    gap = audit_text("\n".join([rec("T1", rb), rec("T5", re_)]), key)
    assert gap.ok and any(f.code == "pagination" and f.severity == "warning" for f in gap.findings)
    reuse = audit_text("\n".join([rec("T1", rb), rec("T1", re_)]), key)
    assert not reuse.ok and any("never be reused" in f.message for f in reuse.errors)


# ----------------------------------------------------------------------------------- legal log, keys, export


def test_meter_key_history_and_cli(db, tmp_path, capsys):
    hw_a, hw_b = SimulatedHardware(1), SimulatedHardware(1)
    keys = MeterKeys(db)
    first = keys.register("evse1", hw_a.meter_public_key(1), evse_id=1, connector_id=1, serial="SIM0001", now=1.0)
    assert keys.register("evse1", hw_a.meter_public_key(1), evse_id=1, connector_id=1, now=2.0) == first
    second = keys.register("evse1", hw_b.meter_public_key(1), evse_id=1, connector_id=1, now=3.0)   # meter swap
    assert [k.retired_at for k in keys.history("evse1")] == [3.0, None] and keys.current("evse1") == second
    assert load_public_key(oca_public_key(second.der)).public_numbers() == \
        load_public_key(second.der).public_numbers()
    db.close()
    assert cli(["meter-key", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert second.public_key in out and first.public_key not in out
    assert display_public_key(second.der).splitlines()[0] in out
    assert cli(["meter-key", "--data-dir", str(tmp_path), "--json", "--history"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_export_then_audit_round_trip(db, tmp_path, capsys):
    hw = SimulatedHardware(1)
    key = MeterKeys(db).register("evse1", hw.meter_public_key(1), evse_id=1, connector_id=1)
    log = LegalLog(db)
    for marker, ctx in (("B", "Transaction.Begin"), ("E", "Transaction.End")):
        log.append(hw.signed_reading(1, marker), tx_key="k1", evse_id=1, connector_id=1, context=ctx,
                   meter_key_id=key.id)
    log.append(hw.signed_reading(1, "B"), tx_key="other", meter_key_id=key.id)
    assert log.set_transaction_id("k1", 4711) == 2
    raws = [r.raw for r in log.of_transaction("4711")]
    db.close()
    out = tmp_path / "tx.xml"
    assert cli(["export", "--data-dir", str(tmp_path), "--transaction", "4711", "--out", str(out)]) == 0
    text = out.read_text()
    assert 'transactionId="4711" context="Transaction.Begin"' in text and all(r in text.replace("&quot;", '"')
                                                                               for r in raws)
    assert cli(["audit", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and [r["signature_ok"] for r in report["records"]] == [True, True]
    assert len(report["transactions"]) == 1
    # pyocmf reads the exported file as the transparency software would
    container = pyocmf.OcmfContainer.from_xml(out)
    assert [rec.verify_signature() for rec in container] == [True, True]
    assert cli(["export", "--data-dir", str(tmp_path), "--transaction", "nope"]) == 1


# ------------------------------------------------------------------------------------------------ audit CLI


def test_keba_record_verifies_through_cli_and_a_tampered_digit_fails(tmp_path, capsys):
    assert cli(["audit", str(DATA / "keba-kcp30.ocmf"), "--public-key", KEBA_KEY]) == 0
    assert "signature OK" in capsys.readouterr().out
    bad = tmp_path / "bad.ocmf"
    bad.write_text(KEBA.replace("0.2597", "0.2598"))
    assert cli(["audit", str(bad), "--public-key", KEBA_KEY]) == 1
    assert "signature INVALID" in capsys.readouterr().out


def test_keba_in_transparency_xml_via_subprocess(tmp_path):
    xml = tmp_path / "keba.xml"
    xml.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<values>\n  <value transactionId="1" '
                   'context="Transaction.Begin">\n    <signedData format="OCMF" encoding="plain">'
                   f'{KEBA}</signedData>\n    <publicKey encoding="hex">{KEBA_KEY}</publicKey>\n  </value>\n</values>\n')
    done = subprocess.run([sys.executable, "-m", "secure_cp.cli", "audit", str(xml), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["records"][0]["signature_ok"] is True


def test_format_version_above_1_3_is_flagged(tmp_path):
    backend = SoftwareBackend(tmp_path / "keys")
    backend.generate("ocmf", KeyAlgorithm.EC_P256)
    signer = BackendSigner(backend, "ocmf")
    rb, re_ = readings("1", "2")
    raw = sign_payload(build_payload(pagination="T1", identity=IDENTITY, identification=identification_for_token(None),
                                     readings=rb + re_, fv="1.4"), signer).raw
    report = audit_text(raw, signer.public_key_der().hex())
    assert any(f.code == "fv" and "1.3" in f.message for f in report.warnings)


@pytest.mark.parametrize("content, key, rc, message", [
    ("<values><value>", KEBA_KEY, 2, "not well-formed XML"),
    ('<!DOCTYPE x [<!ENTITY a "b">]><values/>', KEBA_KEY, 2, "DTD"),
    ("<other/>", KEBA_KEY, 2, "expected <values>"),
    (KEBA, "XYZ-not-hex", 2, "--public-key"),
    (KEBA[:120], KEBA_KEY, 1, "not a valid OCMF record"),
    (KEBA.replace('"SD":"30', '"SD":"ZZ'), KEBA_KEY, 1, "not valid hex"),
    ("\n\n", KEBA_KEY, 1, "no OCMF record"),
    (b"\xff\xfe\x00garbage", KEBA_KEY, 2, "not UTF-8"),
])
def test_malformed_inputs_get_clear_errors(tmp_path, capsys, content, key, rc, message):
    path = tmp_path / "input"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert cli(["audit", str(path), "--public-key", key]) == rc
    captured = capsys.readouterr()
    assert message in captured.out + captured.err
    assert "Traceback" not in captured.out + captured.err


def test_missing_file_and_store(tmp_path, capsys):
    assert cli(["audit", str(tmp_path / "absent")]) == 2
    assert cli(["export", "--data-dir", str(tmp_path), "--transaction", "1"]) == 2
    assert cli(["meter-key", "--data-dir", str(tmp_path)]) == 2
    assert "no station store" in capsys.readouterr().err
