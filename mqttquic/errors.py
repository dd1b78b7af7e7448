"""Exceptions raised by mqttquic.

Local errors describe something this process did or received that breaks the
protocol (a malformed packet, a timeout); remote errors carry what the peer
said (a refused CONNACK with its reason code).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MQTTQUICError",
    "MalformedPacket",
    "PacketTooLarge",
    "ProtocolError",
    "ConnectError",
    "ConnectionRefused",
]


class MQTTQUICError(Exception):
    """Base class of every exception raised by mqttquic."""


class MalformedPacket(MQTTQUICError, ValueError):
    """Bytes that are not a valid MQTT packet, or a packet that cannot be encoded.

    The message names the problem and, where there is one, the rule of the
    specification it breaks, e.g. ``[MQTT-3.3.2-2]``.

    When raised by ``StreamDecoder.feed`` the packets that were decoded from
    the same call before the bad one are kept in :attr:`packets`, so nothing
    that arrived intact is lost.
    """

    packets: list[Any]

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.packets = []


class PacketTooLarge(MalformedPacket):
    """A packet announced a size above the configured maximum packet size."""


class ProtocolError(MQTTQUICError):
    """The peer sent a well-formed packet that is not allowed at this point."""


class ConnectError(MQTTQUICError):
    """The connection could not be established (timeout, TLS, network)."""


class ConnectionRefused(ConnectError):
    """The broker answered CONNECT with a failure reason code."""

    def __init__(self, reason_code: int, reason_name: str, message: str = "") -> None:
        self.reason_code = reason_code
        self.reason_name = reason_name
        text = f"connection refused: {reason_name} (0x{reason_code:02X})"
        if message:
            text = f"{text}: {message}"
        super().__init__(text)
