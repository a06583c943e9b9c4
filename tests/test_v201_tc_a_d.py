"""OCPP 2.0.1 Part 6 test cases of blocks A-D (Charging Station under test) that the other 2.0.1 test files do not
exercise yet, each named after its TC id, against the strict embedded CSMS over real WebSockets.

The table conformance/ocpp201-tc-A-D.md lists every TC_A/B/C/D_CS and the test that covers it.
"""
from __future__ import annotations

import asyncio

from helpers import eventually
from secure_cp.sim.csms import Csms
from test_v201_core import ID, barrier, booted, go_offline, go_online, set_var, started, tx_events

PASSWORD = "0123456789abcdef"            # BasicAuthPassword, 16 characters (P2 §2.2.1 minimum)
NEW_PASSWORD = "NewBasicAuthPassword2026"  # 24 characters, identifierString characters only


async def answering(csms: Csms) -> None:
    """Wait until the station is connected again and answers a CALL (it may be reconnecting right now)."""
    for _ in range(50):
        try:
            await csms.wait_connected(ID)
            await barrier(csms)
            return
        except (ConnectionError, TimeoutError):
            await asyncio.sleep(0.1)
    raise AssertionError("the station did not reconnect")


def authorizes(csms: Csms, after: int, tag: str | None = None) -> list[dict]:
    return [r.payload for r in csms.received[after:] if r.action == "Authorize"
            and (tag is None or r.payload["idToken"]["idToken"] == tag)]


# ---- A Security (security profile 1 only: no TLS yet) -------------------------------------------------------------
async def test_tc_a_01_a_10_a_09_basic_auth_password_rejected_then_accepted(make_station):
    """TC_A_01_CS (A00.FR.202-205: HTTP Basic auth with <ChargingStationId>:<BasicAuthPassword>, the CSMS refuses
    anything else), TC_A_10_CS (A01.FR.11/12: a BasicAuthPassword shorter than 16 characters is Rejected and the old
    one stays in use) and TC_A_09_CS (A01.FR.01: a valid new password is Accepted and the station reconnects with
    it)."""
    async with Csms(basic_auth={ID: PASSWORD.encode()}) as csms:
        await booted(csms, make_station, security_profile=1, password=PASSWORD)          # TC_A_01
        assert csms.refused == []
        # TC_A_10: Rejected, and a reconnect still uses the old password (post scenario validation)
        assert await set_var(csms, "SecurityCtrlr", "BasicAuthPassword", "short1234") == "Rejected"
        await csms.stop()
        await csms.start()
        await answering(csms)
        assert csms.refused == []
        # TC_A_09: Accepted (or RebootRequired) and the next HTTP upgrade carries the new password
        csms.basic_auth[ID] = NEW_PASSWORD.encode()        # from now on the CSMS accepts only the new one
        assert await set_var(csms, "SecurityCtrlr", "BasicAuthPassword", NEW_PASSWORD) in ("Accepted",
                                                                                           "RebootRequired")
        await csms.stop()
        await csms.start()
        await answering(csms)
        assert csms.refused == [] and csms.violations == []


# ---- B Provisioning ------------------------------------------------------------------------------------------------
async def test_tc_b_07_b_10_get_and_set_variables_multiple_values(csms, make_station):
    """TC_B_10_CS then TC_B_07_CS (B05.FR.01-03/10/12, B06.FR.01-04/10): two variables of two components set and read
    in one request each; every result echoes its component, variable and attributeType Actual."""
    await booted(csms, make_station)
    data = [("OCPPCommCtrlr", "OfflineThreshold", "300"), ("AuthCtrlr", "LocalAuthorizeOffline", "true")]
    res = await csms.call(ID, "SetVariables", {"setVariableData": [
        {"component": {"name": c}, "variable": {"name": v}, "attributeValue": value, "attributeType": "Actual"}
        for c, v, value in data]})
    got = {(r["component"]["name"], r["variable"]["name"]): r for r in res["setVariableResult"]}
    assert set(got) == {(c, v) for c, v, _ in data}
    for r in got.values():
        assert r["attributeStatus"] == "Accepted" and r["attributeType"] == "Actual"
        assert r.get("attributeStatusInfo", {"reasonCode": "NoError"})["reasonCode"] == "NoError"
    res = await csms.call(ID, "GetVariables", {"getVariableData": [
        {"component": {"name": c}, "variable": {"name": v}, "attributeType": "Actual"} for c, v, _ in data]})
    values = {(r["component"]["name"], r["variable"]["name"]): (r["attributeStatus"], r.get("attributeType"),
                                                                 r.get("attributeValue"))
              for r in res["getVariableResult"]}
    assert values == {(c, v): ("Accepted", "Actual", value) for c, v, value in data}
    assert csms.violations == []


