"""Events that the sans-I/O session reports, as small classes (like h11 and aioquic)."""

from __future__ import annotations

from typing import Any

__all__ = [
    "Event", "Connected", "ConnectFailed", "MessageReceived", "PublishCompleted",
    "SubscribeCompleted", "UnsubscribeCompleted", "PongReceived", "ServerDisconnected",
    "KeepaliveTimeout", "ProtocolViolation", "ChannelFailed",
]


class Event:
    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self._fields)

    __hash__ = None  # type: ignore[assignment]


class Connected(Event):
    """The broker accepted CONNECT."""

    __slots__ = _fields = ("session_present", "properties")

    def __init__(self, session_present: bool, properties: dict[str, Any]) -> None:
        self.session_present = session_present
        self.properties = properties


class ConnectFailed(Event):
    """The broker refused CONNECT; the connection is over."""

    __slots__ = _fields = ("reason_code", "reason_name", "properties")

    def __init__(self, reason_code: int, reason_name: str, properties: dict[str, Any]) -> None:
        self.reason_code = reason_code
        self.reason_name = reason_name
        self.properties = properties


class MessageReceived(Event):
    """An application message arrived (duplicate QoS 2 deliveries are not reported)."""

    __slots__ = _fields = ("packet", "channel")

    def __init__(self, packet: Any, channel: int) -> None:
        self.packet = packet
        self.channel = channel


class PublishCompleted(Event):
    """A QoS 1 or 2 publish finished: PUBACK, PUBCOMP, or a PUBREC with a failure code."""

    __slots__ = _fields = ("channel", "packet_id", "reason_code")

    def __init__(self, channel: int, packet_id: int, reason_code: int) -> None:
        self.channel = channel
        self.packet_id = packet_id
        self.reason_code = reason_code


class SubscribeCompleted(Event):
    __slots__ = _fields = ("channel", "packet_id", "reason_codes", "properties")

    def __init__(self, channel: int, packet_id: int, reason_codes: list[int],
                 properties: dict[str, Any]) -> None:
        self.channel = channel
        self.packet_id = packet_id
        self.reason_codes = reason_codes
        self.properties = properties


class UnsubscribeCompleted(SubscribeCompleted):
    __slots__ = ()


class PongReceived(Event):
    __slots__ = ()


class ServerDisconnected(Event):
    """The broker sent DISCONNECT (MQTT 5)."""

    __slots__ = _fields = ("reason_code", "reason_name", "properties")

    def __init__(self, reason_code: int, reason_name: str, properties: dict[str, Any]) -> None:
        self.reason_code = reason_code
        self.reason_name = reason_name
        self.properties = properties


class KeepaliveTimeout(Event):
    """No PINGRESP came in time: the connection is dead."""

    __slots__ = _fields = ("waited",)

    def __init__(self, waited: float) -> None:
        self.waited = waited


class ProtocolViolation(Event):
    """The broker sent something malformed or not allowed; the connection must close."""

    __slots__ = _fields = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class ChannelFailed(Event):
    """A data channel (QUIC data stream) ended by the broker: a DISCONNECT or a malformed
    packet on it. The channel is forgotten; the connection and its other channels go on.
    ``unfinished``: the QoS 1/2 publishes it was still carrying."""

    __slots__ = _fields = ("channel", "reason", "unfinished")

    def __init__(self, channel: int, reason: str, unfinished: list[Any]) -> None:
        self.channel = channel
        self.reason = reason
        self.unfinished = unfinished
