"""The simulator REST API: JSON over HTTP to drive the simulated hardware and to look into the running station.

Why it exists: a CSMS developer tests a backend against a charger that behaves like a real one, and needs to plug
an EV, present a card or read the meter from a script or a GUI. The endpoints are shaped like those of
MicroOcppSimulator (``/api/websocket``, ``/api/connector/{id}/evse|meter|transaction``; camelCase JSON) so that
tooling written for it fits.

Endpoints (every answer is JSON; every error is ``{"error": "..."}`` with a 4xx/5xx status):

* ``GET /api/websocket``, ``POST /api/websocket`` - the CSMS connection settings; a POST validates, applies and
  reconnects.
* ``GET /api/connectors``, ``GET|POST /api/connector/{id}/evse`` - connector state; a POST drives the EV side
  (``evPlugged``, ``evReady``, ``evseReady``).
* ``GET /api/connector/{id}/meter`` - a meter reading.
* ``GET|POST /api/connector/{id}/transaction`` - the running transaction; a POST presents an idTag at the
  connector (starts or stops per the engine's rules, exactly like an RFID card).
* ``GET /api/log?limit=N`` - the latest OCPP frames (already redacted by the runtime).

Hardware inputs go through :class:`~secure_cp.hal.simulated.SimulatedHardware`, which emits them to the listener
the runtime installed (``Station._on_hal``): the API never calls the engine itself, so the engine sees exactly what
it would see from real hardware. With any other hardware adapter the driving endpoints answer 409.

Everything runs on the station's event loop; handlers are short and synchronous apart from reading the request.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

from aiohttp import web

from ..engine.model import rfc3339
from ..hal.simulated import SimulatedHardware

__all__ = ["SimulatorApi"]

log = logging.getLogger("secure_cp.sim.api")

MAX_BODY_BYTES = 64 * 1024          # the largest valid request is a few hundred bytes
LOG_DEFAULT_LIMIT = 100
LOG_MAX_LIMIT = 1000
IDENTITY_MAX = 48                   # same bound as station.identity in the TOML (config.py)
ID_TAG_MAX = 255                    # longer than any OCPP token; the adapter itself rejects what OCPP cannot carry
MIN_RECONNECT_S = 0.05              # reconnectInterval 0 means "at once": floored so a dead CSMS is no busy loop

_EVSE_FIELDS = {"evPlugged": "ev_plug", "evReady": "ev_ready", "evseReady": "evse_ready"}
_WS_FIELDS = frozenset({"backendUrl", "chargeBoxId", "authorizationKey", "pingInterval", "reconnectInterval"})


class ApiError(Exception):
    """A request the API refuses: becomes ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@web.middleware
