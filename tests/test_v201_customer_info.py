"""OCPP 2.0.1 N09 Get Customer Information and N10 Clear Customer Information (Part 6 TC_N_27..TC_N_33, TC_N_62,
TC_N_63): a real station against the strict embedded CSMS over real WebSockets, SQLite on disk.

What the station holds about an idToken (secure_cp.engine.customer): its authorization cache entry, its Local
Authorization List entry (reported, never cleared: N10.FR.02/03), the transactions started or stopped with it, an
authorization waiting for a cable, and the idToken type learned from the CSMS.
"""
from __future__ import annotations

from helpers import eventually
from secure_cp.sim.csms import Csms
from secure_cp.store import TxRecord
from secure_cp.v201 import messages as m
from test_v201_core import ID, barrier, booted, ended, started
from test_v201_tc_a_d import cache_tag
from test_v201_tc_c_gaps import send_list

TAG = "A1B2C3D4"


def token(tag: str = TAG) -> dict:
    return {"idToken": tag, "type": "ISO14443"}


def notifies(csms: Csms, request_id: int, after: int = 0) -> list[dict]:
    return [r.payload for r in csms.received[after:]
            if r.action == "NotifyCustomerInformation" and r.payload["requestId"] == request_id]


async def customer_report(csms: Csms, request: dict, after: int = 0) -> list[dict]:
    """Send CustomerInformation (must be Accepted) and collect every NotifyCustomerInformation part of it: seqNo
    0.. without gaps, tbc on all but the last (Part 6 post scenario validation "All report parts have been
    received")."""
    res = await csms.call(ID, "CustomerInformation", request)
    assert res == {"status": "Accepted"}
    rid = request["requestId"]
    await csms.wait_for("NotifyCustomerInformation", lambda p: p["requestId"] == rid and not p.get("tbc"),
                        after=after)
    parts = notifies(csms, rid, after)
    assert [p["seqNo"] for p in parts] == list(range(len(parts)))
    assert [bool(p.get("tbc")) for p in parts] == [True] * (len(parts) - 1) + [False]
    assert all(len(p["data"]) <= 512 for p in parts)
    return parts


def text(parts: list[dict]) -> str:
    return "\n".join(p["data"] for p in parts)


async def finished_session(csms: Csms, st, tag: str = TAG) -> str:
    """One transaction with ``tag``: plug, tag, tag again, unplug; every message delivered. Its transactionId."""
    csms.authorize[tag] = {"status": "Accepted"}
    n = len(csms.received)
    st.hw.ev_plug(1)
    st.hw.present_tag(tag, 1)
    tx_id = (await started(csms, n))["transactionInfo"]["transactionId"]
    st.hw.present_tag(tag, 1)
    await ended(csms, tx_id, n)
    st.hw.ev_plug(1, False)
    await eventually(lambda: st.station.outbox.pending_count() == 0, 5, "every transaction message delivered")
    return tx_id


async def test_tc_n_27_n09_fr_05_report_holds_cache_list_and_transactions(csms, make_station):
    """TC_N_27_CS (N09.FR.02, N09.FR.05): Memory State IdTokenCached and IdTokenLocalAuthList, a finished
    transaction of the idToken; report true -> Accepted and NotifyCustomerInformation with non-empty data naming the
    cache entry, the list entry and the transaction. IdToken is case insensitive: asked in lower case."""
    st = await booted(csms, make_station)
    tx_id = await finished_session(csms, st)          # the CSMS's answer is now cached too
    await eventually(lambda: st.station.cache.get(TAG) is not None, 5, "TAG cached")
    await send_list(csms, [(TAG, {"status": "Accepted", "cacheExpiryDateTime": "2099-01-01T00:00:00Z"})])
    parts = await customer_report(csms, {"requestId": 27, "report": True, "clear": False,
                                         "idToken": token(TAG.lower())})
    data = text(parts)
    assert "authorization cache: Accepted" in data
    assert "local authorization list: Accepted, expires 2099-01-01T00:00:00Z" in data
    assert f"transaction {tx_id} on EVSE 1 connector 1" in data and "Local" in data
    # a report changes nothing
    assert st.station.cache.get(TAG) is not None and st.station.transactions.get(tx_id).id_tag == TAG
    assert csms.violations == []


