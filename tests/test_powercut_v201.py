"""Power cuts on OCPP 2.0.1: the station as a real process, killed with SIGKILL at many points of its sessions.

Issue requirement: "Power-cut and offline tests as in the foundation, for TransactionEvent (seqNo has no gaps or
repeats)." The foundation's test is tests/test_powercut.py (OCPP 1.6); this is the same harness
(tests/powercut_common.py: ``python -m secure_cp.cli run --config station.toml`` driven only through the simulator
REST API, SIGKILLed in every phase of a session, restarted) with the station speaking ``ocpp2.0.1``.

What the CSMS must end up with (OCPP 2.0.1 Part 2 E §1.3 "Delivering transaction-related messages", E §1.3.2
"Sequence numbers", DESIGN.md §3 "a power cut at any instruction loses nothing and duplicates nothing"):

* every transaction the station's store knows has exactly one TransactionEvent Started and one Ended on the CSMS
  ledger (``csms.transactions201``), and the ledger has no transaction the station does not know;
* the seqNos from Started to Ended have no gap (``Tx201Record.seq_gaps()`` empty) and none was used twice for
  different content (``csms.violations`` empty, no ``conflicts``): E §1.3.2.1 "the seqNo SHALL be incremented by
  one for every message sent" -- a power cut must neither skip nor reuse one;
* every duplicate the CSMS saw is an exact resend (at-least-once delivery: a kill between the CSMS processing a
  CALL and the station committing the answer makes the station send the same CALL again);
* stoppedReason is one of the reasons the session can end with here (Local, EVDisconnected, and PowerLoss/Reboot
  for the ones the power cut ended) and equals what the station recorded; the energy register readings of a
  transaction never go down and lie between its Started and Ended.

Environment: ``SECURE_CP_POWERCUT_SEED`` (replay a run's plan), ``SECURE_CP_POWERCUT_KILLS`` (default 30 here).
"""
from __future__ import annotations

import collections
import re
from decimal import Decimal
from pathlib import Path

import pytest

from powercut_common import (IDENTITY, PHASES, check_signed_records, check_station_record, power_cut_run,
                             write_station_config)

DEFAULT_KILLS = 30
# stoppedReason (Part 2 §3.67 ReasonEnumType) a session of this test can end with: the stop tag, the cable pulled,
# and the power cut itself (recovered at the next boot)
STOPPED_REASONS = {"Local", "EVDisconnected", "PowerLoss", "Reboot"}
ENERGY = "Energy.Active.Import.Register"
DUPLICATE = re.compile(r"TransactionEvent (\w+) transactionId (\S+) seqNo (\d+): duplicate \(message ([^)]+)\)$")


def write_config(path: Path, data_dir: Path, csms_url: str, api_port: int) -> None:
    write_station_config(path, data_dir, csms_url, api_port, serial="PC-201", protocol="ocpp2.0.1")


def energy_readings(event: dict, contexts: set[str] | None = None) -> list[tuple[str, Decimal]]:
    """(timestamp, Wh) of the energy register in an event's meterValue, optionally only the given contexts
    (SampledValueType.context defaults to Sample.Periodic, Part 2 §2.41)."""
    out = []
    for mv in event.get("meterValue", []):
        for sv in mv["sampledValue"]:
            if sv.get("measurand", ENERGY) != ENERGY:
                continue
            if contexts is not None and sv.get("context", "Sample.Periodic") not in contexts:
                continue
            scale = Decimal(10) ** sv.get("unitOfMeasure", {}).get("multiplier", 0)
            unit = sv.get("unitOfMeasure", {}).get("unit", "Wh")
            wh = Decimal(str(sv["value"])) * scale * (1000 if unit == "kWh" else 1)
            out.append((mv["timestamp"], wh))
    return out


