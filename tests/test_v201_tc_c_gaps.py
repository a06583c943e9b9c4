"""OCPP 2.0.1 Part 6 test cases of block C (Authorization) that tests/test_v201_tc_a_d.py does not cover: the
Authorization Cache lifetime, cached and listed identifiers offline, group ids through the cache and the list,
MaxEnergyOnInvalidId, Central idTokens and AuthCtrlr.Enabled; each against the strict embedded CSMS over real
WebSockets. The table conformance/ocpp201-tc-A-D.md lists every TC_C_CS and the test that covers it.
"""
from __future__ import annotations

import asyncio

import pytest

from helpers import eventually
from secure_cp.engine import Status
from secure_cp.sim.csms import Csms
from secure_cp.store import AuthCache, Database
from test_v201_core import ID, barrier, booted, ended, go_offline, go_online, set_var, started, tx_events
from test_v201_tc_a_d import authorizes, cache_tag, invalid_member_does_not_stop, valid_member_stops, with_token

GROUP = {"idToken": "FAMILY", "type": "Central"}


async def send_list(csms: Csms, entries: list[tuple[str, dict]]) -> None:
    """A Full SendLocalList of (idToken, idTokenInfo) entries, Accepted (D01.FR.04)."""
    res = await csms.call(ID, "SendLocalList", {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": [
        {"idToken": {"idToken": tag, "type": "ISO14443"}, "idTokenInfo": info} for tag, info in entries]})
    assert res["status"] == "Accepted"


async def present_locally(csms: Csms, st, tag: str) -> None:
    """Present ``tag`` with no cable, expect a local authorization (no AuthorizeRequest), then withdraw it again."""
    n = len(csms.received)
    st.hw.present_tag(tag, 1)
    await eventually(lambda: st.station.engine.connectors[1].auth is not None, 5, f"{tag} authorized locally")
    await barrier(csms)
    assert authorizes(csms, n, tag) == []
    st.hw.present_tag(tag, 1)
    await eventually(lambda: st.station.engine.connectors[1].auth is None, 5, "the authorization withdrawn")


# ---- C10 Authorization Cache ---------------------------------------------------------------------------------------
def test_c10_fr_08_cache_lifetime_counts_from_the_last_use(tmp_path):
    """C10.FR.08 at the store: LifeTime counts from the last update or use of an entry without an expiry of its own;
    past it the entry is removed (C10.FR.10). An entry with cacheExpiryDateTime follows that instead (C10.FR.13);
    a lookup without a time (or without a lifetime, as in 1.6) judges nothing."""
    with Database(tmp_path / "cache.db") as db:
        cache = AuthCache(db)
        cache.put("IDLE", {"status": "Accepted"}, 1000.0)
        cache.put("DATED", {"status": "Accepted", "cacheExpiryDateTime": "2099-01-01T00:00:00Z"}, 1000.0)
        assert cache.get("IDLE", now=1009.0, lifetime=10) == {"status": "Accepted"}    # used at 1009
        assert cache.get("IDLE", now=1018.0, lifetime=10) == {"status": "Accepted"}    # 9 s after that use
        assert cache.get("IDLE") is not None                                           # no time: no use
        assert cache.get("IDLE", now=1028.0, lifetime=10) is None and "IDLE" not in cache
        cache.put("OLD16", {"status": "Accepted"}, 1000.0)
        assert cache.get("OLD16", now=5000.0) is not None                               # no lifetime (1.6)
        assert cache.get("DATED", now=5000.0, lifetime=10)["status"] == "Accepted"


async def test_tc_c_46_c10_fr_08_cache_entry_expires_lifetime_after_its_last_use(csms, make_station):
    """TC_C_46_CS (C10.FR.08, C10.FR.10): an entry without cacheExpiryDateTime stays in the cache for
    AuthCacheCtrlr.LifeTime seconds after its last use; once that has passed it is removed and the next presentation
    sends an AuthorizeRequest (Reusable State Authorized). C10.FR.13: an entry with a cacheExpiryDateTime still in
    the future is not subject to LifeTime."""
    st = await booted(csms, make_station)
    assert await set_var(csms, "AuthCtrlr", "LocalPreAuthorize", "true") == "Accepted"
    assert await set_var(csms, "AuthCacheCtrlr", "LifeTime", "3600") == "Accepted"
    await cache_tag(csms, st, "AGED1")
    await cache_tag(csms, st, "DATED1", cacheExpiryDateTime="2099-01-01T00:00:00Z")
    await present_locally(csms, st, "AGED1")                 # well within the lifetime: used from the cache
    assert await set_var(csms, "AuthCacheCtrlr", "LifeTime", "1") == "Accepted"
    await asyncio.sleep(1.5)                                  # <Configured Transaction Duration> > LifeTime
    n = len(csms.received)
    st.hw.present_tag("AGED1", 1)
    await csms.wait_for("Authorize", lambda p: p["idToken"]["idToken"] == "AGED1", after=n)
    await barrier(csms)
    await eventually(lambda: st.station.engine.connectors[1].auth is not None, 5, "AGED1 authorized by the CSMS")
    st.hw.present_tag("AGED1", 1)
    await eventually(lambda: st.station.engine.connectors[1].auth is None, 5, "the authorization withdrawn")
    await present_locally(csms, st, "DATED1")                 # C10.FR.13: its own expiry decides
    assert csms.violations == []


