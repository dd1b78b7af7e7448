"""The network path under one QUIC connection: kept alive, watched, and moved.

- Idle PINGs: a quiet connection sends a QUIC PING now and then, so that neither the
  idle timeout nor a NAT forgets it, and so that a path that died is noticed.
- The dead-path check: nothing we sent acknowledged for ``DEAD_PATH_AFTER`` (or four
  probe timeouts) means our packets no longer arrive, even while the server's do.
- ``move()``: the connection onto a new UDP socket (``Transport.migrate()``).

What aioquic keeps private (its loss recovery, its idle timeouts) is read through
``_aioquic``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol

from .. import _aioquic
from ..errors import ConnectError, PathDead

__all__ = ["DEAD_PATH_AFTER", "PATH_CHECK_INTERVAL", "PathWatch", "move"]

logger = logging.getLogger("mqttquic.quic")

# A path on which nothing we send has been acknowledged for this long (or four probe
# timeouts, if longer) is dead, even while the server's packets still arrive.
DEAD_PATH_AFTER = 1.0
# How often the check runs while something we sent waits for its acknowledgement. With
# nothing in flight it does not run at all: a connection at rest wakes the event loop
# for its idle PINGs and MQTT keepalive only (a battery device wants no other wake-up).
PATH_CHECK_INTERVAL = 0.2


class PathWatch:
    """Idle PINGs and the dead-path check of one connection, from its handshake on.

    ``on_dead(exc)`` is called once, with PathDead, when the path is found dead."""

    def __init__(self, protocol: QuicConnectionProtocol, *, keepalive: float,
                 on_dead: Callable[[PathDead], None]) -> None:
        self._protocol = protocol
        self._quic = protocol._quic
        self._loop = asyncio.get_running_loop()
        self._keepalive = keepalive
        self._on_dead = on_dead
        self._idle_ping: asyncio.TimerHandle | None = None
        self._check: asyncio.TimerHandle | None = None
        # Since when packets we sent have waited for an acknowledgement with none coming.
        self._unacked_since: float | None = None
        self._acked_marks: tuple[Any, ...] = ()
        self._ping_uid = 0
        self._watching = False

    def start(self) -> None:
        self._watching = True
        interval = self.ping_interval()
        self._idle_ping = self._loop.call_later(interval, self._send_idle_ping, interval)
        self.sent()

    def stop(self) -> None:
        self._watching = False
        for handle in (self._idle_ping, self._check):
            if handle is not None:
                handle.cancel()
        self._idle_ping = self._check = None

    def sent(self) -> None:
        """Packets went out: the check runs while any of them waits for its ACK."""
        if self._watching and self._check is None and _aioquic.ack_progress(self._quic)[1]:
            self._check = self._loop.call_later(PATH_CHECK_INTERVAL, self._check_path)

    def ping_interval(self) -> float:
        """How long the connection may stay quiet before an idle PING (answered by an
        ACK, which restarts both idle timers):

        - a third of the negotiated idle timeout, the smaller of the two peers' (MsQuic
          servers advertise 30 s, some less), which can be shorter than the MQTT
          keepalive, whose PINGREQs would then come too late;
        - half the keepalive, so that a path that died while the connection was quiet
          is found within the keepalive, not after 1.5 x it."""
        intervals = [_aioquic.idle_timeout(self._quic) / 3]
        if self._keepalive:
            intervals.append(self._keepalive / 2)
        return max(0.2, min(intervals))

    def _send_idle_ping(self, interval: float) -> None:
        last = _aioquic.last_ack_eliciting_sent(self._quic)
        quiet_for = self._loop.time() - last if last is not None else interval
        if quiet_for >= interval * 0.9:
            self._ping_uid += 1
            self._quic.send_ping(self._ping_uid)
            self._protocol.transmit()
            quiet_for = 0.0
        self._idle_ping = self._loop.call_later(interval - quiet_for, self._send_idle_ping,
                                                interval)

    def _check_path(self) -> None:
        self._check = None
        now = self._loop.time()
        # aioquic declares a packet lost at each probe timeout and sends its data again,
        # so the age of the oldest packet in flight says little: watch acknowledgements.
        marks, waiting = _aioquic.ack_progress(self._quic)
        if not waiting:  # all acknowledged: rest until something is sent (sent())
            self._acked_marks = marks
            self._unacked_since = None
            return
        if marks != self._acked_marks:
            self._acked_marks = marks
            self._unacked_since = now
        elif self._unacked_since is None:
            self._unacked_since = _aioquic.oldest_unacknowledged(self._quic) or now
        else:
            limit = max(DEAD_PATH_AFTER, 4 * _aioquic.probe_timeout(self._quic))
            waited = now - self._unacked_since
            if waited > limit:
                self.stop()
                self._on_dead(PathDead(f"QUIC path dead: nothing acknowledged for {waited:.1f} s"))
                return
        self._check = self._loop.call_later(PATH_CHECK_INTERVAL, self._check_path)


async def move(protocol: QuicConnectionProtocol, local_host: str | None, timeout: float,
               rtt: float) -> None:
    """Move ``protocol``'s connection to a new UDP socket (a new port of ``local_host``,
    default any address) with a fresh connection ID, and PING the server from there.
    The old socket closes once the PING is answered (a few RTT later: replies to what
    it sent are on their way); without an answer within ``timeout`` the connection
    goes back to the old socket and ConnectError is raised."""
    old = protocol._transport
    if old is None:
        raise ConnectError("not connected")
    try:
        new = await _new_socket(protocol, local_host)  # connection_made: now current
    except OSError as exc:
        raise ConnectError(f"cannot open a socket for the new path: {exc}") from exc
    protocol._quic.change_connection_id()
    try:
        await asyncio.wait_for(protocol.ping(), timeout)
    except ConnectionError as exc:  # aioquic's, for a connection that ended meanwhile
        _retire(new)
        raise ConnectError(f"the connection ended while moving: {exc or 'closed'}") from exc
    except TimeoutError:
        _aioquic.abandon_pings(protocol)
        _retire(new)
        protocol.connection_made(old)
        raise ConnectError(f"the new path did not answer within {timeout:g} s: staying on"
                           " the old one") from None
    asyncio.get_running_loop().call_later(min(2.0, 3 * rtt), _retire, old)
    logger.info("QUIC connection moved to %s", new.get_extra_info("sockname"))


async def _new_socket(protocol: QuicConnectionProtocol,
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
