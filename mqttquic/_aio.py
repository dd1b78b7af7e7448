"""Small asyncio helpers shared by the gateway and the transports."""

from __future__ import annotations

import asyncio

from .codec import decode_varint
from .errors import MalformedPacket, PacketTooLarge

__all__ = ["read_packet"]


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
