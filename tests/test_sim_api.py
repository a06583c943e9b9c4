"""The simulator REST API (secure_cp.sim.api) against a real station, a real CSMS and real HTTP on 127.0.0.1.

A whole charging session is driven through HTTP only; the CSMS must see it. Every kind of bad request gets a JSON
error with the right status and leaves the station running.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from conftest import StationHandle, station_config
from csms_fixture import AUTH_IDENTITY, AUTH_PASSWORD
from secure_cp.hal.simulated import SimulatedHardware
from secure_cp.sim.api import SimulatorApi

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class Http:
    """A tiny JSON client for the API under test."""

    def __init__(self, session: aiohttp.ClientSession, base: str):
        self.session, self.base = session, base

    async def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None) -> tuple[int, Any]:
        kw: dict[str, Any] = {}
        if raw is not None:
            kw["data"] = raw
        elif body is not None:
            kw["json"] = body
        async with self.session.request(method, self.base + path, **kw) as resp:
            assert resp.content_type == "application/json", (method, path, resp.status, await resp.text())
            return resp.status, await resp.json()

    async def get(self, path: str) -> Any:
        status, body = await self.request("GET", path)
        assert status == 200, (path, body)
        return body

    async def post(self, path: str, body: Any) -> Any:
        status, out = await self.request("POST", path, body)
        assert status == 200, (path, body, out)
        return out

    async def error(self, method: str, path: str, status: int, body: Any = None, *, raw: bytes | None = None) -> str:
        got, out = await self.request(method, path, body, raw=raw)
        assert got == status, (method, path, body, raw, got, out)
        assert isinstance(out, dict) and set(out) == {"error"} and isinstance(out["error"], str) and out["error"]
        return out["error"]


async def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll an async or plain check until it returns something truthy (bounded wait, no timing assertion)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > end:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.02)


@pytest_asyncio.fixture
async def http_client():
    async with aiohttp.ClientSession() as session:
        yield session


async def start_api(station, http_client) -> tuple[SimulatorApi, Http]:
    api = SimulatorApi(station, "127.0.0.1", 0)
    await api.start()
    assert api.port > 0
    return api, Http(http_client, f"http://127.0.0.1:{api.port}")


async def test_whole_session_through_http_only(csms, make_station, http_client):
    """Plug, tag (Authorize + StartTransaction), meter values, same tag stops (Local), unplug: all via the API."""
    st = await make_station(csms, ocpp={"MeterValueSampleInterval": "1",
                                        "StopTxnSampledData": "Energy.Active.Import.Register"})
    api, http = await start_api(st.station, http_client)
    try:
        # the hardware reports to the runtime's own listener: the API adds no second path into the engine
        assert st.hw._listener == st.station._on_hal
        ws = await until(lambda: _connected(http), what="connected")
        assert ws["chargeBoxId"] == "CP1" and ws["backendUrl"] == csms.url and ws["subprotocol"] == "ocpp1.6"
        assert ws["authorizationKey"] == "" and ws["pingInterval"] == 60 and ws["reconnectInterval"] == 0.05
        await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Available")

        conns = await http.get("/api/connectors")
        assert conns == [{"id": 1, "status": "Available", "evPlugged": False, "evReady": True, "evseReady": True,
                          "locked": False, "transaction": None}]

        view = await http.post("/api/connector/1/evse", {"evPlugged": True})
        assert view["evPlugged"] is True and view["status"] == "Preparing"
        assert st.station.engine.connectors[1].plugged      # the engine heard it, synchronously
        await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing")

        assert await http.post("/api/connector/1/transaction", {"idTag": "TAG1"}) == {"accepted": True}
        assert (await csms.wait_for("Authorize")).payload == {"idTag": "TAG1"}
        start = await csms.wait_for("StartTransaction")
        assert start.payload["connectorId"] == 1 and start.payload["idTag"] == "TAG1"
        tx_id = next(iter(csms.transactions))
        tx = await until(lambda: _tx_with_id(http), what="transactionId known")
        assert tx["transactionId"] == tx_id and tx["idTag"] == "TAG1"
        assert tx["meterStartWh"] == start.payload["meterStart"] and tx["startedAt"] == start.payload["timestamp"]
        view = await http.get("/api/connector/1/evse")
        assert view["status"] == "Charging" and view["locked"] is True and view["transaction"] == tx

        mv = await csms.wait_for("MeterValues", lambda p: p.get("transactionId") == tx_id)
        meter = await http.get("/api/connector/1/meter")
        assert meter["energyWh"] >= start.payload["meterStart"]
        assert meter["values"]["Energy.Active.Import.Register"] == str(meter["energyWh"])
        assert float(meter["values"]["Power.Active.Import"]) > 0          # the power path is closed
        assert all(isinstance(v, str) for v in meter["values"].values())
        assert mv.payload["meterValue"][0]["sampledValue"][0]["measurand"] == "Energy.Active.Import.Register"

        assert await http.post("/api/connector/1/transaction", {"idTag": "TAG1"}) == {"accepted": True}
        stop = await csms.wait_for("StopTransaction")
        assert stop.payload["transactionId"] == tx_id and stop.payload["reason"] == "Local"
        assert stop.payload["meterStop"] >= start.payload["meterStart"]
        assert await http.get("/api/connector/1/transaction") is None
        assert (await http.get("/api/connector/1/evse"))["status"] == "Finishing"

        n = len(csms.received)
        view = await http.post("/api/connector/1/evse", {"evPlugged": False})
        assert view["status"] == "Available" and view["evPlugged"] is False and view["locked"] is False
        await csms.wait_for("StatusNotification", lambda p: p["status"] == "Available", after=n)

        frames = await http.get("/api/log?limit=500")
        assert frames and all(set(f) == {"at", "direction", "frame"} for f in frames)
        assert all(RFC3339.match(f["at"]) and f["direction"] in ("tx", "rx") for f in frames)
        assert any('"StartTransaction"' in f["frame"] for f in frames if f["direction"] == "tx")
        assert any(f["direction"] == "rx" for f in frames)
        assert [f["frame"] for f in await http.get("/api/log?limit=2")] == [f["frame"] for f in frames[-2:]]
        assert await http.get("/api/log?limit=0") == []
        assert csms.violations == [] and csms.duplicates == []
        assert csms.transactions[tx_id].stop is not None
    finally:
        await api.stop()


async def _connected(http: Http) -> dict | None:
    ws = await http.get("/api/websocket")
    return ws if ws["connected"] else None


async def _tx_with_id(http: Http) -> dict | None:
    tx = await http.get("/api/connector/1/transaction")
    return tx if tx and tx["transactionId"] is not None else None


async def test_ev_and_evse_readiness_drive_the_status(csms, make_station, http_client):
    """evReady / evseReady map onto SuspendedEV / SuspendedEVSE (1.6 §7.7); booleans only."""
    st = await make_station(csms)
    api, http = await start_api(st.station, http_client)
    try:
        await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 0)   # registered: tags go online
        await http.post("/api/connector/1/evse", {"evPlugged": True})
        await http.post("/api/connector/1/transaction", {"idTag": "TAG2"})
        view = await until(lambda: _status_is(http, "Charging"), what="Charging")
        assert view["transaction"]["idTag"] == "TAG2"
        view = await http.post("/api/connector/1/evse", {"evReady": False})
        assert view["status"] == "SuspendedEV" and view["evReady"] is False
        view = await http.post("/api/connector/1/evse", {"evReady": True, "evseReady": False})
        assert view["status"] == "SuspendedEVSE" and view["evseReady"] is False
        assert await http.post("/api/connector/1/evse", {}) == view            # nothing asked, nothing changed
        await http.post("/api/connector/1/evse", {"evseReady": True})
        await csms.wait_for("StatusNotification", lambda p: p["status"] == "SuspendedEVSE")
        view = await http.post("/api/connector/1/evse", {"evPlugged": False})   # EV side disconnect ends it
        stop = await csms.wait_for("StopTransaction")
        assert stop.payload["reason"] == "EVDisconnected" and view["transaction"] is None
        assert csms.violations == []
    finally:
        await api.stop()


async def _status_is(http: Http, status: str) -> dict | None:
    view = await http.get("/api/connector/1/evse")
    return view if view["status"] == status else None


async def test_bad_requests_get_json_errors_and_the_station_keeps_running(csms, make_station, http_client):
    st = await make_station(csms, connectors=2)
    api, http = await start_api(st.station, http_client)
    try:
        await until(lambda: _connected(http), what="connected")
        # unknown connector -> 404 (0 is the station, not a connector)
        for cid in ("3", "0", "abc", "-1", "1.0", "%EF%BC%91"):
            for path in ("evse", "meter", "transaction"):
                await http.error("GET", f"/api/connector/{cid}/{path}", 404)
            await http.error("POST", f"/api/connector/{cid}/evse", 404, {"evPlugged": True})
        await http.error("GET", "/api/nothing-here", 404)
        await http.error("GET", "/api/connector/1/firmware", 404)
        # wrong method -> 405 with Allow
        for method, path in (("DELETE", "/api/connector/1/evse"), ("POST", "/api/connectors"),
                             ("PUT", "/api/websocket"), ("POST", "/api/connector/1/meter"),
                             ("POST", "/api/log"), ("PATCH", "/api/connector/1/transaction")):
            await http.error(method, path, 405)
        async with http.session.delete(http.base + "/api/connector/1/evse") as resp:
            assert "GET" in resp.headers["Allow"] and "POST" in resp.headers["Allow"]
        # bodies: not JSON, not an object, wrong types, unknown fields
        for path in ("/api/connector/1/evse", "/api/connector/1/transaction", "/api/websocket"):
            await http.error("POST", path, 400, raw=b"not json")
            await http.error("POST", path, 400, raw=b"")
            await http.error("POST", path, 400, raw=b"\xff\xfe")
            await http.error("POST", path, 400, raw=b'{"a": NaN}')
            await http.error("POST", path, 400, ["evPlugged"])
            await http.error("POST", path, 400, {"bogus": 1})
        await http.error("POST", "/api/connector/1/evse", 400, raw=b'{"evPlugged": true, "evPlugged": false}')
        for value in ("true", 1, None, [], {}):
            msg = await http.error("POST", "/api/connector/1/evse", 400, {"evPlugged": value})
            assert "evPlugged" in msg
        await http.error("POST", "/api/connector/1/evse", 400, {"evPlugged": True, "speed": 3})
        for body in ({}, {"idTag": ""}, {"idTag": 12}, {"idTag": None}, {"idTag": "A\nB"}, {"idTag": "x" * 256},
                     {"idTag": "TAG1", "connectorId": 1}):
            await http.error("POST", "/api/connector/1/transaction", 400, body)
        # query of /api/log
        for query in ("limit=x", "limit=-1", "limit=1001", "limit=", "since=3"):
            await http.error("GET", f"/api/log?{query}", 400)
        # too large a body
        await http.error("POST", "/api/connector/1/evse", 413, raw=b" " * (70 * 1024))
        # nothing of the above reached the hardware or the engine
        assert all(not c.plugged for c in st.hw.connectors.values())
        assert all(c.tx_key is None and c.auth is None for c in st.station.engine.connectors.values())
        # and the station is alive: it still answers the CSMS and the API
        assert st.task is not None and not st.task.done()
        assert await csms.call("CP1", "ClearCache", {}) == {"status": "Accepted"}
        assert (await http.get("/api/connector/2/evse"))["status"] == "Available"
        assert csms.violations == []
    finally:
        await api.stop()


async def test_meter_fault_is_503(csms, make_station, http_client):
    st = await make_station(csms)
    api, http = await start_api(st.station, http_client)
    try:
        st.hw.fail_meter(1)
        assert "does not answer" in await http.error("GET", "/api/connector/1/meter", 503)
        st.hw.fail_meter(1, False)
        assert (await http.get("/api/connector/1/meter"))["energyWh"] == 0
    finally:
        await api.stop()


async def test_websocket_settings_validate_apply_and_reconnect(csms, make_station, http_client):
    """POST /api/websocket: refused settings change nothing; accepted ones reconnect under the new identity."""
    st = await make_station(csms)
    api, http = await start_api(st.station, http_client)
    try:
        before = await until(lambda: _connected(http), what="connected")
        bad = [{"backendUrl": "http://127.0.0.1:1"}, {"backendUrl": "ws://"}, {"backendUrl": 5},
               {"backendUrl": "ws://user:pw@127.0.0.1:1"},
               {"chargeBoxId": ""}, {"chargeBoxId": "x" * 49}, {"chargeBoxId": "a\tb"},
               {"pingInterval": -1}, {"pingInterval": "30"}, {"pingInterval": True}, {"pingInterval": 1.5},
               {"reconnectInterval": -0.5}, {"reconnectInterval": "1"},
               {"authorizationKey": "short"}, {"authorizationKey": "has space in it 0123"}, {"authorizationKey": 7},
               {"chargeBoxId": "CP2", "authorizationKey": "bad"},      # one bad field: nothing is applied
               {"connected": False}, {"subprotocol": "ocpp2.0.1"}]
        for body in bad:
            await http.error("POST", "/api/websocket", 400, body)
        assert await http.get("/api/websocket") == before
        assert st.station.cfg.identity == "CP1"

        key = "0011223344556677889900aabbccddee"
        n_boot = len([r for r in csms.received if r.action == "BootNotification"])
        ws = await http.post("/api/websocket", {"chargeBoxId": "CP2", "pingInterval": 30, "reconnectInterval": 0,
                                                "authorizationKey": key})
        assert ws["chargeBoxId"] == "CP2" and ws["pingInterval"] == 30 and ws["reconnectInterval"] == 0.05
        assert ws["authorizationKey"] == "***"
        await csms.wait_connected("CP2")
        ws = await until(lambda: _connected(http), what="reconnected")
        assert ws["chargeBoxId"] == "CP2"
        assert st.station.config.get_str("WebSocketPingInterval") == "30"
        assert st.station.transport.config.identity == "CP2" and st.station.transport.config.ping_interval == 30
        # the secret is never shown: not in the view, not in the frame log
        assert key not in str(await http.get("/api/websocket"))
        assert key not in str(await http.get("/api/log?limit=1000"))
        # a reconnect within one boot: no new BootNotification (the identity is the operator's business)
        assert len([r for r in csms.received if r.action == "BootNotification"]) == n_boot
        ws = await http.post("/api/websocket", {"backendUrl": csms.url + "/"})
        assert ws["backendUrl"] == csms.url + "/"
        assert csms.violations == []
    finally:
        await api.stop()


async def test_authorization_key_reaches_the_csms(csms_auth, tmp_path, http_client):
    """Security profile 1 (whitepaper §2.3): with a wrong key the CSMS refuses; the key set via the API admits."""
    cfg = station_config(tmp_path / "auth", csms_auth.url, AUTH_IDENTITY, security_profile=1,
                         password="wrong-password-000")
    cfg.data_dir.mkdir(parents=True)
    st = await StationHandle(cfg, SimulatedHardware(1)).start()
    api, http = await start_api(st.station, http_client)
    try:
        await until(lambda: csms_auth.refused, what="refusal of the wrong key")
        assert AUTH_IDENTITY not in csms_auth.connected
        assert (await http.get("/api/websocket"))["authorizationKey"] == "***"
        await http.post("/api/websocket", {"authorizationKey": AUTH_PASSWORD.decode()})
        await csms_auth.wait_connected(AUTH_IDENTITY)
        await csms_auth.wait_for("BootNotification", identity=AUTH_IDENTITY)
        assert csms_auth.violations == []
    finally:
        await api.stop()
        await st.stop()


class RealHardware:
    """A hardware adapter that is not the simulator (it merely delegates to one for its meter and outputs)."""

    def __init__(self) -> None:
        self._sim = SimulatedHardware(1)

    def __getattr__(self, name: str):
        if name in ("connector_ids", "supported_measurands", "set_listener", "read_meter", "permit_charging",
                    "set_limit", "lock_connector", "has_lock", "reset"):
            return getattr(self._sim, name)
        raise AttributeError(name)


async def test_real_hardware_cannot_be_driven(csms, tmp_path, http_client):
    """With a real adapter the driving endpoints answer 409; reading state still works."""
    cfg = station_config(tmp_path / "real", csms.url)
    cfg.data_dir.mkdir(parents=True)
    st = await StationHandle(cfg, RealHardware()).start()
    api, http = await start_api(st.station, http_client)
    try:
        msg = await http.error("POST", "/api/connector/1/evse", 409, {"evPlugged": True})
        assert "RealHardware" in msg
        await http.error("POST", "/api/connector/1/transaction", 409, {"idTag": "TAG1"})
        await http.error("POST", "/api/connector/7/evse", 404, {"evPlugged": True})
        view = await http.get("/api/connector/1/evse")
        assert view["evPlugged"] is False and view["locked"] is None and view["status"] == "Available"
        assert (await http.get("/api/connector/1/meter"))["energyWh"] == 0
        assert await http.get("/api/connector/1/transaction") is None
    finally:
        await api.stop()
        await st.stop()


async def test_api_answers_before_the_station_runs(csms, make_station, http_client):
    """The CLI starts the API before Station.run(): there is no transport yet, and a settings change is kept."""
    st = await make_station(csms, start=False)
    api, http = await start_api(st.station, http_client)
    try:
        ws = await http.get("/api/websocket")
        assert ws["connected"] is False and ws["subprotocol"] is None
        ws = await http.post("/api/websocket", {"chargeBoxId": "CP-LATE"})
        assert ws["chargeBoxId"] == "CP-LATE"
        await st.start()
        await csms.wait_connected("CP-LATE")
    finally:
        await api.stop()


async def test_port_is_known_after_start_and_free_after_stop(csms, make_station, http_client):
    st = await make_station(csms, start=False)
    api = SimulatorApi(st.station)
    await api.start()
    port = api.port
    await api.stop()
    await api.stop()                      # idempotent
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http_client.get(f"http://127.0.0.1:{port}/api/websocket"):
            pass
