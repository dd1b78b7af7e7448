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
)
from ._packets_py import encode_publish as _encode_publish_general
from ._wire import decode_varint, encode_varint, pack_string
from .errors import MalformedPacket, PacketTooLarge
from .topics import validate_topic_name

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


# Validated, length-prefixed UTF-8 of the topics this process publishes to. Devices
# publish to a handful of topics; encoding and checking each one once is most of
# what a small PUBLISH costs in pure Python. Bounded: cleared when full.
_PACKED_TOPICS: dict[str, bytes] = {}
_PACKED_TOPICS_MAX = 1024


def _packed_topic(topic: str) -> bytes:
    validate_topic_name(topic)
    packed = pack_string(topic, "topic name")
    if len(_PACKED_TOPICS) >= _PACKED_TOPICS_MAX:
        _PACKED_TOPICS.clear()
    _PACKED_TOPICS[topic] = packed
    return packed


def encode_publish(topic: str, payload: bytes, qos: int = 0, packet_id: int | None = None,
                   retain: bool = False, dup: bool = False,
                   properties: dict[str, Any] | None = None, protocol_version: int = 4) -> bytes:
    """Encode a PUBLISH from its fields."""
    if properties or not topic or qos not in (0, 1, 2) or (dup and not qos):
        # Unusual cases: the general encoder validates and explains.
        return _encode_publish_general(topic, payload, qos, packet_id, retain, dup, properties,
                                       protocol_version)
    packed = _PACKED_TOPICS.get(topic) or _packed_topic(topic)
    length = len(packed) + len(payload)
    parts = [b"", packed]
    if qos:
        if type(packet_id) is not int or not 0 < packet_id <= 0xFFFF:
            return _encode_publish_general(topic, payload, qos, packet_id, retain, dup, properties,
                                           protocol_version)
        parts.append(packet_id.to_bytes(2, "big"))
        length += 2
    if protocol_version == 5:
        parts.append(b"\x00")
        length += 1
    parts.append(payload)
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    parts[0] = bytes((first, length)) if length < 0x80 else bytes((first,)) + encode_varint(length)
    return b"".join(parts)


def encode(packet: Packet, protocol_version: int = 4) -> bytes:
    """Encode any packet for MQTT 3.1.1 (4) or 5.0 (5)."""
    if type(packet) is Publish:
        return encode_publish(packet.topic, packet.payload, packet.qos, packet.packet_id,
                              packet.retain, packet.dup, packet.properties, protocol_version)
    result: bytes = packet.encode(protocol_version)  # type: ignore[attr-defined]
    return result


def _publish_from(data: bytes, start: int, stop: int, first: int, version: int,
                  last_topic: list[Any]) -> Publish | None:
    """The common PUBLISH straight from the stream's bytes, or None for anything
    unusual (properties, bad fields), which the general decoder then handles and
    explains. ``last_topic`` is ``[raw, str]`` of the previous topic: streams
    repeat topics, and a hit skips decoding and validating it again."""
    qos = (first >> 1) & 0x03
    if qos == 3 or (first & 0x08 and not qos) or stop - start < 2:
        return None
    pos = start + 2 + ((data[start] << 8) | data[start + 1])
    if pos > stop or pos == start + 2:
        return None
    raw = data[start + 2:pos]
    if raw == last_topic[0]:
        topic = last_topic[1]
    else:
        try:
            topic = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if "+" in topic or "#" in topic or "\x00" in topic:
            return None
        last_topic[0] = raw
        last_topic[1] = topic
    packet_id = None
    if qos:
        if pos + 2 > stop:
            return None
        packet_id = (data[pos] << 8) | data[pos + 1]
        if not packet_id:
            return None
        pos += 2
    if version == 5:
        if pos >= stop or data[pos]:
            return None
        pos += 1
    packet = Publish.__new__(Publish)
    packet.topic = topic
    packet.payload = data[pos:stop]
    packet.qos = qos
    packet.retain = bool(first & 0x01)
    packet.dup = bool(first & 0x08)
    packet.packet_id = packet_id
    packet.properties = {}
    return packet


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

    __slots__ = ("protocol_version", "max_packet_size", "_buffer", "_need", "_error", "_topic")

    def __init__(self, protocol_version: int = 4,
                 max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        self.protocol_version = protocol_version
        self.max_packet_size = max_packet_size
        self._buffer = bytearray()
        # Size of the incomplete packet at the front of _buffer, once its header is in.
        self._need = 0
        self._error: str | None = None
        self._topic: list[Any] = [None, None]

    @property
    def buffered(self) -> int:
        """Bytes held for a packet that is not complete yet."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Any]:
        if self._error is not None:
            raise MalformedPacket(f"stream already failed: {self._error}")
        buffer = self._buffer
        if buffer:
            if len(buffer) + len(data) < self._need:
                # Still short of the pending packet: keep collecting (linear, no parse).
                buffer += data
                return []
            # Slices of bytes are bytes: one copy per packet, not two.
            view: bytes = bytes(buffer) + bytes(data)
            del buffer[:]
        else:
            view = data if type(data) is bytes else bytes(data)
        self._need = 0
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
                    self._need = total
                    break
                packet: Packet | None = None
                if first >> 4 == 3:
                    packet = _publish_from(view, start, stop, first, version, self._topic)
                if packet is None:
                    packet = decode_body(first, view[start:stop], version)
                if first == 0x10 and isinstance(packet, Connect):
                    version = self.protocol_version = packet.protocol_version
                out.append(packet)
                pos = stop
        except MalformedPacket as exc:
            self._error = str(exc)
            exc.packets = out
            raise
        if pos < end:
            buffer += view[pos:]
        return out
