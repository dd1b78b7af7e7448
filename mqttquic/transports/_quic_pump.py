"""The half of the QUIC transport that moves things: bytes and events between aioquic
and the sans-I/O ``Session``, its timers, and the end of streams and of the connection.

``quic.QuicTransport`` builds the MQTT requests on top of it; which stream a topic
rides is the ``StreamPool``'s, the path's health the ``PathWatch``'s, and what waits
for which acknowledgement the ``InFlight`` table's.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any, cast

from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)

from .. import _aioquic
from .. import events as ev
from .._handshake_probe import ProbeCarriesData, resend_rejected_early_data
from .._inflight import InFlight, release_when_recorded
from .._mqtt_quic import AppError, end_stream, send_or_drop
from .._resets import is_stateless_reset
from ..config import ConnectionConfig
from ..errors import ConnectError, StreamClosed, StreamRefused
from ..message import Message
from ..session import Session
from ._path import PathWatch
from ._quic_setup import report_icmp_errors
from ._streams import StreamPool
from .base import Transport

__all__ = ["QuicPump"]

logger = logging.getLogger("mqttquic.quic")


class QuicPump(ProbeCarriesData, Transport):
    """aioquic's events into the Session, the Session's bytes and events out."""

    def __init__(self, *args: Any, config: ConnectionConfig, **kwargs: Any) -> None:
        ProbeCarriesData.__init__(self, *args, **kwargs)
        Transport.__init__(self)
        self.config = config
        self.session: Session | None = None
        self.pool = StreamPool(multi_stream=config.multi_stream, max_streams=config.max_streams,
                               persistent=not config.clean_start)
        self.in_flight = InFlight()
        self._connack: asyncio.Future[ev.Event] = self._loop.create_future()
        # early_publish: CONNECT is in flight and the CONNACK is still to come.
        self.provisional = False
        self._pong: asyncio.Future[None] | None = None
        self._mqtt_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._user_closing = False
        self._lost = False
        self.terminated_reason: str | None = None
        self.handshake: HandshakeCompleted | None = None
        # Set when the QUIC handshake completes (the client's race then skips TCP+TLS).
        self.handshake_event: asyncio.Event | None = None
        self.path = PathWatch(self, keepalive=config.keepalive, on_dead=self._connection_lost)
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

    def transmit(self) -> None:
        super().transmit()
        self.path.sent()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        report_icmp_errors(transport)

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        # aioquic's own datagram_received with two changes. Its transmit waits for the
        # next turn of the loop: a PUBACK wakes the publisher first, and its next PUBLISH
        # leaves in one datagram with the ACK (aioquic delays the ACK 1 ms, so the
        # transmit it made at once sent nothing). And stateless resets, which aioquic
        # ignores: a server that restarted (and lost this connection) would be noticed
        # only after the idle timeout.
        datagram = cast(bytes, data)
        idle_deadline = _aioquic.idle_deadline(self._quic)
        self._quic.receive_datagram(datagram, addr, now=self._loop.time())
        # RFC 9000, 10.3.1: the check may be skipped when a packet of the datagram was
        # processed, which moves the idle deadline; a reset is one aioquic could not.
        if (_aioquic.idle_deadline(self._quic) == idle_deadline and self.handshake is not None
                and not self._lost
                and is_stateless_reset(datagram, _aioquic.peer_reset_tokens(self._quic))):
            self._connection_lost(ConnectError(
                "the server reset the connection (stateless reset): it restarted or lost it"))
            return
        self._process_events()
        self._transmit_soon()

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
            if not event.early_data_accepted:
                # Whatever went out as 0-RTT data (CONNECT, early publishes) is lost.
                resend_rejected_early_data(self._quic, self._loop.time())
            if self.handshake_event is not None:
                self.handshake_event.set()
            self.path.start()
        elif isinstance(event, ConnectionTerminated):
            self.terminated_reason = event.reason_phrase or f"error code {event.error_code}"
            if not self._closing:
                self._connection_lost(ConnectError(f"QUIC connection closed: {self.terminated_reason}"))

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
            # One transmit per loop iteration: concurrent publishes share datagrams,
            # and the ACK of what came last rides with them.
            _aioquic.ack_now(self._quic, self._loop.time())
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

    def _release(self, session: Session, channel: int, packet_id: int) -> None:
        """PUBREL for a QoS 2 flow whose PUBREC is recorded, on the connection that got
        it (if it has gone, the next one asks again: the PUBLISH goes with DUP)."""
        if session is self.session and not self._lost:
            session.release(channel, packet_id, self._loop.time())
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
        elif isinstance(event, ev.PublishReceived):  # a stored QoS 2 message's PUBREC
            release_when_recorded(self.in_flight, event.channel, event.packet_id,
                                  partial(self._release, session, event.channel,
                                          event.packet_id), logger)
        elif isinstance(event, ev.SubscribeCompleted):  # and UnsubscribeCompleted
            self.in_flight.resolve(event.channel, event.packet_id, event.reason_codes)
        elif isinstance(event, (ev.Connected, ev.ConnectFailed)):
            if not self._connack.done():
                self._connack.set_result(event)
            if isinstance(event, ev.Connected):  # early publish: no longer provisional
                self.provisional = False
                self.session_present = event.session_present
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




def _why_ended(event: ev.Event) -> str:
    """The reason a session event ends the connection."""
    if isinstance(event, ev.KeepaliveTimeout):
        return f"no PINGRESP for {event.waited:.1f} s"
    if isinstance(event, ev.ProtocolViolation):
        return f"protocol violation: {event.reason}"
    if isinstance(event, ev.ServerDisconnected):
        return f"broker disconnected: {event.reason_name} (0x{event.reason_code:02X})"
    raise AssertionError(f"unexpected session event {event!r}")