async def test_tc_b_12_configuration_inventory_reports_only_writable_variables(csms, make_station):
    """TC_B_12_CS (B07.FR.01/03/04/07/10/12): GetBaseReport ConfigurationInventory is Accepted; the NotifyReport parts
    carry the requestId, seqNo from 0 upwards, and only ReadWrite / WriteOnly variables with their characteristics;
    a list-typed variable has its valuesList."""
    await booted(csms, make_station)
    res = await csms.call(ID, "GetBaseReport", {"requestId": 42, "reportBase": "ConfigurationInventory"})
    assert res["status"] == "Accepted"
    items = await csms.wait_report(ID, 42)       # complete: tbc false and every seqNo from 0 up to it
    parts = [r.payload for r in csms.received if r.action == "NotifyReport" and r.payload["requestId"] == 42]
    assert sorted(p["seqNo"] for p in parts) == list(range(len(parts))) and items
    names = {(d["component"]["name"], d["variable"]["name"]) for d in items}
    assert ("OCPPCommCtrlr", "OfflineThreshold") in names and ("TxCtrlr", "TxStartPoint") in names
    for d in items:
        assert "variableCharacteristics" in d, d
        assert all(a.get("mutability", "ReadWrite") in ("ReadWrite", "WriteOnly") for a in d["variableAttribute"]), d
        if d["variableCharacteristics"]["dataType"] in ("OptionList", "SequenceList", "MemberList"):
            assert d["variableCharacteristics"].get("valuesList"), d
    assert csms.violations == []


async def test_tc_b_53_full_inventory_lists_have_values_and_write_only_values_are_omitted(csms, make_station):
    """TC_B_53_CS (Part 2 "Referenced Components and Variables"): in the FullInventory every OptionList /
    SequenceList / MemberList variable has a non-empty valuesList that holds its value(s), and a WriteOnly variable
    (SecurityCtrlr.BasicAuthPassword) is reported without its value."""
    await booted(csms, make_station, security_profile=0, password=PASSWORD)
    assert await csms.call(ID, "GetBaseReport", {"requestId": 53, "reportBase": "FullInventory"}) == \
        {"status": "Accepted"}
    items = await csms.wait_report(ID, 53)
    for d in items:
        ch = d["variableCharacteristics"]
        if ch["dataType"] not in ("OptionList", "SequenceList", "MemberList"):
            continue
        allowed = ch.get("valuesList", "").split(",")
        assert allowed != [""], d
        for attr in d["variableAttribute"]:
            members = [attr["value"]] if ch["dataType"] == "OptionList" else attr.get("value", "").split(",")
            assert all(m in allowed for m in members if m), d
    write_only = [a for d in items for a in d["variableAttribute"] if a.get("mutability") == "WriteOnly"]
    assert write_only and all("value" not in a for a in write_only)
    assert csms.violations == []


# ---- C Authorization -----------------------------------------------------------------------------------------------
async def cache_tag(csms: Csms, st, tag: str, status: str = "Accepted", **info) -> None:
    """Memory State IdTokenCached: present ``tag`` once online, the CSMS answers ``status`` and the other IdTokenInfo
    fields ``info`` (C10.FR.04)."""
    csms.authorize[tag] = {"status": status, **info}
    n = len(csms.received)
    st.hw.present_tag(tag, 1)
    await csms.wait_for("Authorize", lambda p: p["idToken"]["idToken"] == tag, after=n)
    await barrier(csms)
    await eventually(lambda: st.station.cache.get(tag) is not None, 5, f"{tag} in the cache")
    if status == "Accepted":         # the tag is now waiting for a cable; withdraw the authorization again
        st.hw.present_tag(tag, 1)
        await eventually(lambda: st.station.engine.connectors[1].auth is None, 5, "the authorization withdrawn")


def with_token(csms: Csms, tag: str, after: int = 0) -> list[dict]:
    """The TransactionEvents since ``after`` that carry ``tag`` as idToken."""
    return [e for e in tx_events(csms, after) if e.get("idToken", {}).get("idToken") == tag]


async def starts_without_authorize(csms: Csms, st, tag: str) -> int:
    """Plug in and present ``tag``: a TransactionEvent with it goes out and no AuthorizeRequest (a local
    authorization, C10.FR.03 / C14.FR.02); the record count before the plug."""
    n = len(csms.received)
    st.hw.ev_plug(1)
    st.hw.present_tag(tag, 1)
    await eventually(lambda: with_token(csms, tag, n), 5, f"the TransactionEvent with {tag}")
    assert authorizes(csms, n, tag) == []
    return n


