"""OCPP 1.6 authorization end to end: Authorize, the authorization cache, offline rules, parentIdTag,
StartTransaction.conf verdicts and ConnectionTimeOut.

Spec: OCPP 1.6 edition 2 §3.4 (same tag stops without Authorize), §3.5 (local authorization & offline behaviour:
§3.5.1 cache, §3.5.4 unknown offline authorization, StopTransactionOnInvalidId), §3.10 (parentIdTag), §4.1, §4.8,
§5.4 (ClearCache), §9.1 keys (AllowOfflineTxForUnknownId, AuthorizationCacheEnabled, ConnectionTimeOut,
LocalAuthorizeOffline, LocalPreAuthorize, StopTransactionOnInvalidId).

The strict CSMS answers Authorize, StartTransaction and StopTransaction with ``csms.authorize[idTag]`` (Invalid
for unknown tags) *at the moment it handles the CALL*; a listener that edits that dict once the Authorize has
been answered makes it say Accepted to Authorize and Invalid to the StartTransaction that follows.
"""
from __future__ import annotations

import asyncio

import pytest

from helpers import barrier, booted, eventually, go_offline, go_online
from secure_cp.sim.csms import CallErrorReceived, Csms, Record


# ---- helpers ------------------------------------------------------------------------------------------------
async def learn_tag(csms: Csms, st, tag: str) -> None:
    """Have the CSMS authorize ``tag`` once (no cable: the authorization is then cancelled by presenting the
    tag again, 1.6 §4.9 B1), so the station has seen its idTagInfo."""
    n = len(csms.received)
    st.hw.present_tag(tag)
    await csms.wait_for("Authorize", lambda p: p["idTag"] == tag, after=n)
    await barrier(csms)
    st.hw.present_tag(tag)
    await eventually(lambda: st.station.engine.connectors[1].auth is None, 5, "the authorization to be cancelled")


def actions(csms: Csms, after: int) -> list[str]:
    return [r.action for r in csms.received[after:]]


def tx_on(st, cid: int = 1):
    return st.station.engine.connectors[cid].tx_key


async def plug_in_offline(csms: Csms, st, tag: str) -> None:
    """Take the station offline, plug in and present ``tag``: the offline authorization rules decide (§3.5)."""
    await go_offline(csms, st)
    st.hw.ev_plug(1)
    st.hw.present_tag(tag)


async def start_sent_after_reconnect(csms: Csms, st, tag: str):
    """Reconnect; the StartTransaction of the offline transaction of ``tag`` is delivered (§3.7)."""
    n = await go_online(csms, st)
    start = await csms.wait_for("StartTransaction", after=n)
    assert start.payload["idTag"] == tag
    return n


# ---- Authorize ------------------------------------------------------------------------------------------------
async def test_authorize_accepted_starts_and_invalid_or_blocked_do_not(csms, make_station):
    """1.6 §4.1/§3.5.1: only an Accepted idTagInfo starts a transaction; Invalid (unknown tag) and Blocked do
    not; the cache records valid and not-valid answers alike."""
    csms.authorize = {"OK1": {"status": "Accepted"}, "BLK1": {"status": "Blocked"}}
    st = await booted(csms, make_station)
    st.hw.ev_plug(1)
    for tag, status in (("UNKNOWN1", "Invalid"), ("BLK1", "Blocked")):
        n = len(csms.received)
        st.hw.present_tag(tag)
        auth = await csms.wait_for("Authorize", lambda p, t=tag: p["idTag"] == t, after=n)
        assert auth.payload == {"idTag": tag}
        await barrier(csms)
        assert "StartTransaction" not in actions(csms, n)
        assert tx_on(st) is None
        assert st.station.engine.status_of(1).value == "Preparing"
        assert (st.station.cache.get(tag) or {}).get("status") == status
    n = len(csms.received)
    st.hw.present_tag("OK1")
    start = await csms.wait_for("StartTransaction", after=n)
    assert start.payload["idTag"] == "OK1"
    assert actions(csms, n).index("Authorize") < actions(csms, n).index("StartTransaction")
    assert csms.violations == []


async def test_cached_not_valid_tag_is_checked_with_the_csms_again_when_online(csms, make_station):
    """1.6 §3.5.1: a tag cached as NOT-valid and presented while online is checked with an Authorize (even with
    LocalPreAuthorize): if the CSMS now accepts it, the transaction starts."""
    csms.authorize = {"BLK1": {"status": "Blocked"}}
    st = await booted(csms, make_station, ocpp={"LocalPreAuthorize": "true"})
    st.hw.ev_plug(1)
    st.hw.present_tag("BLK1")
    await csms.wait_for("Authorize", lambda p: p["idTag"] == "BLK1")
    await barrier(csms)
    assert st.station.cache.get("BLK1")["status"] == "Blocked"
    csms.authorize["BLK1"] = {"status": "Accepted"}
    n = len(csms.received)
    st.hw.present_tag("BLK1")
    await csms.wait_for("StartTransaction", after=n)
    assert actions(csms, n)[:1] == ["Authorize"]
    assert csms.violations == []


