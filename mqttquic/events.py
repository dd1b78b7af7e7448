"""Events that the sans-I/O session reports, as small frozen classes (as h11's and
aioquic's are): the transport reads them from ``Session.events()``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "Event", "Connected", "ConnectFailed", "MessageReceived", "PublishCompleted",
    "SubscribeCompleted", "UnsubscribeCompleted", "PongReceived", "ServerDisconnected",
    "KeepaliveTimeout", "ProtocolViolation", "ChannelFailed",
]


class Event:
    """The base of every session event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """The broker accepted CONNECT."""

    session_present: bool
    properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ConnectFailed(Event):
    """The broker refused CONNECT; the connection is over."""

    reason_code: int
    reason_name: str
    properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    """An application message arrived (duplicate QoS 2 deliveries are not reported)."""

    packet: Any
    channel: int


@dataclass(frozen=True, slots=True)
class PublishCompleted(Event):
    """A QoS 1 or 2 publish finished: PUBACK, PUBCOMP, or a PUBREC with a failure code."""

    channel: int
    packet_id: int
    reason_code: int


@dataclass(frozen=True, slots=True)
class PublishReceived(Event):
    """PUBREC for a QoS 2 publish sent with ``hold_release``: its PUBREL waits for
    ``Session.release()``."""

    channel: int
    packet_id: int


@dataclass(frozen=True, slots=True)
class SubscribeCompleted(Event):
    """A SUBACK: the granted QoS or reason code of each filter, in order."""

    channel: int
    packet_id: int
    reason_codes: list[int]
    properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UnsubscribeCompleted(SubscribeCompleted):
    """An UNSUBACK (MQTT 3.1.1's carries no reason codes)."""


@dataclass(frozen=True, slots=True)
class PongReceived(Event):
    """A PINGRESP: the broker still serves the session."""


@dataclass(frozen=True, slots=True)
class ServerDisconnected(Event):
    """The broker sent DISCONNECT (MQTT 5)."""

    reason_code: int
    reason_name: str
    properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class KeepaliveTimeout(Event):
    """No PINGRESP came in time: the connection is dead."""

    waited: float


@dataclass(frozen=True, slots=True)
class ProtocolViolation(Event):
    """The broker sent something malformed or not allowed; the connection must close."""

    reason: str


@dataclass(frozen=True, slots=True)
class ChannelFailed(Event):
    """A data channel (QUIC data stream) ended by the broker: a DISCONNECT or a malformed
    packet on it. The channel is forgotten; the connection and its other channels go on.
    ``unfinished``: the QoS 1/2 publishes it was still carrying."""

    channel: int
    reason: str
    unfinished: list[Any]
