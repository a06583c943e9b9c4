"""Tests for secure_cp.transport: a real `websockets` CSMS on 127.0.0.1 with an ephemeral port.

No sleeps: every wait is on an event/queue with a timeout, so a failure shows up as a timeout, never as flakiness
from timing assumptions.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, basic_auth, serve
from websockets.frames import Frame, Opcode

from secure_cp.transport import Transport, TransportConfig, basic_auth_header, connection_url

TIMEOUT = 5.0


async def within(aw: Awaitable[Any], timeout: float = TIMEOUT) -> Any:
    return await asyncio.wait_for(aw, timeout)


class FakeCsms:
    """A WebSocket server that records what the charge point does: requests, pings, close codes."""

    def __init__(
        self,
        *,
        subprotocols: list[str] | None = None,
        select_subprotocol: Callable[..., Any] | None = None,
        process_request: Callable[..., Any] | None = None,
        handler: Callable[[ServerConnection], Awaitable[None]] | None = None,
    ) -> None:
        self.subprotocols = ["ocpp1.6"] if subprotocols is None else subprotocols
        self.select_subprotocol = select_subprotocol
        self.user_process_request = process_request
        self.user_handler = handler
        self.requests: list[Any] = []
        self.request_seen = asyncio.Condition()
        self.connections: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self.close_codes: asyncio.Queue[int | None] = asyncio.Queue()
        self.pings: list[bytes] = []
        self.ping_seen = asyncio.Event()
        self.server: Any = None

    async def __aenter__(self) -> FakeCsms:
        csms = self

        class RecordingConnection(ServerConnection):
            def process_event(self, event: Any) -> None:
                if isinstance(event, Frame) and event.opcode is Opcode.PING:
                    csms.pings.append(bytes(event.data))
                    csms.ping_seen.set()
                super().process_event(event)

        kwargs: dict[str, Any] = {}
        if self.select_subprotocol is not None:
            kwargs["select_subprotocol"] = self.select_subprotocol
        self.server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            subprotocols=self.subprotocols or None,
            process_request=self._process_request,
            create_connection=RecordingConnection,
            ping_interval=None,  # the server itself never pings: pings seen come from the client
            **kwargs,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    async def _process_request(self, connection: ServerConnection, request: Any) -> Any:
        async with self.request_seen:
            self.requests.append(request)
            self.request_seen.notify_all()
        if self.user_process_request is not None:
            result = self.user_process_request(connection, request)
            if asyncio.iscoroutine(result):
                result = await result
            return result
        return None

    async def wait_requests(self, n: int) -> None:
        async with self.request_seen:
            await within(self.request_seen.wait_for(lambda: len(self.requests) >= n))

    async def _handler(self, ws: ServerConnection) -> None:
        await self.connections.put(ws)
        try:
            if self.user_handler is not None:
                await self.user_handler(ws)
            await ws.wait_closed()
        finally:
            await self.close_codes.put(ws.close_code)


class Recorder:
    """Transport callbacks that land in queues the test can await."""

    def __init__(self) -> None:
        self.opens: asyncio.Queue[str] = asyncio.Queue()
        self.messages: asyncio.Queue[str] = asyncio.Queue()
        self.closes: asyncio.Queue[str] = asyncio.Queue()

    def transport(self, config: TransportConfig, **kwargs: Any) -> Transport:
        return Transport(
            config,
            on_open=self.opens.put_nowait,
            on_message=self.messages.put_nowait,
            on_close=self.closes.put_nowait,
            rng=random.Random(1),
            **kwargs,
        )


def cfg(url: str, **overrides: Any) -> TransportConfig:
    values: dict[str, Any] = dict(
        url=url, identity="CP1", subprotocols=["ocpp1.6"], reconnect_min=0.01, reconnect_max=0.05
    )
    values.update(overrides)
    return TransportConfig(**values)


class Running:
    """Runs Transport.run() in a task for the duration of a test block and always stops it."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Transport:
        self.task = asyncio.create_task(self.transport.run())
        return self.transport

    async def __aexit__(self, *exc: object) -> None:
        await within(self.transport.stop())
        assert self.task is not None
        await within(self.task)


