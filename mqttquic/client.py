"""The asyncio MQTT client: ``async with Client(config) as client:``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, Union

from .codec import Subscription, Will
from .config import ConnectionConfig, ConnectionStats, TransportType
from .errors import ConnectError
from .message import Message, payload_bytes
from .transports.base import Transport

__all__ = ["Client", "MQTTQUICAdvancedClient"]

logger = logging.getLogger("mqttquic.client")

SubscribeArg = Union[str, Subscription, tuple[str, int], Iterable[Union[str, Subscription, tuple[str, int]]]]

_CLOSED = object()  # ends messages() iterators


class Client:
    """MQTT over QUIC (aioquic), with the seed's names.

    >>> async with Client(ConnectionConfig(host="broker", device_id="dev1")) as client:
    ...     await client.subscribe("device/dev1/commands/#", qos=1)
    ...     await client.publish("device/dev1/telemetry/temp", {"c": 21.5}, qos=1)
    ...     async for message in client.messages():
    ...         print(message.topic, message.payload)
    """

    def __init__(self, config: ConnectionConfig | None = None, *,
                 on_message: Callable[[Message], Any] | None = None,
                 will: Will | None = None, connect_properties: dict[str, Any] | None = None,
                 max_queued_messages: int = 10_000, **settings: Any) -> None:
        if config is None:
            config = ConnectionConfig(**settings)
        elif settings:
            raise TypeError("pass either a ConnectionConfig or keyword settings, not both")
        self.config = config
        self.on_message = on_message
        self.will = will
        self.connect_properties = connect_properties
        self.stats = ConnectionStats()
        self._transport: Transport | None = None
        # Messages wait here from the moment of connecting until messages() takes them,
        # so none is lost between subscribe() and the start of iteration.
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self.max_queued_messages = max_queued_messages
        self.messages_dropped = 0
        self._connect_lock = asyncio.Lock()

    # --- connecting ------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    async def connect(self) -> bool:
        """Connect over QUIC. Returns True; raises ConnectionRefused or ConnectError."""
        await self.connect_quic()
        return True

    async def connect_quic(self) -> None:
        """MQTT over QUIC to ``host:quic_port`` (UDP, ALPN "mqtt")."""
        from .transports.quic import connect_quic  # aioquic is imported only when used

        async with self._connect_lock:
            if self._transport is not None and self._transport.is_connected:
                return
            transport = await connect_quic(self.config, will=self.will,
                                           properties=self.connect_properties)
            self._attach(transport)

    def _attach(self, transport: Transport) -> None:
        transport.on_message = self._deliver
        transport.on_lost = self._lost
        self._transport = transport
        stats = self.stats
        stats.transport = transport.transport_type
        stats.connected = True
        stats.connect_time = transport.connect_time
        stats.session_resumed = transport.session_resumed
        stats.zero_rtt_used = transport.zero_rtt_used
        stats.last_activity = time.time()

    def _lost(self, exc: BaseException) -> None:
        self.stats.connected = False
        logger.warning("connection lost: %s", exc)
        self._queue.put_nowait(exc)

    async def disconnect(self) -> None:
        """Send DISCONNECT and close. Iterators of messages() end."""
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.disconnect()
        self.stats.connected = False
        self._queue.put_nowait(_CLOSED)

    @property
    def is_connected(self) -> bool:
        return self._transport is not None and self._transport.is_connected

    def _require(self) -> Transport:
        if self._transport is None or not self._transport.is_connected:
            raise ConnectError("not connected")
        return self._transport

    # --- publishing -----------------------------------------------------------------------

    async def publish(self, topic: str, payload: Any = b"", qos: int = 0, retain: bool = False,
                      properties: dict[str, Any] | None = None) -> None:
        """Publish; returns when sent (QoS 0) or acknowledged (QoS 1 and 2).

        ``payload`` may be bytes, str (UTF-8) or a JSON-serialisable dict/list."""
        data = payload_bytes(payload)
        await self._require().publish(topic, data, qos, retain, properties)
        self.stats.messages_sent += 1
        self.stats.last_activity = time.time()

    async def publish_parallel(self, messages: Iterable[Mapping[str, Any]]) -> dict[str, bool]:
        """Publish concurrently, each topic on its own QUIC stream (no head-of-line blocking).

        ``messages``: ``{"topic": ..., "payload": ..., "qos": 0, "retain": False}`` each.
        Returns ``{topic: True}`` where the publish completed, False where it failed."""
        items = list(messages)

        async def one(item: Mapping[str, Any]) -> bool:
            try:
                await self.publish(item["topic"], item.get("payload", b""), item.get("qos", 0),
                                   item.get("retain", False), item.get("properties"))
                return True
            except Exception as exc:  # noqa: BLE001 - reported per topic, and logged
                logger.warning("parallel publish to %r failed: %s", item.get("topic"), exc)
                return False

        outcomes = await asyncio.gather(*(one(item) for item in items))
        return {item["topic"]: ok for item, ok in zip(items, outcomes)}

    # --- subscribing -----------------------------------------------------------------------

    async def subscribe(self, topic: SubscribeArg, qos: int = 0,
                        properties: dict[str, Any] | None = None) -> list[int]:
        """Subscribe to a filter or a list of them (str, (filter, qos) or Subscription).

        Returns the granted QoS (or MQTT 5 reason code) of each, in order."""
        subscriptions = _subscriptions(topic, qos)
        return await self._require().subscribe(subscriptions, properties)

    async def unsubscribe(self, topic: str | Iterable[str],
                          properties: dict[str, Any] | None = None) -> list[int]:
        filters = [topic] if isinstance(topic, str) else list(topic)
        return await self._require().unsubscribe(filters, properties)

    async def messages(self) -> AsyncIterator[Message]:
        """Received messages, in arrival order, from the moment of connecting.

        Ends after disconnect(); raises ConnectError when the connection is lost.
        Iterators share one queue: each message goes to one of them."""
        while True:
            item = await self._queue.get()
            if item is _CLOSED:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _deliver(self, message: Message) -> None:
        self.stats.messages_received += 1
        self.stats.last_activity = time.time()
        if self.max_queued_messages and self._queue.qsize() >= self.max_queued_messages:
            # Nobody is reading messages(): keep the newest, and say so.
            self._queue.get_nowait()
            self.messages_dropped += 1
            logger.error("messages() queue full (%d): dropped the oldest message (%d so far);"
                         " iterate messages() or raise max_queued_messages",
                         self.max_queued_messages, self.messages_dropped)
        self._queue.put_nowait(message)
        if self.on_message is not None:
            try:
                result = self.on_message(message)
                if asyncio.iscoroutine(result):
                    asyncio.ensure_future(result)
            except Exception:
                logger.exception("on_message callback failed for %r", message.topic)

    # --- statistics ------------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """The seed's statistics plus bytes, RTT and open streams, as a dict."""
        stats = self.stats
        transport = self._transport
        if transport is not None:
            stats.connected = transport.is_connected
            stats.bytes_sent = transport.bytes_sent
            stats.bytes_received = transport.bytes_received
            stats.rtt_ms = transport.rtt_ms
            stats.streams_open = transport.streams_open
        else:
            stats.streams_open = 0
        return stats.as_dict()

    @property
    def transport_type(self) -> TransportType | None:
        return self._transport.transport_type if self._transport else None


def _subscriptions(topic: SubscribeArg, qos: int) -> list[Subscription]:
    items: list[Any] = [topic] if isinstance(topic, (str, Subscription, tuple)) else list(topic)
    out = []
    for item in items:
        if isinstance(item, Subscription):
            out.append(item)
        elif isinstance(item, tuple):
            out.append(Subscription(item[0], item[1]))
        else:
            out.append(Subscription(item, qos))
    if not out:
        raise ValueError("subscribe needs at least one topic filter")
    return out


# The seed's name.
MQTTQUICAdvancedClient = Client