async def invalid_member_does_not_stop(csms: Csms, st, tag: str) -> None:
    """C09.FR.11: ``tag``, a member of the transaction's group that the CSMS answers Invalid, is sent in an
    AuthorizeRequest and neither deauthorizes nor ends the transaction: the energy is still offered."""
    n = len(csms.received)
    st.hw.present_tag(tag, 1)
    await csms.wait_for("Authorize", lambda p: p["idToken"]["idToken"] == tag, after=n)
    await barrier(csms)
    assert not [e for e in tx_events(csms, n) if e["triggerReason"] == "StopAuthorized" or e["eventType"] == "Ended"]
    assert st.hw.connectors[1].permitted


async def valid_member_stops(csms: Csms, st, tx_id: str, tag: str) -> int:
    """C09.FR.03/05: ``tag``, a valid member of the transaction's group, ends it: StopAuthorized with that idToken.
    The record count before the tag."""
    n = len(csms.received)
    st.hw.present_tag(tag, 1)
    rec = await csms.wait_for("TransactionEvent", lambda p: p["triggerReason"] == "StopAuthorized", after=n)
    assert rec.payload["transactionInfo"]["transactionId"] == tx_id
    assert rec.payload["idToken"]["idToken"] == tag
    return n


async def test_tc_c_08_c_36_cached_token_used_only_with_local_pre_authorize(csms, make_station):
    """TC_C_36_CS (C10.FR.11 context, LocalPreAuthorize false): a cached Accepted idToken is still sent in an
    AuthorizeRequest. TC_C_08_CS (C12.FR.02/04, LocalPreAuthorize true): the cached Accepted idToken starts the
    transaction without an AuthorizeRequest, the TransactionEvent carries triggerReason Authorized and the idToken."""
    st = await booted(csms, make_station)
    await cache_tag(csms, st, "CACHED1")
    # TC_C_36: LocalPreAuthorize false -> AuthorizeRequest; the CSMS now says Invalid: nothing starts
    csms.authorize["CACHED1"] = {"status": "Invalid"}
    st.hw.ev_plug(1)
    n = len(csms.received)
    st.hw.present_tag("CACHED1", 1)
    await csms.wait_for("Authorize", lambda p: p["idToken"]["idToken"] == "CACHED1", after=n)
    await barrier(csms)
    assert not [e for e in tx_events(csms, n) if e.get("idToken")]
    assert st.station.engine.connectors[1].auth is None
    # TC_C_08: cache Accepted again, LocalPreAuthorize true -> no AuthorizeRequest
    st.hw.ev_plug(1, False)
    csms.authorize["CACHED1"] = {"status": "Accepted"}
    await cache_tag(csms, st, "CACHED1")
    assert await set_var(csms, "AuthCtrlr", "LocalPreAuthorize", "true") == "Accepted"
    csms.authorize["CACHED1"] = {"status": "Invalid"}   # would refuse, were it asked
    n = len(csms.received)
    st.hw.ev_plug(1)
    st.hw.present_tag("CACHED1", 1)
    await started(csms, after=n)
    await eventually(lambda: [e for e in tx_events(csms, n) if e.get("idToken")], 5, "the Authorized event")
    with_token = [e for e in tx_events(csms, n) if e.get("idToken")]
    assert with_token[0]["idToken"]["idToken"] == "CACHED1" and with_token[0]["triggerReason"] == "Authorized"
    assert authorizes(csms, n, "CACHED1") == []
    assert csms.violations == []