async def test_tc_c_13_cached_token_presented_before_the_cable(csms, make_station):
    """TC_C_13_CS (C12.FR.02/04): a cached Accepted idToken presented before the cable is authorized without an
    AuthorizeRequest; plugging in then starts the transaction (TxStartPoint PowerPathClosed) with triggerReason
    Authorized and the idToken, and energy is offered."""
    st = await booted(csms, make_station)
    assert await set_var(csms, "AuthCtrlr", "LocalPreAuthorize", "true") == "Accepted"
    await cache_tag(csms, st, "CABLE13")
    n = len(csms.received)
    st.hw.present_tag("CABLE13", 1)
    await eventually(lambda: st.station.engine.connectors[1].auth is not None, 5, "CABLE13 authorized locally")
    assert not st.hw.connectors[1].permitted                  # no cable, no energy
    st.hw.ev_plug(1)
    start = await started(csms, after=n)
    assert start["triggerReason"] == "Authorized" and start["idToken"]["idToken"] == "CABLE13"
    await eventually(lambda: st.hw.connectors[1].permitted, 5, "energy offered")
    assert authorizes(csms, n, "CABLE13") == []
    assert csms.violations == []


# ---- C12 / E05 a cached idToken the CSMS no longer accepts ----------------------------------------------------------
@pytest.mark.parametrize("stop, max_energy", [("false", 10), ("true", 0), ("true", 500)],
                         ids=["tc_c_15", "tc_c_16", "tc_c_18"])
async def test_tc_c_15_c_16_c_18_cached_token_started_offline_then_invalid(csms, make_station, stop, max_energy):
    """Offline, a cached Accepted idToken starts the transaction (C12.FR.02, LocalAuthorizeOffline); after the
    reconnect the CSMS answers it Invalid. TC_C_15_CS (StopTxOnInvalidId false, MaxEnergyOnInvalidId > 0): no
    Deauthorized and no SuspendedEVSE while MaxEnergyOnInvalidId more energy is delivered, then the energy offer
    stops (SuspendedEVSE) and the transaction goes on. TC_C_16_CS / TC_C_18_CS (StopTxOnInvalidId true, whatever
    MaxEnergyOnInvalidId): the energy flow stops at once: triggerReason Deauthorized, sent online (offline false)."""
    st = await booted(csms, make_station, ocpp={"StopTransactionOnInvalidId": stop,
                                               "MaxEnergyOnInvalidId": str(max_energy),
                                               "LocalPreAuthorize": "true", "LocalAuthorizeOffline": "true",
                                               "MeterValueSampleInterval": "1"})
    await cache_tag(csms, st, "CACHED15")
    csms.authorize["CACHED15"] = {"status": "Invalid"}
    st.hw.ev_plug(1)
    await go_offline(csms, st)
    st.hw.present_tag("CACHED15", 1)
    await eventually(lambda: st.hw.connectors[1].permitted, 5, "energy offered offline")
    n = len(csms.received)
    await go_online(csms, st)
    start = await started(csms, after=n)
    assert start["offline"] is True and start["idToken"]["idToken"] == "CACHED15"
    tx_id = start["transactionInfo"]["transactionId"]
    if stop == "true":                                        # TC_C_16, TC_C_18
        end = await ended(csms, tx_id, after=n)
        assert end["triggerReason"] == "Deauthorized" and not end.get("offline", False)
        assert not st.hw.connectors[1].permitted
    else:                                                     # TC_C_15
        await barrier(csms)
        assert st.hw.connectors[1].permitted, "energy stopped before MaxEnergyOnInvalidId was delivered"
        await eventually(lambda: not st.hw.connectors[1].permitted, 15, "the energy offer stopped at the limit")
        assert st.station.engine.status_of(1) == Status.SUSPENDED_EVSE
        assert st.station.engine.connectors[1].tx_key == tx_id
        await csms.wait_for("TransactionEvent", lambda p: p.get("transactionInfo", {}).get("chargingState")
                            == "SuspendedEVSE", after=n)
        assert not [e for e in tx_events(csms, n) if e["triggerReason"] == "Deauthorized"]
    assert csms.violations == []


