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
    "ConnectError",
    "ConnectionRefused",
    "TLSFileError",
    "OperationTimeout",
    "StreamLimitReached",
    "StreamClosed",
    "StreamRefused",
    "PublishFailed",
    "SubscribeFailed",
    "OfflineQueueFull",
    "PathDead",
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


class ConnectError(MQTTQUICError):
    """The connection could not be established (timeout, TLS, network)."""


class TLSFileError(ConnectError):
    """A TLS file of the config (``ca_file``, ``certfile``, ``keyfile``, or ``ca_data``)
    cannot be used: missing, unreadable, not PEM, a key that does not belong to its
    certificate, or a wrong ``key_password``. Raised before any packet is sent.

    ``setting`` names the config field, ``path`` the file (None for ``ca_data``)."""

    def __init__(self, setting: str, path: str | None, cause: str) -> None:
        self.setting = setting
        self.path = path
        self.cause = cause
        super().__init__(f"{setting} {path}: {cause}" if path else f"{setting}: {cause}")


class ConnectionRefused(ConnectError):
    """The broker answered CONNECT with a failure reason code."""

    def __init__(self, reason_code: int, reason_name: str, message: str = "") -> None:
        self.reason_code = reason_code
        self.reason_name = reason_name
        text = f"connection refused: {reason_name} (0x{reason_code:02X})"
        if message:
            text = f"{text}: {message}"
        super().__init__(text)


class OperationTimeout(MQTTQUICError, TimeoutError):
    """A publish, subscribe or unsubscribe was not completed within its deadline.

    Also a ``TimeoutError``, so ``except TimeoutError`` catches it as it catches
    ``asyncio.timeout``'s. The deadline counts from the call, time spent waiting for
    a lost connection to come back included."""


class StreamLimitReached(OperationTimeout):
    """The QUIC server granted no stream credit for a new data stream in time."""


class StreamClosed(ConnectError):
    """A QUIC data stream ended under a request while its connection went on: the
    server finished or reset it (``error_code``: the reset's application error code,
    None for a finish), or what arrived on it was malformed. Whether the request is at
    fault is the policy's question (``policy.PublishAttempts``)."""

    def __init__(self, message: str, error_code: int | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code


class StreamRefused(StreamClosed):
    """The server refused a QUIC data stream for good (too many streams): no retry."""


class PublishFailed(MQTTQUICError):
    """A publish that will not succeed: the broker answered it with a failure reason
    code (MQTT 5), it is larger than the broker accepts, or every attempt to send it
    ended the connection (or its stream).

    ``reason_code`` is the MQTT 5 reason code where there is one (0x95 for a packet
    too large), else None."""

    def __init__(self, topic: str, reason_code: int | None, reason: str) -> None:
        self.topic = topic
        self.reason_code = reason_code
        self.reason = reason
        code = f" (0x{reason_code:02X})" if reason_code is not None else ""
        super().__init__(f"publish to {topic!r} failed: {reason}{code}")


class SubscribeFailed(MQTTQUICError):
    """A subscribe the broker does not support (its MQTT 5 CONNACK said so: wildcards,
    shared subscriptions, subscription identifiers), refused before it is sent.

    ``reason_code`` is the MQTT 5 reason code the broker would answer with."""

    def __init__(self, topic_filter: str, reason_code: int, reason: str) -> None:
        self.topic_filter = topic_filter
        self.reason_code = reason_code
        self.reason = reason
        super().__init__(f"subscribe to {topic_filter!r} refused: {reason} (0x{reason_code:02X})")


class PathDead(ConnectError):
    """The QUIC connection's path stopped carrying our packets (nothing acknowledged)."""


class OfflineQueueFull(MQTTQUICError):
    """Too many publishes are already waiting for the connection to come back."""
