"""Runtime protocol negotiation (issue #3): the station offers both versions in the configured order and runs
whichever the CSMS accepts; a transaction begun under one version is finished in it."""
from __future__ import annotations

import pytest

from secure_cp.sim.csms import Csms
from helpers import eventually

BOTH = ["ocpp2.0.1", "ocpp1.6"]


@pytest.mark.parametrize("accepts, expected", [(("ocpp1.6",), "ocpp1.6"), (("ocpp2.0.1",), "ocpp2.0.1"),
                                               (("ocpp2.0.1", "ocpp1.6"), "ocpp2.0.1")])
async def test_station_runs_the_version_the_csms_accepts(make_station, accepts, expected):
    async with Csms(subprotocols=accepts) as csms:
        await make_station(csms, protocols=BOTH)
        assert await csms.wait_connected("CP1") == expected
        boot = await csms.wait_for("BootNotification")
        if expected == "ocpp1.6":
            assert boot.payload["chargePointVendor"] == "secure-cp"
        else:
            assert boot.payload["chargingStation"]["vendorName"] == "secure-cp"
            assert boot.payload["reason"] == "PowerUp"
        assert csms.violations == []


async def test_offer_order_follows_configuration(make_station):
    """The CSMS picks the first of its own list the station offers; offering only 1.6 gets 1.6 even from a
    CSMS that prefers 2.0.1."""
    async with Csms(subprotocols=("ocpp2.0.1", "ocpp1.6")) as csms:
        await make_station(csms, protocols=["ocpp1.6"])
        assert await csms.wait_connected("CP1") == "ocpp1.6"


async def test_transaction_begun_in_16_is_finished_in_16_then_the_station_moves_to_201(make_station):
    async with Csms(subprotocols=("ocpp1.6",)) as csms:
        st = await make_station(csms, protocols=BOTH)
        await csms.wait_for("StatusNotification", lambda p: p.get("connectorId") == 1)
        st.hw.ev_plug(1)
        st.hw.present_tag("TAG1")
        start = await csms.wait_for("StartTransaction")
        # the CSMS is upgraded to one that prefers 2.0.1 while the 1.6 transaction runs
        await csms.stop()
        csms.subprotocols = ("ocpp2.0.1", "ocpp1.6")
        await csms.start()
        n = len(csms.received)
        assert await csms.wait_connected("CP1") == "ocpp1.6"      # the open transaction pins 1.6
        st.hw.present_tag("TAG1")
        stop = await csms.wait_for("StopTransaction", after=n)
        tx_id = next(iter(csms.transactions))
        assert stop.payload["transactionId"] == tx_id and csms.transactions[tx_id].start == start.payload
        await eventually(lambda: st.station.adapter.pending_messages() == 0, what="StopTransaction delivered")
        # nothing pins any more: the next connection offers both and runs 2.0.1
        await csms.disconnect("CP1")
        n = len(csms.received)
        await eventually(lambda: csms.connected.get("CP1") == "ocpp2.0.1", what="a 2.0.1 connection")
        boot = await csms.wait_for("BootNotification", after=n)
        assert "chargingStation" in boot.payload
        await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1, after=n)   # registered on 2.0.1
        # and a new transaction now runs on 2.0.1
        st.hw.ev_plug(1, False)
        st.hw.ev_plug(1)
        st.hw.present_tag("TAG2")
        ev = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started", after=n)
        assert ev.payload["idToken"]["idToken"] == "TAG2"
        assert csms.violations == []
