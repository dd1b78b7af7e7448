"""A network link with delay and random loss between two network namespaces, for QUIC and
TCP alike.

Kernel netem is not available here, so the link is userland: each namespace gets a TUN
device, and this process moves IP packets between the two, holding each for ``delay``
seconds and dropping it with probability ``loss``. It works on packets, so TCP sees real
loss (retransmissions, congestion control) just as QUIC does. ``block_udp_up`` drops the
client's UDP packets only (a firewall, or a path that died while the server's packets
still arrive).

Needs root (namespaces, TUN). Addresses: the client namespace has 10.77.0.1 (and
10.77.0.3, for moves to another address), the server namespace 10.77.0.2.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import random
import struct
import subprocess
from collections.abc import Sequence

__all__ = ["TunLink", "available"]

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_UDP = 17


def available() -> str | None:
    """Why the link cannot be built on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and TUN devices)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    try:
        subprocess.run(["ip", "netns", "list"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"ip netns does not work here ({exc})"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class TunLink:
    """``client_ns`` <-> ``server_ns`` through this process."""

    client_ip = "10.77.0.1"
    server_ip = "10.77.0.2"
    client_ip2 = "10.77.0.3"  # a second client address: a move to another network

    def __init__(self, name: str = "mqq", *, delay: float = 0.025, loss: float = 0.0,
                 seed: int = 1) -> None:
        self.client_ns = f"{name}-client"
        self.server_ns = f"{name}-server"
        self._devices = (f"{name}c", f"{name}s")
        self.delay = delay  # seconds, each way
        self.loss = loss  # probability, each packet, each way
        self.block_udp_up = False
        self.random = random.Random(seed)
        self.forwarded = self.dropped = 0
        self._fds: tuple[int, int] | None = None

    def up(self) -> None:
        self.down()
        fds = []
        for namespace, device, address in ((self.client_ns, self._devices[0], self.client_ip),
                                           (self.server_ns, self._devices[1], self.server_ip)):
            _ip("netns", "add", namespace)
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", device.encode(), _IFF_TUN | _IFF_NO_PI))
            fds.append(fd)
            # The open descriptor stays attached while the device moves to its namespace.
            _ip("link", "set", device, "netns", namespace)
            commands = [["addr", "add", f"{address}/24", "dev", device],
                        ["link", "set", device, "up"], ["link", "set", "lo", "up"]]
            if namespace == self.client_ns:
                commands.insert(1, ["addr", "add", f"{self.client_ip2}/24", "dev", device])
            for command in commands:
                _ip("netns", "exec", namespace, "ip", *command)
        self._fds = (fds[0], fds[1])

    def start(self) -> None:
        """Forward packets from the running event loop."""
        assert self._fds is not None
        loop = asyncio.get_running_loop()
        client_fd, server_fd = self._fds
        loop.add_reader(client_fd, self._pump, client_fd, server_fd, True)
        loop.add_reader(server_fd, self._pump, server_fd, client_fd, False)

    def _pump(self, source: int, target: int, upstream: bool) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(256):
            try:
                packet = os.read(source, 65535)
            except BlockingIOError:
                return
            if (self.loss and self.random.random() < self.loss) or (
                    upstream and self.block_udp_up and len(packet) > 9 and packet[9] == _UDP):
                self.dropped += 1
                continue
            self.forwarded += 1
            if self.delay:
                loop.call_later(self.delay, self._write, target, packet)
            else:
                self._write(target, packet)

    @staticmethod
    def _write(fd: int, packet: bytes) -> None:
        try:
            os.write(fd, packet)
        except OSError:
            pass  # the link is going down

    def down(self) -> None:
        if self._fds is not None:
            loop = None
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
            for fd in self._fds:
                if loop is not None:
                    loop.remove_reader(fd)
                os.close(fd)
            self._fds = None
        for namespace in (self.client_ns, self.server_ns):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)

    def exec_args(self, namespace: str, args: Sequence[str]) -> list[str]:
        """``args`` run inside ``namespace``."""
        return ["ip", "netns", "exec", namespace, *args]
