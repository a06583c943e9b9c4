"""WebSocket transport to the CSMS: subprotocols, security profiles, reconnect with back-off, ping."""

from secure_cp.transport.websocket import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Transport,
    TransportConfig,
    basic_auth_header,
    connection_url,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "Transport",
    "TransportConfig",
    "basic_auth_header",
    "connection_url",
]
