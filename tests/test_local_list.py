"""The Local Authorization List end to end, in OCPP 1.6 and 2.0.1, against the strict CSMS.

Spec: OCPP 1.6 edition 2 §3.5.2 (Local Authorization List), §3.5.3 (relation with the cache), §5.10 (Get Local
List Version: 0 = empty, -1 = not supported), §5.15 / §6.41 (Send Local List), §7.47 (UpdateStatus: VersionMismatch
when a differential version is less than or equal to the current one), §9.2 keys; OCPP 2.0.1 Part 2 D01
(D01.FR.04-06, 10, 11, 15-19), D02 (D02.FR.01-03), LocalAuthListCtrlr; test cases TC_D_xx_CS (Part 6).
"""
from __future__ import annotations

import pytest

from helpers import barrier, booted, eventually, go_offline
from secure_cp.sim.csms import Csms
from secure_cp.store import Database, LocalList, LocalListFull
from test_v201_core import booted as booted201

ID = "CP1"


# ---- helpers ------------------------------------------------------------------------------------------------
def entry16(tag: str, status: str | None = "Accepted", **info) -> dict:
    return {"idTag": tag, **({"idTagInfo": {"status": status, **info}} if status else {})}


def entry201(tag: str, status: str | None = "Accepted", **info) -> dict:
    token = {"idToken": tag, "type": "Central"}
    return {"idToken": token, **({"idTokenInfo": {"status": status, **info}} if status else {})}


async def send16(csms: Csms, version: int, update: str, entries: list[dict] | None = None) -> str:
    payload: dict = {"listVersion": version, "updateType": update}
    if entries is not None:
        payload["localAuthorizationList"] = entries
    return (await csms.call(ID, "SendLocalList", payload))["status"]


async def send201(csms: Csms, version: int, update: str, entries: list[dict] | None = None) -> str:
    payload: dict = {"versionNumber": version, "updateType": update}
    if entries:
        payload["localAuthorizationList"] = entries
    return (await csms.call(ID, "SendLocalList", payload))["status"]


async def version16(csms: Csms) -> int:
    return (await csms.call(ID, "GetLocalListVersion", {}))["listVersion"]


async def version201(csms: Csms) -> int:
    return (await csms.call(ID, "GetLocalListVersion", {}))["versionNumber"]


async def refused(st, tag: str) -> None:
    """``tag`` presented (cable plugged in): its authorization is refused, no transaction starts."""
    st.hw.present_tag(tag)
    await eventually(lambda: st.station.engine.connectors[1].auth is None, 5, "the refusal")
    assert st.station.engine.connectors[1].tx_key is None


async def list_decides_offline(csms: Csms, st) -> None:
    """Offline with LocalAuthorizeOffline, the list holding LIST1 (Accepted) and BLK1 (Blocked): BLK1 is refused even
    with AllowOfflineTxForUnknownId (2.0.1 AuthCtrlr.OfflineTxForUnknownIdEnabled); without it an unknown tag is
    refused as well, and LIST1 starts a transaction."""
    await go_offline(csms, st)
    st.hw.ev_plug(1)
    await refused(st, "BLK1")
    st.station.config.set_internal("AllowOfflineTxForUnknownId", "false")
    await refused(st, "NOBODY")
    st.hw.present_tag("LIST1")
    await eventually(lambda: st.station.engine.connectors[1].tx_key is not None, 5, "the offline transaction")
    assert st.station.transactions.get(st.station.engine.connectors[1].tx_key).id_tag == "LIST1"


