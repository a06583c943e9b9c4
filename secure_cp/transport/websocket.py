"""OCPP-J WebSocket client: the asyncio I/O edge between a charging station and its CSMS.

This module is deliberately thin. It opens the WebSocket (OCPP-J 1.6 §3 / 2.0.1 Part 4 §3), offers the
configured subprotocols, authenticates with HTTP Basic for security profiles 1 and 2 (1.6 security whitepaper
ed. 3 §2.3/§2.4, 2.0.1 Part 2 A00.FR.2xx/3xx), keeps the link alive with WebSocket pings
(WebSocketPingInterval, OCPP-J 1.6 §5.3), and reconnects with an increasing, randomised back-off
(2.0.1 Part 4 §5.3). Everything that understands OCPP messages lives elsewhere: this class hands text frames up
through ``on_message`` and sends the text it is given.

Security notes:
- The password and the ``Authorization`` header are never logged, by this module nor by ``websockets``, whose
  handshake debug log is passed through a redacting adapter.
- Proxy environment variables are ignored (``proxy=None``): a charger must not silently route its CSMS
  connection, and its credentials, through whatever ``HTTPS_PROXY`` happens to be set.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import ssl
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    NegotiationError,
)
from websockets.frames import Frame
from websockets.protocol import State

from ..security.tls import classify_failure

__all__ = [
    "Transport",
    "TransportConfig",
    "basic_auth_header",
    "connection_url",
]

_LOG = logging.getLogger("secure_cp.transport")

# OCPP-J messages are small JSON texts; 1 MiB leaves room for large local lists, certificate chains and
# 2.0.1 reports while bounding the memory a misbehaving CSMS can make us allocate.
DEFAULT_MAX_MESSAGE_SIZE = 2**20

# RFC 6455 §7.4.1 close codes used here.
_CLOSE_NORMAL = 1000
_CLOSE_PROTOCOL_ERROR = 1002


@dataclass
class TransportConfig:
    """Everything needed to reach the CSMS. Validated by :meth:`validate` (and by :class:`Transport`)."""

    url: str
    """CSMS OCPP-J endpoint URL, ``ws://`` or ``wss://``; the identity is appended (OCPP-J §3.1.1)."""
    identity: str
    """Charge point identity; percent-encoded into the URL path and used as the Basic-auth username."""
    subprotocols: list[str]
    """Offered in this order, most preferred first (OCPP-J §3.1.2), e.g. ``["ocpp2.0.1", "ocpp1.6"]``."""
    security_profile: int = 0
    """0 = none (development only), 1 = Basic auth over ws://, 2 = TLS + Basic auth, 3 = TLS client certs."""
    password: bytes | None = None
    """Basic-auth password bytes. 1.6: the caller decides raw AuthorizationKey bytes vs its hex string;
    2.0.1: the UTF-8 BasicAuthPassword (A00.FR.205)."""
    ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = None
    """TLS context for profiles 2/3 (wss://), or a function that makes it at each connection attempt (a failure there,
    e.g. a certificate file gone, is a failed attempt: logged, retried with back-off). Ignored for ws:// URLs."""
    ping_interval: float | None = None
    """WebSocketPingInterval in seconds; ``None`` or 0 disables pings."""
    ping_timeout: float | None = None
    """Seconds to wait for a pong before dropping the connection; default: the ping interval."""
    open_timeout: float = 10.0
    """Seconds allowed for TCP connect + TLS + opening handshake."""
    reconnect_min: float = 1.0
    """Back-off base: the first retry waits at least this long (2.0.1 RetryBackOffWaitMinimum)."""
    reconnect_max: float = 60.0
    """Back-off cap: no retry waits longer than this."""
    # --- additions beyond the required API -------------------------------------------------------------
    reconnect_random_range: float | None = None
    """Maximum random part added to each back-off step (2.0.1 RetryBackOffRandomRange).
    ``None``: proportional jitter (up to the step itself, at most half the cap)."""
    reconnect_repeat_times: int | None = None
    """Stop doubling after this many failed attempts (2.0.1 RetryBackOffRepeatTimes); ``None``: until the cap."""
    close_timeout: float = 10.0
    """Seconds to wait for the CSMS to answer our close frame before dropping TCP."""
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    """Largest incoming message accepted; a larger one closes the connection (1009)."""
    compression: bool = True
    """Offer permessage-deflate (RFC 7692). 2.0.1 Part 4 §3.3 recommends it on mobile links; OCPP-J 1.6 §5.1
    only allows compression that RFC 6455 allows, which this is. Turning it off helps when debugging."""
    connect_host: str | None = None
    """Open the TCP connection to this address instead of resolving the URL's host; TLS server name, host name
    check and HTTP Host stay the URL's (a CSMS name without DNS, e.g. in tests)."""

    def validate(self) -> None:
        """Raise ValueError with a clear message if this configuration cannot be used."""
        if self.security_profile not in (0, 1, 2, 3):
            raise ValueError(f"security_profile must be 0, 1, 2 or 3, not {self.security_profile!r}")
        if not self.identity:
            raise ValueError("identity must not be empty")
        if not self.subprotocols:
            raise ValueError("at least one OCPP subprotocol must be offered (e.g. 'ocpp1.6')")
        for proto in self.subprotocols:
            if not isinstance(proto, str) or not proto or any(c in proto for c in " ,\t\r\n"):
                raise ValueError(f"invalid subprotocol name {proto!r}")
        parts = urllib.parse.urlsplit(self.url)
        scheme = parts.scheme.lower()
        if scheme not in ("ws", "wss"):
            raise ValueError(f"CSMS url must start with ws:// or wss://, got {self.url!r}")
        if not parts.hostname:
            raise ValueError(f"CSMS url has no host: {self.url!r}")
        if parts.username is not None or parts.password is not None:
            # Credentials in the URL would end up in logs; they belong in `password`.
            raise ValueError("CSMS url must not contain user info; configure the password separately")
        if self.security_profile in (0, 1) and scheme != "ws":
            raise ValueError(
                f"security profile {self.security_profile} uses an unencrypted connection and needs a ws:// url"
            )
        if self.security_profile in (2, 3):
            if scheme != "wss":
                raise ValueError(f"security profile {self.security_profile} uses TLS and needs a wss:// url")
            if self.ssl_context is None:
                raise ValueError(f"security profile {self.security_profile} needs an ssl_context")
        if self.uses_basic_auth:
            if not self.password:
                raise ValueError(
                    f"security profile {self.security_profile} uses HTTP Basic authentication but no password "
                    "(AuthorizationKey / BasicAuthPassword) is configured"
                )
            if ":" in self.identity:
                # 2.0.1 Part 2 A00.FR.204 / Part 4 §3.1.1: the colon separates username and password.
                raise ValueError("identity must not contain ':' when HTTP Basic authentication is used")
        if self.ping_interval is not None and self.ping_interval < 0:
            raise ValueError("ping_interval must not be negative")
        if self.ping_timeout is not None and self.ping_timeout < 0:
            raise ValueError("ping_timeout must not be negative")
        if not self.open_timeout > 0:
            raise ValueError("open_timeout must be positive")
        if not self.close_timeout > 0:
            raise ValueError("close_timeout must be positive")
        if not self.reconnect_min > 0:
            # Zero would make a failing CSMS a busy loop.
            raise ValueError("reconnect_min must be positive")
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must not be smaller than reconnect_min")
        if self.reconnect_random_range is not None and self.reconnect_random_range < 0:
            raise ValueError("reconnect_random_range must not be negative")
        if self.reconnect_repeat_times is not None and self.reconnect_repeat_times < 0:
            raise ValueError("reconnect_repeat_times must not be negative")
        if self.max_message_size <= 0:
            raise ValueError("max_message_size must be positive")

    @property
    def uses_basic_auth(self) -> bool:
        """True for the profiles whose charge-point authentication is HTTP Basic (1 and 2).

        Profile 3 authenticates the charge point with its TLS client certificate instead
        (whitepaper §2.5, 2.0.1 A00 table 11), so no Authorization header is sent there.
        """
        return self.security_profile in (1, 2)