# ----------------------------------------------------------------------------- connection URL (OCPP-J §3.1.1)


def test_connection_url_appends_percent_encoded_identity_ocppj_3_1_1() -> None:
    assert connection_url(cfg("ws://csms.example.com/ocppj", identity="RDAM 123")) == (
        "ws://csms.example.com/ocppj/RDAM%20123"
    )
    assert connection_url(cfg("ws://csms.example.com/ocpp/", identity="CP001")) == "ws://csms.example.com/ocpp/CP001"
    assert connection_url(cfg("ws://h:9/", identity="CP 1/ä")) == "ws://h:9/CP%201%2F%C3%A4"
    assert connection_url(cfg("ws://h:9", identity="a;b+c")) == "ws://h:9/a%3Bb%2Bc"


async def test_identity_is_percent_encoded_in_request_path_ocppj_3_1_1() -> None:
    rec = Recorder()
    async with FakeCsms() as csms:
        async with Running(rec.transport(cfg(csms.url + "/", identity="CP 1/ä"))):
            await within(rec.opens.get())
        assert csms.requests[0].path == "/ocpp/CP%201%2F%C3%A4"


# ----------------------------------------------------------------------------- subprotocols (OCPP-J §3.1.2, §3.2)


async def test_subprotocols_offered_in_order_and_server_choice_reported() -> None:
    rec = Recorder()
    async with FakeCsms(subprotocols=["ocpp1.6"]) as csms:
        transport = rec.transport(cfg(csms.url, subprotocols=["ocpp2.0.1", "ocpp1.6"]))
        assert transport.subprotocol is None and not transport.connected
        async with Running(transport):
            assert await within(rec.opens.get()) == "ocpp1.6"
            assert transport.connected
            assert transport.subprotocol == "ocpp1.6"
        assert csms.requests[0].headers["Sec-WebSocket-Protocol"] == "ocpp2.0.1, ocpp1.6"
        assert not transport.connected and transport.subprotocol is None


async def test_no_agreed_subprotocol_closes_and_is_not_reported_open_ocppj_3_2(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="secure_cp.transport")
    rec = Recorder()
    # subprotocols=[] -> the server does not negotiate and answers without Sec-WebSocket-Protocol.
    async with FakeCsms(subprotocols=[]) as csms:
        async with Running(rec.transport(cfg(csms.url, subprotocols=["ocpp2.0.1", "ocpp1.6"]))) as transport:
            assert await within(csms.close_codes.get()) == 1002  # we closed it: protocol error
            await csms.wait_requests(2)  # ... and it counted as a failed attempt: we retried
            assert not transport.connected
        assert rec.opens.empty() and rec.closes.empty()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "agreed no OCPP subprotocol" in errors[0].getMessage()
    assert "ocpp2.0.1, ocpp1.6" in errors[0].getMessage()


async def test_subprotocol_we_did_not_offer_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="secure_cp.transport")
    rec = Recorder()
    async with FakeCsms(select_subprotocol=lambda conn, offered: "ocpp9.9") as csms:
        async with Running(rec.transport(cfg(csms.url))):
            await csms.wait_requests(2)
        assert rec.opens.empty()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "did not offer" in errors[0] and "offered ocpp1.6" in errors[0]


# ----------------------------------------------------------------------------- HTTP Basic auth (A00.FR.202-205)