# ---- C09 GroupId through the cache and the Local Authorization List -------------------------------------------------
async def test_tc_c_41_c_44_group_id_with_authorization_cache(csms, make_station):
    """TC_C_41_CS (C09.FR.07 b): an idToken cached valid with the groupIdToken of the one that authorized the
    transaction ends it without an AuthorizeRequest: StopAuthorized with that idToken. TC_C_44_CS (C10.FR.03,
    C09.FR.11): a member cached Invalid is sent in an AuthorizeRequest and, Invalid again, does not end it."""
    st = await booted(csms, make_station)
    assert await set_var(csms, "AuthCtrlr", "LocalPreAuthorize", "true") == "Accepted"
    await cache_tag(csms, st, "CMEMBER1", groupIdToken=GROUP)
    await cache_tag(csms, st, "CMEMBER2", groupIdToken=GROUP)
    await cache_tag(csms, st, "CMEMBER3", "Invalid", groupIdToken=GROUP)
    csms.authorize["CMEMBER2"] = {"status": "Invalid"}        # would not stop it, were it asked
    st.hw.ev_plug(1)
    n = len(csms.received)
    st.hw.present_tag("CMEMBER1", 1)
    tx_id = (await started(csms, after=n))["transactionInfo"]["transactionId"]
    await eventually(lambda: st.hw.connectors[1].permitted, 5, "energy offered")
    assert authorizes(csms, n, "CMEMBER1") == []
    await invalid_member_does_not_stop(csms, st, "CMEMBER3")           # TC_C_44
    n = await valid_member_stops(csms, st, tx_id, "CMEMBER2")           # TC_C_41
    assert authorizes(csms, n, "CMEMBER2") == []
    assert csms.violations == []


async def test_tc_c_43_group_id_invalid_member_of_local_list(csms, make_station):
    """TC_C_43_CS (C14.FR.02/03, C09.FR.11): of two Local Authorization List entries with the same groupIdToken the
    Accepted one authorizes without an AuthorizeRequest; the Invalid one is sent in an AuthorizeRequest and, Invalid,
    does not end the transaction."""
    st = await booted(csms, make_station)
    assert await set_var(csms, "AuthCtrlr", "LocalPreAuthorize", "true") == "Accepted"
    await send_list(csms, [("LMEMBER1", {"status": "Accepted", "groupIdToken": GROUP}),
                           ("LMEMBER2", {"status": "Invalid", "groupIdToken": GROUP})])
    csms.authorize["LMEMBER1"] = {"status": "Accepted", "groupIdToken": GROUP}   # its TransactionEventResponse
    csms.authorize["LMEMBER2"] = {"status": "Invalid", "groupIdToken": GROUP}
    st.hw.ev_plug(1)
    n = len(csms.received)
    st.hw.present_tag("LMEMBER1", 1)
    await eventually(lambda: with_token(csms, "LMEMBER1", n), 5, "the Authorized event")
    assert with_token(csms, "LMEMBER1", n)[0]["triggerReason"] == "Authorized"
    assert authorizes(csms, n, "LMEMBER1") == []
    await invalid_member_does_not_stop(csms, st, "LMEMBER2")
    assert csms.violations == []


# ---- C13 offline through the Local Authorization List ----------------------------------------------------------------
@pytest.mark.parametrize("status", ["Invalid", "Expired"], ids=["tc_c_22", "tc_c_24"])
async def test_tc_c_22_c_24_offline_list_entry_not_accepted_authorizes_nothing(csms, make_station, status):
    """TC_C_22_CS / TC_C_24_CS (C13.FR.02, OfflineTxForUnknownIdEnabled false, TxStartPoint ParkingBayOccupancy):
    offline, the EV arrives (the transaction starts, triggerReason EVDetected) and an idToken that is Invalid /
    Expired in the Local Authorization List is presented: it authorizes nothing; after the reconnect the queued
    Started carries offline true and EVDetected, and no event carries the idToken."""
    st = await booted(csms, make_station)
    assert await set_var(csms, "TxCtrlr", "TxStartPoint", "ParkingBayOccupancy") == "Accepted"
    await send_list(csms, [("OFFLIST", {"status": status})])
    await go_offline(csms, st)
    st.hw.ev_plug(1)
    await eventually(lambda: st.station.engine.connectors[1].tx_key is not None, 5, "the EVDetected transaction")
    st.hw.present_tag("OFFLIST", 1)
    await asyncio.sleep(0.2)
    assert not st.station.engine.connectors[1].tx_authorized and not st.hw.connectors[1].permitted
    n = len(csms.received)
    await go_online(csms, st)
    start = await started(csms, after=n)
    assert start["offline"] is True and start["triggerReason"] == "EVDetected"
    await barrier(csms)
    assert with_token(csms, "OFFLIST", n) == [] and authorizes(csms, n, "OFFLIST") == []
    assert csms.violations == []