async def test_tc_c_09_c_10_c_11_c_12_cached_token_not_accepted_is_asked_again(csms, make_station):
    """TC_C_09/10/11_CS (C12.FR.05, C10.FR.03): with LocalPreAuthorize true an idToken cached as Invalid, Blocked or
    Expired is sent in an AuthorizeRequest and, refused again, starts nothing; TC_C_12_CS: cached Invalid, the CSMS
    now answers Accepted: the transaction starts."""
    st = await booted(csms, make_station)
    assert await set_var(csms, "AuthCtrlr", "LocalPreAuthorize", "true") == "Accepted"
    st.hw.ev_plug(1)
    for status in ("Blocked", "Expired"):                                  # TC_C_10, TC_C_11
        tag = f"CACHED{status.upper()}"
        await cache_tag(csms, st, tag, status)
        n = len(csms.received)
        st.hw.present_tag(tag, 1)
        await csms.wait_for("Authorize", lambda p, t=tag: p["idToken"]["idToken"] == t, after=n)
        await barrier(csms)
        assert st.station.engine.connectors[1].auth is None, status
        assert tx_events(csms, n) == [], status
    st.hw.ev_plug(1, False)
    await cache_tag(csms, st, "BAD1", "Invalid")
    st.hw.ev_plug(1)
    n = len(csms.received)
    st.hw.present_tag("BAD1", 1)
    await csms.wait_for("Authorize", lambda p: p["idToken"]["idToken"] == "BAD1", after=n)
    await barrier(csms)
    assert st.station.engine.connectors[1].auth is None
    assert not [e for e in tx_events(csms, n) if e.get("idToken")]
    csms.authorize["BAD1"] = {"status": "Accepted"}                       # TC_C_12
    n = len(csms.received)
    st.hw.present_tag("BAD1", 1)
    await csms.wait_for("Authorize", lambda p: p["idToken"]["idToken"] == "BAD1", after=n)
    await eventually(lambda: [e for e in tx_events(csms, n) if e.get("idToken", {}).get("idToken") == "BAD1"], 5,
                     "the transaction for BAD1")
    assert csms.violations == []


async def test_tc_c_27_to_c_31_online_local_list(csms, make_station):
    """C14 with LocalPreAuthorize true. TC_C_27_CS (C14.FR.02): an Accepted idToken of the Local Authorization List
    authorizes without an AuthorizeRequest; TransactionEvent triggerReason Authorized with the idToken. TC_C_28/29/30_CS
    (C14.FR.03): an Invalid / Blocked / Expired entry is sent in an AuthorizeRequest and, refused, starts nothing.
    TC_C_31_CS: an Invalid entry the CSMS now accepts starts the transaction."""
    st = await booted(csms, make_station)
    assert await set_var(csms, "AuthCtrlr", "LocalPreAuthorize", "true") == "Accepted"
    entries = [("LISTOK", "Accepted"), ("LISTINV", "Invalid"), ("LISTBLK", "Blocked"), ("LISTEXP", "Expired")]
    res = await csms.call(ID, "SendLocalList", {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": [
        {"idToken": {"idToken": t, "type": "ISO14443"}, "idTokenInfo": {"status": status}} for t, status in entries]})
    assert res["status"] == "Accepted"
    st.hw.ev_plug(1)
    for tag, status in entries[1:]:                                       # TC_C_28, TC_C_29, TC_C_30
        csms.authorize[tag] = {"status": status}
        n = len(csms.received)
        st.hw.present_tag(tag, 1)
        await csms.wait_for("Authorize", lambda p, t=tag: p["idToken"]["idToken"] == t, after=n)
        await barrier(csms)
        assert st.station.engine.connectors[1].auth is None and tx_events(csms, n) == [], status
    csms.authorize["LISTOK"] = {"status": "Invalid"}                      # TC_C_27: the list decides, not asked
    n = len(csms.received)
    st.hw.present_tag("LISTOK", 1)
    await eventually(lambda: [e for e in tx_events(csms, n) if e.get("idToken")], 5, "the Authorized event")
    ev = [e for e in tx_events(csms, n) if e.get("idToken")][0]
    assert ev["idToken"]["idToken"] == "LISTOK" and ev["triggerReason"] == "Authorized"
    assert authorizes(csms, n, "LISTOK") == []
    tx_id = ev["transactionInfo"]["transactionId"]
    st.hw.ev_plug(1, False)
    await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended"
                        and p["transactionInfo"]["transactionId"] == tx_id, after=n)
    await eventually(lambda: st.station.engine.connectors[1].tx_key is None, 5, "the transaction ended")
    csms.authorize["LISTINV"] = {"status": "Accepted"}                    # TC_C_31
    st.hw.ev_plug(1)
    n = len(csms.received)
    st.hw.present_tag("LISTINV", 1)
    await csms.wait_for("Authorize", lambda p: p["idToken"]["idToken"] == "LISTINV", after=n)
    await eventually(lambda: with_token(csms, "LISTINV", n), 5, "the transaction for LISTINV")
    assert csms.violations == []


