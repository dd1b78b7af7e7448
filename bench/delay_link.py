"""A userland link on loopback: UDP and TCP relays that hold each chunk for a while,
and whose client-to-server UDP direction can be black-holed.

Kernel netem is not available here; these relays give a path with a real round-trip
time, so that handshake round trips show up in the measurements, and a path that dies
as a firewall or a dead radio makes it die. The benchmarks and the tests
(``tests/test_recovery.py``, ``test_migration.py``, ``test_security.py``) share them.
"""

from __future__ import annotations

import asyncio
from typing import Any


class UdpDelayRelay(asyncio.DatagramProtocol):
    """Listens on 127.0.0.1; forwards each datagram to ``target`` (and back) after
    ``delay`` seconds each way. While ``blocked``, what the client sends is dropped
    (and counted in ``dropped``); the server's datagrams still arrive. ``lose(to_server=N,
    to_client=M)`` drops the next N datagrams one way and M the other."""

    def __init__(self, target: tuple[str, int], delay: float = 0.0) -> None:
        self.target = target
        self.delay = delay
        self.blocked = False
        self.dropped = 0
        self._lose = {"to_server": 0, "to_client": 0}
        self.transport: asyncio.DatagramTransport | None = None
        self._upstreams: dict[Any, asyncio.DatagramTransport] = {}

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self,
                                                           local_addr=("127.0.0.1", 0))
        self.transport = transport
        return int(transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def lose(self, *, to_server: int = 0, to_client: int = 0) -> None:
        self._lose["to_server"] += to_server
        self._lose["to_client"] += to_client

    def _lost(self, way: str) -> bool:
        if self._lose[way] <= 0:
            return False
        self._lose[way] -= 1
        self.dropped += 1
        return True

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.blocked:
            self.dropped += 1
            return
        if self._lost("to_server"):
            return
        loop = asyncio.get_running_loop()
        upstream = self._upstreams.get(addr)
        if upstream is None:
            relay = self

            class Back(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, _: Any) -> None:
                    if relay.transport is not None and not relay._lost("to_client"):
                        loop.call_later(relay.delay, relay.transport.sendto, data, addr)

            async def open_upstream() -> None:
                transport, _ = await loop.create_datagram_endpoint(Back, remote_addr=self.target)
                self._upstreams[addr] = transport
                loop.call_later(self.delay, transport.sendto, data)

            asyncio.ensure_future(open_upstream())
            return
        loop.call_later(self.delay, upstream.sendto, data)

    def close(self) -> None:
        for transport in self._upstreams.values():
            transport.close()
        if self.transport is not None:
            self.transport.close()


class TcpDelayRelay:
    """Accepts on 127.0.0.1 and relays to ``target``, each chunk held ``delay`` seconds."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target = target
        self.delay = delay
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        # The TCP handshake to the far side costs a round trip too.
        await asyncio.sleep(2 * self.delay)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def deliver() -> None:
                while True:
                    due, data = await queue.get()
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    if not data:
                        dst.close()
                        return
                    dst.write(data)

            sender = asyncio.ensure_future(deliver())
            try:
                while data := await src.read(65536):
                    queue.put_nowait((loop.time() + self.delay, data))
            except ConnectionError:
                pass
            queue.put_nowait((loop.time() + self.delay, b""))
            await sender

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer),
                             return_exceptions=True)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
