"""OCPP 1.6 offline behaviour and transaction-message delivery, end to end.

A real station (engine + 1.6 adapter + SQLite outbox + websockets) against the strict CSMS, which is stopped and
started again (``csms.stop()`` / ``csms.start()`` keep its records and transactions) to take the station offline.
Spec: OCPP 1.6 edition 2 §3.5 (offline), §3.7 (transaction-related messages are queued while offline and
delivered in chronological order), §3.7.1 (retries: TransactionMessageAttempts / TransactionMessageRetryInterval,
a message is skipped only after the CSMS repeatedly failed to process it), §4.2 (nothing before BootNotification
after a reboot), §4.9 (status after an offline period), OCPP-J 1.6 §4.1.1 / §4.1.4 (timeouts, message ids).
"""
from __future__ import annotations

import asyncio
from datetime import datetime

from helpers import barrier, booted, eventually, go_offline, go_online, outbox_drained, retries, run_outbox_cli
from secure_cp.sim.csms import Csms

TX_ACTIONS = ("StartTransaction", "MeterValues", "StopTransaction")


# ---- helpers ------------------------------------------------------------------------------------------------
async def charging(csms: Csms, make_station, attempts: int):
    """A booted station (``retries(attempts)``) whose transaction for TAG1 the CSMS has started:
    (station, transactionId)."""
    st = await booted(csms, make_station, ocpp=retries(attempts))
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await csms.wait_for("StartTransaction")
    return st, tx_id_for(csms, "TAG1")


def tx_records(csms: Csms, after: int = 0):
    return [r for r in csms.received[after:] if r.action in TX_ACTIONS]


def tx_id_for(csms: Csms, id_tag: str) -> int:
    ids = [t.transaction_id for t in csms.transactions.values() if t.start["idTag"] == id_tag]
    assert len(ids) == 1, f"expected one transaction for {id_tag}, CSMS has {ids}"
    return ids[0]