async def test_tc_n_28_n09_fr_06_report_without_data_is_one_empty_part(csms, make_station):
    """TC_N_28_CS (N09.FR.02, N09.FR.06): nothing is known about the idToken -> Accepted and exactly one
    NotifyCustomerInformation, tbc not true, data empty: no data found."""
    await booted(csms, make_station)
    parts = await customer_report(csms, {"requestId": 28, "report": True, "clear": False,
                                         "idToken": token("UNKNOWN1")})
    assert parts == [{"data": "", "tbc": False, "seqNo": 0, "generatedAt": parts[0]["generatedAt"],
                      "requestId": 28}]
    await barrier(csms)
    assert len(notifies(csms, 28)) == 1 and csms.violations == []


async def test_tc_n_29_n_33_n09_fr_09_invalid_reference_and_n09_fr_07_nothing_to_do(csms, make_station):
    """TC_N_29_CS / TC_N_33_CS (N09.FR.09): no reference to a customer, or more than one -> Invalid.
    N09.FR.07 / N10.FR.07: report and clear both false -> Rejected. None of them sends a report or clears."""
    st = await booted(csms, make_station)
    await cache_tag(csms, st, TAG)
    n = len(csms.received)
    res = await csms.call(ID, "CustomerInformation", {"requestId": 29, "report": True, "clear": True})
    assert res["status"] == "Invalid" and res["statusInfo"]["reasonCode"] == "MissingParam"
    res = await csms.call(ID, "CustomerInformation", {"requestId": 33, "report": True, "clear": True,
                                                      "idToken": token(), "customerIdentifier": "C-1"})
    assert res["status"] == "Invalid" and res["statusInfo"]["reasonCode"] == "InvalidValue"
    res = await csms.call(ID, "CustomerInformation", {"requestId": 7, "report": False, "clear": False,
                                                      "idToken": token()})
    assert res["status"] == "Rejected"
    await barrier(csms)
    assert [r for r in csms.received[n:] if r.action == "NotifyCustomerInformation"] == []
    assert st.station.cache.get(TAG) is not None
    assert csms.violations == []


async def test_tc_n_30_n10_fr_03_clear_and_report_keeps_only_the_local_list(csms, make_station):
    """TC_N_30_CS (N10.FR.01, N10.FR.03): clear and report -> Accepted, the cleared data is reported (not empty),
    the cache entry is gone, the finished transaction no longer names the idToken (its metering stays), the Local
    Authorization List entry stays (only the CSMS changes the list, N10.FR.02). Step 5: a second report has only the
    list entry left, tbc not true."""
    st = await booted(csms, make_station)
    tx_id = await finished_session(csms, st)
    await eventually(lambda: st.station.cache.get(TAG) is not None, 5, "TAG cached")
    await send_list(csms, [(TAG, {"status": "Accepted"})])
    parts = await customer_report(csms, {"requestId": 30, "report": True, "clear": True, "idToken": token()})
    data = text(parts)
    assert "authorization cache: Accepted" in data and f"transaction {tx_id}" in data
    assert "local authorization list: Accepted (kept: only the CSMS changes the local list" in data
    assert TAG not in st.station.cache
    rec = st.station.transactions.get(tx_id)
    assert rec.id_tag == "" and rec.stop_id_tag is None and rec.meter_stop_wh is not None
    assert st.station.local_list.lookup(TAG) == {"status": "Accepted"}
    n = len(csms.received)
    again = text(await customer_report(csms, {"requestId": 31, "report": True, "clear": False, "idToken": token()},
                                       after=n))
    assert again == "local authorization list: Accepted"
    assert csms.violations == []


async def test_n10_fr_03_running_transaction_is_kept_and_ends_normally(csms, make_station):
    """N10.FR.03 with a transaction in progress: its record keeps the idToken (the CSMS is owed its Ended event,
    which carries it), the report says why; the transaction then ends as usual with that idToken."""
    st = await booted(csms, make_station)
    csms.authorize[TAG] = {"status": "Accepted"}
    st.hw.ev_plug(1)
    st.hw.present_tag(TAG, 1)
    tx_id = (await started(csms))["transactionInfo"]["transactionId"]
    await eventually(lambda: st.station.cache.get(TAG) is not None, 5, "TAG cached")
    data = text(await customer_report(csms, {"requestId": 40, "report": True, "clear": True, "idToken": token()}))
    assert f"transaction {tx_id} on EVSE 1 connector 1" in data and "(kept: transaction in progress)" in data
    assert TAG not in st.station.cache and st.station.transactions.get(tx_id).id_tag == TAG
    st.hw.present_tag(TAG, 1)      # no Authorize needed: the same idToken stops its own transaction
    end = await ended(csms, tx_id)
    assert end["idToken"] == token() and end["transactionInfo"]["stoppedReason"] == "Local"
    assert csms.violations == []