def test_basic_auth_header_matches_whitepaper_example() -> None:
    # OCPP-J 1.6 §6.2.2 example: identity "AL1000", key 0001020304050607FFFFFFCCCCCCCCCCCC. The spec prints a
    # garbled/truncated "QUwxxMDAwOgABAgMEBQYH////"; the correct full encoding starts with its intended prefix.
    header = basic_auth_header("AL1000", bytes.fromhex("0001020304050607FFFFFFCCCCCCCCCCCC"))
    assert header == "Basic QUwxMDAwOgABAgMEBQYH////zMzMzMzM"
    assert basic_auth_header("CP ä", b"pw") == "Basic Q1Agw6Q6cHc="  # username is UTF-8, not percent-encoded


async def test_basic_auth_header_with_raw_key_bytes_profile1() -> None:
    key = bytes(range(250, 256)) + bytes(range(0, 14))  # 20 raw bytes, including 0x00 and 0xff
    rec = Recorder()
    async with FakeCsms() as csms:
        async with Running(rec.transport(cfg(csms.url, security_profile=1, password=key))):
            await within(rec.opens.get())
        header = csms.requests[0].headers["Authorization"]
    assert header.startswith("Basic ")
    assert base64.b64decode(header[len("Basic ") :]) == b"CP1:" + key


async def test_basic_auth_header_with_hex_string_password_verified_by_server() -> None:
    hex_key = "00112233445566778899aabbccddeeff00112233"
    rec = Recorder()
    # The server checks the credentials with websockets' own Basic-auth implementation.
    check = basic_auth(realm="ocpp", credentials=("CP1", hex_key))
    async with FakeCsms(process_request=check) as csms:
        async with Running(rec.transport(cfg(csms.url, security_profile=1, password=hex_key.encode()))):
            await within(rec.opens.get())
        assert csms.requests[0].headers["Authorization"] == (
            "Basic Q1AxOjAwMTEyMjMzNDQ1NTY2Nzc4ODk5YWFiYmNjZGRlZWZmMDAxMTIyMzM="
        )


async def test_no_authorization_header_for_profile0() -> None:
    rec = Recorder()
    async with FakeCsms() as csms:
        async with Running(rec.transport(cfg(csms.url, security_profile=0, password=b"ignored-in-profile-0"))):
            await within(rec.opens.get())
        assert "Authorization" not in csms.requests[0].headers


async def test_401_is_logged_clearly_and_retried_without_leaking_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # includes websockets' handshake header dump
    password = b"s3cret-Authorization-Key"
    encoded = base64.b64encode(b"CP1:" + password).decode()
    rec = Recorder()

    def reject(connection: ServerConnection, request: Any) -> Any:
        return connection.respond(HTTPStatus.UNAUTHORIZED, "bad credentials\n")

    async with FakeCsms(process_request=reject) as csms:
        async with Running(rec.transport(cfg(csms.url, security_profile=1, password=password))):
            await csms.wait_requests(3)
        assert rec.opens.empty()
        assert csms.requests[0].headers["Authorization"] == "Basic " + encoded
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("secure_cp")]
    assert warnings and "CSMS rejected credentials (HTTP 401)" in warnings[0].getMessage()
    assert all(r.exc_info is None for r in warnings)  # no tracebacks for ordinary network errors
    # Everything the charge point side logged (the fake CSMS's own websockets.server log is not ours).
    ours = [r for r in caplog.records if not r.name.startswith("websockets.server")]
    text = "\n".join(r.getMessage() for r in ours)
    assert "> Authorization: <redacted>" in text  # the websockets client debug line was there, redacted
    assert encoded not in text and password.decode() not in text


async def test_404_unknown_identity_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="secure_cp.transport")
    rec = Recorder()

    def not_found(connection: ServerConnection, request: Any) -> Any:
        return connection.respond(HTTPStatus.NOT_FOUND, "unknown charge point\n")

    async with FakeCsms(process_request=not_found) as csms:
        async with Running(rec.transport(cfg(csms.url))):
            await csms.wait_requests(2)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("HTTP 404" in m and "'CP1'" in m for m in messages)


# ----------------------------------------------------------------------------- reconnecting (2.0.1 Part 4 §5.3)


