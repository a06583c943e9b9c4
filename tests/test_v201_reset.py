"""OCPP 2.0.1 B11/B12 Reset OnIdle while transactions run: the idle EVSEs are Unavailable while the reset waits.

Part 2 B12 scenario step 3a: on an OnIdle reset the station answers Scheduled (B12.FR.01), goes on charging, and
"sets all EVSEs (or only the one provided in the request, if evseId was supplied) that are Available to status
Unavailable, waits until all transactions are finished and all TransactionEventRequest (eventType = Ended) messages
are sent" (B12.FR.03 / B12.FR.07); after the reset the EVSEs return to the state set by the CSMS (B12.FR.06,
B11.FR.02), not to the temporary Unavailable of the wait. Part 6: TC_B_21_CS, TC_B_26_CS.
"""
from __future__ import annotations

from test_v201_core import ID, barrier, booted, ended, get_var, started


def statuses(csms, after: int, evse: int) -> list[str]:
    return [r.payload["connectorStatus"] for r in csms.received[after:]
            if r.action == "StatusNotification" and r.payload["evseId"] == evse]


async def test_tc_b_21_b12_step_3a_on_idle_station_reset_makes_idle_evses_unavailable(csms, make_station):
    """TC_B_21_CS (B12.FR.01/03, step 3a): Scheduled; the idle EVSE 2 goes Unavailable (StatusNotification and
    AvailabilityState) and refuses a new transaction while EVSE 1 keeps charging; when that transaction ends its
    Ended goes out before the reboot (RemoteReset); after the reboot both EVSEs are Available again (the hold is not
    an availability set by the CSMS: B12.FR.06)."""
    st = await booted(csms, make_station, connectors=2)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1", 1)
    tx_id = (await started(csms, evse={"id": 1, "connectorId": 1}))["transactionInfo"]["transactionId"]
    n = len(csms.received)
    assert await csms.call(ID, "Reset", {"type": "OnIdle"}) == {"status": "Scheduled"}
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2 and p["connectorStatus"] == "Unavailable",
                        after=n)
    assert statuses(csms, n, 1) == []                       # EVSE 1 goes on charging
    assert await get_var(csms, "EVSE", "AvailabilityState", evse={"id": 2}) == "Unavailable"
    # no new transaction on the held EVSE: the identifier is accepted by the CSMS, but no connector is usable
    m = len(csms.received)
    st.hw.ev_plug(2)
    st.hw.present_tag("TAG2", 2)
    await csms.wait_for("Authorize", after=m)
    await barrier(csms)
    assert st.station.engine.connectors[2].tx_key is None
    assert not [r for r in csms.received[m:] if r.action == "TransactionEvent"]
    assert statuses(csms, m, 2) == []                       # still Unavailable with a cable plugged in
    assert st.hw.resets == []
    # the driver ends the transaction: Ended first, then the reboot
    m = len(csms.received)
    st.hw.present_tag("TAG1", 1)
    end = await ended(csms, tx_id, after=m)
    boot = await csms.wait_for("BootNotification", after=m)
    assert boot.payload["reason"] == "RemoteReset"
    assert csms.received.index(boot) > next(i for i, r in enumerate(csms.received) if r.payload is end)
    # after the reboot the EVSEs report what the CSMS set (Operative): EVSE 2 is Occupied by its cable, EVSE 1 too
    after_boot = csms.received.index(boot)
    for evse in (1, 2):
        await csms.wait_for("StatusNotification", lambda p, e=evse: p["evseId"] == e, after=after_boot)
    assert "Unavailable" not in statuses(csms, after_boot, 1) + statuses(csms, after_boot, 2)
    assert not any(c.holds for c in st.station.engine.connectors.values())
    assert csms.violations == []


async def test_tc_b_26_b12_fr_07_on_idle_evse_reset_holds_only_that_evse(csms, make_station):
    """TC_B_26_CS (B12.FR.01/07, step 3a with evseId): only the EVSE named is held (its second connector does not
    exist here; EVSE 2 is untouched and can start a transaction); when the EVSE's transaction ends the EVSE is
    reset without a reboot and is usable again."""
    st = await booted(csms, make_station, connectors=2)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1", 1)
    tx_id = (await started(csms, evse={"id": 1, "connectorId": 1}))["transactionInfo"]["transactionId"]
    n = len(csms.received)
    assert await csms.call(ID, "Reset", {"type": "OnIdle", "evseId": 1}) == {"status": "Scheduled"}
    await barrier(csms)
    assert statuses(csms, n, 2) == [] and st.station.engine.connectors[1].tx_key is not None
    st.hw.ev_plug(2)                                        # the other EVSE is not part of the reset
    st.hw.present_tag("TAG2", 2)
    await started(csms, after=n, evse={"id": 2, "connectorId": 1})
    m = len(csms.received)
    st.hw.present_tag("TAG1", 1)
    await ended(csms, tx_id, after=m)
    await barrier(csms)
    # the EVSE went through its reset (Unavailable) and is back (Occupied: the cable is still in); no reboot
    assert statuses(csms, m, 1) == ["Unavailable", "Occupied"]
    assert st.hw.resets == [] and st.station.boots == 0
    assert not st.station.engine.connectors[1].holds
    st.hw.present_tag("TAG3", 1)                            # usable again: a new transaction starts
    await started(csms, after=m, evse={"id": 1, "connectorId": 1})
    assert csms.violations == []


async def test_b12_fr_06_evse_set_inoperative_stays_unavailable_after_its_on_idle_reset(csms, make_station):
    """B12.FR.06 (with G03.FR.05 Scheduled): an EVSE the CSMS made Inoperative during its transaction stays
    Unavailable after the OnIdle reset of that EVSE; the reset's temporary hold is gone."""
    st = await booted(csms, make_station, connectors=2)
    st.hw.ev_plug(1)
    st.hw.present_tag("TAG1", 1)
    tx_id = (await started(csms, evse={"id": 1, "connectorId": 1}))["transactionInfo"]["transactionId"]
    res = await csms.call(ID, "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}})
    assert res == {"status": "Scheduled"}
    assert await csms.call(ID, "Reset", {"type": "OnIdle", "evseId": 1}) == {"status": "Scheduled"}
    n = len(csms.received)
    st.hw.present_tag("TAG1", 1)
    await ended(csms, tx_id, after=n)
    await barrier(csms)
    assert statuses(csms, n, 1) == ["Unavailable"]
    c = st.station.engine.connectors[1]
    assert not c.holds and not c.operative
    assert await get_var(csms, "EVSE", "AvailabilityState", evse={"id": 1}) == "Unavailable"
    assert csms.violations == []
