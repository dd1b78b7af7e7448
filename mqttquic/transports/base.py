"""The one small interface the client uses for every transport."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

from .._inflight import Carry, StoredFlow
from ..codec import Connect, Subscription, Will
from ..config import ConnectionConfig, TransportType
from ..errors import ConnectError
from ..limits import ServerLimits
from ..message import Message

__all__ = ["Transport", "connect_packet"]

_NO_LIMITS = ServerLimits()


def connect_packet(config: ConnectionConfig, will: Will | None = None,
                   properties: dict[str, Any] | None = None) -> Connect:
    """The CONNECT that ``config`` describes, with its Will and MQTT 5 properties."""
    password = config.password.encode("utf-8") if config.password is not None else None
    return Connect(config.effective_client_id, config.clean_start, config.keepalive,
                   config.username, password, will, properties, config.protocol_version)


class Transport(abc.ABC):
    """A connected MQTT session over one transport."""

    transport_type: TransportType

    def __init__(self) -> None:
        # A broker sends a persistent session's queued messages right behind CONNACK, and
        # the transport acknowledges them, before the client has attached its handlers:
        # they are held here until attach(), not dropped.
        self._held: list[Message] = []
        self._message_handler: Callable[[Message], None] = self._held.append
        self._lost_cause: BaseException | None = None
        self._lost_handler: Callable[[BaseException], None] | None = None
        self.connect_time = 0.0
        # Set while the client replaces this connection on purpose (the move back to
        # QUIC): its end is expected, and no reason for a warning.
        self.handing_over = False
        self.session_present = False
        self.session_resumed = False
        self.zero_rtt_used = False

    @property
    def limits(self) -> ServerLimits:
        """What the broker's CONNACK allows (MQTT's defaults for 3.1.1, or before it)."""
        return _NO_LIMITS

    def attach(self, on_message: Callable[[Message], None],
               on_lost: Callable[[BaseException], None]) -> None:
        """Hand messages to ``on_message`` (those held since CONNACK first) and report the
        end of the connection (without disconnect()) once to ``on_lost``, at once if it
        has already ended."""
        held, self._held = self._held, []
        self._message_handler = on_message
        self._lost_handler = on_lost
        for message in held:
            on_message(message)
        if self._lost_cause is not None:
            on_lost(self._lost_cause)

    def on_message(self, message: Message) -> None:
        """Transports call this for every application message they receive."""
        self._message_handler(message)

    def on_lost(self, exc: BaseException) -> None:
        """Transports call this once when the connection ends without disconnect()."""
        if self._lost_cause is None:
            self._lost_cause = exc
            if self._lost_handler is not None:
                self._lost_handler(exc)

    @abc.abstractmethod
    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                      properties: dict[str, Any] | None = None,
                      flow: StoredFlow | None = None) -> None:
        """Send; return when written (QoS 0) or acknowledged (QoS 1 and 2). ``flow``: a
        message from the outbox, with its packet id and what an earlier run did."""

    @abc.abstractmethod
    async def subscribe(self, subscriptions: list[Subscription],
                        properties: dict[str, Any] | None = None) -> list[int]:
        """Subscribe; return the granted QoS / reason code of each subscription."""

    @abc.abstractmethod
    async def unsubscribe(self, topic_filters: list[str],
                          properties: dict[str, Any] | None = None) -> list[int]:
        ...

    @abc.abstractmethod
    async def disconnect(self, reason_code: int = 0,
                         properties: dict[str, Any] | None = None) -> None:
        """Send DISCONNECT (``reason_code`` and ``properties``: MQTT 5) and close."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Close at once, without DISCONNECT."""

    async def migrate(self, local_host: str | None = None, timeout: float = 3.0) -> None:
        """Move the connection to a new local socket (QUIC). A transport that cannot
        raises ConnectError: it reconnects by itself when its network is gone."""
        name = "TCP+TLS" if self.transport_type is TransportType.TCP_TLS else "this"
        raise ConnectError(f"a {name} connection cannot migrate to a new address")

    def carry_over(self) -> Carry | None:
        """What a persistent session hands to its next connection when this one is lost
        (QUIC: its unfinished QoS 1/2 flows), or None."""
        return None

    async def confirm_alive(self, within: float) -> bool:
        """Whether the connection still carries the session: after one of its streams
        ended, a round trip on the control channel (QUIC) tells a stream that failed
        from a connection that is going away. False when it ends or does not answer
        ``within`` seconds."""
        return self.is_connected

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool: ...

    @property
    def accepts_requests(self) -> bool:
        """Whether publishes may be made now: connected, or (QUIC with early_publish)
        with CONNECT in flight and the CONNACK to come."""
        return self.is_connected

    @property
    @abc.abstractmethod
    def bytes_sent(self) -> int: ...

    @property
    @abc.abstractmethod
    def bytes_received(self) -> int: ...

    @property
    def rtt_ms(self) -> float | None:
        return None

    @property
    def streams_open(self) -> int:
        return 1 if self.is_connected else 0