async def _json_errors(request: web.Request, handler) -> web.StreamResponse:
    """Every failure answers JSON, and nothing a client sends can take the station down."""
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response({"error": exc.message}, status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            message = f"no such endpoint: {request.method} {request.path}"
        elif exc.status == 405:
            message = f"method {request.method} not allowed on {request.path}"
        elif exc.status == 413:
            message = f"request body too large (limit {MAX_BODY_BYTES} bytes)"
        else:
            message = exc.reason
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return web.json_response({"error": message}, status=exc.status, headers=headers)
    except Exception as exc:  # a bug here must not end the station; the log has the traceback
        log.exception("simulator API: %s %s failed", request.method, request.path)
        return web.json_response({"error": f"internal error: {type(exc).__name__}"}, status=500)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


async def _json_object(request: web.Request, allowed: frozenset[str] | set[str]) -> dict[str, Any]:
    """The body as a JSON object holding only ``allowed`` keys (400 otherwise). Content-Type is not required:
    simple tools (curl -d) do not set it."""
    raw = await request.read()
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return body


def _number(body: dict, key: str) -> float | int | None:
    if key not in body:
        return None
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(400, f"{key} must be a number, got {type(value).__name__}")
    if value < 0:
        raise ApiError(400, f"{key} must be >= 0")
    return value


def _text(body: dict, key: str, low: int, high: int) -> str | None:
    if key not in body:
        return None
    value = body[key]
    if not isinstance(value, str):
        raise ApiError(400, f"{key} must be a string, got {type(value).__name__}")
    if not low <= len(value) <= high:
        raise ApiError(400, f"{key} must have {low}..{high} characters")
    if not value.isprintable():
        raise ApiError(400, f"{key} must not contain control characters")
    return value


def _transaction_id(value: str | None) -> int | str | None:
    # 1.6 transactionIds are integers (stored as text); 2.0.1 ones are strings
    if value is not None and value.isascii() and value.isdigit():
        return int(value)
    return value


class SimulatorApi:
    """The HTTP server of the simulator API for one running :class:`~secure_cp.runtime.Station`.

    ``port`` 0 picks a free port; :attr:`port` tells the real one after :meth:`start`.
    """

    def __init__(self, station, host: str = "127.0.0.1", port: int = 0) -> None:
        self.station = station
        self.host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    # ---- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(middlewares=[_json_errors], client_max_size=MAX_BODY_BYTES)
        app.add_routes([
            web.get("/api/websocket", self._get_websocket),
            web.post("/api/websocket", self._post_websocket),
            web.get("/api/connectors", self._get_connectors),
            web.get("/api/connector/{id}/evse", self._get_evse),
            web.post("/api/connector/{id}/evse", self._post_evse),
            web.get("/api/connector/{id}/meter", self._get_meter),
            web.get("/api/connector/{id}/transaction", self._get_transaction),
            web.post("/api/connector/{id}/transaction", self._post_transaction),
            web.get("/api/log", self._get_log),
        ])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]
        log.info("simulator API listening on http://%s:%d/api/", self.host, self._port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def port(self) -> int:
        """The port actually listened on (after :meth:`start`)."""
        return self._port

    # ---- helpers ---------------------------------------------------------------------------------------------
    def _sim(self) -> SimulatedHardware:
        hal = self.station.hal
        if not isinstance(hal, SimulatedHardware):
            raise ApiError(409, f"the station runs on real hardware ({type(hal).__name__}), not the simulated "
                                "one: EV and driver inputs cannot be simulated")
        return hal

    def _connector_id(self, request: web.Request) -> int:
        text = request.match_info["id"]
        cid = int(text) if text.isascii() and text.isdigit() else None
        if cid is None or cid not in self.station.engine.connectors:
            raise ApiError(404, f"no connector {text!r} (connectors: "
                                f"{', '.join(str(c) for c in sorted(self.station.engine.connectors))})")
        return cid

    def _auth_key_set(self) -> bool:
        config = self.station.config
        key = config.get_str("AuthorizationKey") if "AuthorizationKey" in config.keys() else ""
        return bool(key or self.station.cfg.password)

    def _websocket_view(self) -> dict[str, Any]:
        st = self.station
        transport = getattr(st, "transport", None)     # exists once Station.run() has started
        connected = bool(transport is not None and transport.connected)
        return {
            "backendUrl": st.cfg.csms_url,
            "chargeBoxId": st.cfg.identity,
            "authorizationKey": "***" if self._auth_key_set() else "",   # write-only: never the secret
            "pingInterval": st.settings.websocket_ping_interval,
            "reconnectInterval": st.cfg.reconnect_min,
            "connected": connected,
            "subprotocol": transport.subprotocol if connected else None,
        }

    def _transaction_view(self, cid: int) -> dict[str, Any] | None:
        tx = self.station.engine.tx_on(cid)
        if tx is None:
            return None
        return {"txKey": tx.tx_key, "transactionId": _transaction_id(tx.transaction_id), "idTag": tx.id_tag,
                "startedAt": tx.started_at, "meterStartWh": tx.meter_start_wh}

    def _connector_view(self, cid: int) -> dict[str, Any]:
        st = self.station
        hal = st.hal
        if isinstance(hal, SimulatedHardware):     # the simulated world itself
            hc = hal.connectors[cid]
            plugged, ev_ready, evse_ready, locked = hc.plugged, hc.ev_ready, hc.evse_ready, hc.locked
        else:                                      # what the engine was told by the real hardware
            ec = st.engine.connectors[cid]
            plugged, ev_ready, evse_ready, locked = ec.plugged, ec.ev_ready, ec.evse_ready, None
        return {"id": cid, "status": st.engine.status_of(cid).value, "evPlugged": plugged, "evReady": ev_ready,
                "evseReady": evse_ready, "locked": locked, "transaction": self._transaction_view(cid)}

    # ---- /api/websocket --------------------------------------------------------------------------------------
    async def _get_websocket(self, request: web.Request) -> web.Response:
        return web.json_response(self._websocket_view())

    async def _post_websocket(self, request: web.Request) -> web.Response:
        body = await _json_object(request, _WS_FIELDS)
        st = self.station
        url = _text(body, "backendUrl", 1, 2048)
        if url is not None and not url.startswith(("ws://", "wss://")):
            raise ApiError(400, "backendUrl must start with ws:// or wss://")
        identity = _text(body, "chargeBoxId", 1, IDENTITY_MAX)
        key = _text(body, "authorizationKey", 1, 256)
        ping = _number(body, "pingInterval")
        if ping is not None and ping != int(ping):
            raise ApiError(400, "pingInterval must be a whole number of seconds")
        reconnect = _number(body, "reconnectInterval")
        if not body:
            return web.json_response(self._websocket_view())

        # 1. the new connection settings as a whole must be usable, before anything is changed
        candidate = st.transport_config()
        changes: dict[str, Any] = {}
        if url is not None:
            changes["url"] = url
        if identity is not None:
            changes["identity"] = identity
        if ping is not None:
            changes["ping_interval"] = int(ping) or None
        if reconnect is not None:
            changes["reconnect_min"] = max(float(reconnect), MIN_RECONNECT_S)
            changes["reconnect_max"] = max(candidate.reconnect_max, changes["reconnect_min"])
        if key is not None:
            try:
                changes["password"] = bytes.fromhex(key) if st.cfg.password_encoding == "raw" else key.encode()
            except ValueError:
                raise ApiError(400, "authorizationKey must be hexadecimal (password_encoding 'raw')") from None
        try:
            dataclasses.replace(candidate, **changes).validate()
        except ValueError as exc:
            raise ApiError(400, f"unusable connection settings: {exc}") from None

        # 2. the configuration keys. The key goes first: it is the only one the device model may still refuse
        # (a pingInterval >= 0 is always valid), so a refusal leaves everything as it was.
        config = st.config
        if key is not None:
            try:
                config.set_internal("AuthorizationKey", key)
            except ValueError:
                raise ApiError(400, "authorizationKey is not a valid AuthorizationKey "
                                    "(16..40 characters of a-z A-Z 0-9 *-_=:+|~.)") from None
        if ping is not None:
            config.set_internal("WebSocketPingInterval", str(int(ping)))

        # 3. the station configuration, then connect with it
        if url is not None:
            st.cfg.csms_url = url
        if identity is not None:
            st.cfg.identity = identity
        if reconnect is not None:   # the defaults of OCPPCommCtrlr.RetryBackOff* (a CSMS-written value wins)
            st.cfg.reconnect_min = changes["reconnect_min"]
            st.cfg.reconnect_max = changes["reconnect_max"]
            st.reset_backoff_defaults()
        transport = getattr(st, "transport", None)
        if transport is not None:
            transport.reconfigure(st.transport_config())
            transport.reconnect_now()
        log.info("simulator API: connection settings changed (%s); reconnecting", ", ".join(sorted(body)))
        return web.json_response(self._websocket_view())

    # ---- /api/connector(s) -----------------------------------------------------------------------------------
    async def _get_connectors(self, request: web.Request) -> web.Response:
        return web.json_response([self._connector_view(c) for c in sorted(self.station.engine.connectors)])

    async def _get_evse(self, request: web.Request) -> web.Response:
        return web.json_response(self._connector_view(self._connector_id(request)))

    async def _post_evse(self, request: web.Request) -> web.Response:
        cid = self._connector_id(request)
        hal = self._sim()
        body = await _json_object(request, frozenset(_EVSE_FIELDS))
        for key, value in body.items():
            if not isinstance(value, bool):
                raise ApiError(400, f"{key} must be true or false, got {json.dumps(value)}")
        # readiness first, the plug last: a plug-in that starts a transaction then sees the final EV state
        for key in ("evReady", "evseReady", "evPlugged"):
            if key in body:
                getattr(hal, _EVSE_FIELDS[key])(cid, body[key])   # emits to Station._on_hal
        return web.json_response(self._connector_view(cid))

    async def _get_meter(self, request: web.Request) -> web.Response:
        cid = self._connector_id(request)
        try:
            reading = self.station.hal.read_meter(cid)
        except Exception as exc:  # a meter fault is a state of the hardware, not a bad request
            raise ApiError(503, f"meter of connector {cid} failed: {exc}") from None
        return web.json_response({"energyWh": reading.energy_wh,
                                  "values": {m: format(v, "f") for m, v in reading.values.items()}})

    async def _get_transaction(self, request: web.Request) -> web.Response:
        return web.json_response(self._transaction_view(self._connector_id(request)))

    async def _post_transaction(self, request: web.Request) -> web.Response:
        cid = self._connector_id(request)
        hal = self._sim()
        body = await _json_object(request, frozenset({"idTag"}))
        if "idTag" not in body:
            raise ApiError(400, "idTag is required")
        id_tag = _text(body, "idTag", 1, ID_TAG_MAX)
        hal.present_tag(id_tag, cid)     # the engine decides: authorize and start, or stop its own transaction
        return web.json_response({"accepted": True})

    # ---- /api/log --------------------------------------------------------------------------------------------
    async def _get_log(self, request: web.Request) -> web.Response:
        unknown = sorted(set(request.query) - {"limit"})
        if unknown:
            raise ApiError(400, f"unknown query parameter(s) {', '.join(unknown)}; allowed: limit")
        limit = LOG_DEFAULT_LIMIT
        if "limit" in request.query:
            text = request.query["limit"]
            if not (text.isascii() and text.isdigit()) or int(text) > LOG_MAX_LIMIT:
                raise ApiError(400, f"limit must be an integer 0..{LOG_MAX_LIMIT}")
            limit = int(text)
        frames = list(self.station.frames)
        recent = frames[len(frames) - limit:] if limit else []
        return web.json_response([{"at": rfc3339(f.at), "direction": f.direction, "frame": f.text}
                                  for f in recent])
