"""A running station whose store can take no more (SQLite: SQLITE_FULL, what a full disk gives): a CSMS request
whose handling needs space gets a CALLERROR at once (not silence until the CSMS times out), nothing of it is kept,
the station stays connected and answers the next requests, and once there is space again the same request works.

Spec: non-negotiable "a full disk: the spec's CALLERROR or a clear error, state intact, the station still running";
OCPP-J 1.6 §4.2.3 / 2.0.1 Part 4 §4.2.3: InternalError, "an internal error occurred and the receiver was not able to
process the requested Action successfully". The full disk is SQLite's own limit (``PRAGMA max_page_count`` set to
the file's current size), so that SQLite raises exactly the error it raises when the file system is full.
"""
from __future__ import annotations

import pytest

from helpers import booted, eventually
from secure_cp.sim.csms import CallErrorReceived
from secure_cp.store import StoreFull
from test_v201_core import booted as booted201

ID = "CP1"


async def _settled(csms, st) -> None:
    """The boot's own traffic is over (its last CALL, the critical security event StartupOfTheDevice, answered), so
    that the CSMS reads the answer to the next request as soon as it comes."""
    await csms.wait_for("SecurityEventNotification", lambda p: p["type"] == "StartupOfTheDevice")
    await eventually(lambda: not st.station.adapter.endpoint.busy, 5, "the station's last CALL to be answered")


def _fill(st) -> int:
    """The store can grow no more; returns the limit it had."""
    db = st.station.db
    before = db.query("PRAGMA max_page_count")[0][0]
    pages = db.query("PRAGMA page_count")[0][0]
    db.query(f"PRAGMA max_page_count = {pages}")
    return before


def _free(st, limit: int) -> None:
    st.station.db.query(f"PRAGMA max_page_count = {limit}")


def _entries16(n: int) -> list[dict]:
    return [{"idTag": f"TAG{i:05d}", "idTagInfo": {"status": "Accepted", "expiryDate": "2031-01-01T00:00:00Z",
                                                   "parentIdTag": f"PARENT{i:05d}"}} for i in range(n)]


@pytest.mark.parametrize("queued", [False, True], ids=["written-at-once", "queued"])
async def test_16_full_store_answers_internal_error_and_keeps_state(csms, make_station, queued):
    """``queued``: every frame goes through the sender's queue (as when the socket's write buffer is full): the
    CALLERROR still goes out before the reload closes the connection."""
    st = await booted(csms, make_station)
    await _settled(csms, st)
    if queued:
        st.station.transport.send_now = lambda text: False
    limit = _fill(st)
    n = len(csms.received)
    with pytest.raises(CallErrorReceived) as err:
        await csms.call(ID, "SendLocalList", {"listVersion": 7, "updateType": "Full",
                                              "localAuthorizationList": _entries16(100)}, timeout=5)
    assert err.value.code == "InternalError"
    assert "storage" in err.value.description
    # the station reloads its state from the store (memory never runs ahead of it) and registers again
    await csms.wait_for("BootNotification", after=n, timeout=10)
    # nothing of the request was kept, and the station answers
    assert (await csms.call(ID, "GetLocalListVersion", {}))["listVersion"] == 0
    assert len(st.station.local_list.store) == 0
    _free(st, limit)
    assert (await csms.call(ID, "SendLocalList", {"listVersion": 7, "updateType": "Full",
                                                  "localAuthorizationList": _entries16(100)}))["status"] == "Accepted"
    assert (await csms.call(ID, "GetLocalListVersion", {}))["listVersion"] == 7
    assert csms.violations == []


async def test_201_full_store_answers_internal_error_and_keeps_state(csms, make_station):
    st = await booted201(csms, make_station)
    entries = [{"idToken": {"idToken": f"TOKEN{i:05d}", "type": "Central"},
                "idTokenInfo": {"status": "Accepted", "cacheExpiryDateTime": "2031-01-01T00:00:00Z"}}
               for i in range(100)]
    await _settled(csms, st)
    limit = _fill(st)
    n = len(csms.received)
    with pytest.raises(CallErrorReceived) as err:
        await csms.call(ID, "SendLocalList", {"versionNumber": 7, "updateType": "Full",
                                              "localAuthorizationList": entries}, timeout=5)
    assert err.value.code == "InternalError"
    assert "storage" in err.value.description
    await csms.wait_for("BootNotification", after=n, timeout=10)
    assert (await csms.call(ID, "GetLocalListVersion", {}))["versionNumber"] == 0
    _free(st, limit)
    assert (await csms.call(ID, "SendLocalList", {"versionNumber": 7, "updateType": "Full",
                                                  "localAuthorizationList": entries}))["status"] == "Accepted"
    assert (await csms.call(ID, "GetLocalListVersion", {}))["versionNumber"] == 7
    assert csms.violations == []


async def test_16_follow_up_refused_by_the_store_turns_the_answer_into_internal_error(csms, make_station):
    """What a handler leaves for after its reply (here: the runtime taking a changed setting into use) writes too;
    when the store refuses that write, the whole request is rolled back, so its Accepted would be untrue: the CSMS
    gets InternalError, and the setting keeps its old value."""
    st = await booted(csms, make_station)
    await _settled(csms, st)
    before = (await csms.call(ID, "GetConfiguration", {"key": ["HeartbeatInterval"]}))["configurationKey"][0]
    hooks = st.station.adapter.hooks
    applied = hooks.config_changed

    def refused(key: str, value: str) -> None:
        raise StoreFull("database is full (disk or page limit)")   # what the store raises on SQLITE_FULL

    hooks.config_changed = refused
    n = len(csms.received)
    with pytest.raises(CallErrorReceived) as err:
        await csms.call(ID, "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "123"}, timeout=5)
    assert err.value.code == "InternalError"
    hooks.config_changed = applied
    await csms.wait_for("BootNotification", after=n, timeout=10)
    after = (await csms.call(ID, "GetConfiguration", {"key": ["HeartbeatInterval"]}))["configurationKey"][0]
    assert after == before and after["value"] != "123"
    assert csms.violations == []
