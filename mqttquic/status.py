"""What a client knows and tells about its connection: the statistics
(``ConnectionStats``), one history entry per connect, the change feed of
``connection_changes()``, and the user's ``on_connect``/``on_disconnect``.

The connector reports each turn (connected, lost, failed) and the client its close;
this module turns them into what the application reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ._aio import within
from .changes import ChangeFeed, ConnectionChange, UserCallbacks
from .config import ConnectionConfig, ConnectionStats, TransportType
from .transports.base import Transport

__all__ = ["ConnectionStatus"]

Callback = Callable[[ConnectionChange], Any] | None


class ConnectionStatus:
    """The connection as one client's application sees it."""

    def __init__(self, config: ConnectionConfig, callbacks: UserCallbacks, *,
                 on_connect: Callable[[], Callback], on_disconnect: Callable[[], Callback]) -> None:
        self.config = config
        self.stats = ConnectionStats()
        # One entry per connect: transport, seconds to CONNACK, resumed, 0-RTT.
        self.history: list[dict[str, Any]] = []
        self.feed = ChangeFeed()
        self._callbacks = callbacks
        # The user's callbacks, read at each change: the application may set them late.
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect

    def connected(self, transport: Transport, elapsed: float, reconnected: bool,
                  moved: bool) -> None:
        """A new connection (``elapsed``: seconds from starting to connect to CONNACK)."""
        stats = self.stats
        if reconnected:
            stats.reconnect_count += 1
        stats.transport = transport.transport_type
        stats.connected = True
        stats.connect_time = elapsed
        stats.session_resumed = transport.session_resumed
        stats.zero_rtt_used = transport.zero_rtt_used
        stats.last_activity = time.time()
        self.history.append({
            "transport": transport.transport_type.value, "connect_time": elapsed,
            "transport_connect_time": transport.connect_time,
            "session_resumed": transport.session_resumed, "zero_rtt_used": transport.zero_rtt_used})
        self._change(ConnectionChange(
            "connected", transport.transport_type, session_present=transport.session_present,
            reconnected=reconnected, moved=moved,
            fallback=(transport.transport_type is TransportType.TCP_TLS
                      and self.config.transport == "auto")), self._on_connect())

    def lost(self, exc: BaseException) -> None:
        """The connection was lost; the connector reconnects."""
        self.stats.connected = False
        self._change(ConnectionChange("lost", self.stats.transport, reason=exc),
                     self._on_disconnect())

    def failed(self, exc: BaseException) -> None:
        """No more connections."""
        self.stats.connected = False
        self._change(ConnectionChange("failed", self.stats.transport, reason=exc),
                     self._on_disconnect())

    def closed(self, was_open: bool) -> None:
        """disconnect() closed the client (a change only if it was open)."""
        self.stats.connected = False
        if was_open:
            self._change(ConnectionChange("closed", self.stats.transport), self._on_disconnect())

    def activity(self, sent: int = 0, received: int = 0) -> None:
        self.stats.messages_sent += sent
        self.stats.messages_received += received
        self.stats.last_activity = time.time()

    def snapshot(self, transport: Transport | None, messages_dropped: int) -> dict[str, Any]:
        """``get_stats()``: the statistics with the transport's live figures."""
        stats = self.stats
        if transport is not None:
            stats.connected = transport.is_connected
            stats.bytes_sent = transport.bytes_sent
            stats.bytes_received = transport.bytes_received
            stats.rtt_ms = transport.rtt_ms
            stats.streams_open = transport.streams_open
        else:
            stats.connected = False
            stats.streams_open = 0
        stats.messages_dropped = messages_dropped
        return stats.as_dict()

    async def wait_connected(self, timeout: float) -> ConnectionChange:
        """The change that connected the client (now, or after a reconnect), within
        ``timeout``; raises the reason when connecting failed for good."""
        def settled(change: ConnectionChange | None) -> bool:
            return change is not None and change.state in ("connected", "failed")

        await within(self.feed.wait(settled), timeout, "wait for a connection")
        last = self.feed.last
        assert last is not None
        if last.state == "failed" and last.reason is not None:
            raise last.reason
        return last

    def _change(self, change: ConnectionChange, callback: Callback) -> None:
        self.feed.publish(change)
        self._callbacks.call(callback, change)
