"""The asyncio MQTT client: ``async with Client(config) as client:``.

Connection policy: QUIC first; if it has not completed after a short head start,
TCP+TLS (paho-mqtt) races it and the first CONNACK wins. While on TCP, QUIC is
probed in the background and the client moves back when it works. After an
unexpected loss the client reconnects with exponential backoff and full jitter,
restores its subscriptions and resends what was not acknowledged; publishes
made meanwhile wait in a bounded queue.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import ModuleType
from typing import Any, Union

from ._aio import within
from .codec import Subscription, Will
from .config import ConnectionConfig, ConnectionStats, TransportType
from .errors import (
    ConnectError,
    ConnectionRefused,
    MQTTQUICError,
    OfflineQueueFull,
    OperationTimeout,
    PublishFailed,
    StreamRefused,
)
from .message import Message, payload_bytes
from .policy import STREAM_FAILURE_SETTLE, Backoff, PublishAttempts, refusal_is_final
from .tickets import TicketStore
from .transports.base import Transport

__all__ = ["Client", "MQTTQUICAdvancedClient", "OfflineQueueFull"]

logger = logging.getLogger("mqttquic.client")

SubscribeArg = Union[str, Subscription, tuple[str, int], Iterable[Union[str, Subscription, tuple[str, int]]]]

_CLOSED = object()  # ends messages() iterators


class Client:
    """MQTT over QUIC with TCP+TLS fallback, with the seed's names.

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
        # One entry per connect: transport, seconds to CONNACK, resumed, 0-RTT.
        self.connect_history: list[dict[str, Any]] = []
        self._transport: Transport | None = None
        # Messages wait here from the moment of connecting until messages() takes them,
        # so none is lost between subscribe() and the start of iteration.
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self.max_queued_messages = max_queued_messages
        self.messages_dropped = 0
        self._subscriptions: dict[str, Subscription] = {}
        self._up = asyncio.Event()  # set while a transport is connected (or when closed/failed)
        self._closed = False
        self._fatal: BaseException | None = None
        self._ever_connected = False
        self._offline_waiting = 0
        self._reconnecting: asyncio.Task[None] | None = None
        self._probing: asyncio.Task[None] | None = None
        # The TCP+TLS transport a QUIC probe is replacing: the probe's CONNECT, with the same
        # client id, makes the broker drop it, and that is no reason to reconnect.
        self._handing_over: Transport | None = None
        self._tickets = TicketStore(config.ticket_path()) if config.zero_rtt else None
        # A persistent session's unfinished QoS 1/2 flows between QUIC connections.
        self._carry: Any = None
        # connect(early_messages=...) while it runs: sent behind CONNECT on QUIC.
        self._early: list[tuple[str, bytes, bool, dict[str, Any] | None]] = []
        self._warned_no_aioquic = False
        self._backoff = Backoff(config.reconnect_min_delay, config.reconnect_max_delay)
        # Ticket writes in worker threads, kept until done (disconnect() waits for them).
        self._ticket_writes: set[asyncio.Future[Any]] = set()

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
        self._early = early
        try:
            transport = await self._connect_with(self._open)
        finally:
            self._early = []
        if early and transport.transport_type is not TransportType.QUIC:
            for topic, payload, retain, properties in early:
                await transport.publish(topic, payload, 0, retain, properties)
        self.stats.messages_sent += len(early)
        return True

    async def connect_quic(self) -> bool:
        """MQTT over QUIC only (UDP ``quic_port``, ALPN "mqtt"). Returns True, as
        ``connect()`` does; does nothing when the client is already connected."""
        if not self.is_connected:
            await self._connect_with(self._open_quic)
        return True

    async def connect_tcp_fallback(self) -> bool:
        """MQTT over TCP+TLS only, through paho-mqtt (``tcp_port``). Returns True;
        does nothing when the client is already connected."""
        if not self.is_connected:
            await self._connect_with(self._open_tcp)
        return True

    async def _connect_with(self, opener: Callable[[], Awaitable[Transport]]) -> Transport:
        """A connect the user asked for: the client is open again, the time is measured."""
        if self._closed:
            # A client connected again after disconnect(): new messages() iterators must not
            # end on the old end-of-stream marker.
            self._drop_end_markers()
        self._closed = False
        self._fatal = None
        await self._load_transports()
        started = time.monotonic()  # connect_time is time to CONNACK, not import time
        transport = await opener()
        self._attach(transport, time.monotonic() - started)
        return transport

    def _drop_end_markers(self) -> None:
        kept = [item for item in _drain(self._queue) if item is not _CLOSED]
        for item in kept:
            self._queue.put_nowait(item)

    async def _load_transports(self) -> None:
        """Import aioquic and paho-mqtt in a worker thread, once: importing aioquic takes
        about 0.2 s, which would otherwise stall the event loop and count as connect time."""
        wanted = []
        if self.config.transport != "tcp" and "mqttquic.transports.quic" not in sys.modules:
            wanted.append(self._quic_module)
        if self.config.transport != "quic" and "mqttquic.transports.tcp" not in sys.modules:
            wanted.append(_import_tcp)
        if wanted:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: [load() for load in wanted])

    def _quic_module(self) -> ModuleType | None:
        try:
            from .transports import quic
        except ImportError as exc:
            if not self._warned_no_aioquic:
                logger.warning("aioquic is not installed (%s): MQTT over TCP+TLS only;"
                               " pip install aioquic for QUIC", exc)
                self._warned_no_aioquic = True
            return None
        return quic

    async def _open(self) -> Transport:
        mode = self.config.transport
        if mode == "tcp":
            return await self._open_tcp()
        if self._quic_module() is None:
            if mode == "quic":
                raise ConnectError("transport 'quic' needs aioquic, which is not installed")
            return await self._open_tcp()
        if mode == "quic":
            return await self._open_quic()
        return await self._race()

    async def _open_quic(self, handshake: asyncio.Event | None = None) -> Transport:
        quic = self._quic_module()
        if quic is None:
            raise ConnectError("MQTT over QUIC needs aioquic, which is not installed")
        config = self.config
        ticket = None
        handler = None
        if self._tickets is not None:
            tickets = self._tickets
            key = TicketStore.key(config.host, config.quic_port, config.server_name or config.host)
            loop = asyncio.get_running_loop()
            # File I/O off the event loop; a ticket is offered once, then forgotten.
            ticket = await loop.run_in_executor(None, tickets.take, key)

            def handler(new_ticket: Any) -> None:
                saving = loop.run_in_executor(None, tickets.save, key, new_ticket)
                self._ticket_writes.add(saving)
                saving.add_done_callback(self._ticket_writes.discard)
        transport: Transport = await quic.connect_quic(
            config, will=self.will, properties=self.connect_properties, session_ticket=ticket,
            ticket_handler=handler, adopt=self._carry, early_messages=self._early,
            handshake=handshake)
        self._carry = None  # the new connection owns the carried flows now
        return transport

    async def _open_tcp(self) -> Transport:
        from .transports.tcp import connect_tcp  # paho-mqtt is imported only when used

        return await connect_tcp(self.config, will=self.will, properties=self.connect_properties)

    async def _race(self) -> Transport:
        """QUIC, joined by TCP+TLS after the head start; the first CONNACK wins.

        A QUIC handshake that completed within the head start shows that QUIC works:
        TCP+TLS is then not started for this attempt (it would only send the same
        CONNECT twice), and QUIC alone answers within its connect timeout."""
        config = self.config
        handshake = asyncio.Event()
        quic = asyncio.ensure_future(self._open_quic(handshake))
        done, _ = await asyncio.wait({quic}, timeout=config.head_start)
        if not done and handshake.is_set():
            await asyncio.wait({quic})
            done = {quic}
        if done:
            exc = quic.exception()
            if exc is None:
                return quic.result()
            if isinstance(exc, ConnectionRefused):
                raise exc
            logger.warning("QUIC failed (%s): trying TCP+TLS", exc)
            try:
                return await self._open_tcp()
            except ConnectionRefused:
                raise
            except ConnectError as tcp_exc:
                raise ConnectError(f"both transports failed: QUIC: {exc}; TCP+TLS: {tcp_exc}") from None
        logger.info("QUIC did not connect within %.0f ms: racing TCP+TLS", config.head_start * 1000)
        tcp = asyncio.ensure_future(self._open_tcp())
        names = {quic: "QUIC", tcp: "TCP+TLS"}
        errors: dict[str, BaseException] = {}
        pending = {quic, tcp}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is None:
                    for other in pending:
                        other.cancel()
                    for other in done - {task}:  # both answered in the same instant
                        if other.exception() is None:
                            other.result().abort()
                    if task is tcp:
                        why = errors.get("QUIC") or f"no QUIC handshake within {config.head_start} s"
                        logger.warning("using TCP+TLS, not QUIC: %s", why)
                    return task.result()
                if isinstance(exc, ConnectionRefused):
                    for other in pending:
                        other.cancel()
                    raise exc
                errors[names[task]] = exc
        raise ConnectError(f"both transports failed: QUIC: {errors.get('QUIC')};"
                           f" TCP+TLS: {errors.get('TCP+TLS')}")

    def _attach(self, transport: Transport, elapsed: float | None = None) -> None:
        """Make ``transport`` the current one. ``elapsed``: seconds from starting to
        connect (the race included) to CONNACK; the transport's own time if None."""
        self._transport = transport
        self._ever_connected = True
        if self._carry is not None and transport.transport_type is not TransportType.QUIC:
            # The flows cannot continue over TCP: their publishes are sent again there.
            self._drop_carry(ConnectError("the session moved to TCP+TLS"))
        stats = self.stats
        stats.transport = transport.transport_type
        stats.connected = True
        stats.connect_time = transport.connect_time if elapsed is None else elapsed
        stats.session_resumed = transport.session_resumed
        stats.zero_rtt_used = transport.zero_rtt_used
        stats.last_activity = time.time()
        self._backoff.connected(time.monotonic())
        self.connect_history.append({
            "transport": transport.transport_type.value, "connect_time": stats.connect_time,
            "transport_connect_time": transport.connect_time,
            "session_resumed": transport.session_resumed, "zero_rtt_used": transport.zero_rtt_used})
        self._up.set()
        # Last: a connection that has already ended reports it from here.
        transport.attach(self._deliver, lambda exc: self._lost(transport, exc))
        if (transport.transport_type is TransportType.TCP_TLS and self.config.transport == "auto"
                and self.config.quic_probe_interval > 0 and self._probing is None):
            self._probing = asyncio.ensure_future(self._probe_quic())

    # --- losing and regaining the connection ------------------------------------------------------

    def _lost(self, transport: Transport, exc: BaseException) -> None:
        if transport is not self._transport or self._closed:
            return
        if transport is self._handing_over:
            # Publishes wait for the QUIC connection; the probe reconnects if it fails.
            logger.debug("TCP+TLS connection replaced by QUIC (%s)", exc)
            self.stats.connected = False
            self._up.clear()
            return
        carry_over = getattr(transport, "carry_over", None)
        if carry_over is not None:
            self._carry = carry_over()
        self._backoff.lost(time.monotonic())
        self.stats.connected = False
        self._up.clear()
        if self.config.reconnect and self._reconnecting is None:
            logger.warning("connection lost (%s): reconnecting", exc)
            self._reconnecting = asyncio.ensure_future(self._reconnect())
        elif not self.config.reconnect:
            self._fail(exc)

    def _drop_carry(self, exc: BaseException) -> None:
        carry, self._carry = self._carry, None
        if carry is not None:
            for future in carry[1].values():
                if not future.done():
                    future.set_exception(exc)

    def _fail(self, exc: BaseException) -> None:
        """No more connections: wake everything that waits, with ``exc``."""
        self._fatal = exc
        self.stats.connected = False
        self._drop_carry(exc)
        self._up.set()
        self._queue.put_nowait(exc)

    async def _reconnect(self) -> None:
        config = self.config
        attempt = 0
        try:
            while not self._closed:
                # The backoff outlives this loop: connections that die right after
                # CONNACK keep it growing (policy.Backoff).
                await asyncio.sleep(self._backoff.next_delay())
                attempt += 1
                started = time.monotonic()
                try:
                    transport = await self._open()
                except ConnectionRefused as exc:
                    if refusal_is_final(exc.reason_code, config.protocol_version):
                        logger.error("reconnect refused for good: %s", exc)
                        self._fail(exc)
                        return
                    logger.warning("reconnect attempt %d refused: %s", attempt, exc)
                    continue
                except ConnectError as exc:
                    logger.warning("reconnect attempt %d failed: %s", attempt, exc)
                    continue
                if self._closed:
                    await transport.disconnect()
                    return
                self.stats.reconnect_count += 1
                self._attach(transport, time.monotonic() - started)
                logger.info("reconnected over %s after %d attempt(s)",
                            transport.transport_type.value, attempt)
                await self._restore_subscriptions(transport)
                return
        finally:
            self._reconnecting = None

    async def _restore_subscriptions(self, transport: Transport) -> None:
        if not self._subscriptions:
            return
        try:
            codes = await within(transport.subscribe(list(self._subscriptions.values())),
                                 self.config.operation_timeout, "restoring subscriptions")
            logger.info("restored %d subscriptions (codes %s)", len(codes), codes)
        except MQTTQUICError as exc:
            logger.warning("restoring subscriptions failed: %s", exc)

    async def _probe_quic(self) -> None:
        """While on TCP+TLS, try QUIC now and then; move over when it works."""
        try:
            while not self._closed:
                await asyncio.sleep(self.config.quic_probe_interval)
                current = self._transport
                if current is None or current.transport_type is TransportType.QUIC:
                    return
                if not current.is_connected:
                    continue
                self._handing_over = current
                try:
                    moved = await self._move_to_quic(current)
                finally:
                    self._handing_over = None
                if moved:
                    await current.disconnect()
                    return
                if not current.is_connected and self._transport is current:
                    # The broker dropped it for the probe's CONNECT, and then QUIC failed.
                    self._lost(current, ConnectError("TCP+TLS connection closed"))
        finally:
            self._probing = None

    async def _move_to_quic(self, current: Transport) -> bool:
        try:
            quic = await self._open_quic()
        except MQTTQUICError as exc:
            logger.debug("QUIC probe failed: %s", exc)
            return False
        if self._closed or self._transport is not current:
            await quic.disconnect()
            return False
        logger.info("QUIC works again: moving from TCP+TLS to QUIC")
        await self._restore_subscriptions(quic)
        # Publishes cut off on TCP are sent again on QUIC (publish() retries); messages
        # a persistent session queued meanwhile followed CONNACK and were held for us.
        self._attach(quic)
        return True

    async def disconnect(self) -> None:
        """Send DISCONNECT and close; stop reconnecting. Iterators of messages() end."""
        self._closed = True
        for task in (self._reconnecting, self._probing):
            if task is not None:
                task.cancel()
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.disconnect()
        self.stats.connected = False
        self._drop_carry(ConnectError("the client is disconnected"))
        self._up.set()
        self._queue.put_nowait(_CLOSED)
        if self._ticket_writes:  # the next connect resumes from what they write
            await asyncio.wait(set(self._ticket_writes), timeout=2.0)

    @property
    def is_connected(self) -> bool:
        return self._transport is not None and self._transport.is_connected

    async def _ready(self) -> Transport:
        """The connected transport; while reconnecting, wait (bounded queue) for it."""
        while True:
            if self._fatal is not None:
                raise ConnectError(f"connection failed for good: {self._fatal}") from self._fatal
            if self._closed:
                raise ConnectError("the client is disconnected")
            transport = self._transport
            if transport is not None and transport.is_connected:
                return transport
            if not (self.config.reconnect and self._ever_connected):
                raise ConnectError("not connected")
            if transport is not None and self._reconnecting is None:
                # Closed without telling us (say, an idle timeout while closing): same as lost.
                self._lost(transport, ConnectError("the connection closed"))
            if self._offline_waiting >= self.config.max_offline_queue:
                raise OfflineQueueFull(
                    f"{self._offline_waiting} publishes already wait for the connection"
                    f" (max_offline_queue={self.config.max_offline_queue})")
            self._offline_waiting += 1
            try:
                await self._up.wait()
            finally:
                self._offline_waiting -= 1

    # --- publishing -------------------------------------------------------------------------------

    async def publish(self, topic: str, payload: Any = b"", qos: int = 0, retain: bool = False,
                      properties: dict[str, Any] | None = None, *,
                      timeout: float | None = None) -> None:
        """Publish; returns when sent (QoS 0) or acknowledged (QoS 1 and 2).

        ``payload`` may be bytes, str (UTF-8) or a JSON-serialisable dict/list. While the
        client reconnects, the publish waits; a QoS 1/2 publish cut off by a lost
        connection is sent again on the next one (at least once).

        Raises OperationTimeout (also a TimeoutError) when it is not done within
        ``timeout`` seconds (default ``config.operation_timeout``) from the call, offline
        time included; PublishFailed when the broker refuses it, when it is larger than
        the broker's Maximum Packet Size, or when it cut off ``max_publish_attempts``
        connections (or streams) in a row: a publish the broker will not take."""
        data = payload_bytes(payload)
        await within(self._publish(topic, data, qos, retain, properties),
                     self.config.operation_timeout if timeout is None else timeout,
                     f"publish to {topic!r} (QoS {qos})")
        self.stats.messages_sent += 1
        self.stats.last_activity = time.time()

    async def _publish(self, topic: str, data: bytes, qos: int, retain: bool,
                       properties: dict[str, Any] | None) -> None:
        attempts: PublishAttempts | None = None
        while True:
            transport = await self._ready()
            try:
                await transport.publish(topic, data, qos, retain, properties)
                return
            except (PublishFailed, StreamRefused, OperationTimeout):
                raise
            except ConnectError as exc:
                if not self.config.reconnect or self._closed or self._fatal is not None:
                    raise
                if transport.is_connected:
                    # Only the stream ended. If the connection follows it within a moment,
                    # the broker (or the path) went away: no fault of this publish.
                    await asyncio.sleep(STREAM_FAILURE_SETTLE)
                    if not transport.is_connected:
                        logger.info("publish to %r cut off (%s): sending it again", topic, exc)
                        continue
                if attempts is None:
                    attempts = PublishAttempts(self.config.max_publish_attempts)
                if not attempts.cut_off(str(exc)):
                    logger.error("giving up a publish to %r: %s", topic, attempts.reason())
                    raise PublishFailed(topic, None, attempts.reason()) from exc
                logger.info("publish to %r cut off (%s): sending it again", topic, exc)

    async def publish_parallel(self, messages: Iterable[Mapping[str, Any]]) -> dict[str, bool]:
        """Publish concurrently: on QUIC each topic on its own stream (no head-of-line
        blocking); on TCP pipelined on the one connection, all acks awaited together.

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

    # --- subscribing --------------------------------------------------------------------------

    async def subscribe(self, topic: SubscribeArg, qos: int = 0,
                        properties: dict[str, Any] | None = None, *,
                        timeout: float | None = None) -> list[int]:
        """Subscribe to a filter or a list of them (str, (filter, qos) or Subscription).

        Returns the granted QoS (or MQTT 5 reason code) of each, in order. Granted
        subscriptions are restored after every reconnect. OperationTimeout when there
        is no SUBACK within ``timeout`` (default ``config.operation_timeout``)."""
        subscriptions = _subscriptions(topic, qos)

        async def request() -> list[int]:
            return await (await self._ready()).subscribe(subscriptions, properties)

        codes = await within(request(), self.config.operation_timeout if timeout is None
                             else timeout, f"subscribe to {subscriptions[0].topic_filter!r}")
        for subscription, code in zip(subscriptions, codes):
            if code < 0x80:
                self._subscriptions[subscription.topic_filter] = subscription
        return codes

    async def unsubscribe(self, topic: str | Iterable[str],
                          properties: dict[str, Any] | None = None, *,
                          timeout: float | None = None) -> list[int]:
        """Unsubscribe; the reason codes of an MQTT 5 UNSUBACK (none for 3.1.1).
        OperationTimeout when there is no UNSUBACK within ``timeout``."""
        filters = [topic] if isinstance(topic, str) else list(topic)
        for topic_filter in filters:
            self._subscriptions.pop(topic_filter, None)

        async def request() -> list[int]:
            return await (await self._ready()).unsubscribe(filters, properties)

        return await within(request(), self.config.operation_timeout if timeout is None
                            else timeout, f"unsubscribe from {filters[0]!r}")

    async def messages(self) -> AsyncIterator[Message]:
        """Received messages, in arrival order, from the moment of connecting.

        Reconnects do not interrupt it. Ends after disconnect(); raises when the
        connection is lost for good. Iterators share one queue."""
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

    # --- statistics ---------------------------------------------------------------------------

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
            stats.connected = False
            stats.streams_open = 0
        return stats.as_dict()

    @property
    def transport_type(self) -> TransportType | None:
        return self._transport.transport_type if self._transport else None


def _import_tcp() -> None:
    try:
        from .transports import tcp  # noqa: F401
    except ImportError:
        pass  # reported by the connect that needs it


def _drain(queue: asyncio.Queue[Any]) -> list[Any]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _early_message(item: Mapping[str, Any]) -> tuple[str, bytes, bool, dict[str, Any] | None]:
    if item.get("qos", 0) != 0:
        raise ValueError("only QoS 0 messages may ride in 0-RTT data (it can be replayed)")
    return (item["topic"], payload_bytes(item.get("payload", b"")), bool(item.get("retain")),
            item.get("properties"))


def _subscriptions(topic: SubscribeArg, qos: int) -> list[Subscription]:
    if isinstance(topic, tuple) and len(topic) == 2 and isinstance(topic[1], int):
        items: list[Any] = [topic]
    elif isinstance(topic, (str, Subscription)):
        items = [topic]
    else:
        items = list(topic)
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
