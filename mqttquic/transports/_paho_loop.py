"""paho-mqtt's socket on the asyncio loop, as aiomqtt drives it.

paho's socket callbacks hand its socket to ``loop.add_reader``/``add_writer``, and its
housekeeping (keepalive, timeouts) runs from a task once a second: no paho thread.
Only the blocking TCP connect and TLS handshake run in a worker thread; during it the
socket callbacks fire there and must not touch the loop, so ``watch()`` registers the
socket from the loop thread afterwards. The MQTT bytes paho reads and writes are
counted here too.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import paho.mqtt.client as paho

from .._aio import quick_ack

__all__ = ["PahoSockets"]


class PahoSockets:
    """The socket of one paho client, watched by the running loop."""

    def __init__(self, client: paho.Client) -> None:
        self._client = client
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._misc: asyncio.Task[None] | None = None
        self.bytes_sent = 0
        self.bytes_received = 0
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        self._count_bytes()

    def watch(self) -> bool:
        """After the worker thread's connect: watch the socket from the loop (and send
        small packets without Nagle's delay, which paho leaves on). False: no socket."""
        sock = self._client.socket()
        if sock is None:
            return False
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._loop.add_reader(sock, self._readable)
        if self._client.want_write():
            self._loop.add_writer(sock, self._client.loop_write)
        return True

    def start_housekeeping(self) -> None:
        """paho's keepalive and timeouts live in ``loop_misc()``, about once a second."""
        self._misc = asyncio.ensure_future(self._housekeeping())

    def stop(self) -> None:
        """Stop watching the socket and the housekeeping; close the socket."""
        if self._misc is not None:
            self._misc.cancel()
        sock = self._client.socket()
        if sock is not None:
            self._unwatch(sock)
        self._client._sock_close()

    async def _housekeeping(self) -> None:
        while True:  # until the connection is gone
            await asyncio.sleep(1.0)
            if self._client.loop_misc() == paho.MQTT_ERR_NO_CONN:
                return

    def _count_bytes(self) -> None:
        # paho reads and writes through these two methods: count MQTT bytes there.
        recv, send = self._client._sock_recv, self._client._sock_send

        def counting_recv(size: int) -> bytes:
            data = recv(size)
            self.bytes_received += len(data)
            return data

        def counting_send(buf: bytes | bytearray) -> int:
            sent = send(buf)
            self.bytes_sent += sent
            return sent

        self._client._sock_recv = counting_recv  # type: ignore[method-assign,assignment]
        self._client._sock_send = counting_send  # type: ignore[method-assign]

    def _on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def _readable(self) -> None:
        client = self._client
        if client.loop_read() != paho.MQTT_ERR_SUCCESS:
            return
        quick_ack(client.socket())
        # TLS reads whole records: bytes of further packets can wait inside the SSL object,
        # where the selector cannot see them. Drain them now, not at the next keepalive.
        sock = client.socket()
        while sock is not None and getattr(sock, "pending", lambda: 0)() > 0:
            if client.loop_read() != paho.MQTT_ERR_SUCCESS:
                return
            sock = client.socket()

    def _socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._on_loop_thread():
            self._loop.add_reader(sock, self._readable)

    def _socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._on_loop_thread():
            self._unwatch(sock)

    def _unwatch(self, sock: Any) -> None:
        if sock.fileno() >= 0:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)

    def _register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._on_loop_thread():
            self._loop.add_writer(sock, client.loop_write)

    def _unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._on_loop_thread() and sock.fileno() >= 0:
            self._loop.remove_writer(sock)
