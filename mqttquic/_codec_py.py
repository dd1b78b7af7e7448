"""The pure-Python MQTT codec: the twin of ``_codec.pyx`` with the same API.

Used when the extension is not built, on interpreters other than CPython, and
when ``MQTTQUIC_NO_EXTENSIONS=1``. ``mqttquic.codec`` picks one of the two.
"""

from __future__ import annotations

from typing import Any

from ._packets_py import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
    decode_body,
    encode_publish,
)
from ._wire import decode_varint, encode_varint
from .errors import MalformedPacket, PacketTooLarge

__all__ = [
    "IMPLEMENTATION", "DEFAULT_MAX_PACKET_SIZE", "encode_varint", "decode_varint", "encode",
    "encode_publish", "decode_packet", "StreamDecoder",
    "Packet", "Will", "Subscription", "Connect", "Connack", "Publish", "Puback", "Pubrec",
    "Pubrel", "Pubcomp", "Subscribe", "Suback", "Unsubscribe", "Unsuback", "Pingreq",
    "Pingresp", "Disconnect", "Auth",
]

IMPLEMENTATION = "python"

# The largest packet the protocol can express: 1 byte type, 4 bytes length, 268,435,455 body.
DEFAULT_MAX_PACKET_SIZE = 268_435_460


def encode(packet: Packet, protocol_version: int = 4) -> bytes:
    """Encode any packet for MQTT 3.1.1 (4) or 5.0 (5)."""
    result: bytes = packet.encode(protocol_version)  # type: ignore[attr-defined]
    return result


def _too_large(total: int, maximum: int) -> PacketTooLarge:
    return PacketTooLarge(
        f"packet of {total} bytes exceeds the maximum packet size {maximum} [MQTT-3.1.2-24]"
    )


def decode_packet(data: bytes, protocol_version: int = 4) -> Packet:
    """Decode exactly one complete packet; anything short of that or beyond it is malformed."""
    data = bytes(data)
    if not data:
        raise MalformedPacket("empty input: a packet needs at least 2 bytes")
    header = decode_varint(data, 1)
    if header is None:
        raise MalformedPacket("input ends inside the remaining length")
    length, start = header
    end = start + length
    if end > len(data):
        raise MalformedPacket(f"input ends {end - len(data)} bytes before the packet does")
    if end < len(data):
        raise MalformedPacket(f"{len(data) - end} bytes after the end of the packet")
    return decode_body(data[0], data[start:end], protocol_version)


class StreamDecoder:
    """Reassembles packets from a byte stream cut at arbitrary places.

    ``feed`` returns every packet completed by the new bytes. Bytes that do not
    yet make a whole packet are kept; the remaining length is checked against
    ``max_packet_size`` as soon as it is known, before anything is buffered for
    the body. After a CONNECT is decoded, ``protocol_version`` follows the level
    it carries (a server learns the version from the client's CONNECT).
    """

    __slots__ = ("protocol_version", "max_packet_size", "_buffer", "_error")

    def __init__(self, protocol_version: int = 4,
                 max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        self.protocol_version = protocol_version
        self.max_packet_size = max_packet_size
        self._buffer = bytearray()
        self._error: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for a packet that is not complete yet."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Any]:
        if self._error is not None:
            raise MalformedPacket(f"stream already failed: {self._error}")
        buffer = self._buffer
        if buffer:
            buffer += data
            view: Any = buffer
        else:
            # Nothing pending: parse the caller's bytes in place, copy only the tail.
            view = data if type(data) is bytes else bytes(data)
        out: list[Any] = []
        pos = 0
        end = len(view)
        version = self.protocol_version
        maximum = self.max_packet_size
        try:
            while end - pos >= 2:
                first = view[pos]
                # The remaining length, inline: this loop is the hot path.
                byte = view[pos + 1]
                if byte < 0x80:
                    length = byte
                    start = pos + 2
                else:
                    header = decode_varint(view, pos + 1)
                    if header is None:
                        break
                    length, start = header
                total = start - pos + length
                if total > maximum:
                    raise _too_large(total, maximum)
                stop = start + length
                if stop > end:
                    break
                packet = decode_body(first, bytes(view[start:stop]), version)
                if first == 0x10 and isinstance(packet, Connect):
                    version = self.protocol_version = packet.protocol_version
                out.append(packet)
                pos = stop
        except MalformedPacket as exc:
            self._error = str(exc)
            exc.packets = out
            raise
        if buffer:
            del buffer[:pos]
        elif pos < end:
            buffer += view[pos:]
        return out