async def test_reconnects_after_server_closes_connection() -> None:
    rec = Recorder()
    served = 0

    async def close_first(ws: ServerConnection) -> None:
        nonlocal served
        served += 1
        if served == 1:
            await ws.close(1001, "CSMS restarting")

    async with FakeCsms(handler=close_first) as csms:
        async with Running(rec.transport(cfg(csms.url))) as transport:
            assert await within(rec.opens.get()) == "ocpp1.6"
            reason = await within(rec.closes.get())
            assert "1001" in reason and "CSMS restarting" in reason
            assert await within(rec.opens.get()) == "ocpp1.6"
            assert transport.connected
        assert len(csms.requests) == 2
        assert "1000" in await within(rec.closes.get())  # stop() closed the second one normally


async def test_connection_refused_keeps_retrying_one_warning_per_attempt(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="secure_cp.transport")
    rec = Recorder()
    failures: list[Exception] = []
    async with FakeCsms() as probe:
        url = probe.url  # a port that is closed once the probe server is gone
    async with Running(rec.transport(cfg(url), on_connect_error=failures.append)):
        async with asyncio.timeout(TIMEOUT):
            while len(failures) < 4:
                await asyncio.sleep(0.005)  # polling an observable, not asserting on timing
    assert all(isinstance(f, OSError) for f in failures)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    # One line per failed attempt (the last failure may be cut short by stop() before it is logged).
    assert len(failures) - 1 <= len(warnings) <= len(failures)
    assert all(r.exc_info is None for r in warnings)
    assert "attempt 1" in warnings[0].getMessage() and "attempt 2" in warnings[1].getMessage()


async def test_reconnect_now_skips_backoff_and_uses_new_config() -> None:
    rec = Recorder()
    async with FakeCsms() as csms:
        # Back-off of at least 30 s: the test can only pass if reconnect_now() really skips it.
        transport = rec.transport(cfg(csms.url, reconnect_min=30.0, reconnect_max=60.0))
        async with Running(transport):
            await within(rec.opens.get())
            transport.reconfigure(cfg(csms.url, identity="CP2", reconnect_min=30.0, reconnect_max=60.0))
            assert csms.requests[-1].path == "/ocpp/CP1"  # reconfigure alone does not drop the link
            transport.reconnect_now()
            assert "reconnecting" in await within(rec.closes.get())
            await within(rec.opens.get())
            assert [r.path for r in csms.requests] == ["/ocpp/CP1", "/ocpp/CP2"]


async def test_reconnect_now_interrupts_backoff_wait() -> None:
    rec = Recorder()
    refused = True

    def maybe_reject(connection: ServerConnection, request: Any) -> Any:
        return connection.respond(HTTPStatus.UNAUTHORIZED, "no\n") if refused else None

    async with FakeCsms(process_request=maybe_reject) as csms:
        transport = rec.transport(
            cfg(csms.url, security_profile=1, password=b"k", reconnect_min=30.0, reconnect_max=60.0)
        )
        async with Running(transport):
            await csms.wait_requests(1)
            refused = False
            transport.reconnect_now()
            await within(rec.opens.get())
            assert len(csms.requests) == 2


async def test_stop_interrupts_backoff_wait_and_ends_run() -> None:
    rec = Recorder()

    def reject(connection: ServerConnection, request: Any) -> Any:
        return connection.respond(HTTPStatus.UNAUTHORIZED, "no\n")

    async with FakeCsms(process_request=reject) as csms:
        transport = rec.transport(
            cfg(csms.url, security_profile=1, password=b"k", reconnect_min=30.0, reconnect_max=60.0)
        )
        task = asyncio.create_task(transport.run())
        await csms.wait_requests(1)
        await within(transport.stop())
        await within(task)
        assert task.done() and task.exception() is None


