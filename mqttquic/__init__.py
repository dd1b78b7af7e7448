"""mqttquic: MQTT over QUIC for asyncio, with TCP+TLS as the fallback."""

from __future__ import annotations

from .errors import (
    ConnectError,
    ConnectionRefused,
    MalformedPacket,
    MQTTQUICError,
    PacketTooLarge,
    ProtocolError,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "MQTTQUICError",
    "MalformedPacket",
    "PacketTooLarge",
    "ProtocolError",
    "ConnectError",
    "ConnectionRefused",
]
