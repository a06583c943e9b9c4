"""OCPP 2.0.1 offline behaviour and TransactionEvent delivery, end to end.

A real station (engine + 2.0.1 adapter + SQLite outbox + websockets) against the strict CSMS, which is stopped and
started again (``csms.stop()`` / ``csms.start()`` keep its records and its TransactionEvent ledger) to take the
station offline. Issue requirement: "Power-cut and offline tests as in the foundation, for TransactionEvent (seqNo
has no gaps or repeats)"; the foundation's offline tests are tests/test_v16_offline.py.

Spec: OCPP 2.0.1 edition 3 Part 2
* E §1.3.2 seqNo: incremented by one per TransactionEvent of a transaction, so the CSMS can tell whether it has
  all of them (``Tx201Record.seq_gaps()``);
* E11 (connection loss during a transaction) / E12 (transaction that happened offline): FR.01 queue every
  TransactionEvent while offline, FR.02 send them after the reconnect with ``offline`` true; E11.FR.07 what is still
  queued when the station goes offline is set offline;
* E13 (transaction-related message not accepted): FR.02 resend while it fails and MessageAttempts[TransactionEvent]
  is not reached, FR.03 wait MessageAttemptInterval[TransactionEvent] x preceding transmissions, FR.04 then discard
  it and go on with the next one; the remark: a CSMS that does not accept or does not answer in time is a failure,
  being offline is not.
The 1.6 keys in the station's ``[ocpp]`` table (TransactionMessageAttempts, TransactionMessageRetryInterval,
AllowOfflineTxForUnknownId, MeterValueSampleInterval) are the same device-model variables as the 2.0.1 ones.
"""
from __future__ import annotations

import asyncio

from helpers import eventually, go_offline, go_online, outbox_drained, retries, run_outbox_cli
from secure_cp.sim.csms import Csms
from test_v201_core import barrier, booted

ID = "CP1"


# ---- helpers ------------------------------------------------------------------------------------------------
async def charging(csms: Csms, make_station, attempts: int):
    """A booted station (``retries(attempts)``) whose transaction for TAG1 has started, the Started answered:
    (station, transactionId)."""
    st = await booted(csms, make_station, ocpp=retries(attempts))
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    tx_id = await started_tx(csms)
    await barrier(csms)                  # the Started is answered: nothing of this transaction is in flight
    return st, tx_id


def events(csms: Csms, after: int = 0):
    """The TransactionEvent CALLs the CSMS received (repeats included), in arrival order."""
    return [r for r in csms.received[after:] if r.action == "TransactionEvent"]


async def started_tx(csms: Csms, after: int = 0) -> str:
    rec = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started", after=after)
    return rec.payload["transactionInfo"]["transactionId"]


async def ended(csms: Csms, tx_id: str, after: int = 0):
    return await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended"
                               and p["transactionInfo"]["transactionId"] == tx_id, after=after)


def assert_complete(csms: Csms, tx_id: str) -> list[int]:
    """E §1.3.2: Started .. Ended with every seqNo in between, each once, Started first and Ended last."""
    tx = csms.transactions201[tx_id]
    assert tx.started is not None and tx.ended, [e["eventType"] for e in tx.events]
    assert tx.seq_gaps() == [], (tx.seq_nos, tx.seq_gaps())
    assert tx.conflicts == []
    seq = sorted(tx.seq_nos)
    assert len(set(seq)) == len(seq)
    assert tx.started["seqNo"] == seq[0] and tx.ended_event["seqNo"] == seq[-1]
    return seq



