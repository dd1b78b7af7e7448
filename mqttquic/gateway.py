"""An MQTT-over-QUIC listener (and a TLS TCP listener) in front of a plain TCP broker.

One QUIC connection is one MQTT session upstream, with EMQX's stream semantics:

- The control stream (stream 0, the first client bidirectional stream) is
  relayed byte for byte to one upstream TCP connection. Its CONNECT is read on
  the way, and its CONNACK is watched on the way back.
- Every other client bidirectional stream is a data stream with its own upstream
  TCP connection. The gateway opens it with a CONNECT derived from the control
  CONNECT (client id ``<client id>/<stream id>``, same credentials, clean, no
  keepalive: the control stream carries the pings) and swallows its CONNACK.
  Data streams opened before the control CONNACK (even in 0-RTT) wait for a
  successful one, then are served. Packet ids, subscriptions and acks thus stay
  per stream, and closing a stream drops its subscriptions.

Buffers and stream counts are bounded per connection; 0-RTT is accepted with
single-use session tickets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)
from aioquic.tls import SessionTicket

from . import _aioquic
from ._aio import quick_ack, read_packet
from ._framing import Framer
from ._handshake_probe import ProbeCarriesData
from ._mqtt_quic import (
    ALPN,
    CONTROL_STREAM,
    AppError,
    end_stream,
    send_or_drop,
    until_acknowledged,
)
from ._resets import StatelessResets
from .certs import generate_certificates, kept_identity
from .codec import Connack, Connect, Pingreq, StreamDecoder, decode_packet, encode
from .errors import MalformedPacket, PacketTooLarge

__all__ = ["GatewayConfig", "Gateway", "ALPN"]

logger = logging.getLogger("mqttquic.gateway")

_PINGRESP = 13  # packet type
_PINGREQ = encode(Pingreq())


@dataclass
class GatewayConfig:
    upstream_host: str = "127.0.0.1"
    upstream_port: int = 1883
    quic_host: str = "127.0.0.1"
    quic_port: int | None = 14567  # None: no QUIC listener
    tcp_host: str = "127.0.0.1"
    tcp_port: int | None = 8884  # None: no TLS TCP listener
    cert_file: str | None = None  # None: a generated certificate (see identity_dir)
    key_file: str | None = None
    # Without cert_file: the folder where the generated certificate is kept and reused
    # across restarts (certs.kept_identity), so clients that trust its CA keep doing so.
    # None: a throwaway certificate per start (tests, the demo).
    identity_dir: str | None = None
    max_data_streams: int = 9  # open at once per connection; EMQX allows 10 streams in all
    max_buffer: int = 4 * 1024 * 1024  # per stream, either direction
    # What one connection may hold in stream buffers in all (before and after CONNACK).
    max_connection_buffer: int = 8 * 1024 * 1024
    # Largest MQTT packet a client may send on any stream (CONNECT included); EMQX's
    # default is 1 MB. Larger announced packets end the stream (or, on the control
    # stream, the connection) before their body is buffered.
    max_packet_size: int = 1024 * 1024
    connect_timeout: float = 10.0  # from the first packet to a successful CONNACK
    max_connections: int = 1000  # QUIC connections at once; more are refused
    idle_timeout: float = 300.0
    upstream_timeout: float = 10.0
    # Key (32 bytes) for stateless reset tokens. Kept across restarts, it lets a restarted
    # gateway tell the clients of its previous life at their next packet that their
    # connection is gone. None: a new random key per start.
    stateless_reset_key: bytes | None = None


def server_unavailable(connect: Connect) -> bytes:
    """The CONNACK refusing ``connect`` because the broker behind cannot be reached:
    "Server unavailable" (3 in MQTT 3.1.1, 0x88 in MQTT 5)."""
    version = connect.protocol_version
    return encode(Connack(False, 0x88 if version == 5 else 3), version)


@contextlib.contextmanager
def _naming(kind: str, host: str, port: int) -> Iterator[None]:
    """An OSError while opening a listener names the address ("[Errno 98] Address
    already in use" does not)."""
    try:
        yield
    except OSError as exc:
        named = OSError(f"cannot listen on {kind}/{host}:{port}: {exc.strerror or exc}")
        named.errno = exc.errno
        raise named from None


class _SingleUseTickets:
    """Single-use TLS session tickets (a replayed ticket finds nothing)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._tickets: dict[bytes, SessionTicket] = {}
        self._limit = limit

    def add(self, ticket: SessionTicket) -> None:
        if len(self._tickets) >= self._limit:
            self._tickets.pop(next(iter(self._tickets)))
        self._tickets[ticket.ticket] = ticket

    def pop(self, label: bytes) -> SessionTicket | None:
        return self._tickets.pop(label, None)


class _StreamRelay:
    """One QUIC stream and its upstream TCP connection."""

    def __init__(self, connection: _GatewayConnection, stream_id: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        # Client bytes waiting for the upstream connection, as they came: many small chunks
        # (not one growing buffer, whose reallocations fragment the heap).
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.pinger: asyncio.Task[None] | None = None
        config = connection.gateway.config
        # Client packets are checked against the maximum size; on data streams the
        # PINGRESPs earned by the gateway's own keepalive pings are taken out.
        self.from_client_framer = Framer(config.max_packet_size)
        self.to_client_framer = Framer(1 << 28, drop=None if stream_id == CONTROL_STREAM
                                       else _PINGRESP, owed=0)
        self.last_upstream_write = asyncio.get_running_loop().time()
        self.client_finished = False
        self.server_finished = False

    @property
    def buffered(self) -> int:
        if self.writer is None:
            return self.pending_size
        return self.writer.transport.get_write_buffer_size()

    def from_client(self, data: bytes, end_stream: bool) -> None:
        connection = self.connection
        config = connection.gateway.config
        if data:
            try:
                self.from_client_framer.feed(data)
            except MalformedPacket as exc:
                connection.refuse_stream(self.stream_id, AppError.PACKET_TOO_LARGE, str(exc))
                return
        if self.writer is None:
            self.pending.append(data)
            self.pending_size += len(data)
            if self.pending_size > config.max_buffer:
                connection.refuse_stream(self.stream_id, AppError.BUFFER_FULL,
                                         "buffer full before the upstream was ready")
                return
        elif data:
            self.writer.write(data)
            self.last_upstream_write = asyncio.get_running_loop().time()
            if self.writer.transport.get_write_buffer_size() > config.max_buffer:
                connection.refuse_stream(self.stream_id, AppError.BUFFER_FULL,
                                         "upstream does not keep up")
                return
        if data and connection.buffered() > connection.buffer_limit():
            connection.close_for(AppError.BUFFER_FULL, "connection buffers full")
            return
        if end_stream:
            self.client_finished = True
            if self.writer is not None and self.writer.can_write_eof():
                self.writer.write_eof()
            connection.relay_done(self)

    def attach(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        if self.pending:
            writer.writelines(self.pending)
            self.pending.clear()
            self.pending_size = 0
        if self.client_finished and writer.can_write_eof():
            writer.write_eof()

    async def pump_to_client(self, reader: asyncio.StreamReader) -> None:
        connection = self.connection
        sock = self.writer.get_extra_info("socket") if self.writer is not None else None
        framer = self.to_client_framer
        while True:
            data = await reader.read(65536)
            if not data:
                return
            quick_ack(sock)
            if framer.drop is not None:
                data = framer.feed(data)
                if not data:
                    continue
            connection.send(self.stream_id, data)
            await connection.wait_for_room(self.stream_id)

    async def keep_upstream_alive(self, keepalive: float) -> None:
        """PINGREQ upstream whenever the client has sent nothing for half the keepalive:
        a data stream's client pings on the control stream, never here, and a broker
        drops a connection silent for 1.5 x its keepalive."""
        loop = asyncio.get_running_loop()
        interval = keepalive / 2
        while self.writer is not None and not self.writer.is_closing():
            await asyncio.sleep(max(0.1, self.last_upstream_write + interval - loop.time()))
            if loop.time() - self.last_upstream_write >= interval and self.writer is not None:
                self.writer.write(_PINGREQ)
                # Its PINGRESP is ours to take out; a client's own PINGREQ on this stream
                # gets its PINGRESP.
                self.to_client_framer.owed = (self.to_client_framer.owed or 0) + 1
                self.last_upstream_write = loop.time()

    def close(self) -> None:
        for task in (self.task, self.pinger):
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()
        if self.writer is not None:
            self.writer.close()


class _GatewayConnection(ProbeCarriesData):
    """The gateway's side of one QUIC connection."""

    # The handshake, then the CONNACK and first PUBACKs of a 0-RTT client, go twice;
    # then the first flights after the first RTT sample: HANDSHAKE_DONE, the CONNACK
    # of a full handshake, the first PUBACKs.
    early_repeats = 2
    warmup_repeats = 4

    def __init__(self, *args: Any, gateway: Gateway, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gateway = gateway
        self.relays: dict[int, _StreamRelay] = {}
        self.connect_packet: Connect | None = None
        loop = asyncio.get_running_loop()
        self.connect_seen = loop.create_future()  # the control CONNECT arrived whole
        self.connected = loop.create_future()  # control CONNACK success
        self._control_decoder = StreamDecoder(max_packet_size=gateway.config.max_packet_size)
        self._finished = False
        # Ids of streams that ended: QUIC never reuses one, late bytes for it are dropped.
        self._ended: set[int] = set()
        self.refused_streams = 0
        self._accepted = False  # the control CONNACK was a success
        self._received_early = 0  # bytes received before that
        self.peer = "?"
        gateway.resets.adopt(self._quic)
        self._deadline = loop.call_later(gateway.config.connect_timeout, self._connect_deadline)

    # --- QUIC side ---------------------------------------------------------------

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self._stream_data(event.stream_id, event.data, event.end_stream)
        elif isinstance(event, StreamReset):
            relay = self.relays.pop(event.stream_id, None)
            self._ended.add(event.stream_id)
            if relay is not None:
                relay.close()
                # End our side too, or the stream stays half-open and holds its slot.
                end_stream(self._quic, event.stream_id, 0)
        elif isinstance(event, HandshakeCompleted):
            addr = _aioquic.peer_address(self._quic)
            self.peer = f"{addr[0]}:{addr[1]}" if addr else "?"
            logger.info("QUIC handshake with %s (resumed=%s, 0-RTT accepted=%s)", self.peer,
                        event.session_resumed, event.early_data_accepted)
        elif isinstance(event, ConnectionTerminated):
            logger.info("QUIC connection from %s closed: %s %s", self.peer, event.error_code,
                        event.reason_phrase)
            self._shutdown()

    def send(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        if self._finished:
            return
        if not send_or_drop(self._quic, stream_id, data, end_stream):
            logger.debug("dropping %d bytes for closed stream %d", len(data), stream_id)
            return
        if end_stream:
            relay = self.relays.get(stream_id)
            if relay is not None:
                relay.server_finished = True
                self.relay_done(relay)
        # The client's request is acknowledged with the answer, not in a packet of its own.
        _aioquic.ack_now(self._quic, self._loop.time())
        self._transmit_soon()

    def buffered(self) -> int:
        """Bytes this connection holds for its streams, either direction."""
        return sum(relay.buffered for relay in self.relays.values())

    def buffer_limit(self) -> int:
        """What this connection may hold in all. Before a successful CONNACK, one packet
        of the largest size and a little more (early data streams of a 0-RTT client):
        a client that has not been accepted gets no more of the gateway's memory."""
        config = self.gateway.config
        if self._accepted:
            return config.max_connection_buffer
        return min(config.max_connection_buffer, config.max_packet_size + 64 * 1024)

    def relay_done(self, relay: _StreamRelay) -> None:
        """A stream ended in both directions frees its slot (and its upstream)."""
        if relay.client_finished and relay.server_finished:
            if self.relays.get(relay.stream_id) is relay:
                del self.relays[relay.stream_id]
            self._ended.add(relay.stream_id)
            relay.close()

    async def wait_for_room(self, stream_id: int) -> None:
        """Pause reading upstream (at most 50 s) while this stream holds more than
        ``max_buffer`` bytes the client has not acknowledged."""
        await until_acknowledged(self._quic, [stream_id], at_most=self.gateway.config.max_buffer,
                                 within=50.0, give_up=lambda: self._finished)

    def refuse_stream(self, stream_id: int, code: int, why: str) -> None:
        """Reset a stream. Logged once per connection (a client opening streams in a loop
        must not flood the log); the count is logged when the connection ends."""
        self.refused_streams += 1
        if self.refused_streams == 1:
            logger.warning("resetting stream %d of %s: %s (further ones are counted)",
                           stream_id, self.peer, why)
        else:
            logger.debug("resetting stream %d of %s: %s", stream_id, self.peer, why)
        if stream_id == CONTROL_STREAM:
            self.close_for(code, why)
            return
        relay = self.relays.pop(stream_id, None)
        self._ended.add(stream_id)
        if relay is not None:
            relay.close()
        end_stream(self._quic, stream_id, code)
        self.transmit()

    def close_for(self, code: int, why: str) -> None:
        if self._finished:
            return
        logger.warning("closing the connection of %s: %s", self.peer, why)
        self.close(error_code=code, reason_phrase=why[:100])
        self._shutdown()

    def _connect_deadline(self) -> None:
        if not (self.connected.done() and not self.connected.exception()):
            self.close_for(AppError.CONNECT_TIMEOUT,
                           f"no CONNECT accepted within {self.gateway.config.connect_timeout:g} s")

    def _stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        if self._finished:
            return
        if not self._accepted:
            # Until the broker accepts it, a connection may send what one CONNECT and the
            # early packets of a 0-RTT client need, not a stream of junk for the gateway to
            # parse, buffer and refuse stream after stream.
            self._received_early += len(data)
            if self._received_early > self.buffer_limit():
                self.close_for(AppError.BUFFER_FULL, f"more than {self.buffer_limit()} bytes"
                               " before the CONNECT was accepted")
                return
        if stream_id in self._ended:
            return
        relay = self.relays.get(stream_id)
        if relay is None:
            if stream_id % 4 != 0:
                # Only client-initiated bidirectional streams carry MQTT.
                self.refuse_stream(stream_id, AppError.TOO_MANY_STREAMS, "not a bidirectional stream")
                return
            data_streams = sum(1 for sid in self.relays if sid != CONTROL_STREAM)
            if stream_id != CONTROL_STREAM and data_streams >= self.gateway.config.max_data_streams:
                self.refuse_stream(stream_id, AppError.TOO_MANY_STREAMS,
                                   f"more than {self.gateway.config.max_data_streams} data streams")
                return
            relay = self.relays[stream_id] = _StreamRelay(self, stream_id)
            runner = self._run_control if stream_id == CONTROL_STREAM else self._run_data
            relay.task = asyncio.ensure_future(runner(relay))
        if stream_id == CONTROL_STREAM and self.connect_packet is None and data:
            if not self._watch_connect(data):
                return
        relay.from_client(data, end_stream)

    def _watch_connect(self, data: bytes) -> bool:
        try:
            for packet in self._control_decoder.feed(data):
                if isinstance(packet, Connect):
                    self.connect_packet = packet
                    logger.info("CONNECT from %s: client id %r, MQTT %s", self.peer,
                                packet.client_id, "5.0" if packet.protocol_version == 5 else "3.1.1")
                    if not self.connect_seen.done():
                        self.connect_seen.set_result(None)
                    return True
                self.close_for(0x1, f"{type(packet).__name__.upper()} before CONNECT")
                return False
        except MalformedPacket as exc:
            self.close_for(AppError.PACKET_TOO_LARGE if isinstance(exc, PacketTooLarge) else 0x1,
                           f"malformed control stream: {exc}")
            return False
        return True

    # --- upstream side ----------------------------------------------------------------

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        config = self.gateway.config
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(config.upstream_host, config.upstream_port),
            config.upstream_timeout)
        self.gateway.upstream_connections += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:  # small packets go out at once, not after Nagle's wait
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    async def _run_control(self, relay: _StreamRelay) -> None:
        # No broker connection until the whole CONNECT is here: a client that never sends
        # it (slowloris) holds nothing upstream, and the CONNECT deadline closes it.
        try:
            await asyncio.shield(self.connect_seen)
        except ConnectionError:
            return
        try:
            reader, writer = await self._open_upstream()
        except (TimeoutError, OSError) as exc:
            logger.error("upstream broker unreachable for %s: %s", self.peer, exc)
            # What a broker that cannot serve says, and what the TLS listener says too: a
            # CONNACK "Server unavailable", then the end of the connection.
            assert self.connect_packet is not None
            self.send(CONTROL_STREAM, server_unavailable(self.connect_packet), end_stream=True)
            self._fail_connected("upstream broker unreachable")
            await asyncio.sleep(0.5)
            if not self._finished:
                self.close(error_code=AppError.UPSTREAM, reason_phrase="upstream broker unreachable")
            return
        relay.attach(writer)
        try:
            connack = await read_packet(reader)
            # The broker keeps Nagle on: ACK its CONNACK now, or the packets right behind
            # it wait for our delayed ACK (40 ms).
            quick_ack(writer.get_extra_info("socket"))
            version = self.connect_packet.protocol_version if self.connect_packet else 4
            self.send(CONTROL_STREAM, connack)
            packet = decode_packet(connack, version)
            if isinstance(packet, Connack) and packet.reason_code == 0:
                if not self.connected.done():
                    self.connected.set_result(None)
                    self._accepted = True
                    self._deadline.cancel()
                    if isinstance(packet.properties, dict):
                        self._server_keep_alive = packet.properties.get("server_keep_alive")
            else:
                logger.info("broker refused %s: %r", self.peer, packet)
            await relay.pump_to_client(reader)
        except (asyncio.IncompleteReadError, ConnectionError, MalformedPacket) as exc:
            logger.info("control upstream of %s ended: %s", self.peer, exc)
        finally:
            self._fail_connected("control connection ended")
            writer.close()
        # The broker closed the session: finish the control stream, then the connection.
        self.send(CONTROL_STREAM, b"", end_stream=True)
        await asyncio.sleep(0.5)
        if not self._finished:
            self.close(reason_phrase="broker closed the session")

    _server_keep_alive: int | None = None

    def _data_keepalive(self, connect: Connect) -> int:
        """The keepalive of a data stream's upstream CONNECT. Not 0: a hardened broker
        (mosquitto with max_keepalive, 2.0.21 on) refuses an MQTT 3.1.1 CONNECT without
        keepalive. The control CONNECT's, which the broker has just accepted (or what it
        imposed on it as Server Keep Alive), else one minute."""
        return self._server_keep_alive or connect.keepalive or 60

    async def _run_data(self, relay: _StreamRelay) -> None:
        try:
            await asyncio.shield(self.connected)
        except ConnectionError:
            return
        connect = self.connect_packet
        assert connect is not None
        client_id = connect.client_id or f"quic-{id(self):x}"
        keepalive = self._data_keepalive(connect)
        derived = Connect(f"{client_id}/{relay.stream_id}", True, keepalive, connect.username,
                          connect.password, None, None, connect.protocol_version)
        try:
            reader, writer = await self._open_upstream()
        except (TimeoutError, OSError) as exc:
            self.refuse_stream(relay.stream_id, AppError.UPSTREAM, f"upstream unreachable: {exc}")
            return
        try:
            writer.write(encode(derived))
            reply = decode_packet(await read_packet(reader), connect.protocol_version)
            quick_ack(writer.get_extra_info("socket"))  # see _run_control
            if not isinstance(reply, Connack) or reply.reason_code:
                self.refuse_stream(relay.stream_id, AppError.UPSTREAM,
                                   f"data stream refused: {reply!r}")
                writer.close()
                return
            imposed = reply.properties.get("server_keep_alive") if reply.properties else None
            relay.attach(writer)
            relay.last_upstream_write = asyncio.get_running_loop().time()
            relay.pinger = asyncio.ensure_future(relay.keep_upstream_alive(imposed or keepalive))
            await relay.pump_to_client(reader)
            self.send(relay.stream_id, b"", end_stream=True)
        except (asyncio.IncompleteReadError, ConnectionError, MalformedPacket) as exc:
            logger.info("data stream %d of %s ended: %s", relay.stream_id, self.peer, exc)
            self.refuse_stream(relay.stream_id, AppError.UPSTREAM, "upstream closed")
        finally:
            writer.close()
            if relay.pinger is not None:
                relay.pinger.cancel()

    def _fail_connected(self, why: str) -> None:
        """Data streams waiting for the control CONNACK give up."""
        for future in (self.connect_seen, self.connected):
            if not future.done():
                future.set_exception(ConnectionError(why))
                future.exception()  # retrieved here: no "never retrieved" warning

    def _shutdown(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._deadline.cancel()
        for relay in self.relays.values():
            relay.close()
        self.relays.clear()
        self._fail_connected("QUIC connection closed")
        self.gateway._connections.discard(self)
        if self.refused_streams > 1:
            logger.warning("connection of %s ended: %d streams were refused in all", self.peer,
                           self.refused_streams)


class Gateway:
    """``async with Gateway(GatewayConfig(...)) as gw:`` serves until the block ends."""

    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = config or GatewayConfig()
        self._server: QuicServer | None = None
        self._tcp_server: asyncio.AbstractServer | None = None
        self._tickets = _SingleUseTickets()
        self._connections: set[_GatewayConnection] = set()
        self._tcp_tasks: set[asyncio.Task[None]] = set()
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.quic_port = 0
        self.tcp_port = 0
        self.ca_file: str | None = None  # the CA of the generated (or kept) certificate
        self._cert: tuple[str, str] = ("", "")
        self.quic_connections = 0  # accepted since start
        self.tcp_connections = 0
        self.refused_connections = 0  # QUIC connections over max_connections
        self.upstream_connections = 0  # TCP connections opened to the broker for QUIC streams
        self.resets = StatelessResets(self.config.stateless_reset_key)

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _certificate(self) -> tuple[str, str]:
        if self.config.cert_file and self.config.key_file:
            return self.config.cert_file, self.config.key_file
        if self.config.identity_dir is not None:
            kept = kept_identity(self.config.identity_dir)
            self.ca_file = str(kept.ca_file)
            logger.info("gateway certificate %s; clients trust its CA %s", kept.cert_file,
                        self.ca_file)
            return str(kept.cert_file), str(kept.key_file)
        self._tmpdir = tempfile.TemporaryDirectory(prefix="mqttquic-gateway-")
        files = generate_certificates(self._tmpdir.name)
        self.ca_file = str(files.ca_file)
        logger.warning("no certificate given: generated a throwaway one; its CA is %s",
                       self.ca_file)
        return str(files.cert_file), str(files.key_file)

    async def start(self) -> None:
        self._cert = self._certificate()
        if self.config.quic_port is not None:
            await self.start_quic()
        if self.config.tcp_port is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self._cert)
            port = self.tcp_port or self.config.tcp_port  # again on the same port after stop()
            try:
                with _naming("tcp", self.config.tcp_host, port):
                    self._tcp_server = await asyncio.start_server(
                        self._serve_tcp, self.config.tcp_host, port, ssl=context)
            except OSError:
                await self.stop_quic()
                raise
            self.tcp_port = self._tcp_server.sockets[0].getsockname()[1]
        logger.info("gateway: QUIC on %s, TLS TCP on %s, upstream %s:%d",
                    f"{self.config.quic_host}:{self.quic_port}" if self._server else "off",
                    f"{self.config.tcp_host}:{self.tcp_port}" if self._tcp_server else "off",
                    self.config.upstream_host, self.config.upstream_port)

    async def start_quic(self) -> None:
        """Open the QUIC listener (again, on the same port after stop_quic())."""
        if self._server is not None:
            return
        configuration = QuicConfiguration(is_client=False, alpn_protocols=[ALPN],
                                          idle_timeout=self.config.idle_timeout)
        configuration.load_cert_chain(*self._cert)
        factory: Callable[..., QuicConnectionProtocol] = partial(self._new_connection)
        port = self.quic_port or self.config.quic_port or 0
        with _naming("udp", self.config.quic_host, port):
            self._server = await serve(self.config.quic_host, port, configuration=configuration,
                                       create_protocol=factory,
                                       session_ticket_fetcher=self._tickets.pop,
                                       session_ticket_handler=self._tickets.add)
        transport = _aioquic.server_socket(self._server)
        assert transport is not None
        self.quic_port = transport.get_extra_info("sockname")[1]
        self._answer_unknown_connections(self._server, configuration.connection_id_length)

    def _answer_unknown_connections(self, server: QuicServer, cid_length: int) -> None:
        """A short-header packet for a connection this process does not know (it came to
        an earlier life of the gateway) gets a stateless reset; aioquic drops it."""
        receive = server.datagram_received
        resets = self.resets

        def datagram_received(data: bytes | str, addr: Any) -> None:
            if (isinstance(data, bytes) and data and not data[0] & 0x80
                    and not _aioquic.server_knows(server, data[1:1 + cid_length])):
                reset = resets.reset_for(data, cid_length)
                listener = _aioquic.server_socket(server)
                if reset is not None and listener is not None:
                    listener.sendto(reset, addr)
                return
            receive(data, addr)

        server.datagram_received = datagram_received  # type: ignore[method-assign]

    async def stop_quic(self) -> None:
        """Close the QUIC listener and its connections; the TLS TCP listener stays."""
        for connection in list(self._connections):
            connection.close(reason_phrase="QUIC listener stopped")
            connection._shutdown()
        if self._server is not None:
            self._server.close()
            self._server = None
            # The UDP socket closes on a later loop turn; let it, so the port is free on return.
            for _ in range(3):
                await asyncio.sleep(0)
        logger.info("gateway: QUIC listener stopped")

    def _new_connection(self, *args: Any, **kwargs: Any) -> _GatewayConnection:
        connection = _GatewayConnection(*args, gateway=self, **kwargs)
        if len(self._connections) >= self.config.max_connections:
            self.refused_connections += 1
            level = logging.WARNING if self.refused_connections == 1 else logging.DEBUG
            logger.log(level, "refusing a QUIC connection: %d open (max_connections); %d"
                       " refused so far", len(self._connections), self.refused_connections)
            # Closed once the server has attached it and read the client's Initial.
            asyncio.get_running_loop().call_soon(
                connection.close_for, AppError.TOO_MANY_CONNECTIONS, "too many connections")
            return connection
        self._connections.add(connection)
        self.quic_connections += 1
        return connection

    async def stop(self) -> None:
        await self.stop_quic()
        if self._tcp_server is not None:
            self._tcp_server.close()
            for task in list(self._tcp_tasks):
                task.cancel()
            await asyncio.gather(*self._tcp_tasks, return_exceptions=True)
            await self._tcp_server.wait_closed()
            self._tcp_server = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        logger.info("gateway stopped")

    async def _refuse_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer a TLS client's CONNECT with "Server unavailable", as the QUIC listener
        does, instead of closing without a word (paho: "Unspecified error")."""
        try:
            raw = await asyncio.wait_for(read_packet(reader, self.config.max_packet_size),
                                         self.config.connect_timeout)
            connect = decode_packet(raw)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, MalformedPacket):
            return
        if isinstance(connect, Connect):
            writer.write(server_unavailable(connect))
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(writer.drain(), self.config.upstream_timeout)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tcp_tasks.add(task)
        self.tcp_connections += 1
        peer = writer.get_extra_info("peername")
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.config.upstream_host, self.config.upstream_port),
                self.config.upstream_timeout)
        except (TimeoutError, OSError) as exc:
            logger.error("upstream broker unreachable for TLS client %s: %s", peer, exc)
            try:
                await self._refuse_tcp(reader, writer)
            finally:
                writer.close()
                self._tcp_tasks.discard(task)
            return
        logger.info("TLS TCP client %s relayed upstream", peer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                       sock: Any = None) -> None:
            try:
                while data := await src.read(65536):
                    quick_ack(sock)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer),
                                 pipe(up_reader, writer, up_writer.get_extra_info("socket")))
        except asyncio.CancelledError:
            # The gateway is stopping: this connection ends here, quietly.
            writer.close()
            up_writer.close()
        finally:
            self._tcp_tasks.discard(task)