def connection_url(config: TransportConfig) -> str:
    """The connection URL: endpoint path + '/' + percent-encoded identity (OCPP-J 1.6 §3.1.1).

    Everything but RFC 3986 unreserved characters is encoded (``"RDAM 123"`` -> ``RDAM%20123``,
    ``"CP 1/ä"`` -> ``CP%201%2F%C3%A4``) so that '/', ';' or '+' in an identity cannot be mistaken for path
    structure, matrix parameters or a space by the CSMS.
    """
    parts = urllib.parse.urlsplit(config.url)
    encoded = urllib.parse.quote(config.identity, safe="", encoding="utf-8")
    path = parts.path.rstrip("/") + "/" + encoded
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def basic_auth_header(identity: str, password: bytes) -> str:
    """``Basic base64(identity ':' password)`` (RFC 7617; whitepaper A00.FR.202-205).

    The username is the identity as UTF-8, not percent-encoded; the password goes in as the given bytes.
    """
    token = base64.b64encode(identity.encode("utf-8") + b":" + password).decode("ascii")
    return "Basic " + token


class _RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Hands websockets' log calls through, with credentials removed.

    websockets logs every handshake header at DEBUG (``"> %s: %s"``); the Authorization header must not reach
    a log file (it is the charger's password in base64).
    """

    _SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if len(args) >= 2 and isinstance(args[0], str) and args[0].lower() in self._SECRET_HEADERS:
            args = (args[0], "<redacted>", *args[2:])
        # Frames: websockets shows the start and end of the text, which may hold a secret (a new AuthorizationKey, a
        # VPN key); the runtime logs every OCPP frame redacted, so only the frame's type and size are kept here.
        args = tuple(f"{a.opcode.name} [{len(a.data)} bytes]" if isinstance(a, Frame) else a for a in args)
        super().log(level, msg, *args, **kwargs)


@dataclass
class _Outcome:
    """What one connection attempt came to, for the run loop to log once and to pick the next delay."""

    opened: bool = False
    failure: str | None = None
    level: int = logging.WARNING
    close_reason: str | None = None


class Transport:
    """Keeps one OCPP-J WebSocket connection to the CSMS open, reconnecting with back-off.

    Callbacks are plain functions called from the event loop: ``on_open(subprotocol)`` once the CSMS agreed a
    subprotocol we offered, ``on_message(text)`` for each text frame, ``on_close(reason)`` when an open
    connection ends. A callback that raises is logged and does not break the transport.
    """

    def __init__(
        self,
        config: TransportConfig,
        *,
        on_open: Callable[[str], None],
        on_message: Callable[[str], None],
        on_close: Callable[[str], None],
        rng: random.Random | None = None,
        log: logging.Logger | None = None,
        on_connect_error: Callable[[Exception], None] | None = None,
    ) -> None:
        config.validate()
        self._config = config
        self._on_open = on_open
        self._on_message = on_message
        self._on_close = on_close
        self._on_connect_error = on_connect_error
        self._rng = rng if rng is not None else random.Random()
        self._log = log if log is not None else _LOG
        self._ws_log = _RedactingLogger(self._log.getChild("websockets"), {})

        self._ws: ClientConnection | None = None  # set only while open with an agreed subprotocol
        self._subprotocol: str | None = None
        self._writes_now = False   # see send_now()
        self._connecting = False
        self._stopping = False
        self._skip_wait = False
        self._wake = asyncio.Event()
        self._session_task: asyncio.Task[_Outcome] | None = None
        self._run_done: asyncio.Event | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ public API

    @property
    def connected(self) -> bool:
        """True while a connection with an agreed subprotocol is open."""
        ws = self._ws
        return ws is not None and ws.state is State.OPEN

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed on the current connection (``None`` when not connected)."""
        return self._subprotocol if self.connected else None

    @property
    def config(self) -> TransportConfig:
        return self._config

    def peer_certificate(self) -> bytes | None:
        """The CSMS's TLS server certificate (DER) on the open connection, None without TLS or connection."""
        ws = self._ws
        ssl_object = ws.transport.get_extra_info("ssl_object") if ws is not None else None
        return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None

    def reconfigure(self, config: TransportConfig) -> None:
        """Use ``config`` from the next connection attempt on; the current connection is left alone.

        Call :meth:`reconnect_now` as well to apply it at once (e.g. after a new AuthorizationKey).
        """
        config.validate()
        self._config = config

    def reconnect_now(self) -> None:
        """Drop the current connection or attempt (if any) and connect again without waiting for back-off."""
        self._skip_wait = True
        self._wake.set()
        ws = self._ws
        if ws is not None:
            self._spawn(ws.close(_CLOSE_NORMAL, "reconnecting"))
        elif self._connecting and self._session_task is not None:
            self._session_task.cancel()

    async def stop(self) -> None:
        """Close cleanly (1000) and make :meth:`run` return. Final: a stopped transport does not run again."""
        self._stopping = True
        self._wake.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(_CLOSE_NORMAL, "stopping")
        elif self._connecting and self._session_task is not None:
            self._session_task.cancel()
        if self._run_done is not None:
            await self._run_done.wait()

    async def send(self, text: str) -> bool:
        """Send one text frame. False (logged at DEBUG) when offline or when the send fails."""
        ws = self._ws
        if ws is None or ws.state is not State.OPEN:
            self._log.debug("send dropped: not connected")
            return False
        try:
            await ws.send(text)
        except ConnectionClosed as exc:
            self._log.debug("send failed: connection closed (%s)", exc)
            return False
        except Exception as exc:  # noqa: BLE001 - a failed send is reported, never raised
            self._log.debug("send failed: %s", _describe(exc))
            return False
        return True

    def send_now(self, text: str) -> bool:
        """Write one text frame at once, without yielding to the event loop. False when that cannot be done
        synchronously (not connected, closing, or the socket's write buffer is over its high-water mark): the
        caller then queues the text for :meth:`send`, which waits for the buffer to drain.

        The frame goes through the connection's own protocol object (framing, permessage-deflate) exactly as
        ``send`` would put it; only the wait is skipped, which ``send`` itself skips whenever the buffer is below
        the mark. secure-cp sends no fragmented messages, so none can be in progress here."""
        ws = self._ws
        if ws is None or not self._writes_now or ws.state is not State.OPEN or ws.paused or \
                ws.transport.is_closing():
            return False
        ws.protocol.send_text(text.encode())
        ws.send_data()
        return True

    def backoff_delay(self, attempt: int) -> float:
        """Seconds to wait before reconnect attempt ``attempt`` (0 = first retry after a loss or failure).

        2.0.1 Part 4 §5.3: the first retry waits the minimum plus a random part; every further failure doubles
        the step (at most ``reconnect_repeat_times`` times) and adds a fresh random part. The random part keeps
        thousands of chargers from hammering a restarted CSMS in lockstep. The step is kept below the cap by
        the random range, so chargers that all reached the cap still spread out instead of retrying together.
        Pure apart from drawing one number from the injected rng.
        """
        if attempt < 0:
            raise ValueError("attempt must not be negative")
        cfg = self._config
        doublings = attempt if cfg.reconnect_repeat_times is None else min(attempt, cfg.reconnect_repeat_times)
        step = cfg.reconnect_min * 2.0 ** min(doublings, 64)
        if cfg.reconnect_random_range is not None:
            spread = cfg.reconnect_random_range
        else:
            spread = min(step, cfg.reconnect_max / 2)
        ceiling = max(cfg.reconnect_min, cfg.reconnect_max - spread)
        delay = min(step, ceiling) + self._rng.uniform(0.0, spread)
        return min(delay, cfg.reconnect_max)

    async def run(self) -> None:
        """Connect, and reconnect after every loss or failure, until :meth:`stop`. Never raises for network errors."""
        if self._run_done is not None and not self._run_done.is_set():
            raise RuntimeError("Transport.run() is already running")
        self._run_done = asyncio.Event()
        attempt = 0
        try:
            while not self._stopping:
                self._wake.clear()
                self._skip_wait = False
                config = self._config
                outcome = await self._run_session(config)
                if self._stopping:
                    break
                if outcome.opened:
                    attempt = 0  # the link worked: the next loss starts the back-off afresh
                delay = 0.0 if self._skip_wait else self.backoff_delay(attempt)
                attempt += 1
                self._report(config, outcome, attempt, delay)
                if delay > 0:
                    # stop() and reconnect_now() set _wake, also when called during the attempt above.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=delay)
        finally:
            self._run_done.set()

    # ------------------------------------------------------------------ internals

    async def _run_session(self, config: TransportConfig) -> _Outcome:
        """Run one attempt as a task, so that stop()/reconnect_now() can cancel a pending handshake."""
        task = asyncio.ensure_future(self._session(config))
        self._session_task = task
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        finally:
            self._session_task = None
        if task.cancelled():
            return _Outcome(failure="connection attempt abandoned", level=logging.INFO)
        return task.result()

    async def _session(self, config: TransportConfig) -> _Outcome:
        """One connection attempt and, if it opens, the life of that connection."""
        url = connection_url(config)
        headers: dict[str, str] = {}
        if config.uses_basic_auth:
            assert config.password is not None  # checked by validate()
            headers["Authorization"] = basic_auth_header(config.identity, config.password)
        ping_interval = config.ping_interval or None
        ping_timeout: float | None = None
        if ping_interval is not None:
            ping_timeout = ping_interval if config.ping_timeout is None else (config.ping_timeout or None)
        kwargs: dict[str, Any] = {}
        if url.lower().startswith("wss:"):
            ctx = config.ssl_context
            if callable(ctx):
                try:
                    ctx = ctx()
                except Exception as exc:  # noqa: BLE001 - unusable TLS settings: no connection, the station runs on
                    self._notify_error(exc)
                    return _Outcome(failure=f"TLS settings for {url} unusable: {exc}", level=logging.ERROR)
            kwargs["ssl"] = ctx
        if config.connect_host:
            kwargs["host"] = config.connect_host

        self._connecting = True
        try:
            ws = await connect(
                url,
                subprotocols=list(config.subprotocols),  # type: ignore[arg-type]
                additional_headers=headers or None,
                proxy=None,
                compression="deflate" if config.compression else None,
                open_timeout=config.open_timeout,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                close_timeout=config.close_timeout,
                max_size=config.max_message_size,
                logger=self._ws_log,
                **kwargs,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every connect failure becomes a logged, retried attempt
            self._notify_error(exc)
            return self._classify_failure(config, url, exc)
        finally:
            self._connecting = False

        agreed = ws.subprotocol
        if agreed is None or agreed not in config.subprotocols or self._stopping:
            if self._stopping:
                reason = "stopping"
                outcome = _Outcome(failure="stopped during handshake", level=logging.DEBUG)
            else:
                # OCPP-J §3.2: a CSMS that agrees to none of our subprotocols answers without the header and
                # closes; we close at once ourselves rather than wait for it.
                reason = "no agreed OCPP subprotocol"
                outcome = _Outcome(
                    failure=(
                        f"CSMS at {url} agreed no OCPP subprotocol (offered {', '.join(config.subprotocols)})"
                    ),
                    level=logging.ERROR,
                )
            with contextlib.suppress(Exception):
                await ws.close(_CLOSE_NORMAL if self._stopping else _CLOSE_PROTOCOL_ERROR, reason)
            return outcome

        self._ws = ws
        self._subprotocol = agreed
        # send_now() needs these parts of websockets' asyncio connection (13.0 to 17.x); without them every frame
        # goes through send()
        self._writes_now = all(hasattr(ws, name) for name in ("protocol", "send_data", "paused", "transport"))
        self._log.info("connected to %s (subprotocol %s)", url, agreed)
        outcome = _Outcome(opened=True)
        try:
            self._call("on_open", self._on_open, agreed)
            outcome.close_reason = await self._receive_loop(ws)
        finally:
            self._ws = None
            self._subprotocol = None
            if ws.state is not State.CLOSED:
                # Cancelled (run() itself was cancelled): still leave the CSMS with a proper close.
                with contextlib.suppress(BaseException):
                    await ws.close(_CLOSE_NORMAL, "going offline")
            if outcome.close_reason is None:
                outcome.close_reason = _close_description(ws)
            self._call("on_close", self._on_close, outcome.close_reason)
        return outcome

    async def _receive_loop(self, ws: ClientConnection) -> str:
        """Deliver text frames until the connection closes; returns the close description."""
        while True:
            try:
                data = await ws.recv()
            except ConnectionClosed as exc:
                return str(exc)
            if isinstance(data, str):
                self._call("on_message", self._on_message, data)
            else:
                # OCPP-J messages are UTF-8 JSON text (1.6 §4.1.2); 2.0.1 Part 4 §4.2.3 allows dropping invalid
                # messages, so a binary frame is dropped rather than ending a working connection.
                self._log.warning("ignored a binary WebSocket frame (%d bytes) from the CSMS", len(data))

    def _classify_failure(self, config: TransportConfig, url: str, exc: Exception) -> _Outcome:
        if isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            if status == 401:
                return _Outcome(failure=f"CSMS rejected credentials (HTTP 401) for {config.identity!r} at {url}")
            if status == 404:
                # OCPP-J §3.2: 404 means the CSMS does not know this identity.
                return _Outcome(failure=f"CSMS does not know identity {config.identity!r} (HTTP 404) at {url}")
            return _Outcome(failure=f"CSMS refused the WebSocket upgrade at {url} (HTTP {status})")
        if isinstance(exc, NegotiationError) and "subprotocol" in str(exc):
            return _Outcome(
                failure=(
                    f"CSMS at {url} answered with a subprotocol we did not offer ({exc}); "
                    f"offered {', '.join(config.subprotocols)}"
                ),
                level=logging.ERROR,
            )
        tls = classify_failure(exc, "") if url.lower().startswith("wss:") else None
        if tls is not None:
            # A00.FR.310/414: OpenSSL aborted the handshake, so the connection is already terminated; the runtime
            # records the security event (on_connect_error). One ERROR line names the cause.
            return _Outcome(failure=f"TLS handshake with {url} failed, connection terminated: {tls.text}",
                            level=logging.ERROR)
        if isinstance(exc, (OSError, TimeoutError, InvalidHandshake, InvalidURI)):
            return _Outcome(failure=f"cannot connect to {url}: {_describe(exc)}")
        # Not a network error we know: keep the traceback (at DEBUG) so the cause can be found.
        self._log.debug("unexpected error while connecting to %s", url, exc_info=exc)
        return _Outcome(failure=f"cannot connect to {url}: {_describe(exc)}")

    def _report(self, config: TransportConfig, outcome: _Outcome, attempt: int, delay: float) -> None:
        """One log line per attempt: what happened and when the next try comes."""
        when = "now" if delay <= 0 else f"in {delay:.1f} s"
        if outcome.opened:
            self._log.info("connection to CSMS closed (%s); reconnecting %s", outcome.close_reason, when)
        else:
            self._log.log(outcome.level, "%s; attempt %d, retrying %s", outcome.failure, attempt, when)

    def _call(self, name: str, callback: Callable[[str], None], arg: str) -> None:
        try:
            callback(arg)
        except Exception:  # noqa: BLE001 - a bug in a callback must not take the link down
            self._log.exception("%s callback raised", name)

    def _notify_error(self, exc: Exception) -> None:
        if self._on_connect_error is None:
            return
        try:
            self._on_connect_error(exc)
        except Exception:  # noqa: BLE001
            self._log.exception("on_connect_error callback raised")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_swallow)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _close_description(ws: ClientConnection) -> str:
    code = ws.close_code
    if code is None:
        return "connection lost"
    reason = ws.close_reason or ""
    return f"code {code}" + (f" {reason}" if reason else "")


def _swallow(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # mark retrieved; a failed close of a dying connection is not news
