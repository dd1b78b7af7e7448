"""Opening one connection as the config says: QUIC, TCP+TLS, or the race of the two.

- QUIC first; if it has no CONNACK after its head start (``policy.head_start()``) and
  no completed handshake, TCP+TLS (paho-mqtt) races it and the first CONNACK wins.
- The TLS files and the 0-RTT ticket are read off the event loop, in one trip; new
  tickets are saved in the background (``tickets.TicketStore``).
- The transports are imported lazily: aioquic in a worker thread before the first
  connect, paho-mqtt only when TCP+TLS is tried.

``connector.Connector`` decides when to open one; this module opens it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ._inflight import Carry
from ._mqtt_quic import ALPN
from ._tls import load_tls_material
from .codec import Will
from .config import ConnectionConfig
from .errors import ConnectError, ConnectionRefused, TLSFileError
from .policy import ConnectionPolicy
from .tickets import TicketStore
from .transports.base import Transport

__all__ = ["Dialer", "EarlyMessage"]

EarlyMessage = tuple[str, bytes, bool, "dict[str, Any] | None"]


class Dialer:
    """Opens connections for one client; keeps what one connection leaves the next:
    the path's RTT, the 0-RTT tickets, a persistent session's unfinished flows."""

    def __init__(self, config: ConnectionConfig, policy: ConnectionPolicy, *,
                 will: Callable[[], Will | None],
                 connect_properties: Callable[[], dict[str, Any] | None],
                 logger: logging.Logger) -> None:
        self.config = config
        self.policy = policy
        self.logger = logger
        self._will = will
        self._connect_properties = connect_properties
        self.tickets = TicketStore(config.ticket_path()) if config.zero_rtt else None
        # A persistent session's unfinished QoS 1/2 flows between QUIC connections.
        self.carry: Carry | None = None
        # connect(early_messages=...) while it runs: sent behind CONNECT on QUIC.
        self.early: list[EarlyMessage] = []
        self._warned_no_aioquic = False
        # The path's round-trip time (seconds), from the last connection (or the ticket
        # file): QUIC's first retransmission timer and the head start follow it.
        self.path_rtt: float | None = None

    async def load_transports(self) -> None:
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

    async def open(self, connect_timeout: float | None = None) -> Transport:
        """A connection as the config says (``connect_timeout``: this attempt's own)."""
        config = self.config
        if connect_timeout is not None and connect_timeout != config.connect_timeout:
            config = dataclasses.replace(config, connect_timeout=connect_timeout)
        mode = config.transport
        if mode == "tcp":
            return await self.open_tcp(config)
        if self._quic_module() is None:
            if mode == "quic":
                raise ConnectError("transport 'quic' needs aioquic, which is not installed")
            return await self.open_tcp(config)
        if mode == "quic":
            return await self.open_quic(config=config)
        return await self._race(config)

    async def open_quic(self, handshake: asyncio.Event | None = None,
                         config: ConnectionConfig | None = None) -> Transport:
        quic = self._quic_module()
        if quic is None:
            raise ConnectError("MQTT over QUIC needs aioquic, which is not installed")
        config = config or self.config
        tickets = self.tickets
        handler = None
        loop = asyncio.get_running_loop()

        def read_files() -> tuple[Any, str, Any, float | None]:
            # The TLS files (a bad one raises TLSFileError before any packet), then the
            # ticket, offered once and only under the trust it was earned under.
            tls = load_tls_material(config, ALPN)
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
            session_ticket=ticket, ticket_handler=handler, adopt=self.carry,
            early_messages=self.early, handshake=handshake, initial_rtt=self.path_rtt)
        if transport.rtt_ms is not None:
            self.path_rtt = transport.rtt_ms / 1000
        self.carry = None  # the new connection owns the carried flows now
        return transport

    async def open_tcp(self, config: ConnectionConfig | None = None) -> Transport:
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
        quic = asyncio.ensure_future(self.open_quic(handshake, config))
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
                return await self.open_tcp(config)
            except ConnectionRefused:
                raise
            except ConnectError as tcp_exc:
                raise ConnectError(f"both transports failed: QUIC: {exc}; TCP+TLS: {tcp_exc}") from None
        self.logger.info("QUIC did not connect within %.0f ms: racing TCP+TLS", head_start * 1000)
        tcp = asyncio.ensure_future(self.open_tcp(config))
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


def _import_tcp() -> None:
    try:
        from .transports import tcp  # noqa: F401
    except ImportError:
        pass  # reported by the connect that needs it