# ---- E11 / E12: queued while offline, delivered in order with offline true -------------------------------------
async def test_e11_fr_01_02_07_connection_lost_during_transaction_events_queued_and_sent_offline(csms, make_station):
    """E11 (FR.01/02/07): the connection drops during a transaction; the Updated (periodic meter values) and the
    Ended that happen meanwhile are queued, and after the reconnect delivered in seqNo order with offline true,
    continuing the Started's seqNos without a gap or a repeat. What was delivered before the drop is not sent
    again and carries no offline flag."""
    st = await booted(csms, make_station, ocpp={"MeterValueSampleInterval": "1"})
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    tx_id = await started_tx(csms)
    await barrier(csms)                  # the Started is answered: nothing of this transaction is in flight
    online_seqs = {r.payload["seqNo"] for r in events(csms)}
    await go_offline(csms, st)
    station = st.station
    await eventually(lambda: sum(i.payload["eventType"] == "Updated" for i in station.outbox.pending()) >= 2, 10,
                     "two periodic Updated events queued offline")
    st.hw.present_tag("TAG1")            # same token: ends the transaction locally, no Authorize needed
    await eventually(lambda: any(i.payload["eventType"] == "Ended" for i in station.outbox.pending()), 5,
                     "the Ended queued")
    queued = [i.payload for i in station.outbox.pending()]
    assert all(p["offline"] is True for p in queued), queued
    n = await go_online(csms, st)
    await ended(csms, tx_id, after=n)
    await barrier(csms)
    after = [r.payload for r in events(csms, n)]
    assert after == queued, "delivered exactly what was queued, in order, each once"
    assert [p["eventType"] for p in after][-1] == "Ended"
    assert {p["eventType"] for p in after[:-1]} == {"Updated"}
    assert not online_seqs & {p["seqNo"] for p in after}
    assert all("offline" not in r.payload for r in events(csms)[:len(online_seqs)])
    seq = assert_complete(csms, tx_id)
    assert seq == list(range(seq[0], seq[0] + len(seq)))
    await outbox_drained(csms, st)


async def test_e12_fr_01_02_transaction_entirely_offline_started_updated_ended_offline_true(csms, make_station):
    """E12 (FR.01/02), E04: a whole transaction while offline (OfflineTxForUnknownIdEnabled): Started, Updated and
    Ended are queued durably and sent after the reconnect in that order, all with offline true, seqNos continuous
    from Started to Ended; the transaction's timestamps are from when it happened, not from the delivery."""
    st = await booted(csms, make_station, ocpp={"MeterValueSampleInterval": "1",
                                               "AllowOfflineTxForUnknownId": "true"})
    await go_offline(csms, st)
    station = st.station
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    assert station.engine.connectors[1].tx_key is not None, "unknown id must be allowed offline (C15 / E04)"
    await eventually(lambda: sum(i.payload["eventType"] == "Updated" for i in station.outbox.pending()) >= 2, 10,
                     "two periodic Updated events queued offline")
    st.hw.present_tag("TAG1")
    st.hw.ev_plug(1, False)
    queued = [i.payload for i in station.outbox.pending()]
    kinds = [p["eventType"] for p in queued]
    assert kinds[0] == "Started" and kinds[-1] == "Ended" and set(kinds[1:-1]) == {"Updated"}, kinds
    n = len(csms.received)
    assert not events(csms, n)
    await go_online(csms, st)
    tx_id = queued[0]["transactionInfo"]["transactionId"]
    end = await ended(csms, tx_id, after=n)
    await barrier(csms)
    after = [r.payload for r in events(csms, n)]
    assert after == queued
    assert all(p["offline"] is True for p in after), [p.get("offline") for p in after]
    seq = assert_complete(csms, tx_id)
    assert seq == list(range(seq[0], seq[0] + len(seq))) and len(seq) == len(queued)
    stamps = [p["timestamp"] for p in after]
    assert stamps == sorted(stamps)
    rec = station.transactions.get(tx_id)
    assert rec.started_at == after[0]["timestamp"] and rec.stopped_at == end.payload["timestamp"]
    await outbox_drained(csms, st)


async def test_e13_remark_offline_time_does_not_burn_message_attempts(csms, make_station):
    """E13 remark: a CSMS that does not accept or answer is a failure; being offline is not. With
    MessageAttempts[TransactionEvent]=1 and MessageAttemptInterval=1 s, an offline period longer than attempts x
    interval discards nothing: everything is delivered after the reconnect and nothing is given up."""
    st = await booted(csms, make_station, ocpp=retries(1, AllowOfflineTxForUnknownId="true"))
    await go_offline(csms, st)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    st.hw.present_tag("TAG1")
    await asyncio.sleep(1.5)          # longer than attempts (1) x interval (1 s): would have used them all up
    assert st.station.outbox.failed() == []
    assert all(i.attempts == 0 for i in st.station.outbox.pending())
    n = await go_online(csms, st)
    tx_id = await started_tx(csms, after=n)
    await ended(csms, tx_id, after=n)
    assert [r.payload["eventType"] for r in events(csms, n)] == ["Started", "Ended"]
    assert_complete(csms, tx_id)
    await outbox_drained(csms, st)