# ---- authorization cache and offline rules ------------------------------------------------------------------------
async def test_cached_tag_starts_offline_with_local_authorize_offline_true(csms, make_station):
    """1.6 §3.5/§9.1.12: with LocalAuthorizeOffline=true a tag the CSMS accepted before (authorization cache)
    starts a transaction while offline; the StartTransaction is delivered after the reconnect."""
    st = await booted(csms, make_station, ocpp={"LocalAuthorizeOffline": "true"})
    await learn_tag(csms, st, "TAG1")
    await plug_in_offline(csms, st, "TAG1")
    assert tx_on(st) is not None
    await start_sent_after_reconnect(csms, st, "TAG1")
    assert csms.violations == []


async def test_cached_tag_refused_offline_with_local_authorize_offline_false(csms, make_station):
    """1.6 §9.1.12: with LocalAuthorizeOffline=false the cache is not used offline: no transaction."""
    st = await booted(csms, make_station, ocpp={"LocalAuthorizeOffline": "false"})
    await learn_tag(csms, st, "TAG1")
    assert st.station.cache.get("TAG1")["status"] == "Accepted"
    await plug_in_offline(csms, st, "TAG1")
    assert tx_on(st) is None
    assert st.station.transactions.open() == []
    n = await go_online(csms, st)
    await asyncio.sleep(0.3)
    await barrier(csms)
    assert "StartTransaction" not in actions(csms, n)


async def test_unknown_tag_offline_allowed_then_deauthorized_by_start_transaction_conf(csms, make_station):
    """1.6 §3.5.4: with AllowOfflineTxForUnknownId=true an unknown tag starts a transaction offline (a tag cached
    as not Accepted is still refused); after the reconnect the StartTransaction.conf says Invalid and, with
    StopTransactionOnInvalidId=true, the transaction is stopped with reason DeAuthorized."""
    csms.authorize = {"BLK1": {"status": "Blocked"}}
    st = await booted(csms, make_station, ocpp={"AllowOfflineTxForUnknownId": "true",
                                               "StopTransactionOnInvalidId": "true"})
    await learn_tag(csms, st, "BLK1")
    await plug_in_offline(csms, st, "BLK1")
    assert tx_on(st) is None, "a tag known as Blocked MUST be rejected offline (§3.5.4)"
    st.hw.present_tag("OFFLINE1")
    assert tx_on(st) is not None
    n = await start_sent_after_reconnect(csms, st, "OFFLINE1")
    stop = await csms.wait_for("StopTransaction", after=n)
    assert stop.payload["reason"] == "DeAuthorized"
    tx_id = next(t.transaction_id for t in csms.transactions.values() if t.start["idTag"] == "OFFLINE1")
    assert stop.payload["transactionId"] == tx_id
    assert st.station.cache.get("OFFLINE1")["status"] == "Invalid"     # §4.8: cache updated from the .conf
    assert csms.violations == []


async def test_unknown_tag_refused_offline_without_allow_offline_tx_for_unknown_id(csms, make_station):
    """1.6 §3.5.4/§9.1.1: AllowOfflineTxForUnknownId=false: an unknown tag does not start a transaction offline."""
    st = await booted(csms, make_station, ocpp={"AllowOfflineTxForUnknownId": "false"})
    await plug_in_offline(csms, st, "OFFLINE1")
    assert tx_on(st) is None
    assert st.station.transactions.open() == []


async def test_local_pre_authorize_starts_cached_tag_without_authorize(csms, make_station):
    """1.6 §3.5/§9.1.13: with LocalPreAuthorize=true a tag valid in the cache starts at once, no Authorize.req."""
    st = await booted(csms, make_station, ocpp={"LocalPreAuthorize": "true"})
    await learn_tag(csms, st, "TAG1")
    n = len(csms.received)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    assert tx_on(st) is not None
    start = await csms.wait_for("StartTransaction", after=n)
    assert start.payload["idTag"] == "TAG1"
    assert "Authorize" not in actions(csms, n)
    assert csms.violations == []


