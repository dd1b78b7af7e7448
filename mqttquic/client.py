"""The asyncio MQTT client: ``async with Client(config) as client:``.

This module is the user-facing API: connect, publish (with its deadline and its bound
on attempts), subscribe, messages, statistics. Keeping a connection (QUIC first,
TCP+TLS raced after a head start, reconnects, the move back to QUIC) is the
connector's job (``connector.py``), and what to do at each turn is decided by the
sans-I/O policy (``policy.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._aio import within
from .changes import ConnectionChange, UserCallbacks
from .codec import Will, encode
from .config import ConnectionConfig, TransportType
from .connector import Connector
from .errors import (
    ConnectError,
    MalformedPacket,
)
from .limits import ServerLimits
from .message import Message, payload_bytes
from .message_queue import MessageQueue, Messages
from .status import ConnectionStatus
from .subscriptions import SubscribeArg, Subscriptions
from .transports.base import Transport, connect_packet

if TYPE_CHECKING:
    from .forwarding import StoreAndForward

__all__ = ["Client"]

_logger = logging.getLogger("mqttquic.client")




class Client:
    """MQTT over QUIC with TCP+TLS fallback (the reference design's
    ``MQTTQUICAdvancedClient``: its method names are kept).

    >>> async with Client("broker.example", device_id="dev1") as client:
    ...     await client.subscribe("device/dev1/commands/#", qos=1)
    ...     await client.publish("device/dev1/telemetry/temp", {"c": 21.5}, qos=1)
    ...     async for message in client.messages:
    ...         print(message.topic, message.payload)

    ``config`` is a :class:`ConnectionConfig`, or a host name (``port``: its QUIC port)
    with the other settings as keywords. ``on_message(message)``, ``on_connect(change)``
    and ``on_disconnect(change)`` may be plain functions or coroutine functions;
    ``logger`` takes the client's log (connects, fallbacks, reconnects) instead of
    ``mqttquic.client``.
    """

    def __init__(self, config: ConnectionConfig | str | None = None, port: int | None = None, *,
                 on_message: Callable[[Message], Any] | None = None,
                 on_connect: Callable[[ConnectionChange], Any] | None = None,
                 on_disconnect: Callable[[ConnectionChange], Any] | None = None,
                 will: Will | None = None, connect_properties: dict[str, Any] | None = None,
                 max_queued_messages: int = 10_000, logger: logging.Logger | None = None,
                 **settings: Any) -> None:
        self.config = _config_from(config, port, settings)
        _check_arguments(on_message=on_message, on_connect=on_connect,
                         on_disconnect=on_disconnect, will=will)
        self.on_message = on_message
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        # The Will and CONNECT properties: these arguments, else the config's.
        self.will = will if will is not None else self.config.will
        self.connect_properties = (connect_properties if connect_properties is not None
                                   else self.config.connect_properties_dict())
        self.logger = logger or _logger
        # A bad Will or CONNECT property fails here, the same on both transports, not
        # inside a race where each transport would report it its own way.
        encode(connect_packet(self.config, self.will, self.connect_properties),
               self.config.protocol_version)
        # Messages for client.messages (not kept when only on_message reads them).
        self._queue = MessageQueue(max_queued_messages, self.logger)
        self._callbacks = UserCallbacks(self.logger)
        self._status = ConnectionStatus(self.config, self._callbacks,
                                        on_connect=lambda: self.on_connect,
                                        on_disconnect=lambda: self.on_disconnect)
        self.stats = self._status.stats
        self.connect_history = self._status.history  # one entry per connect
        self._connector = Connector(
            self.config, deliver=self._deliver, on_connected=self._status.connected,
            on_lost=self._status.lost, on_failed=self._failed,
            subscriptions=lambda: list(self._subscriptions.granted.values()),
            will=lambda: self.will, connect_properties=lambda: self.connect_properties,
            logger=self.logger)
        # Store and forward (config.outbox): the outbox file is opened here, and refused
        # here when it is not ours.
        self._forward: StoreAndForward | None = None
        if self.config.outbox:
            from .forwarding import StoreAndForward  # sqlite3 only for those who use it

            self._forward = StoreAndForward(self.config, self._connector.publish,
                                            self._status.feed, self.logger)
        self._subscriptions = Subscriptions(self.config, self._connector, self.logger,
                                            self._forward.outbox if self._forward else None)

    # --- connecting -------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    async def connect(self, early_messages: Iterable[Mapping[str, Any]] = ()) -> bool:
        """Connect: QUIC first, TCP+TLS when QUIC is slow or blocked (``config.transport``).

        ``early_messages`` (QoS 0 only, ``{"topic", "payload", "retain", "properties"}``)
        are sent right behind CONNECT: with a stored ticket they ride in the 0-RTT first
        flight, so a device that wakes to send one reading needs one round trip. 0-RTT
        data can be replayed by an attacker, which is why only QoS 0 (and only when you
        ask) goes there. If TCP+TLS wins the race they are published after CONNACK.

        Returns True. Raises ConnectionRefused when the broker refuses (no retry: the
        same credentials would be refused again) and ConnectError naming each
        transport's cause when none connects."""
        early = [_early_message(item) for item in early_messages]
        if self.is_connected:
            for topic, payload, retain, properties in early:
                await self.publish(topic, payload, 0, retain, properties)
            return True
        self._connector.dialer.early = early
        try:
            transport = await self._connect_with(None)
        finally:
            self._connector.dialer.early = []
        if early and transport.transport_type is not TransportType.QUIC:
            for topic, payload, retain, properties in early:
                await transport.publish(topic, payload, 0, retain, properties)
        self._status.activity(sent=len(early))
        return True

    async def connect_quic(self) -> bool:
        """MQTT over QUIC only (UDP ``quic_port``, ALPN "mqtt"). Returns True, as
        ``connect()`` does; does nothing when the client is already connected."""
        if not self.is_connected:
            await self._connect_with("quic")
        return True

    async def connect_tcp_fallback(self) -> bool:
        """MQTT over TCP+TLS only, through paho-mqtt (``tcp_port``). Returns True;
        does nothing when the client is already connected."""
        if not self.is_connected:
            await self._connect_with("tcp")
        return True

    def start(self) -> None:
        """Connect in the background, for a device that may start offline: returns at
        once; attempts follow (the first at once, then with the reconnect backoff) until
        one connects, and the connection is kept as after ``connect()``.

        Meanwhile ``publish()`` waits for the connection (within its timeout),
        ``enqueue()`` stores, ``subscribe()`` waits; ``wait_connected()``,
        ``on_connect`` and ``connection_changes()`` tell when it is up. A final refusal
        (bad credentials) fails the client as a reconnect's would; ``disconnect()``
        stops the attempts. ``connect()`` meanwhile waits for this connection."""
        self._reopen()
        self._connector.start()

    def _reopen(self) -> None:
        """A connect the user asked for: the client is open again."""
        if self._connector.policy.is_closed:
            # A client connected again after disconnect(): new messages() iterators must not
            # end on the old end-of-stream marker.
            self._queue.reopen()
        if self._forward is not None:
            self._forward.start()  # sends what is stored, whenever connected

    async def _connect_with(self, transport: str | None) -> Transport:
        self._reopen()
        started = self._connector.connecting_in_background  # restores them itself
        connected = await self._connector.connect(transport)
        if self._forward is not None and not started:  # a rebooted device's stored subscriptions
            await self._connector.restore_subscriptions(connected)
        return connected

    def _failed(self, exc: BaseException) -> None:
        """No more connections: message iterators raise ``exc``."""
        self._queue.fail(exc)
        self._status.failed(exc)

    async def disconnect(self, reason_code: int = 0,
                         properties: dict[str, Any] | None = None) -> None:
        """Send DISCONNECT and close; stop reconnecting. Message iterators end.

        MQTT 5: ``reason_code`` 0x04 (*disconnect with Will message*) asks the broker to
        publish the Will all the same; ``properties`` such as ``session_expiry_interval``
        or ``reason_string``. MQTT 3.1.1's DISCONNECT carries neither."""
        if (reason_code or properties) and self.config.protocol_version != 5:
            raise MalformedPacket("an MQTT 3.1.1 DISCONNECT has no reason code or properties")
        was_open = not self._connector.policy.is_closed and self._connector.policy.ever_connected
        if self._forward is not None:
            await self._forward.stop()  # what it was sending stays stored
        await self._connector.close(reason_code, properties)
        self._queue.close()
        self._status.closed(was_open)

    async def migrate(self, local_host: str | None = None, timeout: float = 3.0) -> None:
        """Move the QUIC connection to a new local UDP socket (a new port; ``local_host``:
        a new address too), for an app that knows its network changed.

        The connection, its MQTT session, subscriptions and publishes in flight go on;
        nothing is reconnected. A fresh connection ID goes with the new path, so the two
        cannot be linked by an observer. ConnectError when the new path does not answer
        within ``timeout`` (the connection stays on the old one) or when the connection is
        TCP+TLS, which cannot move (it reconnects by itself when its network is gone).
        A NAT that changes the client's address or port needs no call: QUIC follows it."""
        transport = self._connector.transport
        if transport is None or not transport.is_connected:
            raise ConnectError("not connected")
        await transport.migrate(local_host, timeout)
        self.stats.migrations += 1

    @property
    def session_present(self) -> bool:
        """Whether the broker had kept a session for this client id (the last CONNACK)."""
        transport = self._connector.transport
        return transport.session_present if transport is not None else False

    @property
    def server_limits(self) -> ServerLimits:
        """What the broker's last CONNACK allows (MQTT 5: Maximum QoS, Retain Available,
        Topic Alias Maximum, Server Keep Alive, ...; MQTT's defaults for 3.1.1). The
        client never sends beyond it: such a publish or subscribe raises at once."""
        transport = self._connector.transport
        return transport.limits if transport is not None else ServerLimits()

    def connection_changes(self) -> AsyncIterator[ConnectionChange]:
        """Each change of the connection from now on, as :class:`ConnectionChange`::

            async for change in client.connection_changes():
                if change.state == "connected" and change.fallback: ..."""
        return self._status.feed.changes()

    async def wait_connected(self, timeout: float | None = None) -> ConnectionChange:
        """Wait until the client is connected (now, or after a reconnect); the change
        that connected it. OperationTimeout after ``timeout`` seconds (default
        ``config.operation_timeout``); raises the reason when connecting failed for good."""
        return await self._status.wait_connected(
            self.config.operation_timeout if timeout is None else timeout)

    @property
    def is_connected(self) -> bool:
        return self._connector.is_connected

    # --- publishing -------------------------------------------------------------------------------

    async def publish(self, topic: str, payload: Any = b"", qos: int = 0, retain: bool = False,
                      properties: dict[str, Any] | None = None, *,
                      timeout: float | None = None) -> None:
        """Publish; returns when sent (QoS 0) or acknowledged (QoS 1 and 2).

        ``payload`` may be bytes, str (UTF-8) or a JSON-serialisable dict/list. While the
        client reconnects, the publish waits; a QoS 1/2 publish cut off by a lost
        connection is sent again on the next one (at least once). With an outbox
        (``config.outbox``) a QoS 1/2 message is stored first, and stays stored if it is
        not acknowledged in time: the exception says so, and it is delivered later.

        OperationTimeout (a TimeoutError) when not done within ``timeout`` seconds
        (``config.operation_timeout``) from the call, offline time included;
        PublishFailed when the broker refuses it, when its CONNACK does not allow it
        (raised before anything is sent), or when it cut off ``max_publish_attempts``
        connections (or streams) in a row: a publish the broker will not take."""
        data = payload_bytes(payload)
        seconds = self.config.operation_timeout if timeout is None else timeout
        if self._forward is not None and qos:  # stored first, kept if not acknowledged
            await self._forward.publish(topic, data, qos, retain, properties, seconds)
        else:
            await within(self._connector.publish(topic, data, qos, retain, properties), seconds,
                         f"publish to {topic!r} (QoS {qos})")
        self._status.activity(sent=1)

    async def enqueue(self, topic: str, payload: Any = b"", qos: int = 1, retain: bool = False,
                      properties: dict[str, Any] | None = None) -> None:
        """Store a QoS 1/2 message in the outbox (``config.outbox``); delivered in the
        background, after restarts too. OutboxFull when the outbox is full."""
        if self._forward is None:
            raise ValueError("enqueue() needs a durable outbox: ConnectionConfig(outbox=...)")
        await self._forward.store(topic, payload_bytes(payload), qos, retain, properties)
        self._forward.start()

    async def publish_parallel(self, messages: Iterable[Mapping[str, Any]]) -> dict[str, bool]:
        """Publish concurrently: on QUIC each topic on its own stream (no head-of-line
        blocking); on TCP pipelined on the one connection, all acks awaited together.

        ``messages``: ``{"topic": ..., "payload": ..., "qos": 0, "retain": False}`` each.
        Returns ``{topic: True}`` where the publish completed, False where it failed."""
        return await _publish_each(self, list(messages))

    # --- subscribing --------------------------------------------------------------------------

    async def subscribe(self, topic: SubscribeArg, qos: int = 0,
                        properties: dict[str, Any] | None = None, *,
                        timeout: float | None = None) -> list[int]:
        """Subscribe to a filter or a list of them (str, (filter, qos) or Subscription).

        Returns the granted QoS (or MQTT 5 reason code) of each, in order. Granted
        subscriptions are restored after a reconnect whose broker did not keep the session.
        OperationTimeout when there is no SUBACK within ``timeout`` (default
        ``config.operation_timeout``); SubscribeFailed, before anything is sent, for what
        the broker's CONNACK says it does not support (wildcards, shared subscriptions,
        subscription identifiers)."""
        return await self._subscriptions.subscribe(topic, qos, properties, timeout)

    async def unsubscribe(self, topic: str | Iterable[str],
                          properties: dict[str, Any] | None = None, *,
                          timeout: float | None = None) -> list[int]:
        """Unsubscribe; the reason codes of an MQTT 5 UNSUBACK (none for 3.1.1).
        OperationTimeout when there is no UNSUBACK within ``timeout``."""
        return await self._subscriptions.unsubscribe(topic, properties, timeout)

    @property
    def messages(self) -> Messages:
        """Received messages, in arrival order, from the moment of connecting:
        ``async for message in client.messages:`` (aiomqtt's spelling) or
        ``client.messages()`` (the reference design's).

        Reconnects do not interrupt it. Ends after disconnect(); raises when the
        connection is lost for good. Iterators share one queue."""
        return Messages(self._queue)

    @property
    def messages_dropped(self) -> int:
        """QoS 0 messages dropped because the queue of ``client.messages`` was full."""
        return self._queue.dropped

    def _deliver(self, message: Message) -> None:
        self._status.activity(received=1)
        if self._queue.iterating or self.on_message is None:
            self._queue.put(message)
        else:
            message._acknowledge()  # on_message alone takes it at once
        self._callbacks.call(self.on_message, message)

    # --- statistics ---------------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """The reference design's statistics (``ConnectionStats``) plus bytes, RTT, open
        streams and dropped messages, as a dict."""
        stats = self._status.snapshot(self._connector.transport, self._queue.dropped)
        return stats if self._forward is None else {**stats, **self._forward.stats()}

    @property
    def transport_type(self) -> TransportType | None:
        transport = self._connector.transport
        return transport.transport_type if transport else None


async def _publish_each(client: Client, items: list[Mapping[str, Any]]) -> dict[str, bool]:
    """``publish_parallel``: every item at once; a failure is logged and reported."""

    async def one(item: Mapping[str, Any]) -> bool:
        try:
            await client.publish(item["topic"], item.get("payload", b""), item.get("qos", 0),
                                 item.get("retain", False), item.get("properties"))
            return True
        except Exception as exc:  # noqa: BLE001 - reported per topic, and logged
            client.logger.warning("parallel publish to %r failed: %s", item.get("topic"), exc)
            return False

    outcomes = await asyncio.gather(*(one(item) for item in items))
    return {item["topic"]: ok for item, ok in zip(items, outcomes)}


def _early_message(item: Mapping[str, Any]) -> tuple[str, bytes, bool, dict[str, Any] | None]:
    if item.get("qos", 0) != 0:
        raise ValueError("only QoS 0 messages may ride in 0-RTT data (it can be replayed)")
    return (item["topic"], payload_bytes(item.get("payload", b"")), bool(item.get("retain")),
            item.get("properties"))


def _check_arguments(*, will: Any, **callbacks: Any) -> None:
    """A clear TypeError now for a callback that is not callable or a Will that is not one."""
    for name, callback in callbacks.items():
        if callback is not None and not callable(callback):
            raise TypeError(f"{name} must be callable, not {type(callback).__name__}")
    if will is not None and not isinstance(will, Will):
        raise TypeError(f"will must be a Will, not {type(will).__name__}")


def _config_from(config: ConnectionConfig | str | None, port: int | None,
                 settings: dict[str, Any]) -> ConnectionConfig:
    """``Client()``'s first arguments as a ConnectionConfig, or a clear TypeError now."""
    if isinstance(config, ConnectionConfig):
        if settings or port is not None:
            raise TypeError("pass either a ConnectionConfig or a host and keyword settings,"
                            " not both")
        return config
    if isinstance(config, str):
        settings = {"host": config, **settings}
    elif config is not None:
        raise TypeError("Client() takes a ConnectionConfig or a host name, not"
                        f" {type(config).__name__}")
    if port is not None:
        if not isinstance(port, int) or isinstance(port, bool):
            raise TypeError(f"port must be an int, not {type(port).__name__}")
        settings["quic_port"] = port
    return ConnectionConfig(**settings)