async def test_tc_c_39_c_42_group_id_stops_only_with_a_valid_member(csms, make_station):
    """TC_C_39_CS (C09.FR.02/03/05): a second idToken whose AuthorizeResponse carries the groupIdToken of the one
    that started the transaction ends it with triggerReason StopAuthorized and that idToken. TC_C_42_CS (C09.FR.11):
    an idToken of the same group the CSMS calls Invalid does not end the transaction."""
    st = await booted(csms, make_station)
    group = {"idToken": "GROUP1", "type": "Central"}
    csms.authorize["MEMBER1"] = {"status": "Accepted", "groupIdToken": group}
    csms.authorize["MEMBER2"] = {"status": "Accepted", "groupIdToken": group}
    csms.authorize["MEMBER3"] = {"status": "Invalid", "groupIdToken": group}
    st.hw.ev_plug(1)
    st.hw.present_tag("MEMBER1", 1)
    tx_id = (await started(csms))["transactionInfo"]["transactionId"]
    await eventually(lambda: st.hw.connectors[1].permitted, 5, "energy offered")
    await invalid_member_does_not_stop(csms, st, "MEMBER3")                # TC_C_42
    n = await valid_member_stops(csms, st, tx_id, "MEMBER2")               # TC_C_39
    assert authorizes(csms, n, "MEMBER2") != []
    assert csms.violations == []


async def test_tc_c_32_cache_persists_over_reboot(csms, make_station, tmp_path):
    """TC_C_32_CS (C10.FR.02): an idToken cached before a restart authorizes locally after it (LocalPreAuthorize
    true): no AuthorizeRequest."""
    st = await booted(csms, make_station, data_dir=tmp_path / "c32")
    assert await set_var(csms, "AuthCtrlr", "LocalPreAuthorize", "true") == "Accepted"
    await cache_tag(csms, st, "KEEP1")
    await st.stop()
    st = await booted(csms, make_station, data_dir=tmp_path / "c32")
    await starts_without_authorize(csms, st, "KEEP1")
    assert csms.violations == []


async def test_tc_c_33_c_34_transaction_event_response_updates_the_cache(csms, make_station):
    """TC_C_33_CS (C10.FR.04: cached from the AuthorizeResponse, then used without one) and TC_C_34_CS (C10.FR.05,
    C12.FR.06): the idTokenInfo of a TransactionEventResponse replaces the cached one; the
    idToken cached Accepted but answered Invalid in the TransactionEventResponse is asked for again next time."""
    st = await booted(csms, make_station)
    assert await set_var(csms, "AuthCtrlr", "LocalPreAuthorize", "true") == "Accepted"
    await cache_tag(csms, st, "FLIP1")
    csms.authorize["FLIP1"] = {"status": "Invalid"}      # the CSMS's answer in the TransactionEventResponse
    await starts_without_authorize(csms, st, "FLIP1")
    await barrier(csms)
    await eventually(lambda: (st.station.cache.get("FLIP1") or {}).get("status") == "Invalid", 5,
                     "the cache updated to Invalid")
    st.hw.ev_plug(1, False)
    await eventually(lambda: st.station.engine.connectors[1].tx_key is None, 5, "the transaction ended")
    # EVDisconnected: the cable kept locked for FLIP1 after the DeAuthorized stop is released by the EV-side unplug
    # (UnlockOnEVSideDisconnect), so FLIP1's next presentation is a new authorization
    await eventually(lambda: st.station.engine.connectors[1].locked_for is None, 5, "the cable released")
    assert not st.hw.connectors[1].locked
    st.hw.ev_plug(1)
    n = len(csms.received)
    st.hw.present_tag("FLIP1", 1)
    await csms.wait_for("Authorize", lambda p: p["idToken"]["idToken"] == "FLIP1", after=n)
    assert csms.violations == []


async def test_tc_c_21_offline_local_list_token_starts_and_is_reported_offline(csms, make_station):
    """TC_C_21_CS (C13.FR.02, LocalAuthorizeOffline true): offline, an Accepted idToken of the Local Authorization
    List authorizes the transaction; after reconnecting every queued TransactionEvent carries offline true."""
    st = await booted(csms, make_station)
    res = await csms.call(ID, "SendLocalList", {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": [
        {"idToken": {"idToken": "LIST1", "type": "ISO14443"}, "idTokenInfo": {"status": "Accepted"}}]})
    assert res["status"] == "Accepted"
    await go_offline(csms, st)
    st.hw.ev_plug(1)
    st.hw.present_tag("LIST1", 1)
    await eventually(lambda: st.station.engine.connectors[1].tx_key is not None, 5, "the offline transaction")
    n = len(csms.received)
    await go_online(csms, st)
    ev = await started(csms, after=n)
    assert ev["offline"] is True
    await eventually(lambda: [e for e in tx_events(csms, n) if e.get("idToken", {}).get("idToken") == "LIST1"], 5,
                     "the idToken reported")
    assert all(e.get("offline") is True for e in tx_events(csms, n))
    assert csms.violations == []