async def test_clear_cache_empties_the_authorization_cache(csms, make_station):
    """1.6 §5.4: ClearCache.conf Accepted and the cache is empty: a formerly cached tag is no longer
    pre-authorized (LocalPreAuthorize=true) but checked with an Authorize."""
    st = await booted(csms, make_station, ocpp={"LocalPreAuthorize": "true"})
    await learn_tag(csms, st, "TAG1")
    assert st.station.cache.get("TAG1") is not None
    assert await csms.call("CP1", "ClearCache", {}) == {"status": "Accepted"}
    assert st.station.cache.get("TAG1") is None
    n = len(csms.received)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1")
    await csms.wait_for("StartTransaction", after=n)
    assert actions(csms, n).count("Authorize") == 1
    assert csms.violations == []


async def test_authorization_cache_disabled_is_neither_filled_nor_used(csms, make_station):
    """1.6 §9.1.2: AuthorizationCacheEnabled=false: answers are not cached, so a seen tag is asked again online
    (even with LocalPreAuthorize) and refused offline (LocalAuthorizeOffline has nothing to use)."""
    st = await booted(csms, make_station, ocpp={"AuthorizationCacheEnabled": "false", "LocalPreAuthorize": "true",
                                               "LocalAuthorizeOffline": "true"})
    await learn_tag(csms, st, "TAG1")
    assert st.station.cache.get("TAG1") is None
    n = len(csms.received)
    st.hw.present_tag("TAG1")
    await csms.wait_for("Authorize", lambda p: p["idTag"] == "TAG1", after=n)
    await barrier(csms)
    st.hw.present_tag("TAG1")          # cancel again
    await plug_in_offline(csms, st, "TAG1")
    assert tx_on(st) is None


# ---- verdicts in StartTransaction.conf ----------------------------------------------------------------------------
def invalidate_after_authorize(csms: Csms, tag: str) -> None:
    """Authorize(tag) answered Accepted -> from then on the CSMS answers Invalid (e.g. blocked meanwhile)."""
    def listener(r: Record) -> None:
        if r.action == "Authorize" and r.payload.get("idTag") == tag:
            csms.authorize[tag] = {"status": "Invalid"}
    csms.listeners.append(listener)


async def invalid_in_start_conf(csms: Csms, make_station, stop_on_invalid: str):
    """A booted station (StopTransactionOnInvalidId ``stop_on_invalid``), a cable plugged in and TAGD presented:
    the CSMS answers its Authorize Accepted and the StartTransaction that follows Invalid."""
    csms.authorize = {"TAGD": {"status": "Accepted"}}
    invalidate_after_authorize(csms, "TAGD")
    st = await booted(csms, make_station, ocpp={"StopTransactionOnInvalidId": stop_on_invalid})
    st.hw.ev_plug(1)
    st.hw.present_tag("TAGD")
    return st


async def test_start_transaction_conf_invalid_stops_with_reason_deauthorized(csms, make_station):
    """1.6 §4.8/§3.5.4/§9.1.24: Authorize said Accepted, the StartTransaction.conf says Invalid; with
    StopTransactionOnInvalidId=true the transaction is stopped with reason DeAuthorized."""
    st = await invalid_in_start_conf(csms, make_station, "true")
    auth = await csms.wait_for("Authorize")
    assert auth.payload == {"idTag": "TAGD"}
    start = await csms.wait_for("StartTransaction")
    stop = await csms.wait_for("StopTransaction")
    tx_id = next(iter(csms.transactions))
    assert start.payload["idTag"] == "TAGD"
    assert stop.payload["transactionId"] == tx_id and stop.payload["reason"] == "DeAuthorized"
    assert st.station.cache.get("TAGD")["status"] == "Invalid"
    assert st.station.transactions.open() == []
    assert csms.violations == []


async def test_start_transaction_conf_invalid_without_stop_only_suspends_energy(csms, make_station):
    """1.6 §3.5.4 (StopTransactionOnInvalidId=false: only stop energy delivery) and §4.9 C5 (transaction
    invalidated by the StartTransaction.conf -> SuspendedEVSE): the transaction goes on, no energy flows."""
    st = await invalid_in_start_conf(csms, make_station, "false")
    await csms.wait_for("StartTransaction")
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "SuspendedEVSE")
    await barrier(csms)
    assert "StopTransaction" not in actions(csms, 0)
    assert tx_on(st) is not None
    assert st.hw.connectors[1].permitted is False
    n = len(csms.received)
    st.hw.present_tag("TAGD")          # the owner ends it
    stop = await csms.wait_for("StopTransaction", after=n)
    assert stop.payload["reason"] == "Local"
    assert csms.violations == []