async def test_tc_c_25_offline_list_entry_overrides_cached_accepted(csms, make_station):
    """TC_C_25_CS (C13.FR.01, C14.FR.01): an idToken cached Accepted but Invalid in the Local Authorization List
    starts no transaction offline, even with OfflineTxForUnknownIdEnabled true (it is not unknown)."""
    st = await booted(csms, make_station, ocpp={"AllowOfflineTxForUnknownId": "true", "LocalPreAuthorize": "true",
                                               "StopTransactionOnInvalidId": "false"})
    await cache_tag(csms, st, "BOTH25")
    await send_list(csms, [("BOTH25", {"status": "Invalid"})])
    assert (st.station.cache.get("BOTH25") or {}).get("status") == "Accepted"
    st.hw.ev_plug(1)
    await go_offline(csms, st)
    st.hw.present_tag("BOTH25", 1)
    await asyncio.sleep(0.2)
    assert st.station.engine.connectors[1].tx_key is None and not st.hw.connectors[1].permitted
    n = len(csms.received)
    await go_online(csms, st)
    await barrier(csms)
    assert tx_events(csms, n) == []
    assert csms.violations == []


# ---- C03 / C05 Central idTokens, AuthCtrlr.Enabled ------------------------------------------------------------------
async def test_c03_fr_01_fr_02_central_idtoken_neither_authorized_nor_cached(csms, make_station):
    """C03.FR.01 / C05.FR.01: a RequestStartTransaction with an idToken of type Central sends no AuthorizeRequest, even
    with AuthorizeRemoteStart true; C03.FR.02 / C05.FR.02: its IdTokenInfo (TransactionEventResponse) is not stored
    in the Authorization Cache. An identifier read at the station is never typed Central (it is Local or ISO14443)
    and its IdTokenInfo is cached (C10.FR.04)."""
    st = await booted(csms, make_station, ocpp={"AuthorizeRemoteTxRequests": "true"})
    csms.authorize["APP1"] = {"status": "Accepted"}
    st.hw.ev_plug(1)
    n = len(csms.received)
    res = await csms.call(ID, "RequestStartTransaction", {"idToken": {"idToken": "APP1", "type": "Central"},
                                                          "remoteStartId": 7, "evseId": 1})
    assert res == {"status": "Accepted"}
    await eventually(lambda: with_token(csms, "APP1", n), 5, "the TransactionEvent with APP1")
    await barrier(csms)
    assert with_token(csms, "APP1", n)[0]["idToken"]["type"] == "Central"
    assert authorizes(csms, n, "APP1") == []
    assert st.station.cache.get("APP1") is None
    csms.authorize["READER1"] = {"status": "Accepted"}
    n = len(csms.received)
    st.hw.present_tag("READER1", 1)
    auth = await csms.wait_for("Authorize", lambda p: p["idToken"]["idToken"] == "READER1", after=n)
    assert auth.payload["idToken"]["type"] == "Local"
    await eventually(lambda: st.station.cache.get("READER1") is not None, 5, "READER1 cached")
    assert csms.violations == []


async def test_authctrlr_enabled_false_accepts_without_authorization(csms, make_station):
    """AuthCtrlr.Enabled false (Part 2 appendix: "no authorization is done before starting a transaction or when
    reading an idToken"): a presented idToken starts the transaction without an AuthorizeRequest and a
    TransactionEventResponse that does not accept it does not stop the energy; back to true, the CSMS is asked."""
    st = await booted(csms, make_station)
    assert await set_var(csms, "AuthCtrlr", "Enabled", "false") == "Accepted"
    csms.authorize["FREE1"] = {"status": "Invalid"}
    st.hw.ev_plug(1)
    n = len(csms.received)
    st.hw.present_tag("FREE1", 1)
    start = await started(csms, after=n)
    assert start["idToken"]["idToken"] == "FREE1"
    await barrier(csms)
    assert authorizes(csms, n, "FREE1") == []
    assert st.hw.connectors[1].permitted and st.station.engine.connectors[1].tx_authorized
    assert not [e for e in tx_events(csms, n) if e["triggerReason"] == "Deauthorized"]
    assert await set_var(csms, "AuthCtrlr", "Enabled", "true") == "Accepted"
    n = len(csms.received)
    st.hw.present_tag("OTHER1", 1)
    await csms.wait_for("Authorize", lambda p: p["idToken"]["idToken"] == "OTHER1", after=n)
    assert csms.violations == []