@pytest.mark.slow
async def test_e_1_3_sigkill_at_random_points_transaction_events_complete_without_gaps_or_repeats(tmp_path, capsys):
    """E §1.3 / E §1.3.2 / E11-E13 under power cuts: see the module docstring for what is checked."""
    async with power_cut_run(tmp_path, capsys, label=" (OCPP 2.0.1)", default_kills=DEFAULT_KILLS,
                             write_config=write_config,
                             # registered = the statuses after an Accepted boot (B01.FR.05: per EVSE/connector)
                             registered=lambda p: p["evseId"] == 1,
                             have_transaction=lambda csms: bool(csms.transactions201)) as run:
        csms, station, records, where, kills = run.csms, run.station, run.records, run.where, run.kills

        # --- the station's own record: every transaction ended, nothing left behind, nothing given up --------------
        check_station_record(run)

        # --- the CSMS ledger: one Started and one Ended per station transaction, seqNos complete ---------------------
        ledger = csms.transactions201
        ids = {}
        for tx in records:
            # E01.FR.16 / E §1.2: the station generates the transactionId (here the engine's tx_key)
            assert tx.transaction_id == tx.tx_key, f"{where}: {tx.tx_key} has transactionId {tx.transaction_id}"
            ids[tx.transaction_id] = tx
        assert len(ids) == len(records), f"{where}: two station transactions share a transactionId"
        assert set(ledger) == set(ids), (
            f"{where}: CSMS transactions unknown to the station {sorted(set(ledger) - set(ids))}, station "
            f"transactions the CSMS never heard of {sorted(set(ids) - set(ledger))}")
        reasons: collections.Counter = collections.Counter()
        updated = readings = 0
        spans: list[tuple[str, list[Decimal], str]] = []    # (started_at, readings, tid) per transaction
        for tid, tx in ids.items():
            entry = ledger[tid]
            what = f"{where}: transaction {tid}"
            assert entry.identity == IDENTITY
            kinds = collections.Counter(e["eventType"] for e in entry.events)
            assert kinds["Started"] == 1 and kinds["Ended"] == 1, f"{what}: events {entry.seq_nos} {dict(kinds)}"
            assert entry.conflicts == [], f"{what}: seqNo reused for different content: {entry.conflicts}"
            assert entry.seq_gaps() == [], f"{what}: seqNos missing {entry.seq_gaps()} (have {entry.seq_nos})"
            assert len(set(entry.seq_nos)) == len(entry.seq_nos), f"{what}: {entry.seq_nos}"
            events = sorted(entry.events, key=lambda e: e["seqNo"])
            start, end = events[0], events[-1]
            assert start["eventType"] == "Started" and end["eventType"] == "Ended", \
                f"{what}: Started/Ended are not the first/last seqNo: {[(e['seqNo'], e['eventType']) for e in events]}"
            assert all(e["eventType"] == "Updated" for e in events[1:-1]), what
            assert all(e["transactionInfo"]["transactionId"] == tid for e in events), what
            assert start["idToken"]["idToken"] == tx.id_tag and start["timestamp"] == tx.started_at, (what, start)
            assert start["evse"]["id"] == 1, (what, start)
            stopped = end["transactionInfo"].get("stoppedReason", "Local")   # Part 2 §2.48: absent means Local
            assert stopped in STOPPED_REASONS, (what, end)
            assert stopped == tx.stop_reason and end["timestamp"] == tx.stopped_at, (what, end, tx)
            reasons[stopped] += 1
            updated += len(events) - 2
            # the register never runs backwards over the transaction: Begin, the periodic Updated samples in seqNo
            # order, End; each Updated sample lies between the Started and the Ended
            series = energy_readings(start, {"Transaction.Begin"})
            for e in events[1:-1]:
                assert start["timestamp"] <= e["timestamp"] <= end["timestamp"], (what, e)
                series += energy_readings(e)
            series += energy_readings(end, {"Transaction.End"})
            values = [v for _, v in series]
            assert values == sorted(values), f"{what}: energy register not monotonic: {series}"
            readings += len(values)
            if values:
                spans.append((tx.started_at, values, tid))
            stamps = [t for t, _ in series]
            assert stamps == sorted(stamps), f"{what}: meter values out of order: {series}"
            end_wh = energy_readings(end, {"Transaction.End"})
            if end_wh and tx.meter_stop_wh is not None:
                assert end_wh[-1][1] == tx.meter_stop_wh, \
                    f"{what}: End reading {end_wh} vs meterStop {tx.meter_stop_wh}"

        # the station's energy register (persisted by the simulated meter) never runs backwards from one transaction
        # to the next either, power cuts included
        spans.sort()
        for (_, before, t1), (_, later, t2) in zip(spans, spans[1:]):
            assert before[-1] <= later[0], f"{where}: register went back from {t1} ({before}) to {t2} ({later})"

        # --- resends: each duplicate the CSMS saw is an exact copy of the event it had recorded ----------------------
        by_id = {r.unique_id: r for r in csms.received}
        for text in csms.duplicates:
            m = DUPLICATE.search(text)
            assert m, f"{where}: unexpected duplicate record {text!r}"
            _, tid, seq_no, uid = m.groups()
            recorded = next(e for e in ledger[tid].events if e["seqNo"] == int(seq_no))
            assert by_id[uid].payload == recorded, f"{where}: not an exact resend: {text}"
        assert csms.violations == [], f"{where}: {csms.violations}"

        # --- Eichrecht (issue #5): signed begin/end of every transaction logged, PG gapless, CSMS copies exact ------
        signed = check_signed_records(
            run, lambda tx: next(e for e in ledger[tx.transaction_id].events if e["eventType"] == "Ended"))

        with capsys.disabled():
            print(f"power-cut test (OCPP 2.0.1): {where}: {kills} kills, {station.starts} starts, "
                  f"{len(records)} transactions (stoppedReason {dict(reasons)}), {updated} Updated events, "
                  f"{readings} energy readings, "
                  f"{len(csms.duplicates)} exact resends deduplicated by the CSMS; {signed}")
        if kills >= 2 * len(PHASES):   # the run exercised what it claims: sessions ended by tag and by power cut
            assert reasons["Local"] and (reasons["PowerLoss"] or reasons["Reboot"]), f"{where}: {dict(reasons)}"
            assert updated, f"{where}: no Updated TransactionEvent was ever sent"
            assert readings, f"{where}: no energy register reading in any TransactionEvent (nothing to compare)"
            assert signed.records and signed.at_csms, f"{where}: no signed record was ever made or sent: {signed}"