def seconds(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()



# ---- queueing while offline ---------------------------------------------------------------------------------
async def test_offline_session_is_queued_and_delivered_in_order_with_transaction_id(csms, make_station):
    """1.6 §3.7: Start/MeterValues/Stop of a session held entirely offline are queued and, after reconnecting,
    delivered in chronological order; §4.10/§4.7: the transactionId the CSMS gave in the StartTransaction.conf
    (only received after the reconnect) is filled into the queued MeterValues and StopTransaction."""
    st = await booted(csms, make_station, ocpp={"MeterValueSampleInterval": "1",
                                               "AllowOfflineTxForUnknownId": "true"})
    hw, station = st.hw, st.station
    await go_offline(csms, st)
    hw.ev_plug(1)
    hw.present_tag("TAG1")
    assert station.engine.connectors[1].tx_key is not None, "unknown id must be allowed offline (§3.5.4)"
    await eventually(lambda: sum(i.action == "MeterValues" for i in station.outbox.pending()) >= 2, 10,
                     "two periodic MeterValues queued offline")
    hw.present_tag("TAG1")
    hw.ev_plug(1, False)
    queued = [i.action for i in station.outbox.pending()]
    assert queued[0] == "StartTransaction" and queued[-1] == "StopTransaction", queued
    n = len(csms.received)
    assert not tx_records(csms, n)
    await go_online(csms, st)
    await csms.wait_for("StopTransaction", after=n)
    msgs = tx_records(csms, n)
    actions = [r.action for r in msgs]
    assert actions[0] == "StartTransaction" and actions[-1] == "StopTransaction", actions
    assert set(actions[1:-1]) == {"MeterValues"} and len(actions) >= 4, actions
    tx_id = tx_id_for(csms, "TAG1")
    for r in msgs[1:]:
        assert r.payload["transactionId"] == tx_id, r
    # chronological: every MeterValues sample lies between the start and the stop of the transaction
    start_ts, stop_ts = msgs[0].payload["timestamp"], msgs[-1].payload["timestamp"]
    stamps = [mv["timestamp"] for r in msgs[1:-1] for mv in r.payload["meterValue"]]
    assert stamps == sorted(stamps)
    assert start_ts <= stamps[0] and stamps[-1] <= stop_ts
    assert csms.transactions[tx_id].stop is not None
    assert len(csms.transactions[tx_id].meter_values) == len(msgs) - 2
    await outbox_drained(csms, st)


async def test_offline_time_does_not_burn_transaction_message_attempts(csms, make_station):
    """1.6 §3.7.1: only a 'failure to process the message' by a reachable CSMS counts as a failed attempt. Being
    offline longer than TransactionMessageAttempts x TransactionMessageRetryInterval must not discard anything."""
    st = await booted(csms, make_station, ocpp=retries(1, AllowOfflineTxForUnknownId="true"))
    await go_offline(csms, st)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    st.hw.present_tag("TAG1")
    await asyncio.sleep(1.5)          # longer than attempts (1) x retry interval (1 s)
    n = await go_online(csms, st)
    await csms.wait_for("StopTransaction", after=n)
    assert [r.action for r in tx_records(csms, n)] == ["StartTransaction", "StopTransaction"]
    assert csms.transactions[tx_id_for(csms, "TAG1")].stop is not None
    assert st.station.outbox.failed() == []
    assert csms.violations == []


async def test_connection_lost_while_awaiting_the_answer_is_not_a_failed_attempt(csms, make_station):
    """1.6 §3.7.1 + OCPP-J §4.1.1: a transaction message whose answer never came because the connection dropped
    is resent after the reconnect even with TransactionMessageAttempts=1 (the drop is not a CSMS failure); the
    CSMS, which had processed it, recognises the resend as a duplicate (at-least-once delivery)."""
    st, tx_id = await charging(csms, make_station, 1)
    csms.drop_next("StopTransaction")
    n = len(csms.received)
    st.hw.present_tag("TAG1")
    await csms.wait_for("StopTransaction", after=n)     # processed by the CSMS, answer swallowed
    await go_offline(csms, st)                             # well before the station's 2 s call timeout
    assert st.station.outbox.failed() == []
    await asyncio.sleep(1.2)
    m = await go_online(csms, st)
    await csms.wait_for("StopTransaction", after=m)
    await eventually(lambda: st.station.outbox.pending_count() == 0, 5, "empty outbox")
    assert st.station.outbox.failed() == []
    assert csms.transactions[tx_id].stop is not None
    assert any("duplicate StopTransaction" in d for d in csms.duplicates), csms.duplicates
    assert csms.violations == []


# ---- failures reported by the CSMS ----------------------------------------------------------------------------
async def test_callerror_is_retried_after_retry_interval_times_attempts_then_delivered(csms, make_station):
    """1.6 §3.7.1: after a CALLERROR the message is sent again, waiting TransactionMessageRetryInterval x the
    number of preceding transmissions (1 s, then 2 s), until it succeeds within TransactionMessageAttempts.
    OCPP-J §4.1.4: every transmission is a new CALL with a new message id."""
    st, tx_id = await charging(csms, make_station, 3)
    csms.fail_next("StopTransaction", count=2)
    n = len(csms.received)
    st.hw.present_tag("TAG1")
    await eventually(lambda: csms.transactions[tx_id].stop is not None, 15, "the third StopTransaction")
    stops = [r for r in csms.received[n:] if r.action == "StopTransaction"]
    assert len(stops) == 3, [r.action for r in csms.received[n:]]
    assert all(r.payload == stops[0].payload for r in stops), "a retry resends the same message"
    assert len({r.unique_id for r in stops}) == 3
    # lower bounds only: a retry must not come before RetryInterval x preceding transmissions
    assert seconds(stops[0].at, stops[1].at) >= 0.9
    assert seconds(stops[1].at, stops[2].at) >= 1.9
    await outbox_drained(csms, st)


async def test_message_given_up_after_attempts_is_kept_and_listed_by_outbox_cli(csms, make_station, tmp_path):
    """1.6 §3.7.1: after TransactionMessageAttempts failures the message is skipped and the station continues
    with the next transaction-related message; it is kept (billing data) and shown by
    ``secure-cp outbox --data-dir DIR --failed`` as JSON lines."""
    st, tx_id = await charging(csms, make_station, 2)
    csms.fail_next("StopTransaction", count=2)
    n = len(csms.received)
    st.hw.present_tag("TAG1")
    await eventually(lambda: len(st.station.outbox.failed()) == 1, 15, "the StopTransaction to be given up")
    await barrier(csms)
    stops = [r for r in csms.received[n:] if r.action == "StopTransaction"]
    assert len(stops) == 2, "exactly TransactionMessageAttempts transmissions"
    assert csms.transactions[tx_id].stop is None

    # the queue goes on: the next transaction's messages are delivered
    st.hw.ev_plug(1, False)
    st.hw.ev_plug(1)
    m = len(csms.received)
    st.hw.present_tag("TAG2")
    await csms.wait_for("StartTransaction", lambda p: p["idTag"] == "TAG2", after=m)
    await eventually(lambda: st.station.outbox.pending_count() == 0, 5, "StartTransaction of TAG2 confirmed")

    # kept across a shutdown and listed by the CLI (which needs the data directory for itself: station stopped)
    await st.stop()
    rows = await run_outbox_cli(st.cfg.data_dir, "--failed")
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["action"] == "StopTransaction" and row["status"] == "failed"
    assert row["attempts"] == 2
    assert row["payload"]["reason"] == "Local" and "meterStop" in row["payload"]
    assert "InternalError" in (row["error"] or "")
    assert [r["action"] for r in await run_outbox_cli(st.cfg.data_dir)] == ["StopTransaction"]
    assert csms.violations == []


async def test_response_timeout_is_a_failure_and_the_resend_is_deduplicated(csms, make_station):
    """1.6 §3.7.1: no answer within the call timeout is a failure to process; the StartTransaction is resent
    after the retry interval, the CSMS (which had processed it) answers with the same transactionId, and the
    station uses that id for the rest of the transaction."""
    st = await booted(csms, make_station, ocpp=retries(3))
    csms.drop_next("StartTransaction")
    n = len(csms.received)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await eventually(lambda: sum(r.action == "StartTransaction" for r in csms.received[n:]) == 2, 15,
                     "the resent StartTransaction")
    starts = [r for r in csms.received[n:] if r.action == "StartTransaction"]
    assert starts[0].payload == starts[1].payload and starts[0].unique_id != starts[1].unique_id
    assert seconds(starts[0].at, starts[1].at) >= 2.0     # call timeout (2 s) + retry interval, lower bound
    assert len(csms.transactions) == 1
    assert any("duplicate StartTransaction" in d for d in csms.duplicates), csms.duplicates
    tx_id = tx_id_for(csms, "TAG1")
    await eventually(lambda: st.station.outbox.pending_count() == 0, 5, "StartTransaction confirmed")
    m = len(csms.received)
    st.hw.present_tag("TAG1")
    stop = await csms.wait_for("StopTransaction", after=m)
    assert stop.payload["transactionId"] == tx_id
    assert st.station.outbox.failed() == []
    assert csms.violations == []


async def test_response_timeout_counts_against_transaction_message_attempts(csms, make_station):
    """1.6 §3.7.1: with TransactionMessageAttempts=1 a single unanswered StopTransaction is given up (and kept)."""
    st, _ = await charging(csms, make_station, 1)
    csms.drop_next("StopTransaction")
    n = len(csms.received)
    st.hw.present_tag("TAG1")
    await eventually(lambda: len(st.station.outbox.failed()) == 1, 10, "the StopTransaction to be given up")
    failed = st.station.outbox.failed()[0]
    assert failed.action == "StopTransaction" and failed.attempts == 1
    await asyncio.sleep(1.2)       # longer than the retry interval: nothing is sent again
    await barrier(csms)
    assert sum(r.action == "StopTransaction" for r in csms.received[n:]) == 1
    assert csms.violations == []


# ---- restart and reconnect ------------------------------------------------------------------------------------
async def test_queued_messages_are_delivered_once_after_a_station_restart(csms, make_station):
    """1.6 §3.7 (queue survives a reboot: SQLite outbox) and §4.2 (after the reboot nothing is sent before the
    BootNotification): a session held offline is delivered exactly once, in order, after the restart."""
    ocpp = {"MeterValueSampleInterval": "1", "AllowOfflineTxForUnknownId": "true"}
    st = await booted(csms, make_station, ocpp=ocpp)
    await go_offline(csms, st)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await eventually(lambda: any(i.action == "MeterValues" for i in st.station.outbox.pending()), 10,
                     "a MeterValues queued offline")
    st.hw.present_tag("TAG1")
    st.hw.ev_plug(1, False)
    queued = [i.action for i in st.station.outbox.pending()]
    await st.stop()

    await csms.start()
    n = len(csms.received)
    await make_station(csms, data_dir=st.cfg.data_dir, ocpp=ocpp)
    await csms.wait_for("StopTransaction", after=n)
    await asyncio.sleep(0.3)
    await barrier(csms)
    after = csms.received[n:]
    assert after[0].action == "BootNotification", [r.action for r in after]
    assert [r.action for r in tx_records(csms, n)] == queued
    tx_id = tx_id_for(csms, "TAG1")
    assert all(r.payload["transactionId"] == tx_id for r in tx_records(csms, n)[1:])
    assert csms.transactions[tx_id].stop is not None
    assert csms.duplicates == [] and csms.violations == []


async def test_status_after_reconnect_reports_current_status_not_history(csms, make_station):
    """1.6 §4.9 rules 1 and 3: after an offline period a connector whose status changed is reported once with its
    current status; historical changes (and a change that was undone while offline) are not reported."""
    st = await booted(csms, make_station, connectors=2)
    await go_offline(csms, st)
    hw = st.hw
    hw.ev_plug(1)
    hw.ev_plug(1, False)
    hw.ev_plug(1)                       # connector 1: Preparing -> Available -> Preparing (current: Preparing)
    hw.ev_plug(2)
    hw.ev_plug(2, False)                # connector 2: Preparing -> Available (back to what the CSMS knows)
    n = await go_online(csms, st)
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1, after=n)
    await asyncio.sleep(0.3)
    await barrier(csms)
    statuses = [(r.payload["connectorId"], r.payload["status"]) for r in csms.received[n:]
                if r.action == "StatusNotification"]
    assert [s for c, s in statuses if c == 1] == ["Preparing"], statuses
    assert all(s == "Available" for c, s in statuses if c == 2), statuses
    assert csms.violations == []
