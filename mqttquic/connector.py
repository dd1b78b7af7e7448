"""Opening, losing and regaining the connection: the asyncio side of the connection
policy (``policy.ConnectionPolicy`` decides, this module does).

- Open: QUIC first; if it has no CONNACK after a short head start (and no completed
  handshake), TCP+TLS (paho-mqtt) races it and the first CONNACK wins.
- While on TCP+TLS, QUIC is probed in the background; when it works the session
  moves over (a planned handover, not a loss).
- After an unexpected loss: reconnect with the policy's backoff, restore the
  subscriptions, and let waiting publishes through; a final refusal fails them.
- 0-RTT tickets are read and written off the event loop.

``Client`` owns one Connector and keeps the user-facing API.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ._aio import within
from ._inflight import Carry
from ._tls import load_tls_material
from .codec import Subscription, Will
from .config import ConnectionConfig, TransportType
from .errors import (
    ConnectError,
    ConnectionRefused,
    MQTTQUICError,
    OfflineQueueFull,
    PathDead,
    TLSFileError,
)
from .message import Message
from .policy import Backoff, ConnectionPolicy, Loss, NoWait, QuicProbes, State
from .tickets import TicketStore
from .transports.base import Transport

__all__ = ["Connector"]

logger = logging.getLogger("mqttquic.client")

EarlyMessage = tuple[str, bytes, bool, "dict[str, Any] | None"]


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
        self._will = will
        self._connect_properties = connect_properties
        self._up = asyncio.Event()  # set while a transport is connected (or when closed/failed)
        self._reconnecting: asyncio.Task[None] | None = None
        self._probing: asyncio.Task[None] | None = None
        # The TCP+TLS transport a QUIC probe is replacing: the probe's CONNECT, with the same
        # client id, makes the broker drop it, and that is no reason to reconnect.
        self._handing_over: Transport | None = None
        self._tickets = TicketStore(config.ticket_path()) if config.zero_rtt else None
        # A persistent session's unfinished QoS 1/2 flows between QUIC connections.
        self._carry: Carry | None = None
        # connect(early_messages=...) while it runs: sent behind CONNECT on QUIC.
        self.early: list[EarlyMessage] = []
        self._warned_no_aioquic = False
        # The path's round-trip time (seconds), from the last connection (or the ticket
        # file): QUIC's first retransmission timer and the head start follow it.
        self.path_rtt: float | None = None

    @property
    def is_connected(self) -> bool:
        return self.transport is not None and self.transport.is_connected

    # --- connects the user asks for ------------------------------------------------------------

    async def connect(self, transport: str | None = None) -> Transport:
        """Open a connection: ``transport`` "quic", "tcp", or None for ``config.transport``.
        The time to CONNACK is measured from after the transports are imported."""
        self.policy.open()
        await self._load_transports()
        started = time.monotonic()
        if transport == "quic":
            opened = await self._open_quic()
        elif transport == "tcp":
            opened = await self._open_tcp()
        else:
            opened = await self._open()
        self._attach(opened, time.monotonic() - started, reconnected=False)
        return opened

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
        if self._tickets is not None:
            await self._tickets.saved()

    async def ready(self) -> Transport:
        """The connected transport; while reconnecting, wait for it (a bounded number of
        waiters, ``max_offline_queue``). The caller's deadline bounds the wait."""
        policy = self.policy
        while True:
            transport = self.transport
            if transport is not None and transport.is_connected and policy.state is not State.FAILED:
                return transport
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

    # --- opening -------------------------------------------------------------------------------

    async def _load_transports(self) -> None:
        """Import the transport that is tried first in a worker thread, once: importing
        aioquic takes 0.1-0.2 s, which would otherwise stall the event loop and count as
        connect time. paho-mqtt (30-40 ms more) waits until TCP+TLS is tried: a connect
        that QUIC answers never needs it (``mqttquic pub`` starts that much sooner)."""
        loop = asyncio.get_running_loop()
        if self.config.transport != "tcp" and "mqttquic.transports.quic" not in sys.modules:
            await loop.run_in_executor(None, self._quic_module)
        if self.config.transport == "tcp":
            await self._load_tcp()

    async def _load_tcp(self) -> None:
        if "mqttquic.transports.tcp" not in sys.modules:
            await asyncio.get_running_loop().run_in_executor(None, _import_tcp)

    def _quic_module(self) -> ModuleType | None:
        try:
            from .transports import quic
        except ImportError as exc:
            if not self._warned_no_aioquic:
                self.logger.warning("aioquic is not installed (%s): MQTT over TCP+TLS only;"
                                    " pip install aioquic for QUIC", exc)
                self._warned_no_aioquic = True
            return None
        return quic

    async def _open(self, connect_timeout: float | None = None) -> Transport:
        """A connection as the config says (``connect_timeout``: this attempt's own)."""
        config = self.config
        if connect_timeout is not None and connect_timeout != config.connect_timeout:
            config = dataclasses.replace(config, connect_timeout=connect_timeout)
        mode = config.transport
        if mode == "tcp":
            return await self._open_tcp(config)
        if self._quic_module() is None:
            if mode == "quic":
                raise ConnectError("transport 'quic' needs aioquic, which is not installed")
            return await self._open_tcp(config)
        if mode == "quic":
            return await self._open_quic(config=config)
        return await self._race(config)

    async def _open_quic(self, handshake: asyncio.Event | None = None,
                         config: ConnectionConfig | None = None) -> Transport:
        quic = self._quic_module()
        if quic is None:
            raise ConnectError("MQTT over QUIC needs aioquic, which is not installed")
        config = config or self.config
        tickets = self._tickets
        handler = None
        loop = asyncio.get_running_loop()

        def read_files() -> tuple[Any, str, Any, float | None]:
            # The TLS files (a bad one raises TLSFileError before any packet), then the
            # ticket, offered once and only under the trust it was earned under.
            tls = load_tls_material(config, quic.ALPN)
            key = TicketStore.key(config.host, config.quic_port, config.server_name or config.host,
                                  tls.trust_id)
            if tickets is None:
                return tls, key, None, None
            return (tls, key, *tickets.take_resumption(key))

        # File I/O off the event loop, in one trip to a worker thread.
        tls, key, ticket, rtt = await loop.run_in_executor(None, read_files)
        if rtt is not None:
            self.path_rtt = rtt
        if tickets is not None:

            def handler(new_ticket: Any, measured_rtt: float | None) -> None:
                tickets.save_soon(key, new_ticket, measured_rtt)
        transport: Transport = await quic.connect_quic(
            config, will=self._will(), properties=self._connect_properties(), tls=tls,
            session_ticket=ticket, ticket_handler=handler, adopt=self._carry,
            early_messages=self.early, handshake=handshake, initial_rtt=self.path_rtt)
        if transport.rtt_ms is not None:
            self.path_rtt = transport.rtt_ms / 1000
        self._carry = None  # the new connection owns the carried flows now
        return transport

    async def _open_tcp(self, config: ConnectionConfig | None = None) -> Transport:
        await self._load_tcp()
        from .transports.tcp import connect_tcp  # paho-mqtt is imported only when used

        return await connect_tcp(config or self.config, will=self._will(),
                                 properties=self._connect_properties())

    async def _race(self, config: ConnectionConfig) -> Transport:
        """QUIC, joined by TCP+TLS after the head start; the first CONNACK wins.

        A QUIC handshake that completed within the head start shows that QUIC works:
        TCP+TLS is then not started for this attempt (it would only send the same
        CONNECT twice), and QUIC alone answers within its connect timeout."""
        handshake = asyncio.Event()
        quic = asyncio.ensure_future(self._open_quic(handshake, config))
        head_start = self.policy.head_start(config.head_start, self.path_rtt)
        done, _ = await asyncio.wait({quic}, timeout=head_start)
        if not done and handshake.is_set():
            await asyncio.wait({quic})
            done = {quic}
        if done:
            exc = quic.exception()
            if exc is None:
                return quic.result()
            # A refusal, or a TLS file that TCP+TLS would read too: no fallback.
            if isinstance(exc, (ConnectionRefused, TLSFileError)):
                raise exc
            self.logger.warning("QUIC failed (%s): trying TCP+TLS", exc)
            try:
                return await self._open_tcp(config)
            except ConnectionRefused:
                raise
            except ConnectError as tcp_exc:
                raise ConnectError(f"both transports failed: QUIC: {exc}; TCP+TLS: {tcp_exc}") from None
        self.logger.info("QUIC did not connect within %.0f ms: racing TCP+TLS", head_start * 1000)
        tcp = asyncio.ensure_future(self._open_tcp(config))
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
                        why = errors.get("QUIC") or f"no QUIC handshake within {head_start} s"
                        self.logger.warning("using TCP+TLS, not QUIC: %s", why)
                    return task.result()
                if isinstance(exc, (ConnectionRefused, TLSFileError)):
                    for other in pending:
                        other.cancel()
                    raise exc
                errors[names[task]] = exc
        raise ConnectError(f"both transports failed: QUIC: {errors.get('QUIC')};"
                           f" TCP+TLS: {errors.get('TCP+TLS')}")

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
        if self._carry is not None and transport.transport_type is not TransportType.QUIC:
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

    # --- losing and regaining the connection ------------------------------------------------------

    def _lost(self, transport: Transport, exc: BaseException) -> None:
        if transport is not self.transport:
            return
        planned = transport is self._handing_over
        decision = self.policy.lost(time.monotonic(), planned, path_dead=isinstance(exc, PathDead))
        if planned and not self.policy.is_closed:
            # Publishes wait for the QUIC connection; the probe reconnects if it fails.
            self.logger.info("TCP+TLS connection closed by the broker for the move to QUIC (%s)",
                             exc)
            self._up.clear()
            return
        if decision is Loss.IGNORE:
            return
        self._carry = transport.carry_over()
        self._up.clear()
        if decision is Loss.RECONNECT:
            self.logger.warning("connection lost (%s): reconnecting", exc)
            self._reconnecting = asyncio.ensure_future(self._reconnect())
            self._on_lost(exc)
        else:
            self._fail(exc)

    def _drop_carry(self, exc: BaseException) -> None:
        carry, self._carry = self._carry, None
        if carry is not None:
            carry.drop(exc)

    def _fail(self, exc: BaseException) -> None:
        """No more connections: wake everything that waits, with ``exc``."""
        self.policy.fail(exc)
        self._drop_carry(exc)
        self._up.set()
        self._on_failed(exc)

    async def _reconnect(self) -> None:
        policy = self.policy
        attempt = 0
        try:
            while policy.state is State.RECONNECTING:
                # The backoff outlives this loop: connections that die right after
                # CONNACK keep it growing (policy.Backoff).
                await asyncio.sleep(policy.next_delay(time.monotonic()))
                attempt += 1
                started = time.monotonic()
                timeout = policy.attempt_timeout(self.config.connect_timeout, attempt - 1)
                try:
                    transport = await self._open(timeout)
                except ConnectError as exc:
                    if not policy.attempt_failed(exc):
                        if policy.is_failed:
                            self.logger.error("reconnect refused for good: %s", exc)
                            self._fail(exc)
                        return
                    self.logger.warning("reconnect attempt %d failed: %s", attempt, exc)
                    continue
                if policy.state is not State.RECONNECTING:  # closed meanwhile
                    await transport.disconnect()
                    return
                self._attach(transport, time.monotonic() - started, reconnected=True)
                self.logger.info("reconnected over %s after %d attempt(s)",
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
            quic = await self._open_quic(config=probe)
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


def _import_tcp() -> None:
    try:
        from .transports import tcp  # noqa: F401
    except ImportError:
        pass  # reported by the connect that needs it
