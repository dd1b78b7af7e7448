"""MQTT over QUIC with aioquic, as EMQX defines it: a pump between aioquic and the
sans-I/O ``Session``.

What is decided elsewhere: which stream a topic rides (``_streams.StreamPool``), when
the path is dead and how the connection moves (``_path``), what waits for which
acknowledgement (``_inflight.InFlight``), aioquic's configuration (``_quic_setup``),
and everything aioquic keeps private (``_aioquic``). This module carries bytes and
events between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any

from aioquic.asyncio.client import connect as quic_connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)
from aioquic.tls import SessionTicket

from .. import _aioquic
from .. import events as ev
from .._handshake_probe import ProbeCarriesData
from .._inflight import Carry, InFlight
from .._mqtt_quic import ALPN, AppError, end_stream, send_or_drop, until_acknowledged
from .._resets import is_stateless_reset
from .._tls import TLSMaterial
from ..codec import Connect, Subscription, Will
from ..config import ConnectionConfig, TransportType
from ..enums import PacketType
from ..errors import (
    ConnectError,
    ConnectionRefused,
    MQTTQUICError,
    PublishFailed,
    StreamClosed,
    StreamLimitReached,
    StreamRefused,
)
from ..limits import ServerLimits
from ..message import Message
from ..reason_codes import reason_code_name
from ..session import CONTROL, Session
from ._path import PathWatch, move
from ._quic_setup import quic_configuration, report_icmp_errors
from ._streams import NoStreamCredit, StreamPool
from .base import Transport, connect_packet

__all__ = ["ALPN", "QuicTransport", "connect_quic", "quic_configuration"]

logger = logging.getLogger("mqttquic.quic")

# Longest wait for QUIC stream credit (MAX_STREAMS) before a new data stream gives up.
STREAM_CREDIT_WAIT = 5.0

EarlyMessage = tuple[str, bytes, bool, "dict[str, Any] | None"]


class QuicTransport(ProbeCarriesData, Transport):
    """One QUIC connection carrying one MQTT session."""

    transport_type = TransportType.QUIC

    def __init__(self, *args: Any, config: ConnectionConfig, **kwargs: Any) -> None:
        ProbeCarriesData.__init__(self, *args, **kwargs)
        Transport.__init__(self)
        self.config = config
        self.session: Session | None = None
        self.pool = StreamPool(multi_stream=config.multi_stream, max_streams=config.max_streams,
                               persistent=not config.clean_start)
        self.in_flight = InFlight()
        self._connack: asyncio.Future[ev.Event] = self._loop.create_future()
        self._pong: asyncio.Future[None] | None = None
        self._mqtt_timer: asyncio.TimerHandle | None = None
        self._context: AbstractAsyncContextManager[QuicConnectionProtocol] | None = None
        self._closing = False
        self._user_closing = False
        self._lost = False
        self.terminated_reason: str | None = None
        self.handshake: HandshakeCompleted | None = None
        # Set when the QUIC handshake completes (the client's race then skips TCP+TLS).
        self.handshake_event: asyncio.Event | None = None
        self.path = PathWatch(self, keepalive=config.keepalive, on_dead=self._connection_lost)
        # Background close of a refused connection (kept so it is not collected).
        self._closer: asyncio.Task[None] | None = None
        # Session tickets are kept (0-RTT): disconnect() waits briefly for the next one.
        self.wants_ticket = False
        self.ticket_received = asyncio.Event()
        # Resolved when the server's port refuses the handshake (ICMP port unreachable).
        self.refused: asyncio.Future[None] | None = None
        self._port_refused = False

    @property
    def control_stream(self) -> int | None:
        return self.pool.control

    @property
    def streams(self) -> dict[int, str]:
        """stream id -> the topic (or filter) that opened it."""
        return self.pool.topics

    # --- aioquic events -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        report_icmp_errors(transport)

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        # aioquic ignores stateless resets: a server that restarted (and lost this
        # connection) would then be noticed only after the idle timeout.
        if (isinstance(data, bytes) and self.handshake is not None and not self._lost
                and is_stateless_reset(data, _aioquic.peer_reset_tokens(self._quic))):
            self._connection_lost(ConnectError(
                "the server reset the connection (stateless reset): it restarted or lost it"))
            return
        super().datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        """An ICMP error for one of our datagrams. "Port unreachable" during the handshake
        means nothing listens there: the connect fails now, not at its timeout (as TCP's
        RST does). Once connected it is ignored: anyone on the path can forge ICMP."""
        if (isinstance(exc, ConnectionRefusedError) and self.handshake is None
                and self.refused is not None and not self.refused.done()):
            self._port_refused = True
            self.refused.set_result(None)
        else:
            logger.debug("ICMP error on the QUIC socket ignored: %s", exc)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            if self.session is not None and event.data:
                self.session.receive_data(event.stream_id, event.data, self._loop.time())
                self._after_session()
            if event.end_stream and event.stream_id != self.control_stream:
                self._stream_closed(event.stream_id, "the server finished the stream")
                self._end_our_side(event.stream_id, reset=False)
        elif isinstance(event, StreamReset):
            self._stream_closed(event.stream_id, f"the server reset it (code {event.error_code:#x})",
                                event.error_code)
            self._end_our_side(event.stream_id, reset=True)
        elif isinstance(event, HandshakeCompleted):
            self.handshake = event
            self.session_resumed = event.session_resumed
            self.zero_rtt_used = event.early_data_accepted
            logger.debug("QUIC handshake done (resumed=%s, 0-RTT accepted=%s)",
                         event.session_resumed, event.early_data_accepted)
            if self.handshake_event is not None:
                self.handshake_event.set()
            self.path.start()
        elif isinstance(event, ConnectionTerminated):
            self.terminated_reason = event.reason_phrase or f"error code {event.error_code}"
            if not self._closing:
                self._connection_lost(ConnectError(f"QUIC connection closed: {self.terminated_reason}"))

    # --- MQTT -------------------------------------------------------------------------------

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
                     properties: dict[str, Any] | None = None,
                     stream_id: int | None = None) -> tuple[int, int | None]:
        """Queue a PUBLISH on the topic's stream: ``(stream_id, packet_id)``."""
        session = self._require_session()
        if stream_id is None:
            stream_id = self._stream(self.pool.publish_key(topic, qos))
        packet_id = session.publish(topic, payload, qos, retain, properties, channel=stream_id,
                                    now=self._loop.time())
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

    # --- Transport interface ----------------------------------------------------------------

    @property
    def limits(self) -> ServerLimits:
        return self.session.limits if self.session is not None else super().limits

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                      properties: dict[str, Any] | None = None) -> None:
        self._require_session()
        stream_id = await self._stream_for(self.pool.publish_key(topic, qos))
        stream_id, packet_id = self.mqtt_publish(topic, payload, qos, retain, properties,
                                                 stream_id)
        if packet_id is None:
            return
        code: int = await self.in_flight.wait(stream_id, packet_id)
        if code >= 0x80:
            raise PublishFailed(topic, code, reason_code_name(code, PacketType.PUBACK))

    async def subscribe(self, subscriptions: list[Subscription],
                        properties: dict[str, Any] | None = None) -> list[int]:
        session = self._require_session()
        # All filters first: one refused must not leave the others subscribed on their streams.
        session.limits.check_subscribe([s.topic_filter for s in subscriptions], properties)

        def request(stream_id: int, indexes: list[int]) -> int:
            return session.subscribe([subscriptions[i] for i in indexes], channel=stream_id,
                                     properties=properties, now=self._loop.time())

        return await self._acks_per_stream([s.topic_filter for s in subscriptions], request)

    async def unsubscribe(self, topic_filters: list[str],
                          properties: dict[str, Any] | None = None) -> list[int]:
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
    def is_connected(self) -> bool:
        return (self.session is not None and self.session.state == "connected"
                and not self._lost and not self._closing)

    @property
    def bytes_sent(self) -> int:
        return self.session.bytes_sent if self.session else 0

    @property
    def bytes_received(self) -> int:
        return self.session.bytes_received if self.session else 0

    @property
    def rtt_ms(self) -> float | None:
        rtt = _aioquic.smoothed_rtt(self._quic)
        return round(rtt * 1000, 3) if rtt is not None else None

    @property
    def _rtt(self) -> float:
        """The smoothed RTT in seconds, 100 ms until one is measured: bounds short waits."""
        return (self.rtt_ms or 100.0) / 1000

    @property
    def streams_open(self) -> int:
        return 1 + len(self.pool.data_streams) if self.is_connected else 0

    # --- the pump -------------------------------------------------------------------------

    def _require_session(self) -> Session:
        if self.session is None or self._lost or self._closing:
            raise ConnectError("not connected")
        return self.session

    def _flush(self) -> None:
        session = self.session
        if session is None:
            return
        wrote = False
        for stream_id, data in session.data_to_send():
            if not send_or_drop(self._quic, stream_id, data):
                logger.warning("stream %d cannot carry %d more bytes: it ended", stream_id, len(data))
                continue
            wrote = True
        if wrote:
            # One transmit per loop iteration: concurrent publishes share datagrams.
            self._transmit_soon()
        self._schedule_timer()

    def _schedule_timer(self) -> None:
        session = self.session
        deadline = session.next_timer() if session is not None else None
        if self._mqtt_timer is not None:
            if deadline is not None and self._mqtt_timer.when() == deadline:
                return
            self._mqtt_timer.cancel()
            self._mqtt_timer = None
        if deadline is not None:
            self._mqtt_timer = self._loop.call_at(deadline, self._on_mqtt_timer)

    def _stop_timers(self) -> None:
        """Stop the keepalive timer, the idle PINGs and the path check."""
        if self._mqtt_timer is not None:
            self._mqtt_timer.cancel()
            self._mqtt_timer = None
        self.path.stop()

    def _on_mqtt_timer(self) -> None:
        self._mqtt_timer = None
        if self.session is not None:
            self.session.handle_timer(self._loop.time())
            self._after_session()

    def _acknowledge(self, session: Session, channel: int, packet_id: int) -> None:
        """The application took a QoS 1/2 message: its PUBACK/PUBREC goes out, on the
        connection it came on (a later one numbers its packets anew)."""
        if session is self.session and not self._lost:
            session.acknowledge(channel, packet_id, self._loop.time())
            self._flush()

    def _after_session(self) -> None:
        session = self.session
        assert session is not None
        for event in session.events():
            self._handle_event(session, event)
        self._flush()

    def _handle_event(self, session: Session, event: ev.Event) -> None:
        if isinstance(event, ev.MessageReceived):
            packet = event.packet
            ack = (None if packet.packet_id is None
                   else partial(self._acknowledge, session, event.channel, packet.packet_id))
            self.on_message(Message(packet.topic, packet.payload, packet.qos, packet.retain,
                                    packet.properties, event.channel, ack))
        elif isinstance(event, ev.PublishCompleted):
            self.in_flight.resolve(event.channel, event.packet_id, event.reason_code)
        elif isinstance(event, ev.SubscribeCompleted):  # and UnsubscribeCompleted
            self.in_flight.resolve(event.channel, event.packet_id, event.reason_codes)
        elif isinstance(event, (ev.Connected, ev.ConnectFailed)):
            if not self._connack.done():
                self._connack.set_result(event)
        elif isinstance(event, ev.PongReceived):
            if self._pong is not None and not self._pong.done():
                self._pong.set_result(None)
        elif isinstance(event, ev.ChannelFailed):
            self._stream_closed(event.channel, event.reason, closed_by_session=True)
            self._end_our_side(event.channel, reset=True)
        else:
            self._connection_lost(ConnectError(_why_ended(event)))

    def _fail_waiters(self, exc: BaseException) -> None:
        session = self.session
        keep: set[tuple[int, int]] = set()
        if session is not None and not self._user_closing:
            # A persistent session continues these on the next connection (carry_over()).
            keep = {(channel, packet.packet_id) for channel, packet in session.unacknowledged()
                    if self.pool.outlives_connection(channel) and packet.packet_id is not None}
        self.in_flight.fail(exc, keep=keep.__contains__)
        for future in (self._connack, self._pong):
            if future is not None and not future.done():
                future.set_exception(exc)
                future.exception()

    def _end_our_side(self, stream_id: int, reset: bool) -> None:
        """The server ended a data stream: end our sending side too. A half-open stream
        keeps counting against the server's stream limit (EMQX: 10), and once they are
        all used no new stream can open."""
        if stream_id == self.control_stream or self._lost:
            return
        ended = (end_stream(self._quic, stream_id, 0) if reset
                 else send_or_drop(self._quic, stream_id, b"", end=True))
        if ended:  # else it had ended already (or never opened on our side)
            self._transmit_soon()

    def _stream_closed(self, stream_id: int, why: str, error_code: int | None = None, *,
                       closed_by_session: bool = False) -> None:
        if self.session is None or self._closing:
            return
        if stream_id == self.control_stream:
            self._connection_lost(ConnectError(f"control stream closed: {why}"))
            return
        if not self.pool.is_data_stream(stream_id) and not closed_by_session:
            return  # already closed (say, the broker's DISCONNECT came before the reset)
        logger.info("data stream %d closed: %s", stream_id, why)
        unfinished = [] if closed_by_session else self.session.close_channel(stream_id,
                                                                             self._loop.time())
        self.pool.close(stream_id)
        kind = StreamRefused if error_code == AppError.TOO_MANY_STREAMS else StreamClosed
        self.in_flight.fail_channel(stream_id, kind(f"stream {stream_id} closed: {why}",
                                                    error_code))
        if unfinished:
            # Not a warning: publish() sends them again (and says so if it gives up).
            logger.info("%d publishes on stream %d were not acknowledged", len(unfinished),
                        stream_id)

    def _connection_lost(self, exc: ConnectError) -> None:
        if self._lost:
            return
        self._lost = True
        # Reported, not logged: the connector logs a lost connection once, with what it
        # does next (a probe or a lost race is no loss at all).
        logger.debug("QUIC connection ended: %s", exc)
        self._stop_timers()
        self._fail_waiters(exc)
        if not self._closing:
            self.close(reason_phrase=str(exc)[:100])
            self.on_lost(exc)