# ---- OCPP 1.6 -------------------------------------------------------------------------------------------------
async def test_16_5_15_full_then_differential_and_5_10_versions(csms, make_station):
    """1.6 §5.15/§6.41: Full replaces the list, Differential adds/updates (idTagInfo) and removes (no idTagInfo);
    §5.10: GetLocalListVersion reports the version, 0 for an empty list; §9.2 keys are offered."""
    st = await booted(csms, make_station)
    conf = await csms.call(ID, "GetConfiguration", {"key": ["SupportedFeatureProfiles", "LocalAuthListEnabled",
                                                            "LocalAuthListMaxLength", "SendLocalListMaxLength"]})
    values = {k["key"]: k.get("value") for k in conf["configurationKey"]}
    assert "LocalAuthListManagement" in values["SupportedFeatureProfiles"].split(",")
    assert values["LocalAuthListEnabled"] == "true" and "unknownKey" not in conf
    assert await version16(csms) == 0
    assert await send16(csms, 3, "Full", [entry16("A1"), entry16("B1", "Blocked"), entry16("C1")]) == "Accepted"
    assert await version16(csms) == 3
    local = st.station.local_list.store
    assert local.items() == {"A1": {"status": "Accepted"}, "B1": {"status": "Blocked"}, "C1": {"status": "Accepted"}}
    assert await send16(csms, 4, "Differential", [entry16("C1", None), entry16("D1", parentIdTag="P1"),
                                                  entry16("A1", "Expired")]) == "Accepted"
    assert local.items() == {"A1": {"status": "Expired"}, "B1": {"status": "Blocked"},
                             "D1": {"status": "Accepted", "parentIdTag": "P1"}}
    assert await version16(csms) == 4
    # a Full update without entries empties the list: the version reported is 0 (§5.10 "0 = empty")
    assert await send16(csms, 5, "Full") == "Accepted"
    assert len(local) == 0 and await version16(csms) == 0
    assert csms.violations == []


async def test_16_7_47_version_mismatch_and_failed_leave_the_list_unchanged(csms, make_station):
    """1.6 §7.47: a Differential whose version is <= the current one -> VersionMismatch; duplicates (§6.41), more
    entries than SendLocalListMaxLength, or a list larger than LocalAuthListMaxLength -> Failed; nothing changes."""
    st = await booted(csms, make_station, ocpp={"LocalAuthListMaxLength": "3", "SendLocalListMaxLength": "3"})
    assert await send16(csms, 7, "Full", [entry16("A1"), entry16("B1")]) == "Accepted"
    before = st.station.local_list.store.items()
    assert await send16(csms, 7, "Differential", [entry16("X1")]) == "VersionMismatch"
    assert await send16(csms, 6, "Differential", [entry16("X1")]) == "VersionMismatch"
    assert await send16(csms, 8, "Full", [entry16("X1"), entry16("X1", "Blocked")]) == "Failed"
    assert await send16(csms, 8, "Full", [entry16(f"T{i}") for i in range(4)]) == "Failed"      # > SendLocalListMax
    assert await send16(csms, 8, "Differential", [entry16("X1"), entry16("X2")]) == "Failed"   # 4 > LocalAuthListMax
    assert st.station.local_list.store.items() == before and await version16(csms) == 7
    assert await send16(csms, 8, "Differential", [entry16("X1"), entry16("A1", None)]) == "Accepted"
    assert sorted(st.station.local_list.store.items()) == ["B1", "X1"]
    assert csms.violations == []


async def test_16_3_5_2_list_tag_starts_offline_and_blocked_tag_is_refused(csms, make_station):
    """1.6 §3.5.2/§3.5.4 with LocalAuthorizeOffline: offline, a Blocked tag on the list is refused even with
    AllowOfflineTxForUnknownId; an Accepted one starts a transaction where an unknown one is refused; §3.5.3:
    list tags are not cached."""
    st = await booted(csms, make_station, ocpp={"AllowOfflineTxForUnknownId": "true"})
    assert await send16(csms, 1, "Full", [entry16("LIST1"), entry16("BLK1", "Blocked")]) == "Accepted"
    # without unknown-id authorization only the list can let a tag in: an unknown tag is refused, LIST1 starts
    await list_decides_offline(csms, st)
    assert st.station.cache.get("LIST1") is None and st.station.cache.get("BLK1") is None


async def test_16_9_2_1_disabled_list_not_supported_and_not_used(csms, make_station):
    """1.6 §9.2.1 LocalAuthListEnabled false: SendLocalList -> NotSupported (§7.47), GetLocalListVersion -> -1
    (§5.10: no Local Authorization List), and the kept entries are not used for authorization."""
    st = await booted(csms, make_station, ocpp={"AllowOfflineTxForUnknownId": "false"})
    assert await send16(csms, 2, "Full", [entry16("LIST1")]) == "Accepted"
    res = await csms.call(ID, "ChangeConfiguration", {"key": "LocalAuthListEnabled", "value": "false"})
    assert res["status"] == "Accepted"
    assert await send16(csms, 3, "Full", [entry16("OTHER")]) == "NotSupported"
    assert await version16(csms) == -1
    assert st.station.local_list.store.items() == {"LIST1": {"status": "Accepted"}}
    await go_offline(csms, st)
    st.hw.ev_plug(1)
    await refused(st, "LIST1")


