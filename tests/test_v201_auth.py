"""OCPP 2.0.1 C01 (EV Driver Authorization using RFID) against the strict CSMS, requirement by requirement.

Part 2 C01: C01.FR.02 (Authorize for an idToken not known locally), C01.FR.03 (the same idToken, or a locally known
valid one of the same group, ends the authorization without an Authorize), C01 failure postcondition (Invalid,
Blocked, Expired, Unknown, ... start nothing), C01.FR.19-21 (idTokenInfo.evseId: charging only at the EVSEs named),
C01.FR.23 (a transaction that lost its authorization is not taken over by a different idToken); personalMessage and
language are ignored safely (no display: C01.FR.08-13 do not apply). Part 6: TC_C_02/04/06/07/56_CS.
"""
from __future__ import annotations

from helpers import eventually
from test_v201_core import ID, barrier, booted, ended, go_offline, go_online, set_var, started

MESSAGE = {"format": "UTF8", "language": "de", "content": "Hallo"}


def tx_events(csms, after: int) -> list[dict]:
    return [r.payload for r in csms.received[after:] if r.action == "TransactionEvent"]


async def test_tc_c_02_c_06_c_07_c_56_idtoken_not_accepted_starts_nothing(csms, make_station):
    """TC_C_02_CS (Invalid), TC_C_06_CS (Blocked), TC_C_07_CS (Expired), TC_C_56_CS (Unknown) and the other
    AuthorizationStatusEnumType rejections (C01.FR.07, C01.FR.18/22): the station sends AuthorizeRequest with idToken
    and type (C01.FR.02), starts no transaction and offers no energy; a personalMessage / language1 in the answer
    changes nothing."""
    st = await booted(csms, make_station)
    st.hw.ev_plug(1)                                         # Reusable State EVConnectedPreSession
    for i, status in enumerate(("Invalid", "Blocked", "Expired", "Unknown", "NoCredit", "NotAllowedTypeEVSE",
                                "NotAtThisLocation", "NotAtThisTime")):
        tag = f"REFUSED{i}"
        csms.authorize[tag] = {"status": status, "personalMessage": MESSAGE, "language1": "de"}
        n = len(csms.received)
        st.hw.present_tag(tag, 1)
        auth = await csms.wait_for("Authorize", lambda p, t=tag: p["idToken"]["idToken"] == t, after=n)
        assert auth.payload["idToken"]["type"] in ("Local", "ISO14443")   # read here: never Central (C03.FR.02)
        await barrier(csms)
        assert tx_events(csms, n) == [], status
        c = st.station.engine.connectors[1]
        assert c.tx_key is None and c.auth is None, status
        assert not st.hw.connectors[1].permitted, status     # no energy offered (C01.FR.01)
    # an Accepted answer with a personal message is used as usual
    csms.authorize["GREET1"] = {"status": "Accepted", "personalMessage": MESSAGE, "language1": "de"}
    n = len(csms.received)
    st.hw.present_tag("GREET1", 1)
    assert (await started(csms, after=n))["idToken"]["idToken"] == "GREET1"
    assert csms.violations == []


async def test_tc_c_04_different_idtoken_does_not_stop_the_transaction(csms, make_station):
    """TC_C_04_CS (C01.FR.03 only for the same idToken or group): another idToken, even one the CSMS accepts, is
    sent in an Authorize and does not end the transaction."""
    st = await booted(csms, make_station)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1", 1)
    tx_id = (await started(csms))["transactionInfo"]["transactionId"]
    n = len(csms.received)
    st.hw.present_tag("TAG2", 1)
    await csms.wait_for("Authorize", lambda p: p["idToken"]["idToken"] == "TAG2", after=n)
    await barrier(csms)
    assert not [e for e in tx_events(csms, n) if e["eventType"] == "Ended"]
    assert st.station.engine.connectors[1].tx_key == tx_id and st.station.engine.connectors[1].tx_authorized
    assert csms.violations == []