class AttemptRecordingTransport(Transport):
    """Records the attempt numbers the run loop asks back-off delays for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attempts: list[int] = []

    def backoff_delay(self, attempt: int) -> float:
        self.attempts.append(attempt)
        return 0.001


async def test_backoff_attempt_counter_grows_on_failures_and_resets_after_open() -> None:
    rec = Recorder()
    requests = 0

    def fail_three_times(connection: ServerConnection, request: Any) -> Any:
        nonlocal requests
        requests += 1
        return connection.respond(HTTPStatus.UNAUTHORIZED, "no\n") if requests <= 3 else None

    async def close_at_once(ws: ServerConnection) -> None:
        await ws.close(1001, "bye")

    async with FakeCsms(process_request=fail_three_times, handler=close_at_once) as csms:
        requests = 0
        transport = AttemptRecordingTransport(
            cfg(csms.url, security_profile=1, password=b"k"),
            on_open=rec.opens.put_nowait,
            on_message=rec.messages.put_nowait,
            on_close=rec.closes.put_nowait,
        )
        async with Running(transport):
            await within(rec.opens.get())
            await within(rec.closes.get())
            await within(rec.opens.get())  # the next connection after the CSMS closed the first one
        # Three refusals (0, 1, 2), then an open that the CSMS closed: the counter starts again at 0.
        assert transport.attempts[:4] == [0, 1, 2, 0]


def test_backoff_delay_grows_with_jitter_and_is_capped() -> None:
    config = cfg("ws://127.0.0.1:1/ocpp", reconnect_min=1.0, reconnect_max=60.0)
    make = lambda seed: Transport(  # noqa: E731
        config, on_open=print, on_message=print, on_close=print, rng=random.Random(seed)
    )
    t = make(42)
    samples = {a: [t.backoff_delay(a) for _ in range(200)] for a in range(12)}
    for attempt, delays in samples.items():
        assert all(1.0 <= d <= 60.0 for d in delays), attempt  # never below the minimum, never above the cap
    assert max(samples[0]) <= 2.0  # first retry: minimum plus at most one step of jitter
    assert min(samples[3]) >= 8.0 and max(samples[3]) <= 16.0  # doubled three times
    assert min(samples[11]) >= 30.0  # capped region: between half the cap and the cap ...
    assert max(samples[11]) - min(samples[11]) > 10.0  # ... still spread out, not all at the cap
    assert len(set(samples[0])) > 100  # jitter, not a constant
    # Deterministic with a seeded rng.
    assert [make(7).backoff_delay(a) for a in range(8)] == [make(7).backoff_delay(a) for a in range(8)]


def test_backoff_delay_with_ocpp201_retry_parameters() -> None:
    # RetryBackOffWaitMinimum=2, RetryBackOffRandomRange=0, RetryBackOffRepeatTimes=3 -> 2, 4, 8, 16, 16, ...
    config = cfg(
        "ws://127.0.0.1:1/ocpp",
        reconnect_min=2.0,
        reconnect_max=1000.0,
        reconnect_random_range=0.0,
        reconnect_repeat_times=3,
    )
    t = Transport(config, on_open=print, on_message=print, on_close=print, rng=random.Random(0))
    assert [t.backoff_delay(a) for a in range(6)] == [2.0, 4.0, 8.0, 16.0, 16.0, 16.0]
    t.reconfigure(cfg("ws://127.0.0.1:1/ocpp", reconnect_min=2.0, reconnect_max=1000.0, reconnect_random_range=5.0))
    first = [t.backoff_delay(0) for _ in range(100)]
    assert all(2.0 <= d <= 7.0 for d in first) and max(first) - min(first) > 2.0
    with pytest.raises(ValueError):
        t.backoff_delay(-1)


# ----------------------------------------------------------------------------- messages


async def test_message_round_trip_and_binary_frames_ignored(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="secure_cp.transport")
    rec = Recorder()
    async with FakeCsms() as csms:
        async with Running(rec.transport(cfg(csms.url))) as transport:
            await within(rec.opens.get())
            server_ws = await within(csms.connections.get())
            call = '[2,"1","Reset",{"type":"Soft"}]'
            await server_ws.send(b"\x00binary")
            await server_ws.send(call)
            assert await within(rec.messages.get()) == call  # the binary frame never reached on_message
            assert rec.messages.empty()
            result = '[3,"1",{"status":"Accepted"}]'
            assert await transport.send(result) is True
            assert await within(server_ws.recv()) == result
    assert any("binary" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


async def test_send_returns_false_when_offline() -> None:
    rec = Recorder()
    async with FakeCsms() as csms:
        transport = rec.transport(cfg(csms.url))
        assert await transport.send("[2,\"x\",\"Heartbeat\",{}]") is False  # never connected
        async with Running(transport):
            await within(rec.opens.get())
            assert await transport.send("[2,\"y\",\"Heartbeat\",{}]") is True
        assert await transport.send("[2,\"z\",\"Heartbeat\",{}]") is False  # stopped


async def test_send_now_writes_in_order_without_yielding_and_refuses_when_it_cannot() -> None:
    """send_now() puts the frame on the wire before it returns (no task switch), in call order, through the
    connection's own framing (permessage-deflate negotiated here); False offline, and False while the socket's
    write buffer is over its high-water mark (the caller then queues for send(), which waits for the drain)."""
    rec = Recorder()
    async with FakeCsms() as csms:
        transport = rec.transport(cfg(csms.url))
        assert transport.send_now('[2,"x","Heartbeat",{}]') is False          # never connected
        async with Running(transport):
            await within(rec.opens.get())
            server_ws = await within(csms.connections.get())
            texts = [f'[2,"{i}","Heartbeat",{{}}]' for i in range(3)]
            assert [transport.send_now(t) for t in texts] == [True, True, True]
            assert [await within(server_ws.recv()) for _ in texts] == texts
            ws = transport._ws
            assert ws is not None
            ws.transport.set_write_buffer_limits(high=1)   # any unsent byte now pauses writing
            server_ws.transport.pause_reading()              # the CSMS stops reading: our kernel buffers fill
            big = '[2,"big","DataTransfer",{"vendorId":"v","data":"' + random.randbytes(300_000).hex() + '"}]'
            written = 0
            while transport.send_now(big):
                written += 1
                assert written < 100, "the write buffer never filled"
            assert ws.paused and transport.send_now(texts[0]) is False
            server_ws.transport.resume_reading()
            assert await within(transport.send(texts[1])) is True   # send() waits for the drain
            received = [await within(server_ws.recv(), 30) for _ in range(written + 1)]
            assert received == [big] * written + [texts[1]]
        assert transport.send_now(texts[2]) is False                           # stopped


async def test_callback_exceptions_do_not_break_the_transport(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="secure_cp.transport")
    got: asyncio.Queue[str] = asyncio.Queue()

    def bad_message(text: str) -> None:
        got.put_nowait(text)
        raise RuntimeError("bug in handler")

    opened = asyncio.Event()
    async with FakeCsms() as csms:
        transport = Transport(
            cfg(csms.url), on_open=lambda p: opened.set(), on_message=bad_message, on_close=lambda r: None
        )
        async with Running(transport):
            await within(opened.wait())
            server_ws = await within(csms.connections.get())
            await server_ws.send("one")
            await server_ws.send("two")
            assert [await within(got.get()), await within(got.get())] == ["one", "two"]
            assert transport.connected
    assert any("on_message callback raised" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------- stop / ping


async def opened(rec: Recorder, csms: FakeCsms) -> tuple[Transport, asyncio.Task]:
    """A transport to ``csms`` running in a task, once its connection is open."""
    transport = rec.transport(cfg(csms.url))
    task = asyncio.create_task(transport.run())
    await within(rec.opens.get())
    return transport, task


async def assert_closed_normally(rec: Recorder, csms: FakeCsms, transport: Transport) -> None:
    """The connection was closed with 1000 (normal closure), seen by both ends, and the transport knows it."""
    assert await within(csms.close_codes.get()) == 1000
    assert "1000" in await within(rec.closes.get())
    assert not transport.connected


async def test_stop_closes_with_1000_and_ends_run() -> None:
    rec = Recorder()
    async with FakeCsms() as csms:
        transport, task = await opened(rec, csms)
        await within(transport.stop())
        await within(task)
        await assert_closed_normally(rec, csms, transport)
        # A stopped transport stays stopped.
        await within(transport.run())
        assert len(csms.requests) == 1


async def test_stop_before_run_returns_and_run_then_returns_immediately() -> None:
    rec = Recorder()
    transport = rec.transport(cfg("ws://127.0.0.1:1/ocpp"))
    await within(transport.stop())
    await within(transport.run())


async def test_websocket_ping_sent_when_ping_interval_set_ocppj_5_3() -> None:
    rec = Recorder()
    async with FakeCsms() as csms:
        async with Running(rec.transport(cfg(csms.url, ping_interval=0.05))):
            await within(rec.opens.get())
            await within(csms.ping_seen.wait())
        assert csms.pings


async def test_no_ping_when_interval_zero() -> None:
    rec = Recorder()
    async with FakeCsms() as csms:
        async with Running(rec.transport(cfg(csms.url, ping_interval=0))) as transport:
            await within(rec.opens.get())
            server_ws = await within(csms.connections.get())
            # A round trip through the server proves the client had time to act; no ping frame came with it.
            await server_ws.send("hello")
            await within(rec.messages.get())
            assert await transport.send("back")
            assert await within(server_ws.recv()) == "back"
        assert csms.pings == []


# ----------------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"security_profile": 1}, "no password"),
        ({"security_profile": 1, "password": b""}, "no password"),
        ({"security_profile": 1, "password": b"k", "url": "wss://h/ocpp"}, "ws://"),
        ({"security_profile": 0, "url": "wss://h/ocpp"}, "ws://"),
        ({"security_profile": 2, "password": b"k", "url": "ws://h/ocpp"}, "wss://"),
        ({"security_profile": 2, "password": b"k", "url": "wss://h/ocpp"}, "ssl_context"),
        ({"security_profile": 3, "url": "wss://h/ocpp"}, "ssl_context"),
        ({"security_profile": 4}, "security_profile"),
        ({"security_profile": 1, "password": b"k", "identity": "CP:1"}, "':'"),
        ({"url": "http://h/ocpp"}, "ws://"),
        ({"url": "ws://user:pw@h/ocpp"}, "user info"),
        ({"subprotocols": []}, "subprotocol"),
        ({"identity": ""}, "identity"),
        ({"reconnect_min": 0}, "reconnect_min"),
        ({"reconnect_min": 5, "reconnect_max": 1}, "reconnect_max"),
        ({"ping_interval": -1}, "ping_interval"),
    ],
)
def test_invalid_configuration_raises_value_error(overrides: dict[str, Any], message: str) -> None:
    config = cfg(**{"url": "ws://h/ocpp", **overrides})
    with pytest.raises(ValueError, match=message):
        Transport(config, on_open=print, on_message=print, on_close=print)
    good = Transport(cfg("ws://h/ocpp"), on_open=print, on_message=print, on_close=print)
    with pytest.raises(ValueError, match=message):
        good.reconfigure(config)
    assert good.config.url == "ws://h/ocpp"  # a rejected reconfigure leaves the old config in place


async def test_cancelling_run_still_closes_the_connection_cleanly() -> None:
    rec = Recorder()
    async with FakeCsms() as csms:
        transport, task = await opened(rec, csms)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await within(task)
        await assert_closed_normally(rec, csms, transport)
