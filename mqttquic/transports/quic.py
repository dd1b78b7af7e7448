"""MQTT over QUIC with aioquic, as EMQX defines it.

The first client bidirectional stream is the control stream (CONNECT, PINGREQ,
DISCONNECT). In multi-stream mode each topic (or topic filter) gets a data
stream of its own from a bounded pool; once the pool is full, topics share
streams by a stable hash. Streams are independent, so a lost packet on one
does not hold up the others. In single-stream mode everything rides on the
control stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import sys
import time
import zlib
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any

from aioquic.asyncio.client import connect as quic_connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    PingAcknowledged,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)
from aioquic.tls import SessionTicket

from .. import events as ev
from .._handshake_probe import ProbeCarriesData
from .._mqtt_quic import ALPN, AppError, end_stream, send_or_drop, until_acknowledged
from .._resets import is_stateless_reset
from .._tls import TLSMaterial, load_tls_material
from ..codec import Connect, Subscription, Will
from ..config import ConnectionConfig, TransportType
from ..enums import PacketType
from ..errors import (
    ConnectError,
    ConnectionRefused,
    MQTTQUICError,
    PathDead,
    PublishFailed,
    StreamLimitReached,
    StreamRefused,
)
from ..limits import ServerLimits
from ..message import Message
from ..reason_codes import reason_code_name
from ..session import CONTROL, Session
from .base import Transport, connect_packet

__all__ = ["ALPN", "MQTTQuicAdvancedProtocol", "connect_quic", "quic_configuration"]

logger = logging.getLogger("mqttquic.quic")


# A persistent session's unfinished business, from one connection to the next.
Carry = tuple[Session, dict[tuple[int, int], "asyncio.Future[Any]"]]


def quic_configuration(config: ConnectionConfig, tls: TLSMaterial | None = None
                       ) -> QuicConfiguration:
    """The aioquic client configuration for ``config`` (TLS 1.3, ALPN "mqtt").

    ``tls``: the config's TLS files, already read (``load_tls_material``); read here
    when not given, so that a bad file is a TLSFileError before any packet. From a
    ``config.tls_context`` (made for TCP+TLS), QUIC takes what aioquic can use: the
    verification mode and the CA certificates loaded into it; a client certificate
    inside it cannot be read back, so mutual TLS over QUIC needs ``certfile``."""
    if tls is None:
        tls = load_tls_material(config, ALPN)
    # EMQX sets the idle timeout to 1.5 x keepalive; PINGREQs keep it alive.
    idle = 1.5 * config.keepalive if config.keepalive else 60.0
    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=[ALPN], idle_timeout=max(idle, 5.0),
        server_name=config.server_name or config.host,
        verify_mode=ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE,
    )
    if tls.verify:
        if tls.ca_pem is not None:
            configuration.load_verify_locations(cadata=tls.ca_pem.encode("ascii"))
        else:
            _use_system_trust_store(configuration)
    if tls.certificate is not None:
        configuration.certificate = tls.certificate
        configuration.certificate_chain = list(tls.chain)
        configuration.private_key = tls.private_key
    return configuration


def _use_system_trust_store(configuration: QuicConfiguration) -> None:
    """Trust what TCP+TLS trusts (``SSLContext.load_default_certs``): aioquic alone
    would use certifi's bundle, and a private CA installed system-wide would then send
    every connection to TCP+TLS."""
    paths = ssl.get_default_verify_paths()  # honours SSL_CERT_FILE / SSL_CERT_DIR
    cafile = paths.cafile if paths.cafile and os.path.isfile(paths.cafile) else None
    capath = paths.capath if paths.capath and os.path.isdir(paths.capath) else None
    if cafile or capath:
        configuration.load_verify_locations(cafile=cafile, capath=capath)
        return
    # Windows and macOS keep their roots outside OpenSSL's paths: take what ssl loads.
    context = ssl.create_default_context()
    pem = "".join(ssl.DER_cert_to_PEM_cert(der)
                  for der in context.get_ca_certs(binary_form=True))
    if pem:
        configuration.load_verify_locations(cadata=pem.encode("ascii"))


# Linux's IPV6_RECVERR and IP_RECVERR (the socket module names them from Python 3.12 on);
# the dual-stack socket needs both, for IPv6 and IPv4-mapped destinations.
_RECVERR = ((socket.IPPROTO_IPV6, getattr(socket, "IPV6_RECVERR", 25)),
            (socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11)))

# Longest wait for QUIC stream credit (MAX_STREAMS) before a new data stream gives up.
STREAM_CREDIT_WAIT = 5.0
# A path on which nothing we send has been acknowledged for this long (or four probe
# timeouts, if longer) is dead, even while the server's packets still arrive.
DEAD_PATH_AFTER = 1.0
PATH_CHECK_INTERVAL = 0.2


class MQTTQuicAdvancedProtocol(ProbeCarriesData, Transport):
    """One QUIC connection carrying one MQTT session (the seed's protocol class)."""

    transport_type = TransportType.QUIC

    def __init__(self, *args: Any, config: ConnectionConfig, **kwargs: Any) -> None:
        ProbeCarriesData.__init__(self, *args, **kwargs)
        Transport.__init__(self)
        self.config = config
        self.session: Session | None = None
        self.control_stream: int | None = None
        # stream_id -> the topic (or filter) that opened it, as in the seed
        self.streams: dict[int, str] = {}
        self._topic_streams: dict[str, int] = {}
        self._data_streams: list[int] = []
        self._waiters: dict[tuple[int, int], asyncio.Future[Any]] = {}
        self._connack: asyncio.Future[ev.Event] = self._loop.create_future()
        self._mqtt_timer: asyncio.TimerHandle | None = None
        self._context: AbstractAsyncContextManager[QuicConnectionProtocol] | None = None
        self._closing = False
        self._user_closing = False
        self._parked: dict[tuple[int, int], asyncio.Future[Any]] = {}
        self._lost = False
        self.terminated_reason: str | None = None
        self.handshake: HandshakeCompleted | None = None
        # Set when the QUIC handshake completes (the client's race then skips TCP+TLS).
        self.handshake_event: asyncio.Event | None = None
        self._idle_ping: asyncio.TimerHandle | None = None
        self._path_check: asyncio.TimerHandle | None = None
        # Since when packets we sent have waited for an acknowledgement with none coming.
        self._unacked_since: float | None = None
        self._acked_marks: tuple[int, ...] = ()
        self._ping_uid = 0
        self._ping_waiters: dict[int, asyncio.Future[None]] = {}
        # Background close of a refused connection (kept so it is not collected).
        self._closer: asyncio.Task[None] | None = None
        # Session tickets are kept (0-RTT): disconnect() waits briefly for the next one.
        self.wants_ticket = False
        self.ticket_received = asyncio.Event()
        # Resolved when the server's port refuses the handshake (ICMP port unreachable).
        self.refused: asyncio.Future[None] | None = None
        self._port_refused = False

    # --- aioquic events -----------------------------------------------------------------

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        # aioquic ignores stateless resets: a server that restarted (and lost this
        # connection) would then be noticed only after the idle timeout.
        if (isinstance(data, bytes) and self.handshake is not None and not self._lost
                and is_stateless_reset(data, self._reset_tokens())):
            self._connection_lost(ConnectError(
                "the server reset the connection (stateless reset): it restarted or lost it"))
            return
        super().datagram_received(data, addr)

    def _reset_tokens(self) -> list[bytes | None]:
        quic = self._quic
        return [quic._peer_cid.stateless_reset_token,
                *(cid.stateless_reset_token for cid in quic._peer_cid_available)]

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
            self._schedule_idle_ping()
            self._path_check = self._loop.call_later(PATH_CHECK_INTERVAL, self._check_path)
        elif isinstance(event, PingAcknowledged):
            waiter = self._ping_waiters.pop(event.uid, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif isinstance(event, ConnectionTerminated):
            self.terminated_reason = event.reason_phrase or f"error code {event.error_code}"
            if not self._closing:
                self._connection_lost(ConnectError(f"QUIC connection closed: {self.terminated_reason}"))

    # --- the seed's MQTT methods ------------------------------------------------------------

    def mqtt_connect(self, connect: Connect, adopt: Carry | None = None) -> None:
        """Open the control stream and send CONNECT on it.

        ``adopt``: the session and waiting publishes of the previous connection of a
        persistent session (``carry_over()``); their flows continue after CONNACK."""
        self.session = Session(connect, max_packet_size=self.config.max_packet_size,
                               downgrade_qos=self.config.downgrade_qos, manual_acks=True)
        self.control_stream = self._quic.get_next_available_stream_id()
        self._quic.send_stream_data(self.control_stream, b"")  # reserve the id now
        if adopt is not None:
            previous, waiters = adopt
            self.session.adopt(previous)
            self._waiters.update(waiters)
        self.session.open_channel(self.control_stream)
        self.session.connect(self._loop.time())
        self._flush()

    def mqtt_publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                     properties: dict[str, Any] | None = None,
                     stream_id: int | None = None) -> tuple[int, int | None]:
        """Queue a PUBLISH on the topic's stream: ``(stream_id, packet_id)``."""
        session = self._require_session()
        if stream_id is None:
            stream_id = self._get_or_create_stream(self._route(topic, qos))
        packet_id = session.publish(topic, payload, qos, retain, properties, channel=stream_id,
                                    now=self._loop.time())
        self._flush()
        return stream_id, packet_id

    def _route(self, topic: str, qos: int = 0) -> str | None:
        """The key of the stream a publish or subscription rides: ``topic``, or None for
        the control stream.

        EMQX data streams are clean sessions: with ``clean_start`` false, what has to
        survive a reconnect (subscriptions, and QoS 2 publishes, whose exactly-once
        state the broker keeps per session) rides the control stream, whose session
        persists. QoS 0/1 publishes keep their own streams: a cut one is sent again."""
        if not self.config.clean_start and qos == 2:
            return None
        return topic

    def _get_or_create_stream(self, topic: str | None) -> int:
        """The stream for ``topic``: its own while the pool has room, then shared by hash.

        ``topic`` None is the control stream. Raises _NoStreamCredit when a new stream
        is needed and the server has granted no room for it (and no data stream is
        open to share)."""
        assert self.control_stream is not None
        if not self.config.multi_stream or topic is None:
            return self.control_stream
        stream_id = self._topic_streams.get(topic)
        if stream_id is not None:
            return stream_id
        if len(self._data_streams) < self.config.max_streams and not self._stream_credit():
            if not self._data_streams:
                raise _NoStreamCredit
            # The server allows fewer streams than our pool: share the open ones.
            stream_id = self._data_streams[zlib.crc32(topic.encode("utf-8")) % len(self._data_streams)]
        elif len(self._data_streams) < self.config.max_streams:
            stream_id = self._quic.get_next_available_stream_id()
            # aioquic reserves an id only once something is written: write nothing now,
            # so the next call cannot hand out the same id.
            self._quic.send_stream_data(stream_id, b"")
            self._data_streams.append(stream_id)
            self.streams[stream_id] = topic
            self._require_session().open_channel(stream_id)
        else:
            stream_id = self._data_streams[zlib.crc32(topic.encode("utf-8")) % len(self._data_streams)]
        self._topic_streams[topic] = stream_id
        return stream_id

    def _stream_credit(self) -> bool:
        """Whether the server lets us open one more bidirectional stream now. Before the
        handshake its limit is unknown (0-RTT): streams wait inside aioquic until then."""
        if self.handshake is None:
            return True
        next_id = self._quic.get_next_available_stream_id()
        return next_id // 4 < self._quic._remote_max_streams_bidi

    async def _stream_for(self, topic: str | None) -> int:
        """``_get_or_create_stream``, waiting (bounded) for stream credit when the server
        has none to give yet: streams closed a moment ago free theirs one round trip
        later, when their end reaches the server. StreamLimitReached after the wait."""
        # Half the operation's deadline at most: the error then names the cause.
        limit = min(STREAM_CREDIT_WAIT, self.config.operation_timeout / 2)
        give_up = self._loop.time() + limit
        while True:
            try:
                return self._get_or_create_stream(topic)
            except _NoStreamCredit:
                if self._loop.time() >= give_up:
                    raise StreamLimitReached(
                        f"the server granted no QUIC stream credit within {limit:g} s: it allows"
                        f" {self._quic._remote_max_streams_bidi} bidirectional streams, and"
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
        stream_id = await self._stream_for(self._route(topic, qos))
        stream_id, packet_id = self.mqtt_publish(topic, payload, qos, retain, properties,
                                                 stream_id)
        if packet_id is None:
            return
        code: int = await self._wait(stream_id, packet_id)
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
        persistent = not self.config.clean_start  # subscriptions live on the control stream
        for index, topic_filter in enumerate(topic_filters):
            stream_id = await self._stream_for(None if persistent else topic_filter)
            groups.setdefault(stream_id, []).append(index)
        waiters = [(indexes, self._wait(stream_id, request(stream_id, indexes)))
                   for stream_id, indexes in groups.items()]
        self._flush()
        codes: list[int | None] = [None] * len(topic_filters)
        for indexes, waiter in waiters:
            for index, code in zip(indexes, await waiter):
                codes[index] = code
        return [code for code in codes if code is not None]

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
            await self._delivered(self._data_streams)
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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # ICMP errors reach an unconnected UDP socket only with IP(V6)_RECVERR (Linux):
        # "port unreachable" then comes back as error_received(ConnectionRefusedError).
        sock = transport.get_extra_info("socket")
        if sock is not None and sys.platform.startswith("linux"):
            for level, option in _RECVERR:
                with contextlib.suppress(OSError):
                    sock.setsockopt(level, option, 1)

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

    async def migrate(self, local_host: str | None = None, timeout: float = 3.0) -> None:
        """Move this connection to a new UDP socket, keeping the QUIC connection and the
        MQTT session: for an app that knows its network changed (Wi-Fi to cellular).

        The new socket gets a new local port (and ``local_host``'s address, if given).
        The connection switches to a fresh connection ID, so an observer cannot link
        the two paths, and sends a PING from the new socket; the server validates the
        new path. When the PING is acknowledged within ``timeout`` the old socket is
        closed; when it is not, the connection goes back to the old socket and
        ConnectError is raised (nothing is lost: QUIC re-sends what the new path ate)."""
        if self._lost or self._closing or self._transport is None:
            raise ConnectError("not connected")
        old = self._transport
        try:
            new = await _new_socket_transport(self, local_host)  # connection_made: now current
        except OSError as exc:
            raise ConnectError(f"cannot open a socket for the new path: {exc}") from exc
        self._quic.change_connection_id()
        self._ping_uid += 1
        uid = self._ping_uid
        answered: asyncio.Future[None] = self._loop.create_future()
        self._ping_waiters[uid] = answered
        self._quic.send_ping(uid)
        self.transmit()
        try:
            await asyncio.wait_for(answered, timeout)
        except TimeoutError:
            self._ping_waiters.pop(uid, None)
            _retire(new)
            self.connection_made(old)
            raise ConnectError(f"the new path did not answer within {timeout:g} s: staying on"
                               " the old one") from None
        # Replies to what was sent on the old path are still on their way: the old socket
        # keeps listening for a few round trips before it closes.
        self._loop.call_later(min(2.0, 3 * self._rtt), _retire, old)
        logger.info("QUIC connection moved to %s", new.get_extra_info("sockname"))

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
        self._cancel_timers()
        self.close(reason_phrase="closed by the client")
        self._fail_waiters(ConnectError("connection closed"))
        if self._transport is not None:
            self._transport.close()

    async def _close_quic(self) -> None:
        self._cancel_timers()
        self._fail_waiters(ConnectError("connection closed"))
        if self._context is not None:
            context, self._context = self._context, None
            try:
                await asyncio.wait_for(context.__aexit__(None, None, None), 2.0)
            except TimeoutError:
                logger.debug("QUIC close did not finish within 2 s")

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
        rtt = getattr(getattr(self._quic, "_loss", None), "_rtt_smoothed", None)
        initialized = getattr(getattr(self._quic, "_loss", None), "_rtt_initialized", False)
        return round(rtt * 1000, 3) if rtt is not None and initialized else None

    @property
    def _rtt(self) -> float:
        """The smoothed RTT in seconds, 100 ms until one is measured: bounds short waits."""
        return (self.rtt_ms or 100.0) / 1000

    @property
    def streams_open(self) -> int:
        if not self.is_connected:
            return 0
        return 1 + len(self._data_streams)

    # --- internals ------------------------------------------------------------------------

    def _require_session(self) -> Session:
        if self.session is None or self._lost or self._closing:
            raise ConnectError("not connected")
        return self.session

    def _wait(self, stream_id: int, packet_id: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._waiters[stream_id, packet_id] = future
        return future

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

    def _cancel_timers(self) -> None:
        """Stop the keepalive timer, the idle PINGs and the path check."""
        for handle in (self._mqtt_timer, self._idle_ping, self._path_check):
            if handle is not None:
                handle.cancel()
        self._mqtt_timer = self._idle_ping = self._path_check = None

    def _schedule_idle_ping(self) -> None:
        """Keep a quiet connection alive, and its path checked.

        A QUIC PING (answered by an ACK, which restarts both idle timers) goes out when
        nothing else has for a while:

        - every third of the negotiated idle timeout. That timeout is the smaller of the
          two peers' (MsQuic servers advertise 30 s, some less) and can be shorter than
          the MQTT keepalive, whose PINGREQs would then come too late;
        - every half keepalive, so that a path that died while the connection was quiet
          is found (``_check_path``) within the keepalive, not after 1.5 x it."""
        remote = self._quic._remote_max_idle_timeout
        ours = self._quic._configuration.idle_timeout
        intervals = [min(remote, ours) / 3 if remote is not None else ours / 3]
        if self.config.keepalive:
            intervals.append(self.config.keepalive / 2)
        interval = max(0.2, min(intervals))
        self._idle_ping = self._loop.call_later(interval, self._send_idle_ping, interval)

    def _send_idle_ping(self, interval: float) -> None:
        self._idle_ping = None
        if self._lost or self._closing:
            return
        last = self._quic._loss._time_of_last_sent_ack_eliciting_packet
        quiet_for = self._loop.time() - last
        if quiet_for >= interval * 0.9:
            self._ping_uid += 1
            self._quic.send_ping(self._ping_uid)
            self.transmit()
            quiet_for = 0.0
        self._idle_ping = self._loop.call_later(interval - quiet_for, self._send_idle_ping,
                                                interval)

    def _check_path(self) -> None:
        """Declare the connection lost when nothing we sent has been acknowledged for
        ``DEAD_PATH_AFTER`` (or four probe timeouts): our packets no longer arrive. The
        MQTT keepalive would notice after 1.5 x keepalive, and aioquic's idle timeout
        never, as long as the server's packets still come in."""
        self._path_check = None
        if self._lost or self._closing:
            return
        now = self._loop.time()
        spaces = self._quic._loss.spaces
        # aioquic declares a packet lost at each probe timeout and sends its data again,
        # so the age of the oldest packet in flight says little: watch acknowledgements.
        marks = tuple(space.largest_acked_packet for space in spaces)
        waiting = any(space.ack_eliciting_in_flight for space in spaces)
        if marks != self._acked_marks or not waiting:
            self._acked_marks = marks
            self._unacked_since = now if waiting else None
        elif self._unacked_since is None:
            self._unacked_since = _oldest_unacknowledged(spaces) or now
        else:
            limit = max(DEAD_PATH_AFTER, 4 * self._quic._loss.get_probe_timeout())
            waited = now - self._unacked_since
            if waited > limit:
                self._connection_lost(PathDead(
                    f"QUIC path dead: nothing acknowledged for {waited:.1f} s"))
                return
        self._path_check = self._loop.call_later(PATH_CHECK_INTERVAL, self._check_path)


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
            self._handle_event(event)
        self._flush()

    def _handle_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.MessageReceived):
            packet = event.packet
            session = self.session
            assert session is not None  # it made the event
            ack = (None if packet.packet_id is None
                   else partial(self._acknowledge, session, event.channel, packet.packet_id))
            self.on_message(Message(packet.topic, packet.payload, packet.qos, packet.retain,
                                    packet.properties, event.channel, ack))
        elif isinstance(event, ev.PublishCompleted):
            self._resolve((event.channel, event.packet_id), event.reason_code)
        elif isinstance(event, ev.SubscribeCompleted):  # and UnsubscribeCompleted
            self._resolve((event.channel, event.packet_id), event.reason_codes)
        elif isinstance(event, (ev.Connected, ev.ConnectFailed)):
            if not self._connack.done():
                self._connack.set_result(event)
        elif isinstance(event, ev.KeepaliveTimeout):
            self._connection_lost(ConnectError(f"no PINGRESP for {event.waited:.1f} s"))
        elif isinstance(event, ev.ChannelFailed):
            self._stream_closed(event.channel, event.reason, closed_by_session=True)
            self._end_our_side(event.channel, reset=True)
        elif isinstance(event, ev.ProtocolViolation):
            self._connection_lost(ConnectError(f"protocol violation: {event.reason}"))
        elif isinstance(event, ev.ServerDisconnected):
            self._connection_lost(ConnectError(
                f"broker disconnected: {event.reason_name} (0x{event.reason_code:02X})"))

    def _resolve(self, key: tuple[int, int], value: Any) -> None:
        future = self._waiters.pop(key, None)
        if future is not None and not future.done():
            future.set_result(value)

    def carry_over(self) -> Carry | None:
        """What a persistent session (clean_start false) hands to its next connection:
        this session, and the publishes on the control stream still waiting for acks."""
        if self.session is None or self.config.clean_start:
            return None
        return self.session, dict(self._parked)

    def _fail_waiters(self, exc: BaseException) -> None:
        waiters, self._waiters = self._waiters, {}
        session = self.session
        keep: set[tuple[int, int]] = set()
        if session is not None and not self.config.clean_start and not self._user_closing:
            # A persistent session continues these on the next connection (carry_over()).
            unfinished = {packet.packet_id for channel, packet in session.unacknowledged()
                          if channel == self.control_stream}
            keep = {key for key in waiters if key[0] == self.control_stream
                    and key[1] in unfinished}
        for key, future in waiters.items():
            if key in keep:
                self._parked[key] = future
            elif not future.done():
                future.set_exception(exc)
        if not self._connack.done():
            self._connack.set_exception(exc)
            self._connack.exception()

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
        if stream_id not in self.streams and not closed_by_session:
            return  # already closed (say, the broker's DISCONNECT came before the reset)
        logger.info("data stream %d closed: %s", stream_id, why)
        unfinished = [] if closed_by_session else self.session.close_channel(stream_id,
                                                                             self._loop.time())
        if stream_id in self._data_streams:
            self._data_streams.remove(stream_id)
        self.streams.pop(stream_id, None)
        for topic in [t for t, s in self._topic_streams.items() if s == stream_id]:
            del self._topic_streams[topic]
        kind = StreamRefused if error_code == AppError.TOO_MANY_STREAMS else ConnectError
        for key in [k for k in self._waiters if k[0] == stream_id]:
            future = self._waiters.pop(key)
            if not future.done():
                future.set_exception(kind(f"stream {stream_id} closed: {why}"))
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
        self._cancel_timers()
        self._fail_waiters(exc)
        if not self._closing:
            self.close(reason_phrase=str(exc)[:100])
            self.on_lost(exc)


async def connect_quic(config: ConnectionConfig, *, will: Will | None = None,
                       properties: dict[str, Any] | None = None,
                       tls: TLSMaterial | None = None,
                       session_ticket: SessionTicket | None = None,
                       ticket_handler: Callable[[SessionTicket, float | None], None]
                       | None = None,
                       initial_rtt: float | None = None,
                       adopt: Carry | None = None,
                       early_messages: list[tuple[str, bytes, bool, dict[str, Any] | None]]
                       | None = None,
                       handshake: asyncio.Event | None = None) -> MQTTQuicAdvancedProtocol:
    """Open a QUIC connection, send CONNECT on the control stream, wait for CONNACK.

    Raises ConnectionRefused for a refused CONNACK and ConnectError for anything
    else (timeout, TLS verification, network), within ``config.connect_timeout``;
    TLSFileError for a TLS file that cannot be used, before any packet (``tls``: the
    files already read by the caller).
    """
    configuration = quic_configuration(config, tls)
    configuration.session_ticket = session_ticket
    if initial_rtt is not None:
        # The path's RTT from the last connection: a lost Initial is sent again after
        # 2 x this, not after aioquic's default 200 ms. Not below 10 ms: on loopback
        # that would only resend what is not lost.
        configuration.initial_rtt = max(0.01, initial_rtt)
    started = time.monotonic()
    protocol_box: list[MQTTQuicAdvancedProtocol] = []

    refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def create_protocol(*args: Any, **kwargs: Any) -> MQTTQuicAdvancedProtocol:
        protocol = MQTTQuicAdvancedProtocol(*args, config=config, **kwargs)
        protocol.refused = refused
        protocol.handshake_event = handshake
        protocol.wants_ticket = ticket_handler is not None
        protocol_box.append(protocol)
        return protocol

    # With a ticket, CONNECT goes out in the first flight as 0-RTT data. By default nothing
    # else does: 0-RTT data can be replayed by an attacker, and CONNECT is the one packet
    # that is safe to repeat. ``early_messages`` (QoS 0 only, the caller's explicit choice)
    # follow CONNECT in the same flight.
    context = quic_connect(config.host, config.quic_port, configuration=configuration,
                           create_protocol=create_protocol,
                           session_ticket_handler=None if ticket_handler is None
                           else lambda ticket: _got_ticket(protocol_box, ticket, ticket_handler),
                           wait_connected=session_ticket is None)
    where = f"{config.host}:{config.quic_port}"

    async def establish() -> tuple[MQTTQuicAdvancedProtocol, ev.Event]:
        protocol = await context.__aenter__()
        assert isinstance(protocol, MQTTQuicAdvancedProtocol)
        protocol._context = context
        protocol.mqtt_connect(connect_packet(config, will, properties), adopt)
        for topic, payload, retain, props in early_messages or ():
            protocol.mqtt_publish(topic, payload, 0, retain, props)
        return protocol, await protocol._connack

    async def establish_unless_refused() -> tuple[MQTTQuicAdvancedProtocol, ev.Event]:
        establishing = asyncio.ensure_future(establish())
        try:
            either: set[asyncio.Future[Any]] = {establishing, refused}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not establishing.done():
                establishing.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await establishing
        if not establishing.cancelled():
            return establishing.result()
        raise ConnectError(f"QUIC connect to {where} refused: nothing listens on that UDP port"
                           " (ICMP port unreachable)")

    try:
        protocol, result = await asyncio.wait_for(establish_unless_refused(),
                                                  config.connect_timeout)
    except asyncio.CancelledError:
        # Lost a race (the TCP+TLS fallback won): drop the half-open connection.
        if protocol_box:
            protocol_box[0].abort()
        raise
    except TimeoutError:
        await _abandon(protocol_box)
        raise ConnectError(f"QUIC connect to {where} timed out after {config.connect_timeout} s"
                           " (no answer on UDP?)") from None
    except ConnectionError as exc:
        reason = protocol_box[0].terminated_reason if protocol_box else None
        await _abandon(protocol_box)
        raise ConnectError(f"QUIC connect to {where} failed: {reason or exc}") from exc
    except MQTTQUICError:
        await _abandon(protocol_box)
        raise
    except OSError as exc:
        await _abandon(protocol_box)
        raise ConnectError(f"QUIC connect to {where} failed: {exc}") from exc
    if isinstance(result, ev.ConnectFailed):
        # Raise now: the close drains in the background (aioquic waits 100-225 ms), and a
        # racing TCP+TLS attempt must not start meanwhile with the same refused CONNECT.
        protocol._closing = True
        protocol._closer = asyncio.ensure_future(protocol._close_quic())
        raise ConnectionRefused(result.reason_code, result.reason_name)
    protocol.connect_time = time.monotonic() - started
    assert isinstance(result, ev.Connected)
    protocol.session_present = result.session_present
    logger.info("connected over QUIC to %s in %.1f ms", where, protocol.connect_time * 1000)
    return protocol


async def _new_socket_transport(protocol: MQTTQuicAdvancedProtocol,
                                local_host: str | None) -> asyncio.DatagramTransport:
    """A new UDP socket for ``protocol``, made as aioquic makes its first one (IPv6,
    dual-stack), bound to a new port of ``local_host`` (default: any address)."""
    host = local_host or "::"
    if ":" not in host:
        host = "::ffff:" + host  # an IPv4 address on the dual-stack socket
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, 0, 0, 0))
    except OSError:
        sock.close()
        raise
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: protocol, sock=sock)
    return transport