async def test_c01_fr_21_idtoken_charges_only_at_the_evses_in_idtokeninfo(csms, make_station):
    """C01.FR.20/21: idTokenInfo.evseId [2] -> presented at EVSE 1 the idToken is refused (no transaction there);
    presented at the station's reader (no EVSE) it is authorized for EVSE 2 only, even though EVSE 1 has the cable;
    the restriction is kept with the cached answer. C01.FR.19: without evseId any EVSE is fine (the other tests)."""
    st = await booted(csms, make_station, connectors=2)
    csms.authorize["EVSE2ONLY"] = {"status": "Accepted", "evseId": [2]}
    st.hw.ev_plug(1)
    n = len(csms.received)
    st.hw.present_tag("EVSE2ONLY", 1)
    await csms.wait_for("Authorize", after=n)
    await barrier(csms)
    assert tx_events(csms, n) == [] and st.station.engine.connectors[1].auth is None
    assert st.station.cache.get("EVSE2ONLY")["evseId"] == [2]
    st.hw.present_tag("EVSE2ONLY")                           # the station's reader: any EVSE the token may use
    await eventually(lambda: st.station.engine.connectors[2].auth is not None, 5, "the authorization of EVSE 2")
    assert st.station.engine.connectors[1].auth is None
    st.hw.ev_plug(2)
    start = await started(csms, after=n)
    assert start["evse"]["id"] == 2 and start["idToken"]["idToken"] == "EVSE2ONLY"
    assert csms.violations == []


async def test_c01_fr_03_b_group_member_known_locally_ends_without_authorize(csms, make_station):
    """C01.FR.03 (b): an idToken on the Local Authorization List, valid and with the groupIdToken of the one that
    started the authorization, ends it without an AuthorizeRequest (TxStopPoint Authorized: the transaction ends,
    Ended with that idToken, E07.FR.02)."""
    st = await booted(csms, make_station)
    group = {"idToken": "FAMILY", "type": "Central"}
    csms.authorize["PARENT1"] = {"status": "Accepted", "groupIdToken": group}
    res = await csms.call(ID, "SendLocalList", {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": [
        {"idToken": {"idToken": "CHILD1", "type": "Central"}, "idTokenInfo": {"status": "Accepted",
                                                                           "groupIdToken": group}}]})
    assert res["status"] == "Accepted"
    st.hw.ev_plug(1)
    st.hw.present_tag("PARENT1", 1)
    tx_id = (await started(csms))["transactionInfo"]["transactionId"]
    n = len(csms.received)
    st.hw.present_tag("CHILD1", 1)
    end = await ended(csms, tx_id, after=n)
    assert end["idToken"]["idToken"] == "CHILD1" and end["transactionInfo"]["stoppedReason"] == "Local"
    assert not [r for r in csms.received[n:] if r.action == "Authorize"]
    assert csms.violations == []


async def test_c01_fr_23_deauthorized_transaction_is_not_taken_over_by_another_idtoken(csms, make_station):
    """C01.FR.23: a transaction that lost its authorization (E05: the CSMS answered the offline Started with
    Unknown, StopTxOnInvalidId with TxStopPoint EVConnected only opens the power path) is not authorized by a
    different idToken, even one the CSMS accepts."""
    st = await booted(csms, make_station, ocpp={"AllowOfflineTxForUnknownId": "true"})
    assert await set_var(csms, "TxCtrlr", "TxStopPoint", "EVConnected") == "Accepted"
    await go_offline(csms, st)
    st.hw.ev_plug(1)
    st.hw.present_tag("NOBODY", 1)
    n = len(csms.received)
    await go_online(csms, st)
    tx_id = (await started(csms, after=n))["transactionInfo"]["transactionId"]
    await csms.wait_for("TransactionEvent", lambda p: p["triggerReason"] == "Deauthorized", after=n)
    c = st.station.engine.connectors[1]
    assert c.tx_key == tx_id and not c.tx_authorized
    m = len(csms.received)
    st.hw.present_tag("TAG2", 1)
    await csms.wait_for("Authorize", lambda p: p["idToken"]["idToken"] == "TAG2", after=m)
    await barrier(csms)
    assert [e for e in tx_events(csms, m) if e.get("idToken", {}).get("idToken") == "TAG2"] == []
    assert c.tx_key == tx_id and not c.tx_authorized
    assert csms.violations == []