async def test_16_3_5_2_list_persists_across_restart(csms, make_station):
    """1.6 §3.5.2 / D01.FR.10: the list and its version survive a restart of the station."""
    st = await booted(csms, make_station)
    assert await send16(csms, 9, "Full", [entry16("KEEP1", "Accepted", parentIdTag="G1")]) == "Accepted"
    await st.stop()
    n = len(csms.received)
    st2 = await make_station(csms, data_dir=st.cfg.data_dir)
    await csms.wait_for("BootNotification", after=n)
    await barrier(csms)
    assert await version16(csms) == 9
    assert st2.station.local_list.store.get("KEEP1") == {"status": "Accepted", "parentIdTag": "G1"}
    assert csms.violations == []


async def test_16_3_5_2_local_list_conflict_is_reported_on_connector_0(csms, make_station):
    """1.6 §3.5.2: an idTagInfo from the Central System that conflicts with the list entry (Authorize.conf, and
    StartTransaction.conf under LocalPreAuthorize) -> StatusNotification connectorId 0, errorCode LocalListConflict
    (§7.6), the station's status unchanged; the Central System's answer is the one used. An agreeing answer, and a
    ConcurrentTx for an Accepted entry (both valid), are no conflict."""
    st = await booted(csms, make_station)
    csms.authorize["AGREE1"] = {"status": "ConcurrentTx"}
    assert await send16(csms, 1, "Full", [entry16("TAG1"), entry16("STALE1"), entry16("AGREE1")]) == "Accepted"

    def conflicts(after: int) -> list[dict]:
        return [r.payload for r in csms.received[after:] if r.action == "StatusNotification"
                and r.payload["errorCode"] == "LocalListConflict"]
    n = len(csms.received)
    st.hw.present_tag("TAG1")                  # list Accepted, CSMS Accepted
    st.hw.present_tag("AGREE1")                # list Accepted, CSMS ConcurrentTx: both valid
    await csms.wait_for("Authorize", lambda p: p["idTag"] == "AGREE1", after=n)
    st.hw.present_tag("TAG1")                  # cancels the pending authorization again
    await barrier(csms)
    assert conflicts(n) == []
    st.hw.present_tag("STALE1")                # list Accepted, CSMS Invalid (unknown there)
    rec = await csms.wait_for("StatusNotification", lambda p: p["errorCode"] == "LocalListConflict", after=n)
    assert rec.payload["connectorId"] == 0 and rec.payload["status"] == "Available"
    assert "Invalid" in rec.payload.get("info", "")
    assert st.station.engine.connectors[1].auth is None         # the CSMS's verdict is used: not authorized
    # LocalPreAuthorize: the list starts the transaction at once, StartTransaction.conf then disagrees
    assert (await csms.call(ID, "ChangeConfiguration", {"key": "LocalPreAuthorize", "value": "true"}))["status"] \
        == "Accepted"
    n = len(csms.received)
    st.hw.ev_plug(1)
    st.hw.present_tag("STALE1")
    await csms.wait_for("StartTransaction", lambda p: p["idTag"] == "STALE1", after=n)
    await csms.wait_for("StatusNotification", lambda p: p["errorCode"] == "LocalListConflict", after=n)
    assert conflicts(n) and all(p["connectorId"] == 0 and "Invalid" in p["info"] for p in conflicts(n))
    assert not [r for r in csms.received[n:] if r.action == "Authorize"]     # the list decided, not Authorize
    assert csms.violations == []