def _retire(transport: asyncio.DatagramTransport) -> None:
    """Close a socket the connection no longer uses, without telling the protocol."""
    transport.set_protocol(asyncio.DatagramProtocol())
    transport.close()


def _oldest_unacknowledged(spaces: Any) -> float | None:
    """When the oldest ack-eliciting packet still in flight was sent, or None."""
    oldest: float | None = None
    for space in spaces:
        for packet in space.sent_packets.values():  # in packet number order
            if packet.is_ack_eliciting and packet.in_flight:
                if oldest is None or packet.sent_time < oldest:
                    oldest = packet.sent_time
                break
    return oldest


class _NoStreamCredit(Exception):
    """A new data stream is needed and the server has granted no room for it."""


def _got_ticket(protocols: list[MQTTQuicAdvancedProtocol], ticket: SessionTicket,
                handler: Callable[[SessionTicket, float | None], None]) -> None:
    if protocols:
        protocols[0].ticket_received.set()
    handler(ticket, _rtt(protocols))


def _rtt(protocols: list[MQTTQuicAdvancedProtocol]) -> float | None:
    """The smoothed RTT of the connection being made, in seconds, once measured."""
    rtt_ms = protocols[0].rtt_ms if protocols else None
    return rtt_ms / 1000 if rtt_ms is not None else None


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _abandon(protocols: list[MQTTQuicAdvancedProtocol]) -> None:
    if protocols and protocols[0]._context is not None:
        protocols[0]._closing = True
        await protocols[0]._close_quic()
