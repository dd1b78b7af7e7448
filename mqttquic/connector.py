"""Keeping a connection: the asyncio side of the connection policy
(``policy.ConnectionPolicy`` decides, this module does; ``dialer.Dialer`` opens each
connection).

- While on TCP+TLS, QUIC is probed in the background; when it works the session
  moves over (a planned handover, not a loss).
- After an unexpected loss: reconnect with the policy's backoff, restore the
  subscriptions, and let waiting publishes through; a final refusal fails them.

``Client`` owns one Connector and keeps the user-facing API.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from ._aio import within
from ._inflight import StoredFlow
from .codec import Subscription, Will
from .config import ConnectionConfig, TransportType
from .dialer import Dialer
from .errors import (
    ConnectError,
    ConnectionRefused,
    MQTTQUICError,
    OfflineQueueFull,
    OperationTimeout,
    PathDead,
    PublishFailed,
    StreamClosed,
    StreamRefused,
)
from .message import Message
from .policy import (
    CONFIRM_ALIVE_WITHIN,
    QOS2_IN_FLIGHT_V311,
    Backoff,
    ConnectionPolicy,
    Loss,
    NoWait,
    PublishAttempts,
    QuicProbes,
    State,
)
from .transports.base import Transport

__all__ = ["Connector"]

logger = logging.getLogger("mqttquic.client")

# A publish cut off while the client is in one of these states is not sent again.
_NO_RETRY = frozenset({NoWait.FAILED, NoWait.CLOSED, NoWait.NOT_CONNECTED})


class Connector:
    """The current transport of one client, and the machinery that keeps one."""

    def __init__(self, config: ConnectionConfig, *, deliver: Callable[[Message], None],
                 on_connected: Callable[[Transport, float, bool, bool], None],
                 on_lost: Callable[[BaseException], None],
                 on_failed: Callable[[BaseException], None],
                 subscriptions: Callable[[], list[Subscription]],
                 will: Callable[[], Will | None],
                 connect_properties: Callable[[], dict[str, Any] | None],
                 logger: logging.Logger = logger) -> None:
        self.config = config
        self.logger = logger
        self.policy = ConnectionPolicy(
            reconnect=config.reconnect, protocol_version=config.protocol_version,
            max_offline_waiting=config.max_offline_queue,
            backoff=Backoff(config.reconnect_min_delay, config.reconnect_max_delay))
        self.transport: Transport | None = None
        self._deliver = deliver
        self._on_connected = on_connected
        self._on_lost = on_lost
        self._on_failed = on_failed
        self._subscriptions = subscriptions
        self._up = asyncio.Event()  # set while a transport is connected (or when closed/failed)
        self._reconnecting: asyncio.Task[None] | None = None
        self._probing: asyncio.Task[None] | None = None
        # The TCP+TLS transport a QUIC probe is replacing: the probe's CONNECT, with the same
        # client id, makes the broker drop it, and that is no reason to reconnect.
        self._handing_over: Transport | None = None
        self._qos2_slots = asyncio.Semaphore(QOS2_IN_FLIGHT_V311)  # MQTT 3.1.1 only
        self.dialer = Dialer(config, self.policy, will=will,
                             connect_properties=connect_properties, logger=logger)

    @property
    def is_connected(self) -> bool:
        return self.transport is not None and self.transport.is_connected

    # --- connects the user asks for ------------------------------------------------------------

    async def connect(self, transport: str | None = None) -> Transport:
        """Open a connection: ``transport`` "quic", "tcp", or None for ``config.transport``.
        The time to CONNACK is measured from after the transports are imported. While
        start() connects in the background, wait for that (``connect_timeout``)."""
        if self.connecting_in_background:
            return await self._started_connection()
        self.policy.open()
        await self.dialer.load_transports()
        started = time.monotonic()
        if transport == "quic":
            opened = await self.dialer.open_quic()
        elif transport == "tcp":
            opened = await self.dialer.open_tcp()
        else:
            opened = await self.dialer.open()
        self._attach(opened, time.monotonic() - started, reconnected=False)
        return opened

    @property
    def connecting_in_background(self) -> bool:
        """start() is making the client's first connection."""
        return self._reconnecting is not None and self.policy.started and not self.is_connected

    def start(self) -> None:
        """Connect in the background: attempts at once and then after the backoff, as
        reconnects, until one connects (a final refusal fails the client, close()
        stops them)."""
        if self.is_connected or self._reconnecting is not None:
            return
        self.policy.start()
        self._reconnecting = asyncio.ensure_future(self._reconnect(first=True))

    async def _started_connection(self) -> Transport:
        try:
            await asyncio.wait_for(self._up.wait(), self.config.connect_timeout)
        except TimeoutError:
            raise ConnectError(f"not connected within {self.config.connect_timeout:g} s;"
                               " start() goes on trying in the background") from None
        if self.transport is None or not self.is_connected:
            raise ConnectError(f"connecting failed: {self.policy.fatal or 'the client closed'}")
        return self.transport

    async def close(self, reason_code: int = 0, properties: dict[str, Any] | None = None) -> None:
        """Send DISCONNECT (with ``reason_code`` and ``properties``, MQTT 5) and close;
        stop reconnecting and probing."""
        self.policy.close()
        for task in (self._reconnecting, self._probing):
            if task is not None:
                task.cancel()
        transport, self.transport = self.transport, None
        if transport is not None:
            await transport.disconnect(reason_code, properties)
        self._drop_carry(ConnectError("the client is disconnected"))
        self._up.set()
        if self.dialer.tickets is not None:
            await self.dialer.tickets.saved()

    def _usable(self) -> Transport | None:
        """The transport, when a request may go on it now (``ready()`` without waiting)."""
        transport = self.transport
        if (transport is not None and transport.accepts_requests
                and self.policy.state is not State.FAILED):
            return transport
        return None

    async def ready(self) -> Transport:
        """The connected transport; while reconnecting, wait for it (a bounded number of
        waiters, ``max_offline_queue``). The caller's deadline bounds the wait."""
        policy = self.policy
        while True:
            usable = self._usable()
            if usable is not None:
                return usable
            transport = self.transport
            if (transport is not None and policy.state is State.CONNECTED
                    and self._reconnecting is None):
                # Closed without telling us (say, an idle timeout while closing): same as lost.
                self._lost(transport, ConnectError("the connection closed"))
            why = policy.why_not_wait()
            if why is NoWait.FAILED:
                raise ConnectError(f"connection failed for good: {policy.fatal}") from policy.fatal
            if why is NoWait.CLOSED:
                raise ConnectError("the client is disconnected")
            if why is NoWait.NOT_CONNECTED:
                raise ConnectError("not connected")
            if why is NoWait.QUEUE_FULL:
                raise OfflineQueueFull(
                    f"{policy.offline_waiting} publishes already wait for the connection"
                    f" (max_offline_queue={self.config.max_offline_queue})")
            policy.offline_waiting += 1
            try:
                await self._up.wait()
            finally:
                policy.offline_waiting -= 1

    def _attach(self, transport: Transport, elapsed: float | None, *, reconnected: bool,
                moved: bool = False) -> None:
        """Make ``transport`` the current one. ``elapsed``: seconds from starting to
        connect (the race included) to CONNACK; the transport's own time if None.
        ``moved``: a planned move from another transport, not a reconnect."""
        self.transport = transport
        assigned = transport.limits.assigned_client_identifier
        if assigned and not (self.config.client_id or self.config.device_id):
            # MQTT 5 without a client id: the broker named this client; a persistent
            # session is found again only under that name.
            self.config.client_id = assigned
            self.logger.info("the broker assigned the client id %r; reconnects use it", assigned)
        if self.dialer.carry is not None and transport.transport_type is not TransportType.QUIC:
            # The flows cannot continue over TCP: their publishes are sent again there.
            self._drop_carry(ConnectError("the session moved to TCP+TLS"))
        self.policy.connected(time.monotonic())
        self._on_connected(transport, transport.connect_time if elapsed is None else elapsed,
                           reconnected, moved)
        self._up.set()
        # Last: a connection that has already ended reports it from here.
        transport.attach(self._deliver, lambda exc: self._lost(transport, exc))
        if (transport.transport_type is TransportType.TCP_TLS and self.config.transport == "auto"
                and self.config.quic_probe_interval > 0 and self._probing is None):
            self._probing = asyncio.ensure_future(self._probe_quic())

    async def publish(self, topic: str, data: bytes, qos: int, retain: bool,
                      properties: dict[str, Any] | None, flow: StoredFlow | None = None) -> None:
        """Publish on the current connection; while reconnecting, wait for the next one.
        A publish cut off with its connection (or QUIC stream) is sent again, up to
        ``max_publish_attempts`` cut-offs (``policy.PublishAttempts``). The caller's
        deadline bounds it all. Under MQTT 3.1.1 at most QOS2_IN_FLIGHT_V311 QoS 2
        publishes are under way at once; the others wait their turn."""
        if qos == 2 and self.config.protocol_version == 4:
            async with self._qos2_slots:
                return await self._publish(topic, data, qos, retain, properties, flow)
        return await self._publish(topic, data, qos, retain, properties, flow)

    async def _publish(self, topic: str, data: bytes, qos: int, retain: bool,
                       properties: dict[str, Any] | None, flow: StoredFlow | None) -> None:
        attempts: PublishAttempts | None = None  # made on the first cut-off
        while True:
            transport = self._usable() or await self.ready()
            try:
                await transport.publish(topic, data, qos, retain, properties, flow)
                return
            except (PublishFailed, StreamRefused, OperationTimeout):
                raise
            except ConnectError as exc:
                if self.policy.why_not_wait() in _NO_RETRY:
                    raise
                # Only its stream ended: a PINGREQ asks whether the connection goes on.
                stream_only = isinstance(exc, StreamClosed) and transport.is_connected
                alive = stream_only and await transport.confirm_alive(CONFIRM_ALIVE_WITHIN)
                if attempts is None:
                    attempts = PublishAttempts(self.config.max_publish_attempts)
                if not attempts.cut_off(str(exc), stream_only=stream_only, connection_alive=alive):
                    self.logger.error("giving up a publish to %r: %s", topic, attempts.reason())
                    raise PublishFailed(topic, None, attempts.reason()) from exc
                self.logger.info("publish to %r cut off (%s): sending it again", topic, exc)
                if flow is not None:
                    flow.dup = True  # the broker may have it


    # --- losing and regaining the connection ------------------------------------------------------

    def _lost(self, transport: Transport, exc: BaseException) -> None:
        if transport is not self.transport:
            return
        planned = transport is self._handing_over
        decision = self.policy.lost(
            time.monotonic(), planned, path_dead=isinstance(exc, PathDead),
            refused=exc if isinstance(exc, ConnectionRefused) else None)
        if planned and not self.policy.is_closed:
            # Publishes wait for the QUIC connection; the probe reconnects if it fails.
            self.logger.info("TCP+TLS connection closed by the broker for the move to QUIC (%s)",
                             exc)
            self._up.clear()
            return
        if decision is Loss.IGNORE:
            return
        self.dialer.carry = transport.carry_over()
        self._up.clear()
        if decision is Loss.RECONNECT:
            self.logger.warning("connection lost (%s): reconnecting", exc)
            self._reconnecting = asyncio.ensure_future(self._reconnect())
            self._on_lost(exc)
        else:
            self._fail(exc)

    def _drop_carry(self, exc: BaseException) -> None:
        carry, self.dialer.carry = self.dialer.carry, None
        if carry is not None:
            carry.drop(exc)

    def _fail(self, exc: BaseException) -> None:
        """No more connections: wake everything that waits, with ``exc``."""
        self.policy.fail(exc)
        self._drop_carry(exc)
        self._up.set()
        self._on_failed(exc)

    async def _reconnect(self, first: bool = False) -> None:
        """Attempts until one connects. ``first``: the client's first connection
        (start()), whose first attempt comes at once."""
        policy = self.policy
        attempt = 0
        try:
            if first:
                await self.dialer.load_transports()
            while policy.state is State.RECONNECTING:
                # The backoff outlives this loop: connections that die right after
                # CONNACK keep it growing (policy.Backoff).
                if not (first and attempt == 0):
                    await asyncio.sleep(policy.next_delay(time.monotonic()))
                attempt += 1
                started = time.monotonic()
                timeout = policy.attempt_timeout(self.config.connect_timeout, attempt - 1)
                try:
                    transport = await self.dialer.open(timeout)
                except ConnectError as exc:
                    if not policy.attempt_failed(exc):
                        if policy.is_failed:
                            self.logger.error("reconnect refused for good: %s", exc)
                            self._fail(exc)
                        return
                    self.logger.warning("%s attempt %d failed: %s",
                                        "connect" if first else "reconnect", attempt, exc)
                    continue
                if policy.state is not State.RECONNECTING:  # closed meanwhile
                    await transport.disconnect()
                    return
                self._attach(transport, time.monotonic() - started, reconnected=not first)
                self.logger.info("%s over %s after %d attempt(s)",
                                 "connected" if first else "reconnected",
                                 transport.transport_type.value, attempt)
                await self.restore_subscriptions(transport)
                return
        finally:
            self._reconnecting = None

    async def restore_subscriptions(self, transport: Transport) -> None:
        subscriptions = self._subscriptions()
        if not subscriptions:
            return
        if transport.session_present:
            # The broker kept the session, and its subscriptions with it: subscribing again
            # would only make it send every retained message once more.
            self.logger.info("session present: the broker kept the %d subscriptions",
                             len(subscriptions))
            return
        try:
            codes = await within(transport.subscribe(subscriptions),
                                 self.config.operation_timeout, "restoring subscriptions")
            self.logger.info("restored %d subscriptions (codes %s)", len(codes), codes)
        except MQTTQUICError as exc:
            self.logger.warning("restoring subscriptions failed: %s", exc)

    async def _probe_quic(self) -> None:
        """While on TCP+TLS, try QUIC now and then (``policy.QuicProbes``); move over
        when it works."""
        probes = QuicProbes(self.config.quic_probe_interval)
        try:
            while not self.policy.is_closed:
                await asyncio.sleep(probes.next_pause())
                current = self.transport
                if current is None or current.transport_type is TransportType.QUIC:
                    return
                if not current.is_connected:
                    continue
                self._handing_over = current
                current.handing_over = True  # its end is planned: no warning
                self.policy.handover_started()
                moved = False
                try:
                    moved = await self._move_to_quic(current)
                finally:
                    self._handing_over = None
                    current.handing_over = moved
                    self.policy.handover_ended()
                if moved:
                    await current.disconnect()
                    return
                if not current.is_connected and self.transport is current:
                    # The broker dropped it for the probe's CONNECT, and then QUIC failed.
                    self._lost(current, ConnectError("TCP+TLS connection closed"))
        finally:
            self._probing = None

    async def _move_to_quic(self, current: Transport) -> bool:
        probe = dataclasses.replace(
            self.config, connect_timeout=QuicProbes.timeout(self.config.connect_timeout))
        try:
            quic = await self.dialer.open_quic(config=probe)
        except MQTTQUICError as exc:
            self.logger.debug("QUIC probe failed: %s", exc)
            return False
        if self.policy.is_closed or self.transport is not current:
            await quic.disconnect()
            return False
        self.logger.info("QUIC works again: moving from TCP+TLS to QUIC")
        await self.restore_subscriptions(quic)
        # Publishes cut off on TCP are sent again on QUIC (publish() retries); messages
        # a persistent session queued meanwhile followed CONNACK and were held for us.
        self._attach(quic, None, reconnected=False, moved=True)
        return True