# The seed's name for the QUIC transport (a QUIC connection protocol of aioquic's).
MQTTQuicAdvancedProtocol = QuicTransport


def _why_ended(event: ev.Event) -> str:
    """The reason a session event ends the connection."""
    if isinstance(event, ev.KeepaliveTimeout):
        return f"no PINGRESP for {event.waited:.1f} s"
    if isinstance(event, ev.ProtocolViolation):
        return f"protocol violation: {event.reason}"
    if isinstance(event, ev.ServerDisconnected):
        return f"broker disconnected: {event.reason_name} (0x{event.reason_code:02X})"
    raise AssertionError(f"unexpected session event {event!r}")


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
    """Open a QUIC connection, send CONNECT on the control stream, wait for CONNACK.

    Raises ConnectionRefused for a refused CONNACK and ConnectError for anything
    else (timeout, TLS verification, network), within ``config.connect_timeout``;
    TLSFileError for a TLS file that cannot be used, before any packet (``tls``: the
    files already read by the caller).
    """
    dial = _Dial(config, tls, session_ticket, ticket_handler, initial_rtt, handshake)
    started = time.monotonic()
    protocol, result = await dial.connack(connect_packet(config, will, properties), adopt,
                                          early_messages or [])
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
        config = self.config
        try:
            return await asyncio.wait_for(self._unless_refused(connect, adopt, early),
                                          config.connect_timeout)
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

    async def _establish(self, connect: Connect, adopt: Carry | None,
                         early: list[EarlyMessage]) -> tuple[QuicTransport, ev.Event]:
        protocol = await self.context.__aenter__()
        assert isinstance(protocol, QuicTransport)
        protocol._context = self.context
        protocol.mqtt_connect(connect, adopt)
        for topic, payload, retain, props in early:
            protocol.mqtt_publish(topic, payload, 0, retain, props)
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


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