# ---- E13: not accepted by the CSMS ---------------------------------------------------------------------------
async def test_tc_e_51_e13_fr_02_03_callerror_retried_after_interval_times_transmissions(csms, make_station):
    """TC_E_51_CS, E13.FR.02/03: a TransactionEvent answered with a CALLERROR is sent again, after
    MessageAttemptInterval x the number of preceding transmissions (1 s, then 2 s), until it is accepted within
    MessageAttempts; every transmission is the same event (same seqNo, same payload) in a new CALL (new message
    id). The CSMS ledger gets it once, and the seqNos stay continuous."""
    st, tx_id = await charging(csms, make_station, 3)
    csms.fail_next("TransactionEvent", count=2)
    n = len(csms.received)
    st.hw.present_tag("TAG1")
    await eventually(lambda: csms.transactions201[tx_id].ended, 15, "the third Ended transmission accepted")
    # the CSMS records a CALL once its answer is out, a moment after its ledger has the event: wait for that record
    await eventually(lambda: len(events(csms, n)) >= 3, 5, "the accepted transmission recorded")
    sent = events(csms, n)
    assert len(sent) == 3, [r.payload["eventType"] for r in sent]
    assert all(r.payload == sent[0].payload for r in sent), "a retry resends the same event"
    assert sent[0].payload["eventType"] == "Ended" and "offline" not in sent[0].payload
    assert len({r.unique_id for r in sent}) == 3
    # lower bounds only: a retry must not come before interval x preceding transmissions (E13.FR.03)
    assert (sent[1].at - sent[0].at).total_seconds() >= 0.9
    assert (sent[2].at - sent[1].at).total_seconds() >= 1.9
    assert_complete(csms, tx_id)
    await outbox_drained(csms, st)


async def test_tc_e_50_e13_fr_04_given_up_kept_listed_by_outbox_cli_while_running_next_event_follows(
        csms, make_station):
    """TC_E_50_CS, E13.FR.04: after MessageAttempts[TransactionEvent] failed transmissions the event is discarded
    from delivery (exactly MessageAttempts transmissions, no more) and the next transaction-related message is
    sent. Discarded means not deleted: it is kept in the store as failed (billing data) and ``secure-cp outbox
    --data-dir DIR [--failed]`` lists it as JSON lines, read-only, while the station keeps running."""
    st, tx_id = await charging(csms, make_station, 2)
    station = st.station
    csms.fail_next("TransactionEvent", count=2)
    n = len(csms.received)
    st.hw.present_tag("TAG1")
    await eventually(lambda: len(station.outbox.failed()) == 1, 15, "the Ended to be given up")
    await asyncio.sleep(1.2)           # longer than the next retry would wait: nothing is sent again
    await barrier(csms)
    ends = events(csms, n)
    assert len(ends) == 2, "exactly MessageAttempts transmissions"
    assert not csms.transactions201[tx_id].ended

    # the queue goes on (E13.FR.04): the next transaction's Started is delivered, its seqNo its own
    st.hw.ev_plug(1, False)
    st.hw.ev_plug(1)
    m = len(csms.received)
    st.hw.present_tag("TAG2")
    tx2 = await started_tx(csms, after=m)
    assert tx2 != tx_id
    await eventually(lambda: station.outbox.pending_count() == 0, 5, "the second Started confirmed")

    # listed by the CLI while the station runs (a read-only look at its store)
    assert st.task is not None and not st.task.done()
    rows = await run_outbox_cli(st.cfg.data_dir, "--failed")
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["action"] == "TransactionEvent" and row["status"] == "failed"
    assert row["attempts"] == 2
    assert row["payload"] == ends[0].payload
    assert row["payload"]["eventType"] == "Ended" and row["payload"]["transactionInfo"]["transactionId"] == tx_id
    assert "InternalError" in (row["error"] or "")
    assert [r["action"] for r in await run_outbox_cli(st.cfg.data_dir)] == ["TransactionEvent"]
    assert not st.task.done()
    assert csms.violations == []


