"""Small asyncio helpers shared by the gateway and the transports."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable
from typing import Any, TypeVar

from .codec import decode_varint
from .errors import MalformedPacket, OperationTimeout, PacketTooLarge

__all__ = ["read_packet", "quick_ack", "within"]

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float, what: str) -> T:
    """``await awaitable``, cancelled after ``seconds``: then OperationTimeout names ``what``.

    A TimeoutError raised inside (an OperationTimeout of a deeper deadline) passes
    unchanged; only this deadline's expiry becomes a new one."""
    # No task per call, unlike wait_for before 3.12: this sits on every publish.
    try:
        async with asyncio.timeout(seconds) as deadline:
            return await awaitable
    except TimeoutError:
        if deadline.expired():
            raise OperationTimeout(f"{what}: not done within {seconds:g} s") from None
        raise


async def read_packet(reader: asyncio.StreamReader, max_packet_size: int = 268_435_460) -> bytes:
    """Read exactly one MQTT packet, raw, from ``reader``."""
    header = bytearray(await reader.readexactly(2))
    while header[-1] & 0x80:
        if len(header) == 5:
            raise MalformedPacket("remaining length longer than 4 bytes [MQTT-1.5.5-1]")
        header += await reader.readexactly(1)
    decoded = decode_varint(header, 1)
    assert decoded is not None
    length = decoded[0]
    if len(header) + length > max_packet_size:
        raise PacketTooLarge(f"packet of {len(header) + length} bytes exceeds {max_packet_size}")
    return bytes(header) + await reader.readexactly(length)


def quick_ack(sock: Any) -> None:
    """Acknowledge the broker's bytes at once (Linux; the flag wears off, so per read).

    A broker that leaves Nagle on (mosquitto's default) holds its second and later
    PUBACKs until our ACK of the first arrives; with delayed ACKs that costs 40 ms
    whenever a client has several publishes in flight and nothing else to send."""
    if sock is not None and hasattr(socket, "TCP_QUICKACK"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except OSError:
            pass
