"""MQTT over QUIC with aioquic, as EMQX defines it: the client's transport, and
``connect_quic()``, which dials it.

The transport is a pump between aioquic and the sans-I/O ``Session``
(``_quic_pump``), with the MQTT requests on top. What is decided elsewhere: which
stream a topic rides (``_streams.StreamPool``), when the path is dead and how the
connection moves (``_path``), what waits for which acknowledgement
(``_inflight.InFlight``), aioquic's configuration (``_quic_setup``), and everything
aioquic keeps private (``_aioquic``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from aioquic.asyncio.client import connect as quic_connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.tls import SessionTicket

from .. import _aioquic
from .. import events as ev
from .._inflight import Carry, StoredFlow
from .._mqtt_quic import until_acknowledged
from .._tls import TLSMaterial
from ..codec import Connect, Subscription, Will
from ..config import ConnectionConfig, TransportType
from ..enums import PacketType
from ..errors import (
    ConnectError,
    ConnectionRefused,
    MQTTQUICError,
    PublishFailed,
    StreamLimitReached,
)
from ..limits import ServerLimits
from ..reason_codes import reason_code_name
from ..session import CONTROL, Session
from ._path import move
from ._quic_pump import QuicPump
from ._quic_setup import quic_configuration
from ._streams import NoStreamCredit
from .base import connect_packet

__all__ = ["QuicTransport", "connect_quic"]

logger = logging.getLogger("mqttquic.quic")

# Longest wait for QUIC stream credit (MAX_STREAMS) before a new data stream gives up.
STREAM_CREDIT_WAIT = 5.0

EarlyMessage = tuple[str, bytes, bool, "dict[str, Any] | None"]
T = TypeVar("T")


class QuicTransport(QuicPump):
    """One QUIC connection carrying one MQTT session: the MQTT requests, over the
    stream pool, on top of the pump."""

    transport_type = TransportType.QUIC

    def __init__(self, *args: Any, config: ConnectionConfig, **kwargs: Any) -> None:
        super().__init__(*args, config=config, **kwargs)
        self._context: AbstractAsyncContextManager[QuicConnectionProtocol] | None = None
        # Background close of a refused connection (kept so it is not collected).
        self._closer: asyncio.Task[None] | None = None
        # Session tickets are kept (0-RTT): disconnect() waits briefly for the next one.
        self.wants_ticket = False
        self.ticket_received = asyncio.Event()
        self._settling: asyncio.Task[None] | None = None

    @property
    def accepts_requests(self) -> bool:
        return self.is_connected or (self.provisional and not self._lost and not self._closing)

    async def _after_connack(self) -> None:
        """Before a request that must not ride in 0-RTT data: wait until the CONNACK has
        been checked (the caller's deadline bounds it); ConnectionRefused or
        ConnectError when the connection ended instead."""
        if self.provisional and self._settling is not None:
            await asyncio.shield(self._settling)
            if self._lost_cause is not None:
                raise self._lost_cause
        self._require_session()

    def settle(self, where: str, started: float) -> None:
        """early_publish: the CONNACK is awaited in the background (``connect_quic``
        returned with CONNECT in flight). A refusal, a timeout or a port that refuses
        UDP ends the connection; what waits on it fails with that cause."""
        self.provisional = not self._connack.done()  # a CONNACK may have come already
        self._settling = asyncio.ensure_future(self._settle(where, started))

    async def _settle(self, where: str, started: float) -> None:
        waits: set[asyncio.Future[Any]] = {self._connack}
        if self.refused is not None:
            waits.add(self.refused)
        await asyncio.wait(waits, timeout=self.config.connect_timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        result = self._connack.result() if self._connack.done() and not self._connack.exception() else None
        if isinstance(result, ev.Connected):
            self.connect_time = time.monotonic() - started
            logger.info("CONNACK over QUIC from %s %.1f ms after connecting (early publish)",
                        where, self.connect_time * 1000)
            return
        if isinstance(result, ev.ConnectFailed):
            exc: ConnectError = ConnectionRefused(result.reason_code, result.reason_name)
        elif self.refused is not None and self.refused.done():
            exc = ConnectError(f"QUIC connect to {where} refused: nothing listens on that UDP"
                               " port (ICMP port unreachable)")
        elif self._connack.done():
            return  # the connection ended first, and has reported why
        else:
            exc = ConnectError(f"no CONNACK from {where} within {self.config.connect_timeout} s")
        self.provisional = False
        self._connection_lost(exc)

    def mqtt_connect(self, connect: Connect, adopt: Carry | None = None) -> None:
        """Open the control stream and send CONNECT on it.

        ``adopt``: the session and waiting publishes of the previous connection of a
        persistent session (``carry_over()``); their flows continue after CONNACK."""
        self.session = Session(connect, max_packet_size=self.config.max_packet_size,
                               downgrade_qos=self.config.downgrade_qos, manual_acks=True)
        self.pool.control = self._reserve_stream()
        if adopt is not None:
            self.session.adopt(adopt.session)
            self.in_flight = adopt.in_flight
        self.session.open_channel(self.pool.control)
        self.session.connect(self._loop.time())
        self._flush()


    def mqtt_publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                     properties: dict[str, Any] | None = None, stream_id: int | None = None,
                     flow: StoredFlow | None = None) -> tuple[int, int | None]:
        """Queue a PUBLISH on the topic's stream: ``(stream_id, packet_id)``. A stored
        message (``flow``) keeps its packet id where flows outlive the connection
        (a persistent session's control stream), and its QoS 2 PUBREL waits for
        ``flow.received``."""
        session = self._require_session()
        if stream_id is None:
            stream_id = self._stream(self.pool.publish_key(topic, qos))
        own = flow is not None and self.pool.outlives_connection(stream_id)
        packet_id = session.publish(
            topic, payload, qos, retain, properties, channel=stream_id, now=self._loop.time(),
            packet_id=flow.packet_id if own and flow else None, dup=bool(flow and flow.dup),
            hold_release=own and flow is not None and flow.received is not None)
        if own and flow is not None and flow.received is not None and packet_id is not None:
            self.in_flight.received[stream_id, packet_id] = flow.received
        self._flush()
        return stream_id, packet_id

    def _reserve_stream(self) -> int:
        stream_id: int = self._quic.get_next_available_stream_id()
        # aioquic reserves an id only once something is written: write nothing now, so
        # the next call cannot hand out the same id.
        self._quic.send_stream_data(stream_id, b"")
        return stream_id

    def _open_data_stream(self) -> int:
        stream_id = self._reserve_stream()
        self._require_session().open_channel(stream_id)
        return stream_id

    def _stream(self, key: str | None) -> int:
        return self.pool.stream_for(key, credit=self._stream_credit(),
                                    open_stream=self._open_data_stream)

    def _stream_credit(self) -> bool:
        """Whether the server lets us open one more bidirectional stream now. Before the
        handshake its limit is unknown (0-RTT): streams wait inside aioquic until then."""
        allowed = _aioquic.streams_allowed(self._quic)
        if self.handshake is None or allowed is None:
            return True
        return self._quic.get_next_available_stream_id() // 4 < allowed

    async def _stream_for(self, key: str | None) -> int:
        """The stream for ``key``, waiting (bounded) for stream credit when the server has
        none to give yet: streams closed a moment ago free theirs one round trip later,
        when their end reaches the server. StreamLimitReached after the wait."""
        # Half the operation's deadline at most: the error then names the cause.
        limit = min(STREAM_CREDIT_WAIT, self.config.operation_timeout / 2)
        give_up = self._loop.time() + limit
        while True:
            try:
                return self._stream(key)
            except NoStreamCredit:
                if self._loop.time() >= give_up:
                    raise StreamLimitReached(
                        f"the server granted no QUIC stream credit within {limit:g} s: it allows"
                        f" {_aioquic.streams_allowed(self._quic)} bidirectional streams, and"
                        " they are all opened") from None
                await asyncio.sleep(0.02)
                self._require_session()

    @property
    def limits(self) -> ServerLimits:
        return self.session.limits if self.session is not None else super().limits

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                      properties: dict[str, Any] | None = None,
                      flow: StoredFlow | None = None) -> None:
        self._require_session()
        if not qos or (flow is not None and flow.released):
            # 0-RTT data can be replayed, and a replayed QoS 0 message is delivered twice;
            # a released flow needs to know whether the broker kept the session.
            await self._after_connack()
        key = self.pool.publish_key(topic, qos)
        stream_id = self.pool.known(key)
        if stream_id is None:
            stream_id = await self._stream_for(key)
        if flow is not None and flow.released:
            # A persistent session's QoS 2 rides the control stream, whose flows go on.
            if flow.gone_with_session(self.session_present, topic):
                return
            self._require_session().release(stream_id, flow.packet_id, self._loop.time())
            self._flush()
            packet_id: int | None = flow.packet_id
        else:
            stream_id, packet_id = self.mqtt_publish(topic, payload, qos, retain, properties,
                                                     stream_id, flow)
        if packet_id is None:
            return
        code: int = await self.in_flight.wait(stream_id, packet_id)
        if not (flow.succeeded(code) if flow is not None else code < 0x80):
            raise PublishFailed(topic, code, reason_code_name(code, PacketType.PUBACK))

    async def subscribe(self, subscriptions: list[Subscription],
                        properties: dict[str, Any] | None = None) -> list[int]:
        await self._after_connack()
        session = self._require_session()
        # All filters first: one refused must not leave the others subscribed on their streams.
        session.limits.check_subscribe([s.topic_filter for s in subscriptions], properties)

        def request(stream_id: int, indexes: list[int]) -> int:
            return session.subscribe([subscriptions[i] for i in indexes], channel=stream_id,
                                     properties=properties, now=self._loop.time())

        return await self._acks_per_stream([s.topic_filter for s in subscriptions], request)

    async def unsubscribe(self, topic_filters: list[str],
                          properties: dict[str, Any] | None = None) -> list[int]:
        await self._after_connack()
        session = self._require_session()

        def request(stream_id: int, indexes: list[int]) -> int:
            return session.unsubscribe([topic_filters[i] for i in indexes], channel=stream_id,
                                       properties=properties, now=self._loop.time())

        return await self._acks_per_stream(topic_filters, request)

    async def _acks_per_stream(self, topic_filters: list[str],
                               request: Callable[[int, list[int]], int]) -> list[int]:
        """One (UN)SUBSCRIBE per stream, each filter on its own stream, all in flight at
        once. Reason codes come back in the order of ``topic_filters`` (none at all for
        an MQTT 3.1.1 UNSUBACK)."""
        groups: dict[int, list[int]] = {}
        for index, topic_filter in enumerate(topic_filters):
            stream_id = await self._stream_for(self.pool.subscription_key(topic_filter))
            groups.setdefault(stream_id, []).append(index)
        waiters = [(indexes, self.in_flight.wait(stream_id, request(stream_id, indexes)))
                   for stream_id, indexes in groups.items()]
        self._flush()
        codes: list[int | None] = [None] * len(topic_filters)
        for indexes, waiter in waiters:
            for index, code in zip(indexes, await waiter):
                codes[index] = code
        return [code for code in codes if code is not None]

    async def confirm_alive(self, within: float) -> bool:
        session = self.session
        if not self.is_connected or session is None:
            return False
        if self._pong is None or self._pong.done():
            self._pong = self._loop.create_future()
            session.ping(self._loop.time())
            self._flush()
        with contextlib.suppress(asyncio.TimeoutError, ConnectError):
            await asyncio.wait_for(asyncio.shield(self._pong), within)
        return self.is_connected and self._pong.done() and not self._pong.exception()

    async def disconnect(self, reason_code: int = 0,
                         properties: dict[str, Any] | None = None) -> None:
        if self._closing:
            return
        if self.wants_ticket and not self.ticket_received.is_set() and self.is_connected:
            # The server sends its session ticket a round trip after the handshake. A
            # device that connects, publishes once and leaves would close first, and its
            # next connect would be a full handshake: wait for the ticket, briefly.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.ticket_received.wait(), min(1.0, 4 * self._rtt))
        # DISCONNECT rides the control stream and the server may act on it before it has
        # read the data streams (QUIC orders bytes within a stream only): a QoS 0 publish
        # made just before disconnect() would be lost.
        if self.is_connected:
            await self._delivered(self.pool.data_streams)
        self._closing = True
        self._user_closing = True
        if self.session is not None and self.session.state != "closed":
            self.session.disconnect(reason_code, properties, now=self._loop.time())
            self._flush()
            if not self._lost:
                # DISCONNECT acknowledged, then CONNECTION_CLOSE: a DISCONNECT lost with
                # the connection's end would make the broker publish the Will.
                await self._delivered([CONTROL])
        await self._close_quic()

    async def _delivered(self, stream_ids: Iterable[int]) -> None:
        """Wait, briefly (at most 4 RTT, and 1 s), until the server has acknowledged
        every byte sent on ``stream_ids``."""
        await until_acknowledged(self._quic, stream_ids, within=min(1.0, 4 * self._rtt))

    async def wait_closed(self) -> None:
        """aioquic waits out the closing period (3 PTO, about 100 ms on loopback) after
        CONNECTION_CLOSE; it only answers a peer that keeps sending. A client that
        disconnects on purpose has had its DISCONNECT acknowledged, and a port that
        refused the handshake has nobody to answer: those leave at once."""
        if self._user_closing or self._port_refused:
            return
        await super().wait_closed()

    async def migrate(self, local_host: str | None = None, timeout: float = 3.0) -> None:
        """Move this connection to a new UDP socket, keeping the QUIC connection and the
        MQTT session: for an app that knows its network changed (Wi-Fi to cellular).
        The server validates the new path; an observer cannot link the two (a fresh
        connection ID). ConnectError, and the connection stays on the old socket, when
        the new path does not answer within ``timeout`` (QUIC re-sends what it ate)."""
        if self._lost or self._closing or self._transport is None:
            raise ConnectError("not connected")
        await move(self, local_host, timeout, self._rtt)

    async def wait_connected(self) -> None:
        try:
            await super().wait_connected()
        except asyncio.CancelledError:
            # A connect that gave up (timeout, lost race): aioquic fails its handshake
            # future later, when the connection ends, and nobody awaits it any more; asyncio
            # would log "Future exception was never retrieved".
            if self._connected_waiter is not None:
                self._connected_waiter.add_done_callback(_retrieve)
            raise

    def abort(self) -> None:
        self._closing = True
        self._stop_timers()
        self.close(reason_phrase="closed by the client")
        self._fail_waiters(ConnectError("connection closed"))
        if self._transport is not None:
            self._transport.close()

    async def _close_quic(self) -> None:
        self._stop_timers()
        self._fail_waiters(ConnectError("connection closed"))
        if self._context is not None:
            context, self._context = self._context, None
            try:
                await asyncio.wait_for(context.__aexit__(None, None, None), 2.0)
            except TimeoutError:
                logger.debug("QUIC close did not finish within 2 s")

    def carry_over(self) -> Carry | None:
        """What a persistent session (clean_start false) hands to its next connection:
        this session, and the waits for its flows on the control stream."""
        if self.session is None or self.config.clean_start:
            return None
        return Carry(self.session, self.in_flight)

    @property
    def streams_open(self) -> int:
        return 1 + len(self.pool.data_streams) if self.is_connected else 0


async def connect_quic(config: ConnectionConfig, *, will: Will | None = None,
                       properties: dict[str, Any] | None = None,
                       tls: TLSMaterial | None = None,
                       session_ticket: SessionTicket | None = None,
                       ticket_handler: Callable[[SessionTicket, float | None], None]
                       | None = None,
                       initial_rtt: float | None = None,
                       adopt: Carry | None = None,
                       early_messages: list[EarlyMessage] | None = None,
                       handshake: asyncio.Event | None = None) -> QuicTransport:
    """Open a QUIC connection, send CONNECT on the control stream, wait for CONNACK
    (with ``config.early_publish`` and a ticket that allows 0-RTT: return once CONNECT
    is in flight, and check the CONNACK when it comes, ``QuicTransport.settle``).

    Raises ConnectionRefused for a refused CONNACK and ConnectError for anything
    else (timeout, TLS verification, network), within ``config.connect_timeout``;
    TLSFileError for a TLS file that cannot be used, before any packet (``tls``: the
    files already read by the caller).
    """
    dial = _Dial(config, tls, session_ticket, ticket_handler, initial_rtt, handshake)
    started = time.monotonic()
    connect = connect_packet(config, will, properties)
    if config.early_publish and allows_early_data(session_ticket):
        protocol = await dial.in_flight(connect, adopt, early_messages or [])
        protocol.settle(dial.where, started)
        protocol.connect_time = time.monotonic() - started
        logger.info("CONNECT in flight over QUIC to %s (0-RTT, early publish)", dial.where)
        return protocol
    protocol, result = await dial.connack(connect, adopt, early_messages or [])
    if isinstance(result, ev.ConnectFailed):
        # Raise now: the close drains in the background (aioquic waits 100-225 ms), and a
        # racing TCP+TLS attempt must not start meanwhile with the same refused CONNECT.
        protocol._closing = True
        protocol._closer = asyncio.ensure_future(protocol._close_quic())
        raise ConnectionRefused(result.reason_code, result.reason_name)
    assert isinstance(result, ev.Connected)
    protocol.connect_time = time.monotonic() - started
    protocol.session_present = result.session_present
    logger.info("connected over QUIC to %s in %.1f ms", dial.where, protocol.connect_time * 1000)
    return protocol


class _Dial:
    """One attempt at a QUIC connection, up to its CONNACK (``connect_quic``)."""

    def __init__(self, config: ConnectionConfig, tls: TLSMaterial | None,
                 ticket: SessionTicket | None,
                 ticket_handler: Callable[[SessionTicket, float | None], None] | None,
                 initial_rtt: float | None, handshake: asyncio.Event | None) -> None:
        self.config = config
        self.where = f"{config.host}:{config.quic_port}"
        self.protocol: QuicTransport | None = None
        self.refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._handshake = handshake
        self._ticket_handler = ticket_handler
        self._resuming = ticket is not None
        configuration = quic_configuration(config, tls)
        configuration.session_ticket = ticket
        if initial_rtt is not None:
            # The path's RTT from the last connection: a lost Initial is sent again after
            # 2 x this, not after aioquic's default 200 ms. Not below 10 ms: on loopback
            # that would only resend what is not lost.
            configuration.initial_rtt = max(0.01, initial_rtt)
        # With a ticket, CONNECT goes out in the first flight as 0-RTT data. By default
        # nothing else does: 0-RTT data can be replayed by an attacker, and CONNECT is
        # the one packet that is safe to repeat. Early messages (QoS 0 only, the
        # caller's explicit choice) follow CONNECT in the same flight.
        self.context = quic_connect(
            config.host, config.quic_port, configuration=configuration,
            create_protocol=self._create_protocol,
            session_ticket_handler=None if ticket_handler is None else self._got_ticket,
            wait_connected=ticket is None)

    def _create_protocol(self, *args: Any, **kwargs: Any) -> QuicTransport:
        protocol = QuicTransport(*args, config=self.config, **kwargs)
        # Resuming: the first flight carries 0-RTT data (CONNECT, early publishes), and
        # goes twice; a full handshake takes two round trips anyway. Then the first
        # flights after the first RTT sample: Finished, CONNECT, the first publishes.
        protocol.early_repeats = 1 if self._resuming else 0
        protocol.warmup_repeats = 4
        protocol.refused = self.refused
        protocol.handshake_event = self._handshake
        protocol.wants_ticket = self._ticket_handler is not None
        self.protocol = protocol
        return protocol

    def _got_ticket(self, ticket: SessionTicket) -> None:
        assert self._ticket_handler is not None
        rtt_ms = self.protocol.rtt_ms if self.protocol is not None else None
        if self.protocol is not None:
            self.protocol.ticket_received.set()
        self._ticket_handler(ticket, rtt_ms / 1000 if rtt_ms is not None else None)

    async def connack(self, connect: Connect, adopt: Carry | None,
                      early: list[EarlyMessage]) -> tuple[QuicTransport, ev.Event]:
        """The connection and its CONNACK event, within the connect timeout."""
        return await self._bounded(self._unless_refused(connect, adopt, early))

    async def in_flight(self, connect: Connect, adopt: Carry | None,
                        early: list[EarlyMessage]) -> QuicTransport:
        """The connection with CONNECT queued in its 0-RTT flight (no waiting: with a
        ticket, aioquic does not wait for the handshake)."""
        return await self._bounded(self._send_connect(connect, adopt, early))

    async def _bounded(self, step: Awaitable[T]) -> T:
        """``step`` within the connect timeout; its failures as ConnectError, with the
        half-open connection dropped."""
        config = self.config
        try:
            return await asyncio.wait_for(step, config.connect_timeout)
        except asyncio.CancelledError:
            # Lost a race (the TCP+TLS fallback won): drop the half-open connection.
            if self.protocol is not None:
                self.protocol.abort()
            raise
        except TimeoutError:
            await self._abandon()
            raise ConnectError(f"QUIC connect to {self.where} timed out after"
                               f" {config.connect_timeout} s (no answer on UDP?)") from None
        except ConnectionError as exc:
            reason = self.protocol.terminated_reason if self.protocol is not None else None
            await self._abandon()
            raise ConnectError(f"QUIC connect to {self.where} failed: {reason or exc}") from exc
        except MQTTQUICError:
            await self._abandon()
            raise
        except OSError as exc:
            await self._abandon()
            raise ConnectError(f"QUIC connect to {self.where} failed: {exc}") from exc

    async def _send_connect(self, connect: Connect, adopt: Carry | None,
                            early: list[EarlyMessage]) -> QuicTransport:
        protocol = await self.context.__aenter__()
        assert isinstance(protocol, QuicTransport)
        protocol._context = self.context
        protocol.mqtt_connect(connect, adopt)
        for topic, payload, retain, props in early:
            protocol.mqtt_publish(topic, payload, 0, retain, props)
        return protocol

    async def _establish(self, connect: Connect, adopt: Carry | None,
                         early: list[EarlyMessage]) -> tuple[QuicTransport, ev.Event]:
        protocol = await self._send_connect(connect, adopt, early)
        return protocol, await protocol._connack

    async def _unless_refused(self, connect: Connect, adopt: Carry | None,
                              early: list[EarlyMessage]) -> tuple[QuicTransport, ev.Event]:
        establishing = asyncio.ensure_future(self._establish(connect, adopt, early))
        try:
            either: set[asyncio.Future[Any]] = {establishing, self.refused}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not establishing.done():
                establishing.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await establishing
        if not establishing.cancelled():
            return establishing.result()
        raise ConnectError(f"QUIC connect to {self.where} refused: nothing listens on that UDP"
                           " port (ICMP port unreachable)")

    async def _abandon(self) -> None:
        if self.protocol is not None and self.protocol._context is not None:
            self.protocol._closing = True
            await self.protocol._close_quic()


def allows_early_data(ticket: SessionTicket | None) -> bool:
    """Whether resuming with ``ticket`` sends 0-RTT data (the server allowed it)."""
    return ticket is not None and bool(getattr(ticket, "max_early_data_size", None))


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