async def test_tc_n_31_n10_fr_04_clear_and_report_without_data(csms, make_station):
    """TC_N_31_CS (N10.FR.01, N10.FR.04): clear and report for an idToken the station knows nothing about ->
    Accepted and one NotifyCustomerInformation with empty data (no data found)."""
    await booted(csms, make_station)
    parts = await customer_report(csms, {"requestId": 31, "report": True, "clear": True,
                                         "idToken": token("UNKNOWN2")})
    assert len(parts) == 1 and parts[0]["data"] == ""
    assert csms.violations == []


async def test_tc_n_32_n10_fr_06_clear_without_report_sends_one_cleared_notice(csms, make_station):
    """TC_N_32_CS (N10.FR.01, N10.FR.06): clear without report -> Accepted, the data is removed and one
    NotifyCustomerInformation says it was cleared (none of the data itself)."""
    st = await booted(csms, make_station)
    await cache_tag(csms, st, TAG)
    parts = await customer_report(csms, {"requestId": 32, "report": False, "clear": True, "idToken": token()})
    assert [p["data"] for p in parts] == ["customer information cleared"]
    assert TAG not in st.station.cache
    assert csms.violations == []


async def test_tc_n_62_n_63_customer_identifier_and_certificate_hold_no_data(csms, make_station):
    """TC_N_62_CS / TC_N_63_CS (N10.FR.01): the station keeps no customerIdentifier and no customer certificate
    (no ISO 15118): clear and report -> Accepted with data empty, and the follow-up report is empty too (step 7).
    An idToken's data is untouched by them."""
    st = await booted(csms, make_station)
    await cache_tag(csms, st, TAG)
    certificate = {"hashAlgorithm": "SHA256", "issuerNameHash": "ab" * 32, "issuerKeyHash": "cd" * 32,
                   "serialNumber": "1f"}
    for rid, ref in ((62, {"customerIdentifier": TAG}), (63, {"customerCertificate": certificate})):
        for clear in (True, False):
            n = len(csms.received)
            parts = await customer_report(csms, {"requestId": rid, "report": True, "clear": clear, **ref}, after=n)
            assert [p["data"] for p in parts] == [""]
    assert st.station.cache.get(TAG) is not None
    assert csms.violations == []


async def test_n09_fr_05_long_report_is_split_into_parts_of_512_characters(csms, make_station):
    """N09.FR.05 "one or more" NotifyCustomerInformation: a report longer than data's 512 characters comes in
    parts with seqNo 0.., tbc true on all but the last, the same requestId; together they hold every record."""
    st = await booted(csms, make_station)
    keys = [f"{n:032x}" for n in range(1, 9)]
    for n, key in enumerate(keys):
        st.station.transactions.create(TxRecord(
            tx_key=key, evse_id=1, connector_id=1, id_tag=TAG, started_at=f"2026-01-0{n + 1}T10:00:00Z",
            meter_start_wh=1000 * n, protocol="2.0.1", transaction_id=key, stopped_at=f"2026-01-0{n + 1}T11:00:00Z",
            meter_stop_wh=1000 * n + 500, stop_reason="Local"))
    parts = await customer_report(csms, {"requestId": 5, "report": True, "clear": False, "idToken": token()})
    assert len(parts) > 1
    data = text(parts)
    assert all(f"transaction {key} " in data for key in keys)
    assert csms.violations == []


def test_customer_information_parts_pack_lines_and_cut_long_ones():
    """The splitting itself: whole lines packed up to the limit, a line longer than the limit cut across parts,
    nothing lost; no lines -> one empty part."""
    parts = m.customer_information(9, ["a" * 6, "b" * 3, "c" * 25, "d"], "2026-01-01T00:00:00Z", max_chars=10)
    assert [p["data"] for p in parts] == ["aaaaaa\nbbb", "c" * 10, "c" * 10, "ccccc\nd"]
    assert [p["seqNo"] for p in parts] == [0, 1, 2, 3] and [p["tbc"] for p in parts] == [True, True, True, False]
    assert m.customer_information(9, [], "2026-01-01T00:00:00Z") == [
        {"data": "", "tbc": False, "seqNo": 0, "generatedAt": "2026-01-01T00:00:00Z", "requestId": 9}]