async def test_e13_response_timeout_is_a_failure_and_the_resend_is_an_exact_duplicate(csms, make_station):
    """E13 description ("does not reply within the MessageTimeout") + E §1.3: the CSMS processes the Started but
    its answer is lost (``drop_next``): the station times out (2 s), counts one failed attempt, resends the same
    event (same seqNo, same payload, new message id) after MessageAttemptInterval, and the CSMS's duplicate
    detection sees an exact resend, not a second Started. The rest of the transaction follows with the next
    seqNo."""
    st = await booted(csms, make_station, ocpp=retries(3))
    csms.drop_next("TransactionEvent")
    n = len(csms.received)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await eventually(lambda: len(events(csms, n)) == 2, 15, "the resent Started")
    first, second = events(csms, n)
    assert first.payload == second.payload and first.unique_id != second.unique_id
    assert first.payload["eventType"] == "Started"
    assert (second.at - first.at).total_seconds() >= 2.0     # call timeout (2 s) + interval: lower bound only
    tx_id = first.payload["transactionInfo"]["transactionId"]
    assert csms.duplicates == [f"{ID}: TransactionEvent Started transactionId {tx_id} seqNo "
                               f"{first.payload['seqNo']}: duplicate (message {second.unique_id})"]
    assert len(csms.transactions201) == 1 and len(csms.transactions201[tx_id].events) == 1
    await eventually(lambda: st.station.outbox.pending_count() == 0, 5, "Started confirmed")
    m = len(csms.received)
    st.hw.present_tag("TAG1")
    end = await ended(csms, tx_id, after=m)
    assert end.payload["seqNo"] == first.payload["seqNo"] + 1
    assert_complete(csms, tx_id)
    assert st.station.outbox.failed() == []
    assert csms.violations == []


# ---- restart with a queue ------------------------------------------------------------------------------------
async def test_e12_fr_01_queued_transaction_events_survive_a_restart_and_are_delivered_once(csms, make_station):
    """E12.FR.01/02 across a reboot (the queue is the SQLite outbox) and B01.FR.08 (nothing before an accepted
    BootNotification): a session held offline, then the station restarted, then the CSMS back: the queued events
    are delivered exactly once, in seqNo order, with offline true, and the ledger is complete."""
    ocpp = {"MeterValueSampleInterval": "1", "AllowOfflineTxForUnknownId": "true"}
    st = await booted(csms, make_station, ocpp=ocpp)
    await go_offline(csms, st)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await eventually(lambda: any(i.payload["eventType"] == "Updated" for i in st.station.outbox.pending()), 10,
                     "an Updated queued offline")
    st.hw.present_tag("TAG1")
    st.hw.ev_plug(1, False)
    queued = [i.payload for i in st.station.outbox.pending()]
    assert [p["eventType"] for p in queued][::len(queued) - 1] == ["Started", "Ended"]
    tx_id = queued[0]["transactionInfo"]["transactionId"]
    await st.stop()

    await csms.start()
    n = len(csms.received)
    st2 = await make_station(csms, protocols=["ocpp2.0.1"], data_dir=st.cfg.data_dir, ocpp=ocpp)
    await ended(csms, tx_id, after=n)
    await eventually(lambda: st2.station.outbox.pending_count() == 0, 5, "empty outbox")
    await asyncio.sleep(0.3)
    await barrier(csms)
    after = csms.received[n:]
    assert after[0].action == "BootNotification", [r.action for r in after]
    assert [r.payload for r in events(csms, n)] == queued
    assert all(p["offline"] is True for p in queued)
    seq = assert_complete(csms, tx_id)
    assert seq == [p["seqNo"] for p in queued]
    assert st2.station.outbox.failed() == []
    assert csms.duplicates == [] and csms.violations == []