async def test_deauthorized_stop_keeps_the_cable_locked_until_the_owner_returns(csms, make_station):
    """1.6 §3.5.4: after stopping with DeAuthorized, a station that can lock the cable SHOULD keep it locked
    until the owner presents his identifier."""
    st = await invalid_in_start_conf(csms, make_station, "true")
    stop = await csms.wait_for("StopTransaction")
    assert stop.payload["reason"] == "DeAuthorized"
    assert st.hw.connectors[1].locked is True, "cable unlocked by the DeAuthorized stop"
    st.hw.present_tag("TAGD")
    await barrier(csms)
    assert st.hw.connectors[1].locked is False, "the owner presented his identifier: unlock"


# ---- groups and timeouts --------------------------------------------------------------------------------------
async def test_tag_with_same_parent_id_tag_stops_the_transaction(csms, make_station):
    """1.6 §3.10/§3.4: a different tag of the same group (same parentIdTag in its idTagInfo) may stop the
    transaction (reason Local, its idTag in StopTransaction.req); a tag of another group may not."""
    csms.authorize = {"TAGA": {"status": "Accepted", "parentIdTag": "GROUP1"},
                      "TAGB": {"status": "Accepted", "parentIdTag": "GROUP1"},
                      "TAGC": {"status": "Accepted", "parentIdTag": "GROUP2"}}
    st = await booted(csms, make_station)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAGA")
    await csms.wait_for("StartTransaction")
    tx_id = next(iter(csms.transactions))
    n = len(csms.received)
    st.hw.present_tag("TAGC")
    await csms.wait_for("Authorize", lambda p: p["idTag"] == "TAGC", after=n)
    await barrier(csms)
    assert "StopTransaction" not in actions(csms, n) and tx_on(st) is not None
    n = len(csms.received)
    st.hw.present_tag("TAGB")
    await csms.wait_for("Authorize", lambda p: p["idTag"] == "TAGB", after=n)
    stop = await csms.wait_for("StopTransaction", after=n)
    assert stop.payload["transactionId"] == tx_id
    assert stop.payload["idTag"] == "TAGB" and stop.payload.get("reason", "Local") == "Local"
    assert csms.violations == []


async def test_connection_timeout_cancels_authorization_without_cable(csms, make_station):
    """1.6 §9.1.6/§4.9 B1: authorized but no cable within ConnectionTimeOut (1 s): back to Available, and a
    cable plugged in afterwards does not start a transaction with the expired authorization."""
    st = await booted(csms, make_station, ocpp={"ConnectionTimeOut": "1"})
    n = len(csms.received)
    st.hw.present_tag("TAG1")
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Preparing",
                        after=n)
    m = len(csms.received)
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Available",
                        after=m, timeout=5)
    st.hw.ev_plug(1)
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Preparing",
                        after=m)
    await barrier(csms)
    assert "StartTransaction" not in actions(csms, n)
    assert tx_on(st) is None
    assert csms.violations == []


async def test_failing_handler_leaves_the_store_as_it_was(csms, make_station):
    """A CS->CP handler that fails after writing (a bug) answers InternalError and changes nothing: its writes are
    rolled back with it (a SAVEPOINT around each handler), and the station goes on answering."""
    st = await booted(csms, make_station)
    await learn_tag(csms, st, "TAG1")
    adapter = st.station.adapter
    clear_cache = adapter._cs_ClearCache

    def clear_then_fail(p: dict, now: float) -> dict:
        clear_cache(p, now)
        assert st.station.cache.get("TAG1") is None   # the cache really was cleared inside the handler
        raise RuntimeError("a bug after the write")

    adapter._cs_ClearCache = clear_then_fail
    with pytest.raises(CallErrorReceived) as err:
        await csms.call("CP1", "ClearCache", {})
    assert err.value.code == "InternalError"
    assert st.station.cache.get("TAG1")["status"] == "Accepted"
    del adapter._cs_ClearCache
    assert await csms.call("CP1", "ClearCache", {}) == {"status": "Accepted"}
    assert st.station.cache.get("TAG1") is None
    assert csms.violations == []


async def test_failing_follow_up_does_not_cost_the_reply(csms, make_station):
    """What a handler leaves for after its reply (here: the runtime taking a changed setting into use) may fail:
    the reply still goes out, the accepted value stays stored, and the station keeps answering."""
    st = await booted(csms, make_station)

    def broken(key: str, value: str) -> None:
        raise RuntimeError(f"cannot apply {key}")

    st.station.adapter.hooks.config_changed = broken
    res = await csms.call("CP1", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "123"})
    assert res == {"status": "Accepted"}
    res = await csms.call("CP1", "GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert res["configurationKey"][0]["value"] == "123"
    assert csms.violations == []