# ---- OCPP 2.0.1 -----------------------------------------------------------------------------------------------
async def test_tc_d_01_02_03_full_differential_remove_and_d02_versions(csms, make_station):
    """TC_D_01/02/03/08/09_CS: D02.FR.02 version 0 before any list; D01.FR.15 Full replaces; D01.FR.16
    Differential updates; D01.FR.17 removes entries without idTokenInfo; D01.FR.04 an empty Full keeps a version
    > 0 (D02 remark); entries are stored as 1.6-style idTagInfo (status mapped, cacheExpiryDateTime -> expiryDate,
    groupIdToken -> parentIdTag); LocalAuthListCtrlr.Entries follows the list."""
    st = await booted201(csms, make_station)
    assert await version201(csms) == 0
    assert await send201(csms, 1, "Full", [entry201("A1"), entry201("B1", "NoCredit")]) == "Accepted"
    assert await version201(csms) == 1
    local = st.station.local_list.store
    assert local.items() == {"A1": {"status": "Accepted"}, "B1": {"status": "Invalid"}}
    assert await send201(csms, 2, "Differential", [
        entry201("C1", "Accepted", cacheExpiryDateTime="2099-01-01T00:00:00Z",
                 groupIdToken={"idToken": "G1", "type": "Central"}),
        entry201("A1", None)]) == "Accepted"
    assert local.items() == {"B1": {"status": "Invalid"},
                             "C1": {"status": "Accepted", "expiryDate": "2099-01-01T00:00:00Z", "parentIdTag": "G1"}}
    res = await csms.call(ID, "GetVariables", {"getVariableData": [
        {"component": {"name": "LocalAuthListCtrlr"}, "variable": {"name": "Entries"}}]})
    assert res["getVariableResult"][0]["attributeValue"] == "2"
    assert await send201(csms, 3, "Differential") == "Accepted"          # D01.FR.05: only the version changes
    assert len(local) == 2 and await version201(csms) == 3
    assert await send201(csms, 4, "Full") == "Accepted"                  # D01.FR.04
    assert len(local) == 0 and await version201(csms) == 4
    assert csms.violations == []


async def test_d01_fr_19_version_mismatch_fr_18_and_fr_06_failed(csms, make_station):
    """D01.FR.19: Differential with versionNumber <= current -> VersionMismatch; D01.FR.18 versionNumber 0 and
    D01.FR.06 duplicate idTokens -> Failed; the list stays as it was (D01 failure postcondition)."""
    st = await booted201(csms, make_station)
    assert await send201(csms, 5, "Full", [entry201("A1")]) == "Accepted"
    assert await send201(csms, 5, "Differential", [entry201("B1")]) == "VersionMismatch"
    assert await send201(csms, 0, "Full", [entry201("B1")]) == "Failed"
    assert await send201(csms, 6, "Full", [entry201("B1"), entry201("B1", "Blocked")]) == "Failed"
    assert st.station.local_list.store.items() == {"A1": {"status": "Accepted"}} and await version201(csms) == 5
    assert csms.violations == []


async def test_d01_fr_11_items_and_bytes_per_message_fr_12_entries_refused_with_reason(csms, make_station):
    """D01.FR.11: a SendLocalList over LocalAuthListCtrlr.ItemsPerMessage (1.6 SendLocalListMaxLength) or over
    BytesPerMessage (the frame as received), and D01.FR.12 an update the list cannot hold (Entries maxLimit /
    LocalAuthListMaxLength): Failed with statusInfo (reason codes appendix: TooManyElements, OutOfStorage), the list
    unchanged (D01 failure postcondition). D01 names no other status for these."""
    st = await booted201(csms, make_station, ocpp={"SendLocalListMaxLength": "3", "LocalAuthListMaxLength": "4"})
    res = await csms.call(ID, "GetVariables", {"getVariableData": [
        {"component": {"name": "LocalAuthListCtrlr"}, "variable": {"name": "ItemsPerMessage"}},
        {"component": {"name": "LocalAuthListCtrlr"}, "variable": {"name": "BytesPerMessage"}}]})
    assert [r["attributeValue"] for r in res["getVariableResult"]] == ["3", "65536"]
    assert await send201(csms, 1, "Full", [entry201("A1"), entry201("B1")]) == "Accepted"
    before = st.station.local_list.store.items()

    async def send(version: int, update: str, entries: list[dict]) -> dict:
        return await csms.call(ID, "SendLocalList", {"versionNumber": version, "updateType": update,
                                                     "localAuthorizationList": entries})
    res = await send(2, "Full", [entry201(f"T{i}") for i in range(4)])
    assert res["status"] == "Failed" and res["statusInfo"]["reasonCode"] == "TooManyElements"
    # BytesPerMessage (read-only for the CSMS; the integrator sets it): 3 long entries do not fit, 3 short ones do
    st.station.model.set("LocalAuthListCtrlr", "BytesPerMessage", "300", force=True)
    long_entries = [entry201(f"{i}" * 36, groupIdToken={"idToken": "G" * 36, "type": "Central"}) for i in range(3)]
    res = await send(2, "Differential", long_entries)
    assert res["status"] == "Failed" and res["statusInfo"]["reasonCode"] == "TooManyElements"
    assert "BytesPerMessage" in res["statusInfo"]["additionalInfo"]
    assert st.station.local_list.store.items() == before and await version201(csms) == 1
    assert (await send(2, "Differential", [entry201("C1")]))["status"] == "Accepted"
    # 3 on the list + 2 new > LocalAuthListMaxLength 4
    res = await send(3, "Differential", [entry201("D1"), entry201("E1")])
    assert res["status"] == "Failed" and res["statusInfo"]["reasonCode"] == "OutOfStorage"
    assert sorted(st.station.local_list.store.items()) == ["A1", "B1", "C1"] and await version201(csms) == 2
    assert csms.violations == []


