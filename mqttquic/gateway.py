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
import logging
import ssl
import tempfile
from collections.abc import Callable
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

from ._aio import quick_ack, read_packet
from .certs import generate_certificates
from .codec import Connack, Connect, StreamDecoder, decode_packet, encode
from .errors import MalformedPacket

__all__ = ["GatewayConfig", "Gateway", "ALPN"]

logger = logging.getLogger("mqttquic.gateway")

ALPN = "mqtt"
CONTROL_STREAM = 0
# QUIC application error codes used when the gateway resets a stream.
ERROR_TOO_MANY_STREAMS = 0x101  # clients take this one as final (transports.base)
ERROR_BUFFER_FULL = 0x102
ERROR_UPSTREAM = 0x103


@dataclass
class GatewayConfig:
    upstream_host: str = "127.0.0.1"
    upstream_port: int = 1883
    quic_host: str = "127.0.0.1"
    quic_port: int | None = 14567  # None: no QUIC listener
    tcp_host: str = "127.0.0.1"
    tcp_port: int | None = 8884  # None: no TLS TCP listener
    cert_file: str | None = None  # None: a throwaway self-signed certificate
    key_file: str | None = None
    max_data_streams: int = 9  # EMQX allows 10 bidirectional streams, control included
    max_buffer: int = 4 * 1024 * 1024  # per stream, either direction
    idle_timeout: float = 300.0
    upstream_timeout: float = 10.0


class _TicketStore:
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
        self.pending = bytearray()  # client bytes waiting for the upstream connection
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.client_finished = False

    def from_client(self, data: bytes, end_stream: bool) -> None:
        if self.writer is None:
            self.pending += data
            if len(self.pending) > self.connection.gateway.config.max_buffer:
                self.connection.reset_stream(self.stream_id, ERROR_BUFFER_FULL,
                                             "buffer full before the upstream was ready")
                return
        elif data:
            self.writer.write(data)
            if self.writer.transport.get_write_buffer_size() > self.connection.gateway.config.max_buffer:
                self.connection.reset_stream(self.stream_id, ERROR_BUFFER_FULL,
                                             "upstream does not keep up")
                return
        if end_stream:
            self.client_finished = True
            if self.writer is not None and self.writer.can_write_eof():
                self.writer.write_eof()

    def attach(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        if self.pending:
            writer.write(bytes(self.pending))
            self.pending.clear()
        if self.client_finished and writer.can_write_eof():
            writer.write_eof()

    async def pump_to_client(self, reader: asyncio.StreamReader) -> None:
        connection = self.connection
        sock = self.writer.get_extra_info("socket") if self.writer is not None else None
        while True:
            data = await reader.read(65536)
            if not data:
                return
            quick_ack(sock)
            connection.send(self.stream_id, data)
            await connection.wait_for_room(self.stream_id)

    def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.writer is not None:
            self.writer.close()


class _GatewayConnection(QuicConnectionProtocol):
    """The gateway's side of one QUIC connection."""

    def __init__(self, *args: Any, gateway: Gateway, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gateway = gateway
        self.relays: dict[int, _StreamRelay] = {}
        self.connect_packet: Connect | None = None
        self.connected = asyncio.get_running_loop().create_future()  # control CONNACK success
        self._control_decoder = StreamDecoder()
        self._finished = False
        self.peer = "?"

    # --- QUIC side ---------------------------------------------------------------

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self._stream_data(event.stream_id, event.data, event.end_stream)
        elif isinstance(event, StreamReset):
            relay = self.relays.pop(event.stream_id, None)
            if relay is not None:
                relay.close()
        elif isinstance(event, HandshakeCompleted):
            addr = self._quic._network_paths[0].addr if self._quic._network_paths else None
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
        try:
            self._quic.send_stream_data(stream_id, data, end_stream)
        except (AssertionError, ValueError) as exc:  # stream already finished or reset
            logger.debug("dropping %d bytes for closed stream %d: %s", len(data), stream_id, exc)
            return
        self._transmit_soon()

    async def wait_for_room(self, stream_id: int) -> None:
        """Pause reading upstream while this stream has too much unsent data queued."""
        limit = self.gateway.config.max_buffer
        for _ in range(10_000):
            stream = self._quic._streams.get(stream_id)
            buffered = len(getattr(getattr(stream, "sender", None), "_buffer", b"")) if stream else 0
            if buffered <= limit or self._finished:
                return
            await asyncio.sleep(0.005)

    def reset_stream(self, stream_id: int, code: int, why: str) -> None:
        logger.warning("resetting stream %d of %s: %s", stream_id, self.peer, why)
        relay = self.relays.pop(stream_id, None)
        if relay is not None:
            relay.close()
        try:
            self._quic.reset_stream(stream_id, code)
            self._quic.stop_stream(stream_id, code)
        except (AssertionError, ValueError):
            pass
        self.transmit()

    def _stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        relay = self.relays.get(stream_id)
        if relay is None:
            if stream_id % 4 != 0:
                # Only client-initiated bidirectional streams carry MQTT.
                self.reset_stream(stream_id, ERROR_TOO_MANY_STREAMS, "not a bidirectional stream")
                return
            data_streams = sum(1 for sid in self.relays if sid != CONTROL_STREAM)
            if stream_id != CONTROL_STREAM and data_streams >= self.gateway.config.max_data_streams:
                self.reset_stream(stream_id, ERROR_TOO_MANY_STREAMS,
                                  f"more than {self.gateway.config.max_data_streams} data streams")
                return
            relay = self.relays[stream_id] = _StreamRelay(self, stream_id)
            runner = self._run_control if stream_id == CONTROL_STREAM else self._run_data
            relay.task = asyncio.ensure_future(runner(relay))
        if stream_id == CONTROL_STREAM and self.connect_packet is None and data:
            self._watch_connect(data)
        relay.from_client(data, end_stream)

    def _watch_connect(self, data: bytes) -> None:
        try:
            for packet in self._control_decoder.feed(data):
                if isinstance(packet, Connect):
                    self.connect_packet = packet
                    logger.info("CONNECT from %s: client id %r, MQTT %s", self.peer,
                                packet.client_id, "5.0" if packet.protocol_version == 5 else "3.1.1")
                    return
        except MalformedPacket as exc:
            logger.warning("malformed control stream from %s: %s", self.peer, exc)
            self.close(error_code=0x1, reason_phrase="malformed packet")

    # --- upstream side ----------------------------------------------------------------

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        config = self.gateway.config
        return await asyncio.wait_for(
            asyncio.open_connection(config.upstream_host, config.upstream_port),
            config.upstream_timeout)

    async def _run_control(self, relay: _StreamRelay) -> None:
        try:
            reader, writer = await self._open_upstream()
        except (OSError, asyncio.TimeoutError) as exc:
            logger.error("upstream broker unreachable for %s: %s", self.peer, exc)
            self.close(error_code=ERROR_UPSTREAM, reason_phrase="upstream broker unreachable")
            return
        relay.attach(writer)
        try:
            connack = await read_packet(reader)
            version = self.connect_packet.protocol_version if self.connect_packet else 4
            self.send(CONTROL_STREAM, connack)
            packet = decode_packet(connack, version)
            if isinstance(packet, Connack) and packet.reason_code == 0:
                if not self.connected.done():
                    self.connected.set_result(None)
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

    async def _run_data(self, relay: _StreamRelay) -> None:
        try:
            await asyncio.shield(self.connected)
        except ConnectionError:
            return
        connect = self.connect_packet
        assert connect is not None
        client_id = connect.client_id or f"quic-{id(self):x}"
        derived = Connect(f"{client_id}/{relay.stream_id}", True, 0, connect.username,
                          connect.password, None, None, connect.protocol_version)
        try:
            reader, writer = await self._open_upstream()
        except (OSError, asyncio.TimeoutError) as exc:
            self.reset_stream(relay.stream_id, ERROR_UPSTREAM, f"upstream unreachable: {exc}")
            return
        try:
            writer.write(encode(derived))
            reply = decode_packet(await read_packet(reader), connect.protocol_version)
            if not isinstance(reply, Connack) or reply.reason_code:
                self.reset_stream(relay.stream_id, ERROR_UPSTREAM, f"data stream refused: {reply!r}")
                writer.close()
                return
            relay.attach(writer)
            await relay.pump_to_client(reader)
            self.send(relay.stream_id, b"", end_stream=True)
        except (asyncio.IncompleteReadError, ConnectionError, MalformedPacket) as exc:
            logger.info("data stream %d of %s ended: %s", relay.stream_id, self.peer, exc)
            self.reset_stream(relay.stream_id, ERROR_UPSTREAM, "upstream closed")
        finally:
            writer.close()

    def _fail_connected(self, why: str) -> None:
        """Data streams waiting for the control CONNACK give up."""
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(why))
            self.connected.exception()  # retrieved here: no "never retrieved" warning

    def _shutdown(self) -> None:
        self._finished = True
        for relay in self.relays.values():
            relay.close()
        self.relays.clear()
        self._fail_connected("QUIC connection closed")
        self.gateway._connections.discard(self)


class Gateway:
    """``async with Gateway(GatewayConfig(...)) as gw:`` serves until the block ends."""

    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = config or GatewayConfig()
        self._server: QuicServer | None = None
        self._tcp_server: asyncio.AbstractServer | None = None
        self._tickets = _TicketStore()
        self._connections: set[_GatewayConnection] = set()
        self._tcp_tasks: set[asyncio.Task[None]] = set()
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.quic_port = 0
        self.tcp_port = 0
        self.ca_file: str | None = None  # the CA of the generated certificate, if any
        self._cert: tuple[str, str] = ("", "")
        self.quic_connections = 0  # accepted since start
        self.tcp_connections = 0

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _certificate(self) -> tuple[str, str]:
        if self.config.cert_file and self.config.key_file:
            return self.config.cert_file, self.config.key_file
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
            self._tcp_server = await asyncio.start_server(
                self._serve_tcp, self.config.tcp_host, self.config.tcp_port, ssl=context)
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
        self._server = await serve(self.config.quic_host, port, configuration=configuration,
                                   create_protocol=factory,
                                   session_ticket_fetcher=self._tickets.pop,
                                   session_ticket_handler=self._tickets.add)
        transport = self._server._transport
        assert transport is not None
        self.quic_port = transport.get_extra_info("sockname")[1]

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
        except (OSError, asyncio.TimeoutError) as exc:
            logger.error("upstream broker unreachable for TLS client %s: %s", peer, exc)
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