async def test_local_list_offline_authorization_and_blocked_refused_201(csms, make_station):
    """Part 2 C §1.4 / D with AuthCtrlr.LocalAuthorizeOffline: offline, an Accepted idToken on the list starts a
    transaction while an unknown one is refused; a Blocked one is refused even with OfflineTxForUnknownIdEnabled."""
    st = await booted201(csms, make_station, ocpp={"AllowOfflineTxForUnknownId": "true"})
    assert await send201(csms, 1, "Full", [entry201("LIST1"), entry201("BLK1", "Blocked")]) == "Accepted"
    await list_decides_offline(csms, st)


async def test_d02_fr_03_disabled_list_reports_0_and_refuses_updates(csms, make_station):
    """D02.FR.03: LocalAuthListCtrlr.Enabled false -> versionNumber 0; SendLocalList -> Failed (D01 prerequisite);
    Enabled is the variable 1.6 calls LocalAuthListEnabled."""
    st = await booted201(csms, make_station)
    assert await send201(csms, 2, "Full", [entry201("A1")]) == "Accepted"
    res = await csms.call(ID, "SetVariables", {"setVariableData": [
        {"component": {"name": "LocalAuthListCtrlr"}, "variable": {"name": "Enabled"}, "attributeValue": "false"}]})
    assert res["setVariableResult"][0]["attributeStatus"] == "Accepted"
    assert st.station.config.get_bool("LocalAuthListEnabled") is False
    assert await version201(csms) == 0
    assert await send201(csms, 3, "Full", [entry201("B1")]) == "Failed"
    assert st.station.local_list.lookup("A1") is None and st.station.local_list.store.get("A1") is not None
    assert csms.violations == []


async def test_d01_fr_10_list_persists_across_restart_201(csms, make_station):
    """D01.FR.10: the list and its version survive a restart of the station."""
    st = await booted201(csms, make_station)
    assert await send201(csms, 11, "Full", [entry201("KEEP1", "Blocked")]) == "Accepted"
    await st.stop()
    n = len(csms.received)
    st2 = await make_station(csms, protocols=["ocpp2.0.1"], data_dir=st.cfg.data_dir)
    await csms.wait_for("BootNotification", after=n)
    assert await version201(csms) == 11
    assert st2.station.local_list.store.get("KEEP1") == {"status": "Blocked"}
    assert csms.violations == []


# ---- the store ------------------------------------------------------------------------------------------------
def test_store_local_list_updates_are_atomic_and_durable(tmp_path):
    """D01 failure postcondition / D01.FR.10: an update that does not fit changes nothing (entries nor version);
    an applied one is on disk when the call returns."""
    db = Database(tmp_path / "station.db")
    local = LocalList(db)
    assert local.version() == 0 and len(local) == 0
    local.replace(2, {"A": {"status": "Accepted"}, "B": {"status": "Blocked"}}, max_entries=2)
    with pytest.raises(LocalListFull):
        local.update(3, {"C": {"status": "Accepted"}}, ["Z"], max_entries=2)
    assert local.version() == 2 and local.items() == {"A": {"status": "Accepted"}, "B": {"status": "Blocked"}}
    local.update(3, {"C": {"status": "Accepted"}}, ["A"], max_entries=2)
    db.close()
    again = LocalList(Database(tmp_path / "station.db"))
    assert again.version() == 3 and again.items() == {"B": {"status": "Blocked"}, "C": {"status": "Accepted"}}
    assert "C" in again and again.get("A") is None
    again.clear()
    assert again.version() == 0 and len(again) == 0
